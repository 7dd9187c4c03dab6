"""Random search: sample architectures uniformly, evaluate each, keep the best.

Two protocols from two papers, both on the DARTS cell space:

- the default, random search with weight sharing (Li & Talwalkar, UAI 2019, Sec. 3–4):
    1. train a supernet for `epochs`, one uniformly sampled architecture per minibatch;
    2. per round, sample `round_size` architectures, score each with the shared weights on
       `score_batches` validation minibatches, rescore the best `rescore_top` on the whole
       validation half;
    3. return the best rescored architecture (then train it from scratch: the evaluate phase).
  The zero op stays in the space, as theirs does.
- `--variant darts-baseline`, DARTS's random baseline (Liu et al., ICLR 2019, Table 1):
  24 cells sampled uniformly, each trained from scratch for 100 epochs and ranked by
  validation accuracy; the best is trained fully (the evaluate phase).

Everything but the sampling lives in the shared black-box loop.
"""

from __future__ import annotations

from typing import Any

from nasbench_repro.blackbox import BlackBoxMethod

VARIANT_LABELS = {None: "default", "darts-baseline": "DARTS baseline (best of 24)"}


class RandomSearch(BlackBoxMethod):
    name = "random"

    def propose(self, count: int) -> list[Any]:
        return [self.space.sample(self.rng) for _ in range(count)]

    def variant(self, protocol) -> str:
        return VARIANT_LABELS[protocol.variant]
