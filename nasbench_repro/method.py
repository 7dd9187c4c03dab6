"""The contract between the runner and a NAS method.

A method owns only its algorithm: `search(ctx)` returns the architecture it found, and
`evaluate(genotype, ctx)` trains that architecture from scratch (the shared evaluation
protocol by default). Seeds, devices, precision, timing, memory, checkpoints, progress
and records belong to the runner and reach the method through the `Context`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from nasbench_repro.context import Context
    from nasbench_repro.protocol import Protocol


@dataclass
class PhaseResult:
    """What a phase produced: outcome metrics (error, params, ...) and, for search, a genotype."""

    metrics: dict[str, Any] = field(default_factory=dict)
    genotype: Any = None  # a Genotype (anything with to_dict()), or None


class Method:
    """Base class for methods; subclasses set `name` and implement `search`."""

    name: ClassVar[str]
    headline_dataset: ClassVar[str] = "cifar10"
    config_file: ClassVar[Path | None] = None  # default: methods/configs/<name>.toml

    def variant(self, protocol: Protocol) -> str:
        """A short label for the settings that make this run a distinct row (e.g. "2nd order")."""
        return "default"

    def search(self, ctx: Context) -> PhaseResult:
        raise NotImplementedError(f"{self.name} has no search phase")

    def evaluate(self, genotype: Any, ctx: Context) -> PhaseResult:
        """Train `genotype` from scratch with the evaluation protocol (shared by all CNN methods)."""
        from nasbench_repro.evaluation import train_from_scratch

        return train_from_scratch(genotype, ctx)

    def load_genotype(self, text_or_data: Any) -> Any:
        """Turn a stored dict, a registered name, a JSON file or a pasted string into a genotype."""
        from nasbench_repro.genotypes import resolve_genotype

        return resolve_genotype(text_or_data)
