"""Converters on the shared PRM800K / Math-Shepherd samples and on whole files, and the export TRL's trainer reads.

Fixtures (provenance and licence in tests/fixtures/README.md): `math_shepherd_variants.jsonl`, one
hand-written row per layout Math-Shepherd's rows use plus one unreadable row; `prm800k_release.jsonl`,
hand-written rows in the PRM800K release format (openai/prm800k, MIT), phase 1 and phase 2, every
`finish_reason`. The samples under the data directory (the test slices in tests/fixtures/data) are real rows
(openreasoner/openr, MIT; the first 200 rows of the PRM800K stepwise-critic parquet).

Run: python -m pytest tests/test_converters.py -q
"""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path

import pytest

from ttstrain.converters import (ConvertOptions, convert_file, convert_rows, from_math_shepherd, from_prm800k,
                                 from_trl_stepwise, main, summary_path, to_trl_stepwise_hard)
from ttstrain.io import read_parquet
from ttstrain.paths import data_dir
from ttstrain.validation import InputError

FIXTURES = Path(__file__).parent / "fixtures"
MS_VARIANTS = FIXTURES / "math_shepherd_variants.jsonl"
PRM800K_RELEASE = FIXTURES / "prm800k_release.jsonl"


def _jsonl_gz(rel):
    with gzip.open(data_dir() / rel, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_math_shepherd_fixture():
    rows = _jsonl_gz("math_shepherd/samples_math-shepherd.jsonl.gz")
    out, report = convert_rows("math_shepherd", rows)
    assert len(out) == 7 and report.rows_read == 7 and not report.unreadable and not report.left_out
    first = from_math_shepherd(rows[0])
    assert first["question"].startswith("Janet pays $40/hour")
    # normalised by default: no "Step k:" prefix, no <<...>> calculator annotation (GSM8K-style policies write neither)
    assert first["completions"][0].startswith("Janet spends 3 hours + 5 hours")
    raw_first = from_math_shepherd(rows[0], normalize=False)
    assert raw_first["completions"][0].startswith("Step 1: Janet spends 3 hours + 5 hours")
    assert raw_first["labels"] == first["labels"]
    assert not any("<<" in c or c.startswith("Step ") for r in out for c in r["completions"])
    raw, _ = convert_rows("math_shepherd", rows, options=ConvertOptions(keep_math_shepherd_format=True))
    assert any("<<" in c for r in raw for c in r["completions"])
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
    out, report = convert_rows("prm800k", rows)
    # row 5 is a phase-1 solution its labeler gave up on: left out, and counted
    assert len(out) == 5 and report.left_out == {"finish_reason 'give_up'": [5]} and not report.unreadable
    # row 2 (phase 2, found_error): the path ends at the pre-generated step rated -1, not at an alternative
    assert out[1]["completions"][-1].startswith("For the Democrats, there are 5! ways to order them in a line, but")
    assert out[1]["labels"] == [1.0] * 6 + [0.0] and out[1]["final_correct"] is False
    for r in out:
        # a converted solution stops at its first negative step
        assert 0.0 not in r["labels"][:-1]
        assert r["question"] and len(r["completions"]) == len(r["labels"])


def test_prm800k_stepwise_critic_parquet():
    rows = read_parquet(data_dir() / "prm800k/phase1_test.stepwise-critic.parquet")[:200]
    out, report = convert_rows("prm800k_stepwise_critic", rows)
    rated = [r for r in rows if r["rating"] is not None]
    assert len(out) == len(rated) and not report.unreadable
    assert report.left_out == {"rating null (a human-written step)": [i for i, r in enumerate(rows, 1)
                                                                      if r["rating"] is None]}
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
    rows = [{"input": "Q? Step 1: a ки", "label": "Q? Step 1: a +"}, {"input": "no steps", "label": ""}]
    out, report = convert_rows("math_shepherd", rows)
    assert len(out) == 1 and report.unreadable == [{"row": 2, "field": "input", "reason": "has no ки step tag; "
                                                    "expected steps each closed by one"}]
    with pytest.raises(InputError, match="math_shepherd input, row 2, field 'input': has no ки step tag"):
        convert_rows("math_shepherd", rows, options=ConvertOptions(on_bad_row="fail"))
    with pytest.raises(ValueError, match="unknown format"):
        convert_rows("nope", [])
    with pytest.raises(ValueError, match="on_bad_row is 'ignore'; choose from skip, fail"):
        ConvertOptions(on_bad_row="ignore")


def test_math_shepherd_step_normalisation():
    from ttstrain.converters import normalize_math_shepherd_step

    assert normalize_math_shepherd_step("Step 2: She earns 40*8=<<40*8=320>>320.") == "She earns 40*8=320."
    assert normalize_math_shepherd_step("Step 12:The answer is: 5") == "The answer is: 5"
    assert normalize_math_shepherd_step("step 3: So $x=2$.") == "So $x=2$."
    assert normalize_math_shepherd_step("No prefix <<a>> here") == "No prefix  here"


# ------------------------------------------------------------------------- Math-Shepherd: every layout

def _lines(path):
    """{line number: record} of a jsonl file (blank lines skipped, numbers kept)."""
    return {n: json.loads(line) for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1)
            if line.strip()}


MS_EXPECTED = {  # line of math_shepherd_variants.jsonl -> (question, steps as converted, labels)
    1: ("Tom has 3 apples and buys 5 more. How many apples does he have?",
        ["Tom has 3 + 5 = 8 apples.", "The answer is: 8"], [1.0, 1.0]),
    2: ("What is $2^3 + 1$?",  # lower-case "step k:"
        ["We have $2^3 = 8$.", "So $2^3 + 1 = 10$.", "The answer is: 10"], [1.0, 0.0, 0.0]),
    3: ("Simplify $\\frac{6}{8}$. What is the result in lowest terms?",  # no prefix: the question ends at its last '?'
        ["Both 6 and 8 are divisible by 2.", "So $\\frac{6}{8} = \\frac{3}{4}$.", "The answer is: \\frac{3}{4}"],
        [1.0, 1.0, 1.0]),
    5: ("Mr. Rocky sells 4 jugs at $2 each and 3 mugs at $5 each. How much does he earn?",  # stray tag, sign '+'
        ["The jugs earn 4 * 2 = 8 dollars.", "The mugs earn 3 * 5 = 16 dollars.",
         "He earns 8 + 16 = 24 dollars. The answer is: 24"], [1.0, 0.0, 0.0]),
}


@pytest.mark.parametrize("line", sorted(MS_EXPECTED))
def test_math_shepherd_layouts_convert_exactly(line):
    from ttstrain.prompts import format_prompt

    question, steps, labels = MS_EXPECTED[line]
    row = from_math_shepherd(_lines(MS_VARIANTS)[line])
    assert (row["question"], row["completions"], row["labels"]) == (question, steps, labels)
    assert row["prompt"] == format_prompt(question) and row["final_correct"] is (labels[-1] == 1.0)
    raw = from_math_shepherd(_lines(MS_VARIANTS)[line], normalize=False)
    assert raw["labels"] == labels and raw["question"] == question
    if line == 2:
        assert raw["completions"] == ["step 1: We have $2^3 = 8$.", "step 2: So $2^3 + 1 = 10$.",
                                      "step 3: The answer is: 10"]
    if line == 3:
        assert raw["completions"] == steps


def test_math_shepherd_mixed_file_converts_every_readable_row_and_reports_the_other(tmp_path, capsys):
    out = tmp_path / "ms.parquet"
    summary = main(["math_shepherd", str(MS_VARIANTS), str(out)])
    rows = read_parquet(out)
    assert [(r["question"], r["completions"], r["labels"]) for r in rows] == list(MS_EXPECTED.values())
    reason = "has no 'Step 1:' and no '?' before its first ки tag; cannot tell the question from the first step"
    assert summary["unreadable"] == [{"line": 6, "field": "input", "reason": reason}]
    assert (summary["rows_read"], summary["rows_converted"], summary["left_out"]) == (5, 4, {})
    assert json.loads(summary_path(out).read_text()) == summary and summary_path(out).name == "ms.summary.json"
    printed = capsys.readouterr().out
    assert "5 rows read, 4 converted, 0 left out, 1 unreadable and skipped" in printed
    assert f"line 6, field 'input': {reason}" in printed


def test_on_bad_row_fail_names_file_line_and_field_and_leaves_the_old_output(tmp_path):
    out = tmp_path / "ms.parquet"
    out.write_bytes(b"an earlier output")
    with pytest.raises(InputError, match=r"math_shepherd_variants.jsonl, line 6, field 'input': has no 'Step 1:'"):
        main(["math_shepherd", str(MS_VARIANTS), str(out), "--on_bad_row", "fail"])
    assert out.read_bytes() == b"an earlier output" and not summary_path(out).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ms.parquet"]  # no temporary file left either


@pytest.mark.parametrize("row,field,reason", [
    ({"input": "Q? Step 1: a ки\nStep 2: b ки", "label": "Q? Step 1: a +\nStep 2: b ?"}, "label",
     "has '?' where tag 2 of the input is; expected + or -"),
    ({"input": "Q? Step 1: a ки\nStep 2: b ки", "label": "Q? Step 1: a +"}, "label",
     "has 'nothing' where tag 2 of the input is; expected + or -"),
    ({"input": "Q? Step 1: a ки ки", "label": "Q? Step 1: a + +"}, "input",
     "step 2 is empty (two ки tags with nothing between them)"),
    ({"input": "Q? Step 1: a ки\nStep 2: b", "label": "Q? Step 1: a +\nStep 2: b"}, "input",
     "text after the last ки tag has no label: 'Step 2: b'"),
    ({"input": "Step 1: a ки", "label": "Step 1: a +"}, "input", "has no question before its first step"),
    ({"input": 3, "label": "x"}, "input", "is int 3; expected a string"),
    ({"label": "Q? a +"}, "input", "has no field 'input' (math_shepherd format)"),
])
def test_math_shepherd_unreadable_rows_say_why(row, field, reason):
    good = _lines(MS_VARIANTS)[1]
    out, report = convert_rows("math_shepherd", [good, row])
    assert len(out) == 1 and report.unreadable == [{"row": 2, "field": field, "reason": reason}]


def test_broken_json_lines_are_skipped_and_reported_or_stop_the_run(tmp_path):
    good = json.dumps(_lines(MS_VARIANTS)[1], ensure_ascii=False)
    src = tmp_path / "in.jsonl"
    src.write_text(good + "\n{\"input\": \"Q\",\n\n" + good + "\n", encoding="utf-8")
    rows, report = convert_file("math_shepherd", src)
    assert len(rows) == 2 and [r["sample_index"] for r in rows] == [0, 1]
    assert report.unreadable == [{"line": 2, "field": None, "reason": "not valid JSON (Expecting property name "
                                                                       "enclosed in double quotes at column 15)"}]
    with pytest.raises(InputError, match=r"in.jsonl, line 2: not valid JSON"):
        convert_file("math_shepherd", src, ConvertOptions(on_bad_row="fail"))


def test_a_file_with_no_readable_row_is_an_error_that_says_why(tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_text(json.dumps({"input": "Compute 2 + 2. 4 ки", "label": "Compute 2 + 2. 4 +"}) + "\n")
    with pytest.raises(InputError, match=r"bad.jsonl: none of its 1 rows could be converted \(math_shepherd format\): "
                                         r"line 1, field 'input': has no 'Step 1:'"):
        main(["math_shepherd", str(src), str(tmp_path / "out.parquet")])
    assert not (tmp_path / "out.parquet").exists()


# ------------------------------------------------------------------------- PRM800K: the release format

PRM800K_EXPECTED = {  # line of prm800k_release.jsonl -> (problem, followed path, labels, final_correct)
    1: ("What is $3 \\cdot 4 + 5$?",  # phase 1: neutral chosen step, human step, chosen index 2
        ["First we multiply: $3 \\cdot 4 = 12$.", "Let's double-check the order of operations.",
         "Adding, $12 + 5 = 17$.", "So the answer is 17. # Answer 17"], [1.0, 1.0, 1.0, 1.0], True),
    3: ("What is the sum of the positive divisors of 12?",  # phase 2, found_error: ends at the -1 pre-generated step
        ["The divisors of 12 are 1, 2, 3, 4, 6 and 12.", "I could list them in order.",
         "Their sum is $1 + 2 + 3 + 4 + 6 + 12 = 27$."], [1.0, 1.0, 0.0], False),
    4: ("Compute $2^5$.",  # phase 2 quality-control row, solution, a neutral step
        ["We need $2^5$.", "Note that $2^5 = 2 \\cdot 2^4$.", "$2^5 = 32$. # Answer 32"], [1.0, 1.0, 1.0], True),
    6: ("What is $10 - 7$?", ["$10 - 7 = 3$. # Answer 3"], [1.0], True),  # screening row
}


def test_prm800k_release_rows_convert_exactly_and_unfinished_ones_are_counted(tmp_path, capsys):
    out = tmp_path / "prm.parquet"
    summary = main(["prm800k", str(PRM800K_RELEASE), str(out)])
    rows = read_parquet(out)
    assert [(r["question"], r["completions"], r["labels"], r["final_correct"]) for r in rows] == \
        list(PRM800K_EXPECTED.values())
    assert [r["gold"] for r in rows] == ["17", "28", "32", None]
    assert summary["left_out"] == {"finish_reason 'give_up'": [2], "finish_reason 'bad_problem'": [5]}
    assert (summary["rows_read"], summary["rows_converted"], summary["unreadable"]) == (6, 4, [])
    printed = capsys.readouterr().out
    assert "left out (finish_reason 'give_up'): 1 (line 2)" in printed
    assert "left out (finish_reason 'bad_problem'): 1 (line 5)" in printed


def test_prm800k_neutral_ratings_follow_the_option():
    records = list(_lines(PRM800K_RELEASE).values())
    rows, _ = convert_rows("prm800k", records, options=ConvertOptions(prm800k_neutral="negative"))
    # TRL's convention (rating == 1): the 0-rated steps are negative, the path and final_correct do not change
    assert [r["labels"] for r in rows] == [[1.0, 0.0, 1.0, 1.0], [1.0, 0.0, 0.0], [1.0, 0.0, 1.0], [1.0]]
    assert [r["final_correct"] for r in rows] == [True, False, True, True]
    assert [len(r["completions"]) for r in rows] == [len(v[1]) for v in PRM800K_EXPECTED.values()]


def test_prm800k_found_error_keeps_the_pre_generated_step_and_reads_a_bare_human_string():
    records = _lines(PRM800K_RELEASE)
    phase2 = copy.deepcopy(records[3])
    last = phase2["label"]["steps"][-1]
    # an alternative rated -1 listed before the pre-generated one: the followed path is still the pre-generated
    last["completions"] = [{"text": "Their sum is 26.", "rating": -1, "flagged": False}] + last["completions"]
    assert from_prm800k(phase2)["completions"][-1] == "Their sum is $1 + 2 + 3 + 4 + 6 + 12 = 27$."
    phase1 = copy.deepcopy(records[1])
    phase1["label"]["steps"][2]["human_completion"] = "Adding, $12 + 5 = 17$."  # the README's reconstruction
    assert from_prm800k(phase1)["completions"] == PRM800K_EXPECTED[1][1]


def _broken(line, edit):
    record = copy.deepcopy(_lines(PRM800K_RELEASE)[line])
    edit(record)
    return record


@pytest.mark.parametrize("record,field,reason", [
    (_broken(1, lambda r: r["label"]["steps"][0].update(chosen_completion=3)),
     "label.steps[0].chosen_completion", "is 3; the step has 1 completions"),
    (_broken(1, lambda r: r["label"]["steps"][0]["completions"][0].update(rating=None)),
     "label.steps[0].completions[0].rating", "is null: the chosen completion is unrated"),
    (_broken(1, lambda r: r["label"]["steps"][1]["completions"][1].update(rating=2)),
     "label.steps[1].completions[1].rating", "is 2; expected -1, 0, 1 or null"),
    (_broken(1, lambda r: r["label"].update(finish_reason="timeout")),
     "label.finish_reason", "is 'timeout'; expected one of solution, found_error, give_up, bad_problem"),
    (_broken(1, lambda r: r["label"].pop("finish_reason")),
     "label.finish_reason", "is None; expected one of solution, found_error, give_up, bad_problem"),
    (_broken(4, lambda r: r["label"].update(finish_reason="found_error")),
     "label.finish_reason", "is 'found_error' but no step on the followed path is rated -1"),
    (_broken(1, lambda r: r["label"]["steps"][3].update(chosen_completion=None)),
     "label.steps[3].chosen_completion", "is null, with no human completion, in a row whose finish_reason is "
                                         "'solution'; the solution cannot be followed past step 3"),
    (_broken(4, lambda r: r["label"].update(steps=[])),
     "label.steps", "has no step with a chosen, human-written or -1-rated completion; nothing to label"),
    (_broken(4, lambda r: r["question"].update(problem=None)), "question.problem", "is NoneType None; expected a string"),
    (_broken(4, lambda r: r.pop("label")), "label", "has no field 'label' (prm800k format)"),
])
def test_prm800k_unreadable_rows_are_skipped_with_their_field_or_stop_the_run(tmp_path, record, field, reason):
    records = _lines(PRM800K_RELEASE)
    records[4] = record  # line 4 of the file
    src = tmp_path / "phase2_test.jsonl"
    src.write_text("".join(json.dumps(records[n]) + "\n" for n in sorted(records)))
    rows, report = convert_file("prm800k", src)
    assert len(rows) == 3 and report.unreadable == [{"line": 4, "field": field, "reason": reason}]
    with pytest.raises(InputError, match="phase2_test.jsonl, line 4") as caught:
        convert_file("prm800k", src, ConvertOptions(on_bad_row="fail"))
    assert caught.value.field == field and caught.value.row == 4 and caught.value.detail == reason


def test_keep_math_shepherd_format_flag_and_neutral_option_on_the_command_line(tmp_path):
    out = tmp_path / "ms.parquet"
    main(["math_shepherd", str(MS_VARIANTS), str(out), "--keep_math_shepherd_format"])
    assert read_parquet(out)[1]["completions"][0] == "step 1: We have $2^3 = 8$."
    summary = main(["prm800k", str(PRM800K_RELEASE), str(out), "--prm800k_neutral", "negative"])
    assert summary["options"]["prm800k_neutral"] == "negative"
    assert read_parquet(out)[0]["labels"] == [1.0, 0.0, 1.0, 1.0]
