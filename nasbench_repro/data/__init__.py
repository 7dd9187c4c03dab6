"""Datasets by name. Resolving checks the files (and chooses a stand-in where allowed)
before a run starts; loading happens on the method's first use of `ctx.data`.

A resolver takes a `DataRequest` and returns a `DataSource` whose `name` is what the
record stores: a stand-in is recorded under its own name, never as the dataset it replaces.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nasbench_repro.catalog import import_target
from nasbench_repro.errors import UserError


@dataclass(frozen=True)
class DataRequest:
    dataset: str
    root: Path
    budget: str
    allow_unofficial: bool = False
    download: bool = True


@dataclass
class DataSource:
    name: str
    description: dict[str, Any]
    load: Callable[[torch.device, torch.Generator], Any]
    notices: list[str] = field(default_factory=list)  # one-line announcements for the user


Resolver = Callable[[DataRequest], DataSource]

# Datasets whose architectures are recurrent cells (language models); every other dataset takes CNN cells.
TEXT_DATASETS = ("ptb", "wt2")
# Datasets no mission paper searches on, and what the papers do instead (a search there is refused in one line).
SEARCH_REFUSALS = {
    "wt2": "the papers (DARTS, GDAS) search the recurrent cell on PTB and transfer it to WikiText-2; search with "
    "--dataset ptb, or train a cell on wt2 with --phase evaluate --genotype NAME (e.g. DARTS_V2)",
}


def cell_kind(dataset: str) -> str:
    """The genotype kind a dataset's networks are built from: "rnn" for text, "cnn" otherwise."""
    return "rnn" if dataset in TEXT_DATASETS else "cnn"


_RESOLVERS: dict[str, str | Resolver] = {
    "cifar10": "nasbench_repro.data.cifar10:resolve",
    "imagenet": "nasbench_repro.data.imagenet:resolve",
    "ptb": "nasbench_repro.data.text:resolve_ptb",
    "wt2": "nasbench_repro.data.text:resolve_wt2",
}


def register_dataset(name: str, resolver: Resolver) -> None:
    _RESOLVERS[name] = resolver


def unregister_dataset(name: str) -> None:
    _RESOLVERS.pop(name, None)


def dataset_names() -> list[str]:
    return sorted(_RESOLVERS)


def resolver_exists(name: str) -> bool:
    target = _RESOLVERS.get(name)
    return target is not None and (not isinstance(target, str) or import_target(target) is not None)


def resolve(request: DataRequest) -> DataSource:
    target = _RESOLVERS.get(request.dataset)
    if target is None:
        raise UserError(f"unknown dataset {request.dataset!r}; known datasets: {', '.join(dataset_names())}")
    if isinstance(target, str):
        target = import_target(target)
        if target is None:
            raise UserError(f"dataset {request.dataset!r} is not implemented yet")
    return target(request)
