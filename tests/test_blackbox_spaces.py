"""What black-box methods need of a space: valid samples, mutations that change something,
canonical keys that identify exactly isomorphic cells, a complete duplicate-free grid, and
tokens a controller can emit and read back."""

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nasbench_repro.errors import UserError
from nasbench_repro.spaces.cnn.layerwise import LayerwiseGenotype, LayerwiseNetwork, LayerwiseSpace
from nasbench_repro.spaces.cnn.ops import DARTS_PRIMITIVES
from nasbench_repro.spaces.cnn.sampling import CellSpace, cell_key
from nasbench_repro.spaces.genotypes import Genotype

DARTS_SPACE = CellSpace(DARTS_PRIMITIVES[1:])  # DARTS's 7 ops
RS_WS_SPACE = CellSpace(DARTS_PRIMITIVES)  # Li & Talwalkar keep `none`
REAL_SPACE = CellSpace(
    (
        "skip_connect",
        "sep_conv_3x3",
        "sep_conv_5x5",
        "sep_conv_7x7",
        "avg_pool_3x3",
        "max_pool_3x3",
        "dil_conv_3x3",
        "conv_7x1_1x7",
    ),
    nodes=5,
    distinct_inputs=False,
    concat="unused",
)
GRID_SPACE = CellSpace(("skip_connect", "sep_conv_3x3", "max_pool_3x3"), nodes=2, tied=True)
LAYERWISE_SPACE = LayerwiseSpace((1, 3, 5, 7), (1, 3, 5, 7), (24, 36, 48, 64), depth=6)
SPACES = [DARTS_SPACE, RS_WS_SPACE, REAL_SPACE, GRID_SPACE, LAYERWISE_SPACE]


def check_in_space(space, genotype):
    """The genotype is one this space can produce (the Genotype classes check the rest on construction)."""
    if isinstance(space, LayerwiseSpace):
        assert len(genotype.layers) == space.depth
        for layer in genotype.layers:
            assert (
                layer.filter_height in space.filter_heights
                and layer.filter_width in space.filter_widths
                and layer.filters in space.filter_counts
            )
        return
    cells = [genotype.normal] if space.tied else [genotype.normal, genotype.reduce]
    if space.tied:
        assert genotype.reduce == genotype.normal
    for pairs, concat in zip(cells, (genotype.normal_concat, genotype.reduce_concat), strict=False):
        assert len(pairs) == 2 * space.nodes
        assert all(op in space.ops for op, _ in pairs)
        if space.distinct_inputs:
            assert all(pairs[i][1] != pairs[i + 1][1] for i in range(0, len(pairs), 2))
        read = {source for _, source in pairs}
        expected = [node for node in range(2, 2 + space.nodes) if space.concat == "all" or node not in read]
        assert list(concat) == expected


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), space=st.sampled_from(SPACES), kind=st.sampled_from(("op", "hidden_state")))
def test_every_mutation_yields_a_valid_different_genotype(seed, space, kind):
    rng = random.Random(seed)
    parent = space.sample(rng)
    check_in_space(space, parent)
    child = space.mutate(parent, rng, kind)
    check_in_space(space, child)
    assert child != parent
    if kind == "op":  # an op change alters the multiset of ops, so no relabelling can undo it
        assert space.key(child) != space.key(parent)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), space=st.sampled_from(SPACES))
def test_controller_tokens_round_trip(seed, space):
    genotype = space.sample(random.Random(seed))
    tokens = space.encode(genotype)
    decisions = space.decisions()
    assert len(tokens) == len(decisions)
    for token, decision in zip(tokens, decisions, strict=True):
        if decision.anchor:
            assert len(token) == decision.size and set(token) <= {0, 1}
        else:
            assert 0 <= token < decision.size
    assert space.decode(tokens) == genotype


def relabelled(pairs, order):
    """The cell with intermediate node order[i] renamed i (edges within a node also swapped)."""
    rename = {2 + old: 2 + new for new, old in enumerate(order)}
    nodes = [None] * len(order)
    for old in range(len(order)):
        first, second = pairs[2 * old : 2 * old + 2]
        nodes[order.index(old)] = [(op, rename.get(source, source)) for op, source in (second, first)]
    return [pair for node in nodes for pair in node]


def test_isomorphic_cells_share_a_key_and_others_do_not():
    # nodes 2 and 3 read only the cell inputs, so they can swap places
    cell = [
        ("sep_conv_3x3", 0),
        ("max_pool_3x3", 1),
        ("skip_connect", 1),
        ("sep_conv_5x5", 0),
        ("sep_conv_3x3", 2),
        ("avg_pool_3x3", 3),
        ("dil_conv_3x3", 4),
        ("skip_connect", 0),
    ]
    swapped = relabelled(cell, [1, 0, 2, 3])
    assert swapped != cell
    assert cell_key(cell, range(2, 6)) == cell_key(swapped, range(2, 6))
    # node 4 reads node 2 twice vs nodes 2 and 3 once each, where 2 and 3 compute the same expression:
    # equal as expression trees, different as graphs
    twice = [
        ("sep_conv_3x3", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0),
        ("sep_conv_3x3", 1),
        ("skip_connect", 2),
        ("max_pool_3x3", 2),
    ]
    each = [
        ("sep_conv_3x3", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0),
        ("sep_conv_3x3", 1),
        ("skip_connect", 2),
        ("max_pool_3x3", 3),
    ]
    assert cell_key(twice, range(2, 5)) != cell_key(each, range(2, 5))
    # a `none` edge reads nothing, whichever input it names
    assert cell_key([("none", 0), ("sep_conv_3x3", 1)], [2]) == cell_key([("sep_conv_3x3", 1), ("none", 1)], [2])


def all_raw_cells(space):
    """Every cell as a list of pairs, edges in both orders: a brute force independent of `distinct_cells`."""
    per_node = []
    for node in range(space.nodes):
        edges = list(itertools.product(space.ops, range(node + 2)))
        per_node.append(
            [(a, b) for a, b in itertools.product(edges, edges) if not space.distinct_inputs or a[1] != b[1]]
        )
    for nodes in itertools.product(*per_node):
        yield [pair for node in nodes for pair in node]


@pytest.mark.parametrize(
    "space",
    [
        GRID_SPACE,
        CellSpace(("sep_conv_3x3", "max_pool_3x3"), nodes=3, tied=True),
        CellSpace(("skip_connect", "avg_pool_3x3"), nodes=2, distinct_inputs=False, concat="unused", tied=True),
    ],
)
def test_grid_enumeration_is_complete_and_duplicate_free(space):
    grid = list(space.enumerate())
    keys = [space.key(genotype) for genotype in grid]
    assert len(set(keys)) == len(keys), "two grid points are isomorphic"
    every = {space.key(space._genotype([pairs])) for pairs in all_raw_cells(space)}
    assert set(keys) == every, "the grid misses an isomorphism class"
    assert grid == list(space.enumerate()), "enumeration order must not change"


def test_the_declared_grid_has_207_points_and_an_untied_grid_pairs_cells():
    assert len(list(GRID_SPACE.enumerate())) == 207  # the value methods/configs/grid.toml declares
    untied = CellSpace(("sep_conv_3x3", "max_pool_3x3"), nodes=1)
    cells = untied.distinct_cells()
    assert len(cells) == 4 and len(list(untied.enumerate())) == 16


def test_grid_of_a_layerwise_space_is_refused():
    with pytest.raises(UserError, match="not gridded"):
        next(LAYERWISE_SPACE.enumerate())


def test_layerwise_networks_follow_the_connection_rules():
    import torch

    genotype = LayerwiseGenotype.from_dict(
        {
            "layers": [
                {"filter_height": 3, "filter_width": 5, "filters": 4, "inputs": []},
                {"filter_height": 1, "filter_width": 1, "filters": 6, "inputs": [0]},
                {"filter_height": 7, "filter_width": 3, "filters": 8, "inputs": []},  # no input: reads the image
                {"filter_height": 3, "filter_width": 3, "filters": 5, "inputs": [0, 2]},  # concatenated: 4 + 8 channels
            ]
        }
    )
    network = LayerwiseNetwork(genotype, num_classes=10)
    assert network.layers[3][0].in_channels == 12 and network.layers[2][0].in_channels == 3
    assert network.outputs == [1, 3]  # layers no later layer reads feed the classifier
    logits, auxiliary = network(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10) and auxiliary is None
    assert LayerwiseGenotype.from_dict(genotype.to_dict()) == genotype
    with pytest.raises(UserError, match="distinct earlier layers"):
        LayerwiseGenotype.from_dict({"layers": [{"filter_height": 3, "filter_width": 3, "filters": 4, "inputs": [0]}]})


def test_a_space_without_room_to_mutate_says_so():
    single = CellSpace(("sep_conv_3x3",), nodes=1)
    genotype = single.sample(random.Random(0))
    with pytest.raises(UserError, match="no mutation"):
        single.mutate(genotype, random.Random(0), "op")


def test_sampling_follows_li_and_talwalkar():
    """Two different inputs per node, every op (`none` included) drawn about equally often."""
    rng = random.Random(1)
    ops = [op for _ in range(300) for op, _ in RS_WS_SPACE.sample(rng).normal]
    counts = [ops.count(name) for name in DARTS_PRIMITIVES]
    assert min(counts) > 0.7 * len(ops) / len(DARTS_PRIMITIVES)
    assert isinstance(RS_WS_SPACE.sample(rng), Genotype)
