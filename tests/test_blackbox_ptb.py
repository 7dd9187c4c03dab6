"""Black-box searches of the recurrent cell on a fixture PTB: NAS-RL and DARTS's random baseline end
to end, ranked by validation perplexity, deterministic per seed, resumable after SIGKILL; the
default random protocol (weight sharing) refused in one line."""

import json
import math
import random
from types import SimpleNamespace

import pytest
import torch
from blackbox_runs import check_kill_and_resume, reproducible, run_search, write_data
from record_factory import make_record

from methods.nas_rl import NASRL
from nasbench_repro.blackbox import CandidateTask, Evaluation, History, train_candidate
from nasbench_repro.budgets import get_budget
from nasbench_repro.cli import main
from nasbench_repro.data import DataRequest
from nasbench_repro.leaderboard.plots import best_so_far, blackbox_best_so_far
from nasbench_repro.protocol import PhaseProtocol, load_protocol
from nasbench_repro.spaces.rnn.sampling import RecurrentCellSpace
from nasbench_repro.spaces.space import PERPLEXITY

SEARCHES = [("nas-rl", None), ("random", "darts-baseline")]


def search(method: str, variant: str | None, tmp_path, seed: int, name: str) -> dict:
    data = write_data(tmp_path / "data", "ptb")
    return run_search(method, data, tmp_path / name, seed=seed, variant=variant, dataset="ptb")


@pytest.mark.slow
@pytest.mark.parametrize("method, variant", SEARCHES)
def test_a_ptb_search_logs_perplexity_and_is_deterministic_per_seed(tmp_path, method, variant):
    record = search(method, variant, tmp_path, 3, "first")
    assert record["status"] == "complete", record.get("reason")
    rows = record["curves"]["search"]
    assert [row["evaluated"] for row in rows] == ([2, 4, 6] if method == "nas-rl" else [3, 6])
    best = [row["best_valid_ppl"] for row in rows]
    assert all(math.isfinite(value) and value > 1 for value in best)
    assert best == sorted(best, reverse=True)  # the best so far only improves (falls)
    assert not any("valid_acc" in key for row in rows for key in row)
    assert record["metrics"]["search_valid_ppl"] == best[-1]
    assert record["genotype"]["recurrent"] and record["variant"] in (
        "DARTS recurrent cell space",
        "DARTS baseline (best of 8)",
    )
    results = [json.loads(path.read_text()) for path in (tmp_path / "first" / "runs").rglob("evaluations-search/*")]
    assert min(result["valid_ppl"] for result in results) == best[-1]
    if method == "nas-rl":
        assert all(0 < row["mean_reward"] < 80 for row in rows)  # 80 / perplexity², perplexity > 1
    assert reproducible(search(method, variant, tmp_path, 3, "again")) == reproducible(record)
    assert search(method, variant, tmp_path, 4, "other")["curves"] != record["curves"]


@pytest.mark.slow
def test_a_killed_ptb_search_resumes_to_the_uninterrupted_record(tmp_path):
    check_kill_and_resume("random", tmp_path, seed=1, dataset="ptb", variant="darts-baseline")


def test_a_text_candidate_is_scored_by_its_best_validation_perplexity(tmp_path):
    """One candidate trained in this process: its score is the lowest perplexity of its scored epochs."""
    write_data(tmp_path / "data", "ptb")
    protocol = load_protocol("random", "ptb", variant="darts-baseline")
    values = {key: entry.value for key, entry in protocol.phases["search"].items()}
    values.update(epochs=2, score_window=2, hidden_size=4, batch_size=4, valid_batch_size=2)
    space = RecurrentCellSpace()
    genotype = space.sample(random.Random(0))
    task = CandidateTask(
        space,
        genotype,
        space.key(genotype),
        values,
        seed=7,
        request=DataRequest("ptb", tmp_path / "data", "paper", True),
        precision="fp32",
        result_path=tmp_path / "result.json",
    )
    result = train_candidate(task, torch.device("cpu"))
    assert len(result["valid_curve"]) == 2 and result["valid_ppl"] == min(result["valid_curve"])
    assert not result["diverged"] and json.loads((tmp_path / "result.json").read_text()) == result


def test_the_smoke_budget_gives_a_candidate_a_share_of_the_tokens():
    protocol = load_protocol("nas-rl", "ptb")
    get_budget("smoke").apply(protocol)
    search_values = protocol.phases["search"]
    assert search_values["train_examples"].value == round(929589 * 512 / 50000)  # 1.02%, as 512 of 50,000 images
    assert search_values["valid_examples"].value == round(73760 * 0.1)
    assert search_values["architectures"].value == 8 and search_values["epochs"].value == 1


def test_random_search_with_weight_sharing_on_ptb_is_refused_in_one_line(tmp_path, capsys):
    code = main(["run", "random", "--dataset", "ptb", "--data-root", str(write_data(tmp_path / "data", "ptb"))])
    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1 and "--variant darts-baseline" in error


def test_nas_rl_rewards_a_cell_with_80_over_its_perplexity_squared():
    """Zoph & Le Sec. 4.2's reward on PTB, read from the ptb protocol: c / perplexity², c = 80."""
    method = NASRL()
    values = {key: entry.value for key, entry in load_protocol("nas-rl", "ptb").phases["search"].items()}
    method.protocol = PhaseProtocol("search", values)
    method.space = RecurrentCellSpace(nodes=3)
    method.history = History(method.space)
    method.start()
    rng = random.Random(0)
    cells = [method.space.sample(rng) for _ in range(2)]
    evaluations = [
        Evaluation.of(PERPLEXITY, cell, method.space.key(cell), perplexity, trained=True)
        for cell, perplexity in zip(cells, (100.0, 200.0), strict=True)
    ]
    assert [evaluation.score for evaluation in evaluations] == [-100.0, -200.0]  # lower perplexity ranks higher
    logged = method.update(evaluations)
    assert logged["mean_reward"] == pytest.approx((80 / 100**2 + 80 / 200**2) / 2)


def test_the_best_so_far_plot_draws_perplexity_runs_in_a_row_of_their_own():
    runs = []
    for dataset, metric, values in (("cifar10", "valid_acc", (0.2, 0.3)), ("ptb", "valid_ppl", (300.0, 250.0))):
        record = make_record(method="random", variant="default", budget="smoke", dataset=dataset)
        record["curves"]["search"] = [
            {"epoch": epoch, "evaluated": 4 * (epoch + 1), f"best_{metric}": best} for epoch, best in enumerate(values)
        ]
        record["cost"]["search"] = {**record["cost"].get("search", {}), "epoch_seconds": [3600.0, 3600.0]}
        runs.append(SimpleNamespace(record=record))
    assert best_so_far(runs[1], "valid_ppl") == [(4, 300.0, 1.0), (8, 250.0, 2.0)]
    assert best_so_far(runs[1]) == [] and best_so_far(runs[0], "valid_ppl") == []
    rows = [
        SimpleNamespace(
            runs=(run,),
            key=SimpleNamespace(
                method="random",
                variant="default",
                budget="smoke",
                genotype="",
                data=dataset,
                dataset=dataset,
                overrides="",
            ),
            n_seeds=1,
        )
        for run, dataset in zip(runs, ("cifar10", "ptb"), strict=True)
    ]
    one_row = blackbox_best_so_far(SimpleNamespace(rows=rows[:1])).png
    two_rows = blackbox_best_so_far(SimpleNamespace(rows=rows)).png
    assert _png_height(two_rows) == 2 * _png_height(one_row)


def _png_height(png: bytes) -> int:
    return int.from_bytes(png[20:24], "big")  # the IHDR chunk: width, then height


@pytest.mark.slow
def test_a_diverged_language_model_candidate_scores_worst_and_the_search_goes_on(tmp_path, monkeypatch):
    """JSON has no infinity: the diverged candidate's result file stores null, read back as the worst perplexity."""
    import nasbench_repro.blackbox as blackbox

    def diverged(network, values, data, autocast):
        return [math.inf], True

    monkeypatch.setattr(blackbox, "fit_language_model", diverged)
    record = search("nas-rl", None, tmp_path, 3, "diverged")
    assert record["status"] == "complete", record.get("reason")
    results = [json.loads(path.read_text()) for path in (tmp_path / "diverged" / "runs").rglob("evaluations-search/*")]
    assert results and all(result["diverged"] and result["valid_ppl"] is None for result in results)
    assert all(result["valid_curve"] == [None] for result in results)
