"""Best-of-N scaling prediction: from the first m scored samples of each question, predict the
expected best-of-N reward and best-of-N accuracy for larger N, and compare with what the rest of
the samples show (the analysis behind `ttstrain predict-bon`).

Prediction (per question, from its first m samples):
  reward    the reward tail fit of `ttstrain.search.tail` (top alpha of the m rewards, a normal
            matched to a truncated normal's moments), E[best of N] = mu + sigma * e_N.
  accuracy  P(the top-rewarded of N samples is correct), with rewards modelled per class: the
            correct samples' rewards ~ N(mu_c, s_c), the wrong ones' ~ N(mu_w, s_w), drawn with
            the observed share p of correct samples; P = integral of N p f_c(x) F(x)^(N-1),
            F = p F_c + (1 - p) F_w. A class with fewer than 2 samples (or no spread) takes the
            spread of all m rewards; p = 0 or 1 predicts 0 or 1 at every N.
Observation (per question, from all K of its samples): the exact expectation over random
N-subsets, no resampling: with rewards sorted ascending, sample i (1-based) is the subset's
maximum with probability C(i-1, N-1) / C(K, N); its reward and its correctness are averaged
with those weights (ties keep the samples' order).

    from ttstrain.analysis.bon_prediction import predict_question, observed_curve
    predict_question(rewards[:8], correct[:8], [1, 2, 4, 8, 16, 32, 64])
    observed_curve(rewards, correct, [1, 2, 4, 8, 16, 32, 64])
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ttstrain.search.tail import expected_best_of_n, fit_tail


def _normal_or_spread(values: Sequence[float], fallback_sd: float) -> tuple[float, float]:
    mean = float(np.mean(values))
    sd = float(np.std(values, ddof=1)) if len(values) >= 2 else 0.0
    return mean, sd if sd > 0 else fallback_sd


def predicted_accuracy(rewards: Sequence[float], correct: Sequence[bool], n: int) -> float:
    """P(the top-rewarded of n samples is correct) under the two-normal model of the module docstring."""
    right = [float(r) for r, c in zip(rewards, correct) if c]
    wrong = [float(r) for r, c in zip(rewards, correct) if not c]
    if not right or not wrong:
        return 1.0 if right else 0.0
    p = len(right) / len(rewards)
    spread = float(np.std(rewards, ddof=1)) if len(rewards) >= 2 else 0.0
    spread = spread if spread > 0 else 1e-3
    (mc, sc), (mw, sw) = _normal_or_spread(right, spread), _normal_or_spread(wrong, spread)
    # a grid dense around each class: one class's rewards may spread far less than the other's
    x = np.unique(np.concatenate([np.linspace(mc - 8 * sc, mc + 8 * sc, 801), np.linspace(mw - 8 * sw, mw + 8 * sw, 801)]))
    erf = np.vectorize(math.erf)
    pdf_c = np.exp(-0.5 * ((x - mc) / sc) ** 2) / (sc * math.sqrt(2 * math.pi))
    cdf = p * 0.5 * (1 + erf((x - mc) / (sc * math.sqrt(2)))) + (1 - p) * 0.5 * (1 + erf((x - mw) / (sw * math.sqrt(2))))
    density = n * p * pdf_c * np.power(cdf, n - 1)
    return float(min(1.0, max(0.0, np.trapezoid(density, x))))


def predict_question(rewards: Sequence[float], correct: Sequence[bool], budgets: Sequence[int],
                     alpha: float = 0.2) -> dict[int, dict[str, float]]:
    fit = fit_tail(rewards, alpha)
    return {n: {"reward": expected_best_of_n(fit, n), "accuracy": predicted_accuracy(rewards, correct, n)}
            for n in budgets}


def observed_curve(rewards: Sequence[float], correct: Sequence[bool],
                   budgets: Sequence[int]) -> dict[int, dict[str, float]]:
    """Exact expected best-of-N reward and accuracy over random N-subsets of the K samples."""
    order = sorted(range(len(rewards)), key=lambda i: (float(rewards[i]), -i))  # ascending; ties: earlier wins
    k = len(order)
    out = {}
    for n in budgets:
        if n > k:
            continue
        total = math.comb(k, n)
        weights = [math.comb(i, n - 1) / total for i in range(k)]  # sample at rank i+1 is the max
        out[n] = {"reward": sum(w * float(rewards[j]) for w, j in zip(weights, order)),
                  "accuracy": sum(w * float(bool(correct[j])) for w, j in zip(weights, order))}
    return out


def prediction_report(questions: dict[str, tuple[list[float], list[bool]]], fit_samples: int,
                      budgets: Sequence[int], alpha: float = 0.2) -> dict:
    """Predicted (from the first `fit_samples`) and observed (all samples) curves, averaged over
    questions, and the errors per N: the mean absolute error over questions, and the error of
    the mean."""
    per_n: dict[int, dict[str, list[float]]] = {n: {"pred_acc": [], "obs_acc": [], "pred_reward": [],
                                                     "obs_reward": []} for n in budgets}
    for rewards, correct in questions.values():
        pred = predict_question(rewards[:fit_samples], correct[:fit_samples], budgets, alpha)
        obs = observed_curve(rewards, correct, budgets)
        for n in obs:
            per_n[n]["pred_acc"].append(pred[n]["accuracy"])
            per_n[n]["obs_acc"].append(obs[n]["accuracy"])
            per_n[n]["pred_reward"].append(pred[n]["reward"])
            per_n[n]["obs_reward"].append(obs[n]["reward"])
    curves = {}
    for n, v in per_n.items():
        if not v["obs_acc"]:
            continue
        pa, oa, pr, orw = (np.array(v[k]) for k in ("pred_acc", "obs_acc", "pred_reward", "obs_reward"))
        curves[n] = {"predicted_accuracy": float(pa.mean()), "observed_accuracy": float(oa.mean()),
                     "accuracy_mae": float(np.abs(pa - oa).mean()),
                     "accuracy_error_of_mean": float(pa.mean() - oa.mean()),
                     "predicted_reward": float(pr.mean()), "observed_reward": float(orw.mean()),
                     "reward_mae": float(np.abs(pr - orw).mean()), "questions": len(oa)}
    largest = max(curves) if curves else None
    return {"fit_samples": fit_samples, "alpha": alpha, "questions": len(questions), "curves": curves,
            "largest_checked_n": largest,
            "accuracy_mae_at_largest_n": curves[largest]["accuracy_mae"] if largest else None}
