import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("NASBENCH_PROGRESS", "0")


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tests use tiny tensors: intra-op thread barriers would cost more than the arithmetic
    (100 ms+ per small conv with 2 threads on a loaded 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny(tmp_path):
    """The tiny method and toy dataset, registered for one test, with tmp results/runs dirs."""
    import tiny_method

    from nasbench_repro import catalog
    from nasbench_repro.data import unregister_dataset
    from nasbench_repro.runner import Paths

    tiny_method.install(tmp_path)
    tiny_method.TinyMethod.interrupt_at = None
    tiny_method.TinyMethod.produce_nan = False
    yield Paths(results_dir=tmp_path / "results", runs_dir=tmp_path / "runs", data_root=tmp_path / "data")
    catalog.unregister("tiny")
    unregister_dataset("toy")
