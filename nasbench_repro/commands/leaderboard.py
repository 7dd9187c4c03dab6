"""`nasbench leaderboard`: regenerate the Markdown, HTML and PNG reports from results/."""

from __future__ import annotations

import argparse
from pathlib import Path

from nasbench_repro.leaderboard.report import write_reports


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "leaderboard",
        help="rebuild the leaderboard reports from the run records",
        description="Aggregate every record under --results-dir beside the papers' numbers and write "
        "leaderboard.md, leaderboard.html and the plots into --out.",
    )
    parser.add_argument("--results-dir", type=Path, default=Path("results"), metavar="DIR")
    parser.add_argument("--out", type=Path, default=Path("reports"), metavar="DIR")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    for path in write_reports(args.results_dir, args.out):
        print(path)
    return 0
