"""NAS-RL's own CNN space (Zoph & Le, ICLR 2017, Sec. 3.1 and 3.3; the CIFAR-10 "v1" setting:
no strides, no pooling).

A network is a chain of `depth` convolutional layers. Per layer the controller picks the
filter height, the filter width and the number of filters, and, at the layer's anchor
point, which earlier layers feed it (skip connections). The paper's rules for turning any
such choice into a valid network, as the sources we read quote them: the inputs a layer
receives are concatenated along depth; a layer with no input reads the image; every layer
whose output no later layer reads is concatenated before the classifier. With stride 1
everywhere all feature maps keep the image's size, so no padding rule is needed. Each
layer is convolution, batch norm, ReLU.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
from torch import nn

from nasbench_repro.errors import UserError
from nasbench_repro.spaces.space import ACCURACY, Decision, Token

MUTATIONS = ("op", "hidden_state")
FILTER_FIELDS = ("filter_height", "filter_width", "filters")


@dataclass(frozen=True)
class Layer:
    filter_height: int
    filter_width: int
    filters: int
    inputs: tuple[int, ...]  # earlier layers (0-based) concatenated as this layer's input; () reads the image


@dataclass(frozen=True, repr=False)
class LayerwiseGenotype:
    layers: tuple[Layer, ...]

    kind: ClassVar[str] = "layerwise"

    def __post_init__(self) -> None:
        layers = tuple(Layer(*layer) if not isinstance(layer, Layer) else layer for layer in self.layers)
        if not layers:
            raise UserError("a layer-wise genotype needs at least one layer")
        for index, layer in enumerate(layers):
            if min(layer.filter_height, layer.filter_width, layer.filters) < 1:
                raise UserError(f"layer {index} has a non-positive filter size or count: {layer}")
            if any(not 0 <= source < index for source in layer.inputs) or len(set(layer.inputs)) != len(layer.inputs):
                raise UserError(f"layer {index} must read distinct earlier layers (0..{index - 1}), got {layer.inputs}")
        object.__setattr__(
            self, "layers", tuple(replace(layer, inputs=tuple(sorted(layer.inputs))) for layer in layers)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": [
                {
                    "filter_height": layer.filter_height,
                    "filter_width": layer.filter_width,
                    "filters": layer.filters,
                    "inputs": list(layer.inputs),
                }
                for layer in self.layers
            ]
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LayerwiseGenotype:
        try:
            return cls(
                tuple(
                    Layer(entry["filter_height"], entry["filter_width"], entry["filters"], tuple(entry["inputs"]))
                    for entry in data["layers"]
                )
            )
        except (KeyError, TypeError) as error:
            raise UserError(
                f"a layer-wise genotype is {{'layers': [{{filter_height, filter_width, filters, "
                f"inputs}}, ...]}}; this one is malformed ({error!r})"
            ) from None

    def __str__(self) -> str:
        return " ".join(
            f"[{layer.filter_height}x{layer.filter_width}x{layer.filters}"
            f"{'<' + ','.join(map(str, layer.inputs)) if layer.inputs else ''}]"
            for layer in self.layers
        )

    __repr__ = __str__


@dataclass(frozen=True)
class LayerwiseSpace:
    filter_heights: tuple[int, ...]
    filter_widths: tuple[int, ...]
    filter_counts: tuple[int, ...]
    depth: int

    mutations = MUTATIONS
    metric = ACCURACY

    def __post_init__(self) -> None:
        for name in ("filter_heights", "filter_widths", "filter_counts"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.depth < 1:
            raise UserError(f"a layer-wise network needs at least one layer, got depth {self.depth}")

    def with_depth(self, depth: int) -> LayerwiseSpace:
        """The same choices over `depth` layers (NAS-RL deepens its networks as the search goes on)."""
        return replace(self, depth=depth)

    def _choices(self, field: str) -> tuple[int, ...]:
        return {
            "filter_height": self.filter_heights,
            "filter_width": self.filter_widths,
            "filters": self.filter_counts,
        }[field]

    # --- sampling and mutation ---------------------------------------------------------------------------------

    def sample(self, rng: random.Random) -> LayerwiseGenotype:
        """Filter sizes and counts uniform; each earlier layer an input with probability 1/2."""
        layers = []
        for index in range(self.depth):
            sizes = [rng.choice(self._choices(field)) for field in FILTER_FIELDS]
            layers.append(Layer(*sizes, tuple(source for source in range(index) if rng.random() < 0.5)))
        return LayerwiseGenotype(tuple(layers))

    def mutate(self, genotype: LayerwiseGenotype, rng: random.Random, kind: str) -> LayerwiseGenotype:
        """`op`: one layer's filter height, width or count takes another value; `hidden_state`:
        one skip connection is added or removed."""
        layers = list(genotype.layers)
        if kind == "hidden_state" and len(layers) > 1:
            index = rng.randrange(1, len(layers))
            source = rng.randrange(index)
            inputs = set(layers[index].inputs) ^ {source}
            layers[index] = replace(layers[index], inputs=tuple(sorted(inputs)))
        elif kind in MUTATIONS:
            candidates = [
                (index, field)
                for index in range(len(layers))
                for field in FILTER_FIELDS
                if len(self._choices(field)) > 1
            ]
            if not candidates:
                raise UserError("no filter choice has two values in this space; widen it to mutate")
            index, field = rng.choice(candidates)
            current = getattr(layers[index], field)
            layers[index] = replace(
                layers[index], **{field: rng.choice([value for value in self._choices(field) if value != current])}
            )
        else:
            raise ValueError(f"unknown mutation {kind!r}; use one of {', '.join(MUTATIONS)}")
        return LayerwiseGenotype(tuple(layers))

    def key(self, genotype: LayerwiseGenotype) -> str:
        return json.dumps(genotype.to_dict(), sort_keys=True)

    def enumerate(self) -> Iterator[LayerwiseGenotype]:
        raise UserError("NAS-RL's layer-wise space is not gridded; grid search runs on a cell space")

    # --- a controller's view -----------------------------------------------------------------------------------

    def decisions(self) -> list[Decision]:
        """Per layer: its anchor point (which earlier layers feed it), filter height, width, count."""
        steps = []
        for index in range(self.depth):
            steps.append(Decision("anchor", index, anchor=True))
            steps += [Decision(field, len(self._choices(field))) for field in FILTER_FIELDS]
        return steps

    def decode(self, tokens: Sequence[Token]) -> LayerwiseGenotype:
        layers = []
        for index in range(self.depth):
            anchor, *sizes = tokens[4 * index : 4 * index + 4]
            values = [self._choices(field)[choice] for field, choice in zip(FILTER_FIELDS, sizes, strict=True)]
            layers.append(Layer(*values, tuple(source for source, chosen in enumerate(anchor) if chosen)))
        return LayerwiseGenotype(tuple(layers))

    def encode(self, genotype: LayerwiseGenotype) -> list[Token]:
        tokens: list[Token] = []
        for index, layer in enumerate(genotype.layers):
            tokens.append(tuple(int(source in layer.inputs) for source in range(index)))
            tokens += [self._choices(field).index(getattr(layer, field)) for field in FILTER_FIELDS]
        return tokens

    @staticmethod
    def build_network(
        genotype: LayerwiseGenotype, values: Mapping[str, Any], num_classes: int, input_shape: tuple[int, ...]
    ) -> nn.Module:
        """The network alone fixes its sizes: the protocol's values play no part."""
        return LayerwiseNetwork(genotype, num_classes, input_shape[0])

    def genotype_from_dict(self, data: Mapping[str, Any]) -> LayerwiseGenotype:
        return LayerwiseGenotype.from_dict(data)


class LayerwiseNetwork(nn.Module):
    """The chain of convolutions a layer-wise genotype describes, then global pooling and a linear classifier."""

    def __init__(self, genotype: LayerwiseGenotype, num_classes: int, in_channels: int = 3):
        super().__init__()
        self.inputs = [layer.inputs for layer in genotype.layers]
        widths: list[int] = []
        self.layers = nn.ModuleList()
        for layer in genotype.layers:
            width_in = sum(widths[source] for source in layer.inputs) if layer.inputs else in_channels
            padding = (layer.filter_height // 2, layer.filter_width // 2)
            self.layers.append(
                nn.Sequential(
                    nn.Conv2d(
                        width_in, layer.filters, (layer.filter_height, layer.filter_width), padding=padding, bias=False
                    ),
                    nn.BatchNorm2d(layer.filters),
                    nn.ReLU(),
                )
            )
            widths.append(layer.filters)
        read = {source for inputs in self.inputs for source in inputs}
        self.outputs = [index for index in range(len(widths)) if index not in read]
        self.classifier = nn.Linear(sum(widths[index] for index in self.outputs), num_classes)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, None]:
        states: list[torch.Tensor] = []
        for inputs, layer in zip(self.inputs, self.layers, strict=True):
            states.append(layer(torch.cat([states[source] for source in inputs], dim=1) if inputs else images))
        features = torch.cat([states[index] for index in self.outputs], dim=1)
        return self.classifier(features.mean(dim=(2, 3))), None
