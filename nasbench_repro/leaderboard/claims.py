"""The paper-claims registry: what each paper published, how it was obtained, and where it says so.

`claims.csv` (beside this module) has one row per published number, transcribed from the
papers' reference notes in the shared reference folder beside the checkout, with every
citation kept. Keys use the harness's names: `method` and `dataset` as in the catalog,
`variant` as the method labels its runs, `metric` as in run records, and `genotype` as the
published cell's name in nasbench_repro/reference (blank when the number is not tied to a
published cell). A blank `value` is a number that could not be recovered (its note says
why); it is never filled in by guesswork. `headline = yes` marks the number a reproduction
is judged against, and the one listed while nothing has run.

A search-and-evaluate run is matched by method, variant, dataset and metric. An
evaluation-only run of a published cell is matched by the cell, dataset and metric, whatever
method module trained it: the number belongs to the cell, not to the search settings.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from nasbench_repro import catalog
from nasbench_repro.errors import UserError

CLAIMS_FILE = Path(__file__).with_name("claims.csv")
COLUMNS = (
    "method",
    "variant",
    "genotype",
    "dataset",
    "metric",
    "value",
    "spread",
    "gpu",
    "obtained",
    "source",
    "verified",
    "headline",
    "notes",
)
METRICS = (
    "test_error_pct",
    "test_top5_error_pct",
    "test_ppl",
    "valid_ppl",
    "params_millions",
    "madds_millions",
    "search_gpu_days",
    "search_cpu_days",
    "memory_gb",
)
# A published bound ("less than 4 GB") keeps its comparison sign rather than posing as a measurement.
QUALIFIERS = ("<=", ">=", "<", ">")
YES_NO = ("yes", "no")


class ClaimsError(UserError):
    """The claims file is malformed; the message names the file and line."""


@dataclass(frozen=True)
class Claim:
    id: str  # "C<line>": stable while the file is unchanged, cited by the leaderboard
    method: str
    variant: str
    genotype: str
    dataset: str
    metric: str
    value: float | None
    qualifier: str
    spread: float | None
    value_text: str  # as transcribed, so "3.00" keeps the precision the paper printed
    spread_text: str
    gpu: str
    obtained: str
    source: str
    verified: bool
    headline: bool
    notes: str

    @property
    def comparable(self) -> bool:
        """A number a measurement can be judged against: known, and not merely a bound."""
        return self.value is not None and not self.qualifier

    def display(self) -> str:
        if self.value is None:
            return "n/a"
        return f"{self.value_text} ± {self.spread_text}" if self.spread_text else self.value_text


class Claims:
    """All claims, with the look-ups the leaderboard and the stability gate need."""

    def __init__(self, claims: Iterable[Claim]):
        self.all: tuple[Claim, ...] = tuple(claims)

    def find(self, method: str, variant: str, dataset: str, metric: str, genotype: str = "") -> Claim | None:
        """The headline claim for this variant (or, given a published cell, for that cell), else the first
        other match, else None."""
        if genotype:
            matches = [
                claim
                for claim in self.all
                if (claim.genotype, claim.dataset, claim.metric) == (genotype, dataset, metric)
            ]
        else:
            wanted = (method, variant, dataset, metric)
            matches = [
                claim for claim in self.all if (claim.method, claim.variant, claim.dataset, claim.metric) == wanted
            ]
        return next((claim for claim in matches if claim.headline), matches[0] if matches else None)

    def headline_variants(self, method: str, dataset: str) -> list[str]:
        """Variants with a headline claim for this method and dataset, in file order."""
        variants: list[str] = []
        for claim in self.all:
            if claim.headline and (claim.method, claim.dataset) == (method, dataset) and claim.variant not in variants:
                variants.append(claim.variant)
        return variants


def _number(text: str, where: str, column: str) -> float | None:
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        raise ClaimsError(f"{where}: {column} {text!r} is not a number") from None
    if not math.isfinite(number):
        raise ClaimsError(f"{where}: {column} {text!r} is not finite")
    return number


def _claim(row: dict[str, str], where: str, claim_id: str) -> Claim:
    if None in row or any(value is None for value in row.values()):
        raise ClaimsError(f"{where}: expected {len(COLUMNS)} columns")
    row = {key: value.strip() for key, value in row.items()}
    for column in ("method", "variant", "dataset", "metric", "source"):
        if not row[column]:
            raise ClaimsError(f"{where}: {column} is empty")
    if row["method"] not in {info.name for info in catalog.MISSION_METHODS}:
        raise ClaimsError(f"{where}: method {row['method']!r} is not a mission method")
    if row["dataset"] not in catalog.MISSION_DATASETS:
        raise ClaimsError(f"{where}: dataset {row['dataset']!r} is not a mission dataset")
    if row["metric"] not in METRICS:
        raise ClaimsError(f"{where}: metric {row['metric']!r} is not one of {', '.join(METRICS)}")
    for column in ("verified", "headline"):
        if row[column] not in YES_NO:
            raise ClaimsError(f"{where}: {column} must be yes or no, not {row[column]!r}")
    qualifier = next((sign for sign in QUALIFIERS if row["value"].startswith(sign)), "")
    value = _number(row["value"][len(qualifier) :], where, "value")
    spread = _number(row["spread"], where, "spread")
    if value is None and not row["notes"]:
        raise ClaimsError(f"{where}: a blank value needs a note saying why")
    if spread is not None and (value is None or spread < 0):
        raise ClaimsError(f"{where}: spread needs a value and must not be negative")
    return Claim(
        id=claim_id,
        method=row["method"],
        variant=row["variant"],
        genotype=row["genotype"],
        dataset=row["dataset"],
        metric=row["metric"],
        value=value,
        qualifier=qualifier,
        spread=spread,
        value_text=row["value"],
        spread_text=row["spread"],
        gpu=row["gpu"],
        obtained=row["obtained"],
        source=row["source"],
        verified=row["verified"] == "yes",
        headline=row["headline"] == "yes",
        notes=row["notes"],
    )


def load_claims(path: Path | str | None = None) -> Claims:
    """Read and validate the registry; any problem is one line naming the file and line."""
    path = Path(path) if path is not None else CLAIMS_FILE
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            if tuple(reader.fieldnames or ()) != COLUMNS:
                raise ClaimsError(f"{path}: header must be {','.join(COLUMNS)}")
            claims = [_claim(row, f"{path} line {reader.line_num}", f"C{reader.line_num}") for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ClaimsError(f"{path}: {error}") from None
    seen: dict[tuple, str] = {}
    for claim in claims:
        if not claim.headline:
            continue
        keys = [(claim.method, claim.variant, claim.dataset, claim.metric)]
        keys += [(claim.genotype, claim.dataset, claim.metric)] if claim.genotype else []
        for key in keys:
            if key in seen:
                raise ClaimsError(f"{path}: {claim.id} and {seen[key]} are both the headline for {'/'.join(key)}")
            seen[key] = claim.id
    return Claims(claims)
