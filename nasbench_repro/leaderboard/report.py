"""The leaderboard reports: Markdown, a self-contained HTML page and PNG plots.

Tables are built once as text cells and rendered to both formats, so the two always agree.
Nothing depends on the clock or on where the results folder is: the same records give
byte-identical files (numbers have fixed formats, every sort order is total).
"""

from __future__ import annotations

import base64
import html
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from tabulate import tabulate

from nasbench_repro import catalog
from nasbench_repro.atomic import write_with
from nasbench_repro.budgets import BUDGETS
from nasbench_repro.leaderboard.aggregate import BYTES_PER_GB, Leaderboard, Row, aggregate, primary_metric
from nasbench_repro.leaderboard.claims import Claims, load_claims
from nasbench_repro.leaderboard.plots import Plot, all_plots
from nasbench_repro.meters import SECONDS_PER_DAY
from nasbench_repro.records import load_records, phase_peak_memory

MARKDOWN_FILE = "leaderboard.md"
HTML_FILE = "leaderboard.html"
BLANK = "—"
METRIC_HEADERS = {"test_error_pct": "test error %", "test_ppl": "test ppl"}
RULES = (
    "A row is one method, variant, dataset, budget and protocol; it summarises the newest complete record of each "
    "seed. A verdict is given only to paper-budget runs on the real dataset with no overrides: 'reproduced' means "
    "our mean lies within the paper's ± spread, or, where the paper gives none, within 2σ of our seeds. Smoke and "
    "reduced budgets, stand-in data and modified protocols are never compared as reproductions. Interrupted and "
    "failed runs are counted in the notes and never averaged in. Paper numbers cite the claims registry below "
    "(C<line> of nasbench_repro/leaderboard/claims.csv); 'unverified' marks numbers seen only in secondary sources."
)
COST_NOTE = (
    "GPU-days are per run (wall time × devices / 86,400), averaged over seeds; the papers' costs are as published "
    "(DARTS's cover 4 search runs). Peak memory is the largest over seeds, of the search phase where there is "
    "one: the CUDA allocator peak on GPU runs (cuda); on CPU runs the peak bytes of tensors saved for backward "
    "(activations; the process RSS stays in the record), neither comparable to the other."
)


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Section:
    title: str
    paragraphs: list[str] = field(default_factory=list)
    table: Table | None = None
    plots: list[Plot] = field(default_factory=list)


def number(value: float | None, digits: int = 2) -> str:
    return BLANK if value is None else f"{value:.{digits}f}"


def cost(value: float | None) -> str:
    """Three significant figures: a smoke run costs 1e-05 GPU-days, a NAS-RL search 2e+04."""
    return BLANK if value is None else f"{value:.3g}"


def mean_with_std(mean: float | None, std: float | None) -> str:
    if mean is None:
        return BLANK
    return f"{mean:.2f} ± {std:.2f}" if std is not None else f"{mean:.2f}"


def setup(row: Row) -> str:
    key = row.key
    parts = [f"{key.phase} {key.genotype}".strip()] if key.phase else []
    if key.data != key.dataset:
        parts.append(f"data: {key.data} (stand-in)")
    if key.overrides:
        parts.append(f"overrides: {key.overrides}")
    return "; ".join(parts) or BLANK


def paper_cell(row: Row) -> str:
    claim = row.claim
    if claim is None:
        return BLANK
    text = f"{claim.display()} [{claim.id}]"
    return f"{text} unverified" if claim.value is not None and not claim.verified else text


def notes_cell(row: Row) -> str:
    """The verdict's basis or why there is none, and the runs left out of the numbers."""
    notes = [row.verdict.note]
    incomplete = [
        f"{count} {status}" for status, count in (("interrupted", row.interrupted), ("failed", row.failed)) if count
    ]
    if incomplete:
        notes.append(", ".join(incomplete) + " (not averaged)")
    return "; ".join(notes)


def leaderboard_table(rows: list[Row], dataset: str) -> Table:
    metric = primary_metric(dataset)
    imagenet = dataset == "imagenet"
    headers = ["method", "variant", "budget", "setup", "seeds", METRIC_HEADERS.get(metric, metric)]
    headers += ["best-epoch error %"] if metric == "test_error_pct" else ["valid ppl"]
    headers += ["top-5 error %"] if imagenet else []
    headers += [
        "search GPU-d",
        "eval GPU-d",
        "total GPU-d",
        "peak mem GB",
        "params M",
        "M-adds",
        "device",
        "paper",
        "Δ vs paper",
        "verdict",
        "notes",
    ]
    table_rows = []
    for row in rows:
        memory, kind = row.peak_memory
        secondary = "test_error_best_epoch_pct" if metric == "test_error_pct" else "valid_ppl"
        cells = [
            row.key.method,
            row.key.variant,
            BLANK if row.is_gap else row.key.budget,
            setup(row),
            str(row.n_seeds),
            mean_with_std(*row.mean_std()),
            mean_with_std(*row.mean_std(secondary)),
        ]
        cells += [mean_with_std(*row.mean_std("test_top5_error_pct"))] if imagenet else []
        difference = row.difference
        cells += [
            cost(row.mean_of("search_gpu_days")),
            cost(row.mean_of("evaluate_gpu_days")),
            cost(row.mean_of("total_gpu_days")),
            f"{memory:.2f} ({kind})" if memory is not None else BLANK,
            mean_with_std(*row.mean_std("params_millions")),
            number(row.mean_std("madds_millions")[0], 0),
            "; ".join(row.devices) or BLANK,
            paper_cell(row),
            BLANK if difference is None else f"{difference:+.2f}",
            row.verdict.label or BLANK,
            notes_cell(row),
        ]
        table_rows.append(cells)
    return Table(headers, table_rows)


def partial_runs_table(records: list[dict]) -> Table:
    """Interrupted and failed runs: never averaged in, but what they measured of the cost still counts.

    The projection multiplies the median completed epoch by the protocol's epochs; epochs that
    update the architecture (after a warm-up) can be slower than the ones completed.
    """
    rows = []
    for record in sorted(records, key=lambda record: record["run_id"]):
        if record["status"] == "complete":
            continue
        for phase, phase_cost in sorted(record["cost"].items()):
            epoch_seconds = phase_cost.get("epoch_seconds") or []
            planned = record["protocol"]["values"].get(phase, {}).get("epochs")
            median = statistics.median(epoch_seconds) if epoch_seconds else None
            devices = phase_cost.get("device_count") or 1
            projected = median * planned * devices / SECONDS_PER_DAY if median and planned else None
            peak, kind = phase_peak_memory(phase_cost)
            rows.append(
                [
                    record["run_id"],
                    record["spec"]["method"],
                    record["variant"],
                    record["dataset"],
                    record["budget"],
                    phase,
                    record["status"],
                    f"{len(epoch_seconds)} of {planned or BLANK}",
                    number(median, 1),
                    cost(phase_cost.get("gpu_days")),
                    cost(projected),
                    BLANK if peak is None else f"{peak / BYTES_PER_GB:.2f} ({kind})",
                    record["environment"].get("device_name") or BLANK,
                    record.get("reason") or BLANK,
                ]
            )
    return Table(
        [
            "run",
            "method",
            "variant",
            "data",
            "budget",
            "phase",
            "status",
            "epochs done",
            "median s/epoch",
            "GPU-d spent",
            "GPU-d projected (all epochs)",
            "peak mem GB",
            "device",
            "reason",
        ],
        rows,
    )


def variant_status(rows: list[Row]) -> str:
    """How far one variant has got: its verdicts, else which budgets have run."""
    verdicts = [f"{row.verdict.label} (n={row.n_seeds})" for row in rows if row.verdict.label]
    if verdicts:
        return ", ".join(verdicts)
    measured = [row for row in rows if row.n_seeds]
    if any(row.key.is_reproduction_setup for row in measured):
        return "paper budget run, no verdict"
    budgets = sorted({row.key.budget for row in measured}, key=lambda budget: (budget not in BUDGETS, budget))
    return f"not yet reproduced ({', '.join(budgets)} runs only)" if budgets else "not yet reproduced"


def coverage_cell(rows: list[Row]) -> str:
    """One method × dataset at a glance, variant by variant."""
    variants = list(dict.fromkeys(row.key.variant for row in rows))  # the leaderboard's order
    if variants == ["default"]:
        return variant_status(rows)
    return "; ".join(
        f"{variant}: {variant_status([row for row in rows if row.key.variant == variant])}" for variant in variants
    )


def coverage_table(board: Leaderboard) -> Table:
    rows = []
    for info in catalog.MISSION_METHODS:
        cells = [info.name]
        for dataset in catalog.MISSION_DATASETS:
            cells.append(coverage_cell([row for row in board.for_dataset(dataset) if row.key.method == info.name]))
        rows.append(cells)
    return Table(["method", *catalog.MISSION_DATASETS], rows)


def claims_table(claims: Claims) -> Table:
    rows = [
        [
            claim.id,
            claim.method,
            claim.variant,
            claim.genotype or BLANK,
            claim.dataset,
            claim.metric,
            claim.display(),
            claim.gpu or BLANK,
            claim.obtained or BLANK,
            "yes" if claim.verified else "no",
            "yes" if claim.headline else "no",
            claim.source,
            claim.notes or BLANK,
        ]
        for claim in claims.all
    ]
    return Table(
        [
            "id",
            "method",
            "variant",
            "cell",
            "dataset",
            "metric",
            "value",
            "GPU",
            "how obtained",
            "verified",
            "headline",
            "source",
            "notes",
        ],
        rows,
    )


def build_sections(board: Leaderboard, claims: Claims, plots: list[Plot], records: list[dict]) -> list[Section]:
    complete = len(board.measured_runs)
    newest = board.newest_started_utc or "never (no records)"
    summary = (
        f"Built by `nasbench leaderboard` from {board.record_count} run record(s), of which {complete} "
        f"counted (the newest complete record of each seed). Newest record started {newest}."
    )
    sections = [
        Section("NAS reproduction leaderboard", [summary, RULES, COST_NOTE]),
        Section("Coverage: mission methods × datasets", [], coverage_table(board)),
    ]
    for dataset in board.datasets:
        title = catalog.MISSION_DATASETS.get(dataset, f"{dataset} (not a mission dataset)")
        sections.append(Section(f"{dataset}: {title}", [], leaderboard_table(board.for_dataset(dataset), dataset)))
    sections.append(
        Section(
            "Interrupted and failed runs",
            [
                "Not averaged into any row above. What they measured of the cost is kept: time per completed epoch "
                "and, at that pace, the cost of the whole phase. Epochs that update the architecture (after a "
                "warm-up) can be slower than the completed ones, so a projection from warm-up epochs is a lower bound."
            ],
            partial_runs_table(records),
        )
    )
    sections.append(Section("Plots", [], None, plots))
    sections.append(
        Section(
            "Paper claims registry",
            [
                "Every published number the leaderboard compares against, with how it was obtained and where it "
                "was read. A blank value could not be recovered; it is never guessed."
            ],
            claims_table(claims),
        )
    )
    return sections


def markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(sections: list[Section]) -> str:
    parts = []
    for index, section in enumerate(sections):
        parts.append(f"{'#' if index == 0 else '##'} {section.title}\n")
        parts.extend(f"{paragraph}\n" for paragraph in section.paragraphs)
        if section.table is not None:
            rows = [[markdown_cell(cell) for cell in row] for row in section.table.rows]
            parts.append(tabulate(rows, headers=section.table.headers, tablefmt="github", disable_numparse=True) + "\n")
        for plot in section.plots:
            parts.append(f"### {plot.title}\n\n![{plot.title}]({plot.name})\n\n{plot.caption}\n")
    return "\n".join(parts)


STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 12px; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 13px; color: #555; max-width: 60em; }
"""


def _html_paragraph(text: str) -> str:
    escaped = html.escape(text)
    # Inline code is the only Markdown the paragraphs use.
    pieces = escaped.split("`")
    marked = (f"<code>{piece}</code>" if index % 2 else piece for index, piece in enumerate(pieces))
    return "<p>" + "".join(marked) + "</p>"


def render_html(sections: list[Section]) -> str:
    body = []
    for index, section in enumerate(sections):
        tag = "h1" if index == 0 else "h2"
        body.append(f"<section><{tag}>{html.escape(section.title)}</{tag}>")
        body.extend(_html_paragraph(paragraph) for paragraph in section.paragraphs)
        if section.table is not None:
            body.append(
                tabulate(section.table.rows, headers=section.table.headers, tablefmt="html", disable_numparse=True)
            )
        for plot in section.plots:
            encoded = base64.b64encode(plot.png).decode("ascii")
            body.append(
                f'<figure id="{html.escape(plot.name)}"><img alt="{html.escape(plot.title)}" '
                f'src="data:image/png;base64,{encoded}"><figcaption><b>{html.escape(plot.title)}.</b> '
                f"{html.escape(plot.caption)}</figcaption></figure>"
            )
        body.append("</section>")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        "<title>NAS reproduction leaderboard</title>\n<style>"
        + STYLE
        + "</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _write_text(path: Path, text: str) -> None:
    write_with(path, lambda handle: handle.write(text.encode("utf-8")))


def write_reports(results_dir: Path | str, out_dir: Path | str) -> list[Path]:
    """Regenerate every report file from the records; returns the paths written."""
    claims = load_claims()
    records = load_records(results_dir)
    board = aggregate(records, claims)
    plots = all_plots(board, claims)
    sections = build_sections(board, claims, plots, records)
    out_dir = Path(out_dir)
    written = []
    for plot in plots:
        write_with(out_dir / plot.name, lambda handle, png=plot.png: handle.write(png))
        written.append(out_dir / plot.name)
    for name, text in ((MARKDOWN_FILE, render_markdown(sections)), (HTML_FILE, render_html(sections))):
        _write_text(out_dir / name, text)
        written.append(out_dir / name)
    return written
