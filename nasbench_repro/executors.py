"""Where candidate evaluations run: a local process pool (the default), Slurm through
submitit, or this process.

Black-box searches evaluate independent candidates, so they hand a round's tasks to an
executor and read the results back in the order they were submitted: which worker ran a
task, and when, never changes a result (each task carries its own seed). Both engines are
existing ones, `concurrent.futures` with a spawn context (CUDA cannot be forked) and
`submitit` for Slurm clusters; nothing here schedules work itself.

- `local`: one worker process per GPU when the run's device is CUDA (worker i uses
  cuda:i), else `workers` CPU processes (default: one per core), each on one thread so a
  result does not depend on how many workers share the machine. `workers = 0` runs the
  tasks in this process, one after another (for debugging).
- `slurm`: one job per task, submitted as a job array with at most `workers` running at
  once; each job resolves the device on its node (a GPU when it has one).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from nasbench_repro.errors import UserError
from nasbench_repro.seeding import set_determinism

KINDS = ("local", "slurm")
SLURM_CLUSTERS = ("slurm", "local", "debug")  # submitit's: a real cluster, or its local and in-process stand-ins
SLURM_TIMEOUT_MINUTES = 24 * 60
SLURM_DEFAULT_JOBS = 64  # array jobs running at once when --workers is not given

Task = Any
TaskFunction = Callable[[Task, torch.device], Any]


@dataclass(frozen=True)
class ExecutorChoice:
    """How a run evaluates candidates; recorded with the run's environment, never changes a result."""

    kind: str = "local"
    workers: int | None = None  # local: CPU processes (None: one per core; 0: this process); slurm: jobs at once
    slurm_cluster: str = "slurm"
    slurm_partition: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UserError(f"unknown executor {self.kind!r}; use one of {', '.join(KINDS)}")
        if self.workers is not None and self.workers < 0:
            raise UserError(f"--workers {self.workers}: give 0 (this process) or more worker processes")
        if self.slurm_cluster not in SLURM_CLUSTERS:
            raise UserError(f"unknown submitit cluster {self.slurm_cluster!r}; use one of {', '.join(SLURM_CLUSTERS)}")

    def describe(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT_EXECUTOR = ExecutorChoice()


def open_executor(choice: ExecutorChoice, device: torch.device, determinism: str, folder: Path) -> Executor:
    """Start the workers `choice` asks for; `folder` keeps Slurm's job files."""
    if choice.kind == "slurm":
        return SlurmExecutor(choice, device, determinism, folder)
    if choice.workers == 0:
        return InProcessExecutor(device)
    if device.type == "cuda":
        devices = [torch.device("cuda", index) for index in range(torch.cuda.device_count())]
    else:
        devices = [torch.device("cpu")] * (choice.workers or os.cpu_count() or 1)
    return LocalPool(devices, determinism)


class Executor:
    """Runs `function(task, device)` for each task; `map` returns the results in task order."""

    gpus: int = 0  # GPUs held for the run's evaluations (its cost counts them)

    def map(self, function: TaskFunction, tasks: Sequence[Task]) -> list[Any]:
        raise NotImplementedError

    def close(self, abandon: bool = False) -> None:
        """Stop the workers; `abandon` (the run was interrupted or failed) stops them without waiting
        for the tasks still running, which a resumed run computes again."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, exc_type, *exc_info) -> None:
        self.close(abandon=exc_type is not None)


class InProcessExecutor(Executor):
    def __init__(self, device: torch.device):
        self.device = device

    def map(self, function: TaskFunction, tasks: Sequence[Task]) -> list[Any]:
        return [function(task, self.device) for task in tasks]


# --- the local pool -------------------------------------------------------------------------------------------

_worker_device: torch.device | None = None


def _start_worker(devices: Any, determinism: str) -> None:
    """Each worker takes one device off the queue; CPU workers compute on one thread."""
    global _worker_device
    _worker_device = devices.get()
    if _worker_device.type == "cpu":
        torch.set_num_threads(1)
    else:
        torch.cuda.set_device(_worker_device)
    set_determinism(determinism)


def _call_in_worker(function: TaskFunction, task: Task) -> Any:
    assert _worker_device is not None, "a pool task ran outside a started worker"
    return function(task, _worker_device)


class LocalPool(Executor):
    def __init__(self, devices: list[torch.device], determinism: str):
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        for device in devices:
            queue.put(device)
        self.gpus = sum(device.type == "cuda" for device in devices)
        self._pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=len(devices), mp_context=context, initializer=_start_worker, initargs=(queue, determinism)
        )

    def map(self, function: TaskFunction, tasks: Sequence[Task]) -> list[Any]:
        futures = [self._pool.submit(_call_in_worker, function, task) for task in tasks]
        return [future.result() for future in futures]

    def close(self, abandon: bool = False) -> None:
        if abandon:  # concurrent.futures has no public way to stop a running task
            for process in list(self._pool._processes.values()):
                process.terminate()
        self._pool.shutdown(wait=True, cancel_futures=True)


# --- Slurm through submitit -----------------------------------------------------------------------------------


def _call_in_job(function: TaskFunction, task: Task, device_request: str, determinism: str) -> Any:
    """A Slurm job: pick the node's device (a GPU when the run asked for one or for auto and it has one)."""
    use_cuda = device_request != "cpu" and torch.cuda.is_available()
    set_determinism(determinism)
    return function(task, torch.device("cuda") if use_cuda else torch.device("cpu"))


class SlurmExecutor(Executor):
    def __init__(self, choice: ExecutorChoice, device: torch.device, determinism: str, folder: Path):
        if choice.slurm_cluster == "slurm" and shutil.which("sbatch") is None:
            raise UserError("--executor slurm needs a Slurm cluster (no sbatch on this machine); use --executor local")
        import submitit

        self._executor = submitit.AutoExecutor(folder=folder, cluster=choice.slurm_cluster)
        parameters: dict[str, Any] = {
            "timeout_min": SLURM_TIMEOUT_MINUTES,
            "slurm_array_parallelism": choice.workers or SLURM_DEFAULT_JOBS,
        }
        if device.type == "cuda":
            parameters["gpus_per_node"] = 1
        if choice.slurm_partition:
            parameters["slurm_partition"] = choice.slurm_partition
        if choice.slurm_cluster == "slurm":
            self._executor.update_parameters(**parameters)
        self.gpus = (choice.workers or SLURM_DEFAULT_JOBS) if device.type == "cuda" else 0
        self._device_request = device.type
        self._determinism = determinism

    def map(self, function: TaskFunction, tasks: Sequence[Task]) -> list[Any]:
        count = len(tasks)
        jobs = self._executor.map_array(
            _call_in_job, [function] * count, list(tasks), [self._device_request] * count, [self._determinism] * count
        )
        return [job.result() for job in jobs]
