"""`nasbench run METHOD`: search, evaluate or reproduce, one record per seed (and sweep value)."""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

from nasbench_repro import catalog
from nasbench_repro.budgets import BUDGETS
from nasbench_repro.errors import UserError
from nasbench_repro.executors import KINDS, ExecutorChoice
from nasbench_repro.leaderboard.summary import render, summarise_files
from nasbench_repro.protocol import parse_assignment, parse_value
from nasbench_repro.runner import Paths, execute, resolve_protocol
from nasbench_repro.seeding import DETERMINISTIC, FAST
from nasbench_repro.spec import DEVICES, MEMORY_FORMATS, PRECISIONS, RUN_PHASES, RunSpec


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a method (search, evaluate or both) and store its records",
        description="Run a NAS method and write one record per seed under --results-dir.",
    )
    parser.add_argument("method", metavar="METHOD", help="a method name (see `nasbench list`)")
    parser.add_argument("--dataset", help="cifar10, imagenet, ptb or wt2 (default: the method's headline dataset)")
    parser.add_argument(
        "--phase",
        choices=list(RUN_PHASES),
        default="reproduce",
        help="search, evaluate a given genotype, or reproduce = search then evaluate (default)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], metavar="SEED")
    parser.add_argument(
        "--budget",
        choices=list(BUDGETS),
        default="paper",
        help="paper (as published), reduced, or smoke (minutes on a CPU; not a reproduction)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a protocol value, e.g. --set search.epochs=10 (repeatable)",
    )
    parser.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="one run per value, e.g. --sweep k=1,2,4,8 (repeatable: the product is run)",
    )
    parser.add_argument(
        "--variant",
        metavar="NAME",
        help="a named variant of the method's protocol (e.g. random --variant darts-baseline)",
    )
    parser.add_argument("--genotype", help="for --phase evaluate: a registered name, a JSON file or a pasted string")
    parser.add_argument("--data-root", type=Path, default=Path("data"), metavar="DIR")
    parser.add_argument("--results-dir", type=Path, default=Path("results"), metavar="DIR")
    parser.add_argument(
        "--runs-dir",
        type=Path,
        default=Path("runs"),
        metavar="DIR",
        help="checkpoints and logs (default: runs/, git-ignored)",
    )
    parser.add_argument("--device", choices=list(DEVICES), default="auto")
    parser.add_argument(
        "--precision", choices=list(PRECISIONS), default="fp32", help="fp32, or bf16 autocast (CUDA only)"
    )
    add_memory_format_option(parser)
    parser.add_argument(
        "--fast", action="store_true", help="allow nondeterministic kernels, cudnn autotuning and TF32 (recorded)"
    )
    parser.add_argument(
        "--allow-unofficial-data",
        action="store_true",
        help="accept dataset files whose checksums differ from the official release",
    )
    parser.add_argument("--resume", metavar="RUN_ID", help="continue an interrupted run from its last checkpoint")
    parser.add_argument(
        "--executor",
        choices=list(KINDS),
        default="local",
        help="where black-box searches evaluate candidates: a local process pool (default) or Slurm",
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="local: CPU worker processes (default: one per core; one per GPU on CUDA; 0: this "
        "process); slurm: jobs running at once",
    )
    parser.add_argument("--slurm-partition", metavar="NAME", help="the Slurm partition for --executor slurm")
    parser.set_defaults(handler=handle)


def sweep_overrides(assignments: list[str], sweeps: list[str]) -> list[dict]:
    """The override sets to run: the fixed `--set` values times the product of every `--sweep`."""
    fixed = dict(parse_value_pair(text) for text in assignments)
    axes = []
    for text in sweeps:
        key, raw = parse_assignment(text)
        values = [parse_value(item.strip()) for item in raw.split(",") if item.strip()]
        if not values:
            raise UserError(f"--sweep {text!r}: give at least one value, e.g. --sweep k=1,2,4,8")
        if key in fixed:
            raise UserError(f"{key!r} is both --set and --sweep; keep one")
        axes.append([(key, value) for value in values])
    return [{**fixed, **dict(combination)} for combination in itertools.product(*axes)]


def add_memory_format_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--memory-format",
        choices=list(MEMORY_FORMATS),
        default="auto",
        help="layout of image networks' tensors; auto: contiguous (channels_last is faster on CPU but oneDNN "
        "aborts on GDAS's fixed reduction cell; recorded)",
    )


def parse_value_pair(text: str) -> tuple[str, object]:
    key, raw = parse_assignment(text)
    return key, parse_value(raw)


def handle(args: argparse.Namespace) -> int:
    method = catalog.get_method(args.method)  # unknown or unimplemented: one line, exit 2
    paths = Paths(results_dir=args.results_dir, runs_dir=args.runs_dir, data_root=args.data_root)
    executor = ExecutorChoice(args.executor, args.workers, slurm_partition=args.slurm_partition)
    if args.resume:
        outcome = execute(_spec(args, args.seeds[0], {}), paths, resume=args.resume, executor=executor)
        exit_code = _report(outcome)
        _print_summary([outcome.record_path])
        return exit_code
    combinations = sweep_overrides(args.overrides, args.sweep)
    for overrides in combinations:  # a bad value anywhere in a sweep stops it before its first run
        resolve_protocol(method, _spec(args, args.seeds[0], overrides))
    exit_code, written = 0, []
    for overrides, seed in itertools.product(combinations, args.seeds):
        outcome = execute(_spec(args, seed, overrides), paths, executor=executor)
        written.append(outcome.record_path)
        exit_code = max(exit_code, _report(outcome))
        if outcome.status == "interrupted":
            break
    _print_summary(written)
    return exit_code


def _spec(args: argparse.Namespace, seed: int, overrides: dict) -> RunSpec:
    return RunSpec(
        method=args.method,
        dataset=args.dataset or catalog.headline_dataset(args.method),
        phase=args.phase,
        seed=seed,
        budget=args.budget,
        overrides=overrides,
        variant=args.variant,
        genotype=args.genotype,
        device=args.device,
        precision=args.precision,
        memory_format=args.memory_format,
        determinism=FAST if args.fast else DETERMINISTIC,
        allow_unofficial_data=args.allow_unofficial_data,
    )


def _print_summary(record_paths: list[Path]) -> None:
    """What the records just written found, as the leaderboard would show them. On stderr, with
    the progress and notices: stdout keeps one record path per line for scripts."""
    print("\n" + render(summarise_files(record_paths)), file=sys.stderr, flush=True)


def _report(outcome) -> int:
    print(outcome.record_path, flush=True)
    if outcome.status == "interrupted":
        print(f"nasbench: interrupted; resume with --resume {outcome.run_id}", file=sys.stderr)
        return 130
    if outcome.status == "failed":
        print(f"nasbench: run failed: {outcome.reason}", file=sys.stderr)
        return 1
    return 0
