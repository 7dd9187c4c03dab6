"""Builds valid run records for leaderboard and stability tests, without running anything."""

from __future__ import annotations

import itertools
from pathlib import Path

from nasbench_repro import records

SECONDS_PER_DAY = 86_400
_serial = itertools.count()  # unique run ids, the same in every session


def make_record(
    method: str = "darts",
    dataset: str = "cifar10",
    variant: str = "2nd order",
    budget: str = "paper",
    seed: int = 0,
    status: str = "complete",
    error: float | None = 2.8,
    data: str | None = None,
    overrides: dict | None = None,
    phase: str = "reproduce",
    started: str = "2025-01-01T00:00:00+00:00",
    run_id: str | None = None,
    device: str = "cuda",
    search_gpu_days: float = 1.0,
    evaluate_gpu_days: float = 1.5,
    peak_bytes: int = 3_000_000_000,
    epochs: int = 3,
    metrics: dict | None = None,
    search_protocol: dict | None = None,
    genotype: str | None = None,
) -> dict:
    """A record shaped like the runner's, with the outcome and cost given here."""
    metric = "test_ppl" if dataset in ("ptb", "wt2") else "test_error_pct"
    outcome = {metric: error, "params_millions": 3.3, "madds_millions": 500.0} if error is not None else {}
    cuda = device == "cuda"

    def cost(gpu_days: float) -> dict:
        return {
            "wall_seconds": gpu_days * SECONDS_PER_DAY,
            "gpu_days": gpu_days,
            "device_count": 1,
            "peak_memory": {
                "cuda_max_allocated_bytes": peak_bytes if cuda else None,
                "saved_tensors_peak_bytes": None if cuda else peak_bytes // 2,
                "rss_peak_bytes": peak_bytes,
            },
        }

    search_curve = [
        {
            "epoch": epoch,
            "train_loss": 1.0 / (epoch + 1),
            "train_acc": 0.5,
            "valid_loss": 1.0,
            "valid_acc": 0.5,
            "genotype": "g",
            "normal_skip_connections": epoch + seed % 2,
            "arch_entropy": 2.0 - 0.1 * epoch,
        }
        for epoch in range(epochs)
    ]
    return {
        "schema_version": records.SCHEMA_VERSION,
        "run_id": run_id or f"{started[:10]}-{method}-{dataset}-{budget}-s{seed}-{next(_serial):04d}",
        "status": status,
        "reason": None if status == "complete" else f"{status} in a test",
        "spec": {
            "method": method,
            "dataset": dataset,
            "phase": phase,
            "seed": seed,
            "budget": budget,
            "overrides": overrides or {},
            "genotype": genotype,
            "device": device,
            "precision": "fp32",
        },
        "variant": variant,
        "dataset": data or dataset,
        "budget": budget,
        "protocol": {"paper": "test", "values": {"search": search_protocol or {}}, "sources": {}, "changed": {}},
        "data": {"official": data is None},
        "genotype": None,
        "metrics": {**outcome, **(metrics or {})},
        "cost": {"search": cost(search_gpu_days), "evaluate": cost(evaluate_gpu_days)},
        "curves": {"search": search_curve, "evaluate": []},
        "environment": {
            "device": device,
            "device_name": "NVIDIA H100 80GB HBM3" if cuda else "CPU: test (2 threads)",
            "device_count": 1,
            "torch": "2.14.1",
            "git_commit": "abc",
            "determinism": {"mode": "deterministic"},
        },
        "started_utc": started,
    }


def write(results_dir: Path, **fields) -> Path:
    return records.write_record(results_dir, make_record(**fields))
