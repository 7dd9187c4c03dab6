"""Aggregation invariants, verdicts, and reports that are complete, deterministic and honest."""

import os
import random
import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from record_factory import make_record, write

from nasbench_repro import catalog
from nasbench_repro.cli import main
from nasbench_repro.leaderboard.aggregate import aggregate
from nasbench_repro.leaderboard.claims import load_claims
from nasbench_repro.leaderboard.report import HTML_FILE, MARKDOWN_FILE, build_sections, write_reports

CLAIMS = load_claims()


def measured(board):
    return [row for row in board.rows if not row.is_gap]


def only_row(board, **key):
    rows = [row for row in measured(board) if all(getattr(row.key, name) == value for name, value in key.items())]
    assert len(rows) == 1, rows
    return rows[0]


run_fields = st.fixed_dictionaries(
    {
        "method": st.sampled_from(["darts", "pcdarts", "grid"]),
        "variant": st.sampled_from(["1st order", "2nd order", "K=4, EN"]),
        "budget": st.sampled_from(["paper", "reduced", "smoke"]),
        "data": st.sampled_from([None, "synthetic-shapes"]),
        "overrides": st.sampled_from([None, {"k": 2}]),
        "seed": st.integers(0, 3),
        "status": st.sampled_from(["complete", "complete", "interrupted", "failed"]),
        "error": st.floats(2.0, 4.0).map(lambda value: round(value, 2)),
        "day": st.integers(1, 5),
    }
)


def build(fields_list):
    records = []
    for index, fields in enumerate(fields_list):
        fields = dict(fields)
        day = fields.pop("day")
        records.append(make_record(**fields, started=f"2025-01-0{day}T00:00:00+00:00", run_id=f"run-{index:03d}"))
    return records


@settings(max_examples=60, deadline=None)
@given(st.lists(run_fields, max_size=12), st.randoms(use_true_random=False))
def test_aggregation_does_not_depend_on_record_order(fields_list, shuffler):
    records = build(fields_list)
    shuffled = list(records)
    shuffler.shuffle(shuffled)
    first, second = aggregate(records, CLAIMS), aggregate(shuffled, CLAIMS)
    assert first == second
    assert build_sections(first, CLAIMS, [], records) == build_sections(second, CLAIMS, [], shuffled)


@settings(max_examples=60, deadline=None)
@given(st.lists(run_fields, max_size=12))
def test_rows_count_seeds_and_only_reproductions_get_verdicts(fields_list):
    records = build(fields_list)
    board = aggregate(records, CLAIMS)
    for row in measured(board):
        members = [
            record
            for record in records
            if (record["spec"]["method"], record["variant"], record["budget"], record["dataset"])
            == (row.key.method, row.key.variant, row.key.budget, row.key.data)
            and bool(record["spec"]["overrides"]) == bool(row.key.overrides)
        ]
        complete_seeds = {record["spec"]["seed"] for record in members if record["status"] == "complete"}
        assert row.n_seeds == len(complete_seeds) == len({run.seed for run in row.runs})
        assert row.interrupted == sum(record["status"] == "interrupted" for record in members)
        assert row.failed == sum(record["status"] == "failed" for record in members)
        if row.key.budget != "paper" or row.key.data != row.key.dataset or row.key.overrides:
            assert row.verdict.label is None and row.difference is None
            assert "not a reproduction" in row.verdict.note


def test_verdicts_use_the_paper_spread_or_two_sigma_of_the_seeds():
    records = [make_record(seed=seed, error=error) for seed, error in enumerate([2.70, 2.80, 2.75])]  # paper 2.76 ± .09
    records += [make_record(variant="1st order", seed=seed, error=error) for seed, error in enumerate([3.4, 3.5])]
    records += [
        make_record(method="pdarts", variant="default", seed=seed, error=error)  # paper 2.50, no spread
        for seed, error in enumerate([2.4, 2.6])
    ]
    records += [make_record(method="gdas", variant="default", seed=0, error=2.0)]  # paper 2.93, no spread, one seed
    board = aggregate(records, CLAIMS)
    assert only_row(board, variant="2nd order").verdict.label == "reproduced"
    assert only_row(board, variant="1st order").verdict.label == "worse than paper"
    pdarts = only_row(board, method="pdarts")
    assert (pdarts.verdict.label, pdarts.verdict.note) == ("reproduced", "within 2σ of 2 seeds")
    gdas = only_row(board, method="gdas")
    assert gdas.verdict.label is None and "1 seed" in gdas.verdict.note
    assert only_row(board, variant="2nd order").difference == pytest.approx(2.75 - 2.76)


def test_the_newest_record_of_a_seed_replaces_older_ones_and_failures_are_not_averaged():
    records = [
        make_record(seed=0, error=9.0, started="2025-01-01T00:00:00+00:00"),
        make_record(seed=0, error=2.7, started="2025-01-02T00:00:00+00:00"),
        make_record(seed=1, error=2.8),
        make_record(seed=2, status="failed", error=None),
        make_record(seed=3, status="interrupted", error=None),
    ]
    row = only_row(aggregate(records, CLAIMS), variant="2nd order")
    assert row.n_seeds == 2 and row.mean_std()[0] == pytest.approx(2.75)
    assert (row.interrupted, row.failed) == (1, 1)


def test_every_mission_method_and_dataset_is_listed_even_without_records():
    board = aggregate([], CLAIMS)
    listed = {(row.key.method, row.key.dataset) for row in board.rows}
    assert listed == {(info.name, dataset) for info in catalog.MISSION_METHODS for dataset in catalog.MISSION_DATASETS}
    assert all(row.is_gap and row.verdict.note == "not yet reproduced" for row in board.rows)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A few records of every kind: reproduction, smoke on a stand-in, K sweep, failure, text dataset."""
    results_dir = tmp_path_factory.mktemp("leaderboard") / "results"
    for seed, error in enumerate([2.70, 2.80, 2.75]):
        write(results_dir, seed=seed, error=error, started=f"2025-01-0{seed + 1}T00:00:00+00:00")
    write(results_dir, seed=3, status="failed", error=None, started="2025-01-05T00:00:00+00:00")
    for seed in (0, 1):
        write(
            results_dir,
            variant="1st order",
            budget="smoke",
            data="synthetic-shapes",
            device="cpu",
            seed=seed,
            error=80.0 + seed,
            search_gpu_days=2e-5,
            evaluate_gpu_days=3e-5,
            peak_bytes=600_000_000,
            epochs=2,
        )
    for k in (1, 2, 4, 8):
        write(
            results_dir,
            method="pcdarts",
            variant=f"K={k}, EN",
            budget="reduced",
            overrides={"k": k},
            error=3.0 + k / 10,
            peak_bytes=int(8e9 / k),
            search_gpu_days=0.2 / k,
        )
    for seed, ppl in enumerate([56.9, 57.9]):
        write(results_dir, method="gdas", dataset="ptb", variant="default", seed=seed, error=ppl)
    return results_dir


@pytest.fixture(scope="module")
def reports(results):
    """The reports written twice from the same records, into two folders."""
    return [write_reports(results, results.parent / name) for name in ("first", "second")]


@pytest.mark.slow
def test_reports_are_byte_identical_across_runs(reports):
    first, second = reports
    assert [path.name for path in first] == [path.name for path in second]
    for one, other in zip(first, second, strict=True):
        assert one.read_bytes() == other.read_bytes(), one.name


def test_the_markdown_lists_the_mission_states_budgets_and_never_judges_smoke(reports):
    out = reports[0][0].parent
    markdown = (out / MARKDOWN_FILE).read_text()
    for info in catalog.MISSION_METHODS:
        assert f"| {info.name} " in markdown
    for dataset in catalog.MISSION_DATASETS:
        assert f"## {dataset}: " in markdown
    smoke_line = next(line for line in markdown.splitlines() if "| 1st order | smoke" in line)
    assert "synthetic-shapes (stand-in)" in smoke_line and "smoke budget: not a reproduction" in smoke_line
    assert "reproduced" not in smoke_line.replace("not a reproduction", "")
    assert "CPU: test (2 threads)" in smoke_line
    assert "| 0.30 (activations) |" in smoke_line  # bytes saved for backward, not the process RSS (0.60)
    reproduced = next(line for line in markdown.splitlines() if "| 2nd order | paper" in line)
    assert "| reproduced |" in reproduced and "2.76 ± 0.09 [C" in reproduced and "1 failed (not averaged)" in reproduced
    assert "not yet reproduced" in markdown
    html = (out / HTML_FILE).read_text()
    assert html.count("data:image/png;base64,") == 5 and "<table>" in html


def test_plots_cope_with_no_records(tmp_path):
    written = write_reports(tmp_path / "empty", tmp_path / "out")
    assert {path.name for path in written} >= {
        "leaderboard.md",
        "leaderboard.html",
        "error_vs_search_cost.png",
        "pcdarts_k_ablation.png",
        "seed_spread.png",
        "search_curves.png",
    }
    assert "from 0 run record(s)" in (tmp_path / "out" / MARKDOWN_FILE).read_text()


def test_the_command_names_an_invalid_record_file(tmp_path, capsys):
    results = tmp_path / "results"
    write(results)
    broken = results / "darts" / "cifar10" / "paper" / "broken.json"
    broken.write_text("{not json")
    assert main(["leaderboard", "--results-dir", str(results), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert str(broken) in error and error.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_the_command_writes_every_report(results, tmp_path, capsys):
    assert main(["leaderboard", "--results-dir", str(results), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out.split()
    assert sorted(printed) == sorted(str(path) for path in (tmp_path / "out").iterdir())


def test_record_order_on_disk_does_not_change_the_markdown(tmp_path):
    records = [make_record(seed=seed, error=2.7 + seed / 100, run_id=f"run-{seed}") for seed in range(4)]
    outputs = []
    for attempt in range(2):
        random.Random(attempt).shuffle(records)
        outputs.append(build_sections(aggregate(records, CLAIMS), CLAIMS, [], records))
    assert outputs[0] == outputs[1]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_the_html_page_renders_in_headless_chromium(reports, tmp_path):
    """The static page loads in a real browser with its tables and plots; CI sets NASBENCH_REQUIRE_BROWSER=1."""
    if CHROMIUM is None:
        if os.environ.get("NASBENCH_REQUIRE_BROWSER") == "1":
            pytest.fail("NASBENCH_REQUIRE_BROWSER=1 but no chromium on PATH (apt-get install chromium)")
        pytest.skip("chromium is not installed")
    page = reports[0][0].parent / HTML_FILE
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert dom.count("<table>") >= 2 + len(catalog.MISSION_DATASETS)  # coverage, datasets, claims
    assert dom.count('src="data:image/png;base64,') == len(list(page.parent.glob("*.png")))  # every plot inline
    assert "NAS reproduction leaderboard" in dom and "not yet reproduced" in dom


def test_an_evaluation_of_a_published_cell_is_judged_against_that_cell():
    records = [
        make_record(
            variant="transferred cell", dataset="imagenet", phase="evaluate", seed=seed, error=error, genotype=genotype
        )
        for seed, error in enumerate([26.6, 26.9])
        for genotype in ("darts", "my_cell.json")
    ]
    board = aggregate(records, CLAIMS)
    published = only_row(board, dataset="imagenet", genotype="DARTS_V2")  # the alias "darts", resolved
    assert (published.claim.value, published.verdict.label) == (26.7, "reproduced")
    custom = only_row(board, dataset="imagenet", genotype="my_cell.json")
    assert custom.verdict.label is None and custom.verdict.note == "no paper claim for cell 'my_cell.json'"
    darts_imagenet = [row for row in board.rows if (row.key.method, row.key.dataset) == ("darts", "imagenet")]
    assert not any(row.is_gap for row in darts_imagenet)  # the 2nd-order claim is covered by the DARTS_V2 rows
