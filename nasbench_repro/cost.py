"""Model size as the papers report it: parameters and multiply-adds of the evaluation network.

- Parameters in millions, auxiliary head excluded (quark0/darts cnn/utils.py
  `count_parameters_in_MB` skips every parameter named "auxiliary"; PC-DARTS and P-DARTS
  reuse it). A language model's tied embedding and decoder matrix counts once, as
  rnn/train.py counts `model.parameters()`; the papers give no multiply-adds for them.
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
  GDAS's 581M and 497M are the conv count at its own widths (C=50 and, with the fixed
  reduction cell, C=52).

A published cell is measured in the network its own method's evaluation protocol builds
(`paper_network`: the method whose claims name the cell, `methods/configs/<method>.toml`),
so GDAS's ImageNet cells run at C=50 / C=52 and DARTS's at C=48; a cell no method claims
gets DARTS's setting (CIFAR-10: C=36, 20 cells; ImageNet: C=48, 14 cells).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nasbench_repro.data.text import FORMATS as TEXT_CORPORA
from nasbench_repro.errors import UserError
from nasbench_repro.spaces.cnn.networks import NetworkCIFAR, NetworkImageNet
from nasbench_repro.spaces.genotypes import find_published, resolve_genotype
from nasbench_repro.spaces.rnn.model import evaluation_model

# DARTS's evaluation settings (Sections 3.2 and A.2), for cells no method's protocol claims.
PAPER_NETWORKS: dict[str, tuple[type[nn.Module], dict[str, int], tuple[int, int, int]]] = {
    "cifar10": (NetworkCIFAR, {"C": 36, "num_classes": 10, "layers": 20}, (3, 32, 32)),
    "imagenet": (NetworkImageNet, {"C": 48, "num_classes": 1000, "layers": 14}, (3, 224, 224)),
}


# The papers' language models (DARTS App. A and its README's WikiText-2 command; GDAS the same): embedding =
# hidden size, the decoder tied to the embedding, the vocabulary the corpus's (data/text.py: 10,000 and 33,278).
PAPER_LANGUAGE_MODEL_HIDDEN_SIZE: dict[str, int] = {"ptb": 850, "wt2": 700}


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


@dataclass(frozen=True)
class PaperNetwork:
    """The evaluation network a cell's paper reports it in: widths from its method's protocol."""

    init_channels: int
    layers: int
    method: str | None  # whose protocol set them; None: DARTS's setting, no method claims the cell


def paper_network(genotype: Any, dataset: str) -> PaperNetwork:
    """C and cells of the network the method that published `genotype` (a name) evaluates it in
    on `dataset`, as its protocol says (including settings that depend on the cell, e.g. GDAS
    FRC's C=52 on ImageNet); DARTS's setting for anything else."""
    from nasbench_repro import catalog
    from nasbench_repro.leaderboard.claims import load_claims
    from nasbench_repro.protocol import load_protocol

    if dataset not in PAPER_NETWORKS:
        raise UserError(f"no paper evaluation network for dataset {dataset!r}; use one of {', '.join(PAPER_NETWORKS)}")
    _, settings, _ = PAPER_NETWORKS[dataset]
    default = PaperNetwork(settings["C"], settings["layers"], None)
    entry = find_published(genotype, kind="cnn") if isinstance(genotype, str) else None
    claim = entry and next(
        (claim for claim in load_claims().all if claim.genotype == entry.name and claim.dataset == dataset), None
    )
    if claim is None or not catalog.is_implemented(claim.method):
        return default
    method = catalog.get_method(claim.method)
    try:
        protocol = load_protocol(claim.method, dataset, method.config_file).phase("evaluate")
    except UserError:  # the method has no protocol for this dataset
        return default
    if "init_channels" not in protocol or "layers" not in protocol:
        return default
    values = {**protocol, **getattr(method(), "evaluation_settings", lambda *_: {})(entry.genotype, protocol)}
    return PaperNetwork(values["init_channels"], values["layers"], claim.method)


def paper_sizes(genotype: Any, dataset: str) -> dict[str, Any]:
    """The headline claims of parameters and multiply-adds for a published cell on `dataset`
    (metric -> Claim); empty for a cell the registry does not size."""
    from nasbench_repro.leaderboard.claims import load_claims

    entry = find_published(genotype) if isinstance(genotype, str) else None
    if entry is None:
        return {}
    claims = load_claims()
    found = {
        metric: claims.find("", "", dataset, metric, genotype=entry.name)
        for metric in ("params_millions", "madds_millions")
    }
    return {metric: claim for metric, claim in found.items() if claim is not None and claim.value is not None}


def build_paper_network(genotype: Any, dataset: str) -> tuple[nn.Module, tuple[int, int, int]]:
    """The paper evaluation network of `genotype` on `dataset` (see `paper_network`)."""
    settings = paper_network(genotype, dataset)
    network_class, fixed, input_shape = PAPER_NETWORKS[dataset]
    network = network_class(
        C=settings.init_channels,
        num_classes=fixed["num_classes"],
        layers=settings.layers,
        auxiliary=True,
        genotype=resolve_genotype(genotype, kind="cnn"),
    )
    return network, input_shape


def build_paper_language_model(genotype: Any, dataset: str) -> nn.Module:
    """The paper evaluation language model for a text dataset (PTB: hidden 850; WikiText-2: 700)."""
    return evaluation_model(
        resolve_genotype(genotype, kind="rnn"),
        TEXT_CORPORA[dataset].vocabulary_size,
        PAPER_LANGUAGE_MODEL_HIDDEN_SIZE[dataset],
    )


def genotype_cost(genotype: Any, dataset: str, convention: str = "conv") -> dict[str, float]:
    """Parameters and multiply-adds (millions) of `genotype` in the paper network for `dataset`;
    for a text dataset only the parameters, the one size the papers report for language models."""
    if dataset in PAPER_LANGUAGE_MODEL_HIDDEN_SIZE:
        return {"params_millions": count_parameters_millions(build_paper_language_model(genotype, dataset))}
    network, input_shape = build_paper_network(genotype, dataset)
    return {
        "params_millions": count_parameters_millions(network),
        "madds_millions": count_madds(network, input_shape, convention) / 1e6,
    }
