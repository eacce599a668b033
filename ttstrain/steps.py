"""The one step contract: how a solution is cut into steps, everywhere in ttstrain.

A solution is a sequence of steps separated by a single newline (Snell et al. prompt the
policy with newline-separated steps). A solution ends at the tokenizer's end-of-sequence
token or at an empty step (a blank line), which is how few-shot prompted base models end.

Sampling, Monte Carlo labelling, PRM training, PRM scoring and step-level search all import
`STEP_SEPARATOR`, `split_steps`, `join_steps`, `cut_at_step_end` and `step_end_positions`
from here; nothing else in the project hard-codes a separator (tests/test_steps.py checks it).

    >>> split_steps("2 + 3 = 5\\n5 * 4 = 20\\nThe answer is \\\\boxed{20}.")
    ['2 + 3 = 5', '5 * 4 = 20', 'The answer is \\\\boxed{20}.']
"""

from __future__ import annotations

from dataclasses import dataclass

STEP_SEPARATOR = "\n"
# A blank line closes a solution (few-shot prompts separate examples with one).
SOLUTION_END = STEP_SEPARATOR + STEP_SEPARATOR


def split_steps(solution: str) -> list[str]:
    """Steps of a solution: separator-split, stripped of surrounding spaces, empty ones dropped."""
    body = solution.split(SOLUTION_END, 1)[0]
    return [s.strip() for s in body.split(STEP_SEPARATOR) if s.strip()]


def flatten_step(step: str) -> str:
    """One step as one line: the lines of a multi-line step (external data such as ProcessBench)
    joined by spaces, so the step count and indices survive the step contract."""
    return " ".join(part.strip() for part in step.strip().split(STEP_SEPARATOR) if part.strip())


def join_steps(steps: list[str]) -> str:
    """Inverse of `split_steps` for clean steps (no separator inside a step)."""
    for i, step in enumerate(steps):
        if STEP_SEPARATOR in step:
            raise ValueError(f"step {i} contains the step separator {STEP_SEPARATOR!r}: {step!r}")
    return STEP_SEPARATOR.join(steps)


def cut_at_step_end(text: str) -> tuple[str, bool]:
    """Cut a continuation after its first step.

    Returns (step_text_without_separator, saw_separator). Used by step-level generation:
    a backend that generated past the separator (several tokens per call, or a tokenizer that
    merges the newline with the next characters) is cut back to exactly one step.
    """
    idx = text.find(STEP_SEPARATOR)
    if idx < 0:
        return text, False
    return text[:idx], True


def cut_at_solution_end(text: str) -> tuple[str, bool]:
    """Cut a continuation at the end-of-solution marker (blank line)."""
    idx = text.find(SOLUTION_END)
    if idx < 0:
        return text, False
    return text[:idx], True


def prefix_text(steps: list[str], upto: int) -> str:
    """The solution text of steps[:upto], followed by the separator so generation starts a new step."""
    if upto <= 0:
        return ""
    return join_steps(steps[:upto]) + STEP_SEPARATOR


@dataclass
class StepTokens:
    """A tokenized prompt + solution and where each step ends in it.

    input_ids: token ids of prompt + solution, with the tokenizer's special tokens (e.g. <s>).
    step_end_positions: for step i, the index of the token that holds the last character of
        step i. A PRM reads its value for step i at that position, in training and in scoring.
    """

    input_ids: list[int]
    step_end_positions: list[int]
    prompt_length: int


def step_end_positions(tokenizer, prompt: str, steps: list[str], add_eos: bool = False,
                       add_special_tokens: bool = True) -> StepTokens:
    """Tokenize prompt + joined steps once and locate each step's end token.

    The whole text is tokenized in one piece, exactly as the policy generated it, so a
    tokenizer that merges the newline into neighbouring tokens gets the same tokens it would
    see at generation time. Step i's end is the token whose character span contains the last
    character of step i (found from the offset mapping), so the value at that position has
    read the whole step.
    """
    if not steps:
        raise ValueError("a solution needs at least one step")
    solution = join_steps(steps)
    text = prompt + solution
    # special tokens (a leading <s>) as the policy saw them when it generated; their offsets are (0, 0)
    enc = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    offsets = enc["offset_mapping"]
    # character index (in `text`) of the last character of each step
    last_chars = []
    cursor = len(prompt)
    for step in steps:
        cursor += len(step)
        last_chars.append(cursor - 1)
        cursor += len(STEP_SEPARATOR)
    positions = []
    t = 0
    for ch in last_chars:
        while t < len(offsets) and not (offsets[t][0] <= ch < offsets[t][1]):
            t += 1
        if t == len(offsets):
            raise ValueError(f"no token covers character {ch} of {text!r}; does the tokenizer return offsets?")
        positions.append(t)
    prompt_length = 0
    while prompt_length < len(offsets) and offsets[prompt_length][1] <= len(prompt):
        prompt_length += 1
    if add_eos:
        if tokenizer.eos_token_id is None:
            raise ValueError("add_eos=True but the tokenizer has no eos token")
        ids.append(tokenizer.eos_token_id)
    return StepTokens(input_ids=ids, step_end_positions=positions, prompt_length=prompt_length)
