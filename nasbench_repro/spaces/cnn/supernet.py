"""The search supernet shared by every differentiable method of the DARTS CNN space.

The network never owns architecture parameters. Each step the method turns its own
parameters into `ArchWeights` (softmax for DARTS, a Gumbel hard sample for GDAS, a proximal
binary choice for NASP, softmax plus edge normalization for PC-DARTS) and passes them to
`SearchNetwork.forward`; the cells only apply them. What runs on an edge is chosen by
`edge_factory` (`MixedOp`, or `functools.partial(PartialChannelMixedOp, k=4)` for PC-DARTS).

Structure as in quark0/darts cnn/model_search.py and yuhuixu1993/PC-DARTS model_search.py:
search ops use BN without affine parameters, pools get a BN of their own, the stem is a 3x3
conv with BN, and a cell outputs the concatenation of its last `multiplier` nodes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from nasbench_repro.spaces.cnn.networks import FixedReductionCell
from nasbench_repro.spaces.cnn.ops import DARTS_PRIMITIVES, FactorizedReduce, ReLUConvBN, is_pool, make_op
from nasbench_repro.spaces.cnn.stems import cifar_stem, imagenet_stems, reduction_layers
from nasbench_repro.spaces.genotypes import cell_edge_count, edge_primitives

Primitives = Sequence[str] | Sequence[Sequence[str]]
EdgeFactory = Callable[[int, int, Sequence[str]], nn.Module]


@dataclass
class CellWeights:
    """What one cell type runs with, computed by the method from its architecture parameters.

    - `ops`: op weights, [num_edges, num_ops] (or one 1-D tensor per edge);
    - `edges`: per-edge scales [num_edges] multiplying each edge's output (PC-DARTS edge
      normalization); None means 1;
    - `selected`: for discrete rules (GDAS, NASP), one entry per edge as Python values: the op
      to run (only that one is computed, as `ops[e][i] * op_i(x)`, so a straight-through weight
      still carries the gradient), or None to switch the edge off. Picking which module runs
      needs the index on the host: fetch all edges' indices with one `.tolist()` per step
      rather than one `.item()` per edge. `selected=None` for the whole cell runs every op.
    """

    ops: torch.Tensor | Sequence[torch.Tensor]
    edges: torch.Tensor | None = None
    selected: Sequence[int | None] | None = None


# Cell type ("normal", "reduce"; a recurrent supernet uses its own names) -> its weights.
ArchWeights = dict[str, CellWeights]


def make_search_op(name: str, C: int, stride: int) -> nn.Module:
    """A candidate op as the supernet runs it: BN without affine, and a BN after pools."""
    op = make_op(name, C, stride, affine=False)
    if is_pool(name):
        op = nn.Sequential(op, nn.BatchNorm2d(C, affine=False))
    return op


class SkipDropout(nn.Dropout):
    """Dropout after an identity skip connection (P-DARTS); its rate follows a schedule, see `set_skip_dropout`."""


def set_skip_dropout(module: nn.Module, rate: float) -> None:
    """Set the rate of every skip-connection dropout inside `module`."""
    for child in module.modules():
        if isinstance(child, SkipDropout):
            child.p = rate


class MixedOp(nn.Module):
    """One edge: the weighted sum of every candidate op, or only the selected one.

    `skip_dropout` follows the identity skip connection with a `SkipDropout` (P-DARTS; its rate
    starts at 0; strided skips, which are FactorizedReduce, get none, as in the official code)."""

    def __init__(self, C: int, stride: int, primitives: Sequence[str], skip_dropout: bool = False):
        super().__init__()
        self.primitives = tuple(primitives)
        ops = []
        for name in self.primitives:
            op = make_search_op(name, C, stride)
            if isinstance(op, nn.Identity) and skip_dropout:
                op = nn.Sequential(op, SkipDropout(0.0))
            ops.append(op)
        self.ops = nn.ModuleList(ops)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, selected: int | None = None) -> torch.Tensor:
        if len(weights) != len(self.ops):
            raise ValueError(f"{len(weights)} weights for {len(self.ops)} ops ({', '.join(self.primitives)})")
        if selected is not None:
            return weights[selected] * self.ops[selected](x)
        return sum(weight * op(x) for weight, op in zip(weights, self.ops, strict=True))


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave `groups` equal channel blocks (channel g*n + i moves to i*groups + g)."""
    batch, channels, height, width = x.shape
    grouped = x.view(batch, groups, channels // groups, height, width)
    return grouped.transpose(1, 2).reshape(batch, channels, height, width)


class PartialChannelMixedOp(nn.Module):
    """PC-DARTS' edge: only the first C/k channels go through the mixed op; the others bypass
    it (max-pooled 2x2 on a stride-2 edge) and a k-group channel shuffle mixes the two, so
    other channels are sampled at the next edge. With k=1 it computes what `MixedOp` does."""

    def __init__(self, C: int, stride: int, primitives: Sequence[str], k: int = 4):
        super().__init__()
        if k < 1 or C % k:
            raise ValueError(f"partial channels need k >= 1 dividing C; got C={C}, k={k}")
        self.k = k
        self.sampled_channels = C // k
        self.mixed = MixedOp(self.sampled_channels, stride, primitives)
        # ceil_mode keeps the bypass the same size as the strided ops on odd inputs; on even ones it changes nothing
        self.bypass_pool = nn.MaxPool2d(2, 2, ceil_mode=True) if stride == 2 else nn.Identity()

    @property
    def primitives(self) -> tuple[str, ...]:
        return self.mixed.primitives

    def forward(self, x: torch.Tensor, weights: torch.Tensor, selected: int | None = None) -> torch.Tensor:
        mixed = self.mixed(x[:, : self.sampled_channels], weights, selected)
        if self.k == 1:
            return mixed
        bypass = self.bypass_pool(x[:, self.sampled_channels :])
        return channel_shuffle(torch.cat([mixed, bypass], dim=1), self.k)


class SearchCell(nn.Module):
    """Two inputs, `steps` intermediate nodes each summing one edge from every earlier node
    (edges switched off by `selected` are left out), output the concatenation of the last
    `multiplier` nodes."""

    def __init__(
        self,
        steps: int,
        multiplier: int,
        C_prev_prev: int,
        C_prev: int,
        C: int,
        reduction: bool,
        reduction_prev: bool,
        primitives: tuple[tuple[str, ...], ...],
        edge_factory: EdgeFactory = MixedOp,
    ):
        super().__init__()
        self.reduction = reduction
        self.steps = steps
        self.multiplier = multiplier
        if reduction_prev:
            self.preprocess0 = FactorizedReduce(C_prev_prev, C, affine=False)
        else:
            self.preprocess0 = ReLUConvBN(C_prev_prev, C, 1, 1, 0, affine=False)
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0, affine=False)
        self.edges = nn.ModuleList()
        for node in range(steps):
            for source in range(node + 2):
                stride = 2 if reduction and source < 2 else 1
                self.edges.append(edge_factory(C, stride, primitives[len(self.edges)]))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: CellWeights) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        edge = 0
        for node in range(self.steps):
            terms = []
            for state in states:
                choice = None if weights.selected is None else weights.selected[edge]
                if weights.selected is None or choice is not None:
                    out = self.edges[edge](state, weights.ops[edge], choice)
                    terms.append(out if weights.edges is None else weights.edges[edge] * out)
                edge += 1
            if not terms:
                raise ValueError(f"every edge into node {node + 2} is switched off")
            states.append(sum(terms))
        return torch.cat(states[-self.multiplier :], dim=1)


def stem_for(input_shape: tuple[int, ...]) -> str:
    """The supernet stem for an input size: CIFAR's for small images, PC-DARTS' ImageNet stem for 224x224."""
    return "imagenet" if input_shape[-1] >= 224 else "cifar"


class SearchNetwork(nn.Module):
    """The DARTS supernet: stem, `layers` search cells (reductions at 1/3 and 2/3), classifier.

    `stem="imagenet"` replaces the single 3x3 conv with PC-DARTS' three stride-2 convs, so a
    224x224 search runs its cells at 28x28 and below.

    `primitives` (and `reduce_primitives`, default the same; NASP searches different lists for
    the two cell types) is a list of op names shared by every edge, or one list per edge
    (P-DARTS after pruning). `edge_factory(C, stride, primitives)` builds each edge.
    `fixed_reduction=True` puts GDAS's hand-designed reduction cell at the reduction positions
    (GDAS FRC): only the normal cell is searched. `cell_primitives` lists, per searched cell
    type, each edge's candidate ops.
    """

    def __init__(
        self,
        C: int = 16,
        num_classes: int = 10,
        layers: int = 8,
        primitives: Primitives = DARTS_PRIMITIVES,
        edge_factory: EdgeFactory = MixedOp,
        steps: int = 4,
        multiplier: int = 4,
        stem_multiplier: int = 3,
        reduce_primitives: Primitives | None = None,
        stem: str = "cifar",
        fixed_reduction: bool = False,
    ):
        super().__init__()
        self.steps = steps
        self.multiplier = multiplier
        self.num_edges = cell_edge_count(steps)
        self.cell_primitives = {"normal": edge_primitives(primitives, self.num_edges)}
        if not fixed_reduction:
            self.cell_primitives["reduce"] = edge_primitives(reduce_primitives or primitives, self.num_edges)
        C_curr = stem_multiplier * C
        if stem == "cifar":
            self.stem0, self.stem1 = cifar_stem(C_curr), None
            reduction_prev = False
        elif stem == "imagenet":  # as PC-DARTS' ImageNet supernet
            self.stem0, self.stem1 = imagenet_stems(C_curr)
            reduction_prev = True  # the first cell's two inputs differ in resolution
        else:
            raise ValueError(f"unknown stem {stem!r}; use 'cifar' or 'imagenet'")
        C_prev_prev, C_prev, C_curr = C_curr, C_curr, C
        self.cells = nn.ModuleList()
        for layer in range(layers):
            reduction = layer in reduction_layers(layers)
            if reduction:
                C_curr *= 2
            if reduction and fixed_reduction:
                cell = FixedReductionCell(C_prev_prev, C_prev, C_curr, reduction_prev, affine=False)
            else:
                cell = SearchCell(
                    steps,
                    multiplier,
                    C_prev_prev,
                    C_prev,
                    C_curr,
                    reduction,
                    reduction_prev,
                    self.cell_primitives["reduce" if reduction else "normal"],
                    edge_factory,
                )
            self.cells.append(cell)
            reduction_prev = reduction
            C_prev_prev, C_prev = C_prev, cell.multiplier * C_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)

    def forward(self, x: torch.Tensor, arch: ArchWeights) -> torch.Tensor:
        s0 = self.stem0(x)
        s1 = s0 if self.stem1 is None else self.stem1(s0)
        for cell in self.cells:
            if isinstance(cell, FixedReductionCell):
                s0, s1 = s1, cell(s0, s1)
            else:
                s0, s1 = s1, cell(s0, s1, arch["reduce" if cell.reduction else "normal"])
        return self.classifier(self.global_pooling(s1).flatten(1))
