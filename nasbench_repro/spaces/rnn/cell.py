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
        gate, candidate = (
            input_projection + _masked(previous, h_mask) @ self.first_node_weight[self.input_size :]
        ).chunk(2, dim=-1)
        return previous + gate.sigmoid() * (candidate.tanh() - previous)

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
            nodes.append(source + gate.sigmoid() * (ACTIVATIONS[activation](candidate) - source))
        return torch.stack([nodes[index] for index in self.genotype.concat]).mean(0)


class SearchCell(_HighwayCell):
    """Every node mixes every (activation, predecessor) pair by the method's op weights
    (rnn/model_search.py DARTSCellSearch); node 0 and every mixed node pass through one shared
    batch normalization without affine parameters (`batch_norm=False` leaves it out). h_t is
    the mean of the N mixed nodes.

    It runs with a `CellWeights`: `ops` [num_edges, num_ops] in `primitives` order; `edges`,
    when given, scales each edge's contribution; `selected`, when given, runs only each edge's
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
        self._activations = [ACTIVATIONS[self.primitives[index]] for index in self._active_columns]

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
        return super().forward(inputs, hidden, ops, weights.selected)

    def step(
        self,
        input_projection: torch.Tensor,
        previous: torch.Tensor,
        h_mask: torch.Tensor | None,
        ops: torch.Tensor,
        selected: Sequence[int | None] | None,
    ) -> torch.Tensor:
        nodes = self.normalize(self.first_node(input_projection, previous, h_mask)).unsqueeze(0)
        active_ops = ops[:, self._active_columns] if selected is None else None
        first_edge = 0
        for node, weight in enumerate(self.node_weights, start=1):
            # one product for every predecessor: [node, batch, 2 * hidden]
            gates, candidates = (_masked(nodes, h_mask) @ weight).chunk(2, dim=-1)
            gates = gates.sigmoid()
            if selected is None:
                mixed = self._weighted_sum(nodes, gates, candidates, active_ops[first_edge : first_edge + node])
            else:
                mixed = self._selected_sum(
                    nodes,
                    gates,
                    candidates,
                    ops[first_edge : first_edge + node],
                    selected[first_edge : first_edge + node],
                )
            nodes = torch.cat([nodes, self.normalize(mixed).unsqueeze(0)])
            first_edge += node
        return nodes[1:].mean(0)

    def _weighted_sum(
        self, nodes: torch.Tensor, gates: torch.Tensor, candidates: torch.Tensor, active_ops: torch.Tensor
    ) -> torch.Tensor:
        """Σ over predecessors e and activations a of w_ea (s_e + c_e (f_a(h_e) − s_e)), gathered as
        Σ_e (Σ_a w_ea) (1 − c_e) s_e + Σ_e c_e Σ_a w_ea f_a(h_e): a handful of kernels per node
        instead of a handful per activation (the search cell runs 8 nodes per token)."""
        activated = torch.stack([activation(candidates) for activation in self._activations])  # [a, e, batch, hidden]
        kept = torch.einsum("e,ebh->bh", active_ops.sum(1), nodes - gates * nodes)
        return kept + torch.einsum("ea,aebh->bh", active_ops, activated * gates)

    def _selected_sum(
        self,
        nodes: torch.Tensor,
        gates: torch.Tensor,
        candidates: torch.Tensor,
        edge_ops: torch.Tensor,
        selected: Sequence[int | None],
    ) -> torch.Tensor:
        """Each predecessor through its one selected op; a node whose every edge selects `none` (or None) is 0."""
        mixed = torch.zeros_like(nodes[0])
        for source, op in enumerate(selected):
            if op is not None and self.primitives[op] != "none":
                activation = ACTIVATIONS[self.primitives[op]]
                mixed = mixed + edge_ops[source, op] * (
                    nodes[source] + gates[source] * (activation(candidates[source]) - nodes[source])
                )
        return mixed


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
