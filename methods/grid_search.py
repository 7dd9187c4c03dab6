"""Grid search: evaluate every architecture of a declared finite grid, in a fixed order.

The harness's own baseline (no paper): the grid is a restricted cell space named in the
protocol (`ops`, `nodes`, whether the reduction cell repeats the normal one). Enumeration
is exhaustive and deterministic, and an architecture isomorphic to an earlier one is not a
new grid point (the space's canonical form decides). The budget's `architectures` says how
many grid points a run may evaluate; the record says how many the grid has and how many
were covered.
"""

from __future__ import annotations

import math
from typing import Any

from nasbench_repro.blackbox import BLACKBOX_DOMAINS, BlackBoxMethod, chunks
from nasbench_repro.protocol import Domain

MAX_GRID_CHOICES = 10_000_000  # (input, op) choices over a cell's nodes: beyond this, enumeration alone takes minutes


def _grid_choices(nodes: int, values: dict) -> int:
    """An upper bound on the cells enumeration walks through: per node, two (input, op) picks."""
    ops = len(values.get("ops") or ())
    return math.prod(((node + 2) * ops) ** 2 for node in range(nodes))


class GridSearch(BlackBoxMethod):
    name = "grid"
    protocol_domains = {
        **BLACKBOX_DOMAINS,
        "space": Domain(
            "cell (grids are declared over cell spaces)",
            lambda value, values: value == "cell" and BLACKBOX_DOMAINS["space"].test(value, values),
        ),
        "nodes": Domain(
            f"an integer >= 1 whose grid, with these ops, has at most {MAX_GRID_CHOICES:,} choices "
            f"to enumerate (per node (inputs x ops) squared, multiplied over nodes)",
            lambda value, values: (
                isinstance(value, int)
                and not isinstance(value, bool)
                and value >= 1
                and _grid_choices(value, values) <= MAX_GRID_CHOICES
            ),
            depends_on=("ops",),
        ),
    }

    def start(self) -> dict[str, Any]:
        self.cells = self.space.distinct_cells()
        self.grid_points = self.space.grid_size(self.cells)
        return {}

    def round_sizes(self) -> list[int]:
        return chunks(min(self.protocol.architectures, self.grid_points), self.protocol.round_size)

    def propose(self, count: int) -> list[Any]:
        done = len(self.history)
        return [self.space.grid_point(self.cells, index) for index in range(done, done + count)]

    def summary(self) -> dict[str, Any]:
        return {
            "grid_points": self.grid_points,
            "grid_points_evaluated": len(self.history),
            "grid_coverage": len(self.history) / self.grid_points,
        }
