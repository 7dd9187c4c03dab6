"""Protocols are data with sources; budgets scale them by rules; overrides are typed."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nasbench_repro.budgets import BUDGETS, get_budget
from nasbench_repro.errors import UserError
from nasbench_repro.protocol import Entry, Protocol, apply_overrides, load_protocol, parse_value


def protocol_of(**search_values):
    return Protocol("m", "d", "paper", {"search": {key: Entry(value, "test") for key, value in search_values.items()}})


@given(
    epochs=st.integers(1, 1000),
    warmup=st.integers(0, 1000),
    channels=st.integers(4, 128),
    layers=st.integers(1, 40),
    batch=st.integers(1, 2048),
    examples=st.integers(1, 100_000),
    budget=st.sampled_from(sorted(BUDGETS)),
)
def test_budgets_only_shrink_and_keep_schedules_consistent(epochs, warmup, channels, layers, batch, examples, budget):
    warmup = min(warmup, epochs)
    protocol = protocol_of(
        epochs=epochs,
        warmup_epochs=warmup,
        init_channels=channels,
        layers=layers,
        batch_size=batch,
        train_examples=examples,
    )
    get_budget(budget).apply(protocol)
    scaled = protocol.phase("search")
    assert 1 <= scaled.epochs <= epochs
    assert 0 <= scaled.warmup_epochs <= scaled.epochs
    assert scaled.init_channels <= channels and scaled.layers <= layers
    assert 1 <= scaled.batch_size <= batch and 1 <= scaled.train_examples <= examples
    if budget == "paper":
        assert protocol.values()["search"] == {
            "epochs": epochs,
            "warmup_epochs": warmup,
            "init_channels": channels,
            "layers": layers,
            "batch_size": batch,
            "train_examples": examples,
        }
    changed = protocol.provenance.get("search", {})
    assert all(how == f"budget:{budget}" for how in changed.values())


def test_warmup_keeps_its_share_of_the_schedule():
    protocol = protocol_of(epochs=50, warmup_epochs=15)
    get_budget("reduced").apply(protocol)
    assert (protocol.phase("search").epochs, protocol.phase("search").warmup_epochs) == (5, 2)


def test_unknown_budget_is_a_user_error():
    with pytest.raises(UserError, match="unknown budget 'tiny'"):
        get_budget("tiny")


@pytest.mark.parametrize(
    "raw, value", [("10", 10), ("0.5", 0.5), ("true", True), ("[1, 2]", [1, 2]), ('"x y"', "x y"), ("cosine", "cosine")]
)
def test_override_values_parse_as_toml_literals(raw, value):
    assert parse_value(raw) == value


def test_overrides_resolve_check_types_and_record_provenance():
    protocol = Protocol(
        "m",
        "d",
        "paper",
        {
            "search": {"epochs": Entry(50, "s"), "k": Entry(4, "s"), "lr": Entry(0.1, "s")},
            "evaluate": {"epochs": Entry(600, "s")},
        },
    )
    apply_overrides(protocol, {"k": 8, "lr": 1, "evaluate.epochs": 3}, ["search", "evaluate"])
    assert protocol.values() == {"search": {"epochs": 50, "k": 8, "lr": 1.0}, "evaluate": {"epochs": 3}}
    assert isinstance(protocol.phase("search").lr, float)
    assert protocol.describe()["changed"] == {
        "search": {"k": "override", "lr": "override"},
        "evaluate": {"epochs": "override"},
    }
    with pytest.raises(UserError, match="ambiguous: write search.epochs or evaluate.epochs"):
        apply_overrides(protocol, {"epochs": 1}, ["search", "evaluate"])
    apply_overrides(protocol, {"epochs": 1}, ["search"])  # unambiguous when only search runs
    with pytest.raises(UserError, match="expected int"):
        apply_overrides(protocol, {"k": 0.5}, ["search"])
    with pytest.raises(UserError, match="known keys: search.epochs, search.k, search.lr"):
        apply_overrides(protocol, {"kk": 1}, ["search"])


def test_malformed_protocol_files_name_the_problem(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text("[cifar10.search]\nepochs = 50\n")
    with pytest.raises(UserError, match=r"cifar10\.search\.epochs must be \{ value = \.\.\., source"):
        load_protocol("m", "cifar10", path)
    path.write_text("[cifar10.search\n")
    with pytest.raises(UserError, match="malformed protocol file"):
        load_protocol("m", "cifar10", path)
    path.write_text('[cifar10.train]\nepochs = { value = 1, source = "x" }\n')
    with pytest.raises(UserError, match="is not a phase"):
        load_protocol("m", "cifar10", path)
    with pytest.raises(UserError, match="no protocol file"):
        load_protocol("m", "cifar10", tmp_path / "absent.toml")


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf", "+inf"])
def test_non_finite_overrides_are_refused(raw):
    protocol = Protocol("m", "d", "paper", {"search": {"lr": Entry(0.1, "s")}})
    with pytest.raises(UserError, match=f"--set lr={raw.lstrip('+')}: a protocol value must be a finite number"):
        apply_overrides(protocol, {"lr": parse_value(raw)}, ["search"])
    assert protocol.values() == {"search": {"lr": 0.1}} and not protocol.provenance


@pytest.mark.parametrize(
    "raw, problem",
    [
        ('[0.5, "x"]', 'arch_betas[1]="x": expected float like 0.5'),
        ("[0.5, true]", "arch_betas[1]=true: expected float like 0.5"),
        ("[0.5, nan]", "arch_betas[1]=nan: a protocol value must be a finite number"),
        ("[[0.5], 0.9]", "arch_betas[0]=[0.5]: expected float like 0.5"),
        ("0.5", "arch_betas=0.5: expected list like [0.5, 0.999]"),
    ],
)
def test_list_overrides_check_each_element(raw, problem):
    protocol = Protocol("m", "d", "paper", {"search": {"arch_betas": Entry([0.5, 0.999], "s")}})
    with pytest.raises(UserError) as raised:
        apply_overrides(protocol, {"arch_betas": parse_value(raw)}, ["search"])
    assert problem in str(raised.value) and "\n" not in str(raised.value)


def test_list_overrides_of_the_right_element_type_are_accepted():
    protocol = Protocol("m", "d", "paper", {"search": {"arch_betas": Entry([0.5, 0.999], "s")}})
    apply_overrides(protocol, {"arch_betas": parse_value("[0, 0.9]")}, ["search"])  # ints widen to floats
    assert protocol.phase("search").arch_betas == [0.0, 0.9]
    assert all(isinstance(beta, float) for beta in protocol.phase("search").arch_betas)
