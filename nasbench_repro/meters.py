"""Cost meters owned by the runner: wall time as GPU-days, and peak memory per phase.

On CUDA the peak is `torch.cuda.max_memory_allocated`, reset at the start of each phase.
On CPU there is no allocator counter, so we report two honest proxies: the peak bytes of
activations saved for backward (counted with saved-tensor hooks, the quantity PC-DARTS
reduces) and the process's peak resident set size.
"""

from __future__ import annotations

import contextlib
import resource
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

SECONDS_PER_DAY = 86_400


def gpu_days(wall_seconds: float, device_count: int) -> float:
    """The papers' cost unit: wall time times devices used, in days."""
    return wall_seconds * device_count / SECONDS_PER_DAY


class SavedTensorMeter:
    """Live and peak bytes of tensors autograd saves for backward.

    Storages are counted once however many views of them are saved; parameters (leaf
    tensors that require grad) are left out since they are resident anyway.
    """

    def __init__(self) -> None:
        self.current = 0
        self.peak = 0
        self._storages: dict[tuple, list[int]] = {}  # key -> [references, bytes]

    def _pack(self, tensor: torch.Tensor) -> object:
        if tensor.is_leaf and tensor.requires_grad:
            return tensor
        return _SavedHandle(self, tensor)

    @staticmethod
    def _unpack(packed: object) -> torch.Tensor:
        return packed.tensor if isinstance(packed, _SavedHandle) else packed

    def _acquire(self, key: tuple, nbytes: int) -> None:
        slot = self._storages.get(key)
        if slot is None:
            self._storages[key] = [1, nbytes]
            self.current += nbytes
            self.peak = max(self.peak, self.current)
        else:
            slot[0] += 1

    def _release(self, key: tuple) -> None:
        slot = self._storages.get(key)
        if slot is None:
            return
        slot[0] -= 1
        if slot[0] == 0:
            self.current -= slot[1]
            del self._storages[key]

    @contextlib.contextmanager
    def track(self) -> Iterator[SavedTensorMeter]:
        with torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack):
            yield self


class _SavedHandle:
    __slots__ = ("meter", "key", "tensor")

    def __init__(self, meter: SavedTensorMeter, tensor: torch.Tensor):
        storage = tensor.untyped_storage()
        self.meter = meter
        self.key = (tensor.device.type, tensor.device.index, storage.data_ptr())
        self.tensor = tensor.detach()  # holding the tensor itself would tie a reference cycle through its grad_fn
        meter._acquire(self.key, storage.nbytes())

    def __del__(self) -> None:
        self.meter._release(self.key)


def reset_peak_rss() -> bool:
    """Linux lets a process reset its own high-water mark; elsewhere the peak is lifetime."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


@dataclass
class PhaseMeter:
    """Measures one phase: wall seconds (plus time carried over from before a resume) and memory."""

    device: torch.device
    device_count: int = 1
    carried_seconds: float = 0.0
    carried_peaks: dict = field(default_factory=dict)
    epoch_seconds: list[float] = field(default_factory=list)  # wall time of each completed epoch
    saved_tensors: SavedTensorMeter = field(default_factory=SavedTensorMeter)
    _start: float = 0.0
    _stopped_at: float | None = None
    _rss_reset: bool = False
    _stack: contextlib.ExitStack | None = None

    def __enter__(self) -> PhaseMeter:
        self._start = time.perf_counter()
        self._stack = contextlib.ExitStack()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._stack.enter_context(self.saved_tensors.track())
        self._rss_reset = reset_peak_rss()
        return self

    def __exit__(self, *exc_info) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self._stopped_at = time.perf_counter()
        assert self._stack is not None
        self._stack.close()

    def carry(self, seconds: float, peaks: dict, epoch_seconds: list[float]) -> None:
        """Continue a resumed phase: time and peaks measured before the interruption still count."""
        self.carried_seconds = seconds
        self.carried_peaks = dict(peaks)
        self.epoch_seconds = list(epoch_seconds)

    def absorb(self, peaks: dict) -> None:
        """Count peaks measured elsewhere in this phase (a worker process training a candidate)."""
        self.carried_peaks = {key: _max(value, self.carried_peaks.get(key)) for key, value in peaks.items()}

    def elapsed_seconds(self) -> float:
        end = self._stopped_at if self._stopped_at is not None else time.perf_counter()
        return self.carried_seconds + (end - self._start)

    def peaks(self) -> dict:
        """Peak bytes so far in this phase, across resumes (None where not measured on this device)."""
        cuda = self.device.type == "cuda"
        measured = {
            "cuda_max_allocated_bytes": torch.cuda.max_memory_allocated(self.device) if cuda else None,
            "saved_tensors_peak_bytes": None if cuda else self.saved_tensors.peak,
            "rss_peak_bytes": peak_rss_bytes(),
        }
        return {key: _max(value, self.carried_peaks.get(key)) for key, value in measured.items()}

    def summary(self) -> dict:
        seconds = self.elapsed_seconds()
        return {
            "wall_seconds": seconds,
            "device_count": self.device_count,
            "gpu_days": gpu_days(seconds, self.device_count),
            "epoch_seconds": self.epoch_seconds,
            "peak_memory": {**self.peaks(), "rss_peak_is_per_phase": self._rss_reset},
        }


def _max(a: int | None, b: int | None) -> int | None:
    values = [value for value in (a, b) if value is not None]
    return max(values) if values else None
