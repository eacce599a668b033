"""Warnings about useless data: pass@1 near 0 or 1 after sampling, labels almost all equal after labelling."""

from __future__ import annotations

import json

from ttstrain.data_guards import label_warnings, sample_warnings
from ttstrain.generation.scripted import ScriptedGenerator
from ttstrain.steps import STEP_SEPARATOR


def _rows(correct: list[bool], answer="1"):
    return [{"correct": c, "answer": answer} for c in correct]


def test_sample_warnings_name_what_is_wrong():
    assert "pass@1 is 0.000 over 50 samples" in sample_warnings(_rows([False] * 50))[0]
    assert "almost every sample is right" in sample_warnings(_rows([True] * 50))[0]
    assert sample_warnings(_rows([True, False] * 25)) == []
    no_answer = sample_warnings(_rows([True, False] * 25, answer=None))
    assert len(no_answer) == 1 and "100% of samples have no extractable answer" in no_answer[0]


def test_label_warnings_when_labels_are_nearly_constant():
    flat = [{"labels": [0.0, 0.0, 0.0]} for _ in range(40)]
    assert "100.0% of 120 step labels are 0" in label_warnings(flat)[0]
    mixed = [{"labels": [1.0, 0.5, 0.0]} for _ in range(40)]
    assert label_warnings(mixed) == [] and label_warnings([]) == ["no step was labelled"]


def test_the_stages_record_their_warnings(tmp_path, capsys):
    from ttstrain.stages.label_mc import LabelMCConfig, run_label_mc
    from ttstrain.stages.sample import SampleConfig, run_sample

    wrong = ScriptedGenerator(lambda prompt, j, params: "1 + 1 = 3" + STEP_SEPARATOR + "The answer is \\boxed{3}.")
    summary = run_sample(SampleConfig(output_dir=str(tmp_path / "s"), per_level=1, num_samples=3, seed=1),
                         generator=wrong, progress=False)
    assert summary["accuracy"] == 0.0 and "pass@1 is 0.000 over 15 samples" in summary["warnings"][0]
    assert json.loads((tmp_path / "s" / "summary.json").read_text())["warnings"] == summary["warnings"]
    assert "[sample] WARNING: pass@1 is 0.000" in capsys.readouterr().out
    labels = run_label_mc(LabelMCConfig(output_dir=str(tmp_path / "l"), per_level=1, num_samples=2, num_rollouts=2,
                                        problems_per_chunk=5, seed=1), generator=wrong, progress=False)
    assert "step labels are 0" in labels["warnings"][0]
