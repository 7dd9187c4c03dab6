"""The leaderboard's plots, drawn with matplotlib's Agg canvas straight to PNG bytes.

No pyplot (no global figure state, no backend choice); PNGs carry no software or date
metadata so the same inputs give the same bytes. Every panel copes with no data by saying
so on the panel instead of failing.
"""

from __future__ import annotations

import io
import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from nasbench_repro import catalog
from nasbench_repro.leaderboard.aggregate import BYTES_PER_GB, Leaderboard, Row, Run, primary_metric
from nasbench_repro.leaderboard.claims import Claims

DPI = 100
PNG_METADATA = {"Software": None}  # matplotlib would otherwise stamp its version into every file
METHOD_COLOURS = dict(
    zip(
        (info.name for info in catalog.MISSION_METHODS),
        (f"C{index}" for index in range(len(catalog.MISSION_METHODS))),
        strict=True,
    )
)
OTHER_COLOUR = "0.4"
METRIC_LABELS = {"test_error_pct": "test error (%)", "test_ppl": "test perplexity"}
SAMPLING_RATIO = re.compile(r"\bK\s*=\s*(\d+)")


@dataclass(frozen=True)
class Plot:
    name: str  # file name in the report folder
    title: str
    caption: str
    png: bytes


def colour(method: str) -> str:
    return METHOD_COLOURS.get(method, OTHER_COLOUR)


def explain_empty(axes: Axes, message: str) -> None:
    """An empty panel that says why it is empty."""
    axes.text(0.5, 0.5, message, ha="center", va="center", wrap=True, transform=axes.transAxes, color="0.35")
    axes.set_xticks([])
    axes.set_yticks([])


def label_point(axes: Axes, x: float, y: float, text: str) -> None:
    axes.annotate(text, (x, y), xytext=(5, 3), textcoords="offset points", fontsize=6, color="0.25")


def to_png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata=PNG_METADATA)
    return buffer.getvalue()


def group_label(row: Row) -> str:
    key = row.key
    parts = [key.method, key.variant, key.budget]
    if key.genotype:
        parts.append(f"cell {key.genotype}")
    if key.data != key.dataset:
        parts.append(key.data)
    if key.overrides:
        parts.append(key.overrides)
    return " · ".join(parts)


def error_vs_search_cost(board: Leaderboard, claims: Claims) -> Plot:
    """Published error against published search cost (hollow), our reproductions (filled)."""
    figure = Figure(figsize=(11, 8.5), layout="constrained")
    panels = figure.subplots(2, 2).flatten()
    for axes, dataset in zip(panels, catalog.MISSION_DATASETS, strict=True):
        metric = primary_metric(dataset)
        plotted = 0
        for claim in claims.all:
            if claim.dataset != dataset or claim.metric != metric or not claim.headline or not claim.comparable:
                continue
            cost = claims.find(claim.method, claim.variant, dataset, "search_gpu_days")
            if cost is None or not cost.comparable or cost.value <= 0:
                continue
            axes.errorbar(
                cost.value, claim.value, yerr=claim.spread, fmt="o", mfc="none", ms=8, color=colour(claim.method)
            )
            label_point(axes, cost.value, claim.value, f"{claim.method} {claim.variant}")
            plotted += 1
        for row in board.for_dataset(dataset):
            mean, std = row.mean_std()
            cost = row.mean_of("search_gpu_days")
            if not row.key.is_reproduction_setup or mean is None or cost is None or cost <= 0:
                continue
            axes.errorbar(cost, mean, yerr=std, fmt="o", ms=8, color=colour(row.key.method))
            label_point(axes, cost, mean, f"{row.key.method} {row.key.variant} (ours, n={row.n_seeds})")
            plotted += 1
        axes.set_title(catalog.MISSION_DATASETS[dataset], fontsize=10)
        if not plotted:
            explain_empty(axes, "no records yet\n(no published error with a search cost, no paper-budget runs)")
            continue
        axes.set_xscale("log")
        axes.margins(x=0.15, y=0.1)
        axes.set_xlabel("search cost (GPU-days, log scale)")
        axes.set_ylabel(METRIC_LABELS[metric])
    return Plot(
        "error_vs_search_cost.png",
        "Error against search cost",
        "Hollow markers: published numbers (± the paper's spread); filled: our paper-budget runs on the real "
        "data (± std over seeds). Published costs are as stated: DARTS's cover 4 search runs, ours are per "
        "run. Smoke, reduced and modified runs are not plotted.",
        to_png(figure),
    )


def sampling_ratio(run: Run) -> int | None:
    """PC-DARTS's K, from the variant label ("K=4, EN") or else the search protocol."""
    found = SAMPLING_RATIO.search(run.key.variant)
    if found:
        return int(found.group(1))
    values = (run.record.get("protocol") or {}).get("values", {}).get("search", {})
    value = values.get("k", values.get("K"))
    return value if isinstance(value, int) else None


def _series_label(run: Run) -> str:
    """Runs that differ only in K form one line; everything else separates lines."""
    overrides = {
        name: value
        for name, value in run.record["spec"].get("overrides", {}).items()
        if name.lower().rsplit(".", 1)[-1] != "k"
    }
    edge_normalization = "no EN" if "no EN" in run.key.variant else ("EN" if "EN" in run.key.variant else "")
    other_overrides = ", ".join(f"{name}={value}" for name, value in sorted(overrides.items()))
    parts = [run.key.data, run.key.budget, edge_normalization, other_overrides]
    return " · ".join(part for part in parts if part)


def pcdarts_k_ablation(board: Leaderboard) -> Plot:
    """Error, search memory and search time against the partial-channel ratio K."""
    series: dict[str, dict[int, list[Run]]] = {}
    for run in board.measured_runs:
        ratio = sampling_ratio(run) if run.key.method == "pcdarts" else None
        if ratio is not None:
            series.setdefault(_series_label(run), {}).setdefault(ratio, []).append(run)
    measures: list[tuple[str, Callable[[Run], float | None]]] = [
        ("test error (%)", lambda run: run.metric(primary_metric(run.key.dataset))),
        (
            "search peak memory (GB)",
            lambda run: run.peak_memory_bytes / BYTES_PER_GB if run.peak_memory_bytes is not None else None,
        ),
        ("search GPU-days", lambda run: run.search_gpu_days),
    ]
    figure = Figure(figsize=(13, 4), layout="constrained")
    for axes, (label, measure) in zip(figure.subplots(1, 3), measures, strict=True):
        drawn = False
        for name in sorted(series):
            points = []
            for ratio in sorted(series[name]):
                values = [value for value in map(measure, series[name][ratio]) if value is not None]
                if values:
                    points.append((ratio, statistics.fmean(values)))
            if points:
                axes.plot(*zip(*points, strict=True), marker="o", label=name)
                drawn = True
        if not drawn:
            explain_empty(axes, "no records yet\n(pcdarts runs with a K in their variant or protocol)")
            axes.set_title(label, fontsize=10)
            continue
        axes.set_xscale("log", base=2)
        axes.set_xlabel("K (1/K of the channels go through the mixed op)")
        axes.set_title(label, fontsize=10)
        axes.legend(fontsize=7)
    return Plot(
        "pcdarts_k_ablation.png",
        "PC-DARTS: the K ablation",
        "Mean over runs at each K; one line per data, budget, edge normalization and other overrides. "
        "Memory is the CUDA allocator peak on GPU runs, the bytes saved for backward on CPU runs. The paper's "
        "Figure 3 numbers were not recovered, so no published points are drawn.",
        to_png(figure),
    )


def seed_spread(board: Leaderboard) -> Plot:
    """Each seed's outcome per group, with the published number beside reproductions."""
    datasets = [dataset for dataset in board.datasets if any(row.values() for row in board.for_dataset(dataset))]
    figure = Figure(figsize=(11, 3.2 + 3.2 * max(1, len(datasets))), layout="constrained")
    if not datasets:
        explain_empty(figure.subplots(), "no records yet\n(no complete run has a test error or perplexity)")
        return Plot(
            "seed_spread.png", "Seed spread", "Per-seed outcomes appear here once runs are complete.", to_png(figure)
        )
    panels = figure.subplots(len(datasets), 1, squeeze=False)[:, 0]
    for axes, dataset in zip(panels, datasets, strict=True):
        rows = [row for row in board.for_dataset(dataset) if row.values()]
        for position, row in enumerate(rows):
            values = row.values()
            axes.scatter([position] * len(values), values, color=colour(row.key.method), zorder=3)
            axes.hlines(statistics.fmean(values), position - 0.25, position + 0.25, color=colour(row.key.method))
            if row.key.is_reproduction_setup and row.claim is not None and row.claim.comparable:
                axes.errorbar(
                    position + 0.3,
                    row.claim.value,
                    yerr=row.claim.spread,
                    fmt="D",
                    mfc="none",
                    color=colour(row.key.method),
                )
        axes.set_xticks(range(len(rows)), [group_label(row) for row in rows], rotation=20, ha="right", fontsize=7)
        axes.set_xlim(-0.6, len(rows) - 0.2)
        axes.set_ylabel(METRIC_LABELS.get(primary_metric(dataset), primary_metric(dataset)))
        axes.set_title(catalog.MISSION_DATASETS.get(dataset, dataset), fontsize=10)
    return Plot(
        "seed_spread.png",
        "Seed spread",
        "Dots: one per seed (newest complete record); bar: the mean; hollow diamond: the paper's number "
        "(± spread), drawn for paper-budget reproductions only.",
        to_png(figure),
    )


def _mean_curve(runs: tuple[Run, ...], column: str) -> list[tuple[int, float]]:
    by_epoch: dict[int, list[float]] = {}
    for run in runs:
        for entry in (run.record.get("curves") or {}).get("search") or []:
            value = entry.get(column)
            if isinstance(entry.get("epoch"), int) and isinstance(value, int | float):
                by_epoch.setdefault(entry["epoch"], []).append(float(value))
    return [(epoch, statistics.fmean(by_epoch[epoch])) for epoch in sorted(by_epoch)]


def search_curves(board: Leaderboard) -> Plot:
    """Skip-connections in the normal cell and architecture entropy per search epoch (mean over seeds)."""
    figure = Figure(figsize=(12, 4.5), layout="constrained")
    columns = (
        ("normal_skip_connections", "skip-connections in the normal cell"),
        ("arch_entropy", "architecture entropy (mean over edges)"),
    )
    for axes, (column, label) in zip(figure.subplots(1, 2), columns, strict=True):
        axes.set_title(label, fontsize=10)
        drawn = False
        for row in board.rows:
            points = _mean_curve(row.runs, column)
            if points:  # the default colour cycle: several lines of one method must stay apart
                axes.plot(*zip(*points, strict=True), marker=".", label=f"{group_label(row)} · {row.key.dataset}")
                drawn = True
        if not drawn:
            explain_empty(axes, f"no records yet\n(search curves with {column})")
            continue
        axes.set_xlabel("search epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.legend(fontsize=7)
    return Plot(
        "search_curves.png",
        "Search curves",
        "Mean over seeds per search epoch; rising skip-connections with falling entropy is the collapse DARTS "
        "variants try to prevent.",
        to_png(figure),
    )


SECONDS_PER_HOUR = 3600
LINE_STYLES = ("-", "--", ":", "-.")


# The metrics black-box searches log (the space's `Metric`): the y label of each panel row and the scale shown.
BEST_SO_FAR_METRICS = {
    "valid_acc": ("best validation accuracy so far (%)", 100.0),
    "valid_ppl": ("best validation perplexity so far (lower is better)", 1.0),
}


def best_so_far(run: Run, metric: str = "valid_acc") -> list[tuple[int, float, float]]:
    """(architectures evaluated, best validation `metric` so far, GPU-hours so far) after each
    round of a black-box search. The hours are the phase's wall time up to that round times the
    devices it held (`cost.search.epoch_seconds`, `device_count`): how the papers count GPU-days."""
    cost = (run.record.get("cost") or {}).get("search") or {}
    seconds, devices = cost.get("epoch_seconds") or [], cost.get("device_count") or 1
    points = []
    for row in (run.record.get("curves") or {}).get("search") or []:
        epoch, evaluated, best = row.get("epoch"), row.get("evaluated"), row.get(f"best_{metric}")
        if isinstance(epoch, int) and epoch < len(seconds) and isinstance(evaluated, int) and best is not None:
            points.append((evaluated, best, sum(seconds[: epoch + 1]) * devices / SECONDS_PER_HOUR))
    return points


def blackbox_best_so_far(board: Leaderboard) -> Plot:
    """Black-box searches side by side: the best validation metric so far (accuracy on images,
    perplexity on text: one row of panels each) against architectures evaluated and against
    GPU-hours (mean over seeds at each round)."""
    curves = {metric: [] for metric in BEST_SO_FAR_METRICS}  # metric -> (row, per-round points)
    for row in board.rows:
        for metric in BEST_SO_FAR_METRICS:
            per_round: dict[int, list[tuple[float, float]]] = {}
            for run in row.runs:
                for evaluated, best, hours in best_so_far(run, metric):
                    per_round.setdefault(evaluated, []).append((best, hours))
            if per_round:
                curves[metric].append((row, per_round))
    shown = [metric for metric in BEST_SO_FAR_METRICS if curves[metric]] or ["valid_acc"]
    figure = Figure(figsize=(12, 6 * len(shown)), layout="constrained")
    panels = figure.subplots(len(shown), 2, squeeze=False)
    for (by_architectures, by_hours), metric in zip(panels, shown, strict=True):
        label_y, scale = BEST_SO_FAR_METRICS[metric]
        by_hours.sharey(by_architectures)
        lines_of_method: dict[str, int] = {}
        for row, per_round in curves[metric]:
            counts = sorted(per_round)
            best = [scale * statistics.fmean(value for value, _ in per_round[count]) for count in counts]
            hours = [statistics.fmean(spent for _, spent in per_round[count]) for count in counts]
            label = f"{group_label(row)} · {row.key.dataset} (n={row.n_seeds})"
            # one colour per method; its variants, budgets and data told apart by the line style
            style = LINE_STYLES[lines_of_method.get(row.key.method, 0) % len(LINE_STYLES)]
            lines_of_method[row.key.method] = lines_of_method.get(row.key.method, 0) + 1
            for axes, x in ((by_architectures, counts), (by_hours, hours)):
                axes.plot(x, best, marker=".", linestyle=style, color=colour(row.key.method), label=label)
        if not curves[metric]:
            explain_empty(by_architectures, "no records yet\n(black-box searches: nas-rl, random, grid, evolution)")
            explain_empty(by_hours, "no records yet")
            continue
        by_architectures.set_xlabel("architectures evaluated")
        by_architectures.set_ylabel(label_y)
        by_hours.set_xlabel("search GPU-hours (wall time x devices held)")
        by_architectures.legend(fontsize=7)
    return Plot(
        "blackbox_best_so_far.png",
        "Black-box searches: best so far",
        "NAS-RL, random, grid search and regularized evolution on one budget axis: the best validation "
        "accuracy (images) or perplexity (text) found so far, mean over seeds, against architectures evaluated "
        "and against search GPU-hours. Each line is one group (method, variant, budget, data); weight-sharing "
        "accuracies are the supernet's, not a trained network's. Smoke runs measure nothing.",
        to_png(figure),
    )


def all_plots(board: Leaderboard, claims: Claims) -> list[Plot]:
    return [
        error_vs_search_cost(board, claims),
        pcdarts_k_ablation(board),
        seed_spread(board),
        search_curves(board),
        blackbox_best_so_far(board),
    ]
