"""Answer-exclusion bounds of a revision model: exact values on hand-made questions, and agreement
with a simulated reviser that resamples the base policy with the previous answer removed."""

from __future__ import annotations

import random

import pytest

from ttstrain.revisions.bounds import changed_attempt_check, question_answer_bounds, revision_answer_bounds


def _samples(problem_id, answers):
    """answers: (answer, correct) pairs."""
    return [{"problem_id": problem_id, "answer": a, "correct": c} for a, c in answers]


# q_c = 1/2, one wrong answer with share 1/2: excluding it always leaves the right one.
CONCENTRATED = _samples("a", [("3", True), ("3", True), ("5", False), ("5", False)])
# q_c = 1/4; wrong: "7" 1/4 and no answer 1/2 -> 1/4 * (1/3 + 1) = 1/3.
WITH_NO_ANSWER = _samples("b", [("3", True), ("7", False), (None, False), (None, False)])
# q_c = 1/5, four wrong answers of 1/5 each -> 1/5 * 4 * (1/5) / (4/5) = 1/5.
SPREAD = _samples("c", [("3", True), ("1", False), ("2", False), ("4", False), ("6", False)])
NEVER_RIGHT = _samples("d", [("1", False), ("1", False)])


def test_exact_values_per_question():
    assert question_answer_bounds(CONCENTRATED) == pytest.approx(
        {"first_attempt": 0.5, "exclude_previous": 0.5, "keep_or_exclude_oracle": 1.0})
    assert question_answer_bounds(WITH_NO_ANSWER) == pytest.approx(
        {"first_attempt": 0.25, "exclude_previous": 1 / 3, "keep_or_exclude_oracle": 0.25 + 1 / 3})
    assert question_answer_bounds(SPREAD) == pytest.approx(
        {"first_attempt": 0.2, "exclude_previous": 0.2, "keep_or_exclude_oracle": 0.4})
    assert question_answer_bounds(NEVER_RIGHT) == {"first_attempt": 0.0, "exclude_previous": 0.0,
                                                   "keep_or_exclude_oracle": 0.0}


def test_means_over_questions_and_problem_filter():
    pool = CONCENTRATED + WITH_NO_ANSWER + SPREAD + NEVER_RIGHT
    bounds = revision_answer_bounds(pool)
    assert bounds["questions"] == 4 and bounds["samples_per_question"] == 3.75
    assert bounds["first_attempt"] == round((0.5 + 0.25 + 0.2 + 0) / 4, 4)
    assert bounds["exclude_previous"] == round((0.5 + 1 / 3 + 0.2 + 0) / 4, 4)
    only = revision_answer_bounds(pool, problem_ids={"b"})
    assert only["questions"] == 1 and only["exclude_previous"] == round(1 / 3, 4)
    with pytest.raises(ValueError, match="no base-policy samples"):
        revision_answer_bounds(pool, problem_ids={"zz"})


def test_exclusion_matches_a_simulated_reviser():
    """Draw a first attempt from the samples, then a second one from the samples whose answer differs
    (right answers are one class, no-answer is one class): its hit rate is exclude_previous."""
    pool = _samples("e", [("3", True)] * 3 + [("1", False)] * 4 + [("2", False)] * 2 + [(None, False)])
    rng = random.Random(0)
    label = lambda s: "right" if s["correct"] else s["answer"]  # noqa: E731
    trials, hits = 40_000, 0
    for _ in range(trials):
        first = rng.choice(pool)
        hits += rng.choice([s for s in pool if label(s) != label(first)])["correct"]
    expected = question_answer_bounds(pool)["exclude_previous"]
    assert expected == pytest.approx(0.3 * (0.4 / 0.6 + 0.2 / 0.8 + 0.1 / 0.9))
    assert abs(hits / trials - expected) < 0.01


def test_changed_attempt_check_on_hand_made_chains():
    base = _samples("a", [("2", True), ("2", True), ("3", False), ("4", False)])  # q_c 1/2, q_"3" 1/4

    def row(chain, step, answer, problem_id="a"):
        return {"problem_id": problem_id, "chain": chain, "step": step, "answer": answer, "correct": answer == "2"}

    chains = [row(0, 0, "3"), row(0, 1, "2"), row(0, 2, "2"),   # wrong -> changed, right; right -> not counted
              row(1, 0, "3"), row(1, 1, "3"), row(1, 2, "5"),   # unchanged wrong (skipped), then changed, wrong
              row(2, 0, None), row(2, 1, "2"),                  # no answer -> changed, right; q_prev = 0
              row(3, 0, "3", "z"), row(3, 1, "9", "z")]         # no base samples for z: skipped
    check = changed_attempt_check(chains, base)
    assert check == {"changed_wrong_attempts": 3, "right_after_change": round(2 / 3, 4),
                     "fresh_sample_excluding_previous": round((2 / 3 + 2 / 3 + 1 / 2) / 3, 4)}
    assert changed_attempt_check(chains[:3], base)["changed_wrong_attempts"] == 1
    assert changed_attempt_check([row(0, 0, "2"), row(0, 1, "3")], base) == {
        "changed_wrong_attempts": 0, "right_after_change": None, "fresh_sample_excluding_previous": None}
