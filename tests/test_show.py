"""The summary a run ends with and `nasbench show` prints: the leaderboard's own row for the records,
their genotypes and paths; for every committed record, and in agreement with the leaderboard."""

import json
import re
from pathlib import Path

import pytest
import tiny_method
from cli_calls import cli
from record_factory import make_record, write

from nasbench_repro import records
from nasbench_repro.leaderboard.aggregate import aggregate
from nasbench_repro.leaderboard.claims import load_claims
from nasbench_repro.leaderboard.report import notes_cell, paper_cell
from nasbench_repro.leaderboard.summary import genotype_lines, summarise

COMMITTED_RESULTS = Path(__file__).resolve().parents[1] / "results"
CLAIMS = load_claims()


def committed_records() -> list[Path]:
    return records.record_files(COMMITTED_RESULTS)


def test_there_are_committed_records_to_show():
    assert len(committed_records()) >= 10


@pytest.mark.parametrize("path", committed_records(), ids=lambda path: path.stem)
def test_show_works_on_every_committed_record(capsys, path):
    record = records.read_record(path)
    code, out, err = cli(capsys, "show", str(path))
    assert code == 0 and err == ""
    assert f"{record['spec']['method']} ({record['variant']})" in out and f"record: {path}" in out
    assert record["run_id"] in out and re.search(rf"^budget +{record['budget']}$", out, re.MULTILINE)
    code, out, _ = cli(capsys, "show", record["run_id"], "--results-dir", str(COMMITTED_RESULTS), "--json")
    entry = json.loads(out)
    assert code == 0 and [run["record"] for run in entry["runs"]] == [str(path)]
    assert entry["method"] == record["spec"]["method"] and entry["budget"] == record["budget"]


def test_the_summary_is_the_leaderboards_row(tmp_path):
    """A paper-budget reproduction within the paper's spread: the same paper number, claim, verdict and notes."""
    paths = [write(tmp_path, seed=seed, error=error) for seed, error in enumerate([2.70, 2.80, 2.75])]
    paths.append(write(tmp_path, seed=3, error=None, status="interrupted"))
    loaded = records.load_records(tmp_path)
    [entry] = summarise(loaded, CLAIMS)
    [row] = [row for row in aggregate(loaded, CLAIMS).rows if row.runs or row.interrupted]
    assert (entry["verdict"], entry["note"], entry["paper"]["text"]) == (
        row.verdict.label,
        notes_cell(row),
        paper_cell(row),
    )
    assert entry["verdict"] == "reproduced" and entry["paper"]["claim"].startswith("C")
    assert entry["mean"] == pytest.approx(2.75)
    assert entry["complete_seeds"] == [0, 1, 2] and entry["seeds"] == [0, 1, 2, 3]
    assert entry["gpu_days"] == {"search": pytest.approx(1.0), "evaluate": pytest.approx(1.5)}
    assert entry["peak_memory_gb"]["search"] == {"gb": pytest.approx(3.0), "kind": "cuda"}
    assert sorted(run["record"] for run in entry["runs"]) == sorted(map(str, paths))


def test_a_smoke_run_says_why_it_has_no_verdict(tmp_path, capsys):
    path = write(tmp_path, budget="smoke", device="cpu", error=80.0)
    code, out, _ = cli(capsys, "show", str(path))
    assert code == 0
    assert "verdict       none: smoke budget: not a reproduction" in out
    assert "test error %  80.00" in out and "2.76 ± 0.09 [C" in out  # beside the paper's number and claim id
    assert "search 1 · evaluation 1.5" in out and "search 1.5 GB (activations)" in out  # CPU: saved activations


def test_an_interrupted_run_shows_how_to_resume(tmp_path, capsys):
    record = make_record(status="interrupted", error=None)
    record["reason"] = f"interrupted by the user or a signal; resume with --resume {record['run_id']}"
    path = records.write_record(tmp_path, record)
    code, out, _ = cli(capsys, "show", record["run_id"], "--results-dir", str(tmp_path))
    assert code == 0 and f"--resume {record['run_id']}" in out and f"record: {path}" in out
    assert "1 interrupted (not averaged)" in out


def test_genotypes_print_one_line_per_cell():
    cnn = {
        "normal": [["sep_conv_3x3", 0], ["skip_connect", 1]],
        "normal_concat": [2],
        "reduce": None,
        "reduce_concat": [2],
    }
    assert genotype_lines(cnn) == [
        "normal: sep_conv_3x3(0) skip_connect(1) | concat [2]",
        "reduce: none searched (the network's fixed cell)",
    ]
    rnn = {"recurrent": [["sigmoid", 0], ["relu", 1]], "concat": [1, 2]}
    assert genotype_lines(rnn) == ["recurrent: sigmoid(0) relu(1) | concat [1, 2]"]


@pytest.mark.parametrize("name, problem", [("no-such-run", "no record 'no-such-run'"), ("broken", "broken.json")])
def test_show_refuses_what_is_not_a_record_in_one_line(tmp_path, capsys, name, problem):
    broken = tmp_path / "darts" / "cifar10" / "smoke" / "broken.json"
    broken.parent.mkdir(parents=True)
    broken.write_text("{}")
    code, out, err = cli(capsys, "show", name, "--results-dir", str(tmp_path))
    assert code == 2 and out == "" and len(err.splitlines()) == 1 and problem in err


def test_run_prints_paths_on_stdout_and_ends_with_the_summary_on_stderr(tiny, capsys):
    code, out, err = cli(
        capsys,
        "run",
        "tiny",
        "--dataset",
        "toy",
        "--seeds",
        "0",
        "1",
        "--budget",
        "smoke",
        "--results-dir",
        str(tiny.results_dir),
        "--runs-dir",
        str(tiny.runs_dir),
    )
    paths = out.split()
    assert code == 0 and len(paths) == 2 and all(Path(path).is_file() for path in paths)
    summary = err[err.index("method        tiny (default)") :]
    assert "seeds         0, 1 (2 complete)" in summary and "(mean of 2 seeds)" in summary
    assert "verdict       none: smoke budget: not a reproduction" in summary
    assert all(f"record: {path}" in summary for path in paths)
    code, shown, _ = cli(capsys, "show", paths[0])
    assert code == 0 and "seeds         0 (1 complete)" in shown


def test_an_interrupted_run_still_ends_with_its_summary(tiny, capsys):
    tiny_method.TinyMethod.interrupt_at = ("search", 1)
    code, out, err = cli(
        capsys,
        "run",
        "tiny",
        "--dataset",
        "toy",
        "--phase",
        "search",
        "--results-dir",
        str(tiny.results_dir),
        "--runs-dir",
        str(tiny.runs_dir),
    )
    assert code == 130
    assert f"record: {out.strip()}" in err and "interrupted: interrupted by the user or a signal; resume with" in err
