"""nox sessions for nasbench-repro.

Every session runs in one shared virtual environment (.nox/shared), created on first use
and reinstalled only when pyproject.toml changes, so torch installs once.

    nox -s reproduce-pcdarts                  # search + evaluate PC-DARTS on CIFAR-10
    nox -s reproduce-pcdarts -- --budget smoke --data-root ROOT
    nox -s tests                              # the test suite (extra args go to pytest)
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from nasbench_repro.catalog import MISSION_METHODS  # noqa: E402  (stdlib-only module: no torch needed here)

nox.options.default_venv_backend = "none"
nox.options.sessions = ["lint", "tests", "leaderboard"]

SHARED_ENV = ROOT / ".nox" / "shared"


def shared_env(session: nox.Session) -> Path:
    """The shared environment's bin/ folder, creating or refreshing it when needed."""
    python = SHARED_ENV / "bin" / "python"
    if not python.exists():
        session.run(sys.executable, "-m", "venv", str(SHARED_ENV), external=True)
    stamp = SHARED_ENV / ".installed-pyproject-sha256"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != digest:
        session.run(str(python), "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[test]", external=True)
        stamp.write_text(digest)
    return SHARED_ENV / "bin"


def run_in_env(session: nox.Session, tool: str, *args: str) -> None:
    session.run(str(shared_env(session) / tool), *args, external=True)


def has_cuda(session: nox.Session) -> bool:
    output = session.run(
        str(shared_env(session) / "python"),
        "-c",
        "import torch; print(torch.cuda.is_available())",
        external=True,
        silent=True,
    )
    return "True" in (output or "")


def budget_arguments(session: nox.Session) -> list[str]:
    """The paper budget on a CUDA machine, smoke on a CPU, unless the user chose one."""
    if any(arg == "--budget" or arg.startswith("--budget=") for arg in session.posargs):
        return []
    if has_cuda(session):
        return ["--budget", "paper"]
    session.log(
        "No CUDA device: running the smoke budget (minutes on a CPU; it checks the code, it does not "
        "reproduce the paper). Pass --budget to choose."
    )
    return ["--budget", "smoke"]


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite (CPU), slow tests included, as CI runs it; extra arguments go to pytest."""
    run_in_env(session, "pytest", *session.posargs)


@nox.session(name="tests-fast", default=False)
def tests_fast(session: nox.Session) -> None:
    """The suite without the tests marked slow (end-to-end runs, subprocesses): for local work."""
    run_in_env(session, "pytest", "-m", "not slow", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff's checks and its formatter's verdict (nothing is rewritten: run `ruff format` yourself)."""
    run_in_env(session, "ruff", "check", "nasbench_repro", "methods", "tests", "noxfile.py")
    run_in_env(session, "ruff", "format", "--check", "nasbench_repro", "methods", "tests", "noxfile.py")


@nox.session
def bench(session: nox.Session) -> None:
    """pytest-benchmark timings (data pipeline, search steps); compare runs with --benchmark-compare."""
    run_in_env(session, "pytest", "--benchmark-enable", "--benchmark-only", "--benchmark-autosave", *session.posargs)


def regenerate_leaderboard(session: nox.Session) -> None:
    """Rebuild reports/ from results/, so the run just recorded is on the leaderboard. reports/ is
    the repository's view of results/: a run recorded in another folder leaves it alone."""
    if any(arg == "--results-dir" or arg.startswith("--results-dir=") for arg in session.posargs):
        session.log(
            "The records went to another --results-dir: reports/ (built from results/) is left as it is; "
            "`nasbench leaderboard --results-dir DIR --out DIR` builds a leaderboard of them."
        )
        return
    run_in_env(session, "nasbench", "leaderboard")


def _reproduce(method: str, dataset: str):
    def session_body(session: nox.Session) -> None:
        run_in_env(
            session,
            "nasbench",
            "run",
            method,
            "--dataset",
            dataset,
            "--phase",
            "reproduce",
            *budget_arguments(session),
            *session.posargs,
        )
        regenerate_leaderboard(session)

    session_body.__doc__ = (
        f"Search then evaluate {method} on {dataset}, then rebuild reports/ (extra arguments go to nasbench run)."
    )
    return session_body


for _info in MISSION_METHODS:
    nox.session(name=f"reproduce-{_info.name}", default=False)(_reproduce(_info.name, _info.headline_dataset))
# The language-model track's main job: DARTS's recurrent cell searched and trained on Penn Treebank
nox.session(name="reproduce-darts-ptb", default=False)(_reproduce("darts", "ptb"))


@nox.session(name="pcdarts-k-ablation", default=False)
def pcdarts_k_ablation(session: nox.Session) -> None:
    """PC-DARTS with K = 1, 2, 4, 8 on CIFAR-10, one record per K, then rebuild reports/."""
    run_in_env(
        session,
        "nasbench",
        "run",
        "pcdarts",
        "--dataset",
        "cifar10",
        "--phase",
        "reproduce",
        "--sweep",
        "k=1,2,4,8",
        *budget_arguments(session),
        *session.posargs,
    )
    regenerate_leaderboard(session)


@nox.session
def leaderboard(session: nox.Session) -> None:
    """Regenerate reports/ from results/ (extra arguments go to nasbench leaderboard)."""
    run_in_env(session, "nasbench", "leaderboard", *session.posargs)


@nox.session(default=False)
def stability(session: nox.Session) -> None:
    """The seed-stability gate, e.g. nox -s stability -- pcdarts --dataset cifar10 --budget smoke --data cifar10."""
    if not session.posargs:
        session.error("name a method: nox -s stability -- METHOD --dataset DATASET [--budget B]")
    run_in_env(session, "nasbench", "stability", *session.posargs)
