"""Sampling baselines from graded samples: pass@1 by level, pass@N and majority vote at N.

These are the curves every test-time method is compared against; they come from one run at the
largest N (nested subsets, averaged over resamplings for voting; the unbiased estimator for pass@N).

    from ttstrain.analysis.baselines import sampling_baselines
    summary = sampling_baselines(sample_rows, budgets=[1, 2, 4, 8, 16])
"""

from __future__ import annotations

from typing import Sequence

from ttstrain.answers.pooling import correct_keys, pool_answers
from ttstrain.analysis.metrics import pass_at_k, voted_accuracy_at_budgets
from ttstrain.generation.sampling import group_by_problem


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def problem_curves(samples: Sequence[dict], budgets: Sequence[int], resamples: int, seed: int) -> dict:
    """pass@N and majority@N for one problem's samples."""
    n, c = len(samples), sum(r["correct"] for r in samples)
    keys = pool_answers(r["answer"] for r in samples)  # answers that grade as equal vote together
    right = correct_keys(keys, (r["correct"] for r in samples))
    return {
        "pass": {b: pass_at_k(n, c, b) for b in budgets},
        "majority": voted_accuracy_at_budgets(keys, right, budgets, resamples=resamples, seed=seed),
        "pass@1": c / n,
    }


def sampling_baselines(samples: Sequence[dict], budgets: Sequence[int], resamples: int = 16, seed: int = 0) -> dict:
    """Overall and per-level pass@1, pass@N and majority@N over graded sample rows."""
    per_problem = {pid: (rows[0].get("level"), problem_curves(rows, budgets, resamples, seed))
                   for pid, rows in group_by_problem(samples).items()}
    levels = sorted({lvl for lvl, _ in per_problem.values() if lvl is not None})

    def summarize(items):
        return {
            "problems": len(items),
            "pass@1": _mean([c["pass@1"] for c in items]),
            "pass_at": {b: _mean([c["pass"][b] for c in items]) for b in budgets},
            "majority_at": {b: _mean([c["majority"][b] for c in items]) for b in budgets},
        }

    out = {"overall": summarize([c for _, c in per_problem.values()]), "by_level": {}}
    for lvl in levels:
        out["by_level"][lvl] = summarize([c for l, c in per_problem.values() if l == lvl])
    return out


def greedy_by_level(greedy: Sequence[dict]) -> dict:
    levels = sorted({r["level"] for r in greedy if r.get("level") is not None})
    out = {lvl: _mean([r["correct"] for r in greedy if r["level"] == lvl]) for lvl in levels}
    out["all"] = _mean([r["correct"] for r in greedy])
    return out
