"""Candidate operations: shapes at both strides, the official structures, and one-line errors."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from nasbench_repro.errors import UserError
from nasbench_repro.spaces.cnn.ops import (
    DARTS_PRIMITIVES,
    NASP_NORMAL_PRIMITIVES,
    NASP_PRIMITIVES,
    NASP_REDUCE_PRIMITIVES,
    OP_NAMES,
    FactorizedReduce,
    SepConv,
    make_op,
)

SPACE_OPS = sorted(set(DARTS_PRIMITIVES) | set(NASP_PRIMITIVES))


def test_spaces_are_the_published_lists():
    assert len(DARTS_PRIMITIVES) == 8 and DARTS_PRIMITIVES[0] == "none"
    assert len(NASP_PRIMITIVES) == 12
    assert set(NASP_PRIMITIVES) == set(NASP_NORMAL_PRIMITIVES) | set(NASP_REDUCE_PRIMITIVES)
    assert set(SPACE_OPS) <= set(OP_NAMES)


@pytest.mark.parametrize("name", OP_NAMES)
@settings(max_examples=20, deadline=None)
@given(
    channels=st.sampled_from([2, 4, 6]),
    height=st.integers(1, 9),
    width=st.integers(1, 9),
    stride=st.sampled_from([1, 2]),
    affine=st.booleans(),
)
def test_every_op_keeps_channels_and_divides_resolution_by_its_stride(name, channels, height, width, stride, affine):
    op = make_op(name, channels, stride, affine)
    out = op(torch.randn(2, channels, height, width))
    assert out.shape == (2, channels, math.ceil(height / stride), math.ceil(width / stride))


def test_none_is_zero_and_skip_is_identity_at_stride_one():
    x = torch.randn(2, 4, 6, 6)
    assert torch.equal(make_op("none", 4, 2)(x), torch.zeros(2, 4, 3, 3))
    assert make_op("skip_connect", 4, 1)(x) is x
    assert isinstance(make_op("skip_connect", 4, 2), FactorizedReduce)


def test_factorized_reduce_matches_the_official_computation_on_even_sizes():
    op = FactorizedReduce(4, 6, affine=False).eval()
    x = torch.randn(2, 4, 8, 8)
    relu = x.relu()
    halves = [F.conv2d(relu, op.conv_1.weight, stride=2), F.conv2d(relu[:, :, 1:, 1:], op.conv_2.weight, stride=2)]
    assert torch.allclose(op(x), op.bn(torch.cat(halves, dim=1)))


def test_sep_conv_is_two_blocks_with_the_stride_only_in_the_first():
    layers = list(SepConv(8, 8, 5, 2, 2).op)
    kinds = [type(layer) for layer in layers]
    assert kinds == [nn.ReLU, nn.Conv2d, nn.Conv2d, nn.BatchNorm2d] * 2
    depthwise_first, depthwise_second = layers[1], layers[5]
    assert depthwise_first.stride == (2, 2) and depthwise_second.stride == (1, 1)
    assert depthwise_first.groups == 8 and layers[2].kernel_size == (1, 1)


def test_dil_conv_is_dilated_by_two():
    conv = make_op("dil_conv_5x5", 4, 1).op[1]
    assert conv.dilation == (2, 2) and conv.padding == (4, 4) and conv.groups == 4


def test_pools_follow_darts():
    avg = make_op("avg_pool_3x3", 4, 1)
    assert isinstance(avg, nn.AvgPool2d) and avg.count_include_pad is False
    assert isinstance(make_op("max_pool_7x7", 4, 2), nn.MaxPool2d)


@pytest.mark.parametrize("affine", [False, True])
def test_bn_affine_is_a_parameter(affine):
    norms = [module for module in make_op("sep_conv_3x3", 4, 1, affine).modules() if isinstance(module, nn.BatchNorm2d)]
    assert norms and all(norm.affine is affine for norm in norms)


# Parameter counts at C=12, stride 1, affine off, as xujinfan/NASP-codes @3bfb706 codes/genotypes.py
# lists them in its PARAMS table (it computes them from its operations.py the same way).
NASP_PARAMETER_COUNTS = {
    "conv_3x1_1x3": 864,
    "conv_7x1_1x7": 2016,
    "sep_7x7": 1464,
    "conv 3x3": 1296,
    "sep_5x5": 888,
    "sep_3x3": 504,
    "dil_conv_5x5": 444,
    "conv 1x1": 144,
    "dil_conv_3x3": 252,
    "skip_connect": 0,
}


@pytest.mark.parametrize(("name", "count"), NASP_PARAMETER_COUNTS.items())
def test_nasp_op_parameter_counts_match_the_official_table(name, count):
    assert sum(p.numel() for p in make_op(name, 12, 1, affine=False).parameters()) == count


def test_unknown_op_is_a_one_line_user_error():
    with pytest.raises(UserError) as error:
        make_op("sep_conv_9x9", 4, 1)
    assert "sep_conv_9x9" in str(error.value) and "\n" not in str(error.value)
