"""Genotypes: immutable data, JSON and official-string round trips, a safe parser, the
published cells with their sources, and DARTS' derivation rule."""

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nasbench_repro.errors import UserError
from nasbench_repro.spaces.cnn.ops import DARTS_PRIMITIVES, NASP_NORMAL_PRIMITIVES, NASP_REDUCE_PRIMITIVES, OP_NAMES
from nasbench_repro.spaces.genotypes import (
    Genotype,
    RecurrentGenotype,
    cell_edge_count,
    derive_cell,
    derive_genotype,
    find_published,
    get_published,
    parse_genotype,
    published_genotypes,
    resolve_genotype,
)

# As quark0/darts @f276dd3 cnn/genotypes.py prints DARTS_V2 (the repository's own formatting).
DARTS_V2_OFFICIAL = """Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0),
('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)],
normal_concat=[2, 3, 4, 5],
reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0),
('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"""
PC_DARTS_OFFICIAL = (
    "Genotype(normal=[('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 0), ('dil_conv_3x3', 1), "
    "('sep_conv_5x5', 0), ('sep_conv_3x3', 1), ('avg_pool_3x3', 0), ('dil_conv_3x3', 1)], normal_concat=range(2, 6), "
    "reduce=[('sep_conv_5x5', 1), ('max_pool_3x3', 0), ('sep_conv_5x5', 1), ('sep_conv_5x5', 2), ('sep_conv_3x3', 0), "
    "('sep_conv_3x3', 3), ('sep_conv_3x3', 1), ('sep_conv_3x3', 2)], reduce_concat=range(2, 6))"
)


@st.composite
def cells(draw):
    nodes = draw(st.integers(1, 5))
    pairs = [
        (draw(st.sampled_from(OP_NAMES)), draw(st.integers(0, node + 1))) for node in range(nodes) for _ in range(2)
    ]
    concat = draw(st.lists(st.integers(2, nodes + 1), min_size=1, unique=True))
    return pairs, concat


@st.composite
def genotypes(draw):
    normal, normal_concat = draw(cells())
    reduce, reduce_concat = draw(st.one_of(cells(), st.just((None, [2]))))
    return Genotype(normal, normal_concat, reduce, reduce_concat)


def one_line_error(call, *args):
    with pytest.raises(UserError) as error:
        call(*args)
    message = str(error.value)
    assert message and "\n" not in message
    return message


# --- data --------------------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(genotypes())
def test_json_round_trip(genotype):
    assert Genotype.from_json(genotype.to_json()) == genotype
    assert resolve_genotype(json.loads(json.dumps(genotype.to_dict()))) == genotype


@settings(max_examples=60, deadline=None)
@given(genotypes())
def test_official_string_round_trip(genotype):
    assert parse_genotype(str(genotype)) == genotype
    assert parse_genotype(genotype.to_official_string()).to_dict() == genotype.to_dict()


def test_genotypes_are_immutable_and_hashable():
    first = Genotype([["sep_conv_3x3", 0], ["skip_connect", 1]], range(2, 3), None, [2])
    second = Genotype((("sep_conv_3x3", 0), ("skip_connect", 1)), [2], None, (2,))
    assert first == second and hash(first) == hash(second) and len({first, second}) == 1
    assert first.normal == (("sep_conv_3x3", 0), ("skip_connect", 1))
    with pytest.raises(AttributeError):
        first.normal = ()


def test_pasted_official_string_round_trips_to_the_published_genotype():
    pasted = parse_genotype(DARTS_V2_OFFICIAL)
    assert pasted == get_published("DARTS_V2").genotype
    assert parse_genotype(str(pasted)) == pasted
    assert Genotype.from_json(pasted.to_json()) == pasted
    assert pasted.to_dict()["normal_concat"] == [2, 3, 4, 5]
    assert str(pasted).endswith("reduce_concat=range(2, 6))")
    assert parse_genotype(PC_DARTS_OFFICIAL) == resolve_genotype("pcdarts")


def test_string_forms_the_repositories_use():
    positional = "genotypes.Genotype([('skip_connect', 0), ('sep_conv_3x3', 1)], range(2, 3), None, [2])"
    assert parse_genotype(positional) == Genotype((("skip_connect", 0), ("sep_conv_3x3", 1)), [2], None, [2])
    amoeba = get_published("AmoebaNet").genotype
    assert "reduce_concat=[3, 4, 6]" in str(amoeba) and parse_genotype(str(amoeba)) == amoeba


@pytest.mark.parametrize(
    "text",
    [
        "Genotype(normal=[('sep_conv_3x3', 0)",  # unbalanced
        "normal=[('sep_conv_3x3', 0)]",  # not a call
        "Network(normal=[])",  # not a Genotype
        "Genotype(normal=__import__('os').system('true'), normal_concat=[2], reduce=None, reduce_concat=[2])",
        "Genotype(normal=[('sep_conv_3x3', 0), ('skip_connect', 1)], normal_concat=list(range(2, 3)), reduce=None, "
        "reduce_concat=[2])",
        "Genotype(**{'normal': []})",
        "Genotype(normal=[('sep_conv_3x3', 0), ('skip_connect', 1)], normal=[], normal_concat=[2], reduce=None, "
        "reduce_concat=[2])",
    ],
)
def test_malformed_strings_are_refused_in_one_line(text):
    one_line_error(parse_genotype, text)


def test_nothing_in_a_pasted_string_is_executed(tmp_path):
    marker = tmp_path / "ran"
    text = (
        f"Genotype(normal=[(open({str(marker)!r}, 'w').write('x'), 0)], normal_concat=[2], reduce=None, "
        f"reduce_concat=[2])"
    )
    one_line_error(parse_genotype, text)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("pairs", "concat", "expected"),
    [
        ([("sep_conv_3x3", 0), ("conv_9x9", 1)], [2], "unknown operation 'conv_9x9'"),
        ([("sep_conv_3x3", 0), ("skip_connect", 2)], [2], "feeds node 2, whose inputs are 0..1"),
        ([("sep_conv_3x3", 0), ("skip_connect", -1)], [2], "whose inputs are 0..1"),
        ([("sep_conv_3x3", 0), ("skip_connect", 1), ("skip_connect", 2)], [2], "3 (op, input) pairs"),
        ([], [2], "0 (op, input) pairs"),
        ([("sep_conv_3x3", 0), ("skip_connect", 1)], [2, 3], "normal_concat [2, 3]"),
        ([("sep_conv_3x3", 0), ("skip_connect", 1)], [2, 2], "distinct"),
        ([("sep_conv_3x3", 0), ("skip_connect", True)], [2], "(op name, input index)"),
        ([("sep_conv_3x3", 0), "skip_connect"], [2], "(op name, input index)"),
    ],
)
def test_invalid_genotypes_are_one_line_user_errors(pairs, concat, expected):
    assert expected in one_line_error(Genotype, pairs, concat, None, [2])


def test_space_check_names_the_foreign_op():
    nasp = get_published("NASP").genotype
    nasp.check_space(NASP_NORMAL_PRIMITIVES, NASP_REDUCE_PRIMITIVES, steps=4)
    message = one_line_error(nasp.check_space, DARTS_PRIMITIVES)
    assert "'conv_3x1_1x3'" in message
    assert "intermediate nodes" in one_line_error(get_published("NASNet").genotype.check_space, OP_NAMES, None, 4)


def test_malformed_dicts_and_json():
    assert "lacks normal_concat" in one_line_error(resolve_genotype, {"normal": [], "reduce": None})
    assert "unknown keys" in one_line_error(Genotype.from_dict, {**get_published("darts").genotype.to_dict(), "x": 1})
    assert "malformed" in one_line_error(Genotype.from_json, "{not json")


# --- published genotypes and resolving -----------------------------------------------------------------------------


def test_every_published_genotype_has_a_source():
    entries = published_genotypes()
    names = {(entry.kind, entry.name) for entry in entries}
    for name in (
        "DARTS_V1",
        "DARTS_V2",
        "NASNet",
        "AmoebaNet",
        "PC_DARTS_cifar",
        "PC_DARTS_image",
        "PDARTS",
        "GDAS_V1",
        "GDAS_F1",
        "GDAS_GF",
        "GDAS_FG",
        "NASP",
        "ASHA200",
    ):
        assert ("cnn", name) in names
    for name in ("DARTS_V1", "DARTS_V2", "ENAS", "GDAS"):
        assert ("rnn", name) in names
    assert all(entry.source for entry in entries)
    assert get_published("GDAS_F1").genotype.reduce is None


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("darts_v2", "DARTS_V2"),
        ("DARTS", "DARTS_V2"),
        ("pcdarts", "PC_DARTS_cifar"),
        ("PC-DARTS", "PC_DARTS_cifar"),
        ("pc_darts_imagenet", "PC_DARTS_image"),
        ("P-DARTS", "PDARTS"),
        ("gdas", "GDAS_V1"),
        ("gdas_frc", "GDAS_F1"),
        (" nasp ", "NASP"),
    ],
)
def test_names_are_case_insensitive_aliases(alias, name):
    assert find_published(alias).name == name


def test_cnn_and_rnn_cells_sharing_a_name():
    assert find_published("DARTS_V2").kind == "cnn"
    rnn = resolve_genotype("rnn:darts_v2")
    assert isinstance(rnn, RecurrentGenotype) and rnn.recurrent[0] == ("sigmoid", 0)
    assert resolve_genotype("DARTS_V2", kind="rnn") == rnn
    assert parse_genotype(str(rnn)) == rnn and RecurrentGenotype.from_json(rnn.to_json()) == rnn
    assert "expected a CNN genotype" in one_line_error(resolve_genotype, "rnn:darts", "cnn")
    assert "predecessor 1" in one_line_error(RecurrentGenotype, [("relu", 1)], [1])


def test_resolve_accepts_every_form(tmp_path):
    darts = get_published("DARTS_V2").genotype
    json_file = tmp_path / "genotype.json"
    json_file.write_text(darts.to_json())
    record_file = tmp_path / "record.json"
    record_file.write_text(json.dumps({"run_id": "x", "genotype": darts.to_dict()}))
    string_file = tmp_path / "genotype.txt"
    string_file.write_text(DARTS_V2_OFFICIAL)
    for value in (
        darts,
        darts.to_dict(),
        "DARTS_V2",
        str(json_file),
        json_file,
        str(record_file),
        string_file,
        DARTS_V2_OFFICIAL,
        darts.to_json(),
    ):
        assert resolve_genotype(value) == darts


def test_resolve_errors_are_one_line(tmp_path):
    assert "unknown genotype 'nope'" in one_line_error(resolve_genotype, "nope")
    assert "does not exist" in one_line_error(resolve_genotype, str(tmp_path / "missing.json"))
    assert "empty genotype" in one_line_error(resolve_genotype, "  ")
    assert "cannot make a genotype from a int" in one_line_error(resolve_genotype, 3)


# --- derivation ------------------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=14 * 8, max_size=14 * 8), st.integers(1, 4))
def test_derived_cells_take_two_distinct_inputs_and_never_none(values, multiplier):
    weights = torch.tensor(values).view(14, 8).softmax(-1)
    genotype = derive_genotype(weights, weights.flip(0), DARTS_PRIMITIVES, multiplier=multiplier)
    for cell in (genotype.normal, genotype.reduce):
        assert len(cell) == 8 and all(op != "none" for op, _ in cell)
        for node in range(4):
            (_, first), (_, second) = cell[2 * node : 2 * node + 2]
            assert first != second and max(first, second) < node + 2
    assert genotype.normal_concat == tuple(range(6 - multiplier, 6))
    genotype.check_space(DARTS_PRIMITIVES, steps=4)


def test_derivation_follows_darts():
    weights = torch.full((14, 8), 0.1)
    weights[:, 0] = 0.9  # 'none' dominates everywhere and is ignored
    weights[1, DARTS_PRIMITIVES.index("sep_conv_5x5")] = 0.5  # node 2: input 1 strongest ...
    weights[0, DARTS_PRIMITIVES.index("skip_connect")] = 0.3  # ... then input 0
    weights[4, DARTS_PRIMITIVES.index("dil_conv_3x3")] = 0.4  # node 3: input 2 strongest, then ties -> input 0
    pairs = derive_cell(weights, DARTS_PRIMITIVES)
    assert pairs[:4] == (("sep_conv_5x5", 1), ("skip_connect", 0), ("dil_conv_3x3", 2), ("max_pool_3x3", 0))


def test_edge_scale_changes_the_chosen_inputs():
    weights = torch.full((14, 8), 0.1)
    weights[2, DARTS_PRIMITIVES.index("sep_conv_3x3")] = 0.5  # node 3, input 0
    weights[3, DARTS_PRIMITIVES.index("sep_conv_5x5")] = 0.4  # node 3, input 1
    weights[4, DARTS_PRIMITIVES.index("dil_conv_3x3")] = 0.3  # node 3, input 2
    assert derive_cell(weights, DARTS_PRIMITIVES)[2:4] == (("sep_conv_3x3", 0), ("sep_conv_5x5", 1))
    scale = torch.ones(14)
    scale[3], scale[4] = 0.5, 2.0  # input 1 drops to 0.2, input 2 rises to 0.6
    assert derive_cell(weights, DARTS_PRIMITIVES, edge_scale=scale)[2:4] == (("dil_conv_3x3", 2), ("sep_conv_3x3", 0))
    uniform = torch.full((14,), 3.0)  # a common scale changes nothing
    assert derive_cell(weights, DARTS_PRIMITIVES, edge_scale=uniform) == derive_cell(weights, DARTS_PRIMITIVES)


def test_derivation_with_per_edge_and_per_cell_op_lists():
    kept = [("sep_conv_3x3", "skip_connect", "none")] * 14
    weights = torch.tensor([[0.2, 0.3, 0.5]] * 14)
    assert {op for op, _ in derive_cell(weights, kept)} == {"skip_connect"}
    genotype = derive_genotype(
        torch.rand(14, 8), torch.rand(14, 5), NASP_NORMAL_PRIMITIVES, reduce_primitives=NASP_REDUCE_PRIMITIVES
    )
    genotype.check_space(NASP_NORMAL_PRIMITIVES, NASP_REDUCE_PRIMITIVES, steps=4)
    assert cell_edge_count(4) == 14 and cell_edge_count(5) == 20


def test_derivation_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="14 edges"):
        derive_cell(torch.rand(13, 8), DARTS_PRIMITIVES)
    with pytest.raises(ValueError, match="7 weights for 8 ops"):
        derive_cell(torch.rand(14, 7), DARTS_PRIMITIVES)
