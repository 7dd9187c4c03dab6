"""Speed of the DARTS recurrent search cell on the CPU: forward and backward over one window at
the smoke budget's search shapes (hidden 150, batch 32, bptt 35), every op weighted (DARTS) or
one op per edge (GDAS). A search step runs several such passes (DARTS second order: five).

Under the project's default `--benchmark-disable` each benchmark runs once, as a test;
`pytest tests/test_bench_rnn_cell.py --benchmark-enable` measures.
"""

from __future__ import annotations

import pytest
import torch

from nasbench_repro.spaces.cnn.supernet import CellWeights
from nasbench_repro.spaces.genotypes import RNN_ACTIVATIONS
from nasbench_repro.spaces.rnn.cell import SearchCell, recurrent_edge_count

HIDDEN, BATCH, BPTT = 150, 32, 35


@pytest.mark.parametrize("selection", ["all ops", "one op per edge"])
def test_search_cell_forward_and_backward(benchmark, selection):
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    cell = SearchCell(HIDDEN, HIDDEN, cell_input_dropout=0.75, hidden_dropout=0.25).train()
    inputs, hidden = torch.randn(BPTT, BATCH, HIDDEN, generator=generator), torch.zeros(BATCH, HIDDEN)
    alpha = (1e-3 * torch.randn(recurrent_edge_count(), len(RNN_ACTIVATIONS), generator=generator)).requires_grad_()
    selected = None
    if selection == "one op per edge":
        selected = torch.randint(0, len(RNN_ACTIVATIONS), (recurrent_edge_count(),), generator=generator).tolist()

    def window() -> torch.Tensor:
        alpha.grad = None
        states, _ = cell(inputs, hidden, CellWeights(alpha.softmax(-1), selected=selected))
        states.square().mean().backward()
        return alpha.grad

    assert torch.count_nonzero(benchmark(window)) > 0
