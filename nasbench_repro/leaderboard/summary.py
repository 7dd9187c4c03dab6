"""What a run found, in one screen: the summary `nasbench run` ends with and `nasbench show`
prints for any stored record.

A summary is the leaderboard row its records make, built by `aggregate` and worded by the
report's own cell functions, so the two never disagree: method and variant, dataset, budget,
data, device and seeds; the outcome beside the paper's number and claim id with the verdict
or the reason there is none; GPU-days and peak memory per phase. Below the row come its runs:
status (with the reason and resume command of one that did not complete), the genotype one
line per cell, and where the record is.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tabulate import tabulate

from nasbench_repro.leaderboard.aggregate import Row, aggregate, largest_peak, to_run
from nasbench_repro.leaderboard.claims import Claims, load_claims
from nasbench_repro.leaderboard.report import BLANK, METRIC_HEADERS, cost, mean_with_std, notes_cell, paper_cell
from nasbench_repro.records import phase_peak_memory, read_record

PHASES = ("search", "evaluate")


def data_label(record: dict) -> str:
    """Which data ran: the dataset (its files official or not) or a stand-in, by name."""
    data = record.get("data") or {}
    name = record["dataset"]
    if data.get("stand_in") or name != record["spec"]["dataset"]:
        return f"{name}, a stand-in for {record['spec']['dataset']}"
    official = data.get("official")
    if official is None:
        return f"{name} (no official checksums to compare)"
    return f"{name} ({'official' if official else 'unofficial'} files)"


def genotype_lines(genotype: dict | None) -> list[str]:
    """One line per cell: each edge as operation(input node), then the nodes the cell concatenates."""
    if not genotype:
        return []
    lines = []
    for cell, edges in genotype.items():
        if cell.endswith("concat"):
            continue
        concat = genotype.get(f"{cell}_concat", genotype.get("concat"))
        if edges is None:
            lines.append(f"{cell}: none searched (the network's fixed cell)")
        elif isinstance(edges, list) and all(isinstance(edge, list) and len(edge) == 2 for edge in edges):
            text = " ".join(f"{op}({source})" for op, source in edges)
            lines.append(f"{cell}: {text}" + (f" | concat {concat}" if concat is not None else ""))
        else:
            lines.append(f"{cell}: {json.dumps(edges)}")
    return lines


def _mean(values: Iterable[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return statistics.fmean(known) if known else None


def _entry(row: Row, members: list[dict]) -> dict[str, Any]:
    """The row's summary as plain data. Costs and devices come from the complete runs the
    leaderboard averages; where none completed, from the runs there are (what they spent)."""
    counted = [run.record for run in row.runs] or members
    mean, std = row.mean_std()
    claim = row.claim
    return {
        "method": row.key.method,
        "variant": row.key.variant,
        "dataset": row.key.dataset,
        "data": sorted({data_label(record) for record in members}),
        "budget": row.key.budget,
        "phase": row.key.phase,
        "genotype_given": row.key.genotype or None,
        "overrides": json.loads(row.key.overrides) if row.key.overrides else {},
        "devices": sorted({to_run(record).device for record in counted}),
        "seeds": sorted({record["spec"]["seed"] for record in members}),
        "complete_seeds": [run.seed for run in row.runs],
        "metric": row.metric,
        "mean": mean,
        "std": std,
        "paper": None
        if claim is None
        else {
            "claim": claim.id,
            "value": claim.value,
            "spread": claim.spread,
            "text": paper_cell(row),
            "verified": claim.verified,
        },
        "verdict": row.verdict.label,
        "note": notes_cell(row),
        "gpu_days": {
            phase: _mean((record["cost"].get(phase) or {}).get("gpu_days") for record in counted) for phase in PHASES
        },
        "peak_memory_gb": {
            phase: dict(
                zip(
                    ("gb", "kind"),
                    largest_peak(phase_peak_memory(record["cost"].get(phase)) for record in counted),
                    strict=True,
                )
            )
            for phase in PHASES
        },
        "runs": [
            {
                "run_id": record["run_id"],
                "seed": record["spec"]["seed"],
                "status": record["status"],
                "reason": record.get("reason"),
                "genotype": genotype_lines(record.get("genotype")),
                "record": record.get("_path"),
            }
            for record in sorted(members, key=lambda record: record["run_id"])
        ],
    }


def summarise(records: list[dict], claims: Claims | None = None) -> list[dict[str, Any]]:
    """One entry per leaderboard row the records make (records carry `_path`, as `load_records` sets it)."""
    board = aggregate(records, claims or load_claims())
    entries = []
    for row in board.rows:
        members = [record for record in records if to_run(record).key == row.key]
        if members:
            entries.append(_entry(row, members))
    return entries


def summarise_files(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """`summarise` over record files, each read and validated (an invalid one is a one-line error)."""
    records = []
    for path in paths:
        record = read_record(path)
        record["_path"] = str(path)
        records.append(record)
    return summarise(records)


def _phase_costs(entry: dict) -> tuple[str, str]:
    gpu_days, memory = [], []
    for phase, label in (("search", "search"), ("evaluate", "evaluation")):
        if entry["gpu_days"][phase] is not None:
            gpu_days.append(f"{label} {cost(entry['gpu_days'][phase])}")
        peak = entry["peak_memory_gb"][phase]
        if peak["gb"] is not None:
            memory.append(f"{label} {peak['gb']:.3g} GB ({peak['kind']})")
    return " · ".join(gpu_days) or BLANK, " · ".join(memory) or BLANK


def render(entries: list[dict[str, Any]]) -> str:
    """The summary as text: a two-column table per row, then its runs."""
    blocks = []
    for entry in entries:
        complete = len(entry["complete_seeds"])
        outcome = mean_with_std(entry["mean"], entry["std"])
        if complete > 1:
            outcome += f" (mean of {complete} seeds)"
        gpu_days, memory = _phase_costs(entry)
        setup = [entry["phase"]] + ([f"cell {entry['genotype_given']}"] if entry["genotype_given"] else [])
        setup += [f"overrides {json.dumps(entry['overrides'], sort_keys=True)}"] if entry["overrides"] else []
        rows = [
            ["method", f"{entry['method']} ({entry['variant']})"],
            ["dataset", entry["dataset"]],
            ["budget", entry["budget"]],
            ["setup", "; ".join(setup)],
            ["data", "; ".join(entry["data"])],
            ["device", "; ".join(entry["devices"]) or BLANK],
            ["seeds", ", ".join(map(str, entry["seeds"])) + f" ({complete} complete)"],
            [METRIC_HEADERS.get(entry["metric"], entry["metric"]), outcome],
            ["paper", entry["paper"]["text"] if entry["paper"] else BLANK],
            ["verdict", f"{entry['verdict'] or 'none'}: {entry['note']}"],
            ["GPU-days", gpu_days],
            ["peak memory", memory],
        ]
        for run in entry["runs"]:
            status = run["status"] + (f": {run['reason']}" if run["reason"] else "")
            rows.append([f"seed {run['seed']}", f"{run['run_id']} {status}"])
            rows.extend(["", line] for line in run["genotype"])
            rows.append(["", f"record: {run['record']}"])
        blocks.append(tabulate(rows, tablefmt="plain", disable_numparse=True))
    return "\n\n".join(blocks)
