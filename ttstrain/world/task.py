"""The built-in math task of the default world: multi-step arithmetic problems from a seed.

A problem lists a start number and one numbered operation per line; level L has L operations
(add/subtract 2-99, multiply by 2-9), so higher levels are longer and carry larger values (up to
four digits) through more steps. Its gold solution writes one operation per step in
the project's step format and ends with a boxed answer:

    Start with 37.                     37 + 45 = 82
    1. Add 45.                         82 * 3 = 246
    2. Multiply by 3.          ->      246 - 12 = 234
    3. Subtract 12.                    The answer is \\boxed{234}.
    What is the result?

Every value stays in 0..9999. Train and test are disjoint by construction: a problem belongs to
the test pool iff a hash of its question text falls in the test bucket, so no training batch can
ever contain a test question whatever the seeds.

`first_error(problem, solution)` names the first wrong step of a sampled solution and why
(`arithmetic`, `copy` of an operand or of the previous result, `format`, `length`, `answer`),
which makes the world's wrong samples fail at an identifiable step.

    python -m ttstrain.world.task --level 3 --n 2    # print two level-3 problems with solutions
"""

from __future__ import annotations

import argparse
import hashlib
import random
import re
from dataclasses import dataclass

from ttstrain.steps import join_steps, split_steps

LEVELS = (1, 2, 3, 4, 5)
MAX_VALUE = 9999
TEST_BUCKETS = 10  # 1 bucket in 10 is the test pool
# most characters of other worked problems before a pretraining row's problem (build-world
# --solve_context_share): the whole row stays well inside the policy's 1,024 positions
CONTEXT_CHARS = 640

_OP_WORDS = {"+": "Add", "-": "Subtract", "*": "Multiply by"}
_STEP_RE = re.compile(r"^(\d+) ([+\-*]) (\d+) = (\d+)$")
_ANSWER_RE = re.compile(r"^The answer is \\boxed\{(\d+)\}\.$")


def step_line(left: int, op: str, x: int, result: int) -> str:
    """One operation step as the world writes it (what `_STEP_RE` reads)."""
    return f"{left} {op} {x} = {result}"


def answer_line(value: int | str) -> str:
    """The closing step as the world writes it (what `_ANSWER_RE` reads)."""
    return f"The answer is \\boxed{{{value}}}."


@dataclass(frozen=True)
class LevelSpec:
    num_ops: int
    start_range: tuple[int, int]
    addsub_range: tuple[int, int]
    mul_range: tuple[int, int] = (2, 9)


LEVEL_SPECS = {
    1: LevelSpec(1, (2, 99), (2, 99)),
    2: LevelSpec(2, (2, 99), (2, 99)),
    3: LevelSpec(3, (2, 99), (2, 99)),
    4: LevelSpec(4, (2, 99), (2, 99)),
    5: LevelSpec(5, (2, 99), (2, 99)),
}


@dataclass(frozen=True)
class ArithmeticProblem:
    id: str
    level: int
    start: int
    ops: tuple[tuple[str, int], ...]

    @property
    def question(self) -> str:
        lines = [f"Start with {self.start}."]
        lines += [f"{i + 1}. {_OP_WORDS[op]} {x}." for i, (op, x) in enumerate(self.ops)]
        lines.append("What is the result?")
        return "\n".join(lines)

    def values(self) -> list[int]:
        vals = [self.start]
        for op, x in self.ops:
            vals.append(apply_op(vals[-1], op, x))
        return vals

    @property
    def answer(self) -> str:
        return str(self.values()[-1])

    def gold_steps(self) -> list[str]:
        vals = self.values()
        steps = [step_line(vals[i], op, x, vals[i + 1]) for i, (op, x) in enumerate(self.ops)]
        steps.append(answer_line(vals[-1]))
        return steps

    @property
    def solution(self) -> str:
        return join_steps(self.gold_steps())

    def to_row(self) -> dict:
        return {"id": self.id, "question": self.question, "answer": self.answer, "level": self.level,
                "subject": "arithmetic", "solution": self.solution}


def apply_op(value: int, op: str, x: int) -> int:
    if op == "+":
        return value + x
    if op == "-":
        return value - x
    if op == "*":
        return value * x
    raise ValueError(f"unknown op {op!r}")


def _draw_problem(rng: random.Random, level: int) -> tuple[int, tuple[tuple[str, int], ...]]:
    return draw_start_and_ops(rng, LEVEL_SPECS[level])


def draw_start_and_ops(rng: random.Random, spec: LevelSpec) -> tuple[int, tuple[tuple[str, int], ...]]:
    """A start number and `spec.num_ops` operations whose running value stays in 0..MAX_VALUE."""
    start = rng.randint(*spec.start_range)
    value, ops = start, []
    while len(ops) < spec.num_ops:
        op = rng.choice("+-*")
        x = rng.randint(*(spec.mul_range if op == "*" else spec.addsub_range))
        new = apply_op(value, op, x)
        if 0 <= new <= MAX_VALUE:
            ops.append((op, x))
            value = new
    return start, tuple(ops)


def is_test_question(question: str) -> bool:
    digest = hashlib.sha256(question.encode()).digest()
    return digest[0] % TEST_BUCKETS == 0


def generate_problems(split: str, level: int, n: int, seed: int) -> list[ArithmeticProblem]:
    """n distinct problems of one level from one split ('train' or 'test'), reproducible from seed."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if level not in LEVEL_SPECS:
        raise ValueError(f"level must be one of {LEVELS}, got {level}")
    rng = random.Random(f"{split}-{level}-{seed}")
    want_test = split == "test"
    seen: set[str] = set()
    out: list[ArithmeticProblem] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 1000 * (n + 10):
            raise RuntimeError(f"could not draw {n} distinct {split} problems at level {level}")
        start, ops = _draw_problem(rng, level)
        p = ArithmeticProblem(id="", level=level, start=start, ops=ops)
        q = p.question
        if q in seen or is_test_question(q) != want_test:
            continue
        seen.add(q)
        out.append(ArithmeticProblem(id=f"arith-{split}-L{level}-{len(out):05d}", level=level, start=start, ops=ops))
    return out


def sample_training_problem(rng: random.Random, level: int) -> ArithmeticProblem:
    """One training-pool problem (never a test question), for on-the-fly pretraining batches."""
    while True:
        start, ops = _draw_problem(rng, level)
        p = ArithmeticProblem(id="", level=level, start=start, ops=ops)
        if not is_test_question(p.question):
            return p


def problems_split(split: str, per_level: int, seed: int, levels=LEVELS) -> list[dict]:
    """Rows (id, question, answer, level, subject, solution) for `per_level` problems of each level."""
    rows = []
    for level in levels:
        rows += [p.to_row() for p in generate_problems(split, level, per_level, seed)]
    return rows


def parse_question(question: str) -> tuple[int, list[tuple[str, int]]]:
    """Recover start and operations from a question's text (inverse of ArithmeticProblem.question)."""
    lines = question.strip().split("\n")
    m = re.fullmatch(r"Start with (\d+)\.", lines[0])
    if not m:
        raise ValueError(f"not an arithmetic-world question: {question!r}")
    start, ops = int(m.group(1)), []
    words = {v: k for k, v in _OP_WORDS.items()}
    for line in lines[1:-1]:
        m = re.fullmatch(r"\d+\. (Add|Subtract|Multiply by) (\d+)\.", line)
        if not m:
            raise ValueError(f"bad operation line {line!r}")
        ops.append((words[m.group(1)], int(m.group(2))))
    return start, ops


@dataclass(frozen=True)
class StepError:
    step: int  # 0-based index of the first wrong step
    kind: str  # arithmetic | copy | format | length | answer


def first_error(question: str, solution: str) -> StepError | None:
    """The first wrong step of a solution to an arithmetic-world question, or None if all are right."""
    start, ops = parse_question(question)
    steps = split_steps(solution)
    value = start
    for i, (op, x) in enumerate(ops):
        if i >= len(steps):
            return StepError(len(steps), "length")
        m = _STEP_RE.match(steps[i])
        if not m:
            return StepError(i, "format")
        left, sop, right, result = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
        if left != value or sop != op or right != x:
            return StepError(i, "copy")
        value = apply_op(value, op, x)
        if result != value:
            return StepError(i, "arithmetic")
    if len(steps) == len(ops):
        return StepError(len(ops), "length")
    m = _ANSWER_RE.match(steps[len(ops)])
    if not m or int(m.group(1)) != value:
        return StepError(len(ops), "answer")
    if len(steps) > len(ops) + 1:
        return StepError(len(ops) + 1, "length")
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--level", type=int, default=3)
    parser.add_argument("--n", type=int, default=2)
    parser.add_argument("--split", default="test")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for p in generate_problems(args.split, args.level, args.n, args.seed):
        print(p.question, "\n---\n" + p.solution + "\n")


if __name__ == "__main__":
    main()
