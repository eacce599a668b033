"""Accuracy metrics over sampled solutions: unbiased pass@k, majority and weighted vote at N, AUROC.

Curves at budgets N = 1, 2, 4, ... come from nested subsets of one run at the largest N,
averaged over resamplings (as HF search-and-learn does), so every budget reuses the same samples.

    pass_at_k(n=16, c=4, k=1)   # 0.25
"""

from __future__ import annotations

import random
from math import comb
from typing import Hashable, Sequence

from ttstrain.search.selection import weighted_vote


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


def auroc(scores: Sequence[float], targets: Sequence[bool]) -> float | None:
    """Area under the ROC curve by the rank-sum formula (ties share ranks); None if one class is empty."""
    pos = sum(1 for t in targets if t)
    neg = len(targets) - pos
    if pos == 0 or neg == 0:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    rank_sum = sum(r for r, t in zip(ranks, targets) if t)
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)
