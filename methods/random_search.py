"""Random search: sample architectures uniformly, evaluate each, keep the best.

Two protocols from two papers, both on the DARTS cell space:

- the default, random search with weight sharing (Li & Talwalkar, UAI 2019, Sec. 3–4):
    1. train a supernet for `epochs`, one uniformly sampled architecture per minibatch;
    2. per round, sample `round_size` architectures, score each with the shared weights on
       `score_batches` validation minibatches, rescore the best `rescore_top` on the whole
       validation half;
    3. return the best rescored architecture (then train it from scratch: the evaluate phase).
  The zero op stays in the space, as theirs does.
- `--variant darts-baseline`, DARTS's random baseline (Liu et al., ICLR 2019, Tables 1 and 2):
  24 cells sampled uniformly, each trained from scratch for 100 epochs and ranked by
  validation accuracy; on PTB, 8 recurrent cells, each trained for 300 epochs and ranked by
  validation perplexity; the best is trained fully (the evaluate phase).

On PTB only the baseline runs: weight sharing over the recurrent supernet is not built yet.

Everything but the sampling lives in the shared black-box loop.
"""

from __future__ import annotations

from typing import Any

from nasbench_repro.blackbox import BlackBoxMethod
from nasbench_repro.data import cell_kind

VARIANT_LABELS = {
    ("cnn", None): "default",
    ("cnn", "darts-baseline"): "DARTS baseline (best of 24)",
    ("rnn", "darts-baseline"): "DARTS baseline (best of 8)",
}


class RandomSearch(BlackBoxMethod):
    name = "random"
    search_kinds = ("cnn", "rnn")
    variant_refusals = {
        ("rnn", None): "random search with weight sharing over the recurrent cell is not built yet; "
        "run DARTS's random baseline with --variant darts-baseline"
    }

    def propose(self, count: int) -> list[Any]:
        return [self.space.sample(self.rng) for _ in range(count)]

    def variant(self, protocol) -> str:
        return VARIANT_LABELS[(cell_kind(protocol.dataset), protocol.variant)]
