"""Candidate operations of the DARTS CNN cell space and of NASP's larger space.

Structures follow the official code (facts from quark0/darts @f276dd3 cnn/operations.py and
xujinfan/NASP-codes @3bfb706 codes/operations.py):
- convolutions are ReLU -> conv -> BN, without bias; a stride applies to the first conv only;
- `sep_conv_KxK` is a depthwise-pointwise-BN block applied twice; `dil_conv_KxK` is one such
  block with dilation 2;
- `skip_connect` is the identity, or `FactorizedReduce` when the edge halves the resolution;
- `none` is the zero op (strided, so its shape matches the other ops of a reduction edge).

NASP's op names are kept as its repository spells them ("conv 3x3", "sep_5x5", ...), so its
published genotype resolves unchanged; `sep_K` is the same block as `sep_conv_K`.
BatchNorm `affine` is off in the search supernet and on in evaluation networks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from nasbench_repro.errors import UserError

# quark0/darts cnn/genotypes.py PRIMITIVES; the same list in PC-DARTS, P-DARTS and GDAS.
DARTS_PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)

# xujinfan/NASP-codes @3bfb706 codes/genotypes.py: normal and reduction cells search different lists.
NASP_NORMAL_PRIMITIVES: tuple[str, ...] = (
    "skip_connect",
    "conv_3x1_1x3",
    "dil_conv_3x3",
    "conv 1x1",
    "conv 3x3",
    "sep_3x3",
    "sep_5x5",
    "sep_7x7",
)
NASP_REDUCE_PRIMITIVES: tuple[str, ...] = (
    "skip_connect",
    "avg_pool_3x3",
    "max_pool_3x3",
    "max_pool_5x5",
    "max_pool_7x7",
)
# The union of the two lists: 12 ops. That this is the paper's "12 operations" space is an
# inference from the repository (see shared/reference/genotypes.yaml), not a stated fact.
NASP_PRIMITIVES: tuple[str, ...] = tuple(sorted(set(NASP_NORMAL_PRIMITIVES) | set(NASP_REDUCE_PRIMITIVES)))


class ReLUConvBN(nn.Module):
    """ReLU, convolution, BN: the cell preprocessing and NASP's plain `conv KxK` ops."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, affine: bool = True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class DilConv(nn.Module):
    """ReLU, dilated depthwise conv, pointwise conv, BN."""

    def __init__(
        self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, dilation: int, affine: bool = True
    ):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                C_in, C_in, kernel_size, stride=stride, padding=padding, dilation=dilation, groups=C_in, bias=False
            ),
            nn.Conv2d(C_in, C_out, kernel_size=1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class SepConv(nn.Module):
    """Two ReLU-depthwise-pointwise-BN blocks; only the first one is strided."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, affine: bool = True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel_size, stride=stride, padding=padding, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_in, kernel_size=1, bias=False),
            nn.BatchNorm2d(C_in, affine=affine),
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel_size, stride=1, padding=padding, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, kernel_size=1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class FactorizedConv(nn.Module):
    """ReLU, a 1xK conv then a Kx1 conv (each strided along its own axis), BN: `conv_7x1_1x7`, `conv_3x1_1x3`."""

    def __init__(self, C: int, kernel_length: int, stride: int, affine: bool = True):
        super().__init__()
        half = kernel_length // 2
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C, C, (1, kernel_length), stride=(1, stride), padding=(0, half), bias=False),
            nn.Conv2d(C, C, (kernel_length, 1), stride=(stride, 1), padding=(half, 0), bias=False),
            nn.BatchNorm2d(C, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Zero(nn.Module):
    """The `none` op: zeros shaped like the other ops' output (so it can be weighted and summed)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """Halve the resolution without losing half the pixels: two 1x1 stride-2 convs, the second
    shifted by one pixel, concatenated along channels.

    On odd sizes the shifted branch is zero-padded at the bottom/right so both branches have
    ceil(H/2) rows like every other stride-2 op; on even sizes (all the papers use) the padding
    is never read and the result equals the official op.
    """

    def __init__(self, C_in: int, C_out: int, affine: bool = True):
        super().__init__()
        if C_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {C_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = x[:, :, 1:, 1:]
        if x.shape[-2] % 2 or x.shape[-1] % 2:
            shifted = F.pad(shifted, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2))
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


OpBuilder = Callable[[int, int, bool], nn.Module]


def _skip(C: int, stride: int, affine: bool) -> nn.Module:
    return nn.Identity() if stride == 1 else FactorizedReduce(C, C, affine=affine)


def _max_pool(kernel_size: int) -> OpBuilder:
    return lambda C, stride, affine: nn.MaxPool2d(kernel_size, stride=stride, padding=kernel_size // 2)


def _sep_conv(kernel_size: int) -> OpBuilder:
    return lambda C, stride, affine: SepConv(C, C, kernel_size, stride, kernel_size // 2, affine=affine)


def _dil_conv(kernel_size: int) -> OpBuilder:
    # dilation 2 doubles the reach, so "same" padding is kernel_size - 1
    return lambda C, stride, affine: DilConv(C, C, kernel_size, stride, kernel_size - 1, 2, affine=affine)


def _plain_conv(kernel_size: int) -> OpBuilder:
    return lambda C, stride, affine: ReLUConvBN(C, C, kernel_size, stride, kernel_size // 2, affine=affine)


def _factorized_conv(kernel_length: int) -> OpBuilder:
    return lambda C, stride, affine: FactorizedConv(C, kernel_length, stride, affine=affine)


OPS: dict[str, OpBuilder] = {
    "none": lambda C, stride, affine: Zero(stride),
    "skip_connect": _skip,
    "max_pool_3x3": _max_pool(3),
    "max_pool_5x5": _max_pool(5),
    "max_pool_7x7": _max_pool(7),
    "avg_pool_3x3": lambda C, stride, affine: nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False),
    "sep_conv_3x3": _sep_conv(3),
    "sep_conv_5x5": _sep_conv(5),
    "sep_conv_7x7": _sep_conv(7),  # NASNet/AmoebaNet cells as DARTS transcribed them
    "dil_conv_3x3": _dil_conv(3),
    "dil_conv_5x5": _dil_conv(5),
    "conv_7x1_1x7": _factorized_conv(7),  # AmoebaNet
    "conv_3x1_1x3": _factorized_conv(3),  # NASP
    "conv 1x1": _plain_conv(1),  # NASP
    "conv 3x3": _plain_conv(3),  # NASP
    "sep_3x3": _sep_conv(3),  # NASP's names for the DARTS separable convs
    "sep_5x5": _sep_conv(5),
    "sep_7x7": _sep_conv(7),
}
OP_NAMES: tuple[str, ...] = tuple(OPS)


def make_op(name: str, C: int, stride: int, affine: bool = True) -> nn.Module:
    """Build the candidate op `name` on C channels; stride 2 halves the resolution (ceil)."""
    builder = OPS.get(name)
    if builder is None:
        raise UserError(f"unknown operation {name!r}; known operations: {', '.join(OP_NAMES)}")
    if stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2, got {stride}")
    return builder(C, stride, affine)


def is_pool(name: str) -> bool:
    """Pooling ops have no BN of their own; the search supernet appends one (as DARTS does)."""
    return "pool" in name
