"""The DARTS recurrent cell space as black-box methods see it: sample, mutate, encode, key.

A genotype gives each intermediate node i (1..N) an activation and one predecessor j < i
(node 0 is fixed: the highway layer over x_t and h_{t-1}); h_t averages the nodes. Sampling
follows Li & Talwalkar's (liamcli/randomNAS_release @0387aea benchmarks/nas_search/rnn,
`sample_arch`): per node, an activation drawn uniformly among tanh, relu, sigmoid and
identity (the zero op is left out, as it is never derived) and a predecessor drawn uniformly
among the earlier nodes; every node is averaged into the output.

Two cells compute the same function when a relabelling of their intermediate nodes that keeps
every predecessor earlier maps one onto the other (each node has weights of its own, and the
output is a mean, which does not care about order). With one predecessor per node a cell is a
tree rooted at node 0, so `key` is the tree's canonical form (children sorted recursively): equal
exactly for such relabellings, in time linear in the nodes.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from nasbench_repro.errors import UserError
from nasbench_repro.spaces.genotypes import RecurrentGenotype
from nasbench_repro.spaces.rnn.cell import ACTIVATIONS, STEPS
from nasbench_repro.spaces.rnn.model import Dropouts, evaluation_model
from nasbench_repro.spaces.space import PERPLEXITY, Decision, Token

MUTATIONS = ("op", "hidden_state")


@dataclass(frozen=True)
class RecurrentCellSpace:
    activations: tuple[str, ...] = tuple(ACTIVATIONS)
    nodes: int = STEPS

    mutations = MUTATIONS
    metric = PERPLEXITY

    def __post_init__(self) -> None:
        object.__setattr__(self, "activations", tuple(self.activations))
        unknown = [name for name in self.activations if name not in ACTIVATIONS]
        if not self.activations or unknown or len(set(self.activations)) != len(self.activations):
            raise UserError(
                f"a recurrent cell space needs distinct activations among {', '.join(ACTIVATIONS)}, "
                f"got {list(self.activations)}"
            )
        if self.nodes < 1:
            raise UserError(f"a recurrent cell needs at least one intermediate node, got {self.nodes}")

    @classmethod
    def from_protocol(cls, values: Mapping[str, Any]) -> RecurrentCellSpace:
        """The space a search protocol declares with `activations` and `nodes`."""
        return cls(tuple(values["activations"]), values["nodes"])

    def _genotype(self, nodes: Sequence[tuple[str, int]]) -> RecurrentGenotype:
        return RecurrentGenotype(tuple(nodes), range(1, len(nodes) + 1))

    def sample(self, rng: random.Random) -> RecurrentGenotype:
        return self._genotype(
            [(rng.choice(self.activations), rng.randrange(node)) for node in range(1, self.nodes + 1)]
        )

    def mutate(self, genotype: RecurrentGenotype, rng: random.Random, kind: str) -> RecurrentGenotype:
        """`op` gives one node another activation; `hidden_state` points one node (2 or later: node 1
        can only read node 0) at another earlier node. A kind the space leaves no room for falls
        back to the other."""
        if kind not in MUTATIONS:
            raise ValueError(f"unknown mutation {kind!r}; use one of {', '.join(MUTATIONS)}")
        nodes = list(genotype.recurrent)
        sites = {
            "op": list(range(len(nodes))) if len(self.activations) > 1 else [],
            "hidden_state": list(range(1, len(nodes))),
        }
        if not sites[kind]:
            kind = next((name for name in MUTATIONS if sites[name]), kind)
        if not sites[kind]:
            raise UserError(f"no mutation can change {genotype} in this space; widen the space")
        position = rng.choice(sites[kind])
        activation, predecessor = nodes[position]
        if kind == "op":
            nodes[position] = (rng.choice([name for name in self.activations if name != activation]), predecessor)
        else:
            nodes[position] = (activation, rng.choice([j for j in range(position + 1) if j != predecessor]))
        return self._genotype(nodes)

    def key(self, genotype: RecurrentGenotype) -> str:
        """The tree below node 0: each node's activation (marked when it is not averaged into h_t)
        and its children's forms, sorted."""
        children: dict[int, list[int]] = {}
        for node, (_, predecessor) in enumerate(genotype.recurrent, start=1):
            children.setdefault(predecessor, []).append(node)
        averaged = set(genotype.concat)

        def form(node: int) -> list:
            label = "root" if node == 0 else f"{genotype.recurrent[node - 1][0]}{'' if node in averaged else '-'}"
            return [label, sorted((form(child) for child in children.get(node, [])), key=json.dumps)]

        return json.dumps(form(0), separators=(",", ":"))

    def enumerate(self) -> Iterator[RecurrentGenotype]:
        raise UserError(
            "grid search over the recurrent cell space is not supported (8 nodes give 8! x 4^8 cells); "
            "use random search, NAS-RL or evolution on ptb"
        )

    def decisions(self) -> list[Decision]:
        """Per node: its predecessor among the earlier nodes, then its activation."""
        steps = []
        for node in range(1, self.nodes + 1):
            steps += [Decision("predecessor", node), Decision("activation", len(self.activations))]
        return steps

    def decode(self, tokens: Sequence[Token]) -> RecurrentGenotype:
        pairs = zip(tokens[0::2], tokens[1::2], strict=True)
        return self._genotype([(self.activations[activation], predecessor) for predecessor, activation in pairs])

    def encode(self, genotype: RecurrentGenotype) -> list[Token]:
        tokens: list[Token] = []
        for activation, predecessor in genotype.recurrent:
            tokens += [predecessor, self.activations.index(activation)]
        return tokens

    def build_network(
        self, genotype: RecurrentGenotype, values: Mapping[str, Any], num_classes: int, input_shape: tuple[int, ...]
    ) -> nn.Module:
        """The evaluation language model (rnn/model.py) at the protocol's `hidden_size` and dropouts;
        `num_classes` is the vocabulary it predicts."""
        return evaluation_model(genotype, num_classes, values["hidden_size"], Dropouts.from_protocol(values))

    def genotype_from_dict(self, data: Mapping[str, Any]) -> RecurrentGenotype:
        return RecurrentGenotype.from_dict(data)
