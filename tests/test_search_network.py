"""The search supernet: mixed ops, partial channels, hard selection, switched-off edges, edge scales,
skip-connection dropout, the fixed reduction cell, shapes and gradients."""

import functools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from nasbench_repro.spaces.cnn.networks import FixedReductionCell
from nasbench_repro.spaces.cnn.ops import DARTS_PRIMITIVES, NASP_NORMAL_PRIMITIVES, NASP_REDUCE_PRIMITIVES
from nasbench_repro.spaces.cnn.supernet import (
    CellWeights,
    MixedOp,
    PartialChannelMixedOp,
    SearchNetwork,
    SkipDropout,
    channel_shuffle,
    make_search_op,
    set_skip_dropout,
)


def softmax_arch(num_ops=8, reduce_ops=None, requires_grad=False):
    alphas = [torch.randn(14, ops, requires_grad=requires_grad) for ops in (num_ops, reduce_ops or num_ops)]
    return alphas, {"normal": CellWeights(alphas[0].softmax(-1)), "reduce": CellWeights(alphas[1].softmax(-1))}


def test_search_ops_have_no_affine_bn_and_pools_get_one():
    pool = make_search_op("max_pool_3x3", 4, 1)
    assert isinstance(pool, nn.Sequential) and isinstance(pool[1], nn.BatchNorm2d) and not pool[1].affine
    norms = [m for m in make_search_op("sep_conv_3x3", 4, 2).modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and not any(norm.affine for norm in norms)


@pytest.mark.parametrize("stride", [1, 2])
def test_mixed_op_is_the_weighted_sum_and_selection_runs_one_op(stride):
    edge = MixedOp(4, stride, DARTS_PRIMITIVES).eval()
    x = torch.randn(2, 4, 8, 8)
    weights = torch.rand(8)
    expected = sum(w * op(x) for w, op in zip(weights, edge.ops, strict=True))
    assert torch.allclose(edge(x, weights), expected)
    assert torch.allclose(edge(x, weights, selected=4), weights[4] * edge.ops[4](x))
    with pytest.raises(ValueError, match="7 weights for 8 ops"):
        edge(x, weights[:7])


def test_selection_skips_the_other_ops_and_carries_a_straight_through_gradient():
    edge = MixedOp(4, 1, DARTS_PRIMITIVES)
    calls = []
    for op in edge.ops:
        op.register_forward_hook(lambda module, inputs, output: calls.append(module))
    logits = torch.randn(8, requires_grad=True)
    probabilities = logits.softmax(-1)
    hard = torch.zeros(8).index_fill_(0, torch.tensor([5]), 1.0) - probabilities.detach() + probabilities
    edge(torch.randn(2, 4, 6, 6), hard, selected=5).sum().backward()
    assert calls == [edge.ops[5]]
    assert logits.grad is not None and torch.count_nonzero(logits.grad) == 8


@pytest.mark.parametrize("stride", [1, 2])
def test_partial_channels_with_k1_compute_what_mixed_op_computes(stride):
    torch.manual_seed(0)
    mixed = MixedOp(8, stride, DARTS_PRIMITIVES)
    partial = PartialChannelMixedOp(8, stride, DARTS_PRIMITIVES, k=1)
    partial.mixed.load_state_dict(mixed.state_dict())
    x, weights = torch.randn(3, 8, 6, 6), torch.rand(8)
    assert torch.equal(partial(x, weights), mixed(x, weights))  # training-mode BN included
    mixed.eval()
    partial.eval()
    assert torch.equal(partial(x, weights), mixed(x, weights))
    assert torch.equal(partial(x, weights, selected=3), mixed(x, weights, selected=3))


@pytest.mark.parametrize("stride", [1, 2])
def test_partial_channels_sample_the_first_channels_and_bypass_the_rest(stride):
    partial = PartialChannelMixedOp(8, stride, DARTS_PRIMITIVES, k=4).eval()
    x, weights = torch.randn(2, 8, 6, 6), torch.rand(8)
    out = partial(x, weights)
    assert out.shape == (2, 8, 6 // stride, 6 // stride)
    unshuffled = out.view(2, 2, 4, *out.shape[2:]).transpose(1, 2).reshape(out.shape)  # undoes a 4-group shuffle of 8
    bypass = x[:, 2:] if stride == 1 else nn.functional.max_pool2d(x[:, 2:], 2, 2)
    assert torch.equal(unshuffled[:, 2:], bypass)
    assert torch.equal(unshuffled[:, :2], partial.mixed(x[:, :2], weights))


@settings(max_examples=30, deadline=None)
@given(groups=st.sampled_from([1, 2, 3, 4, 8]), per_group=st.integers(1, 4))
def test_channel_shuffle_is_a_permutation(groups, per_group):
    channels = groups * per_group
    x = torch.arange(channels, dtype=torch.float32).view(1, channels, 1, 1).expand(2, channels, 3, 3).contiguous()
    order = channel_shuffle(x, groups)[0, :, 0, 0].long()
    assert sorted(order.tolist()) == list(range(channels))
    assert order.tolist() == [g * per_group + i for i in range(per_group) for g in range(groups)]


def tiny_network(**settings):
    return SearchNetwork(C=4, num_classes=3, layers=3, **settings)


def test_search_network_forward_backward_shapes():
    network = tiny_network()
    alphas, arch = softmax_arch(requires_grad=True)
    logits = network(torch.randn(2, 3, 8, 8), arch)
    assert logits.shape == (2, 3)
    logits.sum().backward()
    assert all(alpha.grad is not None and alpha.grad.abs().sum() > 0 for alpha in alphas)
    assert all(p.grad is not None for p in network.parameters())
    assert [cell.reduction for cell in network.cells] == [False, True, True]
    assert network.num_edges == 14 and not any(
        isinstance(p, nn.Parameter) and p.shape == (14, 8) for p in network.parameters()
    )


def test_partial_channel_network_and_edge_scales():
    network = tiny_network(edge_factory=functools.partial(PartialChannelMixedOp, k=2))
    _, arch = softmax_arch()
    x = torch.randn(2, 3, 8, 8)
    assert network(x, arch).shape == (2, 3)
    network.eval()
    normal, reduce = arch["normal"].ops, arch["reduce"].ops
    scaled = {"normal": CellWeights(normal, torch.ones(14)), "reduce": CellWeights(reduce, torch.ones(14))}
    assert torch.allclose(network(x, scaled), network(x, arch))
    halved = {"normal": CellWeights(normal, torch.full((14,), 0.5)), "reduce": CellWeights(reduce, torch.ones(14))}
    assert not torch.allclose(network(x, halved), network(x, arch))


def test_hard_selection_through_the_network_equals_one_hot_weights():
    network = tiny_network().eval()
    selected = torch.randint(1, 8, (14,)).tolist()
    one_hot = torch.nn.functional.one_hot(torch.tensor(selected), 8).float()
    x = torch.randn(2, 3, 8, 8)
    hard = {cell: CellWeights(one_hot, selected=selected) for cell in ("normal", "reduce")}
    soft = {cell: CellWeights(one_hot) for cell in ("normal", "reduce")}
    assert torch.allclose(network(x, hard), network(x, soft), atol=1e-6)


def test_switched_off_edges_are_not_run_and_equal_zero_weights():
    """NASP's discrete cell keeps two edges per node: the others contribute nothing and never run."""
    network = tiny_network().eval()
    edges = [0, 1, 2, 4, 5, 8, 9, 13]  # node 2: inputs 0, 1; node 3: 0, 2; node 4: 0, 3; node 5: 0, 4
    selected = [None] * 14
    for edge in edges:
        selected[edge] = 4
    weights = torch.zeros(14, 8)
    weights[edges, 4] = 1.0
    calls = []
    for cell in network.cells:
        for number, edge in enumerate(cell.edges):
            edge.register_forward_hook(lambda module, inputs, output, number=number: calls.append(number))
    x = torch.randn(2, 3, 8, 8)
    discrete = network(x, {cell: CellWeights(weights, selected=selected) for cell in ("normal", "reduce")})
    assert set(calls) == set(edges)
    dense = network(x, {cell: CellWeights(weights) for cell in ("normal", "reduce")})
    assert torch.allclose(discrete, dense, atol=1e-6)


def test_skip_dropout_follows_only_the_identity_skip_and_its_rate_is_settable():
    network = tiny_network(edge_factory=functools.partial(MixedOp, skip_dropout=True))
    dropouts = [module for module in network.modules() if isinstance(module, SkipDropout)]
    per_cell = [sum(isinstance(module, SkipDropout) for module in cell.modules()) for cell in network.cells]
    assert per_cell == [14, 6, 6]  # every normal edge; in reduction cells only the 6 unstrided edges
    set_skip_dropout(network, 0.7)
    assert {module.p for module in dropouts} == {0.7}
    x = torch.ones(4, 8, 6, 6)
    skip = network.cells[0].edges[0].ops[DARTS_PRIMITIVES.index("skip_connect")]
    assert torch.equal(skip.eval()(x), x) and (skip.train()(x) == 0).any()


def test_fixed_reduction_cells_take_no_weights():
    network = tiny_network(fixed_reduction=True)
    assert set(network.cell_primitives) == {"normal"}
    assert [isinstance(cell, FixedReductionCell) for cell in network.cells] == [False, True, True]
    alpha = torch.randn(14, 8, requires_grad=True)
    logits = network(torch.randn(2, 3, 8, 8), {"normal": CellWeights(alpha.softmax(-1))})
    logits.sum().backward()
    assert logits.shape == (2, 3) and alpha.grad.abs().sum() > 0


def test_per_cell_and_per_edge_op_lists():
    nasp = tiny_network(primitives=NASP_NORMAL_PRIMITIVES, reduce_primitives=NASP_REDUCE_PRIMITIVES)
    _, arch = softmax_arch(len(NASP_NORMAL_PRIMITIVES), len(NASP_REDUCE_PRIMITIVES))
    assert nasp(torch.randn(2, 3, 8, 8), arch).shape == (2, 3)
    assert nasp.cells[1].edges[0].primitives == NASP_REDUCE_PRIMITIVES
    assert nasp.cell_primitives["reduce"][0] == NASP_REDUCE_PRIMITIVES
    pruned = [DARTS_PRIMITIVES[edge % 6 : edge % 6 + 3] for edge in range(14)]
    network = tiny_network(primitives=pruned)
    assert network.cells[0].edges[5].primitives == tuple(pruned[5])
    _, arch = softmax_arch(3)
    assert network(torch.randn(2, 3, 8, 8), arch).shape == (2, 3)
