"""PC-DARTS's partial-channel edge on odd feature maps (where the bypass needs `ceil_mode`), and a
K that does not divide the channels, refused by the edge and, before any run, by the protocol."""

import functools

import pytest
import torch
from torch import nn

from methods.pcdarts import PCDARTS
from nasbench_repro.cli import main
from nasbench_repro.differentiable import ArchitectureParameters
from nasbench_repro.spaces.cnn.supernet import PartialChannelMixedOp, SearchNetwork, channel_shuffle

PRIMITIVES = ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3")


@pytest.mark.parametrize("size", [7, 9, 15])
@pytest.mark.parametrize("k", [2, 4])
def test_a_stride_2_edge_on_an_odd_map_pools_its_bypass_with_ceil_mode(size, k):
    """The sampled channels go through the mixed op, the others through a 2x2 max pool that keeps
    the last odd row and column (ceil_mode), so both halves come out ceil(size / 2) wide; undoing
    the channel shuffle gives each back."""
    torch.manual_seed(size)
    channels = 16
    edge = PartialChannelMixedOp(channels, 2, PRIMITIVES, k=k).eval()
    x, weights = torch.randn(2, channels, size, size), torch.softmax(torch.randn(len(PRIMITIVES)), 0)
    out = edge(x, weights)
    half = (size + 1) // 2
    assert out.shape == (2, channels, half, half)
    sampled = channels // k
    unshuffled = channel_shuffle(out, channels // k)  # a k-group shuffle is undone by a C/k-group one
    torch.testing.assert_close(unshuffled[:, :sampled], edge.mixed(x[:, :sampled], weights))
    bypass = nn.functional.max_pool2d(x[:, sampled:], 2, 2, ceil_mode=True)
    torch.testing.assert_close(unshuffled[:, sampled:], bypass)
    assert torch.equal(bypass[..., -1, -1], x[:, sampled:, -1, -1])  # the odd corner pools alone: not dropped


def test_a_pc_darts_supernet_runs_on_odd_inputs():
    """15x15 images: both reduction cells halve odd maps (15 -> 8 -> 4) through partial-channel edges."""
    torch.manual_seed(0)
    supernet = SearchNetwork(8, 10, 3, edge_factory=functools.partial(PartialChannelMixedOp, k=4))
    arch = ArchitectureParameters(supernet.num_edges, {"normal": 8, "reduce": 8}, edge_normalization=True)
    logits = supernet(torch.randn(2, 3, 15, 15), PCDARTS().soft_weights(arch))
    logits.sum().backward()
    assert logits.shape == (2, 10) and all(parameter.grad is not None for parameter in arch.parameters())


@pytest.mark.parametrize("channels, k", [(6, 4), (12, 8), (4, 0)])
def test_an_edge_refuses_a_k_that_does_not_divide_its_channels(channels, k):
    with pytest.raises(ValueError, match=f"partial channels need k >= 1 dividing C; got C={channels}, k={k}"):
        PartialChannelMixedOp(channels, 1, PRIMITIVES, k=k)


@pytest.mark.parametrize(
    "settings, problem",
    [
        (["--set", "k=3"], "search.k = 3 (set by --set or --sweep) is out of range"),
        (
            ["--set", "search.init_channels=12", "--set", "k=8"],
            "search.k = 8 (set by --set or --sweep) is out of range: it must be one of 1, 2, 4, 8 that divides "
            "init_channels (init_channels = 12, set by --set or --sweep)",
        ),
        (["--sweep", "k=4,6"], "search.k = 6 (set by --set or --sweep)"),
    ],
)
def test_a_k_that_does_not_divide_the_channels_stops_the_run_before_it_starts(tmp_path, capsys, settings, problem):
    code = main(
        [
            "run",
            "pcdarts",
            "--dataset",
            "cifar10",
            "--budget",
            "paper",
            "--results-dir",
            str(tmp_path / "results"),
            "--runs-dir",
            str(tmp_path / "runs"),
            "--data-root",
            str(tmp_path / "data"),
            *settings,
        ]
    )
    captured = capsys.readouterr()
    assert code == 2 and captured.out == "" and len(captured.err.splitlines()) == 1 and problem in captured.err
    assert list(tmp_path.iterdir()) == []
