"""NASP: Efficient Neural Architecture Search via Proximal Iterations (Yao et al., AAAI 2020).

DARTS's relaxed cell space, searched by proximal steps on a constrained α:

    while not converged:
        ᾱ = prox_C1(α): the discrete architecture, on each edge the op with the largest α,
            and into each node only the two edges whose chosen α is largest
        α ← prox_C2(α − ε ∇ᾱ L_val(w, ᾱ)): the gradient is taken at ᾱ (every op runs, weighted
            0 or 1) and applied to the continuous α, which is then clipped to [0, 1]
        w ← w − η ∇w L_train(w, ᾱ) with ᾱ from the updated α: only ᾱ's eight ops run
    derive the cell as DARTS does, from softmax(α).

There is no second-order term. The model-complexity regularizer, weight `complexity_weight`
(0 in the official code), adds weight · Σ ᾱ² · (each op's share of the normal cell's
parameters) to the α loss. Facts from xujinfan/NASP-codes @3bfb706 codes/model_search.py
(`binarization`, `proximal_step`, `clip`, `_l2_loss`), architect.py and train_search.py
(Adam on α, clipped after each α step; α starts at 0.5 everywhere).
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from nasbench_repro.differentiable import ARCH_STEP, ArchitectureParameters, BilevelSearch, DifferentiableMethod
from nasbench_repro.protocol import number, one_of
from nasbench_repro.spaces.cnn.ops import DARTS_PRIMITIVES, NASP_NORMAL_PRIMITIVES, NASP_REDUCE_PRIMITIVES, make_op
from nasbench_repro.spaces.cnn.supernet import ArchWeights, CellWeights

SPACES = {
    # the repository's lists: 8 ops for normal cells, 5 for reduction cells, 12 distinct
    "12 ops": {"normal": NASP_NORMAL_PRIMITIVES, "reduce": NASP_REDUCE_PRIMITIVES},
    # DARTS's space without the zero op, in both cells
    "7 ops": {"normal": DARTS_PRIMITIVES[1:], "reduce": DARTS_PRIMITIVES[1:]},
}
PARAMETER_COUNT_CHANNELS = 12  # codes/genotypes.py PARAMS are each op's parameter count at C = 12


def discrete_architecture(alpha: torch.Tensor, inputs_per_node: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """prox_C1: a 0/1 matrix like α with, on each edge, a one at its largest α (the first on
    ties), kept only on the `inputs_per_node` edges into each node whose chosen α is largest
    (the lower input on ties); also returns the chosen op per edge, -1 where the edge is off."""
    index = alpha.argmax(dim=-1)
    strength = alpha.gather(-1, index[:, None]).squeeze(-1)
    kept = torch.zeros_like(index, dtype=torch.bool)
    start, inputs = 0, 2
    while start < len(index):
        order = torch.sort(strength[start : start + inputs], descending=True, stable=True).indices
        kept[start + order[:inputs_per_node]] = True
        start, inputs = start + inputs, inputs + 1
    binary = nn.functional.one_hot(index, alpha.shape[-1]).to(alpha.dtype) * kept[:, None]
    return binary, torch.where(kept, index, -1)


@functools.cache
def _parameter_shares(primitives: tuple[str, ...]) -> tuple[float, ...]:
    counts = [
        sum(p.numel() for p in make_op(name, PARAMETER_COUNT_CHANNELS, 1, affine=False).parameters())
        for name in primitives
    ]
    return tuple(count / sum(counts) for count in counts)


def parameter_shares(primitives: tuple[str, ...], device: torch.device) -> torch.Tensor:
    """Each op's share of the summed parameters of the list (the regularizer's weights)."""
    return torch.tensor(_parameter_shares(tuple(primitives)), device=device)


class NASP(DifferentiableMethod):
    name = "nasp"
    search_refusals = {
        "rnn": "no NASP recurrent search protocol is available (xujinfan/NASP-codes has no PTB code in any "
        "revision, and no NASP recurrent cell or PTB result was found in the sources read)"
    }
    protocol_domains = {
        "order": one_of(1),  # NASP has no second-order term
        "search_space": one_of(*SPACES),
        "complexity_weight": number(0),
        "arch_init_mean": number(0, 1),
    }

    def search_primitives(self, protocol, task) -> dict:
        return SPACES[protocol.search_space]

    def weighting(self, arch: ArchitectureParameters, step: str) -> ArchWeights:
        discrete = {cell: discrete_architecture(alpha) for cell, alpha in arch.ops.items()}
        if step == ARCH_STEP:  # value ᾱ, gradient passed to α unchanged; every op runs so each α gets one
            return {
                cell: CellWeights(binary + (arch.ops[cell] - arch.ops[cell].detach()))
                for cell, (binary, _) in discrete.items()
            }
        chosen = torch.stack([index for _, index in discrete.values()]).tolist()  # the pass's one host sync
        return {
            cell: CellWeights(binary, selected=[None if op < 0 else op for op in indices])
            for (cell, (binary, _)), indices in zip(discrete.items(), chosen, strict=True)
        }

    def arch_penalty(self, search: BilevelSearch, arch_weights: ArchWeights) -> torch.Tensor | None:
        """The official `_l2_loss`: on the normal cell only, whose ops are the ones with parameters."""
        weight = search.protocol.complexity_weight
        if not weight:
            return None
        normal = arch_weights["normal"].ops
        shares = parameter_shares(search.primitives["normal"][0], normal.device)
        return weight * (normal * normal * shares).sum()

    def constrain(self, arch: ArchitectureParameters) -> None:
        for alpha in arch.ops.values():
            alpha.clamp_(0.0, 1.0)

    def variant(self, protocol) -> str:
        return protocol.phase("search").search_space
