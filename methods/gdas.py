"""GDAS: Searching for A Robust Neural Architecture in Four GPU Hours (Dong & Yang, CVPR 2019).

DARTS's cell space and data split, but every forward pass runs one sampled cell
(Algorithm 1, Eqs. 5-7):

    while not converged:
        for each forward pass, on each edge sample one op by the Gumbel-max trick,
            h = one_hot(argmax_k (log p_k + o_k)),  o_k ~ Gumbel(0, 1),  p = softmax(A)
        and run only that op, weighted by h; the backward pass uses the relaxation
            h~ = softmax((log p + o) / τ)  (straight through: value h, gradient of h~)
        update w on a training batch, then A on a validation batch
    τ falls linearly from τ_max to τ_min over the search.
    derive the cell as DARTS does, from softmax(A).

Running one op per edge instead of all of them is where its speed comes from. GDAS (FRC)
searches only the normal cell and stacks the hand-designed reduction cell of Fig. 3.

Choices where the official code varies (D-X-Y/GDAS, now AutoDL-Projects): one sample per
forward pass shared by every cell of a type and weights updated before α, as AutoDL's
search script (the paper's Algorithm 1 order; the first release sampled per cell and updated
α first); a Gumbel draw that would be infinite is clamped rather than redrawn.
"""

from __future__ import annotations

import torch

from nasbench_repro.differentiable import ArchitectureParameters, BilevelSearch, DifferentiableMethod, Stage
from nasbench_repro.protocol import DOMAINS, POSITIVE, Domain, one_of
from nasbench_repro.spaces.cnn.supernet import ArchWeights, CellWeights


def gumbel_hard_sample(logits: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One op per row by Gumbel-max (o = -log E, E ~ Exp(1), is Gumbel(0, 1)); returns the
    straight-through one-hot weights and the indices."""
    exponential = torch.empty_like(logits).exponential_().clamp_min_(torch.finfo(logits.dtype).tiny)
    soft = torch.softmax((logits.log_softmax(dim=-1) - exponential.log()) / tau, dim=-1)
    index = soft.argmax(dim=-1)
    hard = torch.zeros_like(soft).scatter_(-1, index[:, None], 1.0)
    return hard + (soft - soft.detach()), index  # exactly one-hot forward, the softmax's gradient backward


class GDAS(DifferentiableMethod):
    name = "gdas"
    weights_first = True
    search_kinds = ("cnn", "rnn")  # CIFAR-10 cells and the recurrent cell on PTB (GDAS Sec. 4.3)
    protocol_domains = {
        "order": one_of(1),  # GDAS updates α with a first-order gradient
        "tau_max": Domain(
            "a number > 0 and >= tau_min",
            lambda value, values: POSITIVE.test(value, values) and value >= values.get("tau_min", 0),
            depends_on=("tau_min",),
        ),
        "tau_min": POSITIVE,
        "fixed_reduction_cell": one_of(True, False),
        "fixed_reduction_init_channels": DOMAINS["init_channels"],
        "fixed_reduction_batch_size": DOMAINS["batch_size"],
    }

    temperature: float

    def supernet_options(self, protocol) -> dict:
        """GDAS (FRC): the hand-designed reduction cell (the recurrent space has none: no such key)."""
        return {"fixed_reduction": True} if protocol.get("fixed_reduction_cell") else {}

    def begin_epoch(self, search: BilevelSearch, stage: Stage, epoch: int) -> dict[str, float]:
        """τ linear from tau_max at the first epoch to tau_min at the last (AutoDL exps/algos/GDAS.py)."""
        protocol = search.protocol
        self.temperature = protocol.tau_max - (protocol.tau_max - protocol.tau_min) * epoch / max(stage.epochs - 1, 1)
        return {"tau": self.temperature}

    def weighting(self, arch: ArchitectureParameters, step: str) -> ArchWeights:
        samples = {cell: gumbel_hard_sample(logits, self.temperature) for cell, logits in arch.ops.items()}
        chosen = torch.stack([index for _, index in samples.values()]).tolist()  # the pass's one host sync
        return {
            cell: CellWeights(hard, selected=indices)
            for (cell, (hard, _)), indices in zip(samples.items(), chosen, strict=True)
        }

    def evaluation_settings(self, genotype, protocol) -> dict:
        """GDAS (FRC) trained its ImageNet network wider, with a smaller batch (README: C=52, B128)."""
        if getattr(genotype, "reduce", ()) is None and "fixed_reduction_init_channels" in protocol:
            return {
                "init_channels": protocol.fixed_reduction_init_channels,
                "batch_size": protocol.fixed_reduction_batch_size,
            }
        return {}

    def variant(self, protocol) -> str:
        return "FRC" if protocol.phase("search").get("fixed_reduction_cell") else "default"
