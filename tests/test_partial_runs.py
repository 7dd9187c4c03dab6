"""The leaderboard's table of interrupted and failed runs reads peak memory as every other table does."""

from record_factory import make_record

from nasbench_repro.leaderboard.report import partial_runs_table


def test_interrupted_runs_show_their_peak_memory_on_cpu_and_cuda():
    cpu = make_record(status="interrupted", device="cpu", run_id="a-cpu", peak_bytes=3_000_000_000)
    cuda = make_record(status="failed", device="cuda", run_id="b-cuda", peak_bytes=3_000_000_000)
    table = partial_runs_table([cpu, cuda, make_record(run_id="c-complete")])
    column = table.headers.index("peak mem GB")
    peaks = {(row[0], row[5]): row[column] for row in table.rows}
    assert peaks == {
        ("a-cpu", "evaluate"): "1.50 (activations)",
        ("a-cpu", "search"): "1.50 (activations)",
        ("b-cuda", "evaluate"): "3.00 (cuda)",
        ("b-cuda", "search"): "3.00 (cuda)",
    }
