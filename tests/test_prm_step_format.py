"""The PRM side reads steps in the run's step format: a PRM trained on paragraph steps records them, is
scored at paragraph step ends (ProcessBench included), and refuses rows written in another format, naming both."""

from __future__ import annotations

import json

import pytest

from ttstrain.io import write_json, write_parquet
from ttstrain.prm.data import rows_prompt_format
from ttstrain.prm.checkpoint import PRM_CONFIG_KEY
from ttstrain.prompts import PromptFormat, format_prompt
from ttstrain.prm.scoring import PRMScorer
from ttstrain.steps import LINE, PARAGRAPH, step_end_positions
from ttstrain.world.task import problems_split

from test_prm_trainer import train_prm_cli

PARAGRAPHS = PromptFormat("plain", steps=PARAGRAPH).record()
LINES = PromptFormat("plain", steps=LINE).record()


def paragraph_rows(per_level: int = 2) -> list[dict]:
    """Label-mc rows whose steps are paragraphs of two lines each (a newline inside, a blank line between)."""
    rows = []
    for p in problems_split("train", per_level, seed=0):
        lines = LINE.split(p["solution"])
        steps = ["\n".join(lines[i:i + 2]) for i in range(0, len(lines), 2)]
        rows.append(dict(prompt=format_prompt(p["question"]), completions=steps,
                         labels=[0.75] * (len(steps) - 1) + [1.0], problem_id=p["id"], sample_index=0,
                         final_correct=True))
    return rows


def labelled(path, rows, prompt_format):
    write_parquet(path / "data" / "train-00000-of-00001.parquet", rows)
    write_json(path / "config.json", {"prompt_format": prompt_format})
    return path


@pytest.fixture(scope="module")
def paragraph_prm(tmp_path_factory, base_dir):
    from ttstrain.stages.train_prm import run_train_prm

    root = tmp_path_factory.mktemp("paragraph")
    rows = paragraph_rows()
    data = labelled(root / "labels", rows, PARAGRAPHS)
    trainer = run_train_prm(train_prm_cli(base_dir, data, root / "prm", max_steps=2, validation_fraction=0.0,
                                          save_strategy="no", report_to="none"))
    return root, trainer, rows


def test_a_paragraph_prm_records_its_format_and_is_scored_at_paragraph_ends(paragraph_prm):
    root, trainer, rows = paragraph_prm
    meta = json.loads((root / "prm" / "config.json").read_text())[PRM_CONFIG_KEY]
    assert meta["prompt_format"]["step_format"] == PARAGRAPH.record() and meta["step_separator"] == "\n\n"
    prm = PRMScorer.from_pretrained(root / "prm")
    assert prm.prompt_format.steps == PARAGRAPH and prm.layout.steps == PARAGRAPH
    tok = prm.tokenizer
    for row, trained in zip(rows, trainer.train_dataset["label_positions"]):
        prompt, steps = row["prompt"], row["completions"]
        st = prm.tokenize(prompt, steps)
        assert st.input_ids == tok(prompt + "\n\n".join(steps))["input_ids"]
        assert st.step_end_positions == step_end_positions(tok, prompt, steps, fmt=PARAGRAPH).step_end_positions
        assert st.step_end_positions == trained  # where training put the labels
        assert [tok.decode([st.input_ids[p]]) for p in st.step_end_positions] == [s[-1] for s in steps]
        with pytest.raises(ValueError, match="contains the step separator"):
            step_end_positions(tok, prompt, steps)  # one step a line cannot even read these steps
    scores = prm.score([r["prompt"] for r in rows], [r["completions"] for r in rows])
    assert [len(s) for s in scores] == [len(r["completions"]) for r in rows]


def test_processbench_steps_are_flattened_in_the_prms_format(paragraph_prm):
    from ttstrain.prm.evaluation import processbench_f1

    root, _, _ = paragraph_prm
    prm = PRMScorer.from_pretrained(root / "prm")
    seen = []
    score = prm.score
    prm.score = lambda prompts, steps, *a: seen.extend(steps) or score(prompts, steps, *a)
    records = [{"id": "a", "problem": "Start with 2.\n1. Add 3.\nWhat is the result?",
                "steps": ["2 + 3 = 5\nso 5", "First part.\n\nSecond part.", "The answer is \\boxed{5}."], "label": -1}]
    assert processbench_f1(prm, records, 0.5)["records"] == 1
    assert seen == [["2 + 3 = 5\nso 5", "First part.\nSecond part.", "The answer is \\boxed{5}."]]


def test_rows_and_samples_in_another_step_format_are_refused_naming_both(paragraph_prm, base_dir):
    from ttstrain.stages.eval_prm import EvalPRMConfig, run_eval_prm
    from ttstrain.stages.train_prm import run_train_prm

    root, _, rows = paragraph_prm
    prm_path = str(root / "prm")
    samples = [{"problem_id": r["problem_id"], "sample_index": j, "prompt": r["prompt"], "steps": r["completions"],
                "answer": "1", "correct": j == 0, "level": 1} for r in rows for j in range(2)]
    for name, record in (("para_samples", PARAGRAPHS), ("line_samples", LINES)):
        write_parquet(root / name / "samples.parquet", samples)
        write_json(root / name / "config.json", {"prompt_format": record})
    # the same format: evaluated, labels and samples alike
    result = run_eval_prm(EvalPRMConfig(prm_path=prm_path, samples=str(root / "para_samples"), budgets=[1, 2],
                                        labels=str(root / "labels"), labels_split="all", output_dir=str(root / "e")))
    assert result["heldout"]["steps"] == sum(len(r["completions"]) for r in rows)
    # another one: refused, naming both
    with pytest.raises(ValueError, match="step formats differ") as err:
        run_eval_prm(EvalPRMConfig(prm_path=prm_path, samples=str(root / "line_samples"), output_dir=str(root / "x")))
    assert f"the samples {root / 'line_samples'} has steps separated by '\\n'" in str(err.value)
    assert f"the PRM {prm_path} has steps separated by '\\n\\n'" in str(err.value)
    line_labels = labelled(root / "line_labels", rows[:1], LINES)
    with pytest.raises(ValueError, match="step formats differ: the labels .*line_labels has steps separated by '\\\\n'"):
        run_eval_prm(EvalPRMConfig(prm_path=prm_path, labels=str(line_labels), labels_split="all",
                                   output_dir=str(root / "y")))
    with pytest.raises(ValueError, match="trained on steps separated by '\\\\n\\\\n'"):
        PRMScorer.from_pretrained(prm_path, step_separator="line")
    # training on rows recorded in one format with another one asked for
    with pytest.raises(ValueError, match="the PRM dataset has steps separated by '\\\\n\\\\n'.*--step_separator line"):
        run_train_prm(train_prm_cli(base_dir, root / "labels", root / "z", max_steps=1, validation_fraction=0.0,
                                    save_strategy="no", report_to="none", step_separator="line"))


def test_rows_without_a_record_are_line_unless_the_config_says_otherwise():
    assert rows_prompt_format(None) == LINES
    assert rows_prompt_format(None, "paragraph") == PARAGRAPHS
    assert rows_prompt_format(None, "\\n\\n") == PARAGRAPHS
    old = {"kind": "plain", "examples": [], "system_prompt": None}  # written before step formats: LINE
    assert rows_prompt_format(old) == LINES and rows_prompt_format(PARAGRAPHS) == PARAGRAPHS
    assert rows_prompt_format(PARAGRAPHS, "paragraph", "eos") == PARAGRAPHS
