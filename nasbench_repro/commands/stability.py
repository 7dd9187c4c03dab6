"""`nasbench stability METHOD --dataset D`: the seed-stability gate (exit 1 on a regression)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from nasbench_repro.budgets import BUDGETS
from nasbench_repro.errors import UserError
from nasbench_repro.leaderboard import stability
from nasbench_repro.leaderboard.aggregate import given_genotype, primary_metric
from nasbench_repro.leaderboard.claims import load_claims
from nasbench_repro.records import load_records


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "stability",
        help="check the latest seeds of a method against its stored band",
        description="Compare the mean of the newest complete record per seed with a baseline band "
        "(mean ± k·std) or, at the paper budget with no baseline, the paper's spread. "
        "Exit 0 within the band, 1 outside it, 2 on unusable input.",
    )
    parser.add_argument("method", metavar="METHOD")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--budget", choices=list(BUDGETS), help="required when records of several budgets exist")
    parser.add_argument("--variant", help="required when records of several variants exist")
    parser.add_argument(
        "--genotype", metavar="CELL", help="for evaluation-only runs: the cell they trained, required when several were"
    )
    parser.add_argument(
        "--data",
        metavar="NAME",
        help="the data that actually ran (the dataset or its stand-in, e.g. synthetic-shapes), "
        "required when records of both exist",
    )
    parser.add_argument("--metric", help="default: test_error_pct, or test_ppl on ptb and wt2")
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="FILE",
        help="default: <results-dir>/baselines/<method>__<dataset>[-<stand-in>]__<budget>__<variant>[__<cell>].json",
    )
    parser.add_argument(
        "--k",
        type=float,
        metavar="K",
        help=f"band half-width in standard deviations (default: the baseline's, else {stability.DEFAULT_K})",
    )
    parser.add_argument(
        "--update-baseline",
        action="store_true",
        help="store the current seeds' mean ± std as the new baseline instead of checking",
    )
    parser.add_argument("--results-dir", type=Path, default=Path("results"), metavar="DIR")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    if args.k is not None and not 0 < args.k < math.inf:  # an infinite band would pass anything
        raise UserError(f"--k must be a positive finite number, not {args.k:g}")
    genotype = given_genotype({"phase": "evaluate", "genotype": args.genotype}) if args.genotype else None
    seeds = stability.select_seed_set(
        load_records(args.results_dir),
        args.method,
        args.dataset,
        args.metric or primary_metric(args.dataset),
        args.budget,
        args.variant,
        genotype,
        args.data,
    )
    baseline_file = args.baseline or stability.baseline_path(args.results_dir, seeds)
    stability.check_not_a_record_location(args.results_dir, baseline_file)
    if args.update_baseline:
        band = stability.write_baseline(baseline_file, seeds, args.k or stability.DEFAULT_K)
        print(stability.render(seeds, band, f"baseline written deliberately to {baseline_file}"))
        return 0
    band = stability.choose_band(seeds, baseline_file, load_claims(), args.k)
    passed, verdict = stability.gate(seeds, band)
    print(stability.render(seeds, band, verdict))
    return 0 if passed else 1
