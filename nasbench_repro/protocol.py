"""Paper protocols as data: one TOML file per method, one table per dataset and phase.

Every value carries its source, e.g. in `methods/configs/pcdarts.toml`:

    [cifar10.search]
    epochs = { value = 50, source = "PC-DARTS code, train_search.py default @b74702f" }
    drop_path_prob = { value = 0.3, source = "...", alternative = { value = 0.2, source = "..." },
                       note = "why this one" }

A protocol is scaled by a budget (`budgets.py`) and then by the user's `--set` overrides;
the result keeps, per value, where it came from, so a record says exactly what ran.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Iterator, Mapping
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
            "values": self.values(),
            "sources": {phase: {key: entry.describe() for key, entry in entries.items()}
                        for phase, entries in self.phases.items()},
            "changed": {phase: dict(keys) for phase, keys in self.provenance.items() if keys},
        }


def config_path(method: str) -> Path:
    return CONFIG_DIR / f"{method}.toml"


def load_protocol(method: str, dataset: str, path: Path | None = None) -> Protocol:
    """Read `methods/configs/<method>.toml` for one dataset; malformed files fail with one line."""
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
    phases: dict[str, dict[str, Entry]] = {}
    for phase, table in document[dataset].items():
        if phase not in PHASES:
            raise UserError(f"{path}: [{dataset}.{phase}] is not a phase; use one of {', '.join(PHASES)}")
        phases[phase] = {key: _entry(path, f"{dataset}.{phase}.{key}", raw) for key, raw in table.items()}
    return Protocol(method=method, dataset=dataset, paper=paper, phases=phases)


def _entry(path: Path, where: str, raw: Any) -> Entry:
    if not isinstance(raw, dict) or "value" not in raw or "source" not in raw:
        raise UserError(f"{path}: {where} must be {{ value = ..., source = \"...\" }}")
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
    """Check `new` has the type of the protocol's value; ints are accepted where floats are."""
    if current is None or new is None:
        return new
    if isinstance(current, float) and isinstance(new, int | float) and not isinstance(new, bool):
        return float(new)
    if type(new) is type(current) or (isinstance(current, list) and isinstance(new, list)):
        return new
    raise UserError(f"--set {key}={json.dumps(new)}: expected {type(current).__name__} like {json.dumps(current)}")


def apply_overrides(protocol: Protocol, overrides: Mapping[str, Any], active_phases: Iterable[str]) -> None:
    active = list(active_phases)
    for key, value in overrides.items():
        phase, name = resolve_key(protocol, key, active)
        protocol.set_value(phase, name, coerce(protocol.phases[phase][name].value, value, key), "override")
