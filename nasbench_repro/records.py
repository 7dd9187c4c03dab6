"""Run records: one schema-versioned JSON file per run, and a loader into pandas.

Layout: `results/<method>/<dataset>/<budget>/<run_id>.json`. A record holds
- `spec`: what was asked (method, dataset, phase, seed, budget, overrides, device, precision);
- `variant`: the method's own label for its settings (e.g. "2nd order", "K=4, EN");
- `protocol`: every value that ran, its source, and what the budget or user changed;
- `data`: which data actually ran (a stand-in is recorded under its own dataset name);
- `genotype`, `metrics` (outcomes: error, perplexity, parameters, multiply-adds);
- `cost`: what the run cost per phase (wall seconds, GPU-days, peak memory);
- `curves`: one row per epoch and phase; `environment`; `status` and `reason`.

Outcomes and curves are reproducible from the seed; `cost` is measured and is not.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from nasbench_repro.atomic import write_json
from nasbench_repro.errors import UserError

SCHEMA_VERSION = 1
STATUSES = ("complete", "interrupted", "failed")
REQUIRED = {
    "schema_version": int,
    "run_id": str,
    "status": str,
    "spec": dict,
    "variant": str,
    "dataset": str,
    "budget": str,
    "protocol": dict,
    "metrics": dict,
    "cost": dict,
    "curves": dict,
    "environment": dict,
    "started_utc": str,
}
SPEC_FIELDS = ("method", "dataset", "phase", "seed", "budget", "overrides")


# Record fields in order of preference, with the short name tables print. On CPU the bytes saved
# for backward are preferred to RSS: they are exact and per run, while RSS keeps the allocator's
# high-water mark across the runs of one process (a --sweep) and includes the interpreter.
PEAK_MEMORY_KINDS = (
    ("cuda_max_allocated_bytes", "cuda"),
    ("saved_tensors_peak_bytes", "activations"),
    ("rss_peak_bytes", "rss"),
)


def phase_peak_memory(phase_cost: dict | None) -> tuple[int | None, str | None]:
    """One phase's peak in bytes, of the most preferred kind it recorded, and that kind."""
    peaks = (phase_cost or {}).get("peak_memory") or {}
    for name, kind in PEAK_MEMORY_KINDS:
        if peaks.get(name) is not None:
            return peaks[name], kind
    return None, None


class InvalidRecordError(UserError):
    """One or more files under results/ are not valid run records."""


def record_path(results_dir: Path, record: dict) -> Path:
    return results_dir / record["spec"]["method"] / record["dataset"] / record["budget"] / f"{record['run_id']}.json"


def finite_or_none(value: Any) -> Any:
    """JSON has no NaN: a diverged metric is stored as null (the status says why)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(item) for item in value]
    return value


def write_record(results_dir: Path, record: dict) -> Path:
    """Validate and write atomically; returns the path."""
    record = finite_or_none(record)
    validate(record)
    path = record_path(results_dir, record)
    write_json(path, record)
    return path


def validate(record: Any, where: str = "record") -> None:
    if not isinstance(record, dict):
        raise InvalidRecordError(f"{where}: not a JSON object")
    for key, kind in REQUIRED.items():
        if not isinstance(record.get(key), kind):
            raise InvalidRecordError(f"{where}: field {key!r} missing or not {kind.__name__}")
    if record["schema_version"] != SCHEMA_VERSION:
        raise InvalidRecordError(
            f"{where}: schema_version {record['schema_version']} (this harness reads {SCHEMA_VERSION})"
        )
    if record["status"] not in STATUSES:
        raise InvalidRecordError(f"{where}: status {record['status']!r} is not one of {', '.join(STATUSES)}")
    missing = [name for name in SPEC_FIELDS if name not in record["spec"]]
    if missing:
        raise InvalidRecordError(f"{where}: spec lacks {', '.join(missing)}")


def read_record(path: Path) -> dict:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidRecordError(f"{path}: {error}") from None
    validate(record, str(path))
    return record


def record_files(results_dir: Path) -> list[Path]:
    """Every record file: `<method>/<dataset>/<budget>/*.json`, hidden temp files excluded."""
    return sorted(path for path in Path(results_dir).glob("*/*/*/*.json") if not path.name.startswith("."))


def load_records(results_dir: Path | str) -> list[dict]:
    """All records; any invalid file is named in the error rather than skipped."""
    records, problems = [], []
    for path in record_files(Path(results_dir)):
        try:
            record = read_record(path)
        except InvalidRecordError as error:
            problems.append(str(error))
            continue
        record["_path"] = str(path)  # where it was read from; never written back
        records.append(record)
    if problems:
        raise InvalidRecordError(f"{len(problems)} invalid record file(s): " + "; ".join(problems))
    return records


def _phase_cost(record: dict, phase: str, *path: str) -> Any:
    value: Any = record["cost"].get(phase)
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def flatten(record: dict) -> dict:
    """One DataFrame row: identity, outcomes and cost in flat, named columns."""
    spec, metrics, environment = record["spec"], record["metrics"], record["environment"]
    row = {
        "run_id": record["run_id"],
        "method": spec["method"],
        "variant": record["variant"],
        "dataset": record["dataset"],
        "budget": record["budget"],
        "phase": spec["phase"],
        "seed": spec["seed"],
        "overrides": json.dumps(spec["overrides"], sort_keys=True),
        "status": record["status"],
        "reason": record.get("reason"),
        "device": environment.get("device"),
        "device_name": environment.get("device_name"),
        "device_count": environment.get("device_count"),
        "determinism": environment.get("determinism", {}).get("mode"),
        "git_commit": environment.get("git_commit"),
        "started_utc": record["started_utc"],
        "ended_utc": record.get("ended_utc"),
        "genotype": json.dumps(record["genotype"], sort_keys=True) if record.get("genotype") else None,
        "data_official": record.get("data", {}).get("official"),
    }
    row.update({f"metric_{key}": value for key, value in metrics.items() if not isinstance(value, dict | list)})
    for phase in ("search", "evaluate"):
        row[f"{phase}_gpu_days"] = _phase_cost(record, phase, "gpu_days")
        row[f"{phase}_wall_seconds"] = _phase_cost(record, phase, "wall_seconds")
        row[f"{phase}_peak_memory_bytes"], row[f"{phase}_peak_memory_kind"] = phase_peak_memory(
            record["cost"].get(phase)
        )
        row[f"{phase}_saved_tensors_peak_bytes"] = _phase_cost(record, phase, "peak_memory", "saved_tensors_peak_bytes")
    row["path"] = record.get("_path")
    return row


def records_frame(results_dir: Path | str | None = None, records: Iterable[dict] | None = None) -> pd.DataFrame:
    """All records as a DataFrame, one row per run (see `flatten` for the columns)."""
    if records is None:
        records = load_records(results_dir)
    rows = [flatten(record) for record in records]
    return pd.DataFrame(rows).sort_values("run_id", ignore_index=True) if rows else pd.DataFrame()
