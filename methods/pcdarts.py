"""PC-DARTS: Partial Channel Connections for Memory-Efficient Architecture Search
(Xu et al., ICLR 2020).

DARTS's bilevel loop with two changes to the supernet:

    1. partial channels: on each edge only 1/K of the channels (a fixed slice) go through
       the mixed operation and the rest bypass it; a channel shuffle afterwards moves
       different channels into the slice in the next cell. Memory and time fall by about K.
    2. edge normalization: each node weighs its incoming edges by a softmax over edge
       parameters β, which also scale the op weights when the cell is derived, stabilising
       the choice of edges that partial channels make noisy.

Weights train alone for the first `warmup_epochs` before α and β start to move.
K = 1 without edge normalization is exactly DARTS (first order).
"""

from __future__ import annotations

import functools

from nasbench_repro.differentiable import DifferentiableMethod
from nasbench_repro.protocol import Domain, one_of
from nasbench_repro.spaces.cnn.supernet import PartialChannelMixedOp

ALLOWED_K = (1, 2, 4, 8)  # the paper's ablation (Fig. 3)


class PCDARTS(DifferentiableMethod):
    name = "pcdarts"
    search_refusals = {
        "rnn": "PC-DARTS searched CNN cells only (its paper and yuhuixu1993/PC-DARTS have no recurrent search)"
    }
    protocol_domains = {
        "k": Domain(
            f"one of {', '.join(map(str, ALLOWED_K))} that divides init_channels",
            lambda k, values: type(k) is int and k in ALLOWED_K and values.get("init_channels", k) % k == 0,
            depends_on=("init_channels",),
        ),
        "edge_normalization": one_of(True, False),
    }

    def edge_factory(self, protocol):
        return functools.partial(PartialChannelMixedOp, k=protocol.k)

    def edge_normalization(self, protocol) -> bool:
        return protocol.edge_normalization

    def variant(self, protocol) -> str:
        search = protocol.phase("search")
        return f"K={search.k}, {'EN' if search.edge_normalization else 'no EN'}"
