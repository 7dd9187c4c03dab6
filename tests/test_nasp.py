"""NASP: the forward architecture is discrete (one op per edge, two edges per node), the α
gradient is taken there and applied to the continuous α, which stays in [0, 1]; the
model-complexity regularizer; both spaces; determinism per seed."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from search_runs import assert_deterministic_per_seed, random_batch, tiny_search

from methods.nasp import NASP, SPACES, discrete_architecture, parameter_shares
from nasbench_repro.differentiable import ARCH_STEP, WEIGHT_STEP
from nasbench_repro.protocol import apply_overrides, load_protocol
from nasbench_repro.spaces.cnn.ops import DARTS_PRIMITIVES

NODE_EDGES = [range(0, 2), range(2, 5), range(5, 9), range(9, 14)]


@settings(max_examples=50, deadline=None)
@given(values=st.lists(st.floats(0, 1), min_size=14 * 5, max_size=14 * 5))
def test_discrete_architecture_keeps_one_op_per_edge_and_the_two_strongest_edges_per_node(values):
    alpha = torch.tensor(values).view(14, 5)
    binary, chosen = discrete_architecture(alpha)
    assert set(binary.unique().tolist()) <= {0.0, 1.0} and (binary.sum(-1) <= 1).all()
    for edges in NODE_EDGES:
        kept = [edge for edge in edges if chosen[edge] >= 0]
        assert len(kept) == 2 and binary[list(edges)].sum() == 2
        strongest = alpha[list(edges)].max(-1).values
        assert min(strongest[edge - edges[0]] for edge in kept) >= max(
            (strongest[edge - edges[0]] for edge in edges if edge not in kept), default=-1
        )
        for edge in kept:
            assert binary[edge, chosen[edge]] == 1 and alpha[edge, chosen[edge]] == alpha[edge].max()


def test_ties_pick_the_first_op_and_the_lower_inputs_as_the_official_code():
    binary, chosen = discrete_architecture(torch.full((14, 8), 0.5))  # NASP's initial α
    assert chosen.tolist() == [0, 0, 0, 0, -1, 0, 0, -1, -1, 0, 0, -1, -1, -1]
    assert binary[:, 1:].sum() == 0


@pytest.mark.parametrize("step", [ARCH_STEP, WEIGHT_STEP])
def test_the_forward_architecture_is_discrete(step):
    """The weight step runs only the discrete cell's eight ops; the α step runs every op (each α
    needs its op's output for a gradient) but weighs them 0 or 1."""
    search = tiny_search(NASP())
    with torch.no_grad():
        for alpha in search.arch.ops.values():
            alpha.uniform_(0, 1)
    weights = search.method.weighting(search.arch, step)
    for cell, alpha in search.arch.ops.items():
        binary, chosen = discrete_architecture(alpha.detach())
        assert torch.equal(weights[cell].ops.detach(), binary)
        if step == WEIGHT_STEP:
            assert weights[cell].selected == [None if op < 0 else op for op in chosen.tolist()]
        else:
            assert weights[cell].selected is None
    runs = []
    normal = search.supernet.cells[0]
    for edge in normal.edges:
        for op in edge.ops:
            op.register_forward_hook(lambda module, inputs, output: runs.append(module))
    search.outputs(random_batch(), step, "train")
    assert len(runs) == (8 if step == WEIGHT_STEP else 14 * len(SPACES["12 ops"]["normal"]))


def test_alpha_gets_the_gradient_taken_at_the_discrete_architecture_and_stays_in_the_box():
    search = tiny_search(NASP(), arch_lr=0.3)  # large steps, so the box constraint binds
    for step in range(6):
        search.step(random_batch(step), random_batch(step + 10), update_arch=True)
        for alpha in search.arch.ops.values():
            assert torch.count_nonzero(alpha.grad) > 0.9 * alpha.numel()  # nearly every op gets a gradient
            assert alpha.min() >= 0 and alpha.max() <= 1
    bounds = torch.cat([alpha.flatten() for alpha in search.arch.ops.values()])
    assert ((bounds == 0) | (bounds == 1)).any()  # the clip was needed


def test_parameter_shares_are_the_official_params_table():
    """codes/genotypes.py PARAMS: each normal op's parameter count at C=12 (BN without affine)."""
    official = {
        "skip_connect": 0,
        "conv_3x1_1x3": 864,
        "dil_conv_3x3": 252,
        "conv 1x1": 144,
        "conv 3x3": 1296,
        "sep_3x3": 504,
        "sep_5x5": 888,
        "sep_7x7": 1464,
    }
    normal = SPACES["12 ops"]["normal"]
    expected = torch.tensor([official[name] for name in normal], dtype=torch.float32)
    assert torch.allclose(parameter_shares(normal, torch.device("cpu")), expected / expected.sum())


def test_complexity_regularizer_pushes_the_chosen_ops_by_their_parameter_share():
    search = tiny_search(NASP(), complexity_weight=0.5)
    weights = search.method.weighting(search.arch, ARCH_STEP)
    penalty = search.method.arch_penalty(search, weights)
    penalty.backward()
    binary, _ = discrete_architecture(search.arch.ops["normal"].detach())
    shares = parameter_shares(SPACES["12 ops"]["normal"], torch.device("cpu"))
    assert torch.allclose(search.arch.ops["normal"].grad, 2 * 0.5 * binary * shares)
    assert search.arch.ops["reduce"].grad is None  # the official regularizer weighs the normal cell only
    assert tiny_search(NASP()).method.arch_penalty(tiny_search(NASP()), weights) is None  # weight 0 by default


def test_both_spaces_and_their_labels():
    protocol = load_protocol("nasp", "cifar10")
    assert NASP().variant(protocol) == "12 ops"
    search = tiny_search(NASP())
    assert search.primitives["normal"][0] == SPACES["12 ops"]["normal"] and len(search.primitives["reduce"][0]) == 5
    assert len(set(SPACES["12 ops"]["normal"]) | set(SPACES["12 ops"]["reduce"])) == 12
    apply_overrides(protocol, {"search_space": "7 ops"}, ["search"])
    assert NASP().variant(protocol) == "7 ops"
    seven = tiny_search(NASP(), search_space="7 ops")
    assert seven.primitives["normal"][0] == seven.primitives["reduce"][0] == DARTS_PRIMITIVES[1:]
    assert seven.arch.ops["normal"].shape == (14, 7) and (seven.arch.ops["normal"] == 0.5).all()


@pytest.mark.slow
def test_nasp_search_is_deterministic_per_seed(tmp_path):
    record = assert_deterministic_per_seed(tmp_path, "nasp", **{"search.epochs": 2})
    assert record["variant"] == "12 ops" and "valid_acc" in record["curves"]["search"][0]  # validated each epoch
