"""The seed-stability gate: PASS within the band, exit 1 outside it, exit 2 on unusable input."""

import json

import pytest
from record_factory import write

from nasbench_repro import records
from nasbench_repro.cli import main
from nasbench_repro.leaderboard.stability import MIN_RELATIVE_TOLERANCE, Band


def gate(results_dir, *extra):
    return main(["stability", "darts", "--dataset", "cifar10", "--results-dir", str(results_dir), *extra])


def seeds(results_dir, errors, budget="smoke", started="2025-01-01T00:00:00+00:00", **fields):
    for seed, error in enumerate(errors):
        write(results_dir, seed=seed, error=error, budget=budget, started=started, **fields)


@pytest.fixture
def baseline(tmp_path, capsys):
    """A smoke baseline of 80.0 ± 0.5 written from three seeds, then newer seeds to check."""
    results_dir = tmp_path / "results"
    seeds(results_dir, [79.5, 80.0, 80.5])
    assert gate(results_dir, "--update-baseline") == 0
    assert "baseline written deliberately" in capsys.readouterr().out
    return results_dir


def test_update_baseline_writes_a_file_the_record_loader_ignores(baseline):
    path = baseline / "baselines" / "darts__cifar10__smoke__2nd-order.json"
    stored = json.loads(path.read_text())
    assert (stored["mean"], stored["std"]) == (pytest.approx(80.0), pytest.approx(0.5))
    assert (stored["k"], stored["n_seeds"]) == (2.0, 3)
    assert path not in records.record_files(baseline)
    assert len(records.load_records(baseline)) == 3


def test_a_stable_set_passes(baseline, capsys):
    seeds(baseline, [79.8, 80.4, 80.1], started="2025-02-01T00:00:00+00:00")
    assert gate(baseline) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "band: 80.0000 ± 1.0000" in out and "2025-02-01" in out


def test_a_shifted_set_is_a_regression(baseline, capsys):
    seeds(baseline, [82.0, 82.5, 81.8], started="2025-02-01T00:00:00+00:00")
    assert gate(baseline) == 1
    assert "REGRESSION: mean 82.1000 is above the band" in capsys.readouterr().out
    assert gate(baseline, "--k", "5") == 0  # a wider band, asked for explicitly


def test_too_few_seeds_is_unusable(tmp_path, capsys):
    seeds(tmp_path, [80.0])
    assert gate(tmp_path) == 2
    error = capsys.readouterr().err
    assert "only 1 seed" in error and error.count("\n") == 1


def test_mixed_budgets_are_unusable_until_one_is_chosen(baseline, capsys):
    seeds(baseline, [2.7, 2.8], budget="paper")
    assert gate(baseline) == 2
    assert "mixed budgets (paper, smoke)" in capsys.readouterr().err
    assert gate(baseline, "--budget", "smoke") == 0


def test_stand_in_and_real_data_are_unusable_until_one_is_chosen(baseline, capsys):
    seeds(baseline, [40.0, 60.0], data="synthetic-shapes")
    assert gate(baseline) == 2
    assert "mixed data" in capsys.readouterr().err
    assert gate(baseline, "--data", "cifar10") == 0
    assert gate(baseline, "--data", "synthetic-shapes", "--update-baseline") == 0
    assert "(stand-in data synthetic-shapes)" in capsys.readouterr().out
    stand_in_file = baseline / "baselines" / "darts__cifar10-synthetic-shapes__smoke__2nd-order.json"
    stand_in = json.loads(stand_in_file.read_text())
    assert (stand_in["data"], stand_in["mean"]) == ("synthetic-shapes", pytest.approx(50.0))


def test_no_baseline_falls_back_to_the_paper_spread_at_the_paper_budget(tmp_path, capsys):
    seeds(tmp_path, [2.70, 2.80, 2.75], budget="paper")  # paper: 2.76 ± 0.09
    assert gate(tmp_path) == 0
    assert "from paper C" in capsys.readouterr().out
    seeds(tmp_path, [3.4, 3.5, 3.45], budget="paper", started="2025-03-01T00:00:00+00:00")
    assert gate(tmp_path) == 1


def test_no_baseline_and_no_paper_spread_is_unusable(tmp_path, capsys):
    seeds(tmp_path, [80.0, 81.0])
    assert gate(tmp_path) == 2
    assert "no baseline" in capsys.readouterr().err


def test_overridden_and_failed_runs_are_not_part_of_the_set(tmp_path, capsys):
    seeds(tmp_path, [80.0], overrides={"search.epochs": 1})
    write(tmp_path, seed=1, error=None, status="failed", budget="smoke")
    write(tmp_path, seed=2, error=80.0, budget="smoke")
    assert gate(tmp_path) == 2
    assert "only 1 seed" in capsys.readouterr().err


def test_a_zero_std_baseline_keeps_a_minimum_tolerance():
    band = Band(centre=80.0, spread=0.0, k=2.0, source="test")
    assert band.half_width == pytest.approx(MIN_RELATIVE_TOLERANCE * 80.0)
    assert band.contains(80.0 + 0.5 * band.half_width) and not band.contains(80.0 + 2 * band.half_width)


def test_a_baseline_where_records_live_is_refused(baseline, capsys):
    misplaced = baseline / "darts" / "cifar10" / "smoke" / "baseline.json"
    assert gate(baseline, "--baseline", str(misplaced), "--update-baseline") == 2
    assert "where run records live" in capsys.readouterr().err
    assert not misplaced.exists()


def test_a_malformed_baseline_is_named(baseline, capsys):
    path = baseline / "baselines" / "darts__cifar10__smoke__2nd-order.json"
    path.write_text('{"mean": "high"}')
    assert gate(baseline) == 2
    error = capsys.readouterr().err
    assert str(path) in error and error.count("\n") == 1


def test_evaluations_of_several_cells_need_one_chosen(tmp_path, capsys):
    for genotype, errors in (("DARTS_V2", [2.70, 2.80]), ("my_cell.json", [3.5, 3.6])):
        seeds(tmp_path, errors, budget="paper", variant="transferred cell", phase="evaluate", genotype=genotype)
    assert gate(tmp_path) == 2
    assert "choose one with --genotype" in capsys.readouterr().err
    assert gate(tmp_path, "--genotype", "darts") == 0  # an alias of DARTS_V2, judged against its 2.76 ± 0.09
    assert "evaluating DARTS_V2" in capsys.readouterr().out


def test_a_set_below_the_band_is_a_regression_too(baseline, capsys):
    """A sudden improvement is as suspect as a loss."""
    seeds(baseline, [77.0, 77.5, 76.8], started="2025-02-01T00:00:00+00:00")
    assert gate(baseline) == 1
    assert "REGRESSION: mean 77.1000 is below the band" in capsys.readouterr().out


@pytest.mark.parametrize("k", ["0", "-1", "nan", "inf"])
def test_k_must_be_a_positive_finite_number(baseline, capsys, k):
    assert gate(baseline, "--k", k) == 2
    error = capsys.readouterr().err
    assert f"--k must be a positive finite number, not {k}" in error and error.count("\n") == 1


def test_mixed_variants_are_unusable_until_one_is_chosen(baseline, capsys):
    seeds(baseline, [3.0, 3.1], variant="1st order")
    assert gate(baseline) == 2
    assert "mixed variants (1st order, 2nd order)" in capsys.readouterr().err
    assert gate(baseline, "--variant", "2nd order") == 0


def test_no_matching_records_is_unusable(tmp_path, capsys):
    seeds(tmp_path, [80.0, 80.5], method="pcdarts", variant="K=4, EN")
    assert gate(tmp_path) == 2
    error = capsys.readouterr().err
    assert "no complete records of darts on cifar10" in error and error.count("\n") == 1


@pytest.mark.parametrize(
    "field, value, problem",
    [
        ("metric", "test_ppl", "is for metric 'test_ppl', not 'test_error_pct'"),
        ("variant", "1st order", "is for variant '1st order', not '2nd order'"),
        ("mean", float("nan"), "mean, std and k must be finite, with std >= 0 and k > 0"),
        ("mean", float("inf"), "mean, std and k must be finite, with std >= 0 and k > 0"),
        ("std", -0.5, "mean, std and k must be finite, with std >= 0 and k > 0"),
        ("k", float("inf"), "mean, std and k must be finite, with std >= 0 and k > 0"),
    ],
)
def test_a_baseline_that_does_not_fit_is_named(baseline, capsys, field, value, problem):
    path = baseline / "baselines" / "darts__cifar10__smoke__2nd-order.json"
    stored = json.loads(path.read_text())
    stored[field] = value
    path.write_text(json.dumps(stored))  # NaN and Infinity as Python's json writes them
    assert gate(baseline) == 2
    error = capsys.readouterr().err
    assert str(path) in error and problem in error and error.count("\n") == 1


def test_an_invalid_record_is_named_not_skipped(baseline, capsys):
    broken = baseline / "darts" / "cifar10" / "smoke" / "broken.json"
    broken.write_text('{"schema_version": 1')
    assert gate(baseline) == 2
    error = capsys.readouterr().err
    assert str(broken) in error and error.count("\n") == 1


def test_interrupted_runs_are_not_part_of_the_set(tmp_path, capsys):
    seeds(tmp_path, [80.0, 80.5])
    write(tmp_path, seed=0, error=95.0, status="interrupted", budget="smoke", started="2025-03-01T00:00:00+00:00")
    write(tmp_path, seed=2, error=99.0, status="interrupted", budget="smoke")
    assert gate(tmp_path, "--update-baseline") == 0
    out = capsys.readouterr().out
    assert "mean ± std over 2 seeds: 80.2500" in out and "95.0000" not in out and "99.0000" not in out
