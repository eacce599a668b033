"""Converters on the shared PRM800K / Math-Shepherd fixtures, and the export TRL's trainer reads."""

from __future__ import annotations

import gzip
import json

import pytest

from ttstrain.converters import (convert_rows, from_math_shepherd, from_prm800k, from_trl_stepwise,
                                 to_trl_stepwise_hard)
from ttstrain.io import read_parquet
from ttstrain.paths import data_dir


def _jsonl_gz(rel):
    with gzip.open(data_dir() / rel, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_math_shepherd_fixture():
    rows = _jsonl_gz("math_shepherd/samples_math-shepherd.jsonl.gz")
    out = convert_rows("math_shepherd", rows)
    assert len(out) == 7
    first = from_math_shepherd(rows[0])
    assert first["question"].startswith("Janet pays $40/hour")
    # normalised by default: no "Step k:" prefix, no <<...>> calculator annotation (GSM8K-style policies write neither)
    assert first["completions"][0].startswith("Janet spends 3 hours + 5 hours")
    raw_first = from_math_shepherd(rows[0], normalize=False)
    assert raw_first["completions"][0].startswith("Step 1: Janet spends 3 hours + 5 hours")
    assert raw_first["labels"] == first["labels"]
    assert not any("<<" in c or c.startswith("Step ") for r in out for c in r["completions"])
    assert any("<<" in c for r in convert_rows("math_shepherd", rows, normalize=False) for c in r["completions"])
    # the fixture marks steps 1-4 "+" and the final step (wrong answer 13520) "-"
    assert len(first["completions"]) == 5 and first["labels"] == [1.0, 1.0, 1.0, 1.0, 0.0]
    assert first["final_correct"] is False
    # the labels follow the +/- marks of the label text exactly
    for raw, conv in zip(rows, out):
        assert len(conv["labels"]) == raw["input"].count("ки")
        expected_neg = sum(1 for step in raw["label"].split("\n") if step.rstrip().endswith("-"))
        assert conv["labels"].count(0.0) == expected_neg
    assert any(0.0 in r["labels"] for r in out), "the fixture has negative steps"


def test_prm800k_fixture():
    rows = _jsonl_gz("prm800k/samples_prm800k.jsonl.gz")
    first = from_prm800k(rows[0])
    assert first["question"].startswith("Three pencils and a jumbo eraser")
    # step 2 had no chosen completion, a human one was written instead (trusted, positive)
    assert first["completions"][1] == "We have $3p+e=1.24$ and $5p+e=1.82$."
    assert first["labels"][:2] == [1.0, 1.0]
    out = convert_rows("prm800k", rows)
    assert 1 <= len(out) <= 6
    for r in out:
        # a converted solution stops at its first negative step
        assert 0.0 not in r["labels"][:-1]
        assert r["question"] and len(r["completions"]) == len(r["labels"])


def test_prm800k_stepwise_critic_parquet():
    rows = read_parquet(data_dir() / "prm800k/phase1_test.stepwise-critic.parquet")[:200]
    out = convert_rows("prm800k_stepwise_critic", rows)
    rated = [r for r in rows if r["rating"] is not None]
    assert len(out) == len(rated)
    for raw, conv in zip(rated, out):
        assert conv["labels"][-1] == (1.0 if raw["rating"] >= 0 else 0.0)  # 1 and 0 positive, -1 negative
        assert len(conv["completions"]) == len(raw["responses"]) + 1


def test_trl_roundtrip_and_hard_export():
    trl_row = {"prompt": "Which is larger, 9.8 or 9.11?", "completions": ["9.11 is larger.", "So 9.11."],
               "labels": [False, False]}
    ours = from_trl_stepwise(trl_row)
    assert ours["labels"] == [0.0, 0.0] and ours["final_correct"] is False
    soft = {**ours, "labels": [0.625, 0.25]}
    assert to_trl_stepwise_hard(soft)["labels"] == [True, False]
    assert to_trl_stepwise_hard(soft, threshold=0.7)["labels"] == [False, False]


def test_bad_rows_name_the_row():
    with pytest.raises(ValueError, match="math_shepherd input, row 2: .*Step 1"):
        convert_rows("math_shepherd", [{"input": "Q Step 1: a ки", "label": "Q Step 1: a +"}, {"input": "no steps", "label": ""}])
    with pytest.raises(ValueError, match="unknown format"):
        convert_rows("nope", [])


def test_math_shepherd_step_normalisation():
    from ttstrain.converters import normalize_math_shepherd_step

    assert normalize_math_shepherd_step("Step 2: She earns 40*8=<<40*8=320>>320.") == "She earns 40*8=320."
    assert normalize_math_shepherd_step("Step 12:The answer is: 5") == "The answer is: 5"
    assert normalize_math_shepherd_step("No prefix <<a>> here") == "No prefix  here"
