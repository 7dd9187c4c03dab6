"""The recurrent cell searched on a text corpus: the `SearchTask` the bilevel loop runs on PTB.

DARTS's recurrent search (quark0/darts @f276dd3 rnn/train_search.py, rnn/architect.py,
rnn/model_search.py), as this task hands it to the shared loop:

    each epoch, from zero states, over the training split in windows of bptt tokens (or
    bptt / 2, probability 0.05):
        the α step takes the validation split's window of bptt tokens at the same row (modulo
            its length), from the validation stream's state; its loss is the cross-entropy alone
        the weight step takes the training window, from the training stream's state; its loss
            adds the activation regularizers (AWD-LSTM's AR and TAR)
        both steps see the weights' learning rate times window / bptt (the unrolled step's ξ too)
    then the validation perplexity over the validation split at `valid_batch_size` columns.

Each stream's state carries from one window to the next, detached: a batch holds the state its
window starts from, and the last forward pass on it leaves the state the next window of its
stream starts from (the weight step for the training stream, the α step for the validation one,
whichever order a method takes them in). The second-order gradient follows rnn/architect.py
(`RNN_ARCHITECT`). The supernet is `RecurrentSearchModel`: the search cell mixes every
(activation, predecessor) pair by the method's op weights, with batch normalization in its nodes;
it has no per-edge modules, so a method's `edge_factory` does not apply.

One thing differs from the official script by construction: its validation pass divides the
summed loss by the row count, this one by the tokens predicted (as the evaluation phase does).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from nasbench_repro.data.text import TextCorpus, VariableLengthBatches, window
from nasbench_repro.differentiable import ARCH_STEP, RNN_ARCHITECT, Stage
from nasbench_repro.language_model import evaluate_language_model, language_model_loss, perplexity, protocol_streams
from nasbench_repro.protocol import PhaseProtocol
from nasbench_repro.spaces.cnn.supernet import ArchWeights
from nasbench_repro.spaces.genotypes import RNN_ACTIVATIONS, RecurrentGenotype
from nasbench_repro.spaces.rnn.cell import CELL_TYPE, derive_recurrent_genotype
from nasbench_repro.spaces.rnn.model import Dropouts, LanguageModelOutput, RecurrentSearchModel, search_model


@dataclass
class RecurrentBatch:
    """One window of a stream: `inputs` and `targets` [length, batch], the length drawn for it
    (the learning rate scales by it), the state it starts from, and the state the last forward
    pass on it ended in (None until one ran)."""

    inputs: torch.Tensor
    targets: torch.Tensor | None
    drawn_length: int
    hidden: torch.Tensor
    final_hidden: torch.Tensor | None = None


@dataclass(frozen=True)
class ValidationSplit:
    """The validation split, batchified twice: α's rows at the search batch size (windows aligned
    to the training windows, rnn/train_search.py `search_data`) and the validation pass's windows
    at `valid_batch_size` columns (`val_data`)."""

    arch_rows: torch.Tensor
    validation: Iterable


class _PerplexityMeter:
    """Cross-entropy (without the regularizers) of an epoch's weight steps, summed on the device."""

    def __init__(self, device: torch.device):
        self.total = torch.zeros((), dtype=torch.float64, device=device)
        self.tokens = 0

    @torch.no_grad()
    def update(self, loss: torch.Tensor, outputs: LanguageModelOutput, batch: RecurrentBatch) -> None:
        logits = outputs.logits.float()
        self.total += nn.functional.cross_entropy(
            logits.view(-1, logits.shape[-1]), batch.targets.reshape(-1), reduction="sum"
        )
        self.tokens += batch.targets.numel()

    def summary(self) -> dict[str, float]:
        loss = float(self.total) / max(self.tokens, 1)  # the epoch's one host sync
        return {"loss": loss, "ppl": perplexity(loss)}


class RecurrentLanguageModelSearch:
    """The DARTS recurrent cell space on a corpus of `vocabulary_size` words, searched with the
    language model `protocol` describes (hidden size, dropouts, BPTT windows, regularizers)."""

    cell_types = (CELL_TYPE,)
    primitives = RNN_ACTIVATIONS
    second_order = RNN_ARCHITECT

    def __init__(self, vocabulary_size: int, protocol: PhaseProtocol):
        self.vocabulary_size = vocabulary_size
        self.protocol = protocol

    def supernet(
        self, stage: Stage, primitives: Mapping[str, Any], edge_factory: Callable[..., nn.Module], **options: Any
    ) -> RecurrentSearchModel:
        if options:
            raise ValueError(f"the recurrent search cell takes no supernet options, got {sorted(options)}")
        return search_model(
            self.vocabulary_size,
            self.protocol.hidden_size,
            Dropouts.from_protocol(self.protocol),
            primitives=_shared_ops(primitives[CELL_TYPE]),
        )

    def streams(self, data: TextCorpus, protocol: PhaseProtocol) -> tuple[VariableLengthBatches, ValidationSplit]:
        """The training split for the weights (windows of bptt or bptt / 2, no jitter when
        bptt_std = 0), the validation split for α and for the validation pass."""
        weights, validation = protocol_streams(data, protocol)
        return weights, ValidationSplit(
            data.batchify("valid", protocol.valid_examples, protocol.batch_size), validation
        )

    def epoch(
        self, weight_batches: VariableLengthBatches, arch_batches: ValidationSplit, mode: str
    ) -> tuple[Iterator[tuple[RecurrentBatch, RecurrentBatch]], int]:
        """Each training window with the validation window at its row; `mode` does not apply
        (α's windows follow the training windows, as rnn/train_search.py pairs them)."""
        windows = list(weight_batches)  # views of the rows; the epoch's lengths were drawn at once
        return self._pairs(windows, arch_batches.arch_rows), len(windows)

    def _pairs(self, windows: Sequence, arch_rows: torch.Tensor) -> Iterator[tuple[RecurrentBatch, RecurrentBatch]]:
        bptt = self.protocol.bptt
        train_hidden = valid_hidden = self.initial_hidden(arch_rows.shape[1], arch_rows.device)
        for training in windows:
            inputs, targets = window(arch_rows, training.start % (len(arch_rows) - 1), bptt)
            train = RecurrentBatch(training.inputs, training.targets, training.drawn_length, train_hidden)
            valid = RecurrentBatch(inputs, targets, bptt, valid_hidden)
            yield train, valid
            train_hidden = _continued(train)
            valid_hidden = _continued(valid)

    def initial_hidden(self, columns: int, device: torch.device) -> torch.Tensor:
        return torch.zeros(columns, self.protocol.hidden_size, device=device)

    def forward(
        self,
        supernet: nn.Module,
        arch: ArchWeights,
        batch: RecurrentBatch,
        stream: str,
        parameters: dict[str, torch.Tensor] | None = None,
    ) -> LanguageModelOutput:
        """`stream` needs no state here: the batch carries the state its window starts from."""
        arguments = (batch.inputs, batch.hidden, arch)
        output = supernet(*arguments) if parameters is None else functional_call(supernet, parameters, arguments)
        batch.final_hidden = output.hidden.detach()
        return output

    def loss(self, outputs: LanguageModelOutput, batch: RecurrentBatch, step: str) -> torch.Tensor:
        """α's objective is the cross-entropy (rnn/model_search.py _loss); the weights' adds AR and TAR."""
        loss, cross_entropy = language_model_loss(outputs, batch.targets, self.protocol)
        return cross_entropy if step == ARCH_STEP else loss

    def lr_scale(self, batch: RecurrentBatch) -> float:
        return batch.drawn_length / self.protocol.bptt

    def meter(self, device: torch.device) -> _PerplexityMeter:
        return _PerplexityMeter(device)

    def validate(
        self,
        outputs_of: Callable[[RecurrentBatch], LanguageModelOutput],
        batches: ValidationSplit,
        device: torch.device,
    ) -> dict[str, float]:
        validation = batches.validation

        def forward(inputs: torch.Tensor, hidden: torch.Tensor) -> LanguageModelOutput:
            return outputs_of(RecurrentBatch(inputs, None, len(inputs), hidden))

        summary = evaluate_language_model(forward, validation, self.initial_hidden(validation.batch_size, device))
        return {"loss": summary["loss"], "ppl": summary["ppl"]}

    def derive(
        self,
        weights: Mapping[str, torch.Tensor],
        primitives: Mapping[str, Any],
        edge_scales: Mapping[str, torch.Tensor] | None = None,
    ) -> RecurrentGenotype:
        """DARTS's rule (one predecessor per node, its strongest op other than `none`); with edge
        normalization each edge's op weights are scaled by its edge weight first."""
        ops = weights[CELL_TYPE]
        scales = (edge_scales or {}).get(CELL_TYPE)
        if scales is not None:
            ops = ops * scales[:, None]
        return derive_recurrent_genotype(ops, _shared_ops(primitives[CELL_TYPE]))

    def describe(self, genotype: RecurrentGenotype) -> dict[str, float]:
        """Identity nodes: the parameter-free choice, the recurrent analogue of skip connections."""
        return {"recurrent_identity_nodes": sum(op == "identity" for op, _ in genotype.recurrent)}

    def synthetic_batch(self, batch_size: int, device: torch.device, generator: torch.Generator) -> RecurrentBatch:
        """A full window of random tokens from a zero state."""
        tokens = torch.randint(
            0, self.vocabulary_size, (self.protocol.bptt + 1, batch_size), device=device, generator=generator
        )
        return RecurrentBatch(tokens[:-1], tokens[1:], self.protocol.bptt, self.initial_hidden(batch_size, device))


def search_task_for_corpus(data: TextCorpus, protocol: PhaseProtocol) -> RecurrentLanguageModelSearch:
    """The factory `differentiable.SEARCH_TASKS` names for PTB."""
    return RecurrentLanguageModelSearch(data.vocabulary_size, protocol)


def _continued(batch: RecurrentBatch) -> torch.Tensor:
    """The state a stream's next window starts from (unchanged if no pass ran on this one)."""
    return batch.hidden if batch.final_hidden is None else batch.final_hidden


def _shared_ops(primitives: Sequence) -> tuple[str, ...]:
    """The candidate ops of the cell's edges: one tuple for all of them, or one per edge (as a
    checkpoint stores them), which must then be equal."""
    if all(isinstance(name, str) for name in primitives):
        return tuple(primitives)
    distinct = {tuple(ops) for ops in primitives}
    if len(distinct) != 1:
        raise ValueError(f"every edge of the recurrent search cell has the same ops; got {sorted(distinct)}")
    return distinct.pop()
