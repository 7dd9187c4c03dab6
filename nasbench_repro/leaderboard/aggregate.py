"""Run records → leaderboard rows, one per (method, variant, dataset, data, budget, phase, overrides).

A row summarises the complete runs of a group, the newest record per seed (a re-run of a
seed replaces it rather than counting twice), and puts the paper's headline number beside
them. Only a paper-budget run on the real dataset with no overrides is a reproduction and
gets a verdict; everything else shows why not. Interrupted and failed runs are counted
per group and never averaged in.

The result depends only on the set of records, not their order: groups, seeds and values
are sorted before anything is summed.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

from nasbench_repro import catalog
from nasbench_repro.budgets import BUDGETS
from nasbench_repro.data import cell_kind
from nasbench_repro.leaderboard.claims import Claim, Claims
from nasbench_repro.records import PEAK_MEMORY_KINDS, phase_peak_memory
from nasbench_repro.spaces.genotypes import find_published

PRIMARY_METRIC = {"cifar10": "test_error_pct", "imagenet": "test_error_pct", "ptb": "test_ppl", "wt2": "test_ppl"}
REPRODUCTION_BUDGET = next(name for name, budget in BUDGETS.items() if budget.is_reproduction)
# Comparisons of decimal numbers read from files: 2.85 - 2.76 must count as within ± 0.09.
FLOAT_SLACK = 1e-9
SEEDS_FOR_SIGMA = 2
SIGMA_MULTIPLIER = 2.0
BYTES_PER_GB = 1e9


def primary_metric(dataset: str) -> str:
    """The outcome a dataset is ranked by: top-1 error for images, perplexity for text."""
    return PRIMARY_METRIC.get(dataset, "test_error_pct")


@dataclass(frozen=True)
class GroupKey:
    method: str
    variant: str
    dataset: str  # what was asked for (spec.dataset)
    data: str  # what actually ran: differs for a stand-in
    budget: str
    phase: str
    genotype: str  # the cell an evaluation-only run trained (its published name when it has one); else ""
    overrides: str  # canonical JSON; "" when the protocol was not modified

    @property
    def is_reproduction_setup(self) -> bool:
        return self.budget == REPRODUCTION_BUDGET and self.data == self.dataset and not self.overrides

    def why_not_a_reproduction(self) -> str | None:
        if self.budget != REPRODUCTION_BUDGET:
            return f"{self.budget} budget: not a reproduction"
        if self.data != self.dataset:
            return f"stand-in data {self.data}: not a reproduction"
        if self.overrides:
            return "modified protocol (overrides): not a reproduction"
        return None


@dataclass(frozen=True)
class Run:
    """One record, reduced to what the leaderboard and its plots read."""

    key: GroupKey
    seed: int
    status: str
    started_utc: str
    run_id: str
    metrics: dict = field(compare=False)
    search_gpu_days: float | None
    evaluate_gpu_days: float | None
    peak_memory_bytes: int | None
    peak_memory_kind: str | None  # a PEAK_MEMORY_KINDS name: "cuda", "activations" (CPU runs) or "rss"
    device: str
    record: dict = field(compare=False, repr=False)

    def metric(self, name: str) -> float | None:
        value = self.metrics.get(name)
        return float(value) if isinstance(value, int | float) and math.isfinite(value) else None

    @property
    def total_gpu_days(self) -> float | None:
        costs = [cost for cost in (self.search_gpu_days, self.evaluate_gpu_days) if cost is not None]
        return sum(costs) if costs else None


def given_genotype(spec: dict) -> str:
    """The cell an evaluation-only run was given, by its published name when it is one (aliases resolved,
    among the cells of the dataset's kind: on ptb "GDAS" is the recurrent GDAS cell, not GDAS_V1)."""
    given = spec.get("genotype")
    if not given or spec["phase"] != "evaluate":
        return ""
    published = find_published(given, cell_kind(spec.get("dataset", "")))
    return published.name if published is not None else given


def _peak_memory(cost: dict) -> tuple[int | None, str | None]:
    """The search phase's peak (the memory PC-DARTS reduces), else the evaluation's."""
    for phase in ("search", "evaluate"):
        peak, kind = phase_peak_memory(cost.get(phase))
        if peak is not None:
            return peak, kind
    return None, None


def largest_peak(peaks: Iterable[tuple[int | None, str | None]]) -> tuple[float | None, str | None]:
    """The largest of several peaks in GB, among those of the most preferred kind any of them has."""
    peaks = list(peaks)
    for _, kind in PEAK_MEMORY_KINDS:
        of_kind = [peak for peak, peak_kind in peaks if peak_kind == kind and peak is not None]
        if of_kind:
            return max(of_kind) / BYTES_PER_GB, kind
    return None, None


def _device_label(environment: dict) -> str:
    name = environment.get("device_name") or environment.get("device") or "unknown device"
    count = environment.get("device_count") or 1
    return f"{count}x {name}" if count > 1 else name


def to_run(record: dict) -> Run:
    spec = record["spec"]
    overrides = spec.get("overrides") or {}
    cost = record["cost"]
    peak, kind = _peak_memory(cost)
    return Run(
        key=GroupKey(
            method=spec["method"],
            variant=record["variant"],
            dataset=spec["dataset"],
            data=record["dataset"],
            budget=record["budget"],
            phase=spec["phase"],
            genotype=given_genotype(spec),
            overrides=json.dumps(overrides, sort_keys=True) if overrides else "",
        ),
        seed=spec["seed"],
        status=record["status"],
        started_utc=record["started_utc"],
        run_id=record["run_id"],
        metrics=record["metrics"],
        search_gpu_days=(cost.get("search") or {}).get("gpu_days"),
        evaluate_gpu_days=(cost.get("evaluate") or {}).get("gpu_days"),
        peak_memory_bytes=peak,
        peak_memory_kind=kind,
        device=_device_label(record["environment"]),
        record=record,
    )


def newest_per_seed(runs: Iterable[Run]) -> list[Run]:
    """The latest run of each seed (by start time, then run id), in seed order."""
    newest: dict[int, Run] = {}
    for run in runs:
        held = newest.get(run.seed)
        if held is None or (run.started_utc, run.run_id) > (held.started_utc, held.run_id):
            newest[run.seed] = run
    return [newest[seed] for seed in sorted(newest)]


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (None with fewer than two values)."""
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) >= 2 else None


def _mean_of(values: Iterable[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return statistics.fmean(known) if known else None


@dataclass(frozen=True)
class Verdict:
    label: str | None  # "reproduced", "worse than paper", "better than paper"; None: no verdict
    note: str  # the basis of the verdict, or why there is none


def judge(key: GroupKey, metric: str, values: list[float], claim: Claim | None) -> Verdict:
    """Within the paper's ± spread when it gives one, else within 2σ of our seeds."""
    reason = key.why_not_a_reproduction()
    if reason:
        return Verdict(None, reason)
    if not values:
        return Verdict(None, f"no {metric} recorded")
    if claim is None:
        subject = f"cell {key.genotype!r}" if key.genotype else f"variant {key.variant!r}"
        return Verdict(None, f"no paper claim for {subject}")
    if not claim.comparable:
        return Verdict(None, "paper gives only a bound" if claim.qualifier else "paper number not recovered")
    mean, std = mean_std(values)
    difference = mean - claim.value
    if claim.spread is not None:
        tolerance, basis = claim.spread, f"paper ± {claim.spread:g}"
    elif len(values) >= SEEDS_FOR_SIGMA:
        tolerance, basis = SIGMA_MULTIPLIER * std, f"2σ of {len(values)} seeds"
    else:
        return Verdict(None, f"paper gives no spread and {len(values)} seed cannot give one")
    if abs(difference) <= tolerance + FLOAT_SLACK:
        return Verdict("reproduced", f"within {basis}")
    return Verdict("worse than paper" if difference > 0 else "better than paper", f"outside {basis}")


@dataclass(frozen=True)
class Row:
    key: GroupKey
    metric: str
    runs: tuple[Run, ...]  # complete, newest per seed, in seed order; empty for a gap row
    interrupted: int
    failed: int
    claim: Claim | None
    verdict: Verdict

    @property
    def n_seeds(self) -> int:
        return len(self.runs)

    @property
    def is_gap(self) -> bool:
        """A mission method × dataset × headline variant with no records at all."""
        return not self.runs and not self.interrupted and not self.failed

    def values(self, metric: str | None = None) -> list[float]:
        metric = metric or self.metric
        return [value for value in (run.metric(metric) for run in self.runs) if value is not None]

    def mean_std(self, metric: str | None = None) -> tuple[float | None, float | None]:
        return mean_std(self.values(metric))

    def mean_of(self, attribute: str) -> float | None:
        return _mean_of(getattr(run, attribute) for run in self.runs)

    @property
    def difference(self) -> float | None:
        """Ours minus the paper's, shown only where the row is a reproduction."""
        mean, _ = self.mean_std()
        if not self.key.is_reproduction_setup or mean is None or self.claim is None or not self.claim.comparable:
            return None
        return mean - self.claim.value

    @property
    def peak_memory(self) -> tuple[float | None, str | None]:
        """The largest peak over seeds in GB, of the most preferred kind any seed has."""
        return largest_peak((run.peak_memory_bytes, run.peak_memory_kind) for run in self.runs)

    @property
    def devices(self) -> list[str]:
        return sorted({run.device for run in self.runs})


def _rank(name: str, order: list[str]) -> tuple[int, str]:
    """Listed names in their listed order, then the others alphabetically."""
    return (order.index(name), name) if name in order else (len(order), name)


def dataset_order(dataset: str) -> tuple[int, str]:
    return _rank(dataset, list(catalog.MISSION_DATASETS))


def row_order(row: Row, claims: Claims) -> tuple:
    """Mission order of datasets and methods, the papers' variants first, then budgets paper → smoke."""
    key = row.key
    return (
        dataset_order(key.dataset),
        _rank(key.method, [info.name for info in catalog.MISSION_METHODS]),
        _rank(key.variant, claims.headline_variants(key.method, key.dataset)),
        _rank(key.budget, list(BUDGETS)),
        key.data,
        key.phase,
        key.genotype,
        key.overrides,
    )


@dataclass(frozen=True)
class Leaderboard:
    rows: tuple[Row, ...]  # measured groups and gap rows, in row_order
    record_count: int
    newest_started_utc: str | None  # derived from the records: the report carries no clock time

    def for_dataset(self, dataset: str) -> list[Row]:
        return [row for row in self.rows if row.key.dataset == dataset]

    @property
    def datasets(self) -> list[str]:
        return sorted({row.key.dataset for row in self.rows}, key=dataset_order)

    @property
    def measured_runs(self) -> list[Run]:
        return [run for row in self.rows for run in row.runs]


def _gap_rows(measured: list[Row], claims: Claims) -> list[Row]:
    """Every mission method × dataset × headline variant with no records, shown as not yet reproduced.

    A variant counts as run when a row carries its name or was matched to its claim (an
    evaluation of the published cell)."""
    seen = {(row.key.method, row.key.dataset, row.key.variant) for row in measured}
    seen |= {(row.claim.method, row.claim.dataset, row.claim.variant) for row in measured if row.claim is not None}
    gaps = []
    for info in catalog.MISSION_METHODS:
        for dataset in catalog.MISSION_DATASETS:
            for variant in claims.headline_variants(info.name, dataset) or ["default"]:
                if (info.name, dataset, variant) in seen:
                    continue
                metric = primary_metric(dataset)
                key = GroupKey(info.name, variant, dataset, dataset, REPRODUCTION_BUDGET, "", "", "")
                claim = claims.find(info.name, variant, dataset, metric)
                gaps.append(Row(key, metric, (), 0, 0, claim, Verdict(None, "not yet reproduced")))
    return gaps


def aggregate(records: Iterable[dict], claims: Claims) -> Leaderboard:
    """Group records into rows, add the papers' numbers and verdicts, and list what has not run."""
    runs = [to_run(record) for record in records]
    groups: dict[GroupKey, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.key, []).append(run)
    measured = []
    for key, members in groups.items():
        complete = tuple(newest_per_seed(run for run in members if run.status == "complete"))
        metric = primary_metric(key.dataset)
        claim = claims.find(key.method, key.variant, key.dataset, metric, key.genotype)
        values = [value for value in (run.metric(metric) for run in complete) if value is not None]
        measured.append(
            Row(
                key=key,
                metric=metric,
                runs=complete,
                interrupted=sum(run.status == "interrupted" for run in members),
                failed=sum(run.status == "failed" for run in members),
                claim=claim,
                verdict=judge(key, metric, values, claim),
            )
        )
    rows = measured + _gap_rows(measured, claims)
    rows.sort(key=lambda row: row_order(row, claims))
    return Leaderboard(
        rows=tuple(rows),
        record_count=len(runs),
        newest_started_utc=max((run.started_utc for run in runs), default=None),
    )
