"""What a black-box search needs of a search space, whatever its architectures look like.

Random search samples, grid search enumerates, regularized evolution mutates, and NAS-RL's
controller emits an architecture as a sequence of decisions. Every method caches results
under a canonical key (equal for isomorphic architectures, so a duplicate is never trained
twice) and trains a candidate as the network the space builds for it.

`cnn.sampling.CellSpace` (the DARTS cell space and its variants),
`cnn.layerwise.LayerwiseSpace` (NAS-RL's own CNN space) and `rnn.sampling.RecurrentCellSpace`
(the DARTS recurrent cell) implement this. A space object travels to worker processes with
each task, so it must pickle (plain frozen dataclasses do).

A space also names the `Metric` its candidates are judged by: validation accuracy for the
image networks, validation perplexity for the language models (lower is better), so the
loop ranks by a score where higher is always better but records what the dataset reports.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from torch import nn

Token = int | tuple[int, ...]


@dataclass(frozen=True)
class Decision:
    """One step of a controller: pick one of `size` options (`name` says of what), or, at an
    anchor point, any subset of the `size` earlier layers (the token is one 0/1 per layer)."""

    name: str
    size: int
    anchor: bool = False


@dataclass(frozen=True)
class Metric:
    """What a candidate's validation result is reported as (`name`, a record key) and which way is better."""

    name: str
    higher_is_better: bool
    worst: float  # what a candidate whose training diverged scores

    def score(self, value: float) -> float:
        """The value on a scale where higher is always better (what searches rank and select by)."""
        return value if self.higher_is_better else -value

    def best(self, values: Sequence[float]) -> float:
        return max(values) if self.higher_is_better else min(values)


ACCURACY = Metric("valid_acc", higher_is_better=True, worst=0.0)
PERPLEXITY = Metric("valid_ppl", higher_is_better=False, worst=math.inf)


class Space(Protocol):
    """A search space as black-box methods use it."""

    mutations: tuple[str, ...]  # the kinds `mutate` knows, e.g. ("op", "hidden_state")
    metric: Metric  # how its candidates are judged: ACCURACY (images) or PERPLEXITY (text)

    def sample(self, rng: random.Random) -> Any:
        """An architecture drawn uniformly as the space's papers draw one."""

    def mutate(self, genotype: Any, rng: random.Random, kind: str) -> Any:
        """A valid architecture that differs from `genotype` by one change of the given kind."""

    def key(self, genotype: Any) -> str:
        """A canonical form: equal exactly when two architectures are the same graph."""

    def decisions(self) -> Sequence[Decision]:
        """The steps a controller takes to emit one architecture, in order."""

    def decode(self, tokens: Sequence[Token]) -> Any:
        """The architecture a controller's tokens describe (one token per decision)."""

    def encode(self, genotype: Any) -> list[Token]:
        """The tokens that `decode` turns back into `genotype`."""

    def enumerate(self) -> Iterator[Any]:
        """Every architecture once, up to isomorphism, in a fixed order (finite spaces only)."""

    def build_network(
        self, genotype: Any, values: Mapping[str, Any], num_classes: int, input_shape: tuple[int, ...]
    ) -> nn.Module:
        """The network a candidate is trained as: an image network whose `forward` returns (logits,
        auxiliary logits or None), or a language model (`num_classes`: its vocabulary; no input shape)."""

    def genotype_from_dict(self, data: Mapping[str, Any]) -> Any:
        """Read back an architecture stored with `to_dict()` (checkpoints, result files, records)."""
