"""`nasbench list`: every method and dataset of the mission, and which are implemented."""

from __future__ import annotations

import argparse

from tabulate import tabulate

from nasbench_repro import catalog
from nasbench_repro.budgets import BUDGETS
from nasbench_repro.data import dataset_names, resolver_exists


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("list", help="list methods, datasets and budgets")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    mission = {info.name: info for info in catalog.MISSION_METHODS}
    rows = []
    for name in catalog.method_names():
        info = mission.get(name)
        rows.append(
            [
                name,
                info.title if info else "(plug-in)",
                info.paper if info else "",
                "yes" if catalog.is_implemented(name) else "not yet",
            ]
        )
    print(tabulate(rows, headers=["method", "what", "paper", "implemented"]))
    print()

    dataset_rows = [
        [name, catalog.MISSION_DATASETS.get(name, "(plug-in)"), "yes" if resolver_exists(name) else "not yet"]
        for name in dataset_names()
    ]
    print(tabulate(dataset_rows, headers=["dataset", "what", "implemented"]))
    print()
    print(tabulate([[budget.name, budget.description] for budget in BUDGETS.values()], headers=["budget", "what"]))
    return 0
