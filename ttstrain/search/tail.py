"""Reward-tail estimates of best-of-N: the statistics behind scaling-law guided (SLG) search.

From m rewards of completions of one state (a partial solution), the expected best of N further
draws is predicted from the top of the reward distribution (arXiv 2602.01485):

1. keep the top `alpha` fraction of the rewards (alpha = 0.2 by default);
2. fit a normal N(mu, sigma^2) to them by matching the mean and variance of a normal truncated
   below at its (1 - alpha) quantile: z = Phi^-1(1 - alpha), lambda = phi(z) / alpha,
   sigma^2 = var / (1 + z * lambda - lambda^2), mu = mean - sigma * lambda;
3. predict E[max of N draws] = mu + sigma * e_N, where e_N is the *exact* expected maximum of N
   standard normals (numerical integration), not the quantile shortcut Phi^-1(1 - 1/N): the
   shortcut is 0 at N = 2 where the true value is 0.564, and stays biased low at the small N
   this toolkit compares methods at.

Degenerate tails have a defined answer: with fewer than 2 tail points, or tail rewards that are
all equal (variance 0), sigma is 0 and the prediction is the tail mean for every N.

`slg_schedule(N)` gives the reference implementation's (m, K): m = max(20, ln(N)^3 / 5) rounded
to a multiple of 5 completions per state, K = max(2, min(round(N / 2m), floor(N / (m + 2))))
candidate states.

    from ttstrain.search.tail import fit_tail, expected_best_of_n, slg_schedule
    fit = fit_tail(rewards)              # TailFit(mu, sigma, points)
    expected_best_of_n(fit, 16)          # predicted best-of-16 reward
    slg_schedule(256)                    # (35, 4)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist
from typing import Sequence

import numpy as np

_STANDARD = NormalDist()


@dataclass(frozen=True)
class TailFit:
    mu: float
    sigma: float
    points: int  # rewards in the tail the fit used


def fit_tail(rewards: Sequence[float], alpha: float = 0.2) -> TailFit:
    """The normal whose upper `alpha` tail matches the top `alpha` fraction of `rewards`."""
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    values = sorted((float(r) for r in rewards), reverse=True)
    if not values:
        raise ValueError("fit_tail needs at least one reward")
    if any(not math.isfinite(v) for v in values):
        raise ValueError("fit_tail got a reward that is not finite")
    tail = values[:max(1, math.ceil(alpha * len(values)))]
    if len(tail) < 2 or tail[0] == tail[-1]:  # one point, or all equal: no spread to extrapolate
        return TailFit(tail[0], 0.0, len(tail))
    mean = sum(tail) / len(tail)
    var = sum((v - mean) ** 2 for v in tail) / (len(tail) - 1)
    if alpha == 1.0:  # no truncation: the plain moments
        return TailFit(mean, math.sqrt(var), len(tail))
    z = _STANDARD.inv_cdf(1.0 - alpha)
    lam = _STANDARD.pdf(z) / alpha
    sigma = math.sqrt(var / (1.0 + z * lam - lam * lam))
    return TailFit(mean - sigma * lam, sigma, len(tail))


@lru_cache(maxsize=4096)
def expected_max_standard_normal(n: int) -> float:
    """E[max of n independent standard normals], by integrating n * x * phi(x) * Phi(x)^(n-1)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if n == 1:
        return 0.0
    x = np.linspace(-10.0, 10.0 + math.sqrt(2.0 * math.log(n)), 40_001)
    pdf = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    cdf = 0.5 * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))
    density = n * pdf * np.power(cdf, n - 1)
    return float(np.trapezoid(x * density, x))


def expected_best_of_n(fit: TailFit, n: int) -> float:
    """Predicted expected best reward of n draws from the state the tail was fitted on."""
    return fit.mu + fit.sigma * expected_max_standard_normal(n) if fit.sigma > 0 else fit.mu


def slg_schedule(budget: int) -> tuple[int, int]:
    """(m completions per state, K candidate states) of the reference schedule at budget N."""
    if budget < 1:
        raise ValueError(f"budget must be >= 1, got {budget}")
    m = max(20, 5 * round(math.log(budget) ** 3 / 5 / 5))
    k = max(2, min(round(budget / (2 * m)), budget // (m + 2)))
    return m, k
