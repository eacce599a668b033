"""Solving text with locatable mistakes (ttstrain.world_builder.slipped), world v2's third phase: the
mistakes are where first_error finds them, concentrate on one answer per left-out line, come at
the rate asked for, and reach the training batch's labels."""

from __future__ import annotations

import random

from ttstrain.steps import split_steps
from ttstrain.world_builder.build import training_batch
from ttstrain.world_builder.slipped import slipped_solution, slipped_steps
from ttstrain.world.task import ArithmeticProblem, apply_op, first_error, generate_problems
from ttstrain.world.tokenizer import build_char_tokenizer


def test_no_mistakes_at_rate_zero_gives_the_gold_solution():
    rng = random.Random(0)
    for p in generate_problems("train", 4, 20, seed=1):
        assert slipped_solution(rng, p, 0.0) == p.solution


def test_each_mistake_is_wrong_at_its_step_and_right_before():
    rng = random.Random(1)
    seen = set()
    for level in (1, 2, 3, 4, 5):
        for p in generate_problems("train", level, 60, seed=2):
            steps, kinds = slipped_steps(rng, p, 0.3)
            err = first_error(p.question, "\n".join(steps))
            if not kinds:
                assert err is None and steps == p.gold_steps()
                continue
            seen.update(kinds)
            # every step before the first wrong one is the gold step
            assert err is not None and err.kind in ("copy", "format")
            assert steps[:err.step] == p.gold_steps()[:err.step]
    assert seen == {"skipped", "other_operand"}


def test_a_left_out_line_always_gives_the_same_wrong_answer():
    p = ArithmeticProblem(id="", level=3, start=37, ops=(("+", 45), ("*", 3), ("-", 12)))
    answers = {}
    rng = random.Random(3)
    for _ in range(400):
        steps, kinds = slipped_steps(rng, p, 0.2)
        if kinds == ["skipped"]:
            answers.setdefault(len(split_steps("\n".join(steps))), set()).add(steps[-1])
    # leaving out one line gives one of three answers, each the value without that line
    without = set()
    for k in range(3):
        value = p.start
        for i, (op, x) in enumerate(p.ops):
            value = value if i == k else apply_op(value, op, x)
        without.add(f"The answer is \\boxed{{{value}}}.")
    assert set().union(*answers.values()) == without


def test_mistakes_come_at_about_the_rate_asked_for():
    rng = random.Random(4)
    problems = generate_problems("train", 5, 400, seed=5)
    made = sum(len(slipped_steps(rng, p, 0.15)[1]) for p in problems)
    # other_operand is not made where no other line has an operand of its kind: a little under 0.15
    assert 0.10 < made / (5 * len(problems)) < 0.16


def test_training_batch_trains_on_slipped_solutions():
    tok = build_char_tokenizer()
    clean = training_batch(random.Random(6), 3, 32, tok)
    slipped = training_batch(random.Random(6), 3, 32, tok, solve_step_error_rate=0.5)
    texts = [tok.decode([t for t in row if t >= 0], skip_special_tokens=True) for row in slipped["labels"].tolist()]
    assert not all(a == b for a, b in zip(clean["labels"].tolist(), slipped["labels"].tolist()))
    # the labels hold whole solutions, ending in an answer line
    assert all(t.strip().splitlines()[-1].startswith("The answer is") for t in texts)


def test_checked_solutions_can_judge_slipped_mistakes():
    from ttstrain.world_builder.checking import WRONG_MARK, every_step_checked
    from ttstrain.world.task import parse_question

    problems = generate_problems("train", 4, 40, seed=8)
    # share 0 draws nothing more from the stream: the checking phase's mixture is unchanged
    assert ([every_step_checked(random.Random(9), p, 0.3) for p in problems]
            == [every_step_checked(random.Random(9), p, 0.3, slipped_share=0.0) for p in problems])
    judged, slipped = 0, 0
    for p in problems:
        pieces = every_step_checked(random.Random(p.id), p, 0.5, slipped_share=1.0)
        steps = [t for t, trained in pieces if not trained and t != "\n"]
        ops = parse_question(p.question)[1]
        for i, (text, verdict) in enumerate(zip(steps, [t for t, trained in pieces if trained])):
            if not verdict.startswith(WRONG_MARK) or i >= len(ops):
                continue
            judged += 1
            _, op, x = text.split(" ")[:3]
            next_line = i + 1 < len(ops) and (op, int(x)) == tuple(ops[i + 1])
            other_operand = op == ops[i][0] and int(x) in {y for j, (o, y) in enumerate(ops) if j != i}
            # a slipped mistake: another line's operation or operand, the arithmetic right
            if (next_line or other_operand) and (op, int(x)) != tuple(ops[i]):
                assert eval(text.replace("=", "==")) is True
                slipped += 1
    # where no slipped mistake can be made (no other line fits) the usual kinds stand in
    assert judged > 30 and slipped >= 0.8 * judged
