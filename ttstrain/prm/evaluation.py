"""Evaluate a trained PRM four ways: held-out BCE, step AUROC, best-of-N vs majority, ProcessBench F1.

    from ttstrain.prm.evaluation import heldout_metrics, bon_vs_majority, processbench_f1
    prm = PRMScorer.from_pretrained("runs/demo/prm")
    heldout_metrics(prm, validation_rows)        # rows of a `ttstrain label-mc` dataset
    bon_vs_majority(prm, sample_rows, [1, 2, 4, 8, 16])
    processbench_f1(prm, load_processbench("../shared/data/processbench/gsm8k.json.gz"), threshold="calibrate")

What each number means:
  held-out BCE   mean binary cross-entropy of the PRM's step probabilities against the soft Monte
                 Carlo labels of questions it never trained on (the training objective, out of sample).
  step AUROC     how well step scores rank steps whose Monte Carlo value is at least 0.5 above those
                 below it (0.5 = chance). `solution_auroc` ranks whole solutions by their last-step
                 score against final correctness.
  BoN vs maj     accuracy of PRM-weighted best-of-N (sum of aggregated scores per answer) and of
                 majority vote, on the same random subsets of N samples per problem; answers that
                 grade as equal are one answer (`ttstrain.answers.pooling`). Next to it,
                 `within_question_auroc`: the AUROC of the aggregated scores against correctness
                 inside each problem that has both right and wrong samples, averaged over those
                 problems, and `pooled_auroc` over all samples at once. Weighted best-of-N can only
                 beat majority when the first is above 0.5; a PRM that ranks questions by difficulty
                 and answers within a question at random shows a high pooled and a ~0.5 within.
  ProcessBench   the predicted first wrong step is the first step scored below a threshold (none:
                 the solution is predicted correct); F1 is the harmonic mean of the accuracy on
                 solutions with an error (exact step) and on correct ones. The threshold is either
                 given, or calibrated on a named split: `calibrate` picks the F1-best threshold on
                 the records whose id hashes into the calibration half and reports the other half.

Run from the command line with `eval/eval_prm.py` (or `ttstrain eval-prm`).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
from pathlib import Path
from typing import Sequence

from ttstrain.aggregation import DEFAULT_AGGREGATION, aggregate
from ttstrain.answers.pooling import correct_keys, pool_answers
from ttstrain.analysis.metrics import auroc, voted_accuracy_at_budgets
from ttstrain.prompts import format_prompt
from ttstrain.generation.sampling import group_by_problem

STEP_POSITIVE_AT = 0.5  # a step counts as "good" for AUROC when its Monte Carlo value is at least this


def _bce(p: float, y: float) -> float:
    p = min(max(p, 1e-7), 1 - 1e-7)
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def heldout_metrics(scorer, rows: Sequence[dict]) -> dict:
    """BCE against soft labels, step AUROC and solution AUROC on labelled rows (prompt, completions, labels)."""
    rows = [r for r in rows if len(r["completions"])]
    if not rows:
        raise ValueError("no labelled rows with steps to evaluate")
    scores = scorer.score([r["prompt"] for r in rows], [list(r["completions"]) for r in rows])
    step_scores, step_labels = [], []
    for r, s in zip(rows, scores):
        if len(s) != len(r["labels"]):
            raise ValueError(f"row {r.get('problem_id')}/{r.get('sample_index')}: {len(r['labels'])} labels "
                             f"for {len(s)} steps")
        step_scores += s
        step_labels += [float(y) for y in r["labels"]]
    finals = [bool(r["final_correct"]) for r in rows]
    return {
        "rows": len(rows),
        "steps": len(step_scores),
        "bce": round(sum(_bce(p, y) for p, y in zip(step_scores, step_labels)) / len(step_scores), 5),
        "step_auroc": _round(auroc(step_scores, [y >= STEP_POSITIVE_AT for y in step_labels])),
        "step_positive_at": STEP_POSITIVE_AT,
        "positive_steps": sum(y >= STEP_POSITIVE_AT for y in step_labels),
        "solution_auroc": _round(auroc([s[-1] for s in scores], finals)),
        "correct_solutions": sum(finals),
    }


def _round(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(x, nd)


def sample_prompt(row: dict, scorer=None) -> str:
    """The prompt a sample was written after; for a row with only its question, the question in the
    scorer's recorded prompt format (plain without a scorer)."""
    if scorer is not None and scorer.reads_questions and row.get("question"):  # a public PRM reads the bare question
        return scorer.prompt_for(row["question"])
    if row.get("prompt"):
        return row["prompt"]
    return format_prompt(row["question"]) if scorer is None else scorer.prompt_for(row["question"])


def paired_se(a: Sequence[dict], b: Sequence[dict], budgets: Sequence[int]) -> dict:
    """Standard error of mean(a - b) over problems at each budget (per-problem accuracies, paired)."""
    out = {}
    for n in budgets:
        d = [x[n] - y[n] for x, y in zip(a, b) if n in x and n in y]
        if len(d) == len(a) and len(d) > 1:
            m = sum(d) / len(d)
            out[n] = round((sum((v - m) ** 2 for v in d) / (len(d) - 1) / len(d)) ** 0.5, 4)
    return out


def sample_scores(scorer, samples: Sequence[dict], how: str = DEFAULT_AGGREGATION,
                  progress: bool = True) -> list[float]:
    """The scorer's aggregated score of each `ttstrain sample` row, on the prompt the sample was written after
    (a progress bar in solutions moves with every forward batch of the scorer)."""
    from tqdm.auto import tqdm

    with tqdm(total=len(samples), desc="eval-prm scoring", unit="solution", disable=not progress,
              mininterval=1) as bar:
        saved, scorer.progress_hook = scorer.progress_hook, bar.update
        try:
            return scorer.score_solutions([sample_prompt(r, scorer) for r in samples],
                                          [list(r["steps"]) for r in samples], how=how)
        finally:
            scorer.progress_hook = saved


def bon_vs_majority(scorer, samples: Sequence[dict], budgets: Sequence[int], how: str = DEFAULT_AGGREGATION,
                    resamples: int = 16, seed: int = 0, scores: Sequence[float] | None = None) -> dict:
    """PRM-weighted best-of-N, naive best-of-N and majority@N on the same random subsets of graded samples.

    `samples` are rows of `ttstrain sample` (problem_id, question or prompt, steps, answer, correct);
    `scores`, when given, are their `sample_scores` already computed.
    """
    if scores is None:
        scores = sample_scores(scorer, samples, how)
    # copies carry each score through the grouping; the caller's rows stay as they were
    scored = [{**r, "_prm_score": s} for r, s in zip(samples, scores)]
    curves = {"weighted": [], "majority": [], "naive": []}
    by_level: dict = {}
    within: list[float] = []
    for pid, rows in group_by_problem(scored).items():
        keys = pool_answers(r["answer"] for r in rows)  # answers that grade as equal vote together
        good = correct_keys(keys, (r["correct"] for r in rows))
        weights = [r["_prm_score"] for r in rows]
        ranked = auroc(weights, [bool(r["correct"]) for r in rows])
        if ranked is not None:
            within.append(ranked)
        use = [b for b in budgets if b <= len(rows)]
        # the same seed draws the same subsets for every selection rule
        w = voted_accuracy_at_budgets(keys, good, use, weights=weights, resamples=resamples, seed=seed)
        m = voted_accuracy_at_budgets(keys, good, use, resamples=resamples, seed=seed)
        unique = [f"{i}:{k}" for i, k in enumerate(keys)]  # each sample its own "answer": argmax of score
        nv = voted_accuracy_at_budgets(unique, {u for u, r in zip(unique, rows) if r["correct"]}, use,
                                       weights=weights, resamples=resamples, seed=seed)
        for name, c in (("weighted", w), ("majority", m), ("naive", nv)):
            curves[name].append(c)
            by_level.setdefault(rows[0].get("level"), {}).setdefault(name, []).append(c)

    def mean_curve(cs):
        return {b: round(sum(c[b] for c in cs) / len(cs), 4) for b in budgets if all(b in c for c in cs)}

    out = {"problems": len(curves["weighted"]), "aggregation": how, "resamples": resamples,
           "weighted_at": mean_curve(curves["weighted"]), "majority_at": mean_curve(curves["majority"]),
           "naive_at": mean_curve(curves["naive"]),
           "weighted_minus_majority_se_at": paired_se(curves["weighted"], curves["majority"], budgets),
           "within_question_auroc": _round(sum(within) / len(within)) if within else None,
           "within_question_problems": len(within),
           "pooled_auroc": _round(auroc(scores, [bool(r["correct"]) for r in samples]))}
    out["by_level"] = {lvl: {f"{k}_at": mean_curve(v) for k, v in d.items()}
                       for lvl, d in sorted(by_level.items(), key=lambda kv: (kv[0] is None, kv[0]))}
    return out


def load_processbench(path: str | Path) -> list[dict]:
    """ProcessBench records (id, problem, steps, label) from a .json / .json.gz array or a .jsonl file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"ProcessBench file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        text = f.read()
    stripped = text.lstrip()
    records = json.loads(text) if stripped.startswith("[") else [json.loads(line) for line in text.splitlines() if line.strip()]
    for i, r in enumerate(records):
        for key in ("problem", "steps", "label"):
            if key not in r:
                raise ValueError(f"{path}: record {i} (id {r.get('id', '?')}) has no field {key!r}")
        if not isinstance(r["steps"], list) or not r["steps"]:
            raise ValueError(f"{path}: record {i} (id {r.get('id', '?')}): field 'steps' must be a non-empty list")
        if not -1 <= int(r["label"]) < len(r["steps"]):
            raise ValueError(f"{path}: record {i} (id {r.get('id', '?')}): field 'label' {r['label']} is not -1 "
                             f"or a step index below {len(r['steps'])}")
    return records


def first_below(step_scores: Sequence[float], threshold: float) -> int:
    """Index of the first step scored below threshold, or -1 when none is (predicted correct)."""
    for i, s in enumerate(step_scores):
        if s < threshold:
            return i
    return -1


def processbench_scores(predicted: Sequence[int], labels: Sequence[int]) -> dict:
    err = [(p, y) for p, y in zip(predicted, labels) if y >= 0]
    ok = [(p, y) for p, y in zip(predicted, labels) if y < 0]
    acc_err = sum(p == y for p, y in err) / len(err) if err else float("nan")
    acc_ok = sum(p == -1 for p, _ in ok) / len(ok) if ok else float("nan")
    f1 = 0.0 if acc_err + acc_ok == 0 else 2 * acc_err * acc_ok / (acc_err + acc_ok)
    return {"records": len(labels), "erroneous": len(err), "correct": len(ok),
            "acc_erroneous": round(acc_err, 4), "acc_correct": round(acc_ok, 4), "f1": round(f1, 4)}


def calibration_half(record_id: str) -> bool:
    """The calibration split: records whose id hashes even (stable across runs and machines)."""
    return hashlib.sha256(str(record_id).encode()).digest()[0] % 2 == 0


def _best_threshold(scores: Sequence[Sequence[float]], labels: Sequence[int]) -> tuple[float, float]:
    """The threshold with the highest first-error F1 (ties: closest to 0.5) and that F1."""
    # the scores themselves (not rounded: a PRM can put every step of out-of-domain text below 1e-4),
    # thinned to 1,000 quantiles when there are more
    values = sorted({x for s in scores for x in s})
    if len(values) > 1000:
        values = [values[round(i * (len(values) - 1) / 999)] for i in range(1000)]
    candidates = sorted(set(values) | {0.0, 1.01})

    def f1(t):
        return processbench_scores([first_below(s, t) for s in scores], labels)["f1"]

    best = max(candidates, key=lambda t: (f1(t), -abs(t - 0.5)))
    return best, f1(best)


def processbench_f1(scorer, records: Sequence[dict], threshold: float | str = "calibrate",
                    calibration_records: Sequence[dict] | None = None, calibration_name: str = "") -> dict:
    """First-error F1 of a PRM on ProcessBench-schema records.

    threshold: a number (used as is, reported on every record), or "calibrate": the F1-best threshold
    on `calibration_records` (reported on every record of `records`), or, when none are given, on the
    records whose id hashes into the calibration half (reported on the other half).
    """
    def score(recs):
        # a ProcessBench step may hold the PRM's separator; each is scored as one step at its own index
        fmt = scorer.prompt_format.steps
        return scorer.score([scorer.prompt_for(r["problem"]) for r in recs],
                            [[fmt.flatten(x) or "." for x in r["steps"]] for r in recs])

    scores, labels = score(records), [int(r["label"]) for r in records]
    if threshold != "calibrate":
        t = float(threshold)
        out = processbench_scores([first_below(s, t) for s in scores], labels)
        out.update(threshold=t, threshold_split="given", reported_on="all records")
        return out
    if calibration_records is not None:
        best, calib_f1 = _best_threshold(score(calibration_records), [int(r["label"]) for r in calibration_records])
        out = processbench_scores([first_below(s, best) for s in scores], labels)
        out.update(threshold=best, threshold_split=calibration_name or "calibration file",
                   calibration_records=len(calibration_records), calibration_f1=calib_f1, reported_on="all records")
        return out
    calib = [i for i, r in enumerate(records) if calibration_half(r.get("id", i))]
    calib_set = set(calib)
    held = [i for i in range(len(records)) if i not in calib_set]
    best, calib_f1 = _best_threshold([scores[i] for i in calib], [labels[i] for i in calib])
    out = processbench_scores([first_below(scores[i], best) for i in held], [labels[i] for i in held])
    out.update(threshold=best, threshold_split="calibration half: records with sha256(id)[0] even",
               calibration_records=len(calib), calibration_f1=calib_f1, reported_on="the other half")
    return out


__all__ = ["auroc", "heldout_metrics", "bon_vs_majority", "load_processbench", "processbench_f1",
           "first_below", "processbench_scores", "aggregate"]
