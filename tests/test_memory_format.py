"""The memory format of image networks: chosen per device by the runner, recorded, and a layout
only: a network computes the same outputs and gradients in channels_last as in contiguous."""

import copy
from pathlib import Path

import pytest
import torch
from cli_calls import cli, tiny_run_args

from nasbench_repro.context import laid_out, memory_format_for
from nasbench_repro.differentiable import ImageClassification, Stage
from nasbench_repro.records import read_record
from nasbench_repro.spaces.cnn.networks import NetworkCIFAR
from nasbench_repro.spaces.cnn.ops import DARTS_PRIMITIVES
from nasbench_repro.spaces.cnn.supernet import CellWeights, MixedOp, PartialChannelMixedOp, SearchNetwork
from nasbench_repro.spaces.genotypes import get_published


def test_auto_is_contiguous_and_an_explicit_choice_is_kept():
    assert memory_format_for("auto", torch.device("cpu")) == "contiguous"
    assert memory_format_for("auto", torch.device("cuda")) == "contiguous"
    assert memory_format_for("contiguous", torch.device("cpu")) == "contiguous"
    assert memory_format_for("channels_last", torch.device("cuda")) == "channels_last"


def test_the_search_task_builds_its_supernet_in_the_runs_layout():
    stage = Stage(index=0, epochs=1, layers=3, init_channels=4)
    primitives = {"normal": DARTS_PRIMITIVES, "reduce": DARTS_PRIMITIVES}
    for layout, expected in (("channels_last", torch.channels_last), ("contiguous", torch.contiguous_format)):
        supernet = ImageClassification(10, (3, 8, 8), layout).supernet(stage, primitives, MixedOp)
        convolutions = [p for p in supernet.parameters() if p.dim() == 4]
        assert convolutions and all(p.is_contiguous(memory_format=expected) for p in convolutions)


def _outputs_and_gradients(network, inputs, forward):
    network.zero_grad()
    outputs = forward(network, inputs)
    outputs.square().sum().backward()
    return outputs.detach(), {name: p.grad.clone() for name, p in network.named_parameters() if p.grad is not None}


def _same_in_both_layouts(network, inputs, forward):
    """In float64, so that the check is tight: float32 differs by rounding (other summation orders)."""
    network, inputs = network.double(), inputs.double()
    torch.manual_seed(0)
    expected, expected_grads = _outputs_and_gradients(network, inputs, forward)
    channels_last = laid_out(copy.deepcopy(network), "channels_last")
    torch.manual_seed(0)
    outputs, grads = _outputs_and_gradients(channels_last, inputs, forward)
    torch.testing.assert_close(outputs, expected, rtol=1e-10, atol=1e-12)
    assert grads.keys() == expected_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected_grads[name], rtol=1e-10, atol=1e-10, msg=name)


def test_an_evaluation_network_computes_the_same_in_channels_last():
    network = NetworkCIFAR(8, 10, 5, True, get_published("DARTS_V2").genotype)
    network.drop_path_prob = 0.2  # drop-path masks are drawn per sample: the same seed draws the same ones
    _same_in_both_layouts(network, torch.randn(2, 3, 32, 32), lambda net, x: torch.cat(net(x), dim=1))


@pytest.mark.parametrize("edge", [MixedOp, PartialChannelMixedOp])
def test_a_supernet_computes_the_same_in_channels_last(edge):
    """The partial-channel edge slices and shuffles channels, the innermost dimension in channels_last."""
    torch.manual_seed(0)
    supernet = SearchNetwork(8, 10, 3, DARTS_PRIMITIVES, edge_factory=edge)
    weights = {cell: CellWeights(torch.randn(14, len(DARTS_PRIMITIVES)).softmax(-1)) for cell in ("normal", "reduce")}
    _same_in_both_layouts(supernet, torch.randn(4, 3, 8, 8), lambda net, x: net(x, weights))


def test_the_record_says_which_layout_ran(tiny, capsys):
    code, out, _ = cli(capsys, *tiny_run_args(tiny))
    assert code == 0 and read_record(Path(out.strip()))["environment"]["memory_format"] == "contiguous"
    code, out, _ = cli(capsys, *tiny_run_args(tiny, "--memory-format", "channels_last"))
    assert code == 0 and read_record(Path(out.strip()))["environment"]["memory_format"] == "channels_last"
    code, _, err = cli(capsys, *tiny_run_args(tiny, "--memory-format", "nhwc"))
    assert code == 2 and "--memory-format" in err
