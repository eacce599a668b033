"""The one table of step-score aggregations: how per-step PRM values become one solution score.

`last` (the default) is the paper's finding for PRMs trained on Monte Carlo labels: the value at
the last step already estimates the probability that the solution is correct. `min` and `prod`
are the PRM800K conventions; `mean` is a common baseline. Search, best-of-N and evaluation all
look aggregations up here by name.

    aggregate([0.9, 0.4, 0.8], "min")   # 0.4
"""

from __future__ import annotations

import math
from typing import Callable, Sequence


def _last(xs: Sequence[float]) -> float:
    return float(xs[-1])


def _min(xs: Sequence[float]) -> float:
    return float(min(xs))


def _prod(xs: Sequence[float]) -> float:
    return float(math.prod(xs))


def _mean(xs: Sequence[float]) -> float:
    return float(sum(xs) / len(xs))


AGGREGATIONS: dict[str, Callable[[Sequence[float]], float]] = {"last": _last, "min": _min, "prod": _prod, "mean": _mean}
DEFAULT_AGGREGATION = "last"


def aggregate(step_scores: Sequence[float], how: str = DEFAULT_AGGREGATION) -> float:
    """One score for a solution from its per-step scores (an empty solution scores 0)."""
    try:
        fn = AGGREGATIONS[how]
    except KeyError:
        raise ValueError(f"unknown aggregation {how!r}; choose from {sorted(AGGREGATIONS)}") from None
    return fn(step_scores) if len(step_scores) else 0.0
