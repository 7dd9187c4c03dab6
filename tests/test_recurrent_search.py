"""The recurrent (PTB) search through the shared bilevel loop: rnn/architect.py's second-order
gradient against exact autograd, the per-window learning rate, the streams' states and aligned
α windows, GDAS's sampled recurrent cell, runs through the runner (determinism per seed, resume,
search then evaluation), refusals of searches no paper describes, the text budgets, profiling."""

from __future__ import annotations

import json

import pytest
import torch
from text_files import write_ptb

from methods.darts import DARTS
from methods.gdas import GDAS
from nasbench_repro import differentiable, records
from nasbench_repro.budgets import BUDGETS, get_budget
from nasbench_repro.catalog import get_method
from nasbench_repro.cli import main
from nasbench_repro.data import DataRequest, resolve
from nasbench_repro.differentiable import ARCH_STEP, CNN_ARCHITECT, RNN_ARCHITECT, WEIGHT_STEP
from nasbench_repro.differentiable import second_order_arch_gradient as real_second_order_arch_gradient
from nasbench_repro.protocol import PhaseProtocol, check_domains, load_protocol
from nasbench_repro.recurrent_search import RecurrentBatch, RecurrentLanguageModelSearch
from nasbench_repro.runner import Paths, execute
from nasbench_repro.spaces.cnn.supernet import CellWeights
from nasbench_repro.spaces.genotypes import genotype_from_dict
from nasbench_repro.spec import RunSpec

CPU = torch.device("cpu")
VOCABULARY = 7
NO_DROPOUT = {
    "word_dropout": 0.0,
    "embedding_dropout": 0.0,
    "cell_input_dropout": 0.0,
    "hidden_dropout": 0.0,
    "output_dropout": 0.0,
}


def tiny_protocol(method: str = "darts", **changes) -> PhaseProtocol:
    """The method's PTB search protocol on a toy scale: 4 hidden units, 3 columns, windows of 5."""
    values = {
        **load_protocol(method, "ptb").phase("search"),
        "hidden_size": 4,
        "batch_size": 3,
        "bptt": 5,
        "valid_batch_size": 2,
        **changes,
    }
    return PhaseProtocol("search", values)


def tokens(length: int, columns: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows = torch.randint(0, VOCABULARY, (length + 1, columns), generator=torch.Generator().manual_seed(seed))
    return rows[:-1], rows[1:]


def batch(
    length: int, seed: int, protocol: PhaseProtocol, drawn_length: int | None = None, dtype: torch.dtype = torch.float32
) -> RecurrentBatch:
    inputs, targets = tokens(length, protocol.batch_size, seed)
    hidden = 0.1 * torch.randn(
        protocol.batch_size, protocol.hidden_size, dtype=dtype, generator=torch.Generator().manual_seed(seed + 100)
    )
    return RecurrentBatch(inputs, targets, drawn_length or length, hidden)


# --- the second-order α gradient of rnn/architect.py -----------------------------------------------------------


def float64_search(lr: float, weight_decay: float):
    protocol = tiny_protocol(**NO_DROPOUT, lr=lr, weight_decay=weight_decay)
    torch.manual_seed(0)
    search = DARTS().build_search(protocol, RecurrentLanguageModelSearch(VOCABULARY, protocol))
    search.supernet.double()
    search.arch.double()
    train = batch(5, 1, protocol, dtype=torch.float64)
    valid = batch(5, 2, protocol, dtype=torch.float64)
    return search, train, valid


def ce(search, parameters: dict, batch_: RecurrentBatch) -> torch.Tensor:
    return search._arch_loss(parameters, batch_, "train")


def clip_coefficient(grads, max_norm: float) -> float:
    norm = float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))
    return min(1.0, max_norm / (norm + 1e-6))


def rnn_architect_reference(search, train, valid, lr: float, weight_decay: float, grad_clip: float):
    """What rnn/architect.py approximates, with the Hessian-vector product exact (double backward):
    ∇α L_val(w′) − ξ ∇α ⟨∇w L_train(w′), v⟩, w′ = w − ξ (c_t ∇w L_train(w) + wd·w),
    v = c_v ∇w′ L_val(w′) + wd·w′, c_t and c_v the clip coefficients (constants, as .data makes them)."""
    weights = dict(search.supernet.named_parameters())
    arch = list(search.arch.parameters())
    train_grads = torch.autograd.grad(ce(search, weights, train), list(weights.values()))
    c_train = clip_coefficient(train_grads, grad_clip)
    unrolled = {
        name: (w.detach() - lr * (c_train * g + weight_decay * w.detach())).requires_grad_()
        for (name, w), g in zip(weights.items(), train_grads, strict=True)
    }
    valid_arch, *valid_weights = torch.autograd.grad(ce(search, unrolled, valid), [*arch, *unrolled.values()])
    c_valid = clip_coefficient(valid_weights, grad_clip)
    direction = [c_valid * g + weight_decay * w.detach() for g, w in zip(valid_weights, unrolled.values(), strict=True)]
    at_unrolled = {name: w.detach().requires_grad_() for name, w in unrolled.items()}
    grads = torch.autograd.grad(ce(search, at_unrolled, train), list(at_unrolled.values()), create_graph=True)
    product = sum((g * d).sum() for g, d in zip(grads, direction, strict=True))
    (implicit,) = torch.autograd.grad(product, arch)
    return valid_arch - lr * implicit, c_train, c_valid


def approximate(search, train, valid, lr, weight_decay, recipe, grad_clip) -> torch.Tensor:
    weights = dict(search.supernet.named_parameters())
    (grad,) = real_second_order_arch_gradient(
        lambda parameters, batch_: ce(search, parameters, batch_),
        weights,
        list(search.arch.parameters()),
        train,
        valid,
        lr,
        {},
        0.0,
        weight_decay,
        recipe,
        grad_clip,
    )
    return grad


def test_rnn_architect_gradient_matches_its_formula_with_an_exact_hessian_and_both_clips():
    lr, weight_decay, grad_clip = 2.0, 1e-2, 0.05
    search, train, valid = float64_search(lr, weight_decay)
    reference, c_train, c_valid = rnn_architect_reference(search, train, valid, lr, weight_decay, grad_clip)
    assert c_train < 0.5 and c_valid < 0.5  # both clips act, so leaving either out would show
    ours = approximate(search, train, valid, lr, weight_decay, RNN_ARCHITECT, grad_clip)
    assert (ours - reference).norm() < 1e-3 * reference.norm()  # central differences with ε‖v‖ = 0.01
    cnn_recipe = approximate(search, train, valid, lr, weight_decay, CNN_ARCHITECT, grad_clip)
    assert (cnn_recipe - reference).norm() > 0.1 * reference.norm()


def exact_unrolled_gradient(search, train, valid, lr: float) -> torch.Tensor:
    """∇α L_val(w − ξ∇w L_train(w, α), α), differentiated through the unrolled step."""
    weights = dict(search.supernet.named_parameters())
    grads = torch.autograd.grad(ce(search, weights, train), list(weights.values()), create_graph=True)
    unrolled = {name: w - lr * g for (name, w), g in zip(weights.items(), grads, strict=True)}
    return torch.autograd.grad(ce(search, unrolled, valid), list(search.arch.parameters()))[0]


@pytest.mark.parametrize("lr", [0.05, 0.2])
def test_rnn_architect_gradient_approaches_the_exact_unrolled_gradient_without_clipping_or_decay(lr):
    """With neither clip acting nor weight decay, rnn/architect.py differs from the exact
    hypergradient by taking the Hessian at w′ instead of w (of order ξ² against an unrolling
    effect of order ξ) and by its central differences: it recovers nearly all of the effect."""
    search, train, valid = float64_search(lr, 0.0)
    exact = exact_unrolled_gradient(search, train, valid, lr)
    ours = approximate(search, train, valid, lr, 0.0, RNN_ARCHITECT, 1e9)
    first_order = approximate(search, train, valid, 0.0, 0.0, RNN_ARCHITECT, 1e9)  # ξ = 0: ∇α L_val(w)
    unrolling = (exact - first_order).norm()  # what the unrolled step changes
    assert unrolling > 0.5 * exact.norm()
    assert (ours - exact).norm() < 0.05 * unrolling


def test_first_order_uses_the_validation_windows_cross_entropy_and_second_order_reduces_to_it_at_zero_lr():
    search, train, valid = float64_search(0.0, 0.0)
    arch = list(search.arch.parameters())
    (first,) = torch.autograd.grad(search._arch_loss(None, valid, "valid"), arch)
    second = approximate(search, train, valid, 0.0, 0.0, RNN_ARCHITECT, 0.25)
    assert torch.allclose(first, second, rtol=1e-10, atol=1e-14)
    outputs = search.outputs(valid, ARCH_STEP, "valid")
    logits = outputs.logits
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCABULARY), valid.targets.reshape(-1))
    assert torch.allclose(search.task.loss(outputs, valid, ARCH_STEP), expected, rtol=1e-12)


def test_the_weight_step_adds_temporal_activation_regularization_and_the_arch_step_does_not():
    protocol = tiny_protocol(**NO_DROPOUT, temporal_activation_regularization=1.0)
    task = RecurrentLanguageModelSearch(VOCABULARY, protocol)
    search = DARTS().build_search(protocol, task)
    window = batch(5, 3, protocol)
    outputs = search.outputs(window, WEIGHT_STEP, "train")
    cross_entropy = task.loss(outputs, window, ARCH_STEP)
    regularized = task.loss(outputs, window, WEIGHT_STEP)
    states = outputs.states
    assert torch.allclose(regularized - cross_entropy, (states[1:] - states[:-1]).pow(2).mean(), atol=1e-6)


# --- one step: the per-window learning rate ----------------------------------------------------------------------


@pytest.mark.parametrize("order", [1, 2])
def test_both_steps_see_the_learning_rate_scaled_by_the_window_length_and_it_is_restored(order, monkeypatch):
    protocol = tiny_protocol(order=order, bptt=4)
    search = DARTS().build_search(protocol, RecurrentLanguageModelSearch(VOCABULARY, protocol))
    seen = {}

    def spy(loss, weights, arch, train, valid, lr, *args):
        seen["xi"] = lr
        return real_second_order_arch_gradient(loss, weights, arch, train, valid, lr, *args)

    monkeypatch.setattr(differentiable, "second_order_arch_gradient", spy)
    search.w_optimizer.register_step_pre_hook(
        lambda optimizer, args, kwargs: seen.update(weights=optimizer.param_groups[0]["lr"])
    )
    search.step(batch(2, 0, protocol), batch(4, 1, protocol), update_arch=True)  # a half-length window: 2 of 4
    assert seen == ({"weights": 10.0} if order == 1 else {"weights": 10.0, "xi": 10.0})
    assert search.w_optimizer.param_groups[0]["lr"] == 20.0
    for _ in range(3):
        search.scheduler.step()  # the recurrent search's constant schedule
    assert search.w_optimizer.param_groups[0]["lr"] == 20.0


# --- streams: aligned α windows and one state per stream ---------------------------------------------------------


def fixture_corpus(tmp_path, seed: int = 0):
    write_ptb(tmp_path)
    source = resolve(DataRequest("ptb", tmp_path, "smoke", allow_unofficial=True))
    return source.load(CPU, torch.Generator().manual_seed(seed))


def test_alpha_windows_follow_the_training_windows_and_each_stream_carries_its_own_state(tmp_path):
    corpus = fixture_corpus(tmp_path)
    protocol = tiny_protocol(train_examples=600, valid_examples=200, batch_size=4, bptt=6)
    task = RecurrentLanguageModelSearch(corpus.vocabulary_size, protocol)
    supernet = DARTS().build_search(protocol, task).supernet
    arch = {"recurrent": CellWeights(torch.softmax(torch.randn(36, 5), -1))}
    weight_batches, split = task.streams(corpus, protocol)
    pairs, steps = task.epoch(weight_batches, split, "fresh")
    arch_rows, start, seen = split.arch_rows, 0, 0
    previous = None
    for train, valid in pairs:
        offset = start % (len(arch_rows) - 1)
        assert torch.equal(valid.inputs, arch_rows[offset : offset + len(valid.inputs)])
        assert torch.equal(valid.targets, arch_rows[offset + 1 : offset + 1 + len(valid.inputs)])
        if previous is None:
            assert not train.hidden.any() and not valid.hidden.any()  # zero states at the epoch's start
        else:
            assert torch.equal(train.hidden, previous[0]) and torch.equal(valid.hidden, previous[1])
        task.forward(supernet, arch, valid, "valid")  # the α step's pass
        task.forward(supernet, arch, train, "train")  # an unrolled step's pass, then the weight step's
        task.forward(supernet, arch, train, "train")
        assert not train.final_hidden.requires_grad
        previous = (train.final_hidden, valid.final_hidden)
        start += train.drawn_length
        seen += 1
    assert seen == steps > 1 and len(arch_rows) < start  # α's windows wrapped around the shorter split


# --- GDAS on the recurrent cell ----------------------------------------------------------------------------------


@pytest.mark.parametrize("step", [ARCH_STEP, WEIGHT_STEP])
def test_gdas_runs_one_sampled_activation_on_every_edge_of_every_node(step):
    protocol = tiny_protocol("gdas", **NO_DROPOUT)
    method = GDAS()
    search = method.build_search(protocol, RecurrentLanguageModelSearch(VOCABULARY, protocol))
    torch.manual_seed(1)
    weights = method.weighting(search.arch, step)["recurrent"]
    hard = weights.ops.detach()
    assert hard.shape == (36, 5) and torch.equal(hard.sum(1), torch.ones(36))
    assert torch.equal(hard.argmax(1), torch.tensor(weights.selected))  # one op per edge, the one that runs
    window = batch(5, 4, protocol)
    sampled = search.supernet(window.inputs, window.hidden, {"recurrent": weights})
    every_op = search.supernet(window.inputs, window.hidden, {"recurrent": CellWeights(hard)})
    assert torch.allclose(sampled.logits, every_op.logits, atol=1e-6)
    sampled.logits.logsumexp(-1).sum().backward()
    assert search.arch.ops["recurrent"].grad.abs().sum() > 0  # straight through to α


# --- runs through the runner -------------------------------------------------------------------------------------

SMALL = {"search.hidden_size": 6, "evaluate.hidden_size": 6}


@pytest.fixture
def paths(tmp_path) -> Paths:
    write_ptb(tmp_path / "data")
    return Paths(results_dir=tmp_path / "results", runs_dir=tmp_path / "runs", data_root=tmp_path / "data")


def run(
    paths: Paths, method: str = "darts", phase: str = "search", seed: int = 0, resume: str | None = None, **overrides
):
    spec = RunSpec(
        method=method,
        dataset="ptb",
        phase=phase,
        seed=seed,
        budget="smoke",
        overrides={**SMALL, **overrides},
        allow_unofficial_data=True,
    )
    outcome = execute(None if resume else spec, paths, resume=resume, notify=lambda line: None)
    return outcome, records.read_record(outcome.record_path)


def reproducible(record: dict) -> dict:
    return {key: record[key] for key in ("metrics", "curves", "genotype", "protocol", "variant")}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["darts", "gdas"])
def test_search_is_deterministic_per_seed(paths, method):
    _, first = run(paths, method, seed=3)
    _, again = run(paths, method, seed=3)
    _, other = run(paths, method, seed=4)
    assert first["status"] == again["status"] == other["status"] == "complete"
    assert reproducible(first) == reproducible(again)
    assert first["curves"] != other["curves"]
    assert first["genotype"]["recurrent"] and first["metrics"]["search_valid_ppl"] > 1
    assert [row["lr"] for row in first["curves"]["search"]] == [20.0, 20.0, 20.0]


@pytest.mark.slow
def test_interrupted_search_resumes_to_the_uninterrupted_record(paths, monkeypatch):
    _, uninterrupted = run(paths, seed=5, **{"search.order": 1})
    epoch = RecurrentLanguageModelSearch.epoch
    calls = []

    def interrupted_at_epoch_2(self, *args):
        calls.append(None)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return epoch(self, *args)

    monkeypatch.setattr(RecurrentLanguageModelSearch, "epoch", interrupted_at_epoch_2)
    outcome, interrupted = run(paths, seed=5, **{"search.order": 1})
    assert interrupted["status"] == "interrupted"
    monkeypatch.setattr(RecurrentLanguageModelSearch, "epoch", epoch)
    _, resumed = run(paths, resume=outcome.run_id)
    assert resumed["status"] == "complete" and resumed["cost"]["search"]["resumed_from_epoch"] == 2
    assert reproducible(resumed) == reproducible(uninterrupted)


@pytest.mark.slow
def test_reproduce_trains_the_searched_cell_and_records_perplexities_as_smoke(paths):
    outcome, record = run(paths, phase="reproduce")
    assert record["status"] == "complete" and record["budget"] == "smoke" and record["variant"] == "2nd order"
    metrics = record["metrics"]
    assert metrics["search_genotypes"]["evaluated"] == "final"
    assert str(genotype_from_dict(record["genotype"])) == metrics["search_genotypes"]["final"]
    assert len(record["genotype"]["recurrent"]) == 8
    assert metrics["test_ppl"] > 1 and metrics["valid_ppl"] > 1 and metrics["search_valid_ppl"] > 1
    assert set(record["cost"]) == {"search", "evaluate"}


# --- refusals ----------------------------------------------------------------------------------------------------


UNSEARCHED_CELLS = {
    "pcdarts": "pcdarts does not search the RNN cell space of ptb: PC-DARTS searched CNN cells only",
    "pdarts": "pdarts does not search the RNN cell space of ptb: P-DARTS searched CNN cells only",
    "nasp": "nasp does not search the RNN cell space of ptb: no NASP recurrent search protocol is available",
}


def refusal(capsys, arguments: list[str]) -> str:
    code = main(arguments)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    return err


@pytest.mark.parametrize(
    ("method", "dataset", "says"),
    [
        *((method, "ptb", says) for method, says in UNSEARCHED_CELLS.items()),
        ("darts", "wt2", "no search on wt2: the papers (DARTS, GDAS) search the recurrent cell on PTB and transfer it"),
        ("gdas", "wt2", "no search on wt2"),
    ],
)
def test_runs_of_searches_no_paper_describes_are_refused_in_one_line(tmp_path, capsys, method, dataset, says):
    assert says in refusal(
        capsys,
        [
            "run",
            method,
            "--dataset",
            dataset,
            "--budget",
            "smoke",
            "--data-root",
            str(tmp_path / "data"),
            "--results-dir",
            str(tmp_path / "results"),
            "--runs-dir",
            str(tmp_path / "runs"),
        ],
    )
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("method", sorted(UNSEARCHED_CELLS))
def test_profiles_of_searches_no_paper_describes_are_refused_in_one_line(capsys, method):
    assert UNSEARCHED_CELLS[method] in refusal(capsys, ["profile", method, "--dataset", "ptb"])


# --- budgets for text --------------------------------------------------------------------------------------------


def test_text_budgets_keep_cifar10s_shares_of_the_corpus_and_halve_the_width_for_smoke():
    shares = {}
    for budget in ("reduced", "smoke"):
        protocol = load_protocol("darts", "ptb")
        get_budget(budget).apply(protocol)
        shares[budget] = protocol.values()
    reduced, smoke = shares["reduced"], shares["smoke"]
    assert reduced["search"]["train_examples"] == round(929_589 * 10_000 / 50_000) == 185_918
    assert reduced["evaluate"]["valid_examples"] == 73_760 and reduced["evaluate"]["test_examples"] == 82_430
    assert reduced["search"]["hidden_size"] == 300 and reduced["evaluate"]["hidden_size"] == 850
    assert smoke["search"]["train_examples"] == round(929_589 * 1_024 / 50_000)
    assert smoke["search"]["valid_examples"] == round(73_760 * 1_000 / 10_000)
    assert (smoke["search"]["hidden_size"], smoke["evaluate"]["hidden_size"]) == (150, 425)
    cifar = load_protocol("darts", "cifar10")
    get_budget("smoke").apply(cifar)
    assert cifar.phase("evaluate").train_examples == 1024 and cifar.phase("evaluate").test_examples == 1000


@pytest.mark.parametrize("budget", sorted(BUDGETS))
@pytest.mark.parametrize(("method", "dataset"), [("darts", "ptb"), ("darts", "wt2"), ("gdas", "ptb"), ("gdas", "wt2")])
def test_every_budget_leaves_the_text_protocols_in_their_domains(budget, method, dataset):
    protocol = load_protocol(method, dataset)
    get_budget(budget).apply(protocol)
    check_domains(protocol, get_method(method).protocol_domains)


# --- profiling ---------------------------------------------------------------------------------------------------


def test_profile_times_the_recurrent_search_on_synthetic_tokens(capsys):
    code = main(
        [
            "profile",
            "darts",
            "--dataset",
            "ptb",
            "--set",
            "hidden_size=4",
            "--batch-size",
            "2",
            "--steps",
            "1",
            "--device",
            "cpu",
            "--json",
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["batch_size"] == 2 and report["variant"] == "2nd order"
    stage = report["stages"][0]
    assert stage["cells"] is None and stage["ops_per_edge"] == {"recurrent": 5}
    assert stage["saved_activation_bytes"] > stage["saved_activation_bytes_weight_step"] > 0
