"""The DARTS cell space as black-box methods see it: sample, enumerate, mutate, encode.

A genotype holds a normal and a reduction cell. Intermediate node j of a cell (numbered
2 + j, as in `genotypes`) sums two edges, each an op applied to an earlier state: 0 is
c_{k-2}, 1 is c_{k-1}, 2.. are earlier nodes. Variants of the space differ in:

- `ops`: the candidates (DARTS's 7 without `none`; Li & Talwalkar keep `none`; Real et al.'s
  NASNet-style list; a grid's restricted set);
- `distinct_inputs`: DARTS cells take two different inputs per node, NASNet and AmoebaNet
  cells may read one state twice;
- `concat`: the cell outputs "all" intermediate nodes (DARTS) or the "unused" ones, those no
  other node reads (NASNet, AmoebaNet);
- `tied`: the reduction cell repeats the normal cell (a grid over one cell).

Two cells are the same graph when a relabelling of their intermediate nodes (that keeps
every edge pointing backwards) maps one onto the other; the two edges of a node are
unordered (they are summed), and an edge with the `none` op contributes nothing whatever
its input. `key` is the smallest relabelled form, so isomorphic duplicates share a key.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from nasbench_repro.errors import UserError
from nasbench_repro.spaces.cnn.networks import NetworkCIFAR, NetworkImageNet
from nasbench_repro.spaces.genotypes import Genotype, Pair
from nasbench_repro.spaces.space import ACCURACY, Decision, Token

CONCAT_RULES = ("all", "unused")
MUTATIONS = ("op", "hidden_state")
NO_INPUT = -1  # where a `none` edge's input goes in the canonical form: it reads nothing


@dataclass(frozen=True)
class CellSpace:
    ops: tuple[str, ...]
    nodes: int = 4
    distinct_inputs: bool = True
    concat: str = "all"
    tied: bool = False

    mutations = MUTATIONS
    metric = ACCURACY

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", tuple(self.ops))
        if not self.ops or len(set(self.ops)) != len(self.ops):
            raise UserError(f"a cell space needs distinct candidate ops, got {list(self.ops)}")
        if self.nodes < 1:
            raise UserError(f"a cell needs at least one intermediate node, got {self.nodes}")
        if self.concat not in CONCAT_RULES:
            raise UserError(f"unknown concat rule {self.concat!r}; use one of {', '.join(CONCAT_RULES)}")

    @classmethod
    def from_protocol(cls, values: Mapping[str, Any]) -> CellSpace:
        """The space a search protocol declares with `ops`, `nodes`, `distinct_inputs`, `concat`, `tied_cells`."""
        return cls(
            tuple(values["ops"]),
            values["nodes"],
            values["distinct_inputs"],
            values["concat"],
            values.get("tied_cells", False),
        )

    # --- cells as lists of (op, input) pairs -------------------------------------------------------------------

    def _cells(self, genotype: Genotype) -> list[tuple[Pair, ...]]:
        return [genotype.normal] if self.tied else [genotype.normal, genotype.reduce]

    def _genotype(self, cells: Sequence[Sequence[Pair]]) -> Genotype:
        normal = tuple(cells[0])
        reduce = normal if self.tied else tuple(cells[1])
        return Genotype(normal, self._concat(normal), reduce, self._concat(reduce))

    def _concat(self, pairs: Sequence[Pair]) -> tuple[int, ...]:
        nodes = range(2, 2 + len(pairs) // 2)
        if self.concat == "all":
            return tuple(nodes)
        read = {source for _, source in pairs}
        return tuple(node for node in nodes if node not in read)

    def _input_choices(self, node: int) -> range:
        return range(node + 2)

    # --- sampling and mutation ---------------------------------------------------------------------------------

    def sample(self, rng: random.Random) -> Genotype:
        """Per node, two inputs (different ones when `distinct_inputs`, as Li & Talwalkar's
        sampler draws them without replacement) and an op for each, all uniform."""
        cells = []
        for _ in range(1 if self.tied else 2):
            pairs = []
            for node in range(self.nodes):
                choices = self._input_choices(node)
                inputs = rng.sample(choices, 2) if self.distinct_inputs else [rng.choice(choices) for _ in range(2)]
                pairs += [(rng.choice(self.ops), inputs[0]), (rng.choice(self.ops), inputs[1])]
            cells.append(pairs)
        return self._genotype(cells)

    def mutate(self, genotype: Genotype, rng: random.Random, kind: str) -> Genotype:
        """Real et al.'s mutations: `op` replaces one edge's op with another; `hidden_state`
        points one edge at another earlier state (edges with `none` read nothing, so they are
        left alone). A kind the genotype leaves no room for falls back to the other kind."""
        cells = [list(pairs) for pairs in self._cells(genotype)]
        options = {name: self._mutation_sites(cells, name) for name in MUTATIONS}
        if kind not in options:
            raise ValueError(f"unknown mutation {kind!r}; use one of {', '.join(MUTATIONS)}")
        if not options[kind]:
            kind = next((name for name in MUTATIONS if options[name]), kind)
        if not options[kind]:
            raise UserError(f"no mutation can change {genotype} in this space (ops {list(self.ops)}); widen the space")
        cell, position, choices = rng.choice(options[kind])
        op, source = cells[cell][position]
        replacement = rng.choice(choices)
        cells[cell][position] = (replacement, source) if kind == "op" else (op, replacement)
        return self._genotype(cells)

    def _mutation_sites(self, cells: list[list[Pair]], kind: str) -> list[tuple[int, int, list]]:
        """(cell, pair position, the values that would change it) wherever a change is possible."""
        sites = []
        for cell, pairs in enumerate(cells):
            for position, (op, source) in enumerate(pairs):
                if kind == "op":
                    choices = [name for name in self.ops if name != op]
                else:
                    sibling = pairs[position ^ 1][1]
                    taken = {source, sibling} if self.distinct_inputs else {source}
                    choices = (
                        []
                        if op == "none"
                        else [index for index in self._input_choices(position // 2) if index not in taken]
                    )
                if choices:
                    sites.append((cell, position, choices))
        return sites

    # --- the canonical form ------------------------------------------------------------------------------------

    def key(self, genotype: Genotype) -> str:
        return json.dumps([cell_key(pairs, self._concat(pairs)) for pairs in self._cells(genotype)])

    # --- enumeration (grid search) -----------------------------------------------------------------------------

    def enumerate(self) -> Iterator[Genotype]:
        """Every genotype once up to isomorphism: cells in a fixed order (inputs, then ops, by
        position), the first of each isomorphism class kept; untied spaces pair every normal
        cell with every reduction cell."""
        cells = self.distinct_cells()
        for index in range(self.grid_size(cells)):
            yield self.grid_point(cells, index)

    def grid_size(self, cells: Sequence[tuple[Pair, ...]]) -> int:
        return len(cells) if self.tied else len(cells) ** 2

    def grid_point(self, cells: Sequence[tuple[Pair, ...]], index: int) -> Genotype:
        """The `index`-th genotype `enumerate` yields, given `distinct_cells()`."""
        if self.tied:
            return self._genotype([cells[index]])
        normal, reduce = divmod(index, len(cells))
        return self._genotype([cells[normal], cells[reduce]])

    def distinct_cells(self) -> list[tuple[Pair, ...]]:
        per_node = []
        for node in range(self.nodes):
            pick = itertools.combinations if self.distinct_inputs else itertools.combinations_with_replacement
            choices = []
            for first, second in pick(self._input_choices(node), 2):
                # the same input twice: the two edges are interchangeable, so their ops are an unordered pair
                op_pairs = (
                    itertools.combinations_with_replacement(self.ops, 2)
                    if first == second
                    else itertools.product(self.ops, repeat=2)
                )
                choices += [((op_a, first), (op_b, second)) for op_a, op_b in op_pairs]
            per_node.append(choices)
        seen, cells = set(), []
        for nodes in itertools.product(*per_node):
            pairs = tuple(pair for node in nodes for pair in node)
            canonical = cell_key(pairs, self._concat(pairs))
            if canonical not in seen:
                seen.add(canonical)
                cells.append(pairs)
        return cells

    # --- a controller's view -----------------------------------------------------------------------------------

    def decisions(self) -> list[Decision]:
        """Per cell and node: first input, its op, second input, its op. With distinct inputs the
        second input is chosen among the states the first did not take."""
        steps = []
        for _ in range(1 if self.tied else 2):
            for node in range(self.nodes):
                inputs, op = node + 2, Decision("op", len(self.ops))
                steps += [
                    Decision("input", inputs),
                    op,
                    Decision("input", inputs - 1 if self.distinct_inputs else inputs),
                    op,
                ]
        return steps

    def decode(self, tokens: Sequence[Token]) -> Genotype:
        tokens = list(tokens)
        cells = []
        for _ in range(1 if self.tied else 2):
            pairs = []
            for _ in range(self.nodes):
                first, op_a, second, op_b = tokens[:4]
                del tokens[:4]
                if self.distinct_inputs and second >= first:
                    second += 1
                pairs += [(self.ops[op_a], first), (self.ops[op_b], second)]
            cells.append(pairs)
        return self._genotype(cells)

    def encode(self, genotype: Genotype) -> list[Token]:
        tokens: list[Token] = []
        for pairs in self._cells(genotype):
            for position in range(0, len(pairs), 2):
                (op_a, first), (op_b, second) = pairs[position], pairs[position + 1]
                if self.distinct_inputs and second > first:
                    second -= 1  # counted among the states the first input left
                tokens += [first, self.ops.index(op_a), second, self.ops.index(op_b)]
        return tokens

    # --- the network a candidate trains as ---------------------------------------------------------------------

    def build_network(
        self, genotype: Genotype, values: Mapping[str, Any], num_classes: int, input_shape: tuple[int, ...]
    ) -> nn.Module:
        """The evaluation network (stem, cells, classifier) sized by the protocol's `init_channels` and `layers`."""
        network_class = NetworkImageNet if input_shape[-1] >= 224 else NetworkCIFAR
        return network_class(
            values["init_channels"], num_classes, values["layers"], values.get("auxiliary", False), genotype
        )

    def genotype_from_dict(self, data: Mapping[str, Any]) -> Genotype:
        return Genotype.from_dict(data)


def cell_key(pairs: Sequence[Pair], concat: Sequence[int]) -> tuple:
    """The smallest form of a cell over the relabellings of its intermediate nodes that keep
    every edge pointing backwards: per node, its sorted edges and whether it is an output."""
    orders = itertools.permutations(range(len(pairs) // 2))
    return min(form for order in orders if (form := _relabelled(pairs, concat, order)) is not None)


def _relabelled(pairs: Sequence[Pair], concat: Sequence[int], order: Sequence[int]) -> tuple | None:
    """The cell with old node order[i] renamed i; None when that puts an input after its reader."""
    position = {old: new for new, old in enumerate(order)}
    nodes = []
    for old in order:
        edges = []
        for op, source in pairs[2 * old : 2 * old + 2]:
            if source >= 2:
                if position[source - 2] >= position[old]:
                    return None
                source = 2 + position[source - 2]
            edges.append((op, NO_INPUT if op == "none" else source))
        nodes.append((tuple(sorted(edges)), 2 + old in concat))
    return tuple(nodes)
