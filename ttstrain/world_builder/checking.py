"""Checking text for world v2's pretraining mixture, and the measure of how well a policy checks.

Real pretrained LMs have read text that checks and corrects work, so they can judge a step
better than they produce it; that gap is what PRM and revision training turn into accuracy.
World v2's policy reads such text in the world's own character format: a *checked solution*.

    Problem:
    Start with 37.
    1. Add 45.
    2. Multiply by 3.
    What is the result?
    Check:
    37 + 45 = 82
    82 * 3 = 247 <- wrong: 82 * 3 = 246

Each step is copied and then judged by what follows its last character: a newline when the step
is right, ` <- wrong: <the right step>` (and the end of the text) at the first wrong step; a
solution with no wrong step ends `All steps are right.`. The loss is on the verdicts only, never on
the copied steps (they carry the injected mistakes). Mistakes are of the kinds a policy makes:
arithmetic slips, a miscopied operand or previous result, a skipped operation, a wrong boxed
answer. How a slip goes wrong is a build option (`SLIPS`): `any_digit` (a digit of the result
changed, or the result off by a little; world v2 as first built) or `carry` (a digit above the
units off by one or two, which is what the policy's own temperature-1 slips mostly are).

What it is *not*: the PRM's format (a value head's soft, Monte Carlo estimate of reaching the right
answer, at `Solution:` step ends) or a revision prompt (earlier attempts followed by a new solution).
A verdict here is the local, exact judgement of one step after right ones, under its own `Check:` head;
turning that knowledge into a value or a better attempt is what the PRM trainer and revision SFT learn.

`check_scores(model, tokenizer, rows)` measures the checking ability: for each (question, solution),
the probability the policy gives to "this step is wrong" (anything but the newline) after each step.

    python -m ttstrain.world_builder.checking --level 2 --n 3 --seed 0    # print checked solutions
"""

from __future__ import annotations

import argparse
import math
import random

import torch

from ttstrain.prompts import QUESTION_HEAD
from ttstrain.steps import split_steps, step_end_positions
from ttstrain.world_builder.slipped import slipped_wrong_step
from ttstrain.world.task import ArithmeticProblem, answer_line, apply_op, sample_training_problem, step_line

CHECK_HEAD = "\nCheck:\n"
WRONG_MARK = " <- wrong: "
ALL_RIGHT = "All steps are right."
MISTAKE_KINDS = ("arithmetic", "copy_previous", "copy_operand", "skipped", "answer")


def check_prompt(question: str) -> str:
    return f"{QUESTION_HEAD}{question.strip()}{CHECK_HEAD}"


def _change_a_digit(rng: random.Random, value: int) -> int:
    digits = list(str(value))
    for _ in range(20):
        i = rng.randrange(len(digits))
        d = rng.choice([c for c in "0123456789" if c != digits[i] and not (c == "0" and i == 0 and len(digits) > 1)])
        new = int("".join(digits[:i] + [d] + digits[i + 1:]))
        if new != value:
            return new
    return value + 1


def _slip(rng: random.Random, value: int) -> int:
    """A wrong result near the right one, as a sampled arithmetic slip is."""
    if rng.random() < 0.5:
        return _change_a_digit(rng, value)
    new = value + rng.choice([-10, -2, -1, 1, 2, 10])
    return new if new >= 0 and new != value else value + 1


def _carry_slip(rng: random.Random, value: int) -> int:
    """A wrong result as the policy's own temperature-1 slips are: a digit above the units off by
    one or two, as when a carry is dropped or added (docs/experiments/own_checking.py: 72% of world
    v2's own arithmetic first errors differ only above the units digit, 56% are off by 10 or 20).
    15% are any-digit slips (`_slip`), and a result under 10 always is one."""
    if value < 10 or rng.random() < 0.15:
        return _slip(rng, value)
    places = len(str(value)) - 1  # digits above the units
    k = 1 if places == 1 or rng.random() < 0.8 else rng.randrange(2, places + 1)
    new = value + rng.choice([-2, -1, -1, 1, 1, 2]) * 10 ** k
    return new if new >= 0 and new != value else _slip(rng, value)


SLIPS = {"any_digit": _slip, "carry": _carry_slip}


def wrong_step(rng: random.Random, problem: ArithmeticProblem, index: int,
               slips: str = "any_digit") -> tuple[str, str]:
    """(kind, text) of a wrong version of step `index` (0-based; `len(ops)` is the answer line),
    with every earlier step right. `slips` names how an arithmetic result goes wrong (`SLIPS`)."""
    values = problem.values()
    if index == len(problem.ops):
        return "answer", answer_line(_slip(rng, values[-1]))
    left, (op, x) = values[index], problem.ops[index]
    kinds = ["arithmetic"] * 6 + ["copy_previous"] * 2 + ["copy_operand"] * 2
    if index + 1 < len(problem.ops):
        kinds.append("skipped")
    kind = rng.choice(kinds)
    if kind == "arithmetic":
        return kind, step_line(left, op, x, SLIPS[slips](rng, apply_op(left, op, x)))
    if kind == "copy_previous":
        left = _change_a_digit(rng, left)
    elif kind == "copy_operand":
        x = _change_a_digit(rng, x) if op != "*" else rng.choice([d for d in range(2, 10) if d != x])
    else:  # the next operation is applied in place of this one
        op, x = problem.ops[index + 1]
    return kind, step_line(left, op, x, apply_op(left, op, x))


def checked_solution(rng: random.Random, problem: ArithmeticProblem, error_rate: float = 0.6,
                     slips: str = "any_digit") -> list[tuple[str, bool]]:
    """The checked-solution text after the prompt as (piece, trained-on) pairs: copied steps are
    not trained on, verdicts are. With probability `error_rate` one step (uniform, answer line
    included) is wrong, and the text stops at it."""
    gold = problem.gold_steps()
    wrong_at = rng.randrange(len(gold)) if rng.random() < error_rate else None
    pieces: list[tuple[str, bool]] = []
    for i, step in enumerate(gold):
        if i == wrong_at:
            _, text = wrong_step(rng, problem, i, slips)
            pieces += [(text, False), (WRONG_MARK + step, True)]
            return pieces
        pieces += [(step, False), ("\n", True)]
    pieces.append((ALL_RIGHT, True))
    return pieces


def every_step_checked(rng: random.Random, problem: ArithmeticProblem, step_error_rate: float = 0.3,
                       slips: str = "any_digit", slipped_share: float = 0.0) -> list[tuple[str, bool]]:
    """A checked solution in which each step may be wrong (probability `step_error_rate` each) and
    each is judged on its own: against the previous step as written and the question's operation.
    A wrong result is carried on, as a policy carries its slips on. A `slipped_share` of the wrong
    steps are the locatable mistakes of slipped solving text (ttstrain.world_builder.slipped: the next
    line's operation, or another line's operand) where one can be made."""
    pieces: list[tuple[str, bool]] = []
    written, ops = problem.start, problem.ops
    for i in range(len(ops) + 1):
        # the problem as the solution has it so far: the written value where this step starts
        local = ArithmeticProblem(id="", level=problem.level, start=written, ops=ops[i:])
        right = local.gold_steps()[0]
        if rng.random() < step_error_rate:
            slipped = (slipped_wrong_step(rng, problem, i, written)
                       if slipped_share and rng.random() < slipped_share else None)
            text = slipped or wrong_step(rng, local, 0, slips)[1]
            pieces += [(text, False), (WRONG_MARK + right, True), ("\n", False)]
        else:
            text = right
            pieces += [(text, False), ("\n", True)]
        if i < len(ops):
            written = int(text.rsplit("= ", 1)[1])
    return pieces


def check_example(rng: random.Random, level: int, tokenizer, error_rate: float = 0.6,
                  style: str = "first_error", slips: str = "any_digit",
                  slipped_share: float = 0.0) -> tuple[list[int], list[int]]:
    """Token ids and labels (-100 off the verdicts) of one checked solution of a training problem."""
    problem = sample_training_problem(rng, level)
    ids = tokenizer(check_prompt(problem.question))["input_ids"]
    labels = [-100] * len(ids)
    pieces = (checked_solution(rng, problem, error_rate, slips) if style == "first_error"
              else every_step_checked(rng, problem, error_rate, slips, slipped_share))
    for text, trained in pieces:
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += piece
        labels += piece if trained else [-100] * len(piece)
    ids.append(tokenizer.eos_token_id)
    labels.append(tokenizer.eos_token_id)
    return ids, labels


def check_scores(model, tokenizer, rows: list[dict], batch_size: int = 64) -> list[list[float]]:
    """Per row (question, completion), P(step is wrong) after each step, read from the policy's
    next-token distribution under the `Check:` head: 1 - P(newline) at the step's last character
    (the world's character tokenizer keeps the newline a token of its own)."""
    from ttstrain.prm.reference_features import token_logprobs  # transformers: at use, not import

    newline = tokenizer("\n", add_special_tokens=False)["input_ids"][0]
    seqs, ends = [], []
    for r in rows:
        steps = split_steps(r["completion"]) or [r["completion"].strip() or "?"]
        st = step_end_positions(tokenizer, check_prompt(r["question"]), steps)
        seqs.append(list(st.input_ids) + [newline])  # every step, the last too, is followed by a newline
        ends.append(st.step_end_positions)
        if any(seqs[-1][e + 1] != newline for e in ends[-1]):
            raise ValueError("check_scores needs a tokenizer whose newline is a token of its own")
    model.eval()
    with torch.no_grad():
        logprobs = token_logprobs(model, seqs, tokenizer.pad_token_id, batch_size)
    return [[round(1.0 - math.exp(float(lp[e + 1])), 6) for e in positions] for lp, positions in zip(logprobs, ends)]


def main() -> None:
    from ttstrain.world.tokenizer import build_char_tokenizer

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--level", type=int, default=2)
    parser.add_argument("--n", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng, tok = random.Random(args.seed), build_char_tokenizer()
    for _ in range(args.n):
        ids, _ = check_example(rng, args.level, tok)
        print(tok.decode(ids, skip_special_tokens=True), "\n")


if __name__ == "__main__":
    main()
