import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("NASBENCH_PROGRESS", "0")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def tiny(tmp_path):
    """The tiny method and toy dataset, registered for one test, with tmp results/runs dirs."""
    import tiny_method

    from nasbench_repro import catalog
    from nasbench_repro.data import unregister_dataset
    from nasbench_repro.runner import Paths

    tiny_method.install(tmp_path)
    tiny_method.TinyMethod.interrupt_at_epoch = None
    tiny_method.TinyMethod.produce_nan = False
    yield Paths(results_dir=tmp_path / "results", runs_dir=tmp_path / "runs", data_root=tmp_path / "data")
    catalog.unregister("tiny")
    unregister_dataset("toy")
