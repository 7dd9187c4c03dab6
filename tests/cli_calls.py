"""Calling the CLI in-process from tests: exit code, stdout and stderr, and the tiny method's run arguments."""

from nasbench_repro.cli import main


def cli(capsys, *args):
    """Run the CLI in-process; argparse's own errors exit through SystemExit."""
    try:
        code = main(list(args))
    except SystemExit as exit:
        code = exit.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def tiny_run_args(paths, *extra):
    """`nasbench run` of the tiny test method on its toy dataset, writing under `paths`."""
    return [
        "run",
        "tiny",
        "--dataset",
        "toy",
        "--results-dir",
        str(paths.results_dir),
        "--runs-dir",
        str(paths.runs_dir),
        "--data-root",
        str(paths.data_root),
        *extra,
    ]
