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
from nasbench_repro.language_model import train_language_model
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
    # The genotype kinds `search` produces (nasbench_repro.data.cell_kind: "cnn" on images, "rnn" on text);
    # the runner refuses a search of another kind before anything runs, saying why where `search_refusals` does
    # (kind -> the reason, e.g. the method's papers never searched that space).
    search_kinds: ClassVar[tuple[str, ...]] = ("cnn",)
    search_refusals: ClassVar[dict[str, str]] = {}
    # (kind, variant) -> why that variant does not search that kind although the method does (and what does)
    variant_refusals: ClassVar[dict[tuple[str, str | None], str]] = {}

    def variant(self, protocol: Protocol) -> str:
        """A short label for the settings that make this run a distinct row (e.g. "2nd order")."""
        return "default"

    def search(self, ctx: Context) -> PhaseResult:
        raise NotImplementedError(f"{self.name} has no search phase")

    def evaluate(self, genotype: Any, ctx: Context) -> PhaseResult:
        """Train `genotype` from scratch with the evaluation protocol its space shares across
        methods: a CNN on images, a recurrent cell's language model on text."""
        if genotype.kind == "rnn":
            return train_language_model(genotype, ctx)
        return train_from_scratch(genotype, ctx)

    def load_genotype(self, text_or_data: Any, kind: str | None = None) -> Any:
        """Turn a stored dict, a registered name, a JSON file or a pasted string into a genotype;
        `kind` ("cnn" or "rnn", from the dataset) decides which cell a shared name such as DARTS_V2 means."""
        return resolve_genotype(text_or_data, kind)
