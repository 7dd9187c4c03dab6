"""Throughput of the CIFAR training pipeline on the CPU: gather, crop, flip, normalise (and cutout).

Under the project's default `--benchmark-disable` each benchmark runs once, as a test;
`pytest tests/test_bench_data.py --benchmark-enable` measures. Batches per second =
BATCHES_PER_ROUND / the reported mean time.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nasbench_repro.data.cifar10 import SHAPES, CifarData, CifarRelease

BATCHES_PER_ROUND = 20


@pytest.fixture(scope="module")
def data() -> CifarData:
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, (5000, 3, 32, 32)).astype(np.uint8)
    labels = rng.randint(0, 10, 5000).astype(np.int64)
    release = CifarRelease(images, labels, images[:1000], labels[:1000], list(SHAPES))
    return CifarData(release, torch.device("cpu"), torch.Generator().manual_seed(0))


def take(stream, count: int) -> int:
    """Draw `count` batches (fewer if the epoch is shorter); returns how many came."""
    return sum(1 for _ in zip(range(count), stream, strict=False))


def test_evaluation_batches_of_96_with_cutout(benchmark, data):
    stream = data.train_batches(None, 96, cutout_length=16)
    benchmark.extra_info["batches_per_round"] = BATCHES_PER_ROUND
    assert benchmark(take, stream, BATCHES_PER_ROUND) == BATCHES_PER_ROUND


def test_search_batches_of_64(benchmark, data):
    weights, _ = data.search_batches(None, 0.5, 64)
    benchmark.extra_info["batches_per_round"] = BATCHES_PER_ROUND
    assert benchmark(take, weights, BATCHES_PER_ROUND) == BATCHES_PER_ROUND
