"""How a final answer is picked: among a search's candidates (`SELECTIONS`) and over revision chains.

    select(candidates, "weighted")     # index of the chosen candidate (None: no answer)
    select_over_chains(chains, "hierarchical")   # the chosen (pooled) answer key

Answers pool by equivalence (`ttstrain.answers.pooling`), so `1/2`, `\\dfrac{1}{2}` and `0.5` are
one answer, pooled over the candidates of the one problem being selected for (or over `pool`, a
problem's `AnswerPool`, when the caller passes one). A candidate is anything with `answer` (its
final answer, None if it has none) and `score` (its aggregated verifier score, None if never
scored): `ttstrain.search.base.Candidate`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable, Hashable, Iterable, Mapping, Protocol, Sequence

from ttstrain.answers.pooling import AnswerPool


def weighted_vote(answers: Sequence[Hashable | None], weights: Sequence[float] | None = None) -> Hashable | None:
    """The answer with the largest summed weight (weights=None: majority vote). None answers never win.

    Ties go to the answer seen first, so the result is deterministic for a given sample order.
    Answers count as equal only when they are equal as given: vote over pooled keys
    (`ttstrain.answers.pooling`) so that answers that grade as equal count as one.
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


class Scored(Protocol):
    answer: str | None
    score: float | None


def select_naive(candidates: Sequence[Scored], pool: AnswerPool | None = None) -> int | None:
    """The highest aggregated score (ties: the first); its answer may be None. Counts no answers."""
    if not candidates:
        return None
    return max(range(len(candidates)), key=lambda i: (_score(candidates[i]), -i))


def select_weighted(candidates: Sequence[Scored], pool: AnswerPool | None = None) -> int | None:
    """Best-of-N weighted: the answer with the largest sum of aggregated scores over the
    candidates that reach it (answers pooled by equivalence); returns its best-scored candidate."""
    scores = [_score(c) for c in candidates]
    keys = candidate_keys(candidates, pool)
    return representative(candidates, keys, weighted_vote(keys, scores))


def select_majority(candidates: Sequence[Scored], pool: AnswerPool | None = None) -> int | None:
    """Majority vote over answers pooled by equivalence (no verifier); returns the first candidate
    with the winning answer."""
    keys = candidate_keys(candidates, pool)
    return representative(candidates, keys, weighted_vote(keys), by_score=False)


def candidate_keys(candidates: Sequence[Scored], pool: AnswerPool | None = None) -> list[str | None]:
    """The pooled answer key of each candidate, from `pool` (a fresh one for these candidates if None)."""
    return (AnswerPool() if pool is None else pool).keys([c.answer for c in candidates])


def _score(c: Scored) -> float:
    if c.score is None:
        raise ValueError("this selection needs verifier scores, but a candidate was never scored")
    return c.score


def representative(candidates, keys: Sequence[str | None], key, by_score: bool = True) -> int | None:
    """The candidate standing for pooled answer `key` (`keys`: each candidate's pooled key): its
    best-scored one (ties: the first), or its first when by_score is False; None for no key."""
    if key is None:
        return None
    idx = [i for i, k in enumerate(keys) if k == key]
    return max(idx, key=lambda i: (_score(candidates[i]), -i)) if by_score else idx[0]


SELECTIONS: dict[str, Callable[..., int | None]] = {  # (candidates, pool=None) -> index
    "naive": select_naive, "weighted": select_weighted, "majority": select_majority,
}


def select(candidates: Sequence[Scored], how: str, pool: AnswerPool | None = None) -> int | None:
    if how not in SELECTIONS:
        raise ValueError(f"unknown selection {how!r}; choose from {sorted(SELECTIONS)}")
    return SELECTIONS[how](candidates, pool)


CHAIN_SELECTIONS = ("majority", "weighted", "hierarchical")  # what select_over_chains picks by


def select_over_chains(chains: Sequence[Sequence[Mapping]], selection: str, pool: AnswerPool | None = None):
    """The pooled answer key picked from attempts grouped by chain (Snell et al. App. I).

    majority      the most frequent answer over all attempts of all chains.
    weighted      best-of-N weighted over all attempts at once (sum of `score` per answer).
    hierarchical  best-of-N weighted within each chain, then across chains: each chain votes for
                  its winner with that winner's summed score.

    Answers pool by equivalence over these attempts (`pool`: the problem's `AnswerPool`, whose
    `key` then tells which attempts carry the returned key).
    """
    if selection not in CHAIN_SELECTIONS:
        raise ValueError(f"selection must be one of {CHAIN_SELECTIONS}, got {selection!r}")
    flat = [a for c in chains for a in c]
    if selection != "majority" and not has_verifier_scores(flat):
        raise ValueError(f"selection {selection!r} needs a verifier `score` on every attempt with an answer")
    pool = AnswerPool() if pool is None else pool
    keys = pool.keys([a.get("answer") for a in flat])
    if selection == "majority":
        return weighted_vote(keys)
    if selection == "weighted":
        return weighted_vote(keys, [attempt_weight(a) for a in flat])
    winners, weights = [], []
    for c in chains:
        ck = pool.keys([a.get("answer") for a in c])
        win = weighted_vote(ck, [attempt_weight(a) for a in c])
        if win is not None:
            winners.append(win)
            weights.append(sum(attempt_weight(a) for k, a in zip(ck, c) if k == win))
    return weighted_vote(winners, weights)


def has_verifier_scores(attempts: Iterable[Mapping]) -> bool:
    """Every attempt with an answer has a `score`: one without an answer never wins, so it needs
    none (an empty attempt has no step to score)."""
    return all(a.get("score") is not None for a in attempts if a.get("answer") is not None)


def attempt_weight(attempt: Mapping) -> float:
    """The attempt's verifier score; 0 for an unscored attempt (only unanswered ones may lack a score)."""
    score = attempt.get("score")
    return 0.0 if score is None else float(score)
