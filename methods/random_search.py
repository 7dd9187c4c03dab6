"""Random search: sample architectures uniformly, evaluate each, keep the best.

Two protocols from two papers:

- the default, random search with weight sharing (Li & Talwalkar, UAI 2019, Sec. 3–4):
    1. train a supernet for `epochs`, one uniformly sampled architecture per minibatch;
    2. per round, sample `round_size` architectures and score each with the shared weights;
    3. return the best (then train it from scratch: the evaluate phase).
  On CIFAR-10 the supernet is DARTS's cell supernet; a candidate is scored on `score_batches`
  validation minibatches and the round's best `rescore_top` on the whole validation half. The
  zero op stays in the space, as theirs does. On PTB the supernet is the recurrent cell's
  language model, each node keeping its weights whatever the genotype wires it to, and every
  candidate is scored by its perplexity on the whole validation split.
- `--variant darts-baseline`, DARTS's random baseline (Liu et al., ICLR 2019, Tables 1 and 2):
  24 cells sampled uniformly, each trained from scratch for 100 epochs and ranked by
  validation accuracy; on PTB, 8 recurrent cells, each trained for 300 epochs and ranked by
  validation perplexity; the best is trained fully (the evaluate phase).

Everything but the sampling lives in the shared black-box loop.
"""

from __future__ import annotations

from typing import Any

from nasbench_repro.blackbox import BlackBoxMethod
from nasbench_repro.data import cell_kind

VARIANT_LABELS = {
    ("cnn", None): "default",
    ("rnn", None): "default",
    ("cnn", "darts-baseline"): "DARTS baseline (best of 24)",
    ("rnn", "darts-baseline"): "DARTS baseline (best of 8)",
}


class RandomSearch(BlackBoxMethod):
    name = "random"
    search_kinds = ("cnn", "rnn")

    def propose(self, count: int) -> list[Any]:
        return [self.space.sample(self.rng) for _ in range(count)]

    def variant(self, protocol) -> str:
        return VARIANT_LABELS[(cell_kind(protocol.dataset), protocol.variant)]
