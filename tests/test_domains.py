"""Every protocol key has a domain, and a value outside it never starts a run.

The domains themselves (boundaries of each shared key, rules over several keys, the suffix
rules), that every key of every protocol file has one, that values arriving by `--set`,
`--sweep`, a budget or a third-party method's file are all checked before anything runs, and
the property behind it all: for any key of the real protocol files and any value, `nasbench
run --set key=value` either runs or exits 2 with one line, never a traceback, never a record
left behind by a refusal.
"""

from __future__ import annotations

import contextlib
import functools
import io
import itertools
import json
import math
import tomllib

import pytest
import tiny_method
from cifar_files import write_release
from cli_calls import cli, tiny_run_args
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_data_imagenet import write_tree
from text_files import ptb_lines, write_corpus, write_ptb

from methods.pcdarts import PCDARTS
from nasbench_repro import blackbox, catalog
from nasbench_repro.budgets import BUDGETS
from nasbench_repro.cli import main
from nasbench_repro.context import Context
from nasbench_repro.data import imagenet
from nasbench_repro.data.text import WT2
from nasbench_repro.errors import UserError
from nasbench_repro.protocol import CONFIG_DIR, DOMAINS, Entry, Protocol, check_domains, domain_for, load_protocol
from nasbench_repro.records import read_record, record_files
from nasbench_repro.runner import resolve_protocol
from nasbench_repro.spec import RunSpec


def protocol_of(**values):
    return Protocol("m", "d", "paper", {"search": {key: Entry(value, "test") for key, value in values.items()}})


def refusal(protocol, own=None) -> str | None:
    """The one-line refusal of `check_domains`, or None when every value is in its domain."""
    try:
        check_domains(protocol, own)
    except UserError as error:
        message = str(error)
        assert "\n" not in message
        return message
    return None


# --- each shared key's boundaries -----------------------------------------------------------------------------

# key: (accepted values, refused values); the context keys a rule reads are absent here, so
# only the key's own bounds apply (the rules over several keys are tested below).
BOUNDARIES = {
    "epochs": ([1, 600], [0, -1, 1.5, True, "3"]),
    "batch_size": ([2, 1024, 65_536], [1, 0, 2.0, 65_537, 2**64]),
    "train_examples": ([2, 50_000], [1, 0]),
    "test_examples": ([1, 10_000], [0]),
    "train_portion": ([0.5, 1e-3, 0.999], [0.0, 1.0, -0.5, "half"]),
    "train_fraction": ([0.1, 0.5], [0.0, 0.51, 1.0]),
    "valid_fraction": ([0.025, 0.5], [0.0, 0.6]),
    "init_channels": ([2, 16, 48, 128], [0, 1, 3, 17, -16, 130, 2**40]),
    "layers": ([3, 20, 50], [2, 0, 51]),
    "lr": ([1e-4, 20.0, 1000.0], [0.0, -0.1, 1000.5, 4.2e42]),
    "lr_min": ([0.0, 1e-3], [-1e-3]),
    "lr_gamma": ([0.97, 1.0], [0.0, 1.01]),
    "lr_schedule": (["cosine", "exponential", "linear"], ["step", "", 1]),
    "momentum": ([0.0, 0.9], [1.0, -0.1]),
    "weight_decay": ([0.0, 3e-4, 1.0], [-1e-9, 1.5, 1e42]),
    "grad_clip": ([5.0, 0.25], [0.0, -1.0]),
    "order": ([1, 2], [0, 3, True, 1.0]),
    "validation": (["every_epoch", "final_epoch"], ["never", True]),
    "arch_lr": ([3e-4, 1000], [0.0, -3e-4, 1e39]),
    "arch_betas": ([[0.5, 0.999], [0.0, 0.0]], [[0.5], [0.5, 1.0], [0.5, -0.1], [0.5, 0.9, 0.9], 0.5]),
    "arch_weight_decay": ([0.0, 1e-3, 1.0], [-0.1, 2.0]),
    "arch_init_std": ([0.0, 1e-3, 1.0], [-1e-3, 1e42]),
    "auxiliary": ([True, False], [1, 0, "yes"]),
    "auxiliary_weight": ([0.0, 0.4], [-0.4]),
    "drop_path_prob": ([0.0, 0.3], [1.0, -0.1]),
    "cutout_length": ([0, 16, 224], [-1, 1.5, 225]),
    "label_smoothing": ([0.0, 0.1], [1.0, -0.1]),
    "arch_init_mean": ([0.0, -1.5], ["zero", True]),
    "arch_grad_clip": ([5.0], [0.0]),
    "arch_batches": (["fresh", "epoch_pass"], ["other"]),
    "evaluated_genotype": (["final", "last_logged"], ["best"]),
    "nesterov": ([False], [1]),  # True needs a momentum: test_nesterov_needs_a_momentum
    "valid_examples": ([1, 73_760], [0]),
    "valid_batch_size": ([1, 10], [0, 2**64]),
    "test_batch_size": ([1], [0]),
    "hidden_size": ([1, 850, 4096], [0, 4097]),
    "bptt": ([1, 35, 1000], [0, 1001]),
    "bptt_std": ([0.0, 5.0], [-1.0, 1e300]),
    "bptt_max_delta": ([0, 20, 1000], [-1, 2**64 - 35]),
    "asgd_nonmono": ([1, 5], [0]),
    "asgd_trigger": (["best_before_last_nonmono", "best_so_far"], ["never"]),
    "activation_regularization": ([0.0, 2.0], [-1.0]),
    "temporal_activation_regularization": ([0.0, 1e-3], [-1e-3]),
}


def test_every_shared_key_has_boundary_cases():
    """A key added to DOMAINS needs its rows here, so its bounds are tested too."""
    assert sorted(set(DOMAINS) - set(BOUNDARIES)) == []


@pytest.mark.parametrize("key", sorted(BOUNDARIES))
def test_shared_key_boundaries(key):
    accepted, refused = BOUNDARIES[key]
    for value in accepted:
        assert refusal(protocol_of(**{key: value})) is None, (key, value)
    for value in refused:
        message = refusal(protocol_of(**{key: value}))
        assert message is not None, (key, value)
        assert f"search.{key} = {json.dumps(value)}" in message and "out of range: it must be" in message
        assert DOMAINS[key].allowed in message


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_refused_even_without_a_domain(value):
    message = refusal(protocol_of(some_new_key=value))
    assert message is not None and "it must be a finite number" in message


# --- rules over several keys, and the suffix rules --------------------------------------------------------------


@pytest.mark.parametrize("key", ["warmup_epochs", "lr_warmup_epochs", "frozen_epochs"])
def test_leading_epochs_leave_an_epoch_after_them(key):
    assert refusal(protocol_of(epochs=3, **{key: 0})) is None
    assert refusal(protocol_of(epochs=3, **{key: 2})) is None
    for value in (3, 4, -1, 1.0):
        message = refusal(protocol_of(epochs=3, **{key: value}))
        assert message is not None and "0 <= value < epochs (epochs = 3)" in message


def test_the_search_split_keeps_two_images_on_each_side():
    assert refusal(protocol_of(train_examples=10, train_portion=0.2)) is None  # 2 | 8
    assert refusal(protocol_of(train_examples=10, train_portion=0.8)) is None  # 8 | 2
    for portion in (0.1, 0.19, 0.9):
        message = refusal(protocol_of(train_examples=10, train_portion=portion))
        assert message is not None and "(train_examples = 10)" in message
    assert refusal(protocol_of(train_examples=3, train_portion=0.5)) is not None  # 1 | 2


def test_a_language_model_batch_leaves_the_rows_its_loops_need():
    """Text batches are columns of tokens: training walks three rows at least, evaluation two."""
    assert refusal(protocol_of(bptt=35, train_examples=96, batch_size=32)) is None  # 3 rows
    message = refusal(protocol_of(bptt=35, train_examples=95, batch_size=32))
    assert message is not None and "(train_examples = 95)" in message
    assert refusal(protocol_of(train_examples=95, batch_size=32)) is None  # images: one partial batch is fine
    assert refusal(protocol_of(bptt=35, valid_examples=20, valid_batch_size=10)) is None
    assert refusal(protocol_of(bptt=35, valid_examples=19, valid_batch_size=10)) is not None
    assert refusal(protocol_of(bptt=35, test_examples=1, test_batch_size=1)) is not None


def test_a_schedule_floor_stays_below_its_start():
    assert refusal(protocol_of(lr=0.1, lr_min=0.0)) is None
    assert refusal(protocol_of(lr=0.1, lr_min=0.1)) is None
    message = refusal(protocol_of(lr=0.1, lr_min=0.2))
    assert message is not None and "0 <= value <= lr (lr = 0.1)" in message


def test_nesterov_needs_a_momentum():
    """torch's SGD raises on Nesterov without momentum; the domain says so before anything runs."""
    assert refusal(protocol_of(momentum=0.9, nesterov=True)) is None
    message = refusal(protocol_of(momentum=0.0, nesterov=True))
    assert message is not None and "(momentum = 0.0)" in message


def test_the_two_imagenet_search_subsets_fit_in_every_class_together():
    assert refusal(protocol_of(train_fraction=0.5, valid_fraction=0.5)) is None
    assert refusal(protocol_of(train_fraction=0.5, valid_fraction=0.51)) is not None


def test_pcdarts_k_is_one_of_the_ablated_values_and_divides_the_channels():
    own = PCDARTS.protocol_domains
    for k in (1, 2, 4, 8):
        assert refusal(protocol_of(init_channels=16, k=k), own) is None
    for k in (0, 3, 16, True):
        assert refusal(protocol_of(init_channels=16, k=k), own) is not None
    message = refusal(protocol_of(init_channels=12, k=8), own)
    assert message is not None and "(init_channels = 12)" in message


def test_a_broken_key_is_named_before_a_rule_that_reads_it():
    """k's rule reads init_channels: a malformed init_channels is reported as such, not as a crash in k's rule."""
    message = refusal(protocol_of(k=4, init_channels="sixteen"), PCDARTS.protocol_domains)
    assert message is not None and "search.init_channels" in message


@pytest.mark.parametrize(
    "key, accepted, refused",
    [
        ("restart_epochs", 0, 5),
        ("momentum_lr", 0.1, 0.0),
        ("head_lr", 1000.0, 1e39),
        ("path_prob", 0.0, 1.0),
        ("edge_dropout_rate", 0.5, -0.5),
        ("head_weight_decay", 0.0, -1.0),
        ("tail_weight_decay", 1.0, 1.5),
    ],
)
def test_suffix_rules(key, accepted, refused):
    assert refusal(protocol_of(epochs=5, **{key: accepted})) is None
    assert refusal(protocol_of(epochs=5, **{key: refused})) is not None


def test_a_method_domain_comes_before_the_shared_one_and_unknown_keys_have_none():
    own = {"lr": DOMAINS["epochs"]}
    assert domain_for("lr", own) is DOMAINS["epochs"]
    assert domain_for("lr") is DOMAINS["lr"]
    assert domain_for("some_flag") is None


def test_a_refusal_names_the_key_the_user_set():
    """--set epochs=1 leaves the budget's warm-up epoch with none after it: the message says both."""
    protocol = load_protocol("pcdarts", "cifar10")
    BUDGETS["smoke"].apply(protocol)
    protocol.set_value("search", "epochs", 1, "override")
    message = refusal(protocol, PCDARTS.protocol_domains)
    assert message == (
        "cifar10 search.warmup_epochs = 1 (scaled by the smoke budget) is out of range: it must be an "
        "integer with 0 <= value < epochs (epochs = 1, set by --set or --sweep)"
    )


# --- every protocol file ------------------------------------------------------------------------------------------


def protocol_tables() -> list[tuple[str, str, str | None]]:
    """(method, dataset, variant) for every table of every protocol file there is now."""
    tables = []
    for path in sorted(CONFIG_DIR.glob("*.toml")):
        document = tomllib.loads(path.read_text(encoding="utf-8"))
        for dataset, phases in document.items():
            if dataset == "paper":
                continue
            tables.append((path.stem, dataset, None))
            tables.extend((path.stem, dataset, variant) for variant in phases.get("variants", {}))
    return tables


def protocol_keys() -> list[tuple[str, str, str | None, str, str]]:
    """(method, dataset, variant, phase, key) for every value of every protocol file."""
    return [
        (method, dataset, variant, phase, key)
        for method, dataset, variant in protocol_tables()
        for phase, entries in load_protocol(method, dataset, variant=variant).phases.items()
        for key in entries
    ]


def test_there_are_protocol_files_to_check():
    assert {"darts", "pcdarts"} <= {method for method, _, _ in protocol_tables()}


@pytest.mark.parametrize("method", sorted({method for method, _, _ in protocol_tables()}))
def test_every_key_of_every_protocol_file_has_a_domain(method):
    own = catalog.get_method(method).protocol_domains
    without = sorted(
        {
            f"{dataset}.{phase}.{key}"
            for name, dataset, _, phase, key in protocol_keys()
            if name == method and domain_for(key, own) is None
        }
    )
    assert without == [], f"methods/configs/{method}.toml: give these keys a domain"


@pytest.mark.parametrize("method, dataset, variant", protocol_tables())
def test_every_protocol_file_is_in_its_domains_at_every_budget(method, dataset, variant):
    method_class = catalog.get_method(method)
    phase = "reproduce" if "search" in load_protocol(method, dataset, variant=variant).phases else "evaluate"
    for budget in BUDGETS:
        resolve_protocol(
            method_class, RunSpec(method, dataset, phase=phase, genotype="DARTS_V2", budget=budget, variant=variant)
        )


# --- values arriving by the command line, a sweep, a budget or a third-party file --------------------------------


@pytest.mark.parametrize("value", ["-1", "0"])
def test_the_issues_two_commands_exit_2_with_one_line(tmp_path, capsys, value):
    code, out, err = cli(
        capsys,
        "run",
        "pcdarts",
        "--dataset",
        "cifar10",
        "--budget",
        "smoke",
        "--set",
        f"search.epochs={value}",
        "--results-dir",
        str(tmp_path / "results"),
        "--runs-dir",
        str(tmp_path / "runs"),
        "--data-root",
        str(tmp_path / "data"),
    )
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"nasbench: error: cifar10 search.epochs = {value} (set by --set or --sweep) is out of "
        f"range: it must be an integer >= 1"
    ]
    assert not tmp_path.joinpath("results").exists() and not tmp_path.joinpath("runs").exists()


def test_a_third_party_methods_file_is_checked_and_named(tiny, capsys):
    config = tiny_method.TinyMethod.config_file
    config.write_text(config.read_text().replace("lr = { value = 0.1,", "lr = { value = -0.1,"))
    code, _, err = cli(capsys, *tiny_run_args(tiny))
    assert code == 2 and len(err.splitlines()) == 1
    assert f"toy search.lr = -0.1 (from {config}) is out of range: it must be {DOMAINS['lr'].allowed}" in err
    assert not tiny.results_dir.exists()


def test_a_bad_sweep_value_stops_the_sweep_before_its_first_run(tiny, capsys):
    code, out, err = cli(capsys, *tiny_run_args(tiny, "--phase", "search", "--sweep", "lr=0.1,0.2,-1"))
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert "search.lr = -1.0 (set by --set or --sweep)" in err
    assert not tiny.results_dir.exists() and not tiny.runs_dir.exists()


def test_a_value_a_budget_makes_out_of_range_names_the_budget(tiny, capsys):
    """The smoke budget caps 5,000 examples at 1,024: a 0.9995 split then leaves one image for α."""
    config = tiny_method.TinyMethod.config_file
    config.write_text(
        config.read_text().replace(
            'train_examples = { value = 256, source = "test" }',
            'train_examples = { value = 5000, source = "test" }\ntrain_portion = { value = 0.9995, source = "test" }',
        )
    )
    code, _, err = cli(capsys, *tiny_run_args(tiny, "--phase", "search", "--budget", "smoke"))
    assert code == 2 and len(err.splitlines()) == 1
    assert (
        f"toy search.train_portion = 0.9995 (from {config}) is out of range" in err
        and "(train_examples = 1024, scaled by the smoke budget)" in err
    )
    assert not tiny.results_dir.exists()
    code, out, _ = cli(capsys, *tiny_run_args(tiny, "--phase", "search", "--budget", "paper"))
    assert code == 0 and out.strip().endswith(".json")


def test_halving_the_channels_keeps_them_even():
    protocol = protocol_of(init_channels=50)
    BUDGETS["smoke"].apply(protocol)
    assert protocol.phase("search").init_channels == 24


# --- the property: any key, any value: it runs, or one line and exit 2 ------------------------------------------

# Probes run through the real command line, runner, method and data pipeline on tiny data sets
# in the genuine formats, cut short so each example costs about a second: the network is built
# and takes one step per epoch (a black-box candidate too), and a run stops after PROBE_EPOCHS
# epochs through the runner's interrupt path, as Ctrl-C would, recorded as interrupted. Unless
# the key under test is one of them, the other values are set as small as the method's domains
# allow, as a user trying a small subset would set them: the fewest epochs with no warm-up (so
# the first epoch also runs what follows a warm-up, the architecture steps and the final
# validation), the fewest candidates and cells, a search split that fits the tiny data.
PROBE_EPOCHS = 1
PROBE_DATASETS = {"cifar10", "imagenet", "ptb", "wt2"}
PROBE_GENOTYPE = "DARTS_V2"  # a published cell for every data set's kind (CNN or recurrent)
CIFAR_TRAIN_IMAGES = 20


class ProbeStopped(KeyboardInterrupt):
    """Raised by the probe's loops after PROBE_EPOCHS epochs; the runner records an interrupted run."""


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    """Tiny data sets on disk and the runner's loops cut short, for the whole module's probes."""
    root = tmp_path_factory.mktemp("probe-data")
    write_release(root / "cifar-10-batches-py", train_per_batch=CIFAR_TRAIN_IMAGES // 5, test_count=4)
    write_tree(root, train_per_class=4, val_per_class=1)
    write_ptb(root, train=300, held_out=150)  # above the smoke budget's 1,024 tokens per split
    write_corpus(
        root,
        WT2,
        {
            split: [" = Heading = ", *ptb_lines(count, seed)]
            for split, count, seed in (("train", 300, 0), ("valid", 150, 1), ("test", 150, 2))
        },
    )
    real_epochs, real_progress, real_train_epoch = Context.epochs, Context.progress, blackbox.train_epoch
    probe_state = {"root": root, "count": itertools.count(), "candidate_epochs": 0}

    def epochs(self, total, state):
        for count, epoch in enumerate(real_epochs(self, total, state)):
            if count == PROBE_EPOCHS:
                raise ProbeStopped
            yield epoch

    def progress(self, iterable=None, total=None, desc=""):
        return itertools.islice(real_progress(self, iterable, total=total, desc=desc), 1)

    def train_epoch(*args, **kwargs):  # black-box candidates train in their own loop (in-process: --workers 0)
        probe_state["candidate_epochs"] += 1
        if probe_state["candidate_epochs"] > PROBE_EPOCHS:
            raise ProbeStopped
        return real_train_epoch(*args, **kwargs, progress=lambda batches: itertools.islice(batches, 1))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Context, "epochs", epochs)
        patch.setattr(Context, "progress", progress)
        patch.setattr(blackbox, "train_epoch", train_epoch)
        patch.setattr(imagenet, "default_workers", lambda: 0)  # no worker processes inside the test
        yield probe_state


def probe_keys() -> list[tuple[str, str, str | None, str, str]]:
    implemented = {method for method, _, _ in protocol_tables() if catalog.is_implemented(method)}
    return [key for key in protocol_keys() if key[1] in PROBE_DATASETS and key[0] in implemented]


def smallest_split(portion: float) -> int:
    """The fewest images a `portion` split leaves at least 2 of on each side (the CIFAR split's rounding)."""
    return next(count for count in range(4, CIFAR_TRAIN_IMAGES + 1) if 2 <= math.floor(portion * count) <= count - 2)


# Counts and sizes that make a probe longer without changing the code it runs, shrunk in this
# order (a population before the architectures that must hold it).
SHRINKABLE = (
    "sample_size",
    "population_size",
    "children_per_update",
    "round_size",
    "rescore_top",
    "score_batches",
    "depth_step_architectures",
    "architectures",
    "layers",
    "hidden_size",
)


@functools.cache
def probe_settings(method: str, dataset: str, variant: str | None, phase: str, key: str) -> tuple[str, ...]:
    """The fixed `--set`s that keep a probe short (see above), never of the key under test, each
    the smallest value the method's domains accept: the fewest epochs with no leading epochs,
    the fewest candidates, the fewest cells, and a search split that fits the tiny data set."""
    method_class = catalog.get_method(method)
    entries = load_protocol(method, dataset, variant=variant).phases[phase]

    def accepted(settings_: dict) -> bool:
        spec = RunSpec(
            method,
            dataset,
            phase=phase,
            budget="smoke",
            variant=variant,
            genotype=PROBE_GENOTYPE,
            overrides={f"{phase}.{name}": value for name, value in settings_.items()},
        )
        try:
            resolve_protocol(method_class, spec)
        except UserError:
            return False
        return True

    fixed: dict = {}
    if "train_portion" in entries and "train_examples" in entries and key != "train_examples":
        fixed["train_examples"] = smallest_split(entries["train_portion"].value)
    if not key.endswith("epochs"):
        leading = {name: 0 for name in entries if name.endswith("epochs") and name != "epochs"}
        fixed.update(
            next(
                (candidate for epochs in range(1, 9) if accepted(candidate := {**fixed, **leading, "epochs": epochs})),
                {},
            )
        )
    for name in SHRINKABLE:
        if name in entries and name != key:
            fixed = next((candidate for count in range(1, 9) if accepted(candidate := {**fixed, name: count})), fixed)
    return tuple(argument for name, value in fixed.items() for argument in ("--set", f"{phase}.{name}={value}"))


def toml_float(value: float) -> str:
    return {math.inf: "inf", -math.inf: "-inf"}.get(value, "nan" if math.isnan(value) else repr(value))


def toml_list(items: list) -> str:
    return "[" + ", ".join(toml_float(item) if isinstance(item, float) else str(item) for item in items) + "]"


VALUES = st.one_of(
    st.integers(-3, 40).map(str),  # about the domains' bounds
    st.integers().map(str),
    st.floats(-0.5, 1.5).map(toml_float),
    st.floats().map(toml_float),  # NaN and infinities included
    st.booleans().map(lambda flag: str(flag).lower()),
    st.sampled_from(["cosine", "linear", "exponential", "every_epoch", "final_epoch", "fresh"]).map(json.dumps),
    st.text(max_size=12),  # as typed: bare words, TOML fragments, control characters
    st.lists(st.floats(-0.5, 1.5) | st.integers(-2, 3), max_size=3).map(toml_list),
)


def near(value):
    """Values like the file's own, where most of a domain lies (half the probes draw from here)."""
    if isinstance(value, bool):
        return st.booleans().map(lambda flag: str(flag).lower())
    if isinstance(value, int):
        return st.integers(0, max(2 * value, 4)).map(str)
    if isinstance(value, float):
        return st.floats(0, max(2 * value, 1.0)).map(toml_float)
    return st.just(json.dumps(value))  # strings and lists as the file has them


@pytest.mark.slow
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(target=st.sampled_from(probe_keys()), data=st.data())
def test_any_value_of_any_key_runs_or_is_refused_in_one_line(probe, target, data):
    method, dataset, variant, phase, key = target
    file_value = load_protocol(method, dataset, variant=variant).phases[phase][key].value
    raw = data.draw(
        near(file_value) if data.draw(st.booleans(), label="near the file's value") else VALUES, label="raw"
    )
    run, probe["candidate_epochs"] = next(probe["count"]), 0
    results, runs = probe["root"] / f"results-{run}", probe["root"] / f"runs-{run}"
    args = [
        "run",
        method,
        "--dataset",
        dataset,
        "--phase",
        phase,
        "--budget",
        "smoke",
        "--workers",
        "0",
        "--data-root",
        str(probe["root"]),
        "--allow-unofficial-data",
        "--results-dir",
        str(results),
        "--runs-dir",
        str(runs),
        *(["--variant", variant] if variant else []),
        *(["--genotype", PROBE_GENOTYPE] if phase == "evaluate" else []),
        *probe_settings(*target),
        "--set",
        f"{phase}.{key}={raw}",
    ]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    err_lines = err.getvalue().splitlines()
    written = record_files(results)
    event(f"exit {code}")  # --hypothesis-show-statistics: how many probes ran, how many were refused
    if code == 2:
        assert len(err_lines) == 1 and err_lines[0].startswith("nasbench: error: "), err.getvalue()
        assert written == [] and not runs.exists(), "a refused run left files behind"
        return
    assert "Traceback" not in err.getvalue()
    [path] = written
    record = read_record(path)
    expected = {0: "complete", 1: "failed", 130: "interrupted"}
    assert code in expected and record["status"] == expected[code], (code, record["status"], record.get("reason"))
    if code == 1:  # a value the domain allows may still make the loss diverge: that is a result, recorded
        assert " is nan " in record["reason"] or " is inf " in record["reason"], record["reason"]
