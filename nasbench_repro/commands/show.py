"""`nasbench show RUN_ID|PATH`: the summary of a stored record, as `nasbench run` ends with it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nasbench_repro.errors import UserError
from nasbench_repro.leaderboard.summary import render, summarise_files
from nasbench_repro.records import record_files


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "show",
        help="summarise a stored run record",
        description="Print a record's summary: the leaderboard row it makes (outcome beside the paper's "
        "number, verdict, cost), its genotype and where it is.",
    )
    parser.add_argument("record", metavar="RUN_ID|PATH", help="a run id (looked up under --results-dir) or a file")
    parser.add_argument("--results-dir", type=Path, default=Path("results"), metavar="DIR")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(handler=handle)


def find_record(name: str, results_dir: Path) -> Path:
    """A record file given as a path, or by its run id under `results_dir`."""
    path = Path(name)
    if path.is_file():
        return path
    matches = [candidate for candidate in record_files(results_dir) if candidate.stem == name]
    if not matches:
        raise UserError(
            f"no record {name!r}: not a file, and no {name}.json under {results_dir}/<method>/<dataset>/"
            f"<budget>/ (give the record's path, or --results-dir)"
        )
    return matches[0]  # a run id names one run: the runner writes it once


def handle(args: argparse.Namespace) -> int:
    [entry] = summarise_files([find_record(args.record, args.results_dir)])
    print(json.dumps(entry, indent=2) if args.json else render([entry]))
    return 0
