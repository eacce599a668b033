"""What "try a different answer" can buy a revision model, read off the base policy's samples.

Revision rows put only wrong attempts in context (Snell et al. App. H), so a revision model learns
that the right answer is not one it has already seen. At test time the previous attempt is right
as often as the policy is, and excluding its answer pays only where the policy's wrong answers
are concentrated on a few values; where they are spread thin, excluding one of them gains little
and excluding a right one loses everything. Per question, with q_c the share of the base policy's
samples that are right and q_w the share of each distinct wrong answer (answers that grade as equal
are one, `ttstrain.answers.pooling`; no answer counts as one):

    first_attempt            q_c
    exclude_previous         sum_w q_w * q_c / (1 - q_w)   the next attempt is a fresh sample with the
                                                            previous attempt's answer removed
    keep_or_exclude_oracle   q_c + exclude_previous         keep a right answer, exclude a wrong one

A reviser that keeps the previous answer with some probability chosen without knowing whether it
is right scores a mix of the first two; so when exclude_previous < first_attempt, only telling
right attempts from wrong ones (the oracle's edge) can raise pass@1 along a chain. Means are over
questions.

`changed_attempt_check` asks the other half of the question of a trained revision model's chains:
when it does change a wrong answer, is its new attempt as good as a fresh base-policy sample that
avoids the previous answer (q_c / (1 - q_prev) on that question)?

    bounds = revision_answer_bounds(samples)   # dicts with problem_id, answer, correct
    check = changed_attempt_check(chain_rows, samples)
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Iterable

from ttstrain.answers.pooling import AnswerPool
from ttstrain.revisions.chains import consecutive_attempts

NO_ANSWER = object()  # one shared class for samples without a parsable answer


def _answer_class(s: dict, pool: AnswerPool):
    """The sample's answer pooled over its question's answers (`pool`), or NO_ANSWER."""
    return NO_ANSWER if s.get("answer") is None else pool.key(str(s["answer"]))


def _by_question(samples: Iterable[dict], problem_ids: set | None = None) -> dict:
    by_question: dict = defaultdict(list)
    for s in samples:
        if problem_ids is None or s["problem_id"] in problem_ids:
            by_question[s["problem_id"]].append(s)
    return by_question


def _answer_shares(samples: list[dict], pool: AnswerPool | None = None) -> tuple[float, Counter]:
    """The share of right samples, and the share of each wrong answer class (pooled by `pool`, the
    question's; a fresh one if None)."""
    n = len(samples)
    pool = AnswerPool() if pool is None else pool
    wrong = Counter(_answer_class(s, pool) for s in samples if not s["correct"])
    return sum(bool(s["correct"]) for s in samples) / n, Counter({k: c / n for k, c in wrong.items()})


def question_answer_bounds(samples: list[dict]) -> dict[str, float]:
    """The three figures for one question's samples (see the module docstring)."""
    if not samples:
        raise ValueError("no samples for the question")
    right, wrong_shares = _answer_shares(samples)
    exclude = right * sum(q / (1 - q) for q in wrong_shares.values()) if right > 0 else 0.0
    return {"first_attempt": right, "exclude_previous": exclude, "keep_or_exclude_oracle": right + exclude}


def revision_answer_bounds(samples: Iterable[dict], problem_ids: set | None = None) -> dict:
    """Means over questions of `question_answer_bounds`, on `problem_ids` only when given."""
    by_question = _by_question(samples, problem_ids)
    if not by_question:
        raise ValueError("no base-policy samples for the evaluated problems")
    per_question = [question_answer_bounds(v) for v in by_question.values()]
    means = {k: round(sum(q[k] for q in per_question) / len(per_question), 4) for k in per_question[0]}
    return {**means, "questions": len(per_question),
            "samples_per_question": round(sum(map(len, by_question.values())) / len(by_question), 2)}


def changed_attempt_check(chain_rows: Iterable[dict], samples: Iterable[dict]) -> dict:
    """Wrong attempts of revision chains whose next attempt has a different answer: how often that
    next attempt is right, against a fresh base sample with the previous answer excluded
    (q_c / (1 - q_prev) from the base samples of the same question; questions without base samples
    are skipped). Chain rows: problem_id, chain, step, answer, correct."""
    by_question = _by_question(samples)
    pools = {q: AnswerPool() for q in by_question}  # one per question, its base samples pooled first
    shares = {q: _answer_shares(v, pools[q]) for q, v in by_question.items()}
    changed = right = 0
    fresh = 0.0
    for prev, new in consecutive_attempts(chain_rows):
        pool = pools.get(prev["problem_id"])
        if pool is None or prev["correct"] or _answer_class(new, pool) == _answer_class(prev, pool):
            continue
        right_share, wrong_shares = shares[prev["problem_id"]]
        changed += 1
        right += bool(new["correct"])
        fresh += right_share / (1 - wrong_shares.get(_answer_class(prev, pool), 0))
    return {"changed_wrong_attempts": changed,
            "right_after_change": round(right / changed, 4) if changed else None,
            "fresh_sample_excluding_previous": round(fresh / changed, 4) if changed else None}
