"""What "try a different answer" can buy a revision model, read off the base policy's samples.

Revision rows put only wrong attempts in context (Snell et al. App. H), so a revision model learns
that the right answer is not one it has already seen. At test time the previous attempt is right
as often as the policy is, and excluding its answer pays only where the policy's wrong answers
are concentrated on a few values; where they are spread thin, excluding one of them gains little
and excluding a right one loses everything. Per question, with q_c the share of the base policy's
samples that are right and q_w the share of each distinct wrong answer (no answer counts as one):

    first_attempt            q_c
    exclude_previous         sum_w q_w * q_c / (1 - q_w)   the next attempt is a fresh sample with the
                                                            previous attempt's answer removed
    keep_or_exclude_oracle   q_c + exclude_previous         keep a right answer, exclude a wrong one

A reviser that keeps the previous answer with some probability chosen without knowing whether it
is right scores a mix of the first two; so when exclude_previous < first_attempt, only telling
right attempts from wrong ones (the oracle's edge) can raise pass@1 along a chain. Means are over
questions.

    bounds = revision_answer_bounds(samples)   # dicts with problem_id, answer, correct
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Iterable

NO_ANSWER = object()  # one shared class for samples without a parsable answer


def question_answer_bounds(samples: list[dict]) -> dict[str, float]:
    """The three figures for one question's samples (see the module docstring)."""
    n = len(samples)
    if not n:
        raise ValueError("no samples for the question")
    right = sum(bool(s["correct"]) for s in samples) / n
    wrong_shares = [c / n for c in Counter(NO_ANSWER if s.get("answer") is None else str(s["answer"])
                                           for s in samples if not s["correct"]).values()]
    exclude = right * sum(q / (1 - q) for q in wrong_shares) if right > 0 else 0.0
    return {"first_attempt": right, "exclude_previous": exclude, "keep_or_exclude_oracle": right + exclude}


def revision_answer_bounds(samples: Iterable[dict], problem_ids: set | None = None) -> dict:
    """Means over questions of `question_answer_bounds`, on `problem_ids` only when given."""
    by_question: dict = defaultdict(list)
    for s in samples:
        if problem_ids is None or s["problem_id"] in problem_ids:
            by_question[s["problem_id"]].append(s)
    if not by_question:
        raise ValueError("no base-policy samples for the evaluated problems")
    per_question = [question_answer_bounds(v) for v in by_question.values()]
    means = {k: round(sum(q[k] for q in per_question) / len(per_question), 4) for k in per_question[0]}
    return {**means, "questions": len(per_question),
            "samples_per_question": round(sum(map(len, by_question.values())) / len(by_question), 2)}
