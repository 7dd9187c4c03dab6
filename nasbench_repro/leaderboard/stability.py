"""The seed-stability gate: does the latest set of seeds still land where it used to?

The set is the newest complete record per seed for one method, variant, dataset and budget
(and, for evaluation-only runs, one cell), without overrides. Its mean is checked against a
band: mean ± k·std from a baseline file committed under `results/baselines/` (two levels
deep, so the record loader, which reads only `results/<method>/<dataset>/<budget>/*.json`,
never takes it for a record), or, with no baseline, the paper's mean ± k·spread at the
paper budget. A band is never narrower than MIN_RELATIVE_TOLERANCE of its centre (and
MIN_ABSOLUTE_TOLERANCE): a baseline whose seeds agreed exactly (std 0) would otherwise fail
on the last digit of a different CPU's floats. Leaving the band in either direction fails:
a sudden improvement is as suspect as a loss.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

from nasbench_repro.atomic import write_json
from nasbench_repro.errors import UserError
from nasbench_repro.leaderboard.aggregate import REPRODUCTION_BUDGET, Run, mean_std, newest_per_seed, to_run
from nasbench_repro.leaderboard.claims import Claims

DEFAULT_K = 2.0
MIN_SEEDS = 2
MIN_RELATIVE_TOLERANCE = 0.01  # 1% of the band's centre, e.g. ± 0.03 points around a 2.8% error
MIN_ABSOLUTE_TOLERANCE = 0.01  # in the metric's unit, for centres at or near zero
BASELINE_KEYS = {
    "method": str,
    "dataset": str,
    "budget": str,
    "variant": str,
    "metric": str,
    "mean": float,
    "std": float,
    "k": float,
    "n_seeds": int,
}


@dataclass(frozen=True)
class SeedSet:
    method: str
    dataset: str
    data: str  # what actually ran: the dataset, or its stand-in
    budget: str
    variant: str
    genotype: str  # the cell of evaluation-only runs; "" for runs that searched
    metric: str
    runs: tuple[Run, ...]  # newest complete record per seed, in seed order

    @property
    def values(self) -> list[float]:
        return [run.metric(self.metric) for run in self.runs]

    @property
    def mean_std(self) -> tuple[float, float]:
        mean, std = mean_std(self.values)
        return mean, std

    @property
    def identity(self) -> dict[str, str]:
        """What a baseline must match to judge this seed set."""
        return {
            key: getattr(self, key) for key in ("method", "dataset", "data", "budget", "variant", "genotype", "metric")
        }


@dataclass(frozen=True)
class Band:
    centre: float
    spread: float
    k: float
    source: str

    @property
    def half_width(self) -> float:
        return max(self.k * self.spread, MIN_RELATIVE_TOLERANCE * abs(self.centre), MIN_ABSOLUTE_TOLERANCE)

    @property
    def lower(self) -> float:
        return self.centre - self.half_width

    @property
    def upper(self) -> float:
        return self.centre + self.half_width

    def contains(self, value: float) -> bool:
        return self.lower <= value <= self.upper


def _only(values: set[str], what: str, remedy: str) -> str:
    if len(values) > 1:
        raise UserError(f"mixed {what} ({', '.join(sorted(values))}) among the records; {remedy}")
    return next(iter(values))


def select_seed_set(
    records: list[dict],
    method: str,
    dataset: str,
    metric: str,
    budget: str | None = None,
    variant: str | None = None,
    genotype: str | None = None,
    data: str | None = None,
) -> SeedSet:
    """The newest complete, unmodified record per seed that has `metric`; unusable input raises UserError."""
    candidates = []
    for record in records:
        run = to_run(record)
        if (run.key.method, run.key.dataset) != (method, dataset) or run.status != "complete" or run.key.overrides:
            continue
        if budget not in (None, run.key.budget) or variant not in (None, run.key.variant):
            continue
        if genotype is not None and run.key.genotype != genotype:
            continue
        if data not in (None, run.key.data):
            continue
        if run.metric(metric) is not None:
            candidates.append(run)
    if not candidates:
        asked = "".join(
            f", {name} {value!r}"
            for name, value in (("budget", budget), ("variant", variant), ("genotype", genotype), ("data", data))
            if value
        )
        raise UserError(
            f"no complete records of {method} on {dataset}{asked} with {metric} and without overrides "
            "under the results folder"
        )
    chosen_budget = _only({run.key.budget for run in candidates}, "budgets", "choose one with --budget")
    chosen_variant = _only({run.key.variant for run in candidates}, "variants", "choose one with --variant")
    chosen_genotype = _only({run.key.genotype for run in candidates}, "evaluated cells", "choose one with --genotype")
    chosen_data = _only(
        {run.key.data for run in candidates}, "data (a stand-in and the real dataset)", "choose one with --data"
    )
    runs = tuple(newest_per_seed(candidates))
    if len(runs) < MIN_SEEDS:
        raise UserError(
            f"only {len(runs)} seed ({runs[0].run_id}) of {method} on {dataset}; "
            f"the gate needs at least {MIN_SEEDS} (run more with --seeds)"
        )
    return SeedSet(method, dataset, chosen_data, chosen_budget, chosen_variant, chosen_genotype, metric, runs)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "default"


def baseline_path(results_dir: Path, seeds: SeedSet) -> Path:
    """`results/baselines/<method>__<dataset>[-<stand-in>]__<budget>__<variant>[__<cell>].json`."""
    data = seeds.dataset if seeds.data == seeds.dataset else f"{seeds.dataset}-{seeds.data}"
    parts = [seeds.method, data, seeds.budget, _slug(seeds.variant)]
    name = "__".join(parts + ([_slug(seeds.genotype)] if seeds.genotype else []))
    return Path(results_dir) / "baselines" / f"{name}.json"


def check_not_a_record_location(results_dir: Path, path: Path) -> None:
    """A baseline three levels under results/ would be read (and rejected) as a run record."""
    try:
        relative = Path(path).resolve().relative_to(Path(results_dir).resolve())
    except ValueError:
        return
    if len(relative.parts) == 4:
        raise UserError(
            f"baseline {path} sits where run records live (results/<method>/<dataset>/<budget>/); "
            "put it under results/baselines/"
        )


def read_baseline(path: Path, seeds: SeedSet) -> dict | None:
    """The stored baseline for this seed set, None when there is no file; malformed files raise UserError."""
    try:
        baseline = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"malformed baseline {path}: {error}") from None
    if not isinstance(baseline, dict):
        raise UserError(f"malformed baseline {path}: not a JSON object")
    for key, kind in BASELINE_KEYS.items():
        value = baseline.get(key)
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        if not (is_number if kind is float else isinstance(value, kind)):
            raise UserError(f"malformed baseline {path}: {key!r} missing or not {kind.__name__}")
    if (
        not all(map(math.isfinite, (baseline["mean"], baseline["std"], baseline["k"])))
        or baseline["std"] < 0
        or baseline["k"] <= 0
    ):
        raise UserError(f"malformed baseline {path}: mean, std and k must be finite, with std >= 0 and k > 0")
    for key, value in seeds.identity.items():
        stored = baseline.get(key, seeds.dataset if key == "data" else "")
        if stored != value:
            raise UserError(f"baseline {path} is for {key} {stored!r}, not {value!r}")
    return baseline


def write_baseline(path: Path, seeds: SeedSet, k: float) -> Band:
    """Store this seed set's mean and std as the band future sets are checked against."""
    mean, std = seeds.mean_std
    write_json(
        path,
        {
            **seeds.identity,
            "mean": mean,
            "std": std,
            "k": k,
            "n_seeds": len(seeds.runs),
            "seeds": [run.seed for run in seeds.runs],
            "run_ids": [run.run_id for run in seeds.runs],
            "written_by": "nasbench stability --update-baseline",
        },
    )
    return Band(mean, std, k, f"baseline {path}")


def choose_band(seeds: SeedSet, baseline_file: Path, claims: Claims, k: float | None) -> Band:
    """The stored baseline, else the paper's spread at the paper budget, else unusable (UserError)."""
    baseline = read_baseline(baseline_file, seeds)
    if baseline is not None:
        k = k if k is not None else baseline["k"]
        return Band(baseline["mean"], baseline["std"], k, f"baseline {baseline_file}")
    claim = claims.find(seeds.method, seeds.variant, seeds.dataset, seeds.metric, seeds.genotype)
    if seeds.budget == REPRODUCTION_BUDGET and claim is not None and claim.comparable and claim.spread is not None:
        return Band(claim.value, claim.spread, k if k is not None else DEFAULT_K, f"paper {claim.id} ({claim.source})")
    raise UserError(
        f"no baseline at {baseline_file} and no paper spread for {seeds.method} {seeds.variant!r} on "
        f"{seeds.dataset} at the {seeds.budget} budget; write one with --update-baseline"
    )


def render(seeds: SeedSet, band: Band, verdict: str) -> str:
    """The one-screen report: each seed, the mean, the band and the verdict."""
    rows = [
        [run.seed, f"{value:.4f}", run.run_id, run.device, run.started_utc]
        for run, value in zip(seeds.runs, seeds.values, strict=True)
    ]
    mean, std = seeds.mean_std
    cell = f" evaluating {seeds.genotype}" if seeds.genotype else ""
    data = "" if seeds.data == seeds.dataset else f" (stand-in data {seeds.data})"
    lines = [
        f"{seeds.method} {seeds.variant!r}{cell} on {seeds.dataset}{data}, {seeds.budget} budget: {seeds.metric}",
        tabulate(rows, headers=["seed", seeds.metric, "run", "device", "started"], disable_numparse=True),
        f"mean ± std over {len(seeds.runs)} seeds: {mean:.4f} ± {std:.4f}",
    ]
    lines.append(
        f"band: {band.centre:.4f} ± {band.half_width:.4f} = [{band.lower:.4f}, {band.upper:.4f}] "
        f"(k={band.k:g} × spread {band.spread:.4f}, at least {MIN_RELATIVE_TOLERANCE:.0%} of the centre; "
        f"from {band.source})"
    )
    lines.append(verdict)
    return "\n".join(lines)


def gate(seeds: SeedSet, band: Band) -> tuple[bool, str]:
    """PASS when the mean lies in the band; otherwise a REGRESSION naming the side it left by."""
    mean, _ = seeds.mean_std
    if band.contains(mean):
        return True, f"PASS: mean {mean:.4f} lies within the band"
    side = "above" if mean > band.upper else "below"
    return False, (
        f"REGRESSION: mean {mean:.4f} is {side} the band; if the change is intended, "
        "record it deliberately with --update-baseline"
    )
