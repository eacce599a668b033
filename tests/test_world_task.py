"""The built-in arithmetic task: levels, disjoint splits, gold solutions, first-error diagnosis."""

from __future__ import annotations

from ttstrain.answers.grading import extract_answer
from ttstrain.steps import split_steps
from ttstrain.world.task import (LEVEL_SPECS, MAX_VALUE, first_error, generate_problems, is_test_question,
                                 parse_question, problems_split, sample_training_problem)


def test_levels_have_their_number_of_operations_and_ranges():
    for level, spec in LEVEL_SPECS.items():
        for p in generate_problems("test", level, 30, seed=0):
            assert len(p.ops) == level == spec.num_ops
            assert all(0 <= v <= MAX_VALUE for v in p.values())
            steps = split_steps(p.solution)
            assert len(steps) == level + 1
            assert extract_answer(p.solution) == p.answer
            assert first_error(p.question, p.solution) is None
            assert parse_question(p.question) == (p.start, list(p.ops))


def test_splits_are_disjoint_and_reproducible():
    train = {r["question"] for r in problems_split("train", 200, seed=0)}
    test = {r["question"] for r in problems_split("test", 200, seed=0)}
    assert not train & test
    assert all(is_test_question(q) for q in test) and not any(is_test_question(q) for q in train)
    assert problems_split("test", 5, seed=3) == problems_split("test", 5, seed=3)
    assert problems_split("test", 5, seed=3) != problems_split("test", 5, seed=4)
    import random

    rng = random.Random(0)
    assert not any(is_test_question(sample_training_problem(rng, 1).question) for _ in range(500))


def test_first_error_names_step_and_kind():
    q = "Start with 37.\n1. Add 45.\n2. Multiply by 3.\n3. Subtract 12.\nWhat is the result?"
    gold = ["37 + 45 = 82", "82 * 3 = 246", "246 - 12 = 234", "The answer is \\boxed{234}."]
    cases = {
        "arithmetic": (["37 + 45 = 82", "82 * 3 = 244", "244 - 12 = 232", "The answer is \\boxed{232}."], 1),
        "copy": (["37 + 45 = 82", "82 * 3 = 246", "246 - 21 = 225", "The answer is \\boxed{225}."], 2),
        "format": (["37 plus 45 is 82"] + gold[1:], 0),
        "answer": (gold[:3] + ["The answer is \\boxed{243}."], 3),
        "length": (gold[:2], 2),
    }
    for kind, (steps, idx) in cases.items():
        err = first_error(q, "\n".join(steps))
        assert (err.kind, err.step) == (kind, idx), kind
    assert first_error(q, "\n".join(gold)) is None
