"""PRM evaluation: AUROC, held-out BCE, best-of-N vs majority and ProcessBench F1, with scripted scorers."""

from __future__ import annotations

import gzip
import json
import math

import pytest

from ttstrain.paths import data_dir
from ttstrain.prm.evaluation import (auroc, bon_vs_majority, first_below, heldout_metrics, load_processbench,
                               processbench_f1, processbench_scores)
from ttstrain.prompts import PromptFormat, format_prompt


class TableScorer:
    """Step scores looked up by the text of each step (default 0.5); counts calls like PRMScorer."""

    reads_questions, prompt_format, progress_hook = False, PromptFormat(), None

    def __init__(self, table: dict[str, float], default: float = 0.5):
        self.table = table
        self.default = default
        self.stats = {"solutions": 0, "forward_passes": 0, "tokens": 0}

    def score(self, prompts, steps):
        self.stats["solutions"] += len(prompts)
        return [[self.table.get(s, self.default) for s in st] for st in steps]

    def score_solutions(self, prompts, steps, how="last"):
        from ttstrain.aggregation import aggregate

        return [aggregate(s, how) for s in self.score(prompts, steps)]

    def prompt_for(self, question):
        return self.prompt_format.build(question)


def test_auroc_matches_pair_counting():
    scores = [0.1, 0.4, 0.35, 0.8, 0.8, 0.2]
    targets = [False, False, True, True, False, True]
    pos = [s for s, t in zip(scores, targets) if t]
    neg = [s for s, t in zip(scores, targets) if not t]
    pairs = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))
    assert auroc(scores, targets) == pytest.approx(pairs)
    assert auroc([0.1, 0.9], [False, True]) == 1.0
    assert auroc([0.9, 0.1], [False, True]) == 0.0
    assert auroc([0.3, 0.4], [True, True]) is None


def test_heldout_metrics_bce_and_auroc():
    rows = [
        {"prompt": "p1", "completions": ["a", "b"], "labels": [0.75, 1.0], "final_correct": True},
        {"prompt": "p2", "completions": ["c", "d"], "labels": [0.25, 0.0], "final_correct": False},
    ]
    scorer = TableScorer({"a": 0.75, "b": 0.9, "c": 0.2, "d": 0.1})
    m = heldout_metrics(scorer, rows)
    expected = [(-math.log(0.75) * 0.75 - math.log(0.25) * 0.25), -math.log(0.9),
                -(0.25 * math.log(0.2) + 0.75 * math.log(0.8)), -math.log(0.9)]
    assert m["bce"] == pytest.approx(sum(expected) / 4, abs=1e-4)
    assert m["step_auroc"] == 1.0 and m["solution_auroc"] == 1.0
    assert m["steps"] == 4 and m["positive_steps"] == 2
    with pytest.raises(ValueError, match="labels"):
        heldout_metrics(scorer, [{**rows[0], "labels": [1.0]}])


def _samples():
    """Two problems; the majority answer is wrong, and the PRM scores the right answer's steps high."""
    rows = []
    for pid in ("p1", "p2"):
        for j in range(8):
            good = j < 3  # 3 correct samples vs 5 wrong ones sharing one answer
            rows.append({"problem_id": pid, "question": f"q {pid}", "sample_index": j, "level": 1,
                         "steps": ["good step" if good else "bad step"], "answer": "1" if good else "2",
                         "correct": good})
    return rows


def test_weighted_best_of_n_beats_majority_when_the_prm_knows():
    scorer = TableScorer({"good step": 0.95, "bad step": 0.05})
    r = bon_vs_majority(scorer, _samples(), [1, 2, 4, 8], resamples=32, seed=0)
    assert r["majority_at"][8] == 0.0 and r["weighted_at"][8] == 1.0 and r["naive_at"][8] == 1.0
    # same subsets for every rule: at N = 1 every rule picks the one sample
    assert r["weighted_at"][1] == r["majority_at"][1] == r["naive_at"][1]
    assert r["by_level"][1]["weighted_at"][8] == 1.0
    # a PRM that knows nothing (constant score) reduces weighted best-of-N to majority vote
    flat = bon_vs_majority(TableScorer({}), _samples(), [1, 2, 4, 8], resamples=32, seed=0)
    assert flat["weighted_at"] == flat["majority_at"]


class PromptScorer(TableScorer):
    """Scores every step by its prompt alone: a PRM that knows each question's difficulty and nothing else."""

    def score(self, prompts, steps):
        return [[self.table[p]] * len(st) for p, st in zip(prompts, steps)]


def test_within_question_auroc_tells_ranking_answers_from_ranking_questions():
    rows = _samples()
    for r in rows[8:]:  # p2 gets two more right answers, so the easy question has more of them
        r["correct"] = r["sample_index"] < 5
        r["steps"], r["answer"] = (["good step"], "1") if r["correct"] else (["bad step"], "2")
    knows = bon_vs_majority(TableScorer({"good step": 0.95, "bad step": 0.05}), rows, [1, 8], resamples=4)
    assert knows["within_question_auroc"] == 1.0 and knows["within_question_problems"] == 2
    assert knows["pooled_auroc"] == 1.0
    # difficulty only: p2 (5 of 8 right) scored 0.9, p1 (3 of 8) 0.1
    difficulty = PromptScorer({"q p1": 0.1, "q p2": 0.9})
    r = bon_vs_majority(difficulty, [{**x, "prompt": x["question"]} for x in rows], [1, 8], resamples=4)
    assert r["within_question_auroc"] == 0.5
    pos = [0.1] * 3 + [0.9] * 5
    neg = [0.1] * 5 + [0.9] * 3
    expected = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / 64
    assert r["pooled_auroc"] == pytest.approx(expected, abs=1e-4) and expected > 0.6
    assert r["weighted_at"][8] == r["majority_at"][8]
    # a problem whose samples are all right (or all wrong) has no within-question ranking to measure
    same = bon_vs_majority(difficulty, [{**x, "prompt": x["question"], "correct": True} for x in rows], [1])
    assert same["within_question_auroc"] is None and same["within_question_problems"] == 0


def test_processbench_prediction_and_f1():
    assert first_below([0.9, 0.8, 0.3, 0.9], 0.5) == 2
    assert first_below([0.9, 0.8], 0.5) == -1
    s = processbench_scores([2, -1, 0, -1], [2, -1, 1, 3])
    assert s["acc_erroneous"] == pytest.approx(1 / 3, abs=1e-4)
    assert s["acc_correct"] == 1.0
    assert s["f1"] == 0.5  # harmonic mean of 1/3 and 1


def _pb_records(n=40):
    """Records whose steps say where the error is: 'ok' steps score 0.9, 'bad' 0.2."""
    out = []
    for i in range(n):
        k = i % 4 - 1  # -1, 0, 1, 2
        steps = ["bad" if j == k else "ok" for j in range(3)] if k >= 0 else ["ok"] * 3
        out.append({"id": f"r{i}", "problem": f"problem {i}", "steps": steps, "label": k})
    return out


def test_processbench_threshold_calibrated_on_a_named_split():
    scorer = TableScorer({"ok": 0.9, "bad": 0.2})
    recs = _pb_records()
    r = processbench_f1(scorer, recs, "calibrate")
    assert 0.2 < r["threshold"] <= 0.9 and r["f1"] == 1.0
    assert r["calibration_records"] + r["records"] == len(recs) and "calibration half" in r["threshold_split"]
    fixed = processbench_f1(scorer, recs, 0.95)  # every step below: always predicts step 0
    assert fixed["acc_correct"] == 0.0 and fixed["f1"] == 0.0
    other = processbench_f1(scorer, recs, "calibrate", calibration_records=_pb_records(8), calibration_name="mine")
    assert other["threshold_split"] == "mine" and other["records"] == len(recs) and other["f1"] == 1.0


def test_load_processbench_shared_file_and_errors(tmp_path, slice_rows):
    recs = load_processbench(data_dir() / "processbench" / "gsm8k.json.gz")  # the test slice of the real file
    assert len(recs) == len(slice_rows["processbench/gsm8k.json.gz"]) == 13  # 400 in full
    assert sum(r["label"] == -1 for r in recs) == 6  # 193 in full
    # real steps span several lines; each is scored as one line at its own index
    assert any("\n" in s for r in recs for s in r["steps"])
    scorer = TableScorer({})
    seen = []
    scorer.score = lambda prompts, steps: seen.extend(steps) or [[0.9] * len(s) for s in steps]
    r = processbench_f1(scorer, recs, 0.5)
    assert r["records"] == len(recs) and r["acc_correct"] == 1.0 and r["acc_erroneous"] == 0.0
    assert [len(s) for s in seen] == [len(x["steps"]) for x in recs] and not any("\n" in t for s in seen for t in s)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x", "problem": "p", "steps": ["a"], "label": 1}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl: record 0 \(id x\): field 'label'"):
        load_processbench(bad)
    missing = tmp_path / "m.json.gz"
    with gzip.open(missing, "wt") as f:
        json.dump([{"id": "y", "problem": "p", "label": -1}], f)
    with pytest.raises(ValueError, match="record 0 .*'steps'"):
        load_processbench(missing)
    with pytest.raises(FileNotFoundError):
        load_processbench(tmp_path / "nope.json")


def test_eval_prm_stage_runs_every_part(tmp_path, tiny_llama, char_tokenizer):
    """End to end through the CLI stage on an untrained PRM: every part present, config written."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from ttstrain.stages.eval_prm import EvalPRMConfig, run_eval_prm
    from ttstrain.prm.trainer import load_prm_model

    base = tmp_path / "base"
    tiny_llama.save_pretrained(base)
    char_tokenizer.save_pretrained(base)
    model, tok = load_prm_model(str(base))
    torch.manual_seed(0)
    torch.nn.init.normal_(model.score.weight, std=1.0)
    prm = tmp_path / "prm"
    model.save_pretrained(prm)
    tok.save_pretrained(prm)
    labels = tmp_path / "labels.parquet"
    rows = [{"prompt": format_prompt(f"q{i}"), "completions": ["1 + 2 = 3", "The answer is \\boxed{3}."],
             "labels": [0.25 * (i % 5), float(i % 2)], "problem_id": f"p{i}", "sample_index": 0,
             "final_correct": bool(i % 2)} for i in range(20)]
    pq.write_table(pa.Table.from_pylist(rows), labels)
    samples = tmp_path / "samples.parquet"
    pq.write_table(pa.Table.from_pylist([{**r, "level": 1} for r in _samples()]), samples)
    pb = tmp_path / "pb.json"
    pb.write_text(json.dumps(_pb_records(12)))
    cfg = EvalPRMConfig(prm_path=str(prm), output_dir=str(tmp_path / "out"), labels=str(labels), labels_split="all",
                        samples=str(samples), budgets=[1, 2, 4], processbench=[str(pb)])
    result = run_eval_prm(cfg)
    assert result["heldout"]["rows"] == 20 and result["heldout"]["split"] == "all"
    assert set(result["best_of_n"]["weighted_at"]) == {1, 2, 4}
    assert 0.0 <= result["processbench"][str(pb)]["f1"] <= 1.0
    written = json.loads((tmp_path / "out" / "eval_prm.json").read_text())
    assert written["heldout"]["bce"] == result["heldout"]["bce"]
    assert json.loads((tmp_path / "out" / "config.json").read_text())["labels_split"] == "all"
    # every sample's score, as the scorer gives it, for predict-bon
    from ttstrain.io import read_parquet
    from ttstrain.prm.evaluation import sample_scores
    from ttstrain.prm.scoring import PRMScorer

    scored = read_parquet(tmp_path / "out" / "sample_scores.parquet")
    graded = _samples()
    assert [r["problem_id"] for r in scored] == [r["problem_id"] for r in graded]
    assert [r["correct"] for r in scored] == [bool(r["correct"]) for r in graded]
    want = sample_scores(PRMScorer.from_pretrained(prm), graded)
    assert [r["score"] for r in scored] == pytest.approx(want, abs=1e-6)
    assert "_sample_scores" not in written["best_of_n"] and "_sample_scores" not in written
    with pytest.raises(ValueError, match="validation_fraction"):
        run_eval_prm(EvalPRMConfig(prm_path=str(prm), output_dir=str(tmp_path / "o2"), labels=str(labels)))


def test_paired_se_is_the_standard_error_of_per_problem_differences():
    from ttstrain.prm.evaluation import paired_se

    a = [{4: 1.0, 16: 1.0}, {4: 0.5, 16: 1.0}, {4: 0.0, 16: 0.0}]
    b = [{4: 0.0, 16: 1.0}, {4: 0.5, 16: 1.0}, {4: 0.0, 16: 0.0}]
    # differences at N=4: 1, 0, 0 -> sd 0.5774, se 0.3333; at N=16 all equal -> 0
    assert paired_se(a, b, [4, 16]) == {4: 0.3333, 16: 0.0}
    assert paired_se(a[:1], b[:1], [4]) == {}  # one problem: no spread to measure


def test_threshold_calibration_resolves_scores_below_1e_4():
    from ttstrain.prm.evaluation import _best_threshold

    # out-of-domain text can put every step far below 0.5: the ranking must still be usable
    scores = [[1e-5, 1e-7, 1e-5], [1e-5, 2e-5, 1e-5], [3e-6, 1e-5, 1e-5]]
    t, f1 = _best_threshold(scores, [1, -1, 0])
    assert f1 == 1.0 and 3e-6 < t <= 1e-5
