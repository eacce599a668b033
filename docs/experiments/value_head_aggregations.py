"""Experiment: a trained PRM's value head alone (no reference features) on a demo's test samples,
its step scores aggregated by last, min and prod: within-question AUROC and weighted best-of-16
minus majority-of-16 for each (eval-prm reports `last`, the paper's choice).

    python docs/experiments/value_head_aggregations.py runs/demo
"""
import json
import sys

import pyarrow.parquet as pq

from ttstrain.aggregation import aggregate
from ttstrain.prm.evaluation import bon_vs_majority, sample_prompt
from ttstrain.prm.scoring import PRMScorer


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    run = argv[0]
    scorer = PRMScorer.from_pretrained(f"{run}/prm", use_reference_features=False)
    samples = pq.read_table(f"{run}/samples.parquet").to_pylist()
    step_scores = scorer.score([sample_prompt(r, scorer) for r in samples], [list(r["steps"]) for r in samples])
    for how in ("last", "min", "prod"):
        res = bon_vs_majority(scorer, samples, [16], scores=[aggregate(s, how) for s in step_scores])
        print(how, json.dumps({"within_question_auroc": res["within_question_auroc"],
                               "w16_minus_m16": round(res["weighted_at"][16] - res["majority_at"][16], 4),
                               "se": res["weighted_minus_majority_se_at"][16]}))


if __name__ == "__main__":
    main()
