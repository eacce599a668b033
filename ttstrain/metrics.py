"""Accuracy metrics over sampled solutions: unbiased pass@k, majority vote and weighted vote at N.

Curves at budgets N = 1, 2, 4, ... come from nested subsets of one run at the largest N,
averaged over resamplings (as HF search-and-learn does), so every budget reuses the same samples.

    pass_at_k(n=16, c=4, k=1)   # 0.25
"""

from __future__ import annotations

import random
from collections import defaultdict
from math import comb
from typing import Hashable, Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of P(at least one of k draws is correct) from n samples with c correct."""
    if k > n:
        raise ValueError(f"k={k} exceeds the number of samples n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def power_of_two_budgets(max_n: int) -> list[int]:
    out, b = [], 1
    while b <= max_n:
        out.append(b)
        b *= 2
    return out


def weighted_vote(answers: Sequence[Hashable | None], weights: Sequence[float] | None = None) -> Hashable | None:
    """The answer with the largest summed weight (weights=None: majority vote). None answers never win.

    Ties go to the answer seen first, so the result is deterministic for a given sample order.
    Answers count as equal only when they are equal as given: vote over pooled keys
    (`ttstrain.answer_pooling`) so that answers that grade as equal count as one.
    """
    totals: dict = defaultdict(float)
    first: dict = {}
    for i, a in enumerate(answers):
        if a is None:
            continue
        totals[a] += 1.0 if weights is None else float(weights[i])
        first.setdefault(a, i)
    if not totals:
        return None
    return max(totals, key=lambda a: (totals[a], -first[a]))


def voted_accuracy_at_budgets(answers: Sequence[Hashable | None], correct_answers: set, budgets: Sequence[int],
                              weights: Sequence[float] | None = None, resamples: int = 16, seed: int = 0) -> dict[int, float]:
    """Mean accuracy of (weighted) voting over `resamples` random subsets of each budget."""
    rng = random.Random(seed)
    n = len(answers)
    out = {}
    for b in budgets:
        if b > n:
            raise ValueError(f"budget {b} exceeds the {n} samples available")
        reps = 1 if b == n else resamples
        hits = 0
        for _ in range(reps):
            idx = rng.sample(range(n), b)
            pick = weighted_vote([answers[i] for i in idx], None if weights is None else [weights[i] for i in idx])
            hits += pick is not None and pick in correct_answers
        out[b] = hits / reps
    return out
