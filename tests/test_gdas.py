"""GDAS: one sampled op per edge in every forward pass, straight-through gradients to every
architecture parameter, the temperature schedule, the FRC variant, determinism per seed."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from search_runs import assert_deterministic_per_seed, random_batch, tiny_search
from test_data_imagenet import write_tree

from methods.gdas import GDAS, gumbel_hard_sample
from nasbench_repro.budgets import get_budget
from nasbench_repro.data import imagenet
from nasbench_repro.differentiable import ARCH_STEP, WEIGHT_STEP
from nasbench_repro.protocol import PhaseProtocol, apply_overrides, load_protocol
from nasbench_repro.records import read_record
from nasbench_repro.runner import Paths, execute
from nasbench_repro.spaces.cnn.networks import FixedReductionCell
from nasbench_repro.spaces.cnn.supernet import SearchCell
from nasbench_repro.spaces.genotypes import get_published
from nasbench_repro.spec import RunSpec


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 1000), tau=st.floats(0.1, 10))
def test_gumbel_sample_is_one_hot_forward_with_a_softmax_gradient(seed, tau):
    torch.manual_seed(seed)
    logits = torch.randn(14, 8, requires_grad=True)
    hard, index = gumbel_hard_sample(logits, tau)
    assert torch.equal(hard.detach(), torch.nn.functional.one_hot(index, 8).float())
    (hard * torch.randn(14, 8)).sum().backward()
    assert torch.count_nonzero(logits.grad) == logits.numel()  # the relaxation reaches every logit


def test_gumbel_max_samples_follow_the_op_probabilities():
    torch.manual_seed(0)
    logits = torch.log(torch.tensor([[0.6, 0.3, 0.1]])).expand(20000, 3)
    _, index = gumbel_hard_sample(logits, tau=5.0)
    frequencies = torch.bincount(index, minlength=3).float() / len(index)
    assert torch.allclose(frequencies, torch.tensor([0.6, 0.3, 0.1]), atol=0.015)


@pytest.mark.parametrize("step", [ARCH_STEP, WEIGHT_STEP])
def test_each_edge_runs_exactly_one_op_per_forward_pass(step):
    search = tiny_search(GDAS())
    runs = []
    for cell in search.supernet.cells:
        for edge in cell.edges:
            for op in edge.ops:
                op.register_forward_hook(lambda module, inputs, output, edge=edge: runs.append(edge))
    search.outputs(random_batch(), step, "train")
    edges = [edge for cell in search.supernet.cells for edge in cell.edges]
    assert sorted(map(id, runs)) == sorted(map(id, edges))  # every edge once, one op each


def test_the_arch_step_reaches_every_architecture_parameter_and_weights_step_first():
    """Every α of an edge gets a gradient through the relaxation, unless the edge sampled the zero
    op, whose output carries no signal (as in the official code)."""
    search = tiny_search(GDAS())
    order, weightings = [], []
    search.weight_step = lambda train, real=search.weight_step: order.append("w") or real(train)
    search.arch_step = lambda train, valid, real=search.arch_step: order.append("α") or real(train, valid)
    real_weighting = search.method.weighting
    search.method.weighting = lambda arch, step: weightings.append(real_weighting(arch, step)) or weightings[-1]
    before = {cell: alpha.detach().clone() for cell, alpha in search.arch.ops.items()}
    search.step(random_batch(0), random_batch(1), update_arch=True)
    assert order == ["w", "α"]  # Algorithm 1: w on a training batch, then A on a validation batch
    for cell, alpha in search.arch.ops.items():
        sampled_zero = torch.tensor([op == 0 for op in weightings[-1][cell].selected])  # "none" is op 0
        reached = (alpha.grad != 0).all(dim=-1)
        assert torch.equal(reached, ~sampled_zero), cell
        assert reached.sum() >= 10 and not torch.equal(alpha.detach(), before[cell])


def test_temperature_falls_linearly_from_tau_max_to_tau_min():
    search = tiny_search(GDAS(), epochs=5)
    method, stage = search.method, GDAS().stages(search.protocol)[0]
    taus = [method.begin_epoch(search, stage, epoch)["tau"] for epoch in range(5)]
    assert taus == pytest.approx([10.0, 7.525, 5.05, 2.575, 0.1])
    assert load_protocol("gdas", "cifar10").phases["search"]["tau_min"].alternative["value"] == 1.0  # paper text


def test_frc_searches_only_the_normal_cell_and_derives_no_reduction_cell():
    search = tiny_search(GDAS(), fixed_reduction_cell=True)
    assert set(search.arch.ops) == {"normal"}
    assert [type(cell) for cell in search.supernet.cells] == [SearchCell, FixedReductionCell, FixedReductionCell]
    search.step(random_batch(0), random_batch(1), update_arch=True)
    genotype = GDAS().derive(search)
    assert genotype.reduce is None and len(genotype.normal) == 8
    protocol = load_protocol("gdas", "cifar10")
    apply_overrides(protocol, {"fixed_reduction_cell": True}, ["search"])
    assert (GDAS().variant(protocol), GDAS().variant(load_protocol("gdas", "cifar10"))) == ("FRC", "default")


def test_frc_cells_are_evaluated_on_imagenet_at_their_own_width_and_batch():
    imagenet = load_protocol("gdas", "imagenet").phase("evaluate")
    assert GDAS().evaluation_settings(get_published("GDAS_F1").genotype, imagenet) == {
        "init_channels": 52,
        "batch_size": 128,
    }
    assert GDAS().evaluation_settings(get_published("GDAS_V1").genotype, imagenet) == {}
    assert (imagenet.init_channels, imagenet.batch_size) == (50, 256)
    cifar = load_protocol("gdas", "cifar10").phase("evaluate")
    assert GDAS().evaluation_settings(get_published("GDAS_F1").genotype, cifar) == {}


def test_budgets_shrink_the_frc_imagenet_settings_with_the_rest():
    protocol = load_protocol("gdas", "imagenet")
    get_budget("smoke").apply(protocol)
    evaluate = protocol.phase("evaluate")
    assert (evaluate.init_channels, evaluate.fixed_reduction_init_channels) == (24, 26)
    assert (evaluate.batch_size, evaluate.fixed_reduction_batch_size) == (32, 32)


@pytest.mark.slow
def test_the_frc_cell_transfers_to_imagenet_at_its_own_width(tmp_path, monkeypatch):
    """The ImageNet row of GDAS (FRC): its published cell trains through the shared evaluation,
    at the width its protocol gives FRC cells, and the record says so."""
    write_tree(tmp_path / "data", train_per_class=4, val_per_class=1)
    monkeypatch.setattr(imagenet, "default_workers", lambda: 0)  # no worker processes inside the test
    spec = RunSpec(
        method="gdas",
        dataset="imagenet",
        phase="evaluate",
        genotype="GDAS_F1",
        budget="smoke",
        overrides={"evaluate.epochs": 1, "evaluate.layers": 3, "evaluate.fixed_reduction_init_channels": 8},
    )
    paths = Paths(tmp_path / "results", tmp_path / "runs", tmp_path / "data")
    record = read_record(execute(spec, paths, notify=lambda line: None).record_path)
    assert record["status"] == "complete" and record["variant"] == "given cell"
    assert record["metrics"]["evaluation_settings"] == {"init_channels": 8, "batch_size": 32}
    assert record["genotype"]["reduce"] is None and record["metrics"]["params_millions"] > 0


def test_only_first_order_is_accepted():
    order = GDAS.protocol_domains["order"]
    search = load_protocol("gdas", "cifar10").phase("search")
    assert order.test(1, search) and not order.test(2, search)
    tau_max = GDAS.protocol_domains["tau_max"]
    assert not tau_max.test(0.05, PhaseProtocol("search", {**search, "tau_min": 0.1}))


@pytest.mark.slow
@pytest.mark.parametrize("frc", [False, True])
def test_gdas_search_is_deterministic_per_seed(tmp_path, frc):
    record = assert_deterministic_per_seed(tmp_path, "gdas", **{"search.epochs": 2, "search.fixed_reduction_cell": frc})
    assert [row["tau"] for row in record["curves"]["search"]] == pytest.approx([10.0, 0.1])
    assert record["variant"] == ("FRC" if frc else "default")
    assert (record["genotype"]["reduce"] is None) == frc
