"""How a final answer is picked: among a search's candidates (`SELECTIONS`) and over revision chains.

    select(candidates, "weighted")     # index of the chosen candidate (None: no answer)
    select_over_chains(chains, "hierarchical")   # the chosen answer key

Answers pool by `ttstrain.grading.answer_key` (normalised text), so `\\dfrac{1}{2}` and
`\\frac{1}{2}` are one answer. A candidate is anything with `key` (its answer key) and `score`
(its aggregated verifier score, None if never scored): `ttstrain.search.base.Candidate`.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping, Protocol, Sequence

from ttstrain.grading import answer_key
from ttstrain.metrics import weighted_vote


class Scored(Protocol):
    key: str | None
    score: float | None


def select_naive(candidates: Sequence[Scored]) -> int | None:
    """The highest aggregated score (ties: the first); its answer may be None."""
    if not candidates:
        return None
    return max(range(len(candidates)), key=lambda i: (_score(candidates[i]), -i))


def select_weighted(candidates: Sequence[Scored]) -> int | None:
    """Best-of-N weighted: the answer with the largest sum of aggregated scores over the
    candidates that reach it (answers pooled by `answer_key`); returns its best-scored candidate."""
    return representative(candidates, weighted_vote([c.key for c in candidates], [_score(c) for c in candidates]))


def select_majority(candidates: Sequence[Scored]) -> int | None:
    """Majority vote over answers (no verifier); returns the first candidate with the winning answer."""
    return representative(candidates, weighted_vote([c.key for c in candidates]), by_score=False)


def _score(c: Scored) -> float:
    if c.score is None:
        raise ValueError("this selection needs verifier scores, but a candidate was never scored")
    return c.score


def representative(candidates, key, by_score: bool = True) -> int | None:
    """The candidate standing for answer `key`: its best-scored one (ties: the first), or its first
    when by_score is False; None for no key."""
    if key is None:
        return None
    idx = [i for i, c in enumerate(candidates) if c.key == key]
    return max(idx, key=lambda i: (_score(candidates[i]), -i)) if by_score else idx[0]


SELECTIONS: dict[str, Callable[[Sequence[Scored]], int | None]] = {
    "naive": select_naive, "weighted": select_weighted, "majority": select_majority,
}


def select(candidates: Sequence[Scored], how: str) -> int | None:
    try:
        return SELECTIONS[how](candidates)
    except KeyError:
        raise ValueError(f"unknown selection {how!r}; choose from {sorted(SELECTIONS)}") from None


CHAIN_SELECTIONS = ("majority", "weighted", "hierarchical")  # what select_over_chains picks by


def select_over_chains(chains: Sequence[Sequence[Mapping]], selection: str):
    """The answer key picked from attempts grouped by chain (Snell et al. App. I).

    majority      the most frequent answer over all attempts of all chains.
    weighted      best-of-N weighted over all attempts at once (sum of `score` per answer).
    hierarchical  best-of-N weighted within each chain, then across chains: each chain votes for
                  its winner with that winner's summed score.
    """
    flat = [a for c in chains for a in c]
    keys = [answer_key(a.get("answer")) for a in flat]
    if selection == "majority":
        return weighted_vote(keys)
    if not has_verifier_scores(flat):
        raise ValueError(f"selection {selection!r} needs a verifier `score` on every attempt with an answer")
    if selection == "weighted":
        return weighted_vote(keys, [attempt_weight(a) for a in flat])
    if selection != "hierarchical":
        raise ValueError(f"selection must be one of {CHAIN_SELECTIONS}, got {selection!r}")
    winners, weights = [], []
    for c in chains:
        ck = [answer_key(a.get("answer")) for a in c]
        win = weighted_vote(ck, [attempt_weight(a) for a in c])
        if win is not None:
            winners.append(win)
            weights.append(sum(attempt_weight(a) for k, a in zip(ck, c) if k == win))
    return weighted_vote(winners, weights)


def has_verifier_scores(attempts: Iterable[Mapping]) -> bool:
    """Every attempt with an answer has a `score`: one without an answer never wins, so it needs
    none (an empty attempt has no step to score)."""
    return all(a.get("score") is not None for a in attempts if answer_key(a.get("answer")) is not None)


def attempt_weight(attempt: Mapping) -> float:
    """The attempt's verifier score; 0 for an unscored attempt (only unanswered ones may lack a score)."""
    score = attempt.get("score")
    return 0.0 if score is None else float(score)
