"""What a method sees of the runner (`Context`: device, generator, precision, protocol,
data, epochs) and what it hands back (`PhaseResult`).

`ctx.epochs(n, state)` is the only loop a method needs for checkpointing: it restores
`state` (modules, optimizers, schedulers, tensors, plain dicts) and every RNG stream from
the phase's checkpoint when resuming, and saves them after each epoch, so a resumed run
continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nasbench_repro import interrupts, progress
from nasbench_repro.atomic import write_with
from nasbench_repro.data import DataRequest
from nasbench_repro.errors import DivergenceError
from nasbench_repro.executors import ExecutorChoice
from nasbench_repro.meters import PhaseMeter
from nasbench_repro.protocol import PhaseProtocol
from nasbench_repro.seeding import restore_rng_state, rng_state
from nasbench_repro.spec import RunSpec


@dataclass
class PhaseResult:
    """What a phase produced: outcome metrics (error, params, ...) and, for search, a genotype."""

    metrics: dict[str, Any] = field(default_factory=dict)
    genotype: Any = None  # a Genotype (anything with to_dict()), or None


def memory_format_for(choice: str, device: torch.device) -> str:
    """The layout of image networks' 4-D weights (and so of their activations: convolutions
    follow their weights). `auto` is contiguous on every device for now: channels_last makes a
    P-DARTS search step 1.1-1.4x faster on the 2-core CPU, but oneDNN aborts the process in the
    backward pass of GDAS's fixed reduction cell on ImageNet (tests/test_gdas.py FRC transfer),
    and CUDA is unmeasured; `--memory-format channels_last` opts in."""
    if choice != "auto":
        return choice
    return "contiguous"


def laid_out(module: nn.Module, memory_format: str) -> nn.Module:
    """`module` with its 4-D weights in `memory_format` (a recurrent model has none: unchanged)."""
    return module.to(memory_format=torch.channels_last if memory_format == "channels_last" else torch.contiguous_format)


def autocast_for(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when `precision` asks for it; a no-op otherwise."""
    if precision == "bf16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class Context:
    spec: RunSpec
    phase: str
    protocol: PhaseProtocol
    device: torch.device
    generator: torch.Generator
    meter: PhaseMeter
    checkpoint_path: Path
    data_factory: Callable[[], Any]
    curves: list[dict[str, Any]] = field(default_factory=list)
    epoch: int | None = None
    resumed_from_epoch: int | None = None
    # for methods that evaluate candidates in worker processes, which load the data themselves
    data_request: DataRequest | None = None
    executor: ExecutorChoice = field(default_factory=ExecutorChoice)
    _data: Any = None

    # --- numerics -------------------------------------------------------------------------------------------

    @property
    def precision(self) -> str:
        return self.spec.precision

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast_for(self.spec.precision, self.device)

    @property
    def memory_format(self) -> str:
        return memory_format_for(self.spec.memory_format, self.device)

    def place(self, module: nn.Module) -> nn.Module:
        """A network the phase built, on the run's device in the run's memory format."""
        return laid_out(module, self.memory_format).to(self.device)

    def check_finite(self, value: torch.Tensor | float, what: str) -> float:
        """Fail the run with a one-line reason when a loss diverges (call once per epoch: it syncs)."""
        number = float(value)
        if not math.isfinite(number):
            where = f"epoch {self.epoch}" if self.epoch is not None else "start"
            raise DivergenceError(
                f"{what} is {number} at {self.phase} {where}; lower the learning rate, "
                f"use --precision fp32, or try another seed"
            )
        return number

    # --- data -----------------------------------------------------------------------------------------------

    @property
    def data(self) -> Any:
        """The run's dataset, loaded on first use (onto `device` where the loader supports it)."""
        if self._data is None:
            self._data = self.data_factory()
        return self._data

    @property
    def evaluations_dir(self) -> Path:
        """Beside the checkpoint: one result file per finished candidate evaluation, written
        atomically as each one ends, so an interrupted round loses only the candidates in flight."""
        return self.checkpoint_path.parent / f"evaluations-{self.phase}"

    # --- the epoch loop, checkpoints and curves ------------------------------------------------------------

    def epochs(self, total: int, state: Mapping[str, Any]) -> Iterator[int]:
        """Yield epoch numbers, saving `state` after each; on resume, start after the last saved one."""
        start = self._restore(state)
        with progress.bar(total=total, initial=start, desc=f"{self.spec.method} {self.phase}", unit="epoch") as bar:
            for epoch in range(start, total):
                interrupts.raise_if_requested()
                self.epoch = epoch
                began = time.perf_counter()
                yield epoch
                self.meter.epoch_seconds.append(time.perf_counter() - began)
                self._save(epoch, state)
                bar.update(1)
                if self.curves and self.curves[-1].get("epoch") == epoch:
                    bar.set_postfix(_short(self.curves[-1]), refresh=False)
        self.epoch = None

    def log(self, **values: Any) -> None:
        """Append one row to this phase's curves (call once per epoch, after the epoch's work)."""
        row = {"epoch": self.epoch, **values}
        self.curves.append(row)

    def progress(self, iterable: Any, total: int | None = None, desc: str = "") -> Iterator[Any]:
        """The steps of an epoch with a progress bar; a stop a signal asked for is raised before each."""
        with progress.bar(iterable, total=total, desc=desc or f"{self.phase} epoch {self.epoch}", unit="step") as bar:
            for item in bar:
                interrupts.raise_if_requested()
                yield item

    def _save(self, epoch: int, state: Mapping[str, Any]) -> None:
        payload = {
            "epoch": epoch,
            "state": {name: _state_of(obj) for name, obj in state.items()},
            "rng": rng_state(self.generator),
            "curves": self.curves,
            "elapsed_seconds": self.meter.elapsed_seconds(),
            "epoch_seconds": self.meter.epoch_seconds,
            "peaks": self.meter.peaks(),
        }
        write_with(self.checkpoint_path, lambda handle: torch.save(payload, handle))

    def _restore(self, state: Mapping[str, Any]) -> int:
        if not self.checkpoint_path.exists():
            return 0
        payload = torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)
        missing = set(state) - set(payload["state"])
        if missing:
            raise RuntimeError(f"checkpoint {self.checkpoint_path} lacks state {sorted(missing)}")
        for name, obj in state.items():
            _load_state(obj, payload["state"][name])
        restore_rng_state(payload["rng"], self.generator)
        self.curves[:] = payload["curves"]
        self.meter.carry(payload["elapsed_seconds"], payload["peaks"], payload["epoch_seconds"])
        self.resumed_from_epoch = payload["epoch"] + 1
        return payload["epoch"] + 1


def _state_of(obj: Any) -> Any:
    if hasattr(obj, "state_dict"):
        return obj.state_dict()
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return dict(obj)
    raise TypeError(f"cannot checkpoint {type(obj).__name__}: give it state_dict() or pass a tensor or dict")


def _load_state(obj: Any, saved: Any) -> None:
    if hasattr(obj, "load_state_dict"):
        obj.load_state_dict(saved)
    elif isinstance(obj, torch.Tensor):
        with torch.no_grad():
            obj.copy_(saved)
    else:
        obj.clear()
        obj.update(saved)


def _short(row: dict[str, Any]) -> dict[str, str]:
    return {key: f"{value:.4g}" for key, value in row.items() if isinstance(value, float)}
