"""The DARTS recurrent cell (Liu et al., ICLR 2019, Sec. 2.1 and App. A.1.2; quark0/darts
@f276dd3 rnn/model.py DARTSCell and rnn/model_search.py DARTSCellSearch).

One time step maps the input x_t and the previous state h_{t-1} to h_t through N intermediate
nodes (N = 8), each a highway layer over one earlier node:

    node 0:  c, h = [x_t, h_{t-1}] W_0        s_0 = h_{t-1} + σ(c) ⊙ (tanh(h) − h_{t-1})
    node i:  c, h = s_j W_i   (j < i)         s_i = s_j + σ(c) ⊙ (f_i(h) − s_j)
    h_t = the mean of the `concat` nodes (all N in DARTS)

f_i is tanh, relu, sigmoid or identity; `none` is the zero op (a node that outputs 0). A
genotype fixes (f_i, j) per node; the search cell sums every (activation, predecessor) pair,
weighted by the method's op weights, with batch normalization (no affine) on every node.
The search cell takes those weights as the CNN supernet does, a `CellWeights` (here for the
one cell type "recurrent"), so every method's weighting rule applies unchanged.

Dropout is variational (Gal & Ghahramani): in training, one mask per sequence, drawn on
each forward, multiplies the cell input x_t (`cell_input_dropout`) and every state a node
reads (`hidden_dropout`), at every time step. All weights start uniform in ±INIT_RANGE.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import nn

from nasbench_repro.spaces.cnn.supernet import CellWeights
from nasbench_repro.spaces.genotypes import RNN_ACTIVATIONS, RecurrentGenotype

INIT_RANGE = 0.04  # rnn/model.py INITRANGE
STEPS = 8  # rnn/genotypes.py STEPS: intermediate nodes after node 0
CELL_TYPE = "recurrent"  # the one cell type of the space, as ArchWeights names it (CNN: "normal", "reduce")

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "identity": lambda x: x,
}


def recurrent_edge_count(steps: int = STEPS) -> int:
    """Edges of the search cell: node i (1..steps) may read any of nodes 0..i-1 (36 for 8 nodes);
    the edge from node j into node i is row i(i-1)/2 + j of the op weights."""
    return steps * (steps + 1) // 2


def variational_mask(like: torch.Tensor, drop: float) -> torch.Tensor | None:
    """A [batch, features] keep-mask scaled by 1 / (1 − drop), shared by every time step; None when nothing drops."""
    if drop <= 0:
        return None
    return torch.empty_like(like).bernoulli_(1 - drop).div_(1 - drop)


def _masked(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return x if mask is None else x * mask


def _highway(state: torch.Tensor, candidate: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """state + gate ⊙ (candidate − state) in one kernel (`lerp`), in the dtype that formula promotes to
    (under autocast the candidate and gate come from half-precision products, the state may not)."""
    if not state.dtype == candidate.dtype == gate.dtype:
        dtype = torch.promote_types(torch.promote_types(state.dtype, candidate.dtype), gate.dtype)
        state, candidate, gate = state.to(dtype), candidate.to(dtype), gate.to(dtype)
    return torch.lerp(state, candidate, gate)


class _HighwayCell(nn.Module):
    """What both cells share: the weights, node 0, and the unrolling over time."""

    def __init__(self, input_size: int, hidden_size: int, steps: int, cell_input_dropout: float, hidden_dropout: float):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.cell_input_dropout, self.hidden_dropout = cell_input_dropout, hidden_dropout
        self.first_node_weight = nn.Parameter(
            torch.empty(input_size + hidden_size, 2 * hidden_size).uniform_(-INIT_RANGE, INIT_RANGE)
        )
        self.node_weights = nn.ParameterList(
            nn.Parameter(torch.empty(hidden_size, 2 * hidden_size).uniform_(-INIT_RANGE, INIT_RANGE))
            for _ in range(steps)
        )

    def forward(self, inputs: torch.Tensor, hidden: torch.Tensor, *step_args) -> tuple[torch.Tensor, torch.Tensor]:
        """Run over `inputs` [T, batch, input_size] from `hidden` [batch, hidden_size]; return the
        states h_1..h_T [T, batch, hidden_size] and h_T."""
        dropping = self.training
        x_mask = variational_mask(inputs[0], self.cell_input_dropout) if dropping else None
        h_mask = variational_mask(hidden, self.hidden_dropout) if dropping else None
        # x_t's share of node 0's projection for every t in one product ([x, h] W_0 = x W_x + h W_h)
        input_projections = _masked(inputs, x_mask) @ self.first_node_weight[: self.input_size]
        states = []
        for projection in input_projections:
            hidden = self.step(projection, hidden, h_mask, *step_args)
            states.append(hidden)
        return torch.stack(states), hidden

    def first_node(
        self, input_projection: torch.Tensor, previous: torch.Tensor, h_mask: torch.Tensor | None
    ) -> torch.Tensor:
        hidden_weight = self.first_node_weight[self.input_size :]
        gate, candidate = torch.addmm(input_projection, _masked(previous, h_mask), hidden_weight).chunk(2, dim=-1)
        return _highway(previous, candidate.tanh(), gate.sigmoid())

    def step(
        self, input_projection: torch.Tensor, previous: torch.Tensor, h_mask: torch.Tensor | None, *args
    ) -> torch.Tensor:
        raise NotImplementedError


class RecurrentCell(_HighwayCell):
    """The cell a genotype describes (rnn/model.py DARTSCell), as the evaluation network runs it."""

    def __init__(
        self,
        genotype: RecurrentGenotype,
        input_size: int,
        hidden_size: int,
        cell_input_dropout: float = 0.0,
        hidden_dropout: float = 0.0,
    ):
        super().__init__(input_size, hidden_size, len(genotype.recurrent), cell_input_dropout, hidden_dropout)
        self.genotype = genotype

    def step(self, input_projection: torch.Tensor, previous: torch.Tensor, h_mask: torch.Tensor | None) -> torch.Tensor:
        nodes = [self.first_node(input_projection, previous, h_mask)]
        for (activation, predecessor), weight in zip(self.genotype.recurrent, self.node_weights, strict=True):
            source = nodes[predecessor]
            if activation == "none":
                nodes.append(torch.zeros_like(source))
                continue
            gate, candidate = (_masked(source, h_mask) @ weight).chunk(2, dim=-1)
            nodes.append(_highway(source, ACTIVATIONS[activation](candidate), gate.sigmoid()))
        return torch.stack([nodes[index] for index in self.genotype.concat]).mean(0)


class _NodeMix(NamedTuple):
    """What every time step of a forward shares for one node of the search cell."""

    activations: tuple[Callable[[torch.Tensor], torch.Tensor], ...]  # the ops the node runs, in `primitives` order
    op_weights: torch.Tensor  # [predecessors, 1, activations]: w_ea
    edge_weights: torch.Tensor  # [predecessors, 1, 1]: Σ_a w_ea


class SearchCell(_HighwayCell):
    """Every node mixes every (activation, predecessor) pair by the method's op weights
    (rnn/model_search.py DARTSCellSearch); node 0 and every mixed node pass through one shared
    batch normalization without affine parameters (`batch_norm=False` leaves it out). h_t is
    the mean of the N mixed nodes.

    It runs with a `CellWeights`: `ops` [num_edges, num_ops] in `primitives` order; `edges`,
    when given, scales each edge's contribution; `selected`, when given, keeps only each edge's
    selected op (its weight times the op, so a straight-through weight carries the gradient),
    or nothing for None.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        cell_input_dropout: float = 0.0,
        hidden_dropout: float = 0.0,
        steps: int = STEPS,
        primitives: Sequence[str] = RNN_ACTIVATIONS,
        batch_norm: bool = True,
    ):
        super().__init__(input_size, hidden_size, steps, cell_input_dropout, hidden_dropout)
        unknown = [name for name in primitives if name != "none" and name not in ACTIVATIONS]
        if unknown:
            raise ValueError(f"unknown activations {unknown}; known: none, {', '.join(ACTIVATIONS)}")
        self.primitives = tuple(primitives)
        self.steps = steps
        self.num_edges = recurrent_edge_count(steps)
        self.normalize = nn.BatchNorm1d(hidden_size, affine=False) if batch_norm else nn.Identity()
        # the ops that compute something (`none` adds nothing to a node): their columns of the op weights
        self._active_columns = [index for index, name in enumerate(self.primitives) if name != "none"]

    def forward(
        self, inputs: torch.Tensor, hidden: torch.Tensor, weights: CellWeights
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ops = weights.ops
        if not isinstance(ops, torch.Tensor) or tuple(ops.shape) != (self.num_edges, len(self.primitives)):
            shape = list(ops.shape) if isinstance(ops, torch.Tensor) else f"{len(ops)} per-edge tensors"
            raise ValueError(
                f"recurrent op weights must be one [{self.num_edges}, {len(self.primitives)}] tensor "
                f"({', '.join(self.primitives)}), got {shape}"
            )
        if weights.edges is not None:  # an edge's scale multiplies every op weight on it
            ops = ops * weights.edges[:, None]
        return super().forward(inputs, hidden, self._node_mixes(ops, weights.selected))

    def _node_mixes(self, ops: torch.Tensor, selected: Sequence[int | None] | None) -> list[_NodeMix | None]:
        """Each node's activations and weights, once per forward rather than once per time step;
        None for a node that computes nothing (each edge into it is `none` or off): it is 0.

        With `selected`, every weight but each edge's selected one is zeroed, so exactly the selected
        weights get a gradient, and a node runs only the activations its edges select (each one
        kernel over all its predecessors; an edge that selected another adds it times 0)."""
        if selected is not None:
            keep = torch.zeros_like(ops)
            for edge, op in enumerate(selected):
                if op is not None:
                    keep[edge, op] = 1.0
            ops = ops * keep
        mixes, first_edge = [], 0
        for node in range(1, self.steps + 1):
            edges = slice(first_edge, first_edge + node)
            first_edge += node
            columns = [column for column in self._active_columns if selected is None or column in selected[edges]]
            if not columns:
                mixes.append(None)
                continue
            op_weights = torch.stack([ops[edges, column] for column in columns], dim=1)  # [predecessors, activations]
            mixes.append(
                _NodeMix(
                    tuple(ACTIVATIONS[self.primitives[column]] for column in columns),
                    op_weights.unsqueeze(1),
                    op_weights.sum(1).view(-1, 1, 1),
                )
            )
        return mixes

    def step(
        self,
        input_projection: torch.Tensor,
        previous: torch.Tensor,
        h_mask: torch.Tensor | None,
        mixes: list[_NodeMix | None],
    ) -> torch.Tensor:
        """Node i is Σ over predecessors e and activations a of w_ea (s_e + σ(c_e) (f_a(h_e) − s_e)),
        computed as Σ_e highway(W_e s_e, Σ_a w_ea f_a(h_e), σ(c_e)) with W_e = Σ_a w_ea: one product
        for all predecessors' gates and candidates, one kernel per activation, one batched product
        for the sums over activations, a few kernels per node for the rest (the search cell runs
        8 nodes per token, and a second-order step runs 5 passes of them)."""
        nodes = self.normalize(self.first_node(input_projection, previous, h_mask)).unsqueeze(0)
        for weight, mix in zip(self.node_weights, mixes, strict=True):
            if mix is None:
                mixed = torch.zeros_like(previous)
            else:
                gates, candidates = (_masked(nodes, h_mask) @ weight).chunk(2, dim=-1)  # [predecessor, batch, hidden]
                activated = torch.stack([activation(candidates) for activation in mix.activations], dim=1)
                weighted = torch.bmm(mix.op_weights, activated.flatten(2)).view_as(candidates)
                mixed = _highway(mix.edge_weights * nodes, weighted, gates.sigmoid()).sum(0)
            nodes = torch.cat([nodes, self.normalize(mixed).unsqueeze(0)])
        return nodes[1:].mean(0)


def derive_recurrent_genotype(
    weights: torch.Tensor | Sequence[Sequence[float]], primitives: Sequence[str] = RNN_ACTIVATIONS, steps: int = STEPS
) -> RecurrentGenotype:
    """DARTS's discretization of the recurrent cell (rnn/model_search.py genotype()): each node
    keeps the one predecessor whose strongest non-`none` op weighs most (ties: the earlier
    predecessor) with that op (ties: the earlier op); h_t averages all nodes."""
    rows = torch.as_tensor(weights, dtype=torch.float64).detach().cpu().tolist()
    if len(rows) != recurrent_edge_count(steps) or any(len(row) != len(primitives) for row in rows):
        raise ValueError(f"{steps} nodes need [{recurrent_edge_count(steps)}, {len(primitives)}] weights")
    candidates = [index for index, name in enumerate(primitives) if name != "none"]
    if not candidates:
        raise ValueError("the primitives hold no op other than 'none'")
    recurrent, first_edge = [], 0
    for node in range(1, steps + 1):
        best = []  # per predecessor: (weight, op index) of its strongest non-none op, the earlier op on ties
        for row in rows[first_edge : first_edge + node]:
            op = max(candidates, key=lambda index, row=row: (row[index], -index))
            best.append((row[op], op))
        predecessor = max(range(node), key=lambda source: (best[source][0], -source))
        recurrent.append((primitives[best[predecessor][1]], predecessor))
        first_edge += node
    return RecurrentGenotype(recurrent, range(1, steps + 1))
