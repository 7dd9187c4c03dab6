"""DARTS: Differentiable Architecture Search (Liu, Simonyan & Yang, ICLR 2019).

Relax the choice of operation on each edge to a softmax over all candidates, then solve
the bilevel problem by alternating gradient steps (Algorithm 1):

    1. update α by descending ∇α L_val(w − ξ ∇w L_train(w, α), α)
       (`order = 1`: ξ = 0; `order = 2`: ξ = the weights' learning rate)
    2. update w by descending ∇w L_train(w, α)
    3. derive the cell: per node, the two strongest incoming edges, each with its strongest
       operation other than `none`.

Everything in that box is the shared bilevel loop; DARTS is its plainest instance.
"""

from __future__ import annotations

from nasbench_repro.differentiable import DifferentiableMethod


class DARTS(DifferentiableMethod):
    name = "darts"
    search_kinds = ("cnn", "rnn")  # the CNN cell on CIFAR-10, the recurrent cell on PTB (DARTS Sec. 3)

    def variant(self, protocol) -> str:
        return "1st order" if protocol.phase("search").order == 1 else "2nd order"
