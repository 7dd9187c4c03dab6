"""The `nasbench` command. Each subcommand lives in `nasbench_repro/commands/<name>.py`
and exposes `register(subparsers)`; handlers return an exit code.

Exit codes: 0 done, 1 a run failed (e.g. diverged) or a check found a regression,
2 bad input (one line on stderr, no traceback), 130 interrupted (the run is recorded
as interrupted and can be resumed).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from nasbench_repro import __version__
from nasbench_repro.errors import RunFailure, UserError

COMMANDS = ("run", "show", "list", "profile", "genotype", "leaderboard", "stability")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the problem (exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="nasbench",
        description="Reproduce neural architecture search papers and measure what they cost.",
    )
    parser.add_argument("--version", action="version", version=f"nasbench-repro {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"nasbench_repro.commands.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except UserError as error:
        print(f"nasbench: error: {error}", file=sys.stderr)
        return error.exit_code
    except RunFailure as error:
        print(f"nasbench: run failed: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("nasbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
