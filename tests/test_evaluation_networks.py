"""Evaluation networks: auxiliary logits only in training, drop path only in training and
never on identity edges, the ImageNet stems, and GDAS's fixed reduction cell for genotypes
without a searched one."""

import math

import pytest
import torch
from torch import nn

from nasbench_repro.spaces.cnn.networks import Cell, FixedReductionCell, NetworkCIFAR, NetworkImageNet
from nasbench_repro.spaces.genotypes import get_published

DARTS_V2 = get_published("DARTS_V2").genotype


def test_cifar_network_returns_auxiliary_logits_only_in_training():
    network = NetworkCIFAR(C=4, num_classes=10, layers=5, auxiliary=True, genotype=DARTS_V2)
    network.drop_path_prob = 0.2
    logits, auxiliary = network(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10) and auxiliary.shape == (2, 10)
    (logits.sum() + auxiliary.sum()).backward()
    network.eval()
    logits, auxiliary = network(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10) and auxiliary is None
    assert NetworkCIFAR(4, 10, 5, False, DARTS_V2)(torch.randn(2, 3, 32, 32))[1] is None
    assert [cell.reduction for cell in network.cells] == [False, True, False, True, False]


def test_drop_path_only_in_training_and_never_on_identity():
    cell = Cell(DARTS_V2.normal, DARTS_V2.normal_concat, 8, 8, 4, reduction=False, reduction_prev=False)
    identities = [isinstance(op, nn.Identity) for op in cell.ops]
    assert identities == [False] * 5 + [True, True, False]
    s0, s1 = torch.randn(4, 8, 6, 6), torch.randn(4, 8, 6, 6)
    cell.eval()
    assert torch.equal(cell(s0, s1, 0.9), cell(s0, s1, 0.0))
    cell.train()
    torch.manual_seed(0)
    with_drop = cell(s0, s1, 0.999)
    # node 4 = sep_conv_3x3(s1) + skip(s0): with every droppable path dropped only the identity survives
    states = [cell.preprocess0(s0), cell.preprocess1(s1)]
    assert torch.allclose(with_drop[:, 8:12], states[0])


def test_imagenet_network_stems_and_shapes():
    network = NetworkImageNet(C=8, num_classes=5, layers=3, auxiliary=True, genotype=DARTS_V2)
    stem = network.stem1(network.stem0(torch.randn(1, 3, 224, 224)))
    assert stem.shape == (1, 8, 28, 28)
    logits, auxiliary = network(torch.randn(2, 3, 224, 224))
    assert logits.shape == (2, 5) and auxiliary.shape == (2, 5)
    network.eval()
    assert network(torch.randn(1, 3, 224, 224))[1] is None


@pytest.mark.parametrize("network_class, size", [(NetworkCIFAR, 32), (NetworkImageNet, 224)])
def test_genotypes_without_reduction_cell_get_the_fixed_one(network_class, size):
    network = network_class(8, 10, 5, True, get_published("GDAS_F1").genotype)
    cells = [type(cell) for cell in network.cells]
    assert cells == [Cell, FixedReductionCell, Cell, FixedReductionCell, Cell]
    logits, auxiliary = network(torch.randn(2, 3, size, size))
    (logits.sum() + auxiliary.sum()).backward()
    assert logits.shape == (2, 10) and all(p.grad is not None for p in network.cells[1].parameters())


def test_fixed_reduction_cell_halves_the_resolution_into_four_branches_and_drops_paths():
    """GDAS Fig. 3: two factorized-conv branches and two max-pool branches, C channels each."""
    cell = FixedReductionCell(12, 12, 8, reduction_prev=False)
    s0, s1 = torch.randn(4, 12, 8, 8), torch.randn(4, 12, 8, 8)
    out = cell(s0, s1)
    assert out.shape == (4, 32, 4, 4) and cell.multiplier == 4
    grouped = [m for m in cell.modules() if isinstance(m, nn.Conv2d) and m.kernel_size in ((1, 3), (3, 1))]
    assert len(grouped) == 4 and {m.groups for m in grouped} == {8}
    assert math.gcd(8, 12) == FixedReductionCell(12, 12, 12, reduction_prev=False).convs[0][1].groups  # narrow budgets
    cell.eval()
    assert torch.equal(cell(s0, s1, 0.9), cell(s0, s1))
    cell.train()
    torch.manual_seed(0)
    dropped = cell(s0, s1, 0.999)
    assert (dropped.flatten(1) == 0).all(dim=1).sum() >= 3  # whole samples of every branch dropped


def test_cells_with_five_nodes_and_partial_concat_build():
    for name in ("NASNet", "AmoebaNet"):
        network = NetworkCIFAR(4, 10, 5, True, get_published(name).genotype).eval()
        assert network(torch.randn(1, 3, 32, 32))[0].shape == (1, 10)
