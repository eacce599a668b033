"""Reward-tail statistics of SLG search (ttstrain.search.tail): the fit, the expected maximum, the schedule."""

from __future__ import annotations

import math
import random

import pytest

from ttstrain.search.tail import TailFit, expected_best_of_n, expected_max_standard_normal, fit_tail, slg_schedule


@pytest.mark.parametrize("mu,sigma", [(0.0, 1.0), (0.6, 0.1), (-3.0, 2.5)])
def test_tail_fit_recovers_a_known_normal_from_its_top_fifth(mu, sigma):
    rng = random.Random(0)
    draws = [rng.gauss(mu, sigma) for _ in range(10_000)]
    fit = fit_tail(draws, alpha=0.2)
    assert fit.points == 2_000
    assert abs(fit.sigma - sigma) <= 0.05 * sigma
    assert abs(fit.mu - mu) <= 0.05 * max(abs(mu), sigma)


def test_expected_maximum_of_standard_normals():
    assert expected_max_standard_normal(1) == 0.0
    assert expected_max_standard_normal(2) == pytest.approx(1 / math.sqrt(math.pi), abs=1e-6)
    assert expected_max_standard_normal(3) == pytest.approx(1.5 / math.sqrt(math.pi), abs=1e-6)
    rng = random.Random(1)
    simulated = sum(max(rng.gauss(0, 1) for _ in range(16)) for _ in range(20_000)) / 20_000
    assert expected_max_standard_normal(16) == pytest.approx(simulated, abs=0.02)


def test_degenerate_tails_predict_their_mean():
    assert fit_tail([0.7] * 30) == TailFit(0.7, 0.0, 6)
    assert fit_tail([0.1, 0.9, 0.3]) == TailFit(0.9, 0.0, 1)
    assert expected_best_of_n(fit_tail([0.7] * 30), 64) == 0.7
    with pytest.raises(ValueError, match="at least one reward"):
        fit_tail([])
    with pytest.raises(ValueError, match="not finite"):
        fit_tail([0.5, float("nan")])


def test_prediction_grows_with_n():
    fit = TailFit(0.5, 0.1, 10)
    values = [expected_best_of_n(fit, n) for n in (1, 2, 4, 16, 64)]
    assert values == sorted(values) and values[0] == 0.5


@pytest.mark.parametrize("budget,expected", [(256, (35, 4)), (1000, (65, 8)), (16, (20, 2)), (64, (20, 2))])
def test_reference_schedule(budget, expected):
    assert slg_schedule(budget) == expected
