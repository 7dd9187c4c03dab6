"""NAS-RL: Neural Architecture Search with Reinforcement Learning (Zoph & Le, ICLR 2017, Sec. 3).

    a controller LSTM emits an architecture token by token: each token is sampled from a
    softmax and fed back as the next input; at a layer's anchor point one sigmoid per earlier
    layer, v^T tanh(W_prev h_j + W_curr h_i), decides the skip connections
    repeat until the budget of architectures is spent:
        sample m children; train each; reward R_k = (max validation accuracy over its last
        5 epochs)^3 (CIFAR-10), c / (validation perplexity)^2 (Penn Treebank, Sec. 4.2)
        REINFORCE step: ascend 1/m sum_k sum_t grad log P(a_t | a_<t) (R_k - b), with b an
        exponential moving average of the earlier rewards
    return the best child

On its own CNN space (per layer: filter height, filter width, number of filters, skip
connections) the children deepen as the search goes on: `layers` at first, `add_layers`
more after every `depth_step_architectures` children. The paper's 800 GPUs ran 100
controller replicas asynchronously, 8 children each; here one controller takes synchronous
steps of `children_per_update` children. `--variant darts-cell` runs the same controller
over the DARTS cell space (inputs and ops of every node as tokens). On PTB the controller
proposes DARTS recurrent cells (a predecessor and an activation per node), not the paper's
own tree-shaped cells, and the reward is `reward_constant` times the validation metric to the
`reward_power` (the accuracy cubed; 80 / perplexity²).
"""

from __future__ import annotations

import bisect
import itertools
import random
import statistics
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from nasbench_repro.blackbox import BLACKBOX_DOMAINS, BlackBoxMethod, Evaluation, chunks
from nasbench_repro.context import Context, PhaseResult
from nasbench_repro.data import cell_kind
from nasbench_repro.evaluation import train_from_scratch
from nasbench_repro.protocol import POSITIVE, Domain, integer, number
from nasbench_repro.spaces.cnn.layerwise import LayerwiseGenotype, LayerwiseSpace
from nasbench_repro.spaces.space import Decision, Space, Token

VARIANT_LABELS = {None: "v1 no stride or pooling", "darts-cell": "DARTS cell space"}
RNN_LABEL = "DARTS recurrent cell space"  # not the paper's own PTB cells: a row of its own
# positive for a metric where higher is better (accuracy), negative for one where lower is (perplexity)
REWARD_POWER = Domain(
    "a non-zero number from -100 to 100", lambda value, values: number(-100, 100).test(value, values) and value != 0
)


class Controller(nn.Module):
    """A stacked LSTM walking a space's decisions: a softmax head and an input embedding per
    kind of choice, and the anchor-point attention over earlier layers' anchor states."""

    def __init__(self, decisions: Sequence[Decision], hidden: int, layers: int, init_range: float):
        super().__init__()
        self.cells = nn.ModuleList(nn.LSTMCell(hidden, hidden) for _ in range(layers))
        self.first_input = nn.Parameter(torch.zeros(1, hidden))
        self.anchor_input = nn.Parameter(torch.zeros(1, hidden))
        sizes = {_kind(decision): decision.size for decision in decisions if not decision.anchor}
        self.heads = nn.ModuleDict({kind: nn.Linear(hidden, sizes[kind]) for kind in sorted(sizes)})
        self.embeddings = nn.ModuleDict({kind: nn.Embedding(sizes[kind], hidden) for kind in sorted(sizes)})
        self.attend_previous = nn.Linear(hidden, hidden, bias=False)  # W_prev
        self.attend_current = nn.Linear(hidden, hidden, bias=False)  # W_curr
        self.attend = nn.Linear(hidden, 1, bias=False)  # v
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -init_range, init_range)

    def sample(self, decisions: Sequence[Decision], rng: random.Random) -> list[Token]:
        with torch.no_grad():
            tokens, _ = self._walk(decisions, rng=rng)
        return tokens

    def log_prob(self, decisions: Sequence[Decision], tokens: Sequence[Token]) -> torch.Tensor:
        return self._walk(decisions, tokens=tokens)[1]

    def _walk(
        self, decisions: Sequence[Decision], tokens: Sequence[Token] | None = None, rng: random.Random | None = None
    ) -> tuple[list[Token], torch.Tensor]:
        """Emit (with `rng`) or score (given `tokens`) one architecture."""
        hidden = self.first_input.shape[1]
        state = [(torch.zeros(1, hidden), torch.zeros(1, hidden)) for _ in self.cells]
        step_input, anchors, chosen = self.first_input, [], []
        log_prob = torch.zeros(())
        for position, decision in enumerate(decisions):
            output = step_input
            for index, cell in enumerate(self.cells):
                state[index] = cell(output, state[index])
                output = state[index][0]
            if decision.anchor:
                token: Token = ()
                if anchors:
                    logits = self.attend(
                        torch.tanh(self.attend_previous(torch.cat(anchors)) + self.attend_current(output))
                    ).squeeze(1)
                    token = (
                        tokens[position]
                        if tokens is not None
                        else tuple(int(rng.random() < probability) for probability in torch.sigmoid(logits).tolist())
                    )
                    chosen_edges = torch.tensor(token, dtype=logits.dtype)
                    log_prob = log_prob - nn.functional.binary_cross_entropy_with_logits(
                        logits, chosen_edges, reduction="sum"
                    )
                anchors.append(output)
                step_input = self.anchor_input
            else:
                kind = _kind(decision)
                log_probabilities = torch.log_softmax(self.heads[kind](output)[0], dim=0)
                token = tokens[position] if tokens is not None else _draw(log_probabilities.exp().tolist(), rng)
                log_prob = log_prob + log_probabilities[token]
                step_input = self.embeddings[kind](torch.tensor([token]))
            chosen.append(token)
        return chosen, log_prob


def _kind(decision: Decision) -> str:
    return f"{decision.name}_{decision.size}"


def _draw(probabilities: list[float], rng: random.Random) -> int:
    """An index drawn with the given probabilities, from the search's random stream."""
    cumulative = list(itertools.accumulate(probabilities))
    return min(bisect.bisect_right(cumulative, rng.random() * cumulative[-1]), len(probabilities) - 1)


def reinforce_step(
    controller: Controller,
    optimizer: torch.optim.Optimizer,
    samples: Sequence[tuple[Any, list]],
    rewards: Sequence[float],
    baseline: float,
) -> None:
    """One REINFORCE step over m children: ascend 1/m sum_k (R_k - b) log P(architecture_k)."""
    loss = -sum(
        (reward - baseline) * controller.log_prob(decisions, tokens)
        for (decisions, tokens), reward in zip(samples, rewards, strict=True)
    ) / len(samples)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


class NASRL(BlackBoxMethod):
    name = "nas-rl"
    search_kinds = ("cnn", "rnn")
    protocol_domains = {
        **BLACKBOX_DOMAINS,
        "children_per_update": integer(1),
        "controller_hidden": integer(1, 4096),  # the paper's controller: 2 layers of 35 units
        "controller_layers": integer(1, 16),
        "controller_init_range": POSITIVE,
        "baseline_decay": number(0, 1, high_open=True),
        "reward_power": REWARD_POWER,
        "reward_constant": POSITIVE,
        "add_layers": integer(0, 50),
        "depth_step_architectures": integer(1),
    }

    def variant(self, protocol) -> str:
        return RNN_LABEL if cell_kind(protocol.dataset) == "rnn" else VARIANT_LABELS[protocol.variant]

    def start(self) -> dict[str, Any]:
        protocol = self.protocol
        # tiny and sequential: the controller runs on the CPU whatever device trains the children
        self.controller = Controller(
            self.space.decisions(),
            protocol.controller_hidden,
            protocol.controller_layers,
            protocol.controller_init_range,
        )
        self.optimizer = torch.optim.Adam(self.controller.parameters(), lr=protocol.controller_lr)
        self.baseline: dict[str, float | None] = {"value": None}
        return {"controller": self.controller, "controller_optimizer": self.optimizer, "baseline": self.baseline}

    def round_sizes(self) -> list[int]:
        return chunks(self.protocol.architectures, self.protocol.children_per_update)

    def space_now(self) -> Space:
        """The space children are drawn from at this point of the search (deeper as it goes on)."""
        if not isinstance(self.space, LayerwiseSpace):
            return self.space
        steps = len(self.history) // self.protocol.depth_step_architectures
        return self.space.with_depth(self.protocol.layers + self.protocol.add_layers * steps)

    def propose(self, count: int) -> list[Any]:
        space = self.space_now()
        decisions = space.decisions()
        return [space.decode(self.controller.sample(decisions, self.rng)) for _ in range(count)]

    def space_of(self, genotype: Any) -> Space:
        """The space a child was drawn from (its depth, on NAS-RL's own space)."""
        if isinstance(genotype, LayerwiseGenotype):
            return self.space.with_depth(len(genotype.layers))
        return self.space

    def update(self, evaluations: Sequence[Evaluation]) -> dict[str, Any]:
        protocol = self.protocol
        spaces = [self.space_of(evaluation.genotype) for evaluation in evaluations]
        samples = [
            (space.decisions(), space.encode(evaluation.genotype))
            for space, evaluation in zip(spaces, evaluations, strict=True)
        ]
        constant = protocol.get("reward_constant", 1.0)  # the CIFAR-10 reward has none
        rewards = [constant * evaluation.value**protocol.reward_power for evaluation in evaluations]
        mean_reward = statistics.fmean(rewards)
        if self.baseline["value"] is None:  # the first step: the baseline starts at the first children's mean
            self.baseline["value"] = mean_reward
        baseline = self.baseline["value"]
        reinforce_step(self.controller, self.optimizer, samples, rewards, baseline)
        self.baseline["value"] = protocol.baseline_decay * baseline + (1 - protocol.baseline_decay) * mean_reward
        return {"mean_reward": mean_reward, "baseline": baseline}

    def evaluate(self, genotype: Any, ctx: Context) -> PhaseResult:
        if isinstance(genotype, LayerwiseGenotype):
            return train_from_scratch(genotype, ctx, build=LayerwiseSpace.build_network)
        return super().evaluate(genotype, ctx)

    def load_genotype(self, text_or_data: Any, kind: str | None = None) -> Any:
        if isinstance(text_or_data, dict) and "layers" in text_or_data:
            return LayerwiseGenotype.from_dict(text_or_data)
        return super().load_genotype(text_or_data, kind)
