"""The runner's contract: seeds decide everything, resume is exact, records are atomic."""

import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import tiny_method

from nasbench_repro import interrupts, records
from nasbench_repro.atomic import write_json
from nasbench_repro.cli import main
from nasbench_repro.context import Context
from nasbench_repro.errors import UserError
from nasbench_repro.runner import execute
from nasbench_repro.spec import RunSpec


def run(paths, seed=0, **spec):
    outcome = execute(RunSpec(method="tiny", dataset="toy", seed=seed, **spec), paths, notify=lambda line: None)
    return outcome, records.read_record(outcome.record_path)


def reproducible_part(record):
    """Everything a seed determines: outcomes, curves, genotype, protocol (not time or memory)."""
    return {key: record[key] for key in ("metrics", "curves", "genotype", "protocol", "variant", "dataset", "budget")}


def test_same_seed_gives_identical_metrics_and_curves(tiny):
    _, first = run(tiny, seed=3)
    _, second = run(tiny, seed=3)
    assert first["status"] == second["status"] == "complete"
    assert reproducible_part(first) == reproducible_part(second)
    assert first["run_id"] != second["run_id"]


def test_different_seeds_give_different_curves(tiny):
    _, first = run(tiny, seed=0)
    _, second = run(tiny, seed=1)
    assert first["curves"] != second["curves"]


def test_record_layout_and_contents(tiny):
    outcome, record = run(tiny, seed=0, budget="smoke")
    assert outcome.record_path == tiny.results_dir / "tiny" / "toy" / "smoke" / f"{record['run_id']}.json"
    assert record["schema_version"] == records.SCHEMA_VERSION
    assert record["genotype"] == {"features": record["genotype"]["features"]}
    assert set(record["cost"]) == {"search", "evaluate"}
    search_cost = record["cost"]["search"]
    assert search_cost["gpu_days"] == pytest.approx(search_cost["wall_seconds"] / 86_400, rel=1e-3)
    assert search_cost["peak_memory"]["saved_tensors_peak_bytes"] > 0
    assert search_cost["peak_memory"]["rss_peak_bytes"] > 0
    assert [row["epoch"] for row in record["curves"]["search"]] == [0, 1, 2]  # smoke caps epochs at 3
    assert record["protocol"]["changed"]["search"]["epochs"] == "budget:smoke"
    environment = record["environment"]
    assert environment["device"] == "cpu" and environment["determinism"]["mode"] == "deterministic"
    assert {"torch", "python", "git_commit", "git_dirty", "device_name"} <= set(environment)
    assert not any(tiny.results_dir.rglob("*.pt")), "checkpoints must stay out of results/"


def test_overrides_are_applied_and_recorded(tiny):
    _, record = run(tiny, overrides={"search.epochs": 2, "lr": 0.2}, phase="search")
    assert len(record["curves"]["search"]) == 2
    assert record["protocol"]["values"]["search"]["lr"] == 0.2
    assert record["protocol"]["changed"]["search"] == {"epochs": "override", "lr": "override"}


@pytest.mark.parametrize("phase, epoch", [("search", 2), ("evaluate", 0), ("evaluate", 2)])
def test_interrupt_then_resume_equals_uninterrupted(tiny, phase, epoch):
    """Mid-search, between phases (no checkpoint of the evaluation yet) and mid-evaluation."""
    _, uninterrupted = run(tiny, seed=5)
    tiny_method.TinyMethod.interrupt_at = (phase, epoch)
    outcome, interrupted = run(tiny, seed=5)
    assert interrupted["status"] == "interrupted"
    assert "--resume" in interrupted["reason"]
    assert (tiny.runs_dir / outcome.run_id / "checkpoint-search.pt").exists()
    tiny_method.TinyMethod.interrupt_at = None
    resumed_outcome = execute(None, tiny, resume=outcome.run_id, notify=lambda line: None)
    resumed = records.read_record(resumed_outcome.record_path)
    assert resumed_outcome.record_path == outcome.record_path  # the same run, now complete
    assert resumed["status"] == "complete"
    assert resumed["cost"][phase]["resumed_from_epoch"] == (epoch or None)
    assert reproducible_part(resumed) == reproducible_part(uninterrupted)


@pytest.mark.slow
def test_killed_process_resumes_to_the_uninterrupted_record(tiny, tmp_path):
    """SIGKILL (no chance to clean up) after the first checkpoint; resume must still be exact."""
    _, uninterrupted = run(tiny, seed=7, phase="search")
    script = Path(tiny_method.__file__)
    args = [
        "run",
        "tiny",
        "--dataset",
        "toy",
        "--phase",
        "search",
        "--seeds",
        "7",
        "--results-dir",
        str(tiny.results_dir),
        "--runs-dir",
        str(tiny.runs_dir),
    ]
    env = {**os.environ, "TINY_SLEEP": "1.0"}
    earlier = set(tiny.runs_dir.iterdir())
    process = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.time() + 60
    checkpoints = []
    while time.time() < deadline and not checkpoints:
        checkpoints = [
            path
            for path in tiny.runs_dir.glob("*/checkpoint-search.pt")
            if path.parent not in earlier and path.stat().st_size > 0
        ]
        time.sleep(0.05)
    assert checkpoints, "the run never wrote a checkpoint"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    run_id = checkpoints[0].parent.name
    before = {path.name for path in (tiny.results_dir / "tiny" / "toy" / "paper").glob("*.json")}
    assert f"{run_id}.json" not in before, "a killed run has no record until it is resumed"
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path), *args, "--resume", run_id],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    resumed = records.read_record(Path(done.stdout.strip()))
    assert resumed["cost"]["search"]["resumed_from_epoch"] >= 1
    assert reproducible_part(resumed) == reproducible_part(uninterrupted)


def test_sigterm_mid_run_is_recorded_interrupted_and_resumes_exactly(tiny, monkeypatch, capsys):
    """SIGTERM (Slurm preemption, `kill`) in the middle of a search: exit 130 and an interrupted record
    naming the resume command; the caller's own SIGTERM handler is back afterwards and never ran."""
    _, uninterrupted = run(tiny, seed=4, phase="search")
    caught = []

    def callers_handler(signum, frame):
        caught.append(signum)

    args = [
        "run",
        "tiny",
        "--dataset",
        "toy",
        "--phase",
        "search",
        "--seeds",
        "4",
        "--results-dir",
        str(tiny.results_dir),
        "--runs-dir",
        str(tiny.runs_dir),
        "--data-root",
        str(tiny.data_root),
    ]
    previous = signal.signal(signal.SIGTERM, callers_handler)
    try:
        monkeypatch.setattr(tiny_method.TinyMethod, "terminate_at", ("search", 2))
        code = main(args)
        handler_after_run = signal.getsignal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
    out, err = capsys.readouterr()
    assert code == 130 and handler_after_run is callers_handler and caught == []
    record = records.read_record(Path(out.strip()))
    assert record["status"] == "interrupted" and [row["epoch"] for row in record["curves"]["search"]] == [0, 1]
    assert record["reason"].endswith(f"--resume {record['run_id']}") and f"--resume {record['run_id']}" in err
    monkeypatch.setattr(tiny_method.TinyMethod, "terminate_at", None)
    assert main([*args, "--resume", record["run_id"]]) == 0
    resumed = records.read_record(Path(capsys.readouterr().out.strip()))
    assert resumed["run_id"] == record["run_id"] and resumed["status"] == "complete"
    assert resumed["cost"]["search"]["resumed_from_epoch"] == 2
    assert reproducible_part(resumed) == reproducible_part(uninterrupted)


def test_a_method_that_raises_is_recorded_failed_and_the_error_re_raised(tiny, monkeypatch):
    def broken_search(self, ctx):
        raise RuntimeError("a bug in the method")

    monkeypatch.setattr(tiny_method.TinyMethod, "search", broken_search)
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(RuntimeError, match="a bug in the method"):
        run(tiny, phase="search")
    assert signal.getsignal(signal.SIGTERM) is previous
    [path] = records.record_files(tiny.results_dir)
    record = records.read_record(path)
    assert (record["status"], record["reason"]) == ("failed", "RuntimeError: a bug in the method")


def test_resuming_a_run_of_another_method_or_dataset_is_refused(tiny, capsys):
    tiny_method.TinyMethod.interrupt_at = ("search", 1)
    outcome, _ = run(tiny, phase="search")
    for method, dataset in (("pcdarts", "toy"), ("tiny", "cifar10")):
        with pytest.raises(UserError, match=f"run {outcome.run_id} is tiny on toy, not {method} on {dataset}"):
            execute(RunSpec(method=method, dataset=dataset), tiny, resume=outcome.run_id)
    code = main(
        [
            "run",
            "pcdarts",
            "--dataset",
            "cifar10",
            "--resume",
            outcome.run_id,
            "--results-dir",
            str(tiny.results_dir),
            "--runs-dir",
            str(tiny.runs_dir),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and "is tiny on toy, not pcdarts on cifar10" in err
    assert records.read_record(outcome.record_path)["status"] == "interrupted"  # the stored run is untouched


def test_resuming_a_complete_run_retrains_nothing(tiny, monkeypatch):
    outcome, complete = run(tiny, seed=2)
    trained = []
    original_train = tiny_method.TinyMethod._train

    def counting_train(self, *args, **kwargs):
        trained.append(args)
        return original_train(self, *args, **kwargs)

    monkeypatch.setattr(tiny_method.TinyMethod, "_train", counting_train)
    again = execute(None, tiny, resume=outcome.run_id, notify=lambda line: None)
    resumed = records.read_record(again.record_path)
    assert trained == [] and again.record_path == outcome.record_path and resumed["status"] == "complete"
    assert reproducible_part(resumed) == reproducible_part(complete) and resumed["cost"] == complete["cost"]


def test_an_interrupt_before_the_first_checkpoint_resumes_from_the_start(tiny):
    _, uninterrupted = run(tiny, seed=6)
    tiny_method.TinyMethod.interrupt_at = ("search", 0)
    outcome, interrupted = run(tiny, seed=6)
    assert interrupted["status"] == "interrupted" and interrupted["curves"]["search"] == []
    assert not (tiny.runs_dir / outcome.run_id / "checkpoint-search.pt").exists()
    tiny_method.TinyMethod.interrupt_at = None
    resumed = records.read_record(execute(None, tiny, resume=outcome.run_id, notify=lambda line: None).record_path)
    assert resumed["status"] == "complete" and resumed["cost"]["search"]["resumed_from_epoch"] is None
    assert reproducible_part(resumed) == reproducible_part(uninterrupted)


def test_diverged_loss_is_recorded_as_failed(tiny):
    tiny_method.TinyMethod.produce_nan = True
    outcome, record = run(tiny, phase="search")
    assert outcome.status == record["status"] == "failed"
    assert "train loss is nan" in record["reason"]


def test_user_errors_before_start_write_nothing(tiny):
    with pytest.raises(UserError, match="unknown override"):
        run(tiny, overrides={"nonsense": 1})
    with pytest.raises(UserError, match="ambiguous"):
        run(tiny, overrides={"epochs": 1})  # both phases have epochs in a reproduce run
    with pytest.raises(UserError, match="expected int"):
        run(tiny, overrides={"search.epochs": "many"})
    assert not tiny.results_dir.exists()


def test_resume_of_unknown_run_is_a_user_error(tiny):
    with pytest.raises(UserError, match="no run 'nope'"):
        execute(None, tiny, resume="nope")


def test_interrupted_write_leaves_previous_record_intact(tiny, monkeypatch):
    outcome, record = run(tiny, phase="search")
    original = outcome.record_path.read_bytes()

    def explode(*args, **kwargs):
        args[1].write('{"schema_version": 1, "truncated')
        raise OSError("disk full")

    monkeypatch.setattr(json, "dump", explode)
    with pytest.raises(OSError):
        records.write_record(tiny.results_dir, record)
    assert outcome.record_path.read_bytes() == original
    assert [path.name for path in outcome.record_path.parent.iterdir()] == [outcome.record_path.name]


def test_atomic_writes_get_the_permissions_of_a_plain_open(tmp_path):
    previous = os.umask(0o022)
    try:
        write_json(tmp_path / "record.json", {"a": 1})
    finally:
        os.umask(previous)
    assert (tmp_path / "record.json").stat().st_mode & 0o777 == 0o644  # mkstemp alone would give 0o600


def test_loader_names_invalid_files(tiny):
    outcome, _ = run(tiny, phase="search")
    broken = outcome.record_path.parent / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(records.InvalidRecordError, match="broken.json"):
        records.load_records(tiny.results_dir)
    broken.unlink()
    frame = records.records_frame(tiny.results_dir)
    assert list(frame["method"]) == ["tiny"] and frame.loc[0, "metric_search_valid_acc"] > 0.5


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the swallowed raise, on purpose
def test_a_stop_signal_swallowed_by_a_finalizer_still_stops_the_steps():
    """A SIGTERM whose handler runs inside a `__del__` (as the saved-tensor meter's) used to be dropped."""

    class SignalsWhenCollected:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)  # the handler's KeyboardInterrupt is raised inside __del__

    loop_owner = types.SimpleNamespace(phase="search", epoch=0)
    before = signal.getsignal(signal.SIGTERM)
    steps = []
    with interrupts.stop_on_signals(), pytest.raises(KeyboardInterrupt):
        for step in Context.progress(loop_owner, range(3)):
            SignalsWhenCollected()
            steps.append(step)
    assert steps == [0]
    assert signal.getsignal(signal.SIGTERM) is before
