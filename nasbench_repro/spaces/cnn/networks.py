"""Evaluation networks: a genotype stacked into the network trained from scratch.

Structure as in quark0/darts cnn/model.py (the same in PC-DARTS and P-DARTS): CIFAR uses a
3x3 conv stem with 3C channels, 20 cells of C=36 and an auxiliary head after the cell at 2/3
depth; ImageNet (mobile setting) uses three stride-2 3x3 convs as stems (224 -> 28), 14 cells
of C=48, and an auxiliary head without the second BN (as the official code has it).
Drop path zeroes whole samples of each non-identity op's output during training, with the
probability `drop_path_prob` the trainer sets each epoch.

A genotype without a reduction cell (GDAS FRC, `reduce=None`) is stacked with GDAS's
hand-designed reduction cell (`FixedReductionCell`) at the reduction positions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from nasbench_repro.spaces.cnn.ops import FactorizedReduce, ReLUConvBN, make_op
from nasbench_repro.spaces.cnn.stems import cifar_stem, imagenet_stems, reduction_layers
from nasbench_repro.spaces.genotypes import Genotype, Pair


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero each sample with probability `drop_prob` and rescale the kept ones (global RNG)."""
    keep_prob = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep_prob)
    return x / keep_prob * mask


class Cell(nn.Module):
    """A genotype cell: each intermediate node sums two op outputs; the output concatenates `concat`."""

    def __init__(
        self,
        pairs: Sequence[Pair],
        concat: Sequence[int],
        C_prev_prev: int,
        C_prev: int,
        C: int,
        reduction: bool,
        reduction_prev: bool,
    ):
        super().__init__()
        self.reduction = reduction
        if reduction_prev:
            self.preprocess0 = FactorizedReduce(C_prev_prev, C)
        else:
            self.preprocess0 = ReLUConvBN(C_prev_prev, C, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0)
        self.inputs = tuple(index for _, index in pairs)
        self.concat = tuple(concat)
        self.multiplier = len(self.concat)
        self.ops = nn.ModuleList(
            make_op(name, C, 2 if reduction and index < 2 else 1, affine=True) for name, index in pairs
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for first in range(0, len(self.ops), 2):
            states.append(self._edge(first, states, drop_prob) + self._edge(first + 1, states, drop_prob))
        return torch.cat([states[i] for i in self.concat], dim=1)

    def _edge(self, position: int, states: list[torch.Tensor], drop_prob: float) -> torch.Tensor:
        op = self.ops[position]
        out = op(states[self.inputs[position]])
        if self.training and drop_prob > 0 and not isinstance(op, nn.Identity):
            out = drop_path(out, drop_prob)
        return out


class FixedReductionCell(nn.Module):
    """GDAS's hand-designed reduction cell (paper Fig. 3; structure from D-X-Y/GDAS @c72e66b
    lib/nas/construct_utils.py `Transition`): after the usual 1x1 preprocessing, each input goes
    through a strided 1x3 then 3x1 grouped conv, BN, ReLU, 1x1 conv, BN, and through a strided
    3x3 max pool with BN; the four results are concatenated (4C channels).

    The factorized convs are grouped in 8 as published; at a width 8 does not divide (reached
    only by shrunken budgets) the largest group count dividing it is used instead. `affine`
    is off in the search supernet, as for every search op.
    """

    def __init__(self, C_prev_prev: int, C_prev: int, C: int, reduction_prev: bool, affine: bool = True):
        super().__init__()
        self.reduction = True
        self.multiplier = 4
        if reduction_prev:
            self.preprocess0 = FactorizedReduce(C_prev_prev, C, affine=affine)
        else:
            self.preprocess0 = ReLUConvBN(C_prev_prev, C, 1, 1, 0, affine=affine)
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0, affine=affine)
        groups = math.gcd(8, C)
        self.convs = nn.ModuleList(
            nn.Sequential(
                nn.ReLU(inplace=False),
                nn.Conv2d(C, C, (1, 3), stride=(1, 2), padding=(0, 1), groups=groups, bias=False),
                nn.Conv2d(C, C, (3, 1), stride=(2, 1), padding=(1, 0), groups=groups, bias=False),
                nn.BatchNorm2d(C, affine=affine),
                nn.ReLU(inplace=False),
                nn.Conv2d(C, C, 1, bias=False),
                nn.BatchNorm2d(C, affine=affine),
            )
            for _ in range(2)
        )
        self.pools = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(3, stride=2, padding=1), nn.BatchNorm2d(C, affine=affine)) for _ in range(2)
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states = (self.preprocess0(s0), self.preprocess1(s1))
        outputs = [conv(state) for conv, state in zip(self.convs, states, strict=True)]
        outputs += [pool(state) for pool, state in zip(self.pools, states, strict=True)]
        if self.training and drop_prob > 0:
            outputs = [drop_path(out, drop_prob) for out in outputs]
        return torch.cat(outputs, dim=1)


class AuxiliaryHead(nn.Module):
    """Auxiliary classifier on the feature map after the cell at 2/3 depth: ReLU, 5x5 average
    pool down to 2x2, 1x1 conv to 128 channels, 2x2 conv to 768, linear. CIFAR pools its 8x8 map
    with stride 3; ImageNet pools 7x7 with stride 2 and, as the official code, has no BN after
    the 2x2 conv."""

    def __init__(self, C: int, num_classes: int, pool_stride: int, batchnorm_after_2x2: bool):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(),
            nn.AvgPool2d(5, stride=pool_stride, padding=0, count_include_pad=False),
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(),
            nn.Conv2d(128, 768, 2, bias=False),
            *([nn.BatchNorm2d(768)] if batchnorm_after_2x2 else []),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def _cells(
    genotype: Genotype, layers: int, C: int, C_stem: int, reduction_prev: bool
) -> tuple[nn.ModuleList, int, int]:
    """Stack the genotype's cells (GDAS's fixed reduction cell where `reduce` is None); returns
    them, the channels after the auxiliary cell and at the end."""
    cells = nn.ModuleList()
    C_prev_prev, C_prev, C_curr = C_stem, C_stem, C
    C_auxiliary = C_prev
    for layer in range(layers):
        reduction = layer in reduction_layers(layers)
        if reduction:
            C_curr *= 2
        if reduction and genotype.reduce is None:
            cell = FixedReductionCell(C_prev_prev, C_prev, C_curr, reduction_prev)
        elif reduction:
            cell = Cell(genotype.reduce, genotype.reduce_concat, C_prev_prev, C_prev, C_curr, True, reduction_prev)
        else:
            cell = Cell(genotype.normal, genotype.normal_concat, C_prev_prev, C_prev, C_curr, False, reduction_prev)
        cells.append(cell)
        reduction_prev = reduction
        C_prev_prev, C_prev = C_prev, cell.multiplier * C_curr
        if layer == 2 * layers // 3:
            C_auxiliary = C_prev
    return cells, C_auxiliary, C_prev


class _EvaluationNetwork(nn.Module):
    """Shared forward: cells, auxiliary logits after the cell at 2/3 depth (training only), classifier."""

    def __init__(self, layers: int, auxiliary: bool):
        super().__init__()
        self.layers = layers
        self.auxiliary = auxiliary
        self.drop_path_prob = 0.0

    def stems(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        auxiliary_logits = None
        s0, s1 = self.stems(x)
        for layer, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if layer == 2 * self.layers // 3 and self.auxiliary and self.training:
                auxiliary_logits = self.auxiliary_head(s1)
        logits = self.classifier(self.global_pooling(s1).flatten(1))
        return logits, auxiliary_logits


class NetworkCIFAR(_EvaluationNetwork):
    """The CIFAR evaluation network (paper setting: C=36, 20 cells, auxiliary weight 0.4)."""

    def __init__(
        self,
        C: int = 36,
        num_classes: int = 10,
        layers: int = 20,
        auxiliary: bool = True,
        genotype: Genotype | None = None,
        stem_multiplier: int = 3,
    ):
        super().__init__(layers, auxiliary)
        if genotype is None:
            raise ValueError("NetworkCIFAR needs a genotype")
        C_stem = stem_multiplier * C
        self.stem = cifar_stem(C_stem)
        self.cells, C_auxiliary, C_final = _cells(genotype, layers, C, C_stem, reduction_prev=False)
        if auxiliary:
            self.auxiliary_head = AuxiliaryHead(C_auxiliary, num_classes, pool_stride=3, batchnorm_after_2x2=True)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_final, num_classes)

    def stems(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.stem(x)
        return s, s


class NetworkImageNet(_EvaluationNetwork):
    """The ImageNet mobile-setting network (C=48, 14 cells, 224x224 input): two stems bring
    224 to 56 (C channels) and 56 to 28, so the first cell sees a reduction as its previous cell."""

    def __init__(
        self,
        C: int = 48,
        num_classes: int = 1000,
        layers: int = 14,
        auxiliary: bool = True,
        genotype: Genotype | None = None,
    ):
        super().__init__(layers, auxiliary)
        if genotype is None:
            raise ValueError("NetworkImageNet needs a genotype")
        self.stem0, self.stem1 = imagenet_stems(C)
        self.cells, C_auxiliary, C_final = _cells(genotype, layers, C, C, reduction_prev=True)
        if auxiliary:
            self.auxiliary_head = AuxiliaryHead(C_auxiliary, num_classes, pool_stride=2, batchnorm_after_2x2=False)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)  # the official AvgPool2d(7) on the 7x7 map at 224x224
        self.classifier = nn.Linear(C_final, num_classes)

    def stems(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s0 = self.stem0(x)
        return s0, self.stem1(s0)
