"""The contract between the runner and a NAS method.

A method owns only its algorithm: `search(ctx)` returns the architecture it found, and
`evaluate(genotype, ctx)` trains that architecture from scratch (the shared evaluation
protocol by default). Seeds, devices, precision, timing, memory, checkpoints, progress
and records belong to the runner and reach the method through the `Context`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from nasbench_repro.context import Context, PhaseResult
from nasbench_repro.evaluation import train_from_scratch
from nasbench_repro.protocol import Domain, Protocol
from nasbench_repro.spaces.genotypes import resolve_genotype

__all__ = ["Context", "Method", "PhaseResult"]


class Method:
    """Base class for methods; subclasses set `name` and implement `search`."""

    name: ClassVar[str]
    headline_dataset: ClassVar[str] = "cifar10"
    config_file: ClassVar[Path | None] = None  # default: methods/configs/<name>.toml
    # Domains of the protocol keys only this method reads (shared keys: nasbench_repro.protocol.DOMAINS).
    protocol_domains: ClassVar[dict[str, Domain]] = {}

    def variant(self, protocol: Protocol) -> str:
        """A short label for the settings that make this run a distinct row (e.g. "2nd order")."""
        return "default"

    def search(self, ctx: Context) -> PhaseResult:
        raise NotImplementedError(f"{self.name} has no search phase")

    def evaluate(self, genotype: Any, ctx: Context) -> PhaseResult:
        """Train `genotype` from scratch with the evaluation protocol (shared by all CNN methods)."""
        return train_from_scratch(genotype, ctx)

    def load_genotype(self, text_or_data: Any) -> Any:
        """Turn a stored dict, a registered name, a JSON file or a pasted string into a genotype."""
        return resolve_genotype(text_or_data)
