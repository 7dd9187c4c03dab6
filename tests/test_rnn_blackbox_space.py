"""The DARTS recurrent cell as a black-box space: samples as Li & Talwalkar draw them, mutations
that change something, tokens a controller reads back, and keys equal exactly for cells that
compute the same function up to a relabelling of their nodes."""

import random
from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nasbench_repro.errors import UserError
from nasbench_repro.spaces.genotypes import RecurrentGenotype, resolve_genotype
from nasbench_repro.spaces.rnn.sampling import RecurrentCellSpace

SPACE = RecurrentCellSpace()  # 8 nodes; tanh, relu, sigmoid, identity
SMALL = RecurrentCellSpace(("tanh", "relu"), nodes=3)
seeds = st.integers(0, 2**32 - 1)


def relabelled(genotype: RecurrentGenotype, rng: random.Random) -> RecurrentGenotype:
    return relabelling(genotype, rng)[0]


def relabelling(genotype: RecurrentGenotype, rng: random.Random) -> tuple[RecurrentGenotype, dict[int, int]]:
    """The same cell with its nodes renumbered in a random order that keeps every predecessor
    earlier, and the renumbering (old node -> new node)."""
    nodes = len(genotype.recurrent)
    placed, order = {0}, []
    while len(order) < nodes:  # a random topological order of the tree
        ready = [
            node for node in range(1, nodes + 1) if node not in placed and genotype.recurrent[node - 1][1] in placed
        ]
        node = rng.choice(ready)
        placed.add(node)
        order.append(node)
    new_number = {0: 0, **{old: new for new, old in enumerate(order, start=1)}}
    pairs = [None] * nodes
    for old, (activation, predecessor) in enumerate(genotype.recurrent, start=1):
        pairs[new_number[old] - 1] = (activation, new_number[predecessor])
    return RecurrentGenotype(pairs, range(1, nodes + 1)), new_number


@settings(max_examples=60, deadline=None)
@given(seeds)
def test_a_sample_is_a_cell_the_space_holds(seed):
    genotype = SPACE.sample(random.Random(seed))
    assert len(genotype.recurrent) == 8 and genotype.concat == tuple(range(1, 9))
    assert all(activation in SPACE.activations for activation, _ in genotype.recurrent)
    assert all(0 <= predecessor < node for node, (_, predecessor) in enumerate(genotype.recurrent, start=1))


def test_samples_draw_activations_and_predecessors_uniformly():
    rng = random.Random(0)
    samples = [SPACE.sample(rng) for _ in range(4000)]
    activations = Counter(genotype.recurrent[3][0] for genotype in samples)
    predecessors = Counter(genotype.recurrent[3][1] for genotype in samples)  # node 4 reads one of nodes 0..3
    assert set(activations) == set(SPACE.activations) and set(predecessors) == {0, 1, 2, 3}
    assert all(abs(count / 4000 - 0.25) < 0.03 for count in [*activations.values(), *predecessors.values()])
    assert "none" not in {activation for genotype in samples for activation, _ in genotype.recurrent}


@settings(max_examples=60, deadline=None)
@given(seeds, st.sampled_from(["op", "hidden_state"]))
def test_a_mutation_changes_one_choice_of_its_kind(seed, kind):
    rng = random.Random(seed)
    parent = SPACE.sample(rng)
    child = SPACE.mutate(parent, rng, kind)
    changed = [(old, new) for old, new in zip(parent.recurrent, child.recurrent, strict=True) if old != new]
    assert len(changed) == 1
    (old_activation, old_predecessor), (new_activation, new_predecessor) = changed[0]
    if kind == "op":
        assert old_predecessor == new_predecessor and new_activation in SPACE.activations
    else:
        assert old_activation == new_activation and new_predecessor != old_predecessor


def test_a_kind_with_no_room_falls_back_or_fails_in_one_line():
    one_node = RecurrentCellSpace(("tanh", "relu"), nodes=1)  # node 1 can only read node 0
    genotype = RecurrentGenotype([("tanh", 0)], [1])
    assert one_node.mutate(genotype, random.Random(0), "hidden_state").recurrent == (("relu", 0),)
    with pytest.raises(UserError, match="no mutation"):
        RecurrentCellSpace(("tanh",), nodes=1).mutate(genotype, random.Random(0), "op")


@settings(max_examples=60, deadline=None)
@given(seeds)
def test_tokens_round_trip(seed):
    genotype = SPACE.sample(random.Random(seed))
    tokens = SPACE.encode(genotype)
    decisions = SPACE.decisions()
    assert len(tokens) == len(decisions) == 16
    assert all(0 <= token < decision.size for token, decision in zip(tokens, decisions, strict=True))
    assert SPACE.decode(tokens) == genotype


@settings(max_examples=60, deadline=None)
@given(seeds, seeds)
def test_relabelled_cells_share_a_key(seed, order_seed):
    genotype = SPACE.sample(random.Random(seed))
    assert SPACE.key(relabelled(genotype, random.Random(order_seed))) == SPACE.key(genotype)


def test_keys_differ_exactly_between_cells_no_relabelling_maps_onto_each_other():
    """Over all 2^3 x 3! cells of a 3-node, 2-activation space, two cells share a key exactly when
    some relabelling maps one onto the other (checked by brute force over node orders)."""
    cells = [
        RecurrentGenotype([(a1, 0), (a2, p2), (a3, p3)], [1, 2, 3])
        for a1 in SMALL.activations
        for a2 in SMALL.activations
        for a3 in SMALL.activations
        for p2 in range(2)
        for p3 in range(3)
    ]
    rng = random.Random(0)
    variants = {cell: {relabelled(cell, rng) for _ in range(30)} for cell in cells}
    for first in cells:
        for second in cells:
            assert (SMALL.key(first) == SMALL.key(second)) == (second in variants[first])


def test_isomorphic_cells_compute_the_same_function_with_their_weights_moved():
    """What makes merging them sound: relabel the nodes, move each node's weights with it, same output."""
    genotype = SPACE.sample(random.Random(3))
    twin, new_number = relabelling(genotype, random.Random(4))
    assert SPACE.key(twin) == SPACE.key(genotype) and twin != genotype
    values = {
        "hidden_size": 6,
        "word_dropout": 0.0,
        "embedding_dropout": 0.0,
        "cell_input_dropout": 0.0,
        "hidden_dropout": 0.0,
        "output_dropout": 0.0,
    }
    torch.manual_seed(0)
    model = SPACE.build_network(genotype, values, 11, ()).double().eval()
    other = SPACE.build_network(twin, values, 11, ()).double().eval()
    state = model.state_dict()
    moved = dict(state)  # each node's weights go where the node went
    for old in range(1, 9):
        moved[f"cell.node_weights.{new_number[old] - 1}"] = state[f"cell.node_weights.{old - 1}"]
    other.load_state_dict(moved)
    tokens = torch.randint(0, 11, (5, 2))
    hidden = model.initial_hidden(2)
    assert torch.allclose(model(tokens, hidden).logits, other(tokens, hidden).logits, atol=1e-12)


def test_published_cells_are_in_the_space_and_grid_search_is_refused():
    darts_v2 = resolve_genotype("DARTS_V2", "rnn")
    assert SPACE.decode(SPACE.encode(darts_v2)) == darts_v2
    assert SPACE.genotype_from_dict(darts_v2.to_dict()) == darts_v2
    with pytest.raises(UserError, match="grid search over the recurrent cell space"):
        next(SPACE.enumerate())
