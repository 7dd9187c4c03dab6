"""Regularized evolution: aging kills the oldest, tournaments pick the best of S, and a run
killed without warning resumes to the record an uninterrupted run writes."""

import random

import pytest
from blackbox_runs import check_kill_and_resume, run_search, write_data
from hypothesis import given
from hypothesis import strategies as st

from methods.evolution import add_and_age, tournament


def test_aging_removes_the_oldest_member_not_the_worst():
    members = [7, 3, 9]  # oldest first
    accuracy = {7: 0.9, 3: 0.1, 9: 0.5}
    assert add_and_age(members, 12, population_size=3) == 7  # the best member, but the oldest
    assert members == [3, 9, 12]
    assert accuracy[7] == max(accuracy.values())
    assert add_and_age([1], 2, population_size=3) is None  # below size, nobody dies


@given(
    seed=st.integers(0, 2**32 - 1),
    accuracies=st.lists(st.floats(0, 1), min_size=1, max_size=30),
    sample_size=st.integers(1, 30),
)
def test_tournament_picks_the_best_of_its_sample(seed, accuracies, sample_size):
    members = list(range(100, 100 + len(accuracies)))
    accuracy = dict(zip(members, accuracies, strict=True)).__getitem__
    winner = tournament(members, accuracy, sample_size, random.Random(seed))
    replay = random.Random(seed)
    sample = [replay.choice(members) for _ in range(sample_size)]  # drawn with replacement, as Algorithm 1 draws
    assert winner in sample
    assert accuracy(winner) == max(map(accuracy, sample))
    assert winner == next(member for member in sample if accuracy(member) == accuracy(winner))  # first on ties


def test_tournament_over_the_whole_population_picks_the_best():
    members = [0, 1, 2, 3]
    accuracy = [0.2, 0.7, 0.4, 0.1].__getitem__
    rng = random.Random(0)
    picks = {tournament(members, accuracy, 50, rng) for _ in range(20)}
    assert picks == {1}


@pytest.mark.slow
def test_a_search_keeps_the_youngest_members_and_never_trains_an_architecture_twice(tmp_path):
    record = run_search("evolution", write_data(tmp_path / "data"), tmp_path)
    assert record["status"] == "complete", record["reason"]
    rows = record["curves"]["search"]
    assert [row["evaluated"] for row in rows] == [2, 4, 6, 8, 10]  # P = 4 in rounds of 2, then 6 children
    metrics = record["metrics"]
    assert metrics["architectures_evaluated"] == 10
    assert metrics["architectures_trained"] < 10  # identity children (p = 0.3) reuse their parent's result
    assert [row["best_valid_acc"] for row in rows] == sorted(row["best_valid_acc"] for row in rows)


@pytest.mark.slow
def test_sigkill_then_resume_equals_an_uninterrupted_search(tmp_path):
    check_kill_and_resume("evolution", tmp_path, seed=4)
