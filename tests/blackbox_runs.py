"""Black-box searches shrunk to seconds on a CPU, on small CIFAR-format files, for the end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cifar_files import write_release

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


def write_data(root: Path) -> Path:
    """120 training images of noise in the official format (enough for 48-image search splits)."""
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
) -> dict:
    spec = RunSpec(
        method,
        "cifar10",
        phase="search",
        seed=seed,
        overrides=TINY[method],
        variant=variant,
        allow_unofficial_data=True,
    )
    paths = Paths(results_dir=out / "results", runs_dir=out / "runs", data_root=data_root)
    outcome = execute(spec, paths, notify=lambda line: None, executor=executor or ExecutorChoice(workers=workers))
    return records.read_record(outcome.record_path)


def reproducible(record: dict) -> dict:
    """What the seed decides: outcomes, curves, genotype, protocol (not time, memory or the executor)."""
    return {key: record[key] for key in ("metrics", "curves", "genotype", "protocol", "variant", "dataset", "budget")}


def cli_arguments(method: str, data_root: Path, out: Path, seed: int) -> list[str]:
    arguments = [
        "run",
        method,
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
    for key, value in TINY[method].items():
        arguments += ["--set", f"{key}={value}"]
    return arguments


def check_kill_and_resume(method: str, tmp_path: Path, seed: int) -> None:
    """A run SIGKILLed after its first checkpoint and resumed writes the uninterrupted run's record."""
    data = write_data(tmp_path / "data")
    uninterrupted = run_search(method, data, tmp_path / "straight", seed=seed)
    resumed = kill_after_first_round_then_resume(method, data, tmp_path / "killed", seed)
    assert resumed["cost"]["search"]["resumed_from_epoch"] >= 1
    assert reproducible(resumed) == reproducible(uninterrupted)


def kill_after_first_round_then_resume(method: str, data_root: Path, out: Path, seed: int) -> dict:
    """SIGKILL a run (no chance to clean up) once its first round is checkpointed; resume it;
    return the resumed run's record."""
    command = [sys.executable, "-m", "nasbench_repro", *cli_arguments(method, data_root, out, seed)]
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
        [sys.executable, "-m", "nasbench_repro", *cli_arguments(method, data_root, out, seed), "--resume", run_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return records.read_record(Path(done.stdout.strip().splitlines()[-1]))
