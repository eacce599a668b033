"""The step contract: splitting, joining, cutting, and step-end token positions on two tokenizers."""

from __future__ import annotations

import pathlib
import re

import pytest

from ttstrain.prompts import format_prompt
from ttstrain.prompts import PromptFormat, check_same_format, resolve_prompt_format
from ttstrain.steps import (LINE, PARAGRAPH, SOLUTION_END, STEP_SEPARATOR, StepFormat, join_steps, prefix_text,
                            resolve_step_format, split_steps, step_end_positions)
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
    assert LINE.find_stop("P\n", "12 + 3 = 15\n15 * 2", "step") == (len("12 + 3 = 15"), "step_end")
    assert LINE.find_stop("P\n", "no separator", "step") is None
    assert LINE.find_stop("P\n", "a\nb\n\nProblem:", "solution") == (3, "solution_end")
    assert LINE.find_stop("P\n", "a\nb", "solution") is None
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
    allowed = ("world/task.py", "prompts.py", "answers/grading.py", "problems.py")  # question/solution text, not steps
    offenders = [o for o in offenders if not o.startswith(allowed)]
    assert not offenders, "separator hard-coded outside ttstrain/steps.py:\n" + "\n".join(offenders)


def test_line_stops_where_it_always_did():
    """LINE keeps today's rule: a blank line ends the solution even when its first newline is the prompt's,
    and a token holding both a step end and a blank line finishes the solution."""
    assert LINE.find_stop("Solution:\n", "\nProblem: x", "solution") == (0, "solution_end")
    assert LINE.find_stop("Solution:\n", "\n", "step") == (0, "solution_end")
    assert LINE.find_stop("Solution:", "\nx", "solution") is None
    assert LINE.find_stop("P\n", "9 = 9\n\n", "step") == (5, "solution_end")


def test_paragraph_format():
    text = "First, 2 + 3 = 5.\nSo five.\n\n\nThen 5 * 4 = 20.\n\nThe answer is 20."
    assert PARAGRAPH.split(text) == ["First, 2 + 3 = 5.\nSo five.", "Then 5 * 4 = 20.", "The answer is 20."]
    assert PARAGRAPH.join(PARAGRAPH.split(text)).count("\n\n") == 2
    assert PARAGRAPH.prefix(["a", "b"], 1) == "a\n\n"
    # a single newline is inside a step; only the end-of-sequence token ends a solution
    assert PARAGRAPH.find_stop("Q\n\n", "x = 1\ny = 2", "step") is None
    assert PARAGRAPH.find_stop("Q\n\n", "x = 1\ny = 2\n\nz", "step") == (len("x = 1\ny = 2"), "step_end")
    assert PARAGRAPH.find_stop("Q\n\n", "a\n\nb\n\n", "solution") is None
    # the separator is searched in the generated text only (as vLLM searches stop strings)
    assert PARAGRAPH.find_stop("Q\n", "\nx", "step") is None
    assert PARAGRAPH.flatten("a\n\nb\nc") == "a\nb\nc" and LINE.flatten("a\nb") == "a b"
    with pytest.raises(ValueError, match="contains the step separator"):
        PARAGRAPH.join(["a\n\nb"])


def test_step_format_resolution_and_records():
    assert resolve_step_format("auto", "auto", "plain") == LINE
    assert resolve_step_format("auto", "auto", "few_shot") == LINE
    assert resolve_step_format("auto", "auto", "chat") == PARAGRAPH
    assert resolve_step_format("line", "auto", "chat") == LINE
    assert resolve_step_format("\\n\\n", "auto", "plain") == PARAGRAPH  # typed on a command line
    assert resolve_step_format("<step>", "eos", "plain") == StepFormat("<step>", "eos")
    # a typed separator ends by what it holds, whatever the prompt kind; only \n, \t and \\ are escapes
    assert resolve_step_format("\\n", "auto", "chat") == resolve_step_format("line", "auto", "chat") == LINE
    assert resolve_step_format("<step>", "auto", "chat") == StepFormat("<step>", "blank_line")
    assert resolve_step_format(" ки", "eos", "plain").separator == " ки"  # Math-Shepherd's tag, not mojibake
    with pytest.raises(ValueError, match="few-shot prompt closes each worked example"):
        resolve_step_format("paragraph", "auto", "few_shot")
    with pytest.raises(ValueError, match="cannot end the solution"):
        StepFormat("\n\n", "blank_line")
    assert StepFormat.from_record(None) == LINE  # outputs written before step formats
    assert StepFormat.from_record(PARAGRAPH.record()) == PARAGRAPH
    # the prompt format carries it; a consumer reading rows of another step format refuses, naming both
    fmt = resolve_prompt_format("plain", [], None, step_separator="paragraph")
    assert fmt.steps == PARAGRAPH and PromptFormat.from_record(fmt.record()).steps == PARAGRAPH
    check_same_format({"kind": "plain"}, PromptFormat().record(), "old rows", "this PRM")  # missing = LINE
    with pytest.raises(ValueError, match=r"step formats differ: the samples has steps separated by '\\n\\n'.*"
                                         r"the PRM has steps separated by '\\n'"):
        check_same_format(fmt.record(), PromptFormat().record(), "the samples", "the PRM")


def test_paragraph_step_end_positions_on_smollm2(smollm2_tokenizer):
    """Paragraph steps on a real tokenizer that merges the blank line with the text around it."""
    prompt = "Question\n"
    steps = ["First we add.\nSo 5.", "Then multiply: 20.", "The answer is 20."]
    st = step_end_positions(smollm2_tokenizer, prompt, steps, add_special_tokens=False, fmt=PARAGRAPH)
    for step, pos in zip(steps, st.step_end_positions):
        assert smollm2_tokenizer.decode(st.input_ids[: pos + 1]).endswith(step)
        assert "\n\n" not in smollm2_tokenizer.decode([st.input_ids[pos]])


def test_run_fingerprint_counts_the_resolved_step_format(tmp_path):
    """A run folder from before step formats (no step fields in its fingerprint) resumes when the options
    resolve to LINE, as every run then had; a chat run, now paragraphs by default, is refused."""
    from ttstrain.runner.shards import check_or_write_config
    from ttstrain.stages import run_fingerprint
    from ttstrain.stages.sample import SampleConfig

    plain = run_fingerprint(SampleConfig(output_dir=str(tmp_path)))
    assert "step_separator" not in plain and "step_format" not in plain
    assert run_fingerprint(SampleConfig(output_dir=str(tmp_path), step_separator="\\n")) == plain
    old_chat = run_fingerprint(SampleConfig(output_dir=str(tmp_path), prompt_format="chat", step_separator="line"))
    check_or_write_config(tmp_path, old_chat)
    check_or_write_config(tmp_path, run_fingerprint(SampleConfig(output_dir=str(tmp_path), prompt_format="chat",
                                                                 step_separator="line")))
    with pytest.raises(ValueError, match="differs in \\['step_format'\\]"):
        check_or_write_config(tmp_path, run_fingerprint(SampleConfig(output_dir=str(tmp_path), prompt_format="chat")))
