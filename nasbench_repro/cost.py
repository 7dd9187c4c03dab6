"""Model size as the papers report it: parameters and multiply-adds of the evaluation network.

- Parameters in millions, auxiliary head excluded (quark0/darts cnn/utils.py
  `count_parameters_in_MB` skips every parameter named "auxiliary"; PC-DARTS and P-DARTS
  reuse it).
- Multiply-adds of one image at the dataset's input size, counted by forward hooks; the
  network runs in eval mode, so the auxiliary head, which only runs in training, is left out.
  Two conventions:
  - "conv" (default): convolutions (output elements x input channels per group x kernel
    area) and linear layers (inputs x outputs) only. DARTS' 574M for its ImageNet cell is
    this count on a C=50 network (573.5M; quark0/darts trained ImageNet with
    `--init_channels 50` until commit be3c748), while its 4.7M parameters are at C=48.
  - "ptflops": also BN (2 per element with affine), ReLU (1 per element), pooling (1 per
    input element) and linear biases: the rules of the ptflops package
    (sovrasov/flops-counter.pytorch). It reproduces the PC-DARTS (597M, 586M) and P-DARTS
    (557M) ImageNet tables at C=48 to within their rounding.
  Cell additions and concatenations are counted by neither.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nasbench_repro.errors import UserError
from nasbench_repro.spaces.cnn.networks import NetworkCIFAR, NetworkImageNet
from nasbench_repro.spaces.genotypes import resolve_genotype

# The papers' evaluation settings (DARTS Sections 3.2 and A.2; the same in PC-DARTS, P-DARTS, GDAS).
PAPER_NETWORKS: dict[str, tuple[type[nn.Module], dict[str, int], tuple[int, int, int]]] = {
    "cifar10": (NetworkCIFAR, {"C": 36, "num_classes": 10, "layers": 20}, (3, 32, 32)),
    "imagenet": (NetworkImageNet, {"C": 48, "num_classes": 1000, "layers": 14}, (3, 224, 224)),
}


def count_parameters_millions(model: nn.Module) -> float:
    """Trainable parameters in millions, the auxiliary head left out as the papers count."""
    return sum(p.numel() for name, p in model.named_parameters() if not name.startswith("auxiliary_head.")) / 1e6


MADDS_CONVENTIONS = ("conv", "ptflops")


def _conv_linear_madds(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        return output.numel() * (module.in_channels // module.groups) * module.kernel_size[0] * module.kernel_size[1]
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    return 0


def _ptflops_operations(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> int:
    if isinstance(module, nn.BatchNorm2d):
        return output.numel() * (2 if module.affine else 1)
    if isinstance(module, nn.ReLU):
        return output.numel()
    if isinstance(module, nn.MaxPool2d | nn.AvgPool2d | nn.AdaptiveAvgPool2d):
        return inputs[0].numel()
    if isinstance(module, nn.Linear) and module.bias is not None:
        return _conv_linear_madds(module, inputs, output) + output.numel()
    return _conv_linear_madds(module, inputs, output)


def count_madds(model: nn.Module, input_shape: tuple[int, ...], convention: str = "conv") -> int:
    """Multiply-adds of one forward pass on one image of `input_shape` ((C, H, W) or (1, C, H, W));
    `convention` is "conv" or "ptflops" (see the module docstring)."""
    if convention not in MADDS_CONVENTIONS:
        raise UserError(f"unknown multiply-add convention {convention!r}; use one of {', '.join(MADDS_CONVENTIONS)}")
    count = _conv_linear_madds if convention == "conv" else _ptflops_operations
    shape = tuple(input_shape) if len(input_shape) == 4 else (1, *input_shape)
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        total += count(module, inputs, output)

    handles = [module.register_forward_hook(hook) for module in model.modules() if not list(module.children())]
    was_training = model.training
    parameter = next(model.parameters())
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(shape, device=parameter.device, dtype=parameter.dtype))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return total // shape[0]


def build_paper_network(genotype: Any, dataset: str) -> tuple[nn.Module, tuple[int, int, int]]:
    """The paper evaluation network for `dataset` (CIFAR-10: C=36, 20 cells; ImageNet: C=48, 14 cells)."""
    if dataset not in PAPER_NETWORKS:
        raise UserError(f"no paper evaluation network for dataset {dataset!r}; use one of {', '.join(PAPER_NETWORKS)}")
    network_class, settings, input_shape = PAPER_NETWORKS[dataset]
    return network_class(**settings, auxiliary=True, genotype=resolve_genotype(genotype, kind="cnn")), input_shape


def genotype_cost(genotype: Any, dataset: str, convention: str = "conv") -> dict[str, float]:
    """Parameters and multiply-adds (millions) of `genotype` in the paper network for `dataset`."""
    network, input_shape = build_paper_network(genotype, dataset)
    return {
        "params_millions": count_parameters_millions(network),
        "madds_millions": count_madds(network, input_shape, convention) / 1e6,
    }
