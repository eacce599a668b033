"""Revision trajectories (Snell et al. §6.1, App. H): correct answers paired with wrong attempts.

For every correct sampled answer of a question, draw k uniformly from {0, ..., min(4, #incorrect)};
if k > 0 the context holds k incorrect answers of the same question: k - 1 drawn at random, then,
*last*, the incorrect answer closest to the correct one by character edit distance (so the
model learns to revise an attempt that is nearly right into the right one). The correct answer
is the target. No correct answer is ever in the context.

`format_revision_prompt` is the one place a multi-turn trajectory becomes model input; revision
training and revision inference both call it, with or without a chat template.

    rows, stats = build_revision_rows(problem, samples, rng)
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Sequence

from rapidfuzz.distance import Levenshtein

from ttstrain.prompts import format_prompt
from ttstrain.steps import LINE, SOLUTION_END, StepFormat

MAX_CONTEXT_ATTEMPTS = 4
RETRY_MESSAGE = "That answer may be wrong. Please try again."
ATTEMPT_HEAD = "Previous attempt:\n"


def closest_by_edit_distance(target: str, candidates: Sequence[str]) -> tuple[int, int]:
    """(index, distance) of the candidate with the smallest character edit distance to target (first on ties)."""
    best = min(range(len(candidates)), key=lambda i: (Levenshtein.distance(target, candidates[i]), i))
    return best, Levenshtein.distance(target, candidates[best])


def build_revision_rows(problem: dict, samples: Sequence[dict], rng: random.Random,
                        max_attempts: int = MAX_CONTEXT_ATTEMPTS,
                        max_rows: int | None = None) -> tuple[list[dict], dict]:
    """Revision rows for one question from its graded samples (dicts with completion, answer, correct, sample_index).

    Samples without a parsable answer must have been dropped already (answer is None -> ignored here).
    With `max_rows`, at most that many correct answers (drawn at random, in sample order) become
    targets, so that easy questions, right in most samples, do not fill the SFT data.
    """
    valid = [s for s in samples if s.get("answer") is not None]
    correct = [s for s in valid if s["correct"]]
    wrong = [s for s in valid if not s["correct"]]
    stats = Counter(questions=1, samples=len(samples), samples_valid=len(valid), correct=len(correct), incorrect=len(wrong))
    if not correct:
        stats["questions_without_correct"] += 1
    if not wrong:
        stats["questions_without_incorrect"] += 1
    if max_rows is not None and len(correct) > max_rows:
        stats["targets_left_out"] += len(correct) - max_rows
        keep = set(rng.sample(range(len(correct)), max_rows))
        correct = [c for i, c in enumerate(correct) if i in keep]
    rows = []
    for target in correct:
        k = rng.randint(0, min(max_attempts, len(wrong)))
        stats[f"k={k}"] += 1
        context: list[dict] = []
        distance = None
        if k > 0:
            idx, distance = closest_by_edit_distance(target["completion"], [w["completion"] for w in wrong])
            others = [w for i, w in enumerate(wrong) if i != idx]
            context = rng.sample(others, k - 1) + [wrong[idx]]
        rows.append({
            "problem_id": problem["id"], "question": problem["question"], "gold": problem["answer"],
            "level": problem.get("level"),
            "previous_attempts": [c["completion"] for c in context],
            "previous_answers": [c["answer"] for c in context],
            "attempt_sample_indices": [int(c["sample_index"]) for c in context],
            "target": target["completion"], "target_sample_index": int(target["sample_index"]),
            "k": k, "closest_edit_distance": distance,
        })
    stats["rows"] = len(rows)
    return rows, dict(stats)


def prompt_token_limit(tokenizer, max_new_tokens: int) -> int | None:
    """The longest prompt that leaves `max_new_tokens` of the model's context (its tokenizer's
    `model_max_length`); None when the tokenizer states no real limit (HF's "none" is ~1e30)."""
    context = getattr(tokenizer, "model_max_length", None)
    return context - max_new_tokens if context and max_new_tokens < context < 10**6 else None


def fit_revision_prompt(question: str, previous_attempts: Sequence[str], tokenizer=None,
                        max_attempts: int = MAX_CONTEXT_ATTEMPTS, max_tokens: int | None = None, counter=None) -> str:
    """`format_revision_prompt` with the oldest attempts dropped until the prompt is at most
    `max_tokens` tokens as `counter` (default: `tokenizer`) counts them: the model's context minus
    room for the answer. No limit without a counter and `max_tokens`; the question is never cut."""
    counter = counter or tokenizer
    attempts = list(previous_attempts)[-max_attempts:] if max_attempts > 0 else []
    while True:
        prompt = format_revision_prompt(question, attempts, tokenizer, max_attempts)
        if not attempts or counter is None or max_tokens is None \
                or len(counter(prompt, add_special_tokens=False)["input_ids"]) <= max_tokens:
            return prompt
        attempts = attempts[1:]


def revision_prompt_record(tokenizer, steps: StepFormat = LINE) -> dict:
    """What `format_revision_prompt` builds with this tokenizer: its chat template (recorded by hash) or
    the plain layout, and the step format of the attempts (where one ends); revision SFT and revision
    chains record it, and chains check it."""
    import hashlib

    template = getattr(tokenizer, "chat_template", None) if tokenizer is not None else None
    if template:
        sha = hashlib.sha256(template.encode()).hexdigest()[:16]
        return {"kind": "chat", "revision": True, "chat_template_sha256": sha, "step_format": steps.record()}
    return {"kind": "plain", "revision": True, "step_format": steps.record()}


def format_revision_prompt(question: str, previous_attempts: Sequence[str], tokenizer=None,
                           max_attempts: int = MAX_CONTEXT_ATTEMPTS) -> str:
    """The model input for a revision: the most recent attempts, then the question, then room for a new one.

    Only the last `max_attempts` attempts are kept (what the model was trained with). With a
    tokenizer that has a chat template, attempts are assistant turns answered by a retry message.
    Otherwise the attempts come first, each closed like a solution, and the prompt ends with
    exactly `format_prompt(question)`: the new solution sits right after its question, as in the
    step format a policy was trained on, so the operands it copies from the question stay as near
    as they always were. (Attempts between question and solution put the question hundreds of
    characters back; the default world's policy could then no longer solve from it, and its
    revision model lost accuracy at every revision: see recipes/default/revision/config_pipeline.yaml.)
    """
    attempts = list(previous_attempts)[-max_attempts:] if max_attempts > 0 else []
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": question}]
        for a in attempts:
            messages += [{"role": "assistant", "content": a}, {"role": "user", "content": RETRY_MESSAGE}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    body = "".join(f"{ATTEMPT_HEAD}{a.strip()}{SOLUTION_END}" for a in attempts)
    return body + format_prompt(question)
