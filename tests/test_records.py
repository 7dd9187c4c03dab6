"""Run records: what the loader refuses (naming the file), and a write that never leaves a bad file."""

import json

import pytest
from record_factory import make_record

from nasbench_repro import records


def write_raw(results_dir, content, name="broken.json"):
    path = results_dir / "darts" / "cifar10" / "smoke" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def changed(**fields):
    record = make_record()
    record.update(fields)
    return record


def without_seed():
    record = make_record()
    del record["spec"]["seed"]
    return record


@pytest.mark.parametrize(
    "content, problem",
    [
        (
            changed(schema_version=records.SCHEMA_VERSION + 1),
            f"schema_version {records.SCHEMA_VERSION + 1} (this harness reads {records.SCHEMA_VERSION})",
        ),
        (changed(status="running"), "status 'running' is not one of complete, interrupted, failed"),
        (without_seed(), "spec lacks seed"),
        ([make_record()], "not a JSON object"),
        (changed(metrics=[]), "field 'metrics' missing or not dict"),
        ("{not json", "Expecting property name"),
    ],
)
def test_invalid_records_are_errors_naming_the_file(tmp_path, content, problem):
    path = write_raw(tmp_path, content)
    with pytest.raises(records.InvalidRecordError) as raised:
        records.read_record(path)
    assert str(path) in str(raised.value) and problem in str(raised.value)
    with pytest.raises(records.InvalidRecordError, match="1 invalid record file"):  # never skipped silently
        records.load_records(tmp_path)


def test_a_valid_record_round_trips(tmp_path):
    record = make_record()
    path = records.write_record(tmp_path, record)
    assert path == tmp_path / "darts" / "cifar10" / "paper" / f"{record['run_id']}.json"
    assert records.read_record(path) == record


@pytest.mark.parametrize("record", [changed(schema_version=2), changed(status="running"), without_seed()])
def test_write_record_refuses_an_invalid_record_and_leaves_nothing(tmp_path, record):
    with pytest.raises(records.InvalidRecordError):
        records.write_record(tmp_path, record)
    assert list(tmp_path.rglob("*")) == []


def test_a_diverged_metric_is_stored_as_null(tmp_path):
    record = make_record(metrics={"train_loss": float("nan")})
    path = records.write_record(tmp_path, record)
    assert records.read_record(path)["metrics"]["train_loss"] is None
