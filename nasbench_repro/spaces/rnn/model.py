"""The language model around a recurrent cell (quark0/darts @f276dd3 rnn/model.py RNNModel, the
AWD-LSTM design of Merity et al. 2018 with the LSTM replaced by one DARTS cell):

    embedding (word dropout on its rows, variational dropout on its output)
      → one recurrent cell layer (variational cell-input and hidden dropout inside)
      → variational output dropout → linear decoder sharing the embedding matrix

Weight tying makes the embedding size equal the hidden size; the tied matrix counts once.
`LanguageModel` runs a genotype's `RecurrentCell` (evaluation); `RecurrentSearchModel` runs
the `SearchCell`, whose op weights arrive with each call as `ArchWeights`
({"recurrent": CellWeights(...)}), exactly as the CNN supernet takes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from nasbench_repro.spaces.cnn.supernet import ArchWeights
from nasbench_repro.spaces.genotypes import RNN_ACTIVATIONS, RecurrentGenotype
from nasbench_repro.spaces.rnn.cell import CELL_TYPE, INIT_RANGE, STEPS, RecurrentCell, SearchCell


@dataclass(frozen=True)
class Dropouts:
    """The five dropout rates of the DARTS language model (rnn/train.py argument in brackets)."""

    word: float = 0.0  # whole words dropped from the embedding matrix (--dropoute)
    embedding: float = 0.0  # variational, on the embedded input (--dropouti)
    cell_input: float = 0.0  # variational, on the cell's input x_t (--dropoutx)
    hidden: float = 0.0  # variational, on every state a cell node reads (--dropouth)
    output: float = 0.0  # variational, on the cell's output before the decoder (--dropout)

    @classmethod
    def from_protocol(cls, values: Mapping[str, Any]) -> Dropouts:
        """The rates a protocol phase gives (`word_dropout`, `embedding_dropout`, `cell_input_dropout`, ...)."""
        return cls(
            word=values["word_dropout"],
            embedding=values["embedding_dropout"],
            cell_input=values["cell_input_dropout"],
            hidden=values["hidden_dropout"],
            output=values["output_dropout"],
        )


class LanguageModelOutput(NamedTuple):
    logits: torch.Tensor  # [T, batch, vocabulary]
    hidden: torch.Tensor  # h_T [batch, hidden]: the next window starts from it
    states: torch.Tensor  # h_1..h_T [T, batch, hidden] before output dropout (temporal activation regularization)
    dropped_states: torch.Tensor  # the same after output dropout (activation regularization)


def sequence_dropout(x: torch.Tensor, drop: float) -> torch.Tensor:
    """Variational dropout on [T, batch, features]: one mask per sequence, shared by all time steps (LockedDropout)."""
    if drop <= 0:
        return x
    mask = torch.empty_like(x[:1]).bernoulli_(1 - drop).div_(1 - drop)
    return x * mask


def word_dropout(embedding: torch.Tensor, drop: float) -> torch.Tensor:
    """The embedding matrix with whole rows (words) zeroed, the rest scaled by 1 / (1 − drop) (embedded_dropout)."""
    if drop <= 0:
        return embedding
    mask = torch.empty_like(embedding[:, :1]).bernoulli_(1 - drop).div_(1 - drop)
    return embedding * mask


class LanguageModel(nn.Module):
    """Embedding → recurrent cell → tied decoder, over `tokens` [T, batch] from `hidden` [batch, hidden]."""

    def __init__(self, vocabulary_size: int, hidden_size: int, cell: nn.Module, dropouts: Dropouts):
        super().__init__()
        self.hidden_size = hidden_size
        self.dropouts = dropouts
        self.encoder = nn.Embedding(vocabulary_size, hidden_size)
        self.cell = cell
        self.decoder = nn.Linear(hidden_size, vocabulary_size)
        self.decoder.weight = self.encoder.weight
        nn.init.uniform_(self.encoder.weight, -INIT_RANGE, INIT_RANGE)
        nn.init.zeros_(self.decoder.bias)

    def initial_hidden(self, batch_size: int) -> torch.Tensor:
        """The zero state every epoch and every evaluation pass starts from."""
        weight = self.encoder.weight
        return torch.zeros(batch_size, self.hidden_size, device=weight.device, dtype=weight.dtype)

    def forward(self, tokens: torch.Tensor, hidden: torch.Tensor) -> LanguageModelOutput:
        return self._run(tokens, hidden)

    def _run(self, tokens: torch.Tensor, hidden: torch.Tensor, *cell_args) -> LanguageModelOutput:
        dropouts = self.dropouts if self.training else Dropouts()
        embedded = nn.functional.embedding(tokens, word_dropout(self.encoder.weight, dropouts.word))
        states, last = self.cell(sequence_dropout(embedded, dropouts.embedding), hidden, *cell_args)
        dropped = sequence_dropout(states, dropouts.output)
        return LanguageModelOutput(self.decoder(dropped), last, states, dropped)


class RecurrentSearchModel(LanguageModel):
    """The search network: a `SearchCell` inside the language model, called as
    `model(tokens, hidden, arch)` with `arch["recurrent"]` the cell's `CellWeights`."""

    cell: SearchCell

    @property
    def num_edges(self) -> int:
        return self.cell.num_edges

    @property
    def cell_primitives(self) -> dict[str, tuple[tuple[str, ...], ...]]:
        """Cell type -> the candidate ops of each edge (every edge has them all)."""
        return {CELL_TYPE: (self.cell.primitives,) * self.cell.num_edges}

    def forward(self, tokens: torch.Tensor, hidden: torch.Tensor, arch: ArchWeights) -> LanguageModelOutput:
        return self._run(tokens, hidden, arch[CELL_TYPE])


def evaluation_model(
    genotype: RecurrentGenotype, vocabulary_size: int, hidden_size: int, dropouts: Dropouts = Dropouts()
) -> LanguageModel:
    """The network a genotype is trained and tested as (DARTS: hidden 850 on PTB, 700 on WikiText-2)."""
    cell = RecurrentCell(genotype, hidden_size, hidden_size, dropouts.cell_input, dropouts.hidden)
    return LanguageModel(vocabulary_size, hidden_size, cell, dropouts)


def search_model(
    vocabulary_size: int,
    hidden_size: int,
    dropouts: Dropouts = Dropouts(),
    steps: int = STEPS,
    primitives: Sequence[str] = RNN_ACTIVATIONS,
) -> RecurrentSearchModel:
    """The search network (DARTS: hidden 300)."""
    cell = SearchCell(hidden_size, hidden_size, dropouts.cell_input, dropouts.hidden, steps, primitives)
    return RecurrentSearchModel(vocabulary_size, hidden_size, cell, dropouts)
