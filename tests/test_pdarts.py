"""P-DARTS: stages of 5/11/17 cells with 8/5/3 ops per edge, pruning by weight, the skip
dropout schedule, at most M = 2 skip connections in the normal cell, per-stage records, and
resuming mid-stage or at a stage boundary."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from search_runs import search_record

from methods.pdarts import PDARTS, cap_skip_connections, prune
from nasbench_repro.budgets import get_budget
from nasbench_repro.differentiable import ImageClassification
from nasbench_repro.protocol import apply_overrides, load_protocol
from nasbench_repro.spaces.cnn.ops import DARTS_PRIMITIVES
from nasbench_repro.spaces.cnn.supernet import SkipDropout
from nasbench_repro.spaces.genotypes import derive_cell


def protocol_with(**overrides):
    protocol = load_protocol("pdarts", "cifar10")
    apply_overrides(protocol, overrides, ["search"])
    return protocol.phase("search")


def test_paper_stages_are_5_11_17_cells_of_25_epochs():
    stages = PDARTS().stages(protocol_with())
    assert [(stage.layers, stage.epochs, stage.init_channels) for stage in stages] == [
        (5, 25, 16),
        (11, 25, 16),
        (17, 25, 16),
    ]
    assert [stage.skip_dropout for stage in stages] == [0.1, 0.4, 0.7]


def test_each_stage_keeps_the_strongest_ops_8_then_5_then_3():
    method, task = PDARTS(), ImageClassification(10, (3, 8, 8))
    protocol = protocol_with(init_channels=4, layers=3, add_layers=[0, 0, 0], batch_size=4)
    stages = method.stages(protocol)
    torch.manual_seed(0)
    search = method.build_search(protocol, task, stage=stages[0])
    counts = []
    for following in stages[1:]:
        counts.append({len(ops) for edges in search.primitives.values() for ops in edges})
        rows = {cell: torch.softmax(alpha, -1) for cell, alpha in search.arch.ops.items()}
        primitives = method.next_primitives(search, following)
        for cell, edges in primitives.items():
            for edge, kept in enumerate(edges):
                weight = dict(zip(search.primitives[cell][edge], rows[cell][edge].tolist(), strict=True))
                dropped = set(search.primitives[cell][edge]) - set(kept)
                assert min(weight[op] for op in kept) >= max(weight[op] for op in dropped)
        search = method.build_search(protocol, task, stage=following, primitives=primitives)
        assert search.arch.ops["normal"].shape == (14, len(primitives["normal"][0]))
    counts.append({len(ops) for edges in search.primitives.values() for ops in edges})
    assert counts == [{8}, {5}, {3}]


def test_pruning_keeps_the_heaviest_ops_and_the_last_step_drops_none_first():
    ops = [("none", "skip_connect", "sep_conv_3x3")]
    assert prune([[0.5, 0.1, 0.4]], ops, keep=2) == [["none", "sep_conv_3x3"]]  # none competes between stages
    assert prune([[0.2, 0.2, 0.6]], [("a", "b", "c")], keep=2) == [["b", "c"]]  # ties drop the earlier op
    assert derive_cell([[0.5, 0.1, 0.4]] * 14, ops * 14)[0][0] == "sep_conv_3x3"  # after the last stage it cannot


def edge_ops(draw_seed):
    """Three ops per edge as after the second pruning, skip_connect among them."""
    generator = torch.Generator().manual_seed(draw_seed)
    others = [op for op in DARTS_PRIMITIVES if op != "skip_connect"]
    ops = []
    for _ in range(14):
        picks = torch.randperm(len(others), generator=generator)[:2].tolist()
        ops.append(tuple(sorted([others[p] for p in picks] + ["skip_connect"], key=DARTS_PRIMITIVES.index)))
    return ops


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), limit=st.integers(0, 4), skip_bias=st.floats(0, 5))
def test_capped_cells_never_hold_more_skip_connections_than_the_limit(seed, limit, skip_bias):
    primitives = edge_ops(seed)
    generator = torch.Generator().manual_seed(seed + 1)
    logits = torch.randn(14, 3, generator=generator)
    for edge, ops in enumerate(primitives):
        logits[edge, ops.index("skip_connect")] += skip_bias
    weights = torch.softmax(logits, -1).tolist()
    capped = cap_skip_connections(weights, primitives, limit)
    plain = derive_cell(weights, primitives)
    skips = sum(op == "skip_connect" for op, _ in capped)
    assert skips <= limit
    if sum(op == "skip_connect" for op, _ in plain) <= limit:
        assert capped == plain  # the cap only acts when it must


def test_final_genotype_has_at_most_two_skip_connections_in_the_normal_cell():
    method = PDARTS()
    protocol = protocol_with(init_channels=4, layers=3, add_layers=[0, 0, 0], batch_size=4)
    stage = method.stages(protocol)[-1]
    primitives = {cell: edge_ops(0) for cell in ("normal", "reduce")}
    search = method.build_search(protocol, ImageClassification(10, (3, 8, 8)), stage=stage, primitives=primitives)
    with torch.no_grad():
        for cell in ("normal", "reduce"):
            for edge, ops in enumerate(primitives[cell]):
                search.arch.ops[cell][edge, ops.index("skip_connect")] = 3.0  # skip connections dominate
    run = type("Run", (), {"search": search})()
    uncapped = method.derive(search)
    final = method.final_genotype(run)
    assert sum(op == "skip_connect" for op, _ in uncapped.normal) > 2
    assert sum(op == "skip_connect" for op, _ in final.normal) == 2
    assert final.reduce == uncapped.reduce  # the cap is on the normal cell only


def test_skip_dropout_decays_per_stage_as_the_official_schedule():
    method = PDARTS()
    protocol = protocol_with(init_channels=4, layers=3, add_layers=[0, 0, 0], batch_size=4)
    stage = method.stages(protocol)[2]  # p = 0.7, 25 epochs, α frozen for 10
    search = method.build_search(protocol, ImageClassification(10, (3, 8, 8)), stage=stage)
    rates = [method.begin_epoch(search, stage, epoch)["skip_dropout"] for epoch in (0, 9, 10, 15)]
    assert rates == pytest.approx([0.7 * 24 / 25, 0.7 * 15 / 25, 0.7, 0.7 * math.exp(-1.0)])
    assert {module.p for module in search.supernet.modules() if isinstance(module, SkipDropout)} == {rates[-1]}


def test_smoke_budget_shrinks_the_added_cells_too():
    protocol = load_protocol("pdarts", "cifar10")
    get_budget("smoke").apply(protocol)
    search = protocol.phase("search")
    assert (search.layers, search.add_layers, search.epochs, search.warmup_epochs) == (5, [0, 2, 3], 3, 0)
    assert [stage.epochs for stage in PDARTS().stages(search)] == [1, 1, 1]


TINY_STAGES = {"search.epochs": 6, "search.warmup_epochs": 1, "search.add_layers": [0, 1, 2]}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted tiny P-DARTS search (3 stages of 2 epochs), shared by the slow tests."""
    return search_record(tmp_path_factory.mktemp("pdarts-reference"), "pdarts", **TINY_STAGES)


@pytest.mark.slow
def test_each_stage_is_recorded_and_the_search_is_deterministic(tmp_path, reference):
    first = reference
    again = search_record(tmp_path, "pdarts", **TINY_STAGES)
    assert first["status"] == "complete" and first["curves"] == again["curves"]
    assert first["genotype"] == again["genotype"] and first["variant"] == "default"
    rows = first["curves"]["search"]
    assert [row["stage"] for row in rows] == [0, 0, 1, 1, 2, 2]
    assert [row["arch_updated"] for row in rows] == [False, True] * 3
    stages = first["metrics"]["search_stages"]
    assert [(s["cells"], s["ops_per_edge"]["normal"], s["first_epoch"], s["last_epoch"]) for s in stages] == [
        (3, 8, 0, 1),
        (4, 5, 2, 3),
        (5, 3, 4, 5),
    ]
    assert all(s["wall_seconds"] > 0 and "valid_acc" in s for s in stages)
    assert sum(op == "skip_connect" for op, _ in first["genotype"]["normal"]) <= 2


@pytest.mark.slow
@pytest.mark.parametrize("interrupt_at_call", [3, 4, 5])
def test_resume_mid_stage_and_at_a_stage_boundary_reproduces_the_run(
    tmp_path, monkeypatch, interrupt_at_call, reference
):
    """begin_epoch calls: 1 building stage 0, 2-3 its epochs, 4 building stage 1 at the boundary
    (before the checkpoint of stage 0's last epoch), 5 stage 1's first epoch (resuming from the
    checkpoint that holds the freshly built stage 1). An interrupt at each resumes to the same run."""
    calls = {"count": 0}
    real = PDARTS.begin_epoch

    def interrupting(self, search, stage, epoch):
        calls["count"] += 1
        if calls["count"] == interrupt_at_call:
            raise KeyboardInterrupt("test interrupt")
        return real(self, search, stage, epoch)

    monkeypatch.setattr(PDARTS, "begin_epoch", interrupting)
    interrupted = search_record(tmp_path / "run", "pdarts", **TINY_STAGES)
    assert interrupted["status"] == "interrupted"
    monkeypatch.setattr(PDARTS, "begin_epoch", real)
    resumed = search_record(tmp_path / "run", "pdarts", resume=interrupted["run_id"])
    assert resumed["status"] == "complete" and resumed["cost"]["search"]["resumed_from_epoch"] is not None
    assert resumed["curves"] == reference["curves"] and resumed["genotype"] == reference["genotype"]
    strip = ("wall_seconds", "gpu_days")
    assert [{k: v for k, v in s.items() if k not in strip} for s in resumed["metrics"]["search_stages"]] == [
        {k: v for k, v in s.items() if k not in strip} for s in reference["metrics"]["search_stages"]
    ]
