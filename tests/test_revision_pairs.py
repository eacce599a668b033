"""Revision pairing rules on a hand-made pool, prompt formatting, and the resumable stage."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from ttstrain.generation.scripted import ScriptedGenerator
from ttstrain.revisions.pairs import (build_revision_rows, closest_by_edit_distance, fit_revision_prompt,
                                     format_revision_prompt)
from ttstrain.runner.shards import load_dataset_dir
from ttstrain.stages.build_revisions import BuildRevisionsConfig, run_build_revisions

PROBLEM = {"id": "q1", "question": "Start with 5.\n1. Add 7.\nWhat is the result?", "answer": "12", "level": 1}


def _sample(i, text, answer, correct):
    return {"sample_index": i, "completion": text, "answer": answer, "correct": correct}


POOL = [
    _sample(0, "5 + 7 = 12\nThe answer is \\boxed{12}.", "12", True),
    _sample(1, "5 + 7 = 13\nThe answer is \\boxed{13}.", "13", False),        # distance 2 from the target
    _sample(2, "5 * 7 = 35\nThe answer is \\boxed{35}.", "35", False),
    _sample(3, "5 - 7 = 2\nThe answer is \\boxed{2}.", "2", False),
    _sample(4, "12", None, False),                                           # no answer: never used
    _sample(5, "5 + 7 = 12\nThe answer is \\boxed{12}.", "12", True),
    _sample(6, "7 + 5 = 99\nThe answer is \\boxed{99}.", "99", False),
    _sample(7, "5 + 8 = 13\nThe answer is \\boxed{13}.", "13", False),
]


def test_pairing_rules():
    ks = Counter()
    for seed in range(400):
        rows, stats = build_revision_rows(PROBLEM, POOL, random.Random(seed))
        assert len(rows) == 2 and stats["correct"] == 2 and stats["incorrect"] == 5
        for r in rows:
            ks[r["k"]] += 1
            assert 0 <= r["k"] <= 4 and len(r["previous_attempts"]) == r["k"]
            assert all(a != "12" for a in r["previous_answers"]), "no correct answer in context"
            assert 4 not in r["attempt_sample_indices"], "answerless samples are never attempts"
            assert len(set(r["attempt_sample_indices"])) == r["k"]
            if r["k"]:
                assert r["attempt_sample_indices"][-1] == 1, "the closest incorrect answer comes last"
                assert r["closest_edit_distance"] == 2
            else:
                assert r["closest_edit_distance"] is None
    assert set(ks) == {0, 1, 2, 3, 4}
    assert all(abs(ks[k] / 800 - 0.2) < 0.06 for k in range(5)), ks


def test_k_is_truncated_by_available_incorrect_answers():
    pool = POOL[:2] + [POOL[5]]  # two correct, one incorrect
    ks = Counter(r["k"] for s in range(300) for r in build_revision_rows(PROBLEM, pool, random.Random(s))[0])
    assert set(ks) == {0, 1} and abs(ks[0] / 600 - 0.5) < 0.08
    rows, stats = build_revision_rows(PROBLEM, [POOL[1], POOL[2]], random.Random(0))
    assert rows == [] and stats["questions_without_correct"] == 1
    rows, stats = build_revision_rows(PROBLEM, [POOL[0]], random.Random(0))
    assert rows[0]["k"] == 0 and stats["questions_without_incorrect"] == 1


def test_max_rows_keeps_at_most_that_many_correct_targets_of_a_question():
    right = [_sample(10 + i, f"5 + 7 = 12\nThe answer is \\boxed{{12}}.{' ' * i}", "12", True) for i in range(6)]
    pool = POOL + right  # 8 correct answers, 5 wrong ones
    uncapped, _ = build_revision_rows(PROBLEM, pool, random.Random(3))
    assert uncapped == build_revision_rows(PROBLEM, pool, random.Random(3), max_rows=None)[0]
    assert len(uncapped) == 8
    targets = Counter()
    for seed in range(200):
        rows, stats = build_revision_rows(PROBLEM, pool, random.Random(seed), max_rows=3)
        assert len(rows) == 3 and stats["targets_left_out"] == 5 and stats["rows"] == 3
        assert len({r["target_sample_index"] for r in rows}) == 3
        assert all(r["target"].startswith("5 + 7 = 12") for r in rows)
        targets.update(r["target_sample_index"] for r in rows)
    assert set(targets) == {0, 5} | {10 + i for i in range(6)}  # any correct answer can be kept
    # a question with fewer correct answers than the cap keeps them all
    assert len(build_revision_rows(PROBLEM, POOL, random.Random(0), max_rows=3)[0]) == 2


def test_closest_by_character_edit_distance():
    assert closest_by_edit_distance("abcd", ["abxd", "abcf", "zzzz"]) == (0, 1)  # ties: the first
    assert closest_by_edit_distance("hello", ["yellowish", "help"]) == (1, 2)


def test_revision_prompt_keeps_the_last_four_attempts(char_tokenizer):
    attempts = [f"attempt number {i}" for i in range(6)]
    text = format_revision_prompt(PROBLEM["question"], attempts)
    assert "attempt number 0" not in text and "attempt number 1" not in text
    assert all(f"attempt number {i}" in text for i in range(2, 6))
    assert text.index("attempt number 5") > text.index("attempt number 2")
    assert text.startswith("Previous attempt:\n") and text.count("Previous attempt:\n") == 4
    # the question comes last, exactly as the plain prompt writes it, so the solution follows it directly
    assert text.endswith(format_revision_prompt(PROBLEM["question"], []))
    assert format_revision_prompt(PROBLEM["question"], []) == "Problem:\n" + PROBLEM["question"] + "\nSolution:\n"
    assert format_revision_prompt(PROBLEM["question"], attempts, tokenizer=char_tokenizer) == text  # no template


def test_prompt_that_would_overflow_the_context_drops_its_oldest_attempts(char_tokenizer):
    attempts = ["a" * 100, "b" * 100, "c" * 100]
    full = format_revision_prompt(PROBLEM["question"], attempts)
    n = len(char_tokenizer(full, add_special_tokens=False)["input_ids"])  # one token per character
    assert fit_revision_prompt(PROBLEM["question"], attempts, char_tokenizer, max_tokens=n) == full
    fitted = fit_revision_prompt(PROBLEM["question"], attempts, char_tokenizer, max_tokens=n - 1)
    assert fitted == format_revision_prompt(PROBLEM["question"], attempts[1:])
    # nothing fits: the bare question prompt, never a cut question
    assert fit_revision_prompt(PROBLEM["question"], attempts, char_tokenizer, max_tokens=5) == \
        format_revision_prompt(PROBLEM["question"], [])
    assert fit_revision_prompt(PROBLEM["question"], attempts) == full  # no tokenizer, no limit


def test_revision_prompt_with_chat_template(char_tokenizer):
    import copy

    tok = copy.deepcopy(char_tokenizer)
    tok.chat_template = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
                         "{% if add_generation_prompt %}<assistant>{% endif %}")
    text = format_revision_prompt("Q?", ["a1", "a2"], tokenizer=tok)
    assert text == ("<user>Q?<assistant>a1<user>That answer may be wrong. Please try again."
                    "<assistant>a2<user>That answer may be wrong. Please try again.<assistant>")


def test_stage_is_reproducible_and_resumable(tmp_path):
    def script(prompt, j, params):
        return ["2 + 3 = 5\nThe answer is \\boxed{5}.", "2 + 3 = 6\nThe answer is \\boxed{6}.",
                "2 * 3 = 6\nThe answer is \\boxed{6}.", "oops"][j % 4]

    problems = tmp_path / "p.jsonl"
    problems.write_text("\n".join('{"id": "p%d", "question": "Start with 2.\\n1. Add 3.\\nWhat is the result?", '
                                  '"answer": "%s"}' % (i, "5" if i % 2 else "6") for i in range(5)))
    kw = dict(problems=str(problems), split=None, per_level=None, num_samples=8, problems_per_chunk=2, seed=1)
    a = run_build_revisions(BuildRevisionsConfig(output_dir=str(tmp_path / "a"), **kw), ScriptedGenerator(script), False)
    b = run_build_revisions(BuildRevisionsConfig(output_dir=str(tmp_path / "b"), **kw), ScriptedGenerator(script), False)
    assert load_dataset_dir(tmp_path / "a").to_list() == load_dataset_dir(tmp_path / "b").to_list()
    assert a["rows"] > 0 and sum(a["k_histogram"].values()) == a["rows"]
    assert a["samples_dropped_no_answer"] == 5 * 2


def _right_or_off_by_one(prompt, j, params):
    return ["2 + 3 = 5\nThe answer is \\boxed{5}.", "2 + 3 = 6\nThe answer is \\boxed{6}."][j % 2]


def _four_problems(tmp_path, **kw) -> dict:
    """BuildRevisionsConfig fields for four copies of one problem (answer 5), output in tmp_path/r."""
    problems = tmp_path / "p.jsonl"
    problems.write_text("\n".join('{"id": "p%d", "question": "Start with 2.\\n1. Add 3.\\nWhat is the result?", '
                                  '"answer": "5"}' % i for i in range(4)))
    return dict(output_dir=str(tmp_path / "r"), problems=str(problems), split=None, per_level=None, seed=1, **kw)


def test_merge_only_checks_the_config_and_sharded_runs_record_it(tmp_path):
    script = _right_or_off_by_one
    kw = _four_problems(tmp_path, num_samples=4, problems_per_chunk=1)
    for i in range(2):
        run_build_revisions(BuildRevisionsConfig(shard=f"{i}/2", **kw), ScriptedGenerator(script), False)
    before = sorted(p.read_bytes() for p in (tmp_path / "r" / "data").glob("*.parquet"))
    with pytest.raises(ValueError, match=r"differs in \['limit'\]"):
        run_build_revisions(BuildRevisionsConfig(merge_only=True, **{**kw, "limit": 1}), progress=False)
    with pytest.raises(ValueError, match=r"differs in \['num_samples'\]"):
        run_build_revisions(BuildRevisionsConfig(merge_only=True, **{**kw, "num_samples": 8}), progress=False)
    assert sorted(p.read_bytes() for p in (tmp_path / "r" / "data").glob("*.parquet")) == before
    assert json.loads((tmp_path / "r" / "config.json").read_text())["shard_configs"] == [
        "config.shard-0-of-2.json", "config.shard-1-of-2.json"]


def test_a_capped_run_is_its_own_config_and_an_older_uncapped_run_still_resumes(tmp_path):
    script = _right_or_off_by_one
    kw = _four_problems(tmp_path, num_samples=8, problems_per_chunk=2)
    full = run_build_revisions(BuildRevisionsConfig(**kw), ScriptedGenerator(script), False)
    assert full["rows"] == 4 * 4
    # a folder written before the option existed records no max_rows_per_question: unset, it resumes
    fingerprint = tmp_path / "r" / "run_fingerprint.json"
    recorded = json.loads(fingerprint.read_text())
    fingerprint.write_text(json.dumps({k: v for k, v in recorded.items() if k != "max_rows_per_question"}))
    assert run_build_revisions(BuildRevisionsConfig(**kw), ScriptedGenerator(script), False)["rows"] == 16
    with pytest.raises(ValueError, match=r"differs in \['max_rows_per_question'\]"):
        run_build_revisions(BuildRevisionsConfig(max_rows_per_question=2, **kw), ScriptedGenerator(script), False)
    capped = run_build_revisions(BuildRevisionsConfig(max_rows_per_question=2, **{**kw, "output_dir": str(tmp_path / "c")}),
                                 ScriptedGenerator(script), False)
    assert capped["rows"] == 4 * 2
