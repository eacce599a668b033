"""The step contract: splitting, joining, cutting, and step-end token positions on two tokenizers."""

from __future__ import annotations

import pathlib
import re

import pytest

from ttstrain.prompts import format_prompt
from ttstrain.steps import (SOLUTION_END, STEP_SEPARATOR, cut_at_solution_end, cut_at_step_end, join_steps,
                            prefix_text, split_steps, step_end_positions)
from ttstrain.world.task import problems_split

SOLUTION = "37 + 45 = 82\n82 * 3 = 246\n246 - 12 = 234\nThe answer is \\boxed{234}."


def test_split_join_roundtrip():
    steps = split_steps(SOLUTION)
    assert steps == ["37 + 45 = 82", "82 * 3 = 246", "246 - 12 = 234", "The answer is \\boxed{234}."]
    assert join_steps(steps) == SOLUTION
    assert split_steps("  a \n\n b") == ["a"]  # a blank line ends the solution
    assert split_steps("a\n  \nb") == ["a", "b"]  # a whitespace-only step is dropped, not an end
    with pytest.raises(ValueError, match="step 1 contains the step separator"):
        join_steps(["a", "b\nc"])


def test_cuts_and_prefix():
    assert cut_at_step_end("12 + 3 = 15\n15 * 2") == ("12 + 3 = 15", True)
    assert cut_at_step_end("no separator") == ("no separator", False)
    assert cut_at_solution_end("a\nb\n\nProblem:") == ("a\nb", True)
    assert prefix_text(["a", "b", "c"], 2) == "a" + STEP_SEPARATOR + "b" + STEP_SEPARATOR
    assert prefix_text(["a"], 0) == ""
    assert SOLUTION_END == STEP_SEPARATOR * 2


def _check_positions(tokenizer, prompt, steps):
    st = step_end_positions(tokenizer, prompt, steps)
    enc = tokenizer(prompt + join_steps(steps), return_offsets_mapping=True)
    assert st.input_ids == enc["input_ids"]
    offsets = enc["offset_mapping"]
    assert st.step_end_positions == sorted(set(st.step_end_positions)), "one distinct, increasing position per step"
    char_ends = []
    cursor = len(prompt)
    for step, pos in zip(steps, st.step_end_positions):
        cursor += len(step)
        start, end = offsets[pos]
        assert start <= cursor - 1 < end, "the position's token holds the step's last character"
        # the model at this position has read the whole step
        assert tokenizer.decode(st.input_ids[: pos + 1], skip_special_tokens=True).startswith(
            prompt + join_steps(steps[: len(char_ends) + 1]))
        char_ends.append(cursor - 1)
        cursor += len(STEP_SEPARATOR)
    return st, char_ends


def test_step_end_positions_agree_across_tokenizers(char_tokenizer, merging_tokenizer):
    merged_any = False
    for row in problems_split("test", 3, seed=0):
        prompt, steps = format_prompt(row["question"]), split_steps(row["solution"])
        st_char, ends_char = _check_positions(char_tokenizer, prompt, steps)
        st_bpe, ends_bpe = _check_positions(merging_tokenizer, prompt, steps)
        assert ends_char == ends_bpe, "both tokenizers place every step end on the same character"
        assert len(st_bpe.input_ids) < len(st_char.input_ids)
        # char tokenizer: the position is exactly the last character of the step
        for pos, step in zip(st_char.step_end_positions, steps):
            assert char_tokenizer.decode([st_char.input_ids[pos]]) == step[-1]
        pieces = [merging_tokenizer.decode([i]) for i in st_bpe.input_ids]
        merged_any |= any(STEP_SEPARATOR in p and p != STEP_SEPARATOR for p in pieces)
    assert merged_any, "the BPE tokenizer must merge the newline with neighbours for this test to mean anything"


def test_prompt_length_and_eos(char_tokenizer):
    prompt, steps = "Problem:\nx\nSolution:\n", ["1 + 1 = 2", "The answer is \\boxed{2}."]
    st = step_end_positions(char_tokenizer, prompt, steps, add_eos=True)
    assert st.input_ids[0] == char_tokenizer.bos_token_id
    assert st.prompt_length == 1 + len(prompt)
    assert st.input_ids[-1] == char_tokenizer.eos_token_id
    assert st.step_end_positions == [st.prompt_length + len(steps[0]) - 1, len(st.input_ids) - 2]


def test_no_module_hard_codes_the_separator():
    """Only steps.py defines the separator; stage modules import it instead of writing '\\n' splits."""
    root = pathlib.Path(__file__).resolve().parents[1] / "ttstrain"
    offenders = []
    pattern = re.compile(r"""(split|find|endswith|startswith|rstrip)\(\s*["']\\n""")
    for path in root.rglob("*.py"):
        if path.name == "steps.py":
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line) or '"\\n\\n"' in line:
                offenders.append(f"{path.relative_to(root)}:{lineno}: {line.strip()}")
    allowed = ("world/task.py", "prompts.py", "grading.py", "problems.py")  # question/solution text, not steps
    offenders = [o for o in offenders if not o.startswith(allowed)]
    assert not offenders, "separator hard-coded outside ttstrain/steps.py:\n" + "\n".join(offenders)
