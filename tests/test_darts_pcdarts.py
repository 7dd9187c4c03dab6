"""DARTS and PC-DARTS: the K=1 reduction to DARTS, partial-channel shapes, edge
normalization in derivation, per-seed determinism of a smoke search, and the fidelity options
of the shared loop (fresh α batches, the logged genotype, α gradient clipping)."""

import functools
import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from methods.darts import DARTS
from methods.pcdarts import PCDARTS
from nasbench_repro.budgets import get_budget
from nasbench_repro.commands.profile import saved_activation_bytes
from nasbench_repro.differentiable import WEIGHT_STEP, ArchitectureParameters, ImageClassification
from nasbench_repro.protocol import PhaseProtocol, apply_overrides, load_protocol
from nasbench_repro.records import read_record
from nasbench_repro.runner import Paths, execute
from nasbench_repro.spaces.cnn.supernet import PartialChannelMixedOp, SearchNetwork
from nasbench_repro.spaces.genotypes import Genotype, parse_genotype
from nasbench_repro.spec import RunSpec

TINY_SEARCH = {"init_channels": 4, "layers": 3, "batch_size": 4}


def search_protocol(method: str, **overrides):
    protocol = load_protocol(method, "cifar10")
    apply_overrides(protocol, {**TINY_SEARCH, **overrides}, ["search"])
    return protocol


def no_autocast():
    return torch.autocast("cpu", enabled=False)


def run_steps(method, protocol, steps=3, seed=0, batch=4, size=16):
    torch.manual_seed(seed)
    search = method.build_search(protocol.phase("search"), ImageClassification(10, (3, size, size)), no_autocast)
    data = torch.Generator().manual_seed(99)
    for _ in range(steps):
        train = (torch.randn(batch, 3, size, size, generator=data), torch.randint(0, 10, (batch,), generator=data))
        valid = (torch.randn(batch, 3, size, size, generator=data), torch.randint(0, 10, (batch,), generator=data))
        search.step(train, valid, update_arch=True)
    return search


@pytest.fixture
def float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def test_pcdarts_with_k1_and_no_edge_normalization_is_first_order_darts(float64):
    """Same hyperparameters, same seed: the same weights and α as DARTS (order 1) after several
    steps. The extra slice in the PC edge only reorders float additions in backward, hence
    float64 and a tolerance far below any algorithmic difference."""
    shared = {"lr": 0.025, "lr_min": 0.001, "arch_lr": 3e-4}
    darts = run_steps(DARTS(), search_protocol("darts", order=1, **shared))
    pcdarts = run_steps(PCDARTS(), search_protocol("pcdarts", k=1, edge_normalization=False, **shared))
    darts_weights = dict(darts.supernet.named_parameters())
    pc_weights = {name.replace(".mixed.", "."): value for name, value in pcdarts.supernet.named_parameters()}
    assert darts_weights.keys() == pc_weights.keys()
    for name, value in darts_weights.items():
        torch.testing.assert_close(value, pc_weights[name], rtol=0, atol=1e-10, msg=name)
    torch.testing.assert_close(darts.arch.ops["normal"], pcdarts.arch.ops["normal"], rtol=0, atol=1e-10)
    torch.testing.assert_close(darts.arch.ops["reduce"], pcdarts.arch.ops["reduce"], rtol=0, atol=1e-10)
    assert pcdarts.arch.edges is None
    assert not torch.allclose(darts.arch.ops["normal"], torch.zeros(14, 8, dtype=torch.float64), atol=1e-4)  # α moved


def test_second_order_darts_moves_alpha_differently_from_first_order():
    first = run_steps(DARTS(), search_protocol("darts", order=1), steps=2)
    second = run_steps(DARTS(), search_protocol("darts", order=2), steps=2)
    assert not torch.allclose(first.arch.ops["normal"], second.arch.ops["normal"])


@settings(max_examples=25, deadline=None)
@given(
    k=st.sampled_from([1, 2, 4, 8]),
    groups_of_c=st.integers(1, 3),
    stride=st.sampled_from([1, 2]),
    size=st.sampled_from([4, 6, 8]),
    batch=st.integers(1, 3),
)
def test_partial_channel_edge_shapes(k, groups_of_c, stride, size, batch):
    channels = 16 * groups_of_c  # a stride-2 edge needs an even channel count after the 1/K split
    edge = PartialChannelMixedOp(channels, stride, ("none", "skip_connect", "sep_conv_3x3", "max_pool_3x3"), k=k)
    assert edge.sampled_channels == channels // k
    out = edge(torch.randn(batch, channels, size, size), torch.softmax(torch.randn(4), 0))
    assert out.shape == (batch, channels, size // stride, size // stride)


@pytest.mark.parametrize("k", [1, 2, 4, 8])
def test_pcdarts_supernet_runs_for_every_k(k):
    supernet = SearchNetwork(8, 10, 3, edge_factory=functools.partial(PartialChannelMixedOp, k=k))
    arch = ArchitectureParameters(supernet.num_edges, {"normal": 8, "reduce": 8}, 1e-3, edge_normalization=True)
    logits = supernet(torch.randn(2, 3, 16, 16), PCDARTS().weighting(arch, WEIGHT_STEP))
    logits.sum().backward()
    assert logits.shape == (2, 10)
    assert arch.edges["normal"].grad is not None and arch.edges["normal"].grad.abs().sum() > 0  # β is wired in


def test_edge_normalization_changes_which_edges_are_derived():
    """With equal op weights, β alone decides the edges; the derivation must follow it."""
    search = PCDARTS().build_search(
        search_protocol("pcdarts", arch_init_std=0.0).phase("search"), ImageClassification(10, (3, 8, 8))
    )
    arch = search.arch
    with torch.no_grad():
        arch.ops["normal"][:, 4] = 1.0  # sep_conv_3x3 strongest everywhere, equally on every edge
        arch.ops["reduce"][:, 5] = 1.0
        arch.edges["normal"].fill_(-5.0)
        for edge in (0, 1, 2, 4, 5, 8, 9, 13):  # node 2: inputs 0,1; node 3: 0,2; node 4: 0,3; node 5: 0,4
            arch.edges["normal"][edge] = 5.0
    genotype = PCDARTS().derive(search)
    assert [source for _, source in genotype.normal] == [0, 1, 0, 2, 0, 3, 0, 4]
    assert {op for op, _ in genotype.normal} == {"sep_conv_3x3"}
    with torch.no_grad():
        arch.edges["normal"].zero_()  # without β's preference the equal op weights tie
    assert [source for _, source in PCDARTS().derive(search).normal] != [0, 1, 0, 2, 0, 3, 0, 4]


@pytest.mark.slow
def test_smoke_search_is_deterministic_per_seed(tmp_path):
    """The real pipeline (stand-in data on disk, runner, supernet, derivation) twice per seed."""
    overrides = {"search.epochs": 2, "search.warmup_epochs": 1, "search.train_examples": 128, "search.batch_size": 16}

    def search(seed):
        spec = RunSpec(
            method="pcdarts", dataset="cifar10", phase="search", seed=seed, budget="smoke", overrides=overrides
        )
        paths = Paths(tmp_path / "results", tmp_path / "runs", tmp_path / "data")
        return read_record(execute(spec, paths, notify=lambda line: None).record_path)

    first, again, other = search(0), search(0), search(1)
    assert first["dataset"] == "synthetic-shapes"
    assert first["curves"] == again["curves"] and first["genotype"] == again["genotype"]
    assert first["curves"] != other["curves"]
    assert [row["arch_updated"] for row in first["curves"]["search"]] == [False, True]
    # the official script's last printed genotype (α after epochs - 1 epochs) is evaluated; both are kept
    genotypes = first["metrics"]["search_genotypes"]
    assert genotypes["evaluated"] == "last_logged"
    assert genotypes["last_logged"] == first["curves"]["search"][0]["genotype"]
    assert genotypes["final"] == first["curves"]["search"][-1]["genotype"]
    assert str(parse_genotype(genotypes["last_logged"])) == str(Genotype.from_dict(first["genotype"]))


def test_budgets_never_fork_the_protocol_keys():
    protocol = load_protocol("pcdarts", "cifar10")
    keys = {phase: set(entries) for phase, entries in protocol.phases.items()}
    get_budget("smoke").apply(protocol)
    assert {phase: set(entries) for phase, entries in protocol.phases.items()} == keys
    assert protocol.phase("search").warmup_epochs < protocol.phase("search").epochs


@pytest.mark.slow
def test_smoke_reproduce_through_the_cli_labels_its_record(tmp_path, capsys):
    """The main job's path end to end (search, then evaluation of the derived cell), shrunk."""
    from nasbench_repro.cli import main

    code = main(
        [
            "run",
            "pcdarts",
            "--budget",
            "smoke",
            "--results-dir",
            str(tmp_path / "results"),
            "--runs-dir",
            str(tmp_path / "runs"),
            "--data-root",
            str(tmp_path / "data"),
            "--set",
            "search.train_examples=64",
            "--set",
            "evaluate.train_examples=64",
            "--set",
            "evaluate.test_examples=64",
            "--set",
            "search.epochs=2",
            "--set",
            "evaluate.epochs=1",
        ]
    )
    assert code == 0
    record = read_record(Path(capsys.readouterr().out.strip()))
    labels = (record["budget"], record["dataset"], record["environment"]["device"])
    assert labels == ("smoke", "synthetic-shapes", "cpu")
    assert record["variant"] == "K=4, EN" and record["status"] == "complete"
    assert {
        "test_error_pct",
        "test_error_best_epoch_pct",
        "params_millions",
        "madds_millions",
        "search_valid_acc",
    } <= set(record["metrics"])
    assert record["metrics"]["test_examples"] == 64
    assert len(record["genotype"]["normal"]) == 8 and set(record["cost"]) == {"search", "evaluate"}


def test_profile_reports_time_and_memory_as_json(capsys):
    from nasbench_repro.cli import main

    code = main(
        [
            "profile",
            "pcdarts",
            "--batch-size",
            "4",
            "--steps",
            "1",
            "--set",
            "init_channels=4",
            "--set",
            "layers=3",
            "--json",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["batch_size"] == 4 and report["variant"] == "K=4, EN"
    assert report["step_seconds_median"] > 0 and report["saved_activation_bytes"] > 0
    assert report["peak_memory_bytes"] > 0 and len(report["stages"]) == 1
    assert 0 < report["saved_activation_bytes_weight_step"] <= report["saved_activation_bytes"]


@pytest.mark.slow
def test_partial_channels_cut_saved_activations_at_paper_size():
    """PC-DARTS' claim, measured: at the paper's supernet size (C=16, 8 cells) K=4 saves at most
    0.35x DARTS's activation bytes for the same batch, and memory falls as K grows."""
    images = torch.randn(2, 3, 32, 32)

    def saved(method, **overrides):
        protocol = load_protocol(method.name, "cifar10")
        apply_overrides(protocol, overrides, ["search"])
        torch.manual_seed(0)
        search = method.build_search(protocol.phase("search"), ImageClassification(10, (3, 32, 32)), no_autocast)
        return saved_activation_bytes(search, (images, None))

    darts = saved(DARTS(), order=1)
    by_k = {k: saved(PCDARTS(), k=k) for k in (1, 2, 4, 8)}
    assert by_k[4] <= 0.35 * darts
    assert by_k[1] > by_k[2] > by_k[4] > by_k[8]


def test_imagenet_search_uses_the_pc_darts_stem():
    """PC-DARTS searches ImageNet with three stride-2 stem convs: cells see 28x28, not 224x224."""
    protocol = load_protocol("pcdarts", "imagenet")
    apply_overrides(protocol, {"init_channels": 4, "layers": 3}, ["search"])
    search = PCDARTS().build_search(protocol.phase("search"), ImageClassification(1000, (3, 224, 224)), no_autocast)
    seen = []
    search.supernet.cells[0].register_forward_hook(lambda module, inputs, output: seen.append(output.shape))
    logits = search.outputs((torch.randn(1, 3, 224, 224), None), WEIGHT_STEP, "valid")
    assert logits.shape == (1, 1000) and seen[0][-1] == 28
    assert search.w_optimizer.param_groups[0]["lr"] == pytest.approx(0.5 / 5)  # first warm-up epoch: 1/5 of 0.5


class CountingStream:
    """A stream of numbered batches that counts how often a new pass over it starts."""

    def __init__(self, batches: int):
        self.batches, self.passes = batches, 0

    def __len__(self):
        return self.batches

    def __iter__(self):
        self.passes += 1
        return iter(range(100 * self.passes, 100 * self.passes + self.batches))


def test_fresh_arch_batches_start_a_new_pass_every_step_and_epoch_pass_walks_the_stream():
    task = ImageClassification(10, (3, 8, 8))
    arch_batches = CountingStream(2)
    pairs, steps = task.epoch(range(5), arch_batches, "fresh")
    assert [valid for _, valid in pairs] == [100, 200, 300, 400, 500] and steps == 5  # next(iter(valid_queue))
    arch_batches = CountingStream(2)
    pairs, _ = task.epoch(range(5), arch_batches, "epoch_pass")
    assert [valid for _, valid in pairs] == [100, 101, 200, 201, 300] and arch_batches.passes == 3


def test_official_behaviour_is_the_default_of_the_fidelity_options():
    for method in ("darts", "pcdarts"):
        search = load_protocol(method, "cifar10").phase("search")
        assert (search.arch_batches, search.evaluated_genotype) == ("fresh", "last_logged")
        assert "arch_grad_clip" not in search
    imagenet = load_protocol("pcdarts", "imagenet").phase("search")
    assert (imagenet.arch_batches, imagenet.arch_grad_clip, imagenet.evaluated_genotype) == (
        "epoch_pass",
        5.0,
        "last_logged",
    )


def test_arch_grad_clip_bounds_the_gradient_of_alpha_and_beta():
    """PC-DARTS's ImageNet search clips the architecture gradient at 5 (train_search_imagenet.py)."""
    batch = (torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,)))

    def gradient_norm(**extra):
        protocol = search_protocol("pcdarts").phase("search")
        torch.manual_seed(0)
        search = PCDARTS().build_search(
            PhaseProtocol("search", {**protocol, **extra}), ImageClassification(10, (3, 8, 8))
        )
        search.arch_step(batch, batch)
        return torch.cat([p.grad.flatten() for p in search.arch.parameters()]).norm().item()

    free = gradient_norm()
    assert free > 1e-3 and gradient_norm(arch_grad_clip=1e-4) == pytest.approx(1e-4, rel=1e-3)
