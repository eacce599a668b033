"""pass@k, weighted and majority voting, nested-budget curves."""

from __future__ import annotations

import math

import pytest

from ttstrain.analysis.baselines import sampling_baselines
from ttstrain.analysis.metrics import pass_at_k, power_of_two_budgets, voted_accuracy_at_budgets, weighted_vote


def test_pass_at_k():
    assert pass_at_k(16, 4, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - math.comb(3, 2) / math.comb(4, 2))
    assert pass_at_k(10, 0, 5) == 0.0 and pass_at_k(10, 8, 3) == 1.0
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


def test_votes():
    assert weighted_vote(["7", "5", "5", None, "7", "7"]) == "7"
    assert weighted_vote(["7", "5", "5"], [0.9, 0.2, 0.3]) == "7"  # 0.9 > 0.5: the weighted sum wins
    assert weighted_vote(["5", "7"]) == "5"  # ties go to the answer seen first
    assert weighted_vote([None, None]) is None
    assert power_of_two_budgets(20) == [1, 2, 4, 8, 16]


def test_voted_curve_and_baselines():
    answers = ["1"] * 3 + ["2"] * 5
    acc = voted_accuracy_at_budgets(answers, {"1"}, [1, 8], resamples=200, seed=0)
    assert acc[8] == 0.0 and 0.25 < acc[1] < 0.5
    rows = [{"problem_id": "a", "sample_index": i, "level": 1, "answer": a, "correct": a == "1"}
            for i, a in enumerate(["1", "2", "1", "1"])]
    rows += [{"problem_id": "b", "sample_index": i, "level": 2, "answer": a, "correct": a == "9"}
             for i, a in enumerate(["3", "3", "9", "4"])]
    base = sampling_baselines(rows, [1, 2, 4], resamples=50)
    assert base["overall"]["majority_at"][4] == 0.5  # a's majority is right, b's is wrong
    assert base["overall"]["pass_at"][4] == 1.0
    assert base["by_level"][1]["pass@1"] == 0.75 and base["by_level"][2]["pass@1"] == 0.25
