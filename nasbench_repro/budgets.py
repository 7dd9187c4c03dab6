"""Budgets scale any method's protocol by rules over well-known keys; methods never fork.

`paper` runs the protocol as published. `reduced` keeps the architecture sizes and shortens
training so a GPU finishes in hours. `smoke` shrinks everything so search plus evaluation
finishes in minutes on a CPU; its numbers show that the code runs, never a reproduction.

Rules, per phase (keys a protocol does not have are skipped):
- `epochs` is scaled (or capped); every other `*_epochs` key (warm-up, frozen-architecture
  epochs, ...) is scaled by the same ratio so schedules keep their shape (one shorter than
  the run stays shorter);
- `train_examples` / `test_examples` cap the data subset;
- `init_channels` and `layers` (cells) are scaled, with floors that keep the network valid;
- `batch_size` is capped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nasbench_repro.errors import UserError
from nasbench_repro.protocol import Protocol


@dataclass(frozen=True)
class Budget:
    name: str
    description: str
    epoch_scale: float = 1.0
    max_epochs: int | None = None
    max_train_examples: int | None = None
    max_test_examples: int | None = None
    channel_scale: float = 1.0
    layer_scale: float = 1.0
    min_layers: int = 5  # keeps the two reduction cells and a normal cell on each side of the first
    max_batch_size: int | None = None

    @property
    def is_reproduction(self) -> bool:
        return self.name == "paper"

    def apply(self, protocol: Protocol) -> None:
        """Scale `protocol` in place, marking each changed value with `budget:<name>`."""
        for phase, entries in protocol.phases.items():
            values = {key: entry.value for key, entry in entries.items()}
            for key, value in self._scaled(values).items():
                if value != values[key]:
                    protocol.set_value(phase, key, value, f"budget:{self.name}")

    def _scaled(self, values: dict) -> dict:
        scaled = {}
        if isinstance(values.get("epochs"), int):
            epochs = values["epochs"]
            new_epochs = max(1, round(epochs * self.epoch_scale))
            if self.max_epochs is not None:
                new_epochs = min(new_epochs, self.max_epochs)
            scaled["epochs"] = new_epochs
            ratio = new_epochs / epochs if epochs else 1.0
            for key, value in values.items():
                if key.endswith("_epochs") and isinstance(value, int):
                    # a warm-up shorter than the run stays shorter: at least one epoch follows it
                    ceiling = new_epochs - 1 if value < epochs else new_epochs
                    scaled[key] = min(ceiling, round(value * ratio))
        for key, limit in (("train_examples", self.max_train_examples), ("test_examples", self.max_test_examples)):
            if isinstance(values.get(key), int) and limit is not None:
                scaled[key] = min(values[key], limit)
        if isinstance(values.get("init_channels"), int):
            scaled["init_channels"] = max(4, math.floor(values["init_channels"] * self.channel_scale))
        if isinstance(values.get("layers"), int):
            layers = values["layers"]
            scaled["layers"] = min(layers, max(self.min_layers, round(layers * self.layer_scale)))
        if isinstance(values.get("batch_size"), int) and self.max_batch_size is not None:
            scaled["batch_size"] = min(values["batch_size"], self.max_batch_size)
        return scaled


BUDGETS: dict[str, Budget] = {
    "paper": Budget("paper", "the protocol as published"),
    "reduced": Budget(
        "reduced",
        "a tenth of the epochs on at most 10,000 training images; architecture sizes as published",
        epoch_scale=0.1,
        max_train_examples=10_000,
    ),
    "smoke": Budget(
        "smoke",
        "three epochs on 1,024 images with a small network: proves the code runs, measures nothing",
        max_epochs=3,
        max_train_examples=1024,
        max_test_examples=1000,
        channel_scale=0.5,
        layer_scale=0.25,
        max_batch_size=32,
    ),
}


def get_budget(name: str) -> Budget:
    try:
        return BUDGETS[name]
    except KeyError:
        raise UserError(f"unknown budget {name!r}; use one of {', '.join(BUDGETS)}") from None
