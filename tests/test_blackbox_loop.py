"""The black-box loop's harness: the evaluation cache, results that survive an interruption,
weight sharing's single paths, executors that never change a record, budgets over search
counts, protocol variants, and the best-so-far plot."""

import json
import random
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from blackbox_runs import reproducible, run_search, write_data
from hypothesis import given
from hypothesis import strategies as st
from record_factory import make_record

from nasbench_repro.blackbox import ProxyTraining, WeightSharing, candidate_seed
from nasbench_repro.budgets import BUDGETS
from nasbench_repro.cli import main
from nasbench_repro.context import Context
from nasbench_repro.data import DataRequest
from nasbench_repro.errors import UserError
from nasbench_repro.executors import ExecutorChoice, _call_in_worker, open_executor
from nasbench_repro.leaderboard.plots import best_so_far, blackbox_best_so_far
from nasbench_repro.meters import PhaseMeter
from nasbench_repro.protocol import Entry, PhaseProtocol, Protocol, load_protocol
from nasbench_repro.spaces.cnn.ops import DARTS_PRIMITIVES
from nasbench_repro.spaces.cnn.sampling import CellSpace
from nasbench_repro.spec import RunSpec

SPACE = CellSpace(DARTS_PRIMITIVES[1:])


class RecordingExecutor:
    """Stands in for a pool: records the tasks it is given and returns a made-up accuracy for each."""

    def __init__(self):
        self.tasks = []

    def map(self, function, tasks):
        self.tasks += tasks
        return [{"key": task.key, "valid_acc": 0.5, "valid_curve": [0.5], "diverged": False} for task in tasks]


def proxy_evaluator(tmp_path):
    ctx = Context(
        spec=RunSpec("random", "cifar10", seed=3),
        phase="search",
        protocol=PhaseProtocol("search", {"epochs": 1}),
        device=torch.device("cpu"),
        generator=torch.Generator(),
        meter=PhaseMeter(torch.device("cpu")),
        checkpoint_path=tmp_path / "checkpoint-search.pt",
        data_factory=lambda: None,
        data_request=DataRequest("cifar10", tmp_path, "smoke", True),
    )
    evaluator = ProxyTraining(SPACE, ctx, random.Random(0))
    evaluator.executor = RecordingExecutor()
    return evaluator


def swap_first_two_nodes(genotype):
    """The same normal cell with nodes 2 and 3 swapped (both read only the cell inputs)."""
    pairs = list(genotype.normal)
    assert all(source < 2 for _, source in pairs[:4])
    rename = {2: 3, 3: 2}
    swapped = pairs[2:4] + pairs[0:2] + [(op, rename.get(source, source)) for op, source in pairs[4:]]
    return type(genotype)(swapped, genotype.normal_concat, genotype.reduce, genotype.reduce_concat)


def test_no_architecture_is_trained_twice_and_isomorphic_ones_are_the_same(tmp_path):
    evaluator = proxy_evaluator(tmp_path)
    rng = random.Random(5)
    samples = (SPACE.sample(rng) for _ in range(1000))
    first = next(genotype for genotype in samples if all(source < 2 for _, source in genotype.normal[:4]))
    second = SPACE.sample(rng)
    twin = swap_first_two_nodes(first)
    assert twin != first and SPACE.key(twin) == SPACE.key(first)
    evaluations = evaluator.evaluate([first, second, first, twin])
    assert [evaluation.trained for evaluation in evaluations] == [True, True, False, False]
    assert len(evaluator.executor.tasks) == 2
    later = evaluator.evaluate([twin, second])  # a later round: everything comes from the cache
    assert [evaluation.trained for evaluation in later] == [False, False] and len(evaluator.executor.tasks) == 2
    task = evaluator.executor.tasks[0]
    assert task.seed == candidate_seed(3, SPACE.key(first))  # seeded by the run's seed and the architecture
    assert task.result_path.parent == tmp_path / "evaluations-search"


def test_results_written_before_an_interruption_are_not_recomputed(tmp_path):
    evaluator = proxy_evaluator(tmp_path)
    genotype = SPACE.sample(random.Random(1))
    key = SPACE.key(genotype)
    path = evaluator._result_path(key)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"key": key, "valid_acc": 0.875, "valid_curve": [0.875], "diverged": False}))
    [evaluation] = evaluator.evaluate([genotype])
    assert evaluation.value == evaluation.score == 0.875 and evaluation.trained
    assert evaluator.executor.tasks == []


def test_a_weight_sharing_path_runs_exactly_the_genotypes_edges():
    protocol = PhaseProtocol(
        "search",
        {
            "init_channels": 4,
            "layers": 3,
            "lr": 0.025,
            "momentum": 0.9,
            "weight_decay": 3e-4,
            "lr_min": 0.001,
            "epochs": 1,
            "train_examples": 8,
            "train_portion": 0.5,
            "batch_size": 2,
        },
    )
    data = SimpleNamespace(num_classes=10, input_shape=(3, 32, 32), search_batches=lambda *args: ([], []))
    ctx = SimpleNamespace(protocol=protocol, data=data, device=torch.device("cpu"), place=lambda module: module)
    space = CellSpace(DARTS_PRIMITIVES)
    sharing = WeightSharing(space, ctx, random.Random(0))
    genotype = space.sample(random.Random(2))
    path = sharing.single_path(genotype)
    for cell, pairs in (("normal", genotype.normal), ("reduce", genotype.reduce)):
        weights = path[cell]
        on = {edge: DARTS_PRIMITIVES[op] for edge, op in enumerate(weights.selected) if op is not None}
        node_start = [0, 2, 5, 9]
        assert on == {node_start[position // 2] + source: op for position, (op, source) in enumerate(pairs)}
        assert weights.ops.sum() == len(on) == 8
    logits = sharing.supernet(torch.randn(2, 3, 32, 32), path)
    assert logits.shape == (2, 10)
    with pytest.raises(ValueError, match="cell space"):
        WeightSharing(CellSpace(DARTS_PRIMITIVES, distinct_inputs=False), ctx, random.Random(0))


def search_protocol(**values):
    return Protocol("m", "cifar10", "paper", {"search": {key: Entry(value, "test") for key, value in values.items()}})


@given(
    architectures=st.integers(1, 30_000),
    population=st.integers(1, 500),
    sample=st.integers(1, 500),
    round_size=st.integers(1, 1000),
    step=st.integers(1, 5000),
    budget=st.sampled_from(sorted(BUDGETS)),
)
def test_budgets_shrink_search_counts_consistently(architectures, population, sample, round_size, step, budget):
    population = min(population, architectures)
    sample = min(sample, population)
    protocol = search_protocol(
        architectures=architectures,
        population_size=population,
        sample_size=sample,
        round_size=round_size,
        children_per_update=round_size,
        depth_step_architectures=step,
        epochs=50,
    )
    BUDGETS[budget].apply(protocol)
    scaled = protocol.phase("search")
    assert 1 <= scaled.architectures <= architectures
    assert 1 <= scaled.sample_size <= scaled.population_size <= min(population, scaled.architectures)
    assert 1 <= scaled.round_size <= round_size and scaled.children_per_update == scaled.round_size
    if budget == "paper":
        assert protocol.provenance == {}
    if budget == "smoke":
        assert scaled.architectures <= 8 and scaled.population_size <= 4 and scaled.epochs == 1
    if budget == "reduced":
        assert scaled.architectures >= min(architectures, 24)


def test_smoke_trains_each_candidate_briefly_and_the_final_network_as_usual():
    protocol = Protocol(
        "m",
        "cifar10",
        "paper",
        {
            "search": {
                key: Entry(value, "test")
                for key, value in (("architectures", 24), ("epochs", 100), ("train_examples", 50000))
            },
            "evaluate": {key: Entry(value, "test") for key, value in (("epochs", 600), ("train_examples", 50000))},
        },
    )
    BUDGETS["smoke"].apply(protocol)
    assert dict(protocol.phase("search")) == {"architectures": 8, "epochs": 1, "train_examples": 512}
    assert dict(protocol.phase("evaluate")) == {"epochs": 3, "train_examples": 1024}


def test_a_schedule_counted_in_architectures_keeps_its_share():
    protocol = search_protocol(architectures=12800, depth_step_architectures=1600, add_layers=2, layers=6)
    BUDGETS["reduced"].apply(protocol)
    assert protocol.phase("search").depth_step_architectures == 160  # still 8 steps over the search


def test_a_variant_replaces_the_phases_it_names(tmp_path):
    default = load_protocol("random", "cifar10")
    baseline = load_protocol("random", "cifar10", variant="darts-baseline")
    assert default.phase("search").evaluator == "weight_sharing" and default.variant is None
    assert baseline.phase("search").evaluator == "train_from_scratch"
    assert "score_batches" not in baseline.phase("search")
    assert baseline.phase("evaluate") == default.phase("evaluate")  # phases a variant leaves out are shared
    assert baseline.describe()["variant"] == "darts-baseline"
    with pytest.raises(UserError, match="no variant 'nope' .*darts-baseline"):
        load_protocol("random", "cifar10", variant="nope")
    path = tmp_path / "m.toml"
    path.write_text("[cifar10.variants]\nx = 1\n")
    with pytest.raises(UserError, match="one table per variant"):
        load_protocol("m", "cifar10", path, variant="x")


def test_executor_choices_are_checked():
    with pytest.raises(UserError, match="unknown executor"):
        ExecutorChoice("mpi")
    with pytest.raises(UserError, match="--workers -1"):
        ExecutorChoice(workers=-1)
    with pytest.raises(UserError, match="needs a Slurm cluster"):
        open_executor(ExecutorChoice("slurm"), torch.device("cpu"), "deterministic", Path("unused"))


def test_the_run_command_takes_variant_executor_and_workers(tmp_path, capsys):
    code = main(["run", "random", "--variant", "nope", "--workers", "0", "--results-dir", str(tmp_path)])
    assert code == 2 and "no variant 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "random", "--executor", "mpi"])


def test_the_best_so_far_plot_reads_curves_and_cost():
    record = make_record(method="evolution", variant="default", budget="smoke")
    record["curves"]["search"] = [
        {"epoch": 0, "evaluated": 4, "best_valid_acc": 0.2},
        {"epoch": 1, "evaluated": 8, "best_valid_acc": 0.3},
    ]
    record["cost"]["search"] = {
        **record["cost"].get("search", {}),
        "epoch_seconds": [1800.0, 1800.0],
        "device_count": 2,
    }
    run = SimpleNamespace(record=record)
    assert best_so_far(run) == [(4, 0.2, 1.0), (8, 0.3, 2.0)]
    board = SimpleNamespace(
        rows=[
            SimpleNamespace(
                runs=(run,),
                key=SimpleNamespace(
                    method="evolution",
                    variant="default",
                    budget="smoke",
                    genotype="",
                    data="cifar10",
                    dataset="cifar10",
                    overrides="",
                ),
                n_seeds=1,
            )
        ]
    )
    plot = blackbox_best_so_far(board)
    assert plot.png.startswith(b"\x89PNG") and plot.name == "blackbox_best_so_far.png"


@pytest.mark.slow
def test_two_workers_write_the_same_record_as_one_and_as_this_process(tmp_path):
    data = write_data(tmp_path / "data")
    records = [
        run_search("evolution", data, tmp_path / f"workers-{count}", seed=1, workers=count) for count in (1, 2, 0)
    ]
    assert all(record["status"] == "complete" for record in records)
    assert reproducible(records[0]) == reproducible(records[1]) == reproducible(records[2])
    assert records[1]["environment"]["executor"]["workers"] == 2


@pytest.mark.slow
def test_the_slurm_path_through_submitit_writes_the_same_record(tmp_path):
    """submitit's local cluster runs each candidate as its own job process, as Slurm would."""
    data = write_data(tmp_path / "data")
    local = run_search("random", data, tmp_path / "local", seed=2, variant="darts-baseline")
    slurm = run_search(
        "random",
        data,
        tmp_path / "slurm",
        seed=2,
        variant="darts-baseline",
        executor=ExecutorChoice("slurm", workers=2, slurm_cluster="local"),
    )
    assert slurm["status"] == "complete", slurm["reason"]
    assert reproducible(slurm) == reproducible(local)
    assert list((tmp_path / "slurm" / "runs" / slurm["run_id"] / "slurm").iterdir()), "submitit kept no job files"


@pytest.mark.slow
def test_random_search_with_weight_sharing_trains_a_supernet_then_ranks(tmp_path):
    record = run_search("random", write_data(tmp_path / "data"), tmp_path)
    assert record["status"] == "complete", record["reason"]
    prepare, *rounds = record["curves"]["search"]
    assert "supernet_train_loss" in prepare and "evaluated" not in prepare  # one supernet epoch first
    assert [row["evaluated"] for row in rounds] == [3, 6]
    assert record["metrics"]["architectures_evaluated"] == 6


def _sleep(seconds, device):
    time.sleep(seconds)


@pytest.mark.slow
def test_an_interrupted_pool_stops_without_waiting_for_its_running_tasks():
    began = time.perf_counter()
    pool = open_executor(ExecutorChoice(workers=1), torch.device("cpu"), "deterministic", Path("."))
    with pytest.raises(KeyboardInterrupt), pool:
        pool._pool.submit(_call_in_worker, _sleep, 120)
        time.sleep(5)  # the worker starts and takes the task
        raise KeyboardInterrupt
    assert time.perf_counter() - began < 60


@pytest.mark.slow
def test_the_search_phase_counts_the_memory_its_candidates_used_in_worker_processes(tmp_path):
    record = run_search("evolution", write_data(tmp_path / "data"), tmp_path, workers=1)
    results = [json.loads(path.read_text()) for path in (tmp_path / "runs").rglob("evaluations-search/*.json")]
    candidate_peak = max(result["peak_memory"]["saved_tensors_peak_bytes"] for result in results)
    assert candidate_peak > 0
    assert record["cost"]["search"]["peak_memory"]["saved_tensors_peak_bytes"] >= candidate_peak
