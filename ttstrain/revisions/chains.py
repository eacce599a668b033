"""Sequential revision chains at test time (Snell et al. §6.1, App. I).

A chain of length L is L attempts at one question, each conditioned on the chain's most recent
attempts (at most 4: the context the revision model was trained with). `num_chains` chains per
question run in parallel; every step of every chain of every question is one batched generate
call, with one random stream per chain, so two chains that happen to agree still diverge.

    rows = run_revision_chains(gen, problems, num_chains=4, chain_length=4, temperature=1.0)
    revision_step_accuracy(rows)   # pass@1 at each revision step
    flip_rates(rows)               # how often a correct answer turns wrong at the next revision
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Sequence

from tqdm.auto import tqdm

from ttstrain.generation.base import Generator, SamplingParams
from ttstrain.answers.grading import extract_answer, is_equivalent
from ttstrain.revisions.pairs import MAX_CONTEXT_ATTEMPTS, fit_revision_prompt, prompt_token_limit
from ttstrain.steps import LINE, StepFormat


def run_revision_chains(generator: Generator, problems: Sequence[dict], *, num_chains: int, chain_length: int,
                        temperature: float = 1.0, top_p: float = 1.0, max_new_tokens: int = 320, seed: int = 0,
                        max_attempts: int = MAX_CONTEXT_ATTEMPTS, tokenizer=None, max_prompt_tokens: int | None = None,
                        progress: bool = True, step_format: StepFormat = LINE) -> list[dict]:
    """One row per attempt: problem_id, question, gold, chain, step, prompt (the revision prompt the
    attempt was generated from), completion, answer, correct, num_tokens, prompt_tokens.

    `tokenizer` formats with its chat template if it has one. Prompts longer than
    `max_prompt_tokens` lose their oldest attempts; by default the limit is the generator's context
    (its tokenizer's `model_max_length`) minus `max_new_tokens`. `step_format` says where an attempt ends
    (LINE: at a blank line, as the plain revision layout closes attempts; PARAGRAPH: at end-of-sequence)."""
    history: dict[tuple[int, int], list[str]] = defaultdict(list)
    rows: list[dict] = []
    params = SamplingParams(n=1, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed,
                            step_format=step_format)
    keys = [(p, c) for p in range(len(problems)) for c in range(num_chains)]
    counter = tokenizer or generator.tokenizer
    if max_prompt_tokens is None:
        max_prompt_tokens = prompt_token_limit(counter, max_new_tokens)
    for step in tqdm(range(chain_length), desc="revision chains", disable=not progress):
        prompts = [fit_revision_prompt(problems[p]["question"], history[(p, c)], tokenizer, max_attempts,
                                       max_tokens=max_prompt_tokens, counter=counter) for p, c in keys]
        results = generator.generate(prompts, params, streams=[c for _, c in keys])
        for (p, c), prompt, res in zip(keys, prompts, results):
            comp = res.completions[0]
            answer = extract_answer(comp.text)
            history[(p, c)].append(comp.text)
            rows.append({"problem_id": problems[p]["id"], "level": problems[p].get("level"),
                         "question": problems[p]["question"], "gold": problems[p]["answer"], "chain": c, "step": step,
                         "prompt": prompt, "completion": comp.text, "answer": answer,
                         "correct": bool(answer is not None and is_equivalent(answer, problems[p]["answer"])),
                         "num_tokens": comp.num_tokens, "prompt_tokens": res.prompt_tokens})
    return rows


def revision_step_accuracy(rows: Sequence[dict]) -> dict[int, float]:
    """pass@1 at each revision step (0 = the first attempt), over all chains and questions."""
    by_step: dict[int, list[bool]] = defaultdict(list)
    for r in rows:
        by_step[r["step"]].append(r["correct"])
    return {s: sum(v) / len(v) for s, v in sorted(by_step.items())}


def consecutive_attempts(rows: Iterable[dict]):
    """(attempt, the chain's next attempt) for every step of every chain (rows: problem_id, chain, step)."""
    chains: dict[tuple, dict[int, dict]] = defaultdict(dict)
    for r in rows:
        chains[(r["problem_id"], r["chain"])][r["step"]] = r
    for steps in chains.values():
        for s in sorted(steps)[:-1]:
            yield steps[s], steps[s + 1]


def flip_rates(rows: Sequence[dict]) -> dict[str, float | int]:
    """Correct -> incorrect and incorrect -> correct rates between consecutive attempts of a chain."""
    right_to_wrong = right = wrong_to_right = wrong = 0
    for prev, new in consecutive_attempts(rows):
        if prev["correct"]:
            right += 1
            right_to_wrong += not new["correct"]
        else:
            wrong += 1
            wrong_to_right += new["correct"]
    return {"correct_to_incorrect": right_to_wrong / right if right else float("nan"),
            "incorrect_to_correct": wrong_to_right / wrong if wrong else float("nan"),
            "transitions_from_correct": right, "transitions_from_incorrect": wrong}
