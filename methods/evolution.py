"""Regularized (aging) evolution (Real, Aggarwal, Huang & Le, AAAI 2019, Algorithm 1):

    population <- P random architectures, each trained and evaluated
    until C architectures have been evaluated:
        sample <- S members drawn from the population at random (each stays in it)
        parent <- the most accurate member of the sample
        child  <- a mutation of the parent: its op, its hidden state (an edge's input),
                  or, with probability `identity_mutation_prob`, none at all
        train and evaluate the child, and add it to the population
        remove the oldest member of the population (aging), not the worst

Real et al.'s workers ran asynchronously on 450 GPUs. Here a round breeds `round_size`
children from the population as it stands, trains them in parallel, then adds them in
order, each addition removing the oldest member; `round_size = 1` is Algorithm 1 exactly.
An identity child is its parent's architecture, so the cache gives it the parent's accuracy
(Real et al. retrained it) while it still joins the population as a new, younger member.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from nasbench_repro.blackbox import BLACKBOX_DOMAINS, BlackBoxMethod, Evaluation, chunks
from nasbench_repro.protocol import Domain


def _at_most(key: str) -> Domain:
    return Domain(
        f"an integer from 1 to {key}",
        lambda value, values: isinstance(value, int) and 1 <= value <= values.get(key, value),
        depends_on=(key,),
    )


def tournament(members: Sequence[int], score: Callable[[int], float], sample_size: int, rng: random.Random) -> int:
    """The best scoring (most accurate) of `sample_size` members drawn at random, with replacement
    (the first drawn on ties)."""
    sample = [rng.choice(members) for _ in range(sample_size)]
    return max(sample, key=score)


def add_and_age(members: list[int], newcomer: int, population_size: int) -> int | None:
    """Append the newcomer; when the population is over size the oldest member dies (returned)."""
    members.append(newcomer)
    return members.pop(0) if len(members) > population_size else None


class RegularizedEvolution(BlackBoxMethod):
    name = "evolution"
    protocol_domains = {
        **BLACKBOX_DOMAINS,
        "population_size": _at_most("architectures"),
        "sample_size": _at_most("population_size"),
        # two ops at least, so an op mutation always has somewhere to go
        "ops": Domain(
            f"{BLACKBOX_DOMAINS['ops'].allowed}, at least two",
            lambda value, values: BLACKBOX_DOMAINS["ops"].test(value, values) and len(value) >= 2,
        ),
    }

    def start(self) -> dict[str, Any]:
        self.population: dict[str, list[int]] = {"members": []}  # indices into the history, oldest first
        return {"population": self.population}

    def round_sizes(self) -> list[int]:
        initial, total, size = self.protocol.population_size, self.protocol.architectures, self.protocol.round_size
        return chunks(initial, size) + chunks(total - initial, size)

    def propose(self, count: int) -> list[Any]:
        if len(self.history) < self.protocol.population_size:
            return [self.space.sample(self.rng) for _ in range(count)]
        return [self.mutate(self.history[self.select_parent()].genotype) for _ in range(count)]

    def select_parent(self) -> int:
        return tournament(self.population["members"], self.history.score, self.protocol.sample_size, self.rng)

    def mutate(self, genotype: Any) -> Any:
        if self.rng.random() < self.protocol.identity_mutation_prob:
            return genotype
        return self.space.mutate(genotype, self.rng, self.rng.choice(self.space.mutations))

    def update(self, evaluations: Sequence[Evaluation]) -> dict[str, Any]:
        members = self.population["members"]
        for index in range(len(self.history) - len(evaluations), len(self.history)):
            add_and_age(members, index, self.protocol.population_size)
        return {f"population_mean_{self.space.metric.name}": statistics.fmean(map(self.history.value, members))}
