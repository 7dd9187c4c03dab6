"""Stems and reduction positions shared by the CNN search supernet and the evaluation networks."""

from torch import nn


def reduction_layers(layers: int) -> frozenset[int]:
    """Cells that halve the resolution and double the channels: at 1/3 and 2/3 of the depth (DARTS)."""
    return frozenset({layers // 3, 2 * layers // 3})


def cifar_stem(C_out: int) -> nn.Sequential:
    """A 3x3 conv and BN: 32x32 stays 32x32."""
    return nn.Sequential(nn.Conv2d(3, C_out, 3, padding=1, bias=False), nn.BatchNorm2d(C_out))


def imagenet_stems(C_out: int) -> tuple[nn.Sequential, nn.Sequential]:
    """The mobile setting's three stride-2 3x3 convs: 224x224 to 56x56 (the first stem, two convs)
    and 56x56 to 28x28 (the second); the first cell takes both outputs, so it sees a reduction."""
    stem0 = nn.Sequential(
        nn.Conv2d(3, C_out // 2, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(C_out // 2),
        nn.ReLU(inplace=True),
        nn.Conv2d(C_out // 2, C_out, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(C_out),
    )
    stem1 = nn.Sequential(nn.ReLU(), nn.Conv2d(C_out, C_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C_out))
    return stem0, stem1
