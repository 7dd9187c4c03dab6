"""Genotypes: the discrete architectures NAS methods output, as immutable, hashable data.

A CNN `Genotype` holds, per cell type, two `(op, input_index)` pairs for each intermediate
node (node j = 2, 3, ... takes pairs 2(j-2) and 2(j-2)+1; input 0 is c_{k-2}, 1 is c_{k-1},
2.. are earlier intermediate nodes) and the nodes concatenated as the cell's output. A
`RecurrentGenotype` holds `(activation, predecessor)` for nodes 1..N of the DARTS RNN cell.

Genotypes come from:
- the published ones, stored with their sources in `reference/genotypes.json`;
- the strings the papers' repositories print (`Genotype(normal=[...], ...)`), read with a
  literal-only parser (never `eval`), so users can paste them;
- JSON (`to_dict` / `to_json`), as run records store them;
- `derive_genotype`, DARTS' rule for turning architecture weights into a cell.
"""

from __future__ import annotations

import ast
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

from nasbench_repro.errors import UserError
from nasbench_repro.spaces.cnn.ops import OP_NAMES

Pair = tuple[str, int]

# quark0/darts @f276dd3 rnn/genotypes.py PRIMITIVES ('none' is a candidate but never derived).
RNN_ACTIVATIONS: tuple[str, ...] = ("none", "tanh", "relu", "sigmoid", "identity")

CNN_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")
RNN_FIELDS = ("recurrent", "concat")


def cell_edge_count(steps: int) -> int:
    """Edges of a DARTS search cell: intermediate node i has i + 2 inputs (14 for 4 nodes)."""
    return steps * (steps + 3) // 2


def edge_primitives(primitives: Sequence[str] | Sequence[Sequence[str]], num_edges: int) -> tuple[tuple[str, ...], ...]:
    """One op list per edge: a flat list is shared by every edge; a list of lists is taken per
    edge (P-DARTS prunes each edge's candidates on its own)."""
    if isinstance(primitives, str) or not primitives:
        raise ValueError(f"primitives must be a non-empty list of op names or of per-edge lists, got {primitives!r}")
    if all(isinstance(name, str) for name in primitives):
        return (tuple(primitives),) * num_edges
    per_edge = tuple(tuple(names) for names in primitives)
    if len(per_edge) != num_edges or any(not names or isinstance(names, str) for names in primitives):
        raise ValueError(f"per-edge primitives need {num_edges} non-empty lists, got {len(per_edge)}")
    return per_edge


# --- the genotype types ----------------------------------------------------------------------------------------


def _snippet(value: Any, limit: int = 60) -> str:
    text = " ".join(str(value).split())
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _pairs(value: Any, what: str) -> tuple[Pair, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise UserError(f"{what} must be a list of (op, input_index) pairs, got {_snippet(value)}")
    pairs = []
    for position, pair in enumerate(value):
        if (
            isinstance(pair, str | bytes)
            or not isinstance(pair, Sequence)
            or len(pair) != 2
            or not isinstance(pair[0], str)
            or not _is_int(pair[1])
        ):
            raise UserError(f"{what} pair {position} must be (op name, input index), got {_snippet(pair)}")
        pairs.append((pair[0], pair[1]))
    return tuple(pairs)


def _concat(value: Any, what: str, first: int, last: int) -> tuple[int, ...]:
    if isinstance(value, range):
        value = list(value)
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise UserError(f"{what} must be a list of node indices or range(a, b), got {_snippet(value)}")
    nodes = tuple(value)
    if not nodes or len(set(nodes)) != len(nodes) or not all(_is_int(node) and first <= node <= last for node in nodes):
        raise UserError(f"{what} {list(nodes)} must list distinct nodes between {first} and {last}")
    return nodes


def _check_cell(pairs: tuple[Pair, ...], which: str) -> None:
    if not pairs or len(pairs) % 2:
        raise UserError(
            f"the {which} cell has {len(pairs)} (op, input) pairs; a cell needs two per intermediate node "
            f"(8 for the 4-node DARTS cell)"
        )
    for position, (op, index) in enumerate(pairs):
        node = 2 + position // 2
        if op not in OP_NAMES:
            raise UserError(
                f"unknown operation {op!r} in the {which} cell (pair {position}); "
                f"known operations: {', '.join(OP_NAMES)}"
            )
        if not 0 <= index < node:
            raise UserError(
                f"the {which} cell's pair {position} ({op!r}, {index}) feeds node {node}, "
                f"whose inputs are 0..{node - 1}"
            )


def _listed(pairs: tuple[Pair, ...]) -> str:
    return "[" + ", ".join(f"({op!r}, {index})" for op, index in pairs) + "]"


def _concat_string(nodes: tuple[int, ...]) -> str:
    if list(nodes) == list(range(nodes[0], nodes[0] + len(nodes))):
        return f"range({nodes[0]}, {nodes[0] + len(nodes)})"
    return str(list(nodes))


class _JSONRoundTrip:
    """`to_json`/`from_json` through the class's own `to_dict`/`from_dict`."""

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str):
        return cls.from_dict(_load_json(text))


@dataclass(frozen=True, repr=False)
class Genotype(_JSONRoundTrip):
    """A CNN cell pair. `reduce` is None for genotypes whose reduction cell is hand-designed
    (GDAS FRC); their `reduce_concat` is kept as published."""

    normal: tuple[Pair, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Pair, ...] | None
    reduce_concat: tuple[int, ...]

    kind: ClassVar[str] = "cnn"

    def __post_init__(self) -> None:
        normal = _pairs(self.normal, "normal")
        _check_cell(normal, "normal")
        reduce = None if self.reduce is None else _pairs(self.reduce, "reduce")
        if reduce is not None:
            _check_cell(reduce, "reduce")
        reduce_last = 1 + len(reduce if reduce is not None else normal) // 2
        object.__setattr__(self, "normal", normal)
        object.__setattr__(self, "reduce", reduce)
        object.__setattr__(self, "normal_concat", _concat(self.normal_concat, "normal_concat", 2, 1 + len(normal) // 2))
        object.__setattr__(self, "reduce_concat", _concat(self.reduce_concat, "reduce_concat", 2, reduce_last))

    def to_dict(self) -> dict[str, Any]:
        return {
            "normal": [list(pair) for pair in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": None if self.reduce is None else [list(pair) for pair in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Genotype:
        _check_keys(data, CNN_FIELDS, optional=("reduce",))
        return cls(data["normal"], data["normal_concat"], data.get("reduce"), data["reduce_concat"])

    def to_official_string(self) -> str:
        """The form the DARTS-family repositories print, e.g. `Genotype(normal=[('sep_conv_3x3', 0), ...], ...)`."""
        reduce = "None" if self.reduce is None else _listed(self.reduce)
        return (
            f"Genotype(normal={_listed(self.normal)}, normal_concat={_concat_string(self.normal_concat)}, "
            f"reduce={reduce}, reduce_concat={_concat_string(self.reduce_concat)})"
        )

    __str__ = to_official_string
    __repr__ = to_official_string

    def check_space(
        self, primitives: Sequence[str], reduce_primitives: Sequence[str] | None = None, steps: int | None = None
    ) -> None:
        """Raise a one-line UserError unless every op is a candidate of the space (and, when given,
        every cell has `steps` intermediate nodes)."""
        cells = [("normal", self.normal, primitives)]
        if self.reduce is not None:
            cells.append(("reduce", self.reduce, reduce_primitives or primitives))
        for which, pairs, allowed in cells:
            if steps is not None and len(pairs) != 2 * steps:
                raise UserError(f"the {which} cell has {len(pairs) // 2} intermediate nodes; this space has {steps}")
            for position, (op, _) in enumerate(pairs):
                if op not in allowed:
                    raise UserError(
                        f"operation {op!r} (the {which} cell's pair {position}) is not in this search "
                        f"space: {', '.join(allowed)}"
                    )


@dataclass(frozen=True, repr=False)
class RecurrentGenotype(_JSONRoundTrip):
    """A DARTS recurrent cell: `(activation, predecessor)` for nodes 1..N; `concat` are the
    nodes averaged into h_t."""

    recurrent: tuple[Pair, ...]
    concat: tuple[int, ...]

    kind: ClassVar[str] = "rnn"

    def __post_init__(self) -> None:
        recurrent = _pairs(self.recurrent, "recurrent")
        if not recurrent:
            raise UserError("a recurrent genotype needs at least one node")
        for position, (activation, predecessor) in enumerate(recurrent):
            node = position + 1
            if activation not in RNN_ACTIVATIONS:
                raise UserError(
                    f"unknown activation {activation!r} at recurrent node {node}; known: {', '.join(RNN_ACTIVATIONS)}"
                )
            if not 0 <= predecessor < node:
                raise UserError(f"recurrent node {node} takes predecessor {predecessor}; it must be 0..{node - 1}")
        object.__setattr__(self, "recurrent", recurrent)
        object.__setattr__(self, "concat", _concat(self.concat, "concat", 1, len(recurrent)))

    def to_dict(self) -> dict[str, Any]:
        return {"recurrent": [list(pair) for pair in self.recurrent], "concat": list(self.concat)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RecurrentGenotype:
        _check_keys(data, RNN_FIELDS)
        return cls(data["recurrent"], data["concat"])

    def to_official_string(self) -> str:
        return f"Genotype(recurrent={_listed(self.recurrent)}, concat={_concat_string(self.concat)})"

    __str__ = to_official_string
    __repr__ = to_official_string


AnyGenotype = Genotype | RecurrentGenotype


def _check_keys(data: Mapping[str, Any], fields: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
    missing = [key for key in fields if key not in data and key not in optional]
    unknown = [key for key in data if key not in fields]
    if missing or unknown:
        problems = ([f"lacks {', '.join(missing)}"] if missing else []) + (
            [f"has unknown keys {', '.join(map(str, unknown))}"] if unknown else []
        )
        raise UserError(f"genotype data {' and '.join(problems)} (expected {', '.join(fields)})")


def _load_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"genotype JSON is malformed: {error}") from None


def genotype_from_dict(data: Mapping[str, Any]) -> AnyGenotype:
    """A CNN or recurrent genotype from its dict; a whole run record is accepted for its `genotype`."""
    if "recurrent" in data:
        return RecurrentGenotype.from_dict(data)
    if "normal" not in data and isinstance(data.get("genotype"), Mapping):
        return genotype_from_dict(data["genotype"])
    return Genotype.from_dict(data)


# --- the safe parser for pasted strings ------------------------------------------------------------------------


def _callee(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _literal(node: ast.expr, field: str) -> Any:
    """A literal value, or `range(a[, b])` with integer literals; anything else is refused."""
    if isinstance(node, ast.Call) and _callee(node.func) == "range":
        if node.keywords or not 1 <= len(node.args) <= 2:
            raise UserError(f"genotype field {field!r}: write range(a, b)")
        bounds = [_literal(argument, field) for argument in node.args]
        if not all(_is_int(bound) for bound in bounds):
            raise UserError(f"genotype field {field!r}: range() takes integers")
        return tuple(range(*bounds))
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, RecursionError):
        raise UserError(
            f"genotype field {field!r} may hold only literal lists, tuples, strings, numbers "
            f"and range(a, b); got {_snippet(ast.unparse(node))}"
        ) from None


def parse_genotype(text: str) -> AnyGenotype:
    """Read `Genotype(normal=[...], normal_concat=range(2, 6), reduce=[...], reduce_concat=[2, 3, 4, 5])`
    (or `Genotype(recurrent=[...], concat=...)`) by walking literal syntax nodes; nothing is executed."""
    expected = "Genotype(normal=[...], normal_concat=..., reduce=[...], reduce_concat=...)"
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError) as error:
        reason = getattr(error, "msg", None) or str(error) or type(error).__name__
        raise UserError(f"cannot parse genotype string {_snippet(text)}: {reason}") from None
    call = tree.body
    if not isinstance(call, ast.Call) or _callee(call.func) != "Genotype":
        raise UserError(f"expected {expected}, got {_snippet(text)}")
    keywords = [keyword.arg for keyword in call.keywords]
    if None in keywords:
        raise UserError("a genotype string cannot use **arguments")
    fields = RNN_FIELDS if "recurrent" in keywords or (len(call.args) == 2 and not keywords) else CNN_FIELDS
    if len(call.args) > len(fields):
        raise UserError(f"expected {expected}: too many positional values")
    values: dict[str, Any] = {}
    for name, node in [*zip(fields, call.args, strict=False), *((k.arg, k.value) for k in call.keywords)]:
        if name in values:
            raise UserError(f"genotype field {name!r} is given twice")
        values[name] = _literal(node, name)
    return genotype_from_dict(values)


# --- published genotypes ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublishedGenotype:
    """A genotype from a paper's repository, with where it comes from."""

    name: str
    genotype: AnyGenotype
    source: str
    aliases: tuple[str, ...] = ()
    title: str | None = None
    search: str | None = None
    note: str | None = None

    @property
    def kind(self) -> str:
        return self.genotype.kind


def _name_key(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


@cache
def published_genotypes() -> tuple[PublishedGenotype, ...]:
    """Every genotype in `reference/genotypes.json`, CNN cells first."""
    data = json.loads(resources.files("nasbench_repro").joinpath("reference/genotypes.json").read_text("utf-8"))
    entries = []
    for kind in ("cnn", "rnn"):
        for name, entry in data[kind].items():
            entries.append(
                PublishedGenotype(
                    name=name,
                    genotype=genotype_from_dict(entry["genotype"]),
                    source=entry["source"],
                    aliases=tuple(entry.get("aliases", ())),
                    title=entry.get("title"),
                    search=entry.get("search"),
                    note=entry.get("note"),
                )
            )
    return tuple(entries)


def find_published(name: str, kind: str | None = None) -> PublishedGenotype | None:
    """Look a name up case-insensitively among names and aliases; `rnn:NAME` / `cnn:NAME` pick
    the kind where CNN and RNN cells share a name (DARTS_V2). CNN cells win otherwise."""
    prefix, colon, rest = name.partition(":")
    if colon and _name_key(prefix) in ("cnn", "rnn"):
        kind, name = _name_key(prefix), rest
    key = _name_key(name)
    for entry in published_genotypes():
        if (kind is None or entry.kind == kind) and key in {_name_key(entry.name), *map(_name_key, entry.aliases)}:
            return entry
    return None


def published_names(kind: str = "cnn") -> list[str]:
    return [entry.name for entry in published_genotypes() if entry.kind == kind]


def get_published(name: str, kind: str | None = None) -> PublishedGenotype:
    entry = find_published(name, kind)
    if entry is None:
        raise _unknown_name(name, kind)
    return entry


def _unknown_name(name: str, kind: str | None) -> UserError:
    other = find_published(name) if kind is not None else None
    if other is not None:
        return UserError(
            f"{name!r} is {_KIND_NAMES[other.kind]} cell, but {_KIND_NAMES[kind]} one is needed here "
            f"(the dataset decides); published ones: {', '.join(published_names(kind))}"
        )
    return UserError(
        f"unknown genotype {name!r}; published ones: {', '.join(published_names(kind or 'cnn'))} "
        f"(or give a JSON file or a pasted Genotype(...) string)"
    )


# --- resolving whatever the user gave ----------------------------------------------------------------------------


_KIND_NAMES = {"cnn": "a CNN", "rnn": "an RNN"}


def _from_text(text: str, where: str) -> AnyGenotype:
    if text.startswith("{"):
        data = _load_json(text)
        if not isinstance(data, Mapping):
            raise UserError(f"{where}: genotype JSON must be an object")
        return genotype_from_dict(data)
    return parse_genotype(text)


def _from_file(path: Path) -> AnyGenotype:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read genotype file {path}: {error}") from None
    return _from_text(text, str(path))


def _from_string(value: str, kind: str | None) -> AnyGenotype:
    text = value.strip()
    if not text:
        raise UserError("empty genotype: give a published name, a JSON file or a pasted Genotype(...) string")
    if text.startswith("{") or "(" in text:
        return _from_text(text, "pasted genotype")
    entry = find_published(text, kind)
    if entry is not None:
        return entry.genotype
    path = Path(text).expanduser()
    if path.is_file():
        return _from_file(path)
    if path.suffix == ".json":
        raise UserError(f"genotype file {text} does not exist")
    raise _unknown_name(text, kind)


def resolve_genotype(value: Any, kind: str | None = None) -> AnyGenotype:
    """A genotype from a Genotype, a dict (as records store it, or a whole record), a published
    name, a path to a JSON (or pasted-string) file, or a pasted official string.

    `kind` ("cnn" or "rnn") restricts what is accepted and which published cell a shared name means.
    """
    if isinstance(value, Genotype | RecurrentGenotype):
        genotype = value
    elif isinstance(value, Mapping):
        genotype = genotype_from_dict(value)
    elif isinstance(value, os.PathLike):
        genotype = _from_file(Path(value))
    elif isinstance(value, str):
        genotype = _from_string(value, kind)
    else:
        raise UserError(f"cannot make a genotype from a {type(value).__name__}")
    if kind is not None and genotype.kind != kind:
        raise UserError(
            f"expected {_KIND_NAMES.get(kind, kind)} genotype, got {_KIND_NAMES[genotype.kind]} one: "
            f"{_snippet(genotype)}"
        )
    return genotype


# --- derivation -------------------------------------------------------------------------------------------------


def _as_list(values: Any) -> list:
    if hasattr(values, "detach"):  # a torch tensor
        return values.detach().cpu().tolist()
    if hasattr(values, "tolist"):  # a numpy array
        return values.tolist()
    return list(values)


def derive_cell(
    weights: Any, primitives: Sequence[str] | Sequence[Sequence[str]], steps: int = 4, edge_scale: Any = None
) -> tuple[Pair, ...]:
    """DARTS' discretization of one cell.

    `weights` are [num_edges, num_ops] op weights (already normalized) or one row per edge;
    `edge_scale` [num_edges] multiplies each row first (PC-DARTS edge normalization). For each
    intermediate node keep the two inputs whose strongest non-`none` op weighs most, strongest
    first (ties: the lower input), and on each its strongest non-`none` op (ties: the earlier op).
    """
    num_edges = cell_edge_count(steps)
    rows = [[float(value) for value in _as_list(row)] for row in _as_list(weights)]
    names = edge_primitives(primitives, num_edges)
    scales = [1.0] * num_edges if edge_scale is None else [float(value) for value in _as_list(edge_scale)]
    if len(rows) != num_edges or len(scales) != num_edges:
        raise ValueError(f"{steps} nodes need {num_edges} edges; got {len(rows)} weight rows and {len(scales)} scales")
    pairs: list[Pair] = []
    first_edge = 0
    for node in range(steps):
        strongest = {}  # input index -> (weight, op)
        for source in range(node + 2):
            edge = first_edge + source
            if len(rows[edge]) != len(names[edge]):
                raise ValueError(f"edge {edge} has {len(rows[edge])} weights for {len(names[edge])} ops")
            best = None
            for name, weight in zip(names[edge], rows[edge], strict=True):
                if name != "none" and (best is None or weight * scales[edge] > best[0]):
                    best = (weight * scales[edge], name)
            if best is not None:
                strongest[source] = best
        chosen = sorted(strongest, key=lambda source: -strongest[source][0])[:2]
        if len(chosen) < 2:
            raise ValueError(f"node {node + 2} has fewer than two inputs with a non-'none' op")
        pairs.extend((strongest[source][1], source) for source in chosen)
        first_edge += node + 2
    return tuple(pairs)


def derive_genotype(
    normal_weights: Any,
    reduce_weights: Any,
    primitives: Sequence[str] | Sequence[Sequence[str]],
    steps: int = 4,
    normal_edge_scale: Any = None,
    reduce_edge_scale: Any = None,
    reduce_primitives: Sequence[str] | Sequence[Sequence[str]] | None = None,
    multiplier: int | None = None,
) -> Genotype:
    """Both cells by `derive_cell`; the output concatenates the last `multiplier` nodes (default: all)."""
    concat = range(2 + steps - (multiplier or steps), 2 + steps)
    return Genotype(
        normal=derive_cell(normal_weights, primitives, steps, normal_edge_scale),
        normal_concat=concat,
        reduce=derive_cell(reduce_weights, reduce_primitives or primitives, steps, reduce_edge_scale),
        reduce_concat=concat,
    )
