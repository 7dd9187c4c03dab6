"""A run specification: everything that decides what a run computes."""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nasbench_repro.errors import UserError
from nasbench_repro.seeding import DETERMINISTIC, FAST

RUN_PHASES = {"search": ("search",), "evaluate": ("evaluate",), "reproduce": ("search", "evaluate")}
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16")
# How image tensors lie in memory: `auto` chooses per device (context.memory_format_for).
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")


@dataclass(frozen=True)
class RunSpec:
    method: str
    dataset: str
    phase: str = "reproduce"
    seed: int = 0
    budget: str = "paper"
    overrides: dict[str, Any] = field(default_factory=dict)
    variant: str | None = None  # a named variant of the method's protocol file; None: its default protocol
    genotype: str | None = None  # evaluate phase: a registered name, JSON file or pasted string
    device: str = "auto"
    precision: str = "fp32"
    memory_format: str = "auto"
    determinism: str = DETERMINISTIC
    allow_unofficial_data: bool = False

    def __post_init__(self) -> None:
        if self.phase not in RUN_PHASES:
            raise UserError(f"unknown phase {self.phase!r}; use one of {', '.join(RUN_PHASES)}")
        if self.device not in DEVICES:
            raise UserError(f"unknown device {self.device!r}; use one of {', '.join(DEVICES)}")
        if self.precision not in PRECISIONS:
            raise UserError(f"unknown precision {self.precision!r}; use one of {', '.join(PRECISIONS)}")
        if self.memory_format not in MEMORY_FORMATS:
            raise UserError(f"unknown memory format {self.memory_format!r}; use one of {', '.join(MEMORY_FORMATS)}")
        if self.determinism not in (DETERMINISTIC, FAST):
            raise UserError(f"unknown determinism mode {self.determinism!r}")
        if self.phase == "evaluate" and not self.genotype:
            raise UserError("--phase evaluate needs --genotype NAME|FILE|STRING (the architecture to train)")

    @property
    def phases(self) -> tuple[str, ...]:
        return RUN_PHASES[self.phase]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})


def new_run_id(spec: RunSpec, dataset: str) -> str:
    """Sortable and readable: UTC time, method, the dataset that runs, seed, a random suffix."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{spec.method}-{dataset}-s{spec.seed}-{secrets.token_hex(2)}"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
