"""NAS-RL: the controller emits valid architectures token by token, a REINFORCE step makes an
above-baseline architecture more likely (and a below-baseline one less), and a run killed
without warning resumes to the record an uninterrupted run writes."""

import json
import random

import pytest
import torch
from blackbox_runs import check_kill_and_resume, run_search, write_data

from methods.nas_rl import Controller, reinforce_step
from nasbench_repro.spaces.cnn.layerwise import LayerwiseSpace
from nasbench_repro.spaces.cnn.ops import DARTS_PRIMITIVES
from nasbench_repro.spaces.cnn.sampling import CellSpace

SPACES = [CellSpace(DARTS_PRIMITIVES[1:]), LayerwiseSpace((1, 3, 5, 7), (1, 3, 5, 7), (24, 36, 48, 64), depth=5)]


def controller_for(space, seed=0):
    torch.manual_seed(seed)
    return Controller(space.decisions(), hidden=35, layers=2, init_range=0.08)


@pytest.mark.parametrize("space", SPACES, ids=["darts-cell", "layerwise"])
def test_the_controller_emits_architectures_of_the_space(space):
    controller = controller_for(space)
    rng = random.Random(0)
    decisions = space.decisions()
    for _ in range(5):
        tokens = controller.sample(decisions, rng)
        genotype = space.decode(tokens)
        assert space.encode(genotype) == tokens
        log_prob = controller.log_prob(decisions, tokens)
        assert torch.isfinite(log_prob) and log_prob < 0
    # a deeper space reuses the same heads: NAS-RL's networks grow during the search
    if isinstance(space, LayerwiseSpace):
        deeper = space.with_depth(7)
        assert len(deeper.decode(controller.sample(deeper.decisions(), rng)).layers) == 7


@pytest.mark.parametrize("space", SPACES, ids=["darts-cell", "layerwise"])
@pytest.mark.parametrize("reward, direction", [(0.5, 1), (0.0, -1)])
def test_a_reinforce_step_moves_an_architecture_with_its_advantage(space, reward, direction):
    controller = controller_for(space, seed=1)
    decisions = space.decisions()
    tokens = controller.sample(decisions, random.Random(3))
    optimizer = torch.optim.Adam(controller.parameters(), lr=6e-4)
    before = controller.log_prob(decisions, tokens).item()
    reinforce_step(controller, optimizer, [(decisions, tokens)], [reward], baseline=0.2)
    after = controller.log_prob(decisions, tokens).item()
    assert (after - before) * direction > 0


@pytest.mark.slow
def test_the_children_deepen_as_the_search_goes_on(tmp_path):
    record = run_search("nas-rl", write_data(tmp_path / "data"), tmp_path)
    assert record["status"] == "complete", record["reason"]
    rows = record["curves"]["search"]
    assert [row["evaluated"] for row in rows] == [2, 4, 6, 8]
    assert all(set(row) >= {"mean_reward", "baseline", "best_valid_acc"} for row in rows)
    results = (tmp_path / "runs" / record["run_id"] / "evaluations-search").glob("*.json")
    depths = [len(json.loads(path.read_text())["genotype"]["layers"]) for path in results]
    assert sorted(set(depths)) == [3, 4]  # 3 layers at first, one more once 4 children were evaluated


@pytest.mark.slow
def test_sigkill_then_resume_equals_an_uninterrupted_search(tmp_path):
    check_kill_and_resume("nas-rl", tmp_path, seed=2)
