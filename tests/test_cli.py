"""The CLI contract: one line and exit 2 for bad input, record paths on stdout, 130 on Ctrl-C."""

import subprocess
import sys

import pytest
import tiny_method
from cli_calls import cli, tiny_run_args

from nasbench_repro import catalog


@pytest.mark.parametrize(
    "args, problem",
    [
        (["run", "no-such-method"], "unknown method 'no-such-method'"),
        (["run", "tiny", "--dataset", "imagenet"], "no protocol for dataset 'imagenet'"),
        (["run", "tiny", "--dataset", "toy", "--set", "bogus=1"], "unknown override 'bogus'"),
        (["run", "tiny", "--dataset", "toy", "--set", "search.lr=fast"], "expected float"),
        (["run", "tiny", "--dataset", "toy", "--set", "lr"], "expected key=value"),
        (["run", "tiny", "--dataset", "toy", "--phase", "evaluate"], "needs --genotype"),
        (["run", "tiny", "--dataset", "toy", "--precision", "bf16", "--device", "cpu"], "bf16 needs a CUDA device"),
        (["run", "tiny", "--dataset", "toy", "--resume", "missing-run"], "no run 'missing-run'"),
        (["run", "tiny", "--budget", "huge"], "invalid choice: 'huge'"),
        (["run", "tiny", "--seeds", "one"], "invalid int value"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tiny, capsys, args, problem):
    code, _, err = cli(capsys, *args)
    assert code == 2
    assert problem in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_unimplemented_mission_method_is_one_line(capsys):
    missing = [name for name in catalog.method_names() if not catalog.is_implemented(name)]
    if not missing:
        pytest.skip("every mission method is implemented")
    code, _, err = cli(capsys, "run", missing[0])
    assert code == 2 and "not implemented yet" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_real_process_prints_no_traceback():
    done = subprocess.run(
        [sys.executable, "-m", "nasbench_repro", "run", "no-such-method"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "Traceback" not in done.stderr


def test_list_names_every_mission_method_and_dataset(capsys):
    code, out, _ = cli(capsys, "list")
    assert code == 0
    for info in catalog.MISSION_METHODS:
        assert info.name in out
    for dataset in catalog.MISSION_DATASETS:
        assert dataset in out


def test_run_prints_one_record_path_per_seed_and_sweep_value(tiny, capsys):
    code, out, _ = cli(
        capsys,
        *tiny_run_args(tiny, "--phase", "search", "--seeds", "0", "1", "--sweep", "lr=0.1,0.2", "--budget", "smoke"),
    )
    assert code == 0
    paths = out.split()
    assert len(paths) == 4 and all(path.endswith(".json") for path in paths)


def test_ctrl_c_records_interrupted_and_exits_130(tiny, capsys):
    tiny_method.TinyMethod.interrupt_at = ("search", 1)
    code, out, err = cli(capsys, *tiny_run_args(tiny, "--phase", "search"))
    assert code == 130
    assert "--resume" in err
    record_path = out.strip()
    assert record_path.endswith(".json")
    tiny_method.TinyMethod.interrupt_at = None
    run_id = record_path.rsplit("/", 1)[1].removesuffix(".json")
    code, out, _ = cli(capsys, *tiny_run_args(tiny, "--phase", "search", "--resume", run_id))
    assert code == 0 and out.strip() == record_path


def test_failed_run_exits_1_with_reason(tiny, capsys):
    tiny_method.TinyMethod.produce_nan = True
    code, out, err = cli(capsys, *tiny_run_args(tiny, "--phase", "search"))
    assert code == 1
    assert "run failed: train loss is nan" in err


def test_third_party_methods_plug_in_through_entry_points(monkeypatch):
    """A package declaring `[project.entry-points."nasbench_repro.methods"]` is found without editing us."""
    from importlib.metadata import EntryPoint

    plugin = EntryPoint(name="my-method", value="tiny_method:TinyMethod", group=catalog.ENTRY_POINT_GROUP)
    monkeypatch.setattr(catalog, "entry_points", lambda group: [plugin] if group == catalog.ENTRY_POINT_GROUP else [])
    assert "my-method" in catalog.method_names()
    assert catalog.get_method("my-method") is tiny_method.TinyMethod
    assert catalog.is_implemented("my-method")
