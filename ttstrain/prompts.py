"""Prompt formatting for solving a problem in the project's step format, shared by every stage.

A prompt is zero or more worked examples followed by the question; each example is
`Problem:` / question / `Solution:` / newline-separated steps, closed by a blank line (the
step contract's SOLUTION_END), so a few-shot prompted base model writes one step per line and
ends its solution with a blank line. The default world's policy was trained on the zero-shot
form and ends with its end-of-sequence token.

    >>> format_prompt("Start with 3.\\n1. Add 4.\\nWhat is the result?")
    'Problem:\\nStart with 3.\\n1. Add 4.\\nWhat is the result?\\nSolution:\\n'
"""

from __future__ import annotations

from ttstrain.steps import SOLUTION_END, join_steps, split_steps


QUESTION_HEAD, SOLUTION_HEAD = "Problem:\n", "\nSolution:\n"


def format_example(question: str, solution: str) -> str:
    return f"{QUESTION_HEAD}{question.strip()}{SOLUTION_HEAD}{join_steps(split_steps(solution))}{SOLUTION_END}"


def format_prompt(question: str, few_shot: list[tuple[str, str]] | None = None) -> str:
    """The prompt for `question`, after the (question, solution) examples in `few_shot`."""
    shots = "".join(format_example(q, s) for q, s in (few_shot or []))
    return f"{shots}{QUESTION_HEAD}{question.strip()}{SOLUTION_HEAD}"


def question_from_prompt(prompt: str) -> str:
    """Inverse of `format_prompt`: the question of its last problem (after any worked examples)."""
    head = prompt.rfind(QUESTION_HEAD)
    if head < 0 or not prompt.endswith(SOLUTION_HEAD):
        raise ValueError("expected a prompt made by ttstrain.prompts.format_prompt "
                         f"('Problem:' ... 'Solution:'), got {prompt[-80:]!r}")
    return prompt[head + len(QUESTION_HEAD):-len(SOLUTION_HEAD)]


def gsm8k_solution_to_steps(solution: str) -> str:
    """A GSM8K worked answer in the step format: calculator annotations dropped, `#### X` boxed."""
    import re

    lines = [re.sub(r"<<[^>]*>>", "", line).strip() for line in solution.strip().split("\n")]
    steps = [line for line in lines if line and not line.startswith("####")]
    final = solution.rsplit("####", 1)[-1].strip().replace(",", "")
    return join_steps(steps + [f"The answer is \\boxed{{{final}}}."])


def few_shot_examples(source: str, k: int, seed: int = 0, data_dir=None) -> list[tuple[str, str]]:
    """k worked (question, solution) examples in the step format from a training pool.

    source: "gsm8k" (GSM8K train, annotations removed) or "arith" (the default world's train pool).
    """
    import random

    from ttstrain.problems import load_problems

    if k <= 0:
        return []
    if source == "gsm8k":
        pool = load_problems("gsm8k", "train", data_dir=data_dir)
        picks = random.Random(seed).sample(pool, k)
        return [(p["question"], gsm8k_solution_to_steps(p["solution"])) for p in picks]
    if source == "arith":
        pool = load_problems("arith", "train", per_level=max(1, k), seed=seed)
        picks = random.Random(seed).sample(pool, k)
        return [(p["question"], p["solution"]) for p in picks]
    raise ValueError(f"no few-shot pool for {source!r}; use 'gsm8k' or 'arith', or few_shot=0")
