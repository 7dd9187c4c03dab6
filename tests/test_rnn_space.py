"""The DARTS recurrent cell space: shapes, the none/identity semantics, search cell = genotype cell under
one-hot weights, derivation, weight tying, and the published genotypes' parameter counts."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nasbench_repro.cli import main
from nasbench_repro.cost import genotype_cost
from nasbench_repro.spaces.cnn.supernet import CellWeights
from nasbench_repro.spaces.genotypes import RNN_ACTIVATIONS, RecurrentGenotype, resolve_genotype
from nasbench_repro.spaces.rnn.cell import (
    RecurrentCell,
    SearchCell,
    derive_recurrent_genotype,
    recurrent_edge_count,
    variational_mask,
)
from nasbench_repro.spaces.rnn.model import Dropouts, evaluation_model, search_model

DARTS_V2 = resolve_genotype("DARTS_V2", "rnn")


@st.composite
def genotypes(draw, steps=None, activations=RNN_ACTIVATIONS) -> RecurrentGenotype:
    count = steps or draw(st.integers(1, 8))
    nodes = [(draw(st.sampled_from(activations)), draw(st.integers(0, node - 1))) for node in range(1, count + 1)]
    concat = draw(st.lists(st.integers(1, count), min_size=1, unique=True))
    return RecurrentGenotype(nodes, concat)


def one_hot_weights(genotype: RecurrentGenotype, primitives=RNN_ACTIVATIONS) -> torch.Tensor:
    """Search-cell op weights that pick exactly the genotype's (activation, predecessor) per node."""
    weights = torch.zeros(recurrent_edge_count(len(genotype.recurrent)), len(primitives), dtype=torch.float64)
    for node, (activation, predecessor) in enumerate(genotype.recurrent, start=1):
        weights[node * (node - 1) // 2 + predecessor, primitives.index(activation)] = 1.0
    return weights


def copy_weights(source: torch.nn.Module, target: torch.nn.Module) -> None:
    target.load_state_dict(source.state_dict(), strict=False)


@settings(max_examples=30, deadline=None)
@given(genotype=genotypes(), length=st.integers(1, 5), batch=st.integers(1, 3), hidden=st.integers(1, 6))
def test_cell_shapes_and_last_state(genotype, length, batch, hidden):
    cell = RecurrentCell(genotype, hidden + 1, hidden)
    states, last = cell(torch.randn(length, batch, hidden + 1), torch.randn(batch, hidden))
    assert states.shape == (length, batch, hidden)
    assert torch.equal(last, states[-1])


@settings(max_examples=30, deadline=None)
@given(genotype=genotypes(), length=st.integers(1, 4), batch=st.integers(1, 3))
def test_none_nodes_output_zero(genotype, length, batch):
    """Averaging only `none` nodes gives h_t = 0 whatever the input."""
    nones = [node for node, (activation, _) in enumerate(genotype.recurrent, start=1) if activation == "none"]
    if not nones:
        genotype = RecurrentGenotype([("none", 0), *genotype.recurrent[1:]], genotype.concat)
        nones = [1]
    cell = RecurrentCell(RecurrentGenotype(genotype.recurrent, nones), 4, 4)
    states, _ = cell(torch.randn(length, batch, 4), torch.randn(batch, 4))
    assert torch.count_nonzero(states) == 0


@settings(max_examples=30, deadline=None)
@given(steps=st.integers(1, 8), length=st.integers(1, 4), batch=st.integers(1, 3), hidden=st.integers(1, 5))
def test_identity_node_with_an_identity_candidate_copies_its_predecessor(steps, length, batch, hidden):
    """s_i = s_j + σ(c)(h − s_j) with h = s_j W = s_j: the highway passes the predecessor through unchanged."""
    genotype = RecurrentGenotype([("identity", node - 1) for node in range(1, steps + 1)], range(1, steps + 1))
    cell = RecurrentCell(genotype, hidden, hidden).double()
    with torch.no_grad():
        for weight in cell.node_weights:
            weight[:, hidden:] = torch.eye(hidden, dtype=torch.float64)
    inputs, previous = torch.randn(length, batch, hidden, dtype=torch.float64), torch.randn(batch, hidden).double()
    states, _ = cell(inputs, previous)
    first_node = cell.first_node(inputs[0] @ cell.first_node_weight[:hidden], previous, None)
    torch.testing.assert_close(states[0], first_node, rtol=0, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(genotype=genotypes(), hard=st.booleans(), training=st.booleans(), seed=st.integers(0, 2**16))
def test_search_cell_with_one_hot_weights_is_the_genotype_cell(genotype, hard, training, seed):
    """The search cell (without its batch normalization) computes exactly the cell a one-hot choice
    describes, mixing all ops or running only the selected ones, with dropout masks drawn alike."""
    steps = len(genotype.recurrent)
    genotype = RecurrentGenotype(genotype.recurrent, range(1, steps + 1))  # the search cell averages every node
    search = SearchCell(5, 5, 0.5, 0.3, steps=steps, batch_norm=False).double().train(training)
    cell = RecurrentCell(genotype, 5, 5, 0.5, 0.3).double().train(training)
    copy_weights(search, cell)
    weights = one_hot_weights(genotype)
    selected = weights.argmax(1).tolist() if hard else None
    inputs, previous = torch.randn(3, 2, 5, dtype=torch.float64), torch.randn(2, 5, dtype=torch.float64)
    torch.manual_seed(seed)
    expected, _ = cell(inputs, previous)
    torch.manual_seed(seed)
    mixed, _ = search(inputs, previous, CellWeights(weights, selected=selected))
    torch.testing.assert_close(mixed, expected, rtol=1e-12, atol=1e-12)


def test_search_cell_with_every_weight_on_none_or_every_edge_off_outputs_zero():
    weights = torch.zeros(recurrent_edge_count(), len(RNN_ACTIVATIONS))
    weights[:, RNN_ACTIVATIONS.index("none")] = 1.0
    search = SearchCell(4, 4)
    for cell_weights in (
        CellWeights(weights),
        CellWeights(weights, selected=[0] * recurrent_edge_count()),
        CellWeights(torch.rand(recurrent_edge_count(), 5), selected=[None] * recurrent_edge_count()),
        CellWeights(torch.rand(recurrent_edge_count(), 5), edges=torch.zeros(recurrent_edge_count())),
    ):
        states, _ = search(torch.randn(3, 2, 4), torch.randn(2, 4), cell_weights)
        assert torch.count_nonzero(states) == 0


def test_edge_scales_multiply_each_edge_like_its_op_weights():
    search = SearchCell(4, 4, batch_norm=False)
    weights, scales = torch.rand(recurrent_edge_count(), 5), torch.rand(recurrent_edge_count())
    inputs, previous = torch.randn(3, 2, 4), torch.randn(2, 4)
    scaled, _ = search(inputs, previous, CellWeights(weights, edges=scales))
    folded, _ = search(inputs, previous, CellWeights(weights * scales[:, None]))
    torch.testing.assert_close(scaled, folded)


REFERENCE_ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid, "identity": lambda x: x}


def reference_search_cell(search, inputs, hidden, ops, edges=None, selected=None, x_mask=None, h_mask=None):
    """The search cell's formula term by term: per node, per predecessor, per activation,
    w · (s + σ(c) (f(h) − s)), each node batch-normalized (batch statistics, no affine), h_t the nodes' mean."""

    def dropped(x, mask):
        return x if mask is None else x * mask

    def normalized(x):
        return (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + 1e-5)  # nn.BatchNorm1d's eps

    size = search.hidden_size
    input_weight, hidden_weight = search.first_node_weight.split([search.input_size, size])
    states = []
    for x in inputs:
        gate, candidate = (dropped(x, x_mask) @ input_weight + dropped(hidden, h_mask) @ hidden_weight).split(size, -1)
        nodes = [normalized(hidden + gate.sigmoid() * (candidate.tanh() - hidden))]
        edge = 0
        for node, weight in enumerate(search.node_weights, start=1):
            mixed = torch.zeros_like(hidden)
            for source in nodes[:node]:
                gate, candidate = (dropped(source, h_mask) @ weight).split(size, -1)
                for op, name in enumerate(search.primitives):
                    if name == "none" or (selected is not None and selected[edge] != op):
                        continue
                    scale = ops[edge, op] * (1 if edges is None else edges[edge])
                    activated = REFERENCE_ACTIVATIONS[name](candidate)
                    mixed = mixed + scale * (source + gate.sigmoid() * (activated - source))
                edge += 1
            nodes.append(normalized(mixed))
        hidden = torch.stack(nodes[1:]).mean(0)
        states.append(hidden)
    return torch.stack(states)


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    scaled=st.booleans(),
    selection=st.sampled_from(["all", "one per edge", "one per edge or off"]),
    steps=st.sampled_from([1, 3, 8]),
)
def test_search_cell_computes_its_formula_with_the_same_gradients(seed, scaled, selection, steps):
    """Against the term-by-term formula (with `none`, edge scales, selection, batch norm and
    dropout): the same states and the same gradients for the op weights, edge scales and parameters."""
    generator = torch.Generator().manual_seed(seed)
    edges_count = recurrent_edge_count(steps)
    search = SearchCell(4, 5, 0.5, 0.3, steps=steps).double().train()
    inputs = torch.randn(3, 6, 4, dtype=torch.float64, generator=generator)
    hidden = torch.randn(6, 5, dtype=torch.float64, generator=generator)
    ops = torch.randn(edges_count, len(RNN_ACTIVATIONS), dtype=torch.float64, generator=generator).softmax(-1)
    ops.requires_grad_()
    edges = torch.rand(edges_count, dtype=torch.float64, generator=generator).requires_grad_() if scaled else None
    selected = None
    if selection != "all":
        choices = len(RNN_ACTIVATIONS) + (selection == "one per edge or off")
        drawn = torch.randint(0, choices, (edges_count,), generator=generator).tolist()
        selected = [op if op < len(RNN_ACTIVATIONS) else None for op in drawn]
    probe = torch.randn(3, 6, 5, dtype=torch.float64, generator=generator)
    leaves = [ops, *([edges] if scaled else []), *search.parameters()]

    torch.manual_seed(seed)
    states, last = search(inputs, hidden, CellWeights(ops, edges=edges, selected=selected))
    torch.manual_seed(seed)  # the masks the cell drew: the input's first, then the hidden state's
    x_mask, h_mask = variational_mask(inputs[0], 0.5), variational_mask(hidden, 0.3)
    expected = reference_search_cell(search, inputs, hidden, ops, edges, selected, x_mask, h_mask)

    torch.testing.assert_close(states, expected, rtol=1e-10, atol=1e-12)
    assert torch.equal(last, states[-1])

    def gradients(output):  # the output is constant (0) when no edge selects an activation
        if not output.requires_grad:
            return [torch.zeros_like(leaf) for leaf in leaves]
        return torch.autograd.grad((output * probe).sum(), leaves, materialize_grads=True)

    for gradient, expected_gradient in zip(gradients(states), gradients(expected), strict=True):
        torch.testing.assert_close(gradient, expected_gradient, rtol=1e-9, atol=1e-11)


def test_a_node_whose_edges_select_no_activation_is_zero_and_its_weights_get_no_gradient():
    """As an op that did not run: no gradient at all (so no weight decay), not a zero one."""
    selected = [0] + [1] * (recurrent_edge_count() - 1)  # node 1's one edge selects `none`, every other edge tanh
    search = SearchCell(4, 4)
    states, _ = search(torch.randn(3, 2, 4), torch.randn(2, 4), CellWeights(torch.rand(36, 5), selected=selected))
    (states * torch.randn_like(states)).sum().backward()
    assert search.node_weights[0].grad is None
    assert all(torch.count_nonzero(weight.grad) > 0 for weight in search.node_weights[1:])


@pytest.mark.parametrize("selected", [None, [1, 2, 3, 4, 0, None] * 6])
def test_cells_run_under_autocast_and_keep_the_state_in_full_precision(selected):
    """Under bf16 autocast (`--precision bf16`) the products run in bf16; each highway's
    s + c (f(h) − s) promotes back to the state's float32, as the formula written out does."""
    torch.manual_seed(0)
    search, cell = SearchCell(8, 8, 0.5, 0.25), RecurrentCell(DARTS_V2, 8, 8, 0.5, 0.25)
    ops = torch.rand(recurrent_edge_count(), len(RNN_ACTIVATIONS), requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        searched, _ = search(torch.randn(4, 3, 8), torch.zeros(3, 8), CellWeights(ops, selected=selected))
        evaluated, _ = cell(torch.randn(4, 3, 8), torch.zeros(3, 8))
    assert searched.dtype == evaluated.dtype == torch.float32
    (searched * torch.randn_like(searched)).sum().backward()  # a plain sum: 0 through the batch norm
    assert torch.isfinite(ops.grad).all() and torch.count_nonzero(ops.grad) > 0


def test_search_model_passes_gradients_to_the_op_weights():
    model = search_model(30, 8, Dropouts(embedding=0.2, cell_input=0.5, hidden=0.25, output=0.5))
    logits = torch.zeros(recurrent_edge_count(), len(RNN_ACTIVATIONS), requires_grad=True)
    arch = {"recurrent": CellWeights(logits.softmax(-1))}  # ArchWeights, as the CNN supernet takes them
    output = model(torch.randint(0, 30, (6, 4)), model.initial_hidden(4), arch)
    assert output.logits.shape == (6, 4, 30) and output.hidden.shape == (4, 8)
    assert model.num_edges == 36 and model.cell_primitives == {"recurrent": (RNN_ACTIVATIONS,) * 36}
    torch.nn.functional.cross_entropy(output.logits.reshape(-1, 30), torch.randint(0, 30, (24,))).backward()
    assert logits.grad is not None and torch.count_nonzero(logits.grad) > 0


def test_search_cell_refuses_weights_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"must be one \[36, 5\] tensor"):
        SearchCell(4, 4)(torch.randn(2, 1, 4), torch.randn(1, 4), CellWeights(torch.zeros(14, 8)))


@settings(max_examples=40, deadline=None)
@given(genotype=genotypes(steps=8, activations=("tanh", "relu", "sigmoid", "identity")), scale=st.floats(1.0, 5.0))
def test_derivation_recovers_the_strongest_choices(genotype, scale):
    weights = (scale * one_hot_weights(genotype) + torch.rand(recurrent_edge_count(), 5) * 0.5).softmax(-1)
    assert derive_recurrent_genotype(weights).recurrent == genotype.recurrent


def test_derivation_ignores_none_and_breaks_ties_towards_the_earlier_choice():
    weights = torch.zeros(recurrent_edge_count(), 5)
    weights[:, 0] = 9.0  # none is never derived
    derived = derive_recurrent_genotype(weights)
    assert derived.recurrent == (("tanh", 0),) * 8 and derived.concat == tuple(range(1, 9))


# --- the language model -----------------------------------------------------------------------------------------


def test_decoder_is_tied_to_the_embedding_and_counted_once():
    vocabulary, hidden = 40, 6
    model = evaluation_model(DARTS_V2, vocabulary, hidden)
    assert model.decoder.weight is model.encoder.weight
    expected = vocabulary * hidden + vocabulary + (2 * hidden) * (2 * hidden) + 8 * hidden * (2 * hidden)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_dropout_only_in_training():
    model = evaluation_model(DARTS_V2, 40, 6, Dropouts(0.1, 0.2, 0.75, 0.25, 0.75))
    tokens, hidden = torch.randint(0, 40, (5, 3)), torch.zeros(3, 6)
    model.eval()
    assert torch.equal(model(tokens, hidden).logits, model(tokens, hidden).logits)
    model.train()
    assert not torch.equal(model(tokens, hidden).logits, model(tokens, hidden).logits)


@pytest.mark.parametrize(
    "name, dataset, paper_millions",
    [
        ("DARTS_V2", "ptb", 23),
        ("DARTS_V2", "wt2", 33),  # DARTS Tables 2 and 4
        ("GDAS", "ptb", 23),
        ("GDAS", "wt2", 33),  # GDAS Tables 3 and 4
    ],
)
def test_published_cells_have_the_papers_parameter_counts(name, dataset, paper_millions):
    assert genotype_cost(name, dataset)["params_millions"] == pytest.approx(paper_millions, abs=0.5)


def test_genotype_cost_builds_the_network_the_dataset_decides(capsys):
    assert main(["genotype", "cost", "DARTS_V2", "--dataset", "ptb", "--json"]) == 0
    ptb = json.loads(capsys.readouterr().out)
    assert main(["genotype", "cost", "DARTS_V2", "--dataset", "cifar10", "--json"]) == 0
    cifar = json.loads(capsys.readouterr().out)
    assert ptb == {"params_millions": pytest.approx(22.96)} and cifar["params_millions"] < 4
    assert main(["genotype", "cost", "PC_DARTS_cifar", "--dataset", "wt2"]) == 2
    assert "is a CNN cell, but an RNN one is needed here" in capsys.readouterr().err
