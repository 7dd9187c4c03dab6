"""Progress bars with ETA (tqdm) on stderr; quieter when stderr is not a terminal."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm


def enabled() -> bool:
    return os.environ.get("NASBENCH_PROGRESS", "1") != "0"


def bar(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "", **kwargs: Any) -> tqdm:
    interactive = sys.stderr.isatty()
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        file=sys.stderr,
        disable=not enabled(),
        dynamic_ncols=True,
        leave=not interactive,
        mininterval=0.5 if interactive else 30.0,
        **kwargs,
    )
