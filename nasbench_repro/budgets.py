"""Budgets scale any method's protocol by rules over well-known keys; methods never fork.

`paper` runs the protocol as published. `reduced` keeps the architecture sizes and shortens
training so a GPU finishes in hours. `smoke` shrinks everything so search plus evaluation
finishes in minutes on a CPU; its numbers show that the code runs, never a reproduction.

Rules, per phase (keys a protocol does not have are skipped):
- `epochs` is scaled (or capped); every other `*_epochs` key (warm-up, frozen-architecture
  epochs, ...) is scaled by the same ratio so schedules keep their shape (one shorter than
  the run stays shorter);
- `train_examples` / `valid_examples` / `test_examples` cap the data subset (validation
  takes the test cap); an example is an image;
- a language model's phase (one with `bptt`; PTB, WikiText-2) counts its examples in tokens
  (nasbench_repro/data/text.py), so caps sized for images would starve it (1,024 tokens are
  0.1% of PTB): its `*_examples` keep instead the share of their split that the image caps
  keep of CIFAR-10 (`train_token_share`, `eval_token_share`: reduced 20% of the training
  tokens, as 10,000 of 50,000 images, and all of valid and test; smoke 2.05% and 10%, as
  1,024 of 50,000 and 1,000 of 10,000), and `hidden_size` scales as channels do;
- `init_channels` and `layers` (cells) are scaled, with floors that keep the network valid;
  per-stage increments of them (`add_channels`, `add_layers`: P-DARTS; NAS-RL's `add_layers`
  per depth step) and NAS-RL's filter-count choices (`filter_channels`) scale alike;
- `batch_size` is capped;
- a key named `<something>_init_channels` or `<something>_batch_size` (a setting for some
  cells only, e.g. GDAS FRC's ImageNet width) is scaled as the key it ends with.

Black-box searches (a phase with `architectures`, how many candidates it evaluates):
- `architectures` is scaled (never below `min_architectures`, so a 24-architecture baseline
  stays whole) or capped; every other `*_architectures` key (a schedule counted in
  evaluated architectures, e.g. NAS-RL's depth steps) keeps its share of it;
- the groups a search holds or proposes together, `population_size`, `round_size` and
  `children_per_update`, are capped by `max_cohort` (the population also by `architectures`);
  the tournament `sample_size` keeps its share of the population (at least 2 where the
  population allows);
- `epochs` and `train_examples` there are spent once per candidate (or on the weight-sharing
  supernet), so `max_candidate_epochs` and `max_candidate_examples` cap them further; a
  language-model candidate keeps instead the share of its training tokens that the image cap
  keeps of CIFAR-10 (`candidate_token_share`: smoke 1.02%, as 512 of 50,000 images).
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
    # a language model's token shares of its training split and of its validation and test splits (see above)
    train_token_share: float = 1.0
    eval_token_share: float = 1.0
    architecture_scale: float = 1.0
    min_architectures: int = 1
    max_architectures: int | None = None
    max_cohort: int | None = None
    max_candidate_epochs: int | None = None
    max_candidate_examples: int | None = None
    candidate_token_share: float = 1.0

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
            if "architectures" in values and self.max_candidate_epochs is not None:
                new_epochs = min(new_epochs, self.max_candidate_epochs)
            scaled["epochs"] = new_epochs
            ratio = new_epochs / epochs if epochs else 1.0
            for key, value in values.items():
                if key.endswith("_epochs") and isinstance(value, int):
                    # a warm-up shorter than the run stays shorter: at least one epoch follows it
                    ceiling = new_epochs - 1 if value < epochs else new_epochs
                    scaled[key] = min(ceiling, round(value * ratio))
        tokens = "bptt" in values  # a language model: its examples are tokens
        for key, limit, share in (
            ("train_examples", self.max_train_examples, self.train_token_share),
            ("valid_examples", self.max_test_examples, self.eval_token_share),
            ("test_examples", self.max_test_examples, self.eval_token_share),
        ):
            if not isinstance(values.get(key), int):
                continue
            if tokens:
                scaled[key] = max(1, round(values[key] * share))
            elif limit is not None:
                scaled[key] = min(values[key], limit)
        if tokens and isinstance(values.get("hidden_size"), int) and self.channel_scale != 1:
            scaled["hidden_size"] = max(2, round(values["hidden_size"] * self.channel_scale))
        for key in _named(values, "init_channels"):
            if self.channel_scale != 1:
                # kept even (a reduction cell splits its channels in two): 50 halves to 24, not 25
                scaled[key] = max(4, 2 * math.floor(values[key] * self.channel_scale / 2))
        if isinstance(values.get("layers"), int):
            layers = values["layers"]
            scaled["layers"] = min(layers, max(self.min_layers, round(layers * self.layer_scale)))
        if isinstance(values.get("add_layers"), list):
            scaled["add_layers"] = [round(cells * self.layer_scale) for cells in values["add_layers"]]
        elif isinstance(values.get("add_layers"), int):
            scaled["add_layers"] = round(values["add_layers"] * self.layer_scale)
        if isinstance(values.get("filter_channels"), list):
            scaled["filter_channels"] = [
                max(4, math.floor(count * self.channel_scale)) for count in values["filter_channels"]
            ]
        if isinstance(values.get("add_channels"), list):  # kept even, as init_channels must be
            scaled["add_channels"] = [
                2 * math.floor(channels * self.channel_scale / 2) for channels in values["add_channels"]
            ]
        for key in _named(values, "batch_size"):
            if self.max_batch_size is not None:
                scaled[key] = min(values[key], self.max_batch_size)
        if isinstance(values.get("architectures"), int):
            scaled.update(self._search_counts(values))
        return scaled

    def _search_counts(self, values: dict) -> dict:
        """The black-box rules: how many candidates, and the groups they are held or proposed in."""
        count = values["architectures"]
        if count < 1:
            return {}  # out of its domain: refused when the protocol is checked
        new_count = min(count, max(self.min_architectures, round(count * self.architecture_scale)))
        if self.max_architectures is not None:
            new_count = min(new_count, self.max_architectures)
        scaled = {"architectures": new_count}
        if isinstance(values.get("train_examples"), int):
            if "bptt" in values:  # tokens: a share, never more than the phase's own rule keeps
                share = min(self.train_token_share, self.candidate_token_share)
                scaled["train_examples"] = max(1, round(values["train_examples"] * share))
            elif self.max_candidate_examples is not None:
                scaled["train_examples"] = min(values["train_examples"], self.max_candidate_examples)
        for key, value in values.items():
            if key.endswith("_architectures") and isinstance(value, int):
                scaled[key] = max(1, round(value * new_count / count))
        if self.max_cohort is not None:
            for key in ("population_size", "round_size", "children_per_update"):
                if isinstance(values.get(key), int):
                    scaled[key] = min(values[key], self.max_cohort)
        if isinstance(values.get("population_size"), int):  # the initial population fits in the search
            scaled["population_size"] = min(scaled.get("population_size", values["population_size"]), new_count)
        population, sample = values.get("population_size"), values.get("sample_size")
        if isinstance(population, int) and population > 0 and isinstance(sample, int) and "population_size" in scaled:
            new_population = scaled["population_size"]
            share = round(sample * new_population / population)
            scaled["sample_size"] = min(sample, new_population, max(2, share))
        return scaled


def _named(values: dict, name: str) -> list[str]:
    """The integer keys `name` and `<something>_<name>` (a setting for some cells only, e.g. GDAS
    FRC's `fixed_reduction_init_channels`): a budget scales them alike."""
    return [
        key
        for key, value in values.items()
        if (key == name or key.endswith(f"_{name}")) and isinstance(value, int) and not isinstance(value, bool)
    ]


# The image caps' reference: the text budgets keep the shares of a corpus that they keep of CIFAR-10.
CIFAR10_TRAIN_IMAGES, CIFAR10_TEST_IMAGES = 50_000, 10_000

BUDGETS: dict[str, Budget] = {
    "paper": Budget("paper", "the protocol as published"),
    "reduced": Budget(
        "reduced",
        "a tenth of the epochs on at most 10,000 training images (text: 20% of the training tokens, all of valid and "
        "test; black-box searches: a tenth of the candidates, at least 24); architecture sizes as published",
        epoch_scale=0.1,
        max_train_examples=10_000,
        train_token_share=10_000 / CIFAR10_TRAIN_IMAGES,
        architecture_scale=0.1,
        min_architectures=24,
    ),
    "smoke": Budget(
        "smoke",
        "three epochs on 1,024 images (text: 2% of the training tokens, 10% of valid and test) with a half-width "
        "network (black-box searches: 8 candidates, one epoch on 512 images or 1% of the training tokens each): "
        "proves the code runs, measures nothing",
        max_epochs=3,
        max_train_examples=1024,
        max_test_examples=1000,
        train_token_share=1024 / CIFAR10_TRAIN_IMAGES,
        eval_token_share=1000 / CIFAR10_TEST_IMAGES,
        channel_scale=0.5,
        layer_scale=0.25,
        max_batch_size=32,
        max_architectures=8,
        max_cohort=4,
        max_candidate_epochs=1,
        max_candidate_examples=512,
        candidate_token_share=512 / CIFAR10_TRAIN_IMAGES,
    ),
}


def get_budget(name: str) -> Budget:
    try:
        return BUDGETS[name]
    except KeyError:
        raise UserError(f"unknown budget {name!r}; use one of {', '.join(BUDGETS)}") from None
