"""Black-box searches of the recurrent cell on a fixture PTB: NAS-RL, DARTS's random baseline and
Li & Talwalkar's random search with weight sharing end to end, ranked by validation perplexity,
deterministic per seed, resumable after SIGKILL; the weight-sharing supernet's sharing, sampling
and scoring."""

import itertools
import json
import math
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from blackbox_runs import (
    check_kill_and_resume,
    cli_arguments,
    kill_after_first_round_then_resume,
    reproducible,
    run_search,
    write_data,
)
from cli_calls import cli
from record_factory import make_record

from methods.nas_rl import NASRL
from nasbench_repro import records
from nasbench_repro.blackbox import CandidateTask, Evaluation, History, RecurrentWeightSharing, train_candidate
from nasbench_repro.budgets import get_budget
from nasbench_repro.context import Context
from nasbench_repro.data import DataRequest, resolve
from nasbench_repro.errors import DivergenceError
from nasbench_repro.leaderboard.plots import best_so_far, blackbox_best_so_far
from nasbench_repro.meters import PhaseMeter
from nasbench_repro.protocol import PhaseProtocol, load_protocol
from nasbench_repro.spaces.genotypes import RecurrentGenotype
from nasbench_repro.spaces.rnn.model import evaluation_model
from nasbench_repro.spaces.rnn.sampling import RecurrentCellSpace
from nasbench_repro.spaces.space import PERPLEXITY
from nasbench_repro.spec import RunSpec

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


# --- random search with weight sharing (the default random protocol on PTB) -----------------------------------

TINY_SUPERNET = {"epochs": 1, "hidden_size": 6, "batch_size": 4, "valid_batch_size": 2}


def weight_sharing(tmp_path, **values) -> RecurrentWeightSharing:
    """The evaluator of the default PTB protocol on a fixture PTB, its network shrunk, in this process."""
    write_data(tmp_path / "data", "ptb")
    protocol = {**load_protocol("random", "ptb").phase("search"), **TINY_SUPERNET, **values}
    device, generator = torch.device("cpu"), torch.Generator().manual_seed(0)
    request = DataRequest("ptb", tmp_path / "data", "paper", True)
    ctx = Context(
        spec=RunSpec("random", "ptb", seed=0),
        phase="search",
        protocol=PhaseProtocol("search", protocol),
        device=device,
        generator=generator,
        meter=PhaseMeter(device),
        checkpoint_path=tmp_path / "checkpoint-search.pt",
        data_factory=lambda: resolve(request).load(device, generator),
        data_request=request,
    )
    torch.manual_seed(0)
    return RecurrentWeightSharing(RecurrentCellSpace.from_protocol(protocol), ctx, random.Random(0))


def weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def test_the_supernet_is_one_language_model_whose_genotype_changes_per_window(tmp_path):
    """One weight matrix per node (as many weights as one cell's language model), and one fresh
    sample of the space per training window: exactly what the space's sampler draws next."""
    sharing = weight_sharing(tmp_path)
    single = evaluation_model(
        sharing.supernet.cell.genotype, sharing.ctx.data.vocabulary_size, sharing.supernet.hidden_size
    )
    assert weights(sharing.supernet).keys() == weights(single).keys()
    assert sum(p.numel() for p in sharing.supernet.parameters()) == sum(p.numel() for p in single.parameters())
    ran = []
    sharing.supernet.register_forward_pre_hook(lambda model, args: ran.append(model.cell.genotype))
    expected_draws = random.Random()
    expected_draws.setstate(sharing.rng.getstate())
    logged = sharing.prepare(0)
    assert len(ran) > 3 and ran == [sharing.space.sample(expected_draws) for _ in ran]
    assert len(set(ran)) == len(ran)  # a new architecture every window
    assert math.isfinite(logged["supernet_train_loss"]) and logged["supernet_train_ppl"] > 1


def test_a_window_trained_with_one_genotype_moves_the_weights_another_one_runs_with(tmp_path, monkeypatch):
    sharing = weight_sharing(tmp_path)
    other = sharing.space.sample(random.Random(1))
    before = weights(sharing.supernet)
    untrained = sharing.score(other)
    assert all(torch.equal(value, before[name]) for name, value in weights(sharing.supernet).items())  # scoring: none
    ran = []
    sharing.supernet.register_forward_pre_hook(lambda model, args: ran.append(model.cell.genotype))
    monkeypatch.setattr(Context, "progress", lambda self, steps, total=None, desc="": itertools.islice(steps, 1))
    sharing.prepare(0)  # one window
    [trained_with] = ran
    assert trained_with != other
    after = weights(sharing.supernet)
    node_weights = [name for name in after if name.startswith("cell.node_weights.")]
    assert len(node_weights) == 8 and all(not torch.equal(after[name], before[name]) for name in node_weights)
    assert sharing.score(other)["ppl"] != untrained["ppl"]  # the other genotype runs with the moved weights


def test_every_candidate_is_scored_on_the_whole_validation_split_the_same_each_time(tmp_path):
    sharing = weight_sharing(tmp_path)
    sharing.prepare(0)
    genotypes = [sharing.space.sample(random.Random(seed)) for seed in range(3)]
    columns = sharing.ctx.protocol.valid_batch_size
    rows = len(sharing.ctx.data.tokens["valid"]) // columns  # the fixture's split is under valid_examples
    for genotype in genotypes:
        assert sharing.score(genotype)["tokens"] == (rows - 1) * columns  # every token but the first of each column
    first = sharing.evaluate(genotypes)
    again = sharing.evaluate([genotypes[1], genotypes[0], genotypes[1]])
    assert [evaluation.value for evaluation in again] == [first[1].value, first[0].value, first[1].value]
    assert [evaluation.value for evaluation in first] == [sharing.score(genotype)["ppl"] for genotype in genotypes]
    assert len({evaluation.value for evaluation in first}) == 3  # the genotype decides the score
    assert all(evaluation.trained and evaluation.selectable and not evaluation.diverged for evaluation in first)


def test_a_candidate_the_shared_weights_make_diverge_scores_worst_and_the_search_goes_on(tmp_path):
    """Node 1's candidate half reads 10^30 times the first hidden unit (its gate stays at 1/2): an
    identity there explodes, a tanh keeps the node bounded."""
    sharing = weight_sharing(tmp_path)
    with torch.no_grad():
        node_1 = sharing.supernet.cell.node_weights[0]  # [hidden, 2 hidden]: the gate's columns, then the candidate's
        node_1.zero_()
        node_1[0, sharing.supernet.hidden_size :] = 1e30
    rest = list(sharing.space.sample(random.Random(2)).recurrent[1:])
    bounded, exploding = (RecurrentGenotype([(name, 0), *rest], range(1, 9)) for name in ("tanh", "identity"))
    evaluations = sharing.evaluate([bounded, exploding])
    assert math.isfinite(evaluations[0].value) and not evaluations[0].diverged
    assert evaluations[1].diverged and evaluations[1].value == math.inf and evaluations[1].score == -math.inf
    history = History(sharing.space)
    history.add(evaluations)
    assert history.best().genotype == bounded


def test_a_diverging_supernet_fails_the_run_in_one_line(tmp_path):
    sharing = weight_sharing(tmp_path, lr=float("nan"))
    with pytest.raises(DivergenceError, match="supernet training loss is nan") as failure:
        sharing.prepare(0)
    assert len(str(failure.value).splitlines()) == 1


def search_through_the_cli(capsys, data: Path, out: Path, seed: int, *extra: str) -> dict:
    code, stdout, stderr = cli(capsys, *cli_arguments("random", data, out, seed, "ptb"), *extra)
    assert code == 0, stderr
    return records.read_record(Path(stdout.strip().splitlines()[-1]))


@pytest.mark.slow
def test_random_search_with_weight_sharing_runs_on_ptb_deterministic_per_seed(tmp_path, capsys):
    data = write_data(tmp_path / "data", "ptb")
    record = search_through_the_cli(capsys, data, tmp_path / "first", 3)
    assert record["status"] == "complete", record.get("reason")
    assert record["variant"] == "default" and record["protocol"]["values"]["search"]["evaluator"] == "weight_sharing"
    supernet, *rounds = record["curves"]["search"]
    assert supernet["supernet_train_loss"] > 0 and "evaluated" not in supernet  # the supernet's epoch first
    assert [row["evaluated"] for row in rounds] == [3, 6]
    assert record["metrics"]["architectures_evaluated"] == 6
    assert (
        record["metrics"]["search_valid_ppl"]
        == rounds[-1]["best_valid_ppl"]
        == min(row["round_best_valid_ppl"] for row in rounds)
    )
    genotype = RecurrentGenotype.from_dict(record["genotype"])
    assert len(genotype.recurrent) == 8 and str(genotype) == rounds[-1]["best_genotype"]
    again = search_through_the_cli(capsys, data, tmp_path / "again", 3)
    assert reproducible(again) == reproducible(record)
    assert search_through_the_cli(capsys, data, tmp_path / "other", 4)["curves"] != record["curves"]


@pytest.mark.slow
def test_a_killed_weight_sharing_search_resumes_to_the_uninterrupted_record(tmp_path, capsys):
    data = write_data(tmp_path / "data", "ptb")
    longer = ("--set", "search.epochs=2")  # the kill lands after the first supernet epoch, with one more to run
    uninterrupted = search_through_the_cli(capsys, data, tmp_path / "straight", 1, *longer)
    arguments = [*cli_arguments("random", data, tmp_path / "killed", 1, "ptb"), *longer]
    resumed = kill_after_first_round_then_resume(arguments, tmp_path / "killed")
    assert resumed["cost"]["search"]["resumed_from_epoch"] >= 1
    assert reproducible(resumed) == reproducible(uninterrupted)


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
        memory_format="contiguous",
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
