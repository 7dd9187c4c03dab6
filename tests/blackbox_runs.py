"""Black-box searches shrunk to seconds on a CPU, on small CIFAR-format or PTB files, for the end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cifar_files import write_release
from text_files import write_ptb

from nasbench_repro import records
from nasbench_repro.executors import ExecutorChoice
from nasbench_repro.runner import Paths, execute
from nasbench_repro.spec import RunSpec

TRAINING = {"search.epochs": 1, "search.train_examples": 48, "search.batch_size": 8}
CELLS = {"search.init_channels": 4, "search.layers": 3}
TINY = {
    "evolution": {
        **TRAINING,
        **CELLS,
        "search.architectures": 10,
        "search.population_size": 4,
        "search.sample_size": 2,
        "search.round_size": 2,
        "search.identity_mutation_prob": 0.3,
    },
    "nas-rl": {
        **TRAINING,
        "search.architectures": 8,
        "search.children_per_update": 2,
        "search.layers": 3,
        "search.add_layers": 1,
        "search.depth_step_architectures": 4,
        "search.filter_channels": [4, 8],
        "search.filter_heights": [1, 3],
        "search.filter_widths": [1, 3],
    },
    "random": {**TRAINING, **CELLS, "search.architectures": 6, "search.round_size": 3},
}
# Language-model candidates on a fixture PTB (about 1,700 training tokens): a tiny cell, one epoch each.
LANGUAGE_MODEL = {"search.epochs": 1, "search.hidden_size": 6, "search.batch_size": 4, "search.valid_batch_size": 2}
TINY_PTB = {
    "nas-rl": {**LANGUAGE_MODEL, "search.architectures": 6, "search.children_per_update": 2},
    "random": {**LANGUAGE_MODEL, "search.architectures": 6, "search.round_size": 3},
}
OVERRIDES = {"cifar10": TINY, "ptb": TINY_PTB}


def write_data(root: Path, dataset: str = "cifar10") -> Path:
    """120 training images of noise in the official format (enough for 48-image search splits),
    or a small Mikolov-form PTB."""
    if dataset == "ptb":
        write_ptb(root)
    else:
        write_release(root / "cifar-10-batches-py", train_per_batch=24, test_count=8)
    return root


def run_search(
    method: str,
    data_root: Path,
    out: Path,
    seed: int = 0,
    workers: int = 0,
    executor: ExecutorChoice | None = None,
    variant: str | None = None,
    dataset: str = "cifar10",
) -> dict:
    spec = RunSpec(
        method,
        dataset,
        phase="search",
        seed=seed,
        overrides=OVERRIDES[dataset][method],
        variant=variant,
        allow_unofficial_data=True,
    )
    paths = Paths(results_dir=out / "results", runs_dir=out / "runs", data_root=data_root)
    outcome = execute(spec, paths, notify=lambda line: None, executor=executor or ExecutorChoice(workers=workers))
    return records.read_record(outcome.record_path)


def reproducible(record: dict) -> dict:
    """What the seed decides: outcomes, curves, genotype, protocol (not time, memory or the executor)."""
    return {key: record[key] for key in ("metrics", "curves", "genotype", "protocol", "variant", "dataset", "budget")}


def cli_arguments(
    method: str, data_root: Path, out: Path, seed: int, dataset: str = "cifar10", variant: str | None = None
) -> list[str]:
    arguments = [
        "run",
        method,
        "--dataset",
        dataset,
        "--phase",
        "search",
        "--seeds",
        str(seed),
        "--workers",
        "0",
        "--data-root",
        str(data_root),
        "--allow-unofficial-data",
        "--results-dir",
        str(out / "results"),
        "--runs-dir",
        str(out / "runs"),
    ]
    if variant:
        arguments += ["--variant", variant]
    for key, value in OVERRIDES[dataset][method].items():
        arguments += ["--set", f"{key}={value}"]
    return arguments


def check_kill_and_resume(
    method: str, tmp_path: Path, seed: int, dataset: str = "cifar10", variant: str | None = None
) -> None:
    """A run SIGKILLed after its first checkpoint and resumed writes the uninterrupted run's record."""
    data = write_data(tmp_path / "data", dataset)
    uninterrupted = run_search(method, data, tmp_path / "straight", seed=seed, variant=variant, dataset=dataset)
    arguments = cli_arguments(method, data, tmp_path / "killed", seed, dataset, variant)
    resumed = kill_after_first_round_then_resume(arguments, tmp_path / "killed")
    assert resumed["cost"]["search"]["resumed_from_epoch"] >= 1
    assert reproducible(resumed) == reproducible(uninterrupted)


def kill_after_first_round_then_resume(arguments: list[str], out: Path) -> dict:
    """SIGKILL a run of the CLI `arguments` (no chance to clean up) once its first round is
    checkpointed in `out`; resume it; return the resumed run's record."""
    command = [sys.executable, "-m", "nasbench_repro", *arguments]
    env = {**os.environ, "NASBENCH_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    runs = out / "runs"
    deadline = time.time() + 120
    checkpoints: list[Path] = []
    while time.time() < deadline and not checkpoints and process.poll() is None:
        checkpoints = [path for path in runs.glob("*/checkpoint-search.pt") if path.stat().st_size > 0]
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert checkpoints, f"the run never wrote a checkpoint: {process.stderr.read().decode()[-2000:]}"
    run_id = checkpoints[0].parent.name
    assert not list((out / "results").rglob(f"{run_id}.json")), "the run finished before it could be killed"
    done = subprocess.run(
        [*command, "--resume", run_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return records.read_record(Path(done.stdout.strip().splitlines()[-1]))
