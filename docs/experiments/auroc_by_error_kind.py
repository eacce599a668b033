"""Experiment: within-question AUROC of each of a demo's eval-prm scores (the PRM as deployed, its value
head alone, the policy's likelihood), split by the kind of the wrong samples' first error
(ttstrain.world.task.first_error: copy = a wrong operation or operand, format = a line left out at the
end, arithmetic = a slip): which mistakes each verifier finds.

    python docs/experiments/auroc_by_error_kind.py runs/demo
"""

from __future__ import annotations

import collections
import sys

import pyarrow.parquet as pq

from ttstrain.analysis.metrics import auroc
from ttstrain.world.task import first_error


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    run = argv[0]
    scores = pq.read_table(f"{run}/eval_prm/sample_scores.parquet").to_pylist()
    samples = {(r["problem_id"], r["sample_index"]): r for r in pq.read_table(f"{run}/samples.parquet").to_pylist()}
    by_question = collections.defaultdict(list)
    for r in scores:
        s = samples[(r["problem_id"], r["sample_index"])]
        err = first_error(s["question"], s["completion"])
        r["kind"] = "right" if r["correct"] else (err.kind if err else "none")
        by_question[r["problem_id"]].append(r)
    print("samples by first error:", dict(collections.Counter(r["kind"] for r in scores)))
    for key in ("score", "score_value_head", "score_likelihood"):
        row = {}
        for kind in ("copy", "format", "arithmetic", "all"):
            per_q = []
            for rs in by_question.values():
                pos = [r[key] for r in rs if r["correct"]]
                neg = [r[key] for r in rs if not r["correct"] and kind in ("all", r["kind"])]
                if pos and neg and None not in pos + neg:
                    per_q.append(auroc(pos + neg, [True] * len(pos) + [False] * len(neg)))
            row[kind] = (round(sum(per_q) / len(per_q), 3), len(per_q)) if per_q else None
        print(key, "(AUROC, questions):", row)


if __name__ == "__main__":
    main()
