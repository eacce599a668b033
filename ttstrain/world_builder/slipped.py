"""Solving text with locatable mistakes, as a pretraining corpus has them (world v2's third phase).

Worked solutions a real LM reads are not all right: some leave an operation out or copy the wrong
number, and carry the wrong value on to a wrong answer. A policy that reads such text writes such
mistakes at about the rate it read them when sampled at temperature 1, but never greedily (each is
a minority choice), while the checked solutions it also reads (`ttstrain.world_builder.checking`) teach its
body to tell them apart. Unlike carry slips, these mistakes are *locatable* by looking back (the
step's operation is not the one its line asks for) and they *concentrate*: leaving out line i of a
problem always gives the same wrong answer. That is the generation-verification gap and the
answer concentration that PRMs and revision models exploit on real tasks.

Each operation line independently, with probability `step_error_rate`, goes wrong in one of:
- `skipped`: the line is left out, and the solution goes on with the next one (the last line
  left out means the answer comes one step early);
- `other_operand`: the step applies its own operation with the operand of another line of the
  same kind (a multiplier for a multiplication, an addend for addition or subtraction).
A mistake that would take the value out of 0..9999 is not made. The whole text is trained on.

    python -m ttstrain.world_builder.slipped --level 3 --n 3 --seed 0    # print slipped solutions
"""

from __future__ import annotations

import argparse
import random

from ttstrain.steps import join_steps
from ttstrain.world.task import MAX_VALUE, ArithmeticProblem, answer_line, apply_op, sample_training_problem, step_line

SLIPPED_KINDS = ("skipped", "other_operand")


def _same_kind_operands(problem: ArithmeticProblem, index: int) -> list[int]:
    """Operands of other lines that could stand in for line `index`'s (same operation family)."""
    op, x = problem.ops[index]
    multiply = op == "*"
    return sorted({y for j, (o, y) in enumerate(problem.ops) if j != index and (o == "*") == multiply and y != x})


def slipped_steps(rng: random.Random, problem: ArithmeticProblem, step_error_rate: float) -> tuple[list[str], list[str]]:
    """(steps, kinds of the mistakes made, in order) of one solution in the world's step format."""
    steps, kinds, value, i = [], [], problem.start, 0
    while i < len(problem.ops):
        op, x = problem.ops[i]
        if rng.random() < step_error_rate:
            kind = rng.choice(SLIPPED_KINDS)
            others = _same_kind_operands(problem, i)
            if kind == "other_operand" and others:
                y = rng.choice(others)
                if 0 <= apply_op(value, op, y) <= MAX_VALUE:
                    x = y
                    kinds.append(kind)
            elif kind == "skipped":
                kinds.append(kind)
                i += 1
                continue
        new = apply_op(value, op, x)
        steps.append(step_line(value, op, x, new))
        value, i = new, i + 1
    steps.append(answer_line(value))
    return steps, kinds


def slipped_wrong_step(rng: random.Random, problem: ArithmeticProblem, index: int, written: int) -> str | None:
    """A step `index` (0-based operation line) that starts from the `written` value and goes wrong as
    `slipped_steps` mistakes do (the next line's operation in its place, or another line's
    operand), for checked solutions (ttstrain.world_builder.checking); None where neither can be made."""
    if index >= len(problem.ops):
        return None
    op, x = problem.ops[index]
    choices = []
    if index + 1 < len(problem.ops):
        choices.append(problem.ops[index + 1])
    choices += [(op, y) for y in _same_kind_operands(problem, index)]
    rng.shuffle(choices)
    for o, y in choices:
        if (o, y) != (op, x) and 0 <= apply_op(written, o, y) <= MAX_VALUE:
            return step_line(written, o, y, apply_op(written, o, y))
    return None


def slipped_solution(rng: random.Random, problem: ArithmeticProblem, step_error_rate: float) -> str:
    return join_steps(slipped_steps(rng, problem, step_error_rate)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--level", type=int, default=3)
    parser.add_argument("--n", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--step_error_rate", type=float, default=0.5)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    for _ in range(args.n):
        p = sample_training_problem(rng, args.level)
        steps, kinds = slipped_steps(rng, p, args.step_error_rate)
        print(p.question, f"\n--- mistakes: {kinds or 'none'}\n" + join_steps(steps) + f"\n(right answer {p.answer})\n")


if __name__ == "__main__":
    main()
