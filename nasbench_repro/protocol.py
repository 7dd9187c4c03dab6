"""Paper protocols as data: one TOML file per method, one table per dataset and phase.

Every value carries its source, e.g. in `methods/configs/pcdarts.toml`:

    [cifar10.search]
    epochs = { value = 50, source = "PC-DARTS code, train_search.py default @b74702f" }
    drop_path_prob = { value = 0.3, source = "...", alternative = { value = 0.2, source = "..." },
                       note = "why this one" }

A method whose papers describe more than one protocol (DARTS's random-search baseline and
Li & Talwalkar's weight-sharing random search) keeps the others as named variants of a
dataset, `[cifar10.variants.<name>.<phase>]`; a variant's phase table replaces the default
one, and phases it leaves out are shared (`nasbench run METHOD --variant NAME`).

A protocol is scaled by a budget (`budgets.py`) and then by the user's `--set` overrides;
the result keeps, per value, where it came from, so a record says exactly what ran.

A key's type is the type of its value in the file; its domain (the values that make sense,
e.g. epochs >= 1, 0 < train_portion < 1) is declared once in `DOMAINS` below, or by the
method that owns the key (`Method.protocol_domains`). `check_domains` runs on the resolved
protocol, so a value outside its domain is refused before anything runs whether it came
from a file, a budget, `--set` or `--sweep`.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasbench_repro.errors import UserError

PHASES = ("search", "evaluate")
CONFIG_DIR = Path(__file__).resolve().parent.parent / "methods" / "configs"


@dataclass(frozen=True)
class Entry:
    """One protocol value with its provenance."""

    value: Any
    source: str
    alternative: Mapping[str, Any] | None = None
    note: str | None = None

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {"value": self.value, "source": self.source}
        if self.alternative is not None:
            described["alternative"] = dict(self.alternative)
        if self.note:
            described["note"] = self.note
        return described


class PhaseProtocol(Mapping[str, Any]):
    """The resolved values of one phase, read as `protocol.epochs` or `protocol["epochs"]`."""

    def __init__(self, phase: str, values: Mapping[str, Any]):
        self._phase = phase
        self._values = dict(values)

    def __getitem__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise KeyError(f"{self._phase} protocol has no value {key!r}") from None

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(f"{self._phase} protocol has no value {key!r}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"PhaseProtocol({self._phase}, {self._values})"


@dataclass
class Protocol:
    """A method's protocol for one dataset: phase -> key -> Entry, plus what changed it."""

    method: str
    dataset: str
    paper: str
    phases: dict[str, dict[str, Entry]]
    provenance: dict[str, dict[str, str]] = field(default_factory=dict)  # phase -> key -> "budget:x"/"override"
    variant: str | None = None  # a named variant of the file's protocol; None: the default one

    def phase(self, name: str) -> PhaseProtocol:
        return PhaseProtocol(name, {key: entry.value for key, entry in self.phases.get(name, {}).items()})

    def values(self) -> dict[str, dict[str, Any]]:
        return {phase: {key: entry.value for key, entry in entries.items()} for phase, entries in self.phases.items()}

    def set_value(self, phase: str, key: str, value: Any, how: str) -> None:
        entry = self.phases[phase][key]
        self.phases[phase][key] = Entry(value, entry.source, entry.alternative, entry.note)
        self.provenance.setdefault(phase, {})[key] = how

    def describe(self) -> dict[str, Any]:
        """What goes into a run record: values, sources, and what the budget or user changed."""
        return {
            "paper": self.paper,
            "variant": self.variant,
            "values": self.values(),
            "sources": {
                phase: {key: entry.describe() for key, entry in entries.items()}
                for phase, entries in self.phases.items()
            },
            "changed": {phase: dict(keys) for phase, keys in self.provenance.items() if keys},
        }


def config_path(method: str) -> Path:
    return CONFIG_DIR / f"{method}.toml"


def load_protocol(method: str, dataset: str, path: Path | None = None, variant: str | None = None) -> Protocol:
    """Read `methods/configs/<method>.toml` for one dataset (and a named variant of its
    protocol); malformed files fail with one line."""
    path = path or config_path(method)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"no protocol file for method {method!r}: expected {path}") from None
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"malformed protocol file {path}: {error}") from None
    paper = document.get("paper", {}).get("citation", "")
    datasets = sorted(key for key in document if key != "paper")
    if dataset not in document:
        raise UserError(
            f"method {method!r} has no protocol for dataset {dataset!r} (it has: {', '.join(datasets) or 'none'})"
        )
    tables = dict(document[dataset])
    variants = tables.pop("variants", {})
    if not isinstance(variants, dict) or not all(isinstance(table, dict) for table in variants.values()):
        raise UserError(
            f"{path}: [{dataset}.variants] must hold one table per variant, e.g. [{dataset}.variants.NAME.search]"
        )
    phases = _phase_tables(path, dataset, tables)
    if variant is not None:
        if variant not in variants:
            raise UserError(
                f"method {method!r} has no variant {variant!r} for {dataset} "
                f"(it has: {', '.join(sorted(variants)) or 'none'}); drop --variant for the default"
            )
        phases.update(_phase_tables(path, f"{dataset}.variants.{variant}", variants[variant]))
    return Protocol(method=method, dataset=dataset, paper=paper, phases=phases, variant=variant)


def _phase_tables(path: Path, where: str, tables: dict[str, Any]) -> dict[str, dict[str, Entry]]:
    phases: dict[str, dict[str, Entry]] = {}
    for phase, table in tables.items():
        if phase not in PHASES or not isinstance(table, dict):
            raise UserError(f"{path}: [{where}.{phase}] is not a phase; use one of {', '.join(PHASES)}")
        phases[phase] = {key: _entry(path, f"{where}.{phase}.{key}", raw) for key, raw in table.items()}
    return phases


def _entry(path: Path, where: str, raw: Any) -> Entry:
    if not isinstance(raw, dict) or "value" not in raw or "source" not in raw:
        raise UserError(f'{path}: {where} must be {{ value = ..., source = "..." }}')
    unknown = set(raw) - {"value", "source", "alternative", "note"}
    if unknown:
        raise UserError(f"{path}: {where} has unknown field(s) {', '.join(sorted(unknown))}")
    return Entry(raw["value"], raw["source"], raw.get("alternative"), raw.get("note"))


# --- user overrides -------------------------------------------------------------------------------------------


def parse_assignment(text: str) -> tuple[str, str]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip() or not raw.strip():
        raise UserError(f"--set {text!r}: expected key=value, e.g. --set search.epochs=10")
    return key.strip(), raw.strip()


def parse_value(raw: str) -> Any:
    """A TOML literal (10, 0.5, true, [1, 2], "x"); anything else is taken as a bare string."""
    try:
        return tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        return raw


def resolve_key(protocol: Protocol, key: str, active_phases: Iterable[str]) -> tuple[str, str]:
    """Map `k` or `search.k` to (phase, key) among the phases this run executes."""
    active = [phase for phase in active_phases if phase in protocol.phases]
    if "." in key:
        phase, _, name = key.partition(".")
        if phase not in protocol.phases or name not in protocol.phases[phase]:
            raise UserError(f"unknown override {key!r}; {_known_keys(protocol, active)}")
        return phase, name
    matches = [phase for phase in active if key in protocol.phases[phase]]
    if not matches:
        raise UserError(f"unknown override {key!r}; {_known_keys(protocol, active)}")
    if len(matches) > 1:
        options = " or ".join(f"{phase}.{key}" for phase in matches)
        raise UserError(f"override {key!r} is ambiguous: write {options}")
    return matches[0], key


def _known_keys(protocol: Protocol, active: list[str]) -> str:
    keys = [f"{phase}.{key}" for phase in active for key in protocol.phases[phase]]
    return "known keys: " + ", ".join(keys)


def coerce(current: Any, new: Any, key: str) -> Any:
    """Check `new` has the type of the protocol's value (list elements included); ints are
    accepted where floats are; NaN and infinities never are."""
    if isinstance(new, float) and not math.isfinite(new):
        raise UserError(f"--set {key}={new}: a protocol value must be a finite number")
    if current is None or new is None:
        return new
    if isinstance(current, list) and isinstance(new, list):
        if current and new:
            return [coerce(current[0], item, f"{key}[{index}]") for index, item in enumerate(new)]
        return new
    if isinstance(current, float) and isinstance(new, int | float) and not isinstance(new, bool):
        return float(new)
    if type(new) is type(current):
        return new
    raise UserError(f"--set {key}={json.dumps(new)}: expected {type(current).__name__} like {json.dumps(current)}")


def apply_overrides(protocol: Protocol, overrides: Mapping[str, Any], active_phases: Iterable[str]) -> None:
    active = list(active_phases)
    for key, value in overrides.items():
        phase, name = resolve_key(protocol, key, active)
        protocol.set_value(phase, name, coerce(protocol.phases[phase][name].value, value, key), "override")


# --- domains ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Domain:
    """The values one key may take: `allowed` says it in words for the error message, `test`
    decides, given the value and the other values of its phase (for rules such as
    warm-up epochs < epochs); `depends_on` names those other keys, so a refusal shows them."""

    allowed: str
    test: Callable[[Any, Mapping[str, Any]], bool]
    depends_on: tuple[str, ...] = ()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def integer(minimum: int, maximum: int | None = None) -> Domain:
    words = f"an integer >= {minimum}" if maximum is None else f"an integer from {minimum} to {maximum}"
    return Domain(
        words, lambda value, _: _is_integer(value) and value >= minimum and (maximum is None or value <= maximum)
    )


def even_integer(minimum: int, maximum: int | None = None) -> Domain:
    words = f"an even integer >= {minimum}" if maximum is None else f"an even integer from {minimum} to {maximum}"
    return Domain(
        words,
        lambda value, _: (
            _is_integer(value) and value >= minimum and (maximum is None or value <= maximum) and value % 2 == 0
        ),
    )


def number(low: float, high: float = math.inf, *, low_open: bool = False, high_open: bool = False) -> Domain:
    """A finite number in an interval, e.g. number(0, 1, high_open=True) is [0, 1)."""
    left, right = ("(" if low_open else "["), (")" if high_open or high == math.inf else "]")
    words = (
        f"a number > {low}"
        if high == math.inf and low_open
        else (f"a number >= {low}" if high == math.inf else f"a number in {left}{low}, {high}{right}")
    )

    def test(value: Any, _: Mapping[str, Any]) -> bool:
        if not _is_number(value):
            return False
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        return above and below

    return Domain(words, test)


def one_of(*options: Any) -> Domain:
    return Domain(
        "one of " + ", ".join(json.dumps(option) for option in options),
        lambda value, _: value in options and type(value) in {type(option) for option in options},
    )


def epochs_before_end() -> Domain:
    """A count of leading epochs (warm-up, frozen architecture) that leaves at least one after it."""
    return Domain(
        "an integer with 0 <= value < epochs",
        lambda value, values: _is_integer(value) and 0 <= value < values.get("epochs", value + 1),
        depends_on=("epochs",),
    )


def search_split() -> Domain:
    """The weights' share of the search images (DARTS's train_portion): each share of
    train_examples keeps the two images a training stream needs (`data.augment.check_stream`)."""

    def test(value: Any, values: Mapping[str, Any]) -> bool:
        if not (_is_number(value) and 0 < value < 1):
            return False
        examples = values.get("train_examples")
        if not _is_integer(examples):
            return True
        weights = math.floor(value * examples)  # as the CIFAR split rounds it
        return weights >= 2 and examples - weights >= 2

    return Domain(
        "a number in (0, 1) that leaves at least 2 of train_examples on each side", test, depends_on=("train_examples",)
    )


MAX_BATCH_SIZE = 65_536  # the papers' largest is 1,024 (ImageNet on 8 GPUs)


def batch_size() -> Domain:
    """Images per step: at least 2 (BatchNorm cannot train on one image: the auxiliary head's 1x1
    map). For a language model (a phase with `bptt`), columns of tokens: train_examples must
    fill the three rows its training loop needs (`data.text.check_rows`)."""

    def test(value: Any, values: Mapping[str, Any]) -> bool:
        if not (_is_integer(value) and 2 <= value <= MAX_BATCH_SIZE):
            return False
        examples = values.get("train_examples")
        return "bptt" not in values or not _is_integer(examples) or examples // value >= 3

    return Domain(
        f"an integer from 2 to {MAX_BATCH_SIZE} (for a language model, at most train_examples // 3)",
        test,
        depends_on=("train_examples",),
    )


def evaluation_columns(examples_key: str) -> Domain:
    """A language model's evaluation batch: columns of tokens that leave the two rows an
    evaluation stream needs (`data.text.check_rows`)."""

    def test(value: Any, values: Mapping[str, Any]) -> bool:
        examples = values.get(examples_key)
        return (
            _is_integer(value)
            and 1 <= value <= MAX_BATCH_SIZE
            and (not _is_integer(examples) or examples // value >= 2)
        )

    return Domain(
        f"an integer from 1 to {MAX_BATCH_SIZE}, at most {examples_key} // 2", test, depends_on=(examples_key,)
    )


def at_most(key: str) -> Domain:
    """A non-negative number no larger than another key's, e.g. a schedule's floor below its start."""
    return Domain(
        f"a number with 0 <= value <= {key}",
        lambda value, values: _is_number(value) and 0 <= value <= values.get(key, value),
        depends_on=(key,),
    )


def list_of(element: Domain, length: int) -> Domain:
    return Domain(
        f"a list of {length} values, each {element.allowed}",
        lambda value, values: (
            isinstance(value, list) and len(value) == length and all(element.test(item, values) for item in value)
        ),
    )


PROBABILITY = number(0, 1)
POSITIVE = number(0, low_open=True)
NON_NEGATIVE = number(0)
# Learning rates: the papers use up to 20 (DARTS's recurrent cell); beyond 1000 is a typo, and
# beyond float32's range (3.4e38) an optimizer step cannot even be taken.
RATE = number(0, 1000, low_open=True)
# Weight decay is a fraction of each weight taken per step: the papers use 5e-7 to 1e-3.
DECAY = number(0, 1)

# Keys shared by the methods' protocol files. A method declares its own keys' domains in
# `Method.protocol_domains`; a key in neither gets the suffix rules of `domain_for`.
DOMAINS: dict[str, Domain] = {
    "epochs": integer(1),
    "batch_size": batch_size(),
    "train_examples": integer(2),
    "test_examples": integer(1),
    "train_portion": search_split(),
    # ImageNet search subsets (PC-DARTS: 10% and 2.5% of every class), disjoint: at most half each, so neither
    # can take every image of a class and starve the other (data.imagenet.per_class_subsets)
    "train_fraction": number(0, 0.5, low_open=True),
    "valid_fraction": number(0, 0.5, low_open=True),
    # Sizes: the papers' networks use 16 to 50 channels and 5 to 20 cells (NAS-RL: 39 layers); the upper
    # bounds leave room for wider experiments while refusing a typo that no machine can build.
    "init_channels": even_integer(2, 128),
    "layers": integer(3, 50),
    "lr": RATE,
    "lr_min": at_most("lr"),
    "lr_gamma": number(0, 1, low_open=True),
    "lr_schedule": one_of("cosine", "exponential", "linear", "constant"),
    "momentum": number(0, 1, high_open=True),
    "weight_decay": DECAY,
    "grad_clip": POSITIVE,
    "order": one_of(1, 2),
    "validation": one_of("every_epoch", "final_epoch"),
    "arch_lr": RATE,
    "arch_betas": list_of(number(0, 1, high_open=True), 2),
    "arch_weight_decay": DECAY,
    "arch_init_std": number(0, 1),  # the official codes use 1e-3 (α = std · randn)
    "arch_init_mean": Domain("a finite number", lambda value, _: _is_number(value)),
    "arch_grad_clip": POSITIVE,
    "arch_batches": one_of("fresh", "epoch_pass"),
    "evaluated_genotype": one_of("final", "last_logged"),
    "nesterov": Domain(  # torch's SGD refuses Nesterov without momentum
        "true (with a momentum above 0) or false",
        lambda value, values: value is False or (value is True and values.get("momentum", 0) > 0),
        depends_on=("momentum",),
    ),
    "auxiliary": one_of(True, False),
    "auxiliary_weight": NON_NEGATIVE,
    "drop_path_prob": number(0, 1, high_open=True),
    "cutout_length": integer(0, 224),  # a side in pixels: 16 on CIFAR; none wider than an ImageNet crop
    "label_smoothing": number(0, 1, high_open=True),
    # language models (PTB, WikiText-2); an example is a token (nasbench_repro/data/text.py)
    "valid_examples": integer(1),
    "valid_batch_size": evaluation_columns("valid_examples"),
    "test_batch_size": evaluation_columns("test_examples"),
    # the papers: 300 to 850 units and windows of 35 (+ up to 20) tokens; the bounds refuse typos
    "hidden_size": integer(1, 4096),
    "bptt": integer(1, 1000),
    "bptt_std": number(0, 1000),
    "bptt_max_delta": integer(0, 1000),
    "asgd_nonmono": integer(1),
    "asgd_trigger": one_of("best_before_last_nonmono", "best_so_far"),
    "activation_regularization": NON_NEGATIVE,
    "temporal_activation_regularization": NON_NEGATIVE,
}


def domain_for(key: str, own: Mapping[str, Domain] | None = None) -> Domain | None:
    """The declared domain of `key` (the method's own first), else one its name implies:
    `*_epochs` leave an epoch after them, `*_lr` are learning rates, `*_prob` and `*dropout*`
    are probabilities, `*_weight_decay` are decays. None: only the type is checked."""
    if own and key in own:
        return own[key]
    if key in DOMAINS:
        return DOMAINS[key]
    if key.endswith("_epochs"):
        return epochs_before_end()
    if key.endswith("_lr"):
        return RATE
    if key.endswith("_prob") or "dropout" in key:
        return number(0, 1, high_open=True)
    if key.endswith("_weight_decay"):
        return DECAY
    return None


def _changed_by(protocol: Protocol, phase: str, key: str) -> str | None:
    how = protocol.provenance.get(phase, {}).get(key)
    if how == "override":
        return "set by --set or --sweep"
    return f"scaled by the {how.partition(':')[2]} budget" if how else None


def _with_change(protocol: Protocol, phase: str, key: str, value: Any) -> str:
    how = _changed_by(protocol, phase, key)
    return f"{key} = {json.dumps(value)}" + (f", {how}" if how else "")


def _check_order(protocol: Protocol, phase: str, key: str, own: Mapping[str, Domain] | None) -> tuple[bool, int]:
    """Single-key rules before rules over several keys; then set by the user, scaled by a budget, from the file."""
    domain = domain_for(key, own)
    how = protocol.provenance.get(phase, {}).get(key)
    return domain is not None and bool(domain.depends_on), 0 if how == "override" else 1 if how else 2


def check_domains(protocol: Protocol, own: Mapping[str, Domain] | None = None, source_file: Path | None = None) -> None:
    """Refuse, in one line naming the key, its value, where it came from and what is allowed,
    a value of any phase that lies outside its domain (or is a non-finite number). A rule over
    several keys runs after the keys it reads passed their own; among the rest, values the
    user set come first, then those a budget scaled, so a refusal names the user's own key
    where it can and shows the other keys' values."""
    for phase, entries in protocol.phases.items():
        values = {key: entry.value for key, entry in entries.items()}
        for key in sorted(values, key=lambda key, phase=phase: _check_order(protocol, phase, key, own)):
            value = values[key]
            domain = domain_for(key, own)
            finite = not (isinstance(value, float) and not math.isfinite(value))
            if finite and (domain is None or domain.test(value, values)):
                continue
            allowed = domain.allowed if domain is not None else "a finite number"
            others = [
                _with_change(protocol, phase, name, values[name])
                for name in (domain.depends_on if domain is not None else ())
                if name in values
            ]
            origin = _changed_by(protocol, phase, key) or f"from {source_file or config_path(protocol.method)}"
            raise UserError(
                f"{protocol.dataset} {phase}.{key} = {json.dumps(value)} ({origin}) is out of range: "
                f"it must be {allowed}" + (f" ({'; '.join(others)})" if others else "")
            )
