"""P-DARTS: Progressive Differentiable Architecture Search: Bridging the Depth Gap between
Search and Evaluation (Chen et al., ICCV 2019).

DARTS (first order), searched in stages of growing depth on shrinking sets of ops:

    for each stage s (5, 11, 17 cells):
        build a fresh supernet whose edges hold the ops the last stage kept (8, 5, 3), with
            fresh α, weights and optimizers
        train w alone for the first `warmup_epochs`, then alternate α and w steps
        follow each skip connection with dropout: rate p_s (E - e - 1) / E while α is frozen,
            then p_s exp(-decay (e - warmup_epochs))
        keep on each edge the ops with the largest softmax(α)
    derive the cell from the last stage's α as DARTS does (`none` excluded); then, while the
    normal cell holds more than M = 2 skip connections, zero the weight of its weakest chosen
    skip connection and derive again.

Facts from chenxin061/pdarts @b880e87 train_search.py (`num_to_keep`, `add_layers`,
`dropout_rate`, `eps_no_archs`, `scale_factor`, `get_min_k`, `delete_min_sk_prob`) and
model_search.py (dropout after the identity skip only).
"""

from __future__ import annotations

import functools
import itertools
import math

import torch

from nasbench_repro.differentiable import BilevelSearch, DifferentiableMethod, SearchRun, Stage
from nasbench_repro.protocol import POSITIVE, Domain, integer, one_of
from nasbench_repro.spaces.cnn.supernet import MixedOp, set_skip_dropout
from nasbench_repro.spaces.genotypes import Genotype, Pair, cell_edge_count, derive_cell


def prune(weights: list[list[float]], primitives, keep: int) -> list[list[str]]:
    """Keep the `keep` ops of each edge with the largest weight (ties drop the earlier op, as
    repeated argmin does); `none` competes like any op until the last stage (`final_genotype`)."""
    kept = []
    for row, ops in zip(weights, primitives, strict=True):
        order = sorted(range(len(ops)), key=lambda position: row[position])
        dropped = set(order[: max(len(ops) - keep, 0)])
        kept.append([op for position, op in enumerate(ops) if position not in dropped])
    return kept


def cap_skip_connections(weights: list[list[float]], primitives, limit: int) -> tuple[Pair, ...]:
    """DARTS' derivation, then, while more than `limit` chosen edges are skip connections, zero
    the weight of the weakest of them and derive again (softmax weights are positive, so a
    zeroed skip connection loses to the edge's other ops; one that is its edge's only op
    besides `none`, possible only with fewer than 3 ops kept, stays)."""
    weights = [list(row) for row in weights]
    while True:
        pairs = derive_cell(weights, primitives)
        skips = []
        for position, (op, source) in enumerate(pairs):
            if op == "skip_connect":
                edge = cell_edge_count(position // 2) + source
                column = primitives[edge].index("skip_connect")
                skips.append((weights[edge][column], edge, column))
        weakest, edge, column = min(skips, default=(None, None, None))
        if len(skips) <= limit or weakest == 0.0:
            return pairs
        weights[edge][column] = 0.0


def _stage_epochs(total: int, stages: int) -> list[int]:
    return [total * (stage + 1) // stages - total * stage // stages for stage in range(stages)]


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _per_stage(element, allowed: str) -> Domain:
    """A list with one value per stage (as many as `ops_kept` has), each accepted by `element`."""
    return Domain(
        f"a list of {allowed}, one per stage (as many as ops_kept has)",
        lambda value, values: (
            isinstance(value, list) and len(value) == len(values["ops_kept"]) and all(element(item) for item in value)
        ),
        depends_on=("ops_kept",),
    )


def _stage_count(values) -> int:
    """Stages of a search phase; an evaluation phase has no `ops_kept` and trains in one go."""
    return len(values.get("ops_kept", [1]))


class PDARTS(DifferentiableMethod):
    name = "pdarts"
    search_refusals = {
        "rnn": "P-DARTS searched CNN cells only (its paper and chenxin061/pdarts have no recurrent search)"
    }
    protocol_domains = {
        "order": one_of(1),  # P-DARTS updates α with a first-order gradient
        "ops_kept": Domain(
            "a decreasing list of integers ending in 1: the ops each edge keeps after each stage",
            lambda value, _: (
                isinstance(value, list)
                and bool(value)
                and value[-1] == 1
                and all(_is_count(item) for item in value)
                and all(a > b for a, b in itertools.pairwise(value))
            ),
        ),
        "epochs": Domain(
            "an integer >= 1 and >= the number of stages (len(ops_kept))",
            lambda value, values: _is_count(value) and value >= max(_stage_count(values), 1),
            depends_on=("ops_kept",),
        ),
        "warmup_epochs": Domain(
            "an integer with 0 <= value < the epochs of the shortest stage",
            lambda value, values: (
                _is_count(value) and 0 <= value < min(_stage_epochs(values["epochs"], _stage_count(values)))
            ),
            depends_on=("epochs", "ops_kept"),
        ),
        "add_layers": _per_stage(lambda item: _is_count(item) and 0 <= item <= 50, "integers from 0 to 50"),
        "add_channels": _per_stage(
            lambda item: _is_count(item) and 0 <= item <= 512 and item % 2 == 0, "even integers from 0 to 512"
        ),
        "skip_dropout": _per_stage(
            lambda item: isinstance(item, int | float) and not isinstance(item, bool) and 0 <= item < 1,
            "probabilities in [0, 1)",
        ),
        "skip_dropout_decay": POSITIVE,
        "max_skip_connections": integer(0, 8),
        "evaluated_genotype": one_of("final"),
    }

    def stages(self, protocol) -> list[Stage]:
        epochs = _stage_epochs(protocol.epochs, len(protocol.ops_kept))
        return [
            Stage(
                index,
                epochs[index],
                protocol.layers + protocol.add_layers[index],
                protocol.init_channels + protocol.add_channels[index],
                protocol.skip_dropout[index],
            )
            for index in range(len(epochs))
        ]

    def edge_factory(self, protocol):
        return functools.partial(MixedOp, skip_dropout=True)

    def begin_epoch(self, search: BilevelSearch, stage: Stage, epoch: int) -> dict[str, float]:
        frozen = search.protocol.warmup_epochs
        if epoch < frozen:
            rate = stage.skip_dropout * (stage.epochs - epoch - 1) / stage.epochs
        else:
            rate = stage.skip_dropout * math.exp(-(epoch - frozen) * search.protocol.skip_dropout_decay)
        set_skip_dropout(search.supernet, rate)
        return {"skip_dropout": rate}

    def next_primitives(self, search: BilevelSearch, following: Stage) -> dict[str, list[list[str]]]:
        keep = search.protocol.ops_kept[following.index - 1]
        return {cell: prune(rows, search.primitives[cell], keep) for cell, rows in _softmax_rows(search).items()}

    def final_genotype(self, run: SearchRun) -> Genotype:
        """The last pruning (one op per edge; `none` dropped first, get_min_k_no_zero) and the two
        strongest edges per node by their best other op: that is DARTS' derivation on the last
        stage's α. Then the cap on the normal cell's skip connections."""
        search = run.search
        rows = _softmax_rows(search)
        normal = cap_skip_connections(rows["normal"], search.primitives["normal"], search.protocol.max_skip_connections)
        concat = range(2, 2 + len(normal) // 2)
        return Genotype(normal, concat, derive_cell(rows["reduce"], search.primitives["reduce"]), concat)


def _softmax_rows(search: BilevelSearch) -> dict[str, list[list[float]]]:
    with torch.no_grad():
        return {cell: torch.softmax(alpha, dim=-1).cpu().tolist() for cell, alpha in search.arch.ops.items()}
