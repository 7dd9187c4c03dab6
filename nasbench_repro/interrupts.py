"""Stop a run on SIGTERM (Slurm preemption, `kill`) or Ctrl-C, even when the signal lands in a finalizer.

Python runs a signal handler between two bytecodes of the main thread. When those are inside a
`__del__` (the saved-tensor meter releases its count in one, many times per backward pass), the
KeyboardInterrupt the handler raises is printed as "Exception ignored" and dropped, and the run goes
on as if nothing happened. So the handler also records the request, and the runner's epoch and step
loops raise it again at their next iteration (`raise_if_requested`).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGTERM, signal.SIGINT)
_requested: list[int] = []


def _request_stop(signum: int, frame: object) -> None:
    _requested.append(signum)
    raise KeyboardInterrupt(f"signal {signum}")


def raise_if_requested() -> None:
    """Raise the stop a signal asked for, if its first raise was swallowed."""
    if _requested:
        raise KeyboardInterrupt(f"signal {_requested[-1]}")


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """While the block runs, SIGTERM and SIGINT stop it with a KeyboardInterrupt (main thread only)."""
    _requested.clear()
    try:
        previous = {signum: signal.signal(signum, _request_stop) for signum in SIGNALS}
    except ValueError:  # not the main thread: signals are not ours to take
        previous = {}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _requested.clear()
