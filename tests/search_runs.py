"""Tiny searches, in process or through the real runner (stand-in data generated on disk,
smoke budget), shared by the GDAS, NASP and P-DARTS tests."""

from __future__ import annotations

from pathlib import Path

import torch

from nasbench_repro.differentiable import BilevelSearch, DifferentiableMethod, ImageClassification
from nasbench_repro.protocol import apply_overrides, load_protocol
from nasbench_repro.records import read_record
from nasbench_repro.runner import Paths, execute
from nasbench_repro.spec import RunSpec


def tiny_search(method: DifferentiableMethod, **overrides) -> BilevelSearch:
    """The method's CIFAR-10 search protocol on 8x8 images, 4 channels, 3 cells, batch 4 (seed 0)."""
    protocol = load_protocol(method.name, "cifar10")
    apply_overrides(protocol, {"init_channels": 4, "layers": 3, "batch_size": 4, **overrides}, ["search"])
    torch.manual_seed(0)
    return method.build_search(protocol.phase("search"), ImageClassification(10, (3, 8, 8)))


def random_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(4, 3, 8, 8, generator=generator), torch.randint(0, 10, (4,), generator=generator)


TINY = {"search.train_examples": 64, "search.batch_size": 16, "search.init_channels": 4, "search.layers": 3}


def search_record(tmp_path: Path, method: str, seed: int = 0, resume: str | None = None, **overrides) -> dict:
    """The record of a search of `method` shrunk to seconds (`overrides` add to TINY); with
    `resume`, continue that run instead."""
    spec = RunSpec(
        method=method, dataset="cifar10", phase="search", seed=seed, budget="smoke", overrides={**TINY, **overrides}
    )
    paths = Paths(tmp_path / "results", tmp_path / "runs", tmp_path / "data")
    outcome = execute(None if resume else spec, paths, resume=resume, notify=lambda line: None)
    return read_record(outcome.record_path)


def assert_deterministic_per_seed(tmp_path: Path, method: str, **overrides) -> dict:
    first = search_record(tmp_path / "a", method, 0, **overrides)
    again = search_record(tmp_path / "b", method, 0, **overrides)
    other = search_record(tmp_path / "c", method, 1, **overrides)
    assert first["status"] == "complete" and first["dataset"] == "synthetic-shapes"
    assert first["curves"] == again["curves"] and first["genotype"] == again["genotype"]
    assert first["metrics"] == again["metrics"]
    assert first["curves"] != other["curves"]
    return first
