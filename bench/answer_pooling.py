"""Benchmark: pooling a problem's answers by equivalence, ttstrain's two-stage pooling against grading every pair.

Candidates: for each MATH-500 problem (the data directory's math/test.jsonl.gz), `--candidates`
answers drawn with a fixed seed as a policy's samples look: the gold answer written several
equivalent ways (for a plain number: a/b, \\frac, \\dfrac, a decimal, a trailing .0 or a unit; for
a surd a\\sqrt{b}: \\sqrt{a^2 b}; otherwise spacing, \\dfrac, \\left/\\right and $...$ variants),
wrong answers (the gold with a digit changed, or a nearby number, each also written two ways; more
of them at higher levels) and a few unparsed (None) answers; the share of right samples falls
with the level.

(a) ttstrain: an `ttstrain.answers.pooling.AnswerPool` per problem: canonical forms without sympy,
    then each new form against each group's first form (`is_equivalent`, with the pairs its fast
    path or two constant values can decide kept out of the sandbox).
(b) all pairs: `is_equivalent` on every unordered pair of candidates of a problem (both answers
    present), then the same greedy grouping read off that table. It is run on every
    `--baseline_every`-th problem and its time extrapolated to all of them (the output says so).
Both pay the grading sandbox's start-up before the clock starts, and each starts with
`is_equivalent`'s own cache of symbolic verdicts empty. Printed: seconds of each, equivalence
checks and symbolic (sandbox) checks, whether the two groupings agree on the baseline's problems,
majority@N accuracy over text keys and over pooled keys, and last the ratio of the seconds.

    python bench/answer_pooling.py                       # 500 problems x 64 candidates, baseline on every 10th
    python bench/answer_pooling.py --problems 100 --baseline_every 1
    python bench/answer_pooling.py --wrong_scale 3       # three times as many distinct wrong answers
"""

from __future__ import annotations

import argparse
import random
import re
import time
from fractions import Fraction

import ttstrain.answers.grading as grading
from ttstrain.answers.normalization import canonical_form, normalize_answer
from ttstrain.answers.pooling import AnswerPool
from ttstrain.answers.grading import answer_key, is_equivalent, warm_up
from ttstrain.search.selection import weighted_vote
from ttstrain.problems import load_problems

RIGHT_SHARE = {1: 0.85, 2: 0.7, 3: 0.55, 4: 0.4, 5: 0.25}  # of a problem's candidates, by level
_SURD = re.compile(r"^(\d+)\\sqrt\{(\d+)\}$")


def _number_forms(value: Fraction) -> list[str]:
    """Ways a model writes this number; the first is the plainest."""
    sign = "-" if value < 0 else ""
    v = abs(value)
    if v.denominator == 1:
        n = v.numerator
        return [f"{sign}{n}", f"{sign}{n}.0", f"{sign}{n}\\text{{ units}}", f"{sign}{n:,}", f"${sign}{n}$"]
    p, q = v.numerator, v.denominator
    forms = [f"{sign}\\frac{{{p}}}{{{q}}}", f"{sign}{p}/{q}", f"{sign}\\dfrac{{{p}}}{{{q}}}",
             f"\\frac{{{sign}{p}}}{{{q}}}"]
    forms.append(sign + f"{float(v):.6f}".rstrip("0"))  # exact or to six places, as graded
    return forms


def _text_forms(gold: str) -> list[str]:
    """Equivalent ways to write a non-numeric answer; the first is the gold as given."""
    forms = [gold, gold.replace("\\frac", "\\dfrac"), gold.replace(",", ", "), f"${gold}$"]
    if "\\left" not in gold:
        forms.append(gold.replace("(", "\\left(").replace(")", "\\right)"))
    surd = _SURD.match(normalize_answer(gold))
    if surd:
        a, b = int(surd.group(1)), int(surd.group(2))
        forms.append(f"\\sqrt{{{a * a * b}}}")
    return list(dict.fromkeys(forms))


def _wrong_values(gold: str, value: Fraction | None, count: int, rng: random.Random) -> list[list[str]]:
    """`count` wrong answers, each as a list of ways to write it."""
    out: list[list[str]] = []
    tries = 0
    while len(out) < count and tries < 50:
        tries += 1
        if value is not None:
            if rng.random() < 0.6:
                wrong = value + rng.choice([1, -1, 2, 3])
            else:
                wrong = value * rng.choice([2, 3, Fraction(1, 2), -1])
            if wrong == value:
                continue
            forms = _number_forms(wrong)[:2]
        else:
            digits = [i for i, c in enumerate(gold) if c.isdigit()]
            if digits and rng.random() < 0.8:
                i = rng.choice(digits)
                text = gold[:i] + str((int(gold[i]) + rng.randint(1, 8)) % 10) + gold[i + 1:]
            else:
                text = str(rng.randint(0, 60))
            forms = list(dict.fromkeys([text, text.replace("\\frac", "\\dfrac")]))
        if all(f[0] != forms[0] for f in out):
            out.append(forms)
    return out


def candidates(problem: dict, n: int, seed: int, wrong_scale: float = 1.0) -> tuple[list[str | None], list[bool]]:
    """n answers for one problem and whether each is right by construction; (level + 1) * wrong_scale
    distinct wrong answers."""
    rng = random.Random(f"{seed}:{problem['id']}")
    gold = str(problem["answer"])
    value = canonical_form(normalize_answer(gold))
    value = value[1] if value[0] == "number" else None
    right = _number_forms(value) if value is not None else _text_forms(gold)
    level = int(problem.get("level") or 3)
    wrong = _wrong_values(gold, value, max(1, round((level + 1) * wrong_scale)), rng)
    answers, correct = [], []
    for _ in range(n):
        r = rng.random()
        if r < RIGHT_SHARE[level]:
            answers.append(right[0] if rng.random() < 0.5 else rng.choice(right))
            correct.append(True)
        elif r < 0.97 and wrong:
            forms = rng.choices(wrong, weights=[1 / (k + 1) for k in range(len(wrong))])[0]  # Zipf: a long tail
            answers.append(forms[0] if rng.random() < 0.7 else rng.choice(forms))
            correct.append(False)
        else:
            answers.append(None)
            correct.append(False)
    return answers, correct


def all_pairs_keys(answers: list[str | None]) -> tuple[list[str | None], int]:
    """Pooled keys from `is_equivalent` on every unordered pair, grouped greedily as ttstrain groups;
    and the number of checks made."""
    n = len(answers)
    equal = {}
    for i in range(n):
        for j in range(i + 1, n):
            if answers[i] is not None and answers[j] is not None:
                equal[i, j] = is_equivalent(answers[j], answers[i])
    firsts: list[int] = []  # first member of each group
    keys: list[str | None] = []
    for j, a in enumerate(answers):
        if a is None:
            keys.append(None)
            continue
        home = next((i for i in firsts if equal[i, j]), None)
        if home is None:
            firsts.append(j)
            keys.append(answer_key(a))
        else:
            keys.append(keys[home])
    return keys, len(equal)


def majority_right(keys: list[str | None], correct: list[bool]) -> bool:
    win = weighted_vote(keys)
    return win is not None and any(k == win and c for k, c in zip(keys, correct))


def partition(keys: list[str | None]) -> set[frozenset[int]]:
    groups: dict = {}
    for i, k in enumerate(keys):
        if k is not None:
            groups.setdefault(k, set()).add(i)
    return {frozenset(g) for g in groups.values()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--problems", type=int, default=500, help="the first this many MATH-500 problems")
    ap.add_argument("--candidates", type=int, default=64, help="answers per problem")
    ap.add_argument("--baseline_every", type=int, default=10,
                    help="run the all-pairs baseline on every k-th problem and extrapolate (1: all of them)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--wrong_scale", type=float, default=1.0,
                    help="distinct wrong answers per problem: (level + 1) times this (a harder, more varied policy: 3)")
    args = ap.parse_args()

    problems = load_problems("math500")[: args.problems]
    data = [candidates(p, args.candidates, args.seed, args.wrong_scale) for p in problems]
    warm_up()  # the sandbox's start-up is paid before either clock starts

    grading._symbolic_equal.cache_clear()
    t0 = time.perf_counter()
    pooled, checks = [], 0
    for answers, _ in data:
        pool = AnswerPool()
        pooled.append(pool.keys(answers))
        checks += pool.comparisons
    ours_s = time.perf_counter() - t0
    ours_symbolic = grading._symbolic_equal.cache_info().misses

    subset = list(range(0, len(data), args.baseline_every))
    grading._symbolic_equal.cache_clear()
    t0 = time.perf_counter()
    baseline, pair_checks = {}, 0
    for i in subset:
        baseline[i], made = all_pairs_keys(data[i][0])
        pair_checks += made
    base_s = time.perf_counter() - t0
    base_symbolic = grading._symbolic_equal.cache_info().misses
    base_all_s = base_s * len(data) / len(subset)

    agree = sum(partition(pooled[i]) == partition(baseline[i]) for i in subset)
    text = sum(majority_right([answer_key(a) for a in answers], correct) for answers, correct in data)
    ours_right = sum(majority_right(keys, correct) for keys, (_, correct) in zip(pooled, data))
    distinct = sum(len({answer_key(a) for a in answers if a is not None}) for answers, _ in data) / len(data)
    groups = sum(len(partition(k)) for k in pooled) / len(data)
    print(f"{len(data)} MATH-500 problems x {args.candidates} candidates (seed {args.seed}): "
          f"{distinct:.1f} distinct answer keys and {groups:.1f} pooled groups per problem")
    print(f"ttstrain pooling: {ours_s:.2f} s for all {len(data)} problems ({1000 * ours_s / len(data):.1f} ms each), "
          f"{checks} equivalence checks, {ours_symbolic} symbolic")
    where = (f"all {len(data)} problems" if len(subset) == len(data)
             else f"{len(subset)} problems (one in {args.baseline_every})")
    print(f"all pairs: {base_s:.2f} s on {where}, {pair_checks} equivalence checks, {base_symbolic} symbolic"
          + ("" if len(subset) == len(data) else f"; extrapolated to {len(data)} problems: {base_all_s:.1f} s"))
    print(f"same grouping as all pairs: {agree}/{len(subset)} problems"
          + ("" if agree == len(subset) else "  <-- differ (equivalence is not transitive there)"))
    print(f"majority@{args.candidates} right: text keys {text}/{len(data)}, pooled keys {ours_right}/{len(data)}")
    measured = "" if len(subset) == len(data) else " (extrapolated)"
    print(f"ratio seconds all-pairs{measured} over ttstrain pooling: {base_all_s / ours_s:.1f}")


if __name__ == "__main__":
    main()
