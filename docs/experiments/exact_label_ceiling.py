"""Experiment: how far a value head on the default policy's body can rank answers when its training
labels are exact and plentiful, the ceiling of what better Monte Carlo labels could buy.

Samples the policy on training-split problems (disjoint from the demo's test problems) and writes a
dataset in `ttstrain label-mc`'s format whose step labels are exact, not estimated: 1 for every step
before the first wrong one (`ttstrain.world.task.first_error`), 0 from it on, so the last step's label
is the answer's correctness. No Monte Carlo rollouts, no difficulty in the labels: a value head
trained on them learns only which solutions are right. Then train and score it with the project's
commands (value head alone, no reference features), on a finished demo's test samples:

    python docs/experiments/exact_label_ceiling.py --output_dir runs/exact_labels --per_level 80 --samples 16
    ttstrain train-prm --config recipes/default/prm/config_pipeline.yaml --dataset_path runs/exact_labels \\
        --output_dir runs/exact_labels_prm --reference_features false --num_train_epochs 3
    ttstrain eval-prm --prm_path runs/exact_labels_prm --labels runs/exact_labels \\
        --samples runs/demo/samples.parquet --output_dir runs/exact_labels_eval
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

from ttstrain.generation import load_generator
from ttstrain.io import write_parquet
from ttstrain.problems import load_problems
from ttstrain.generation.sampling import sample_solutions
from ttstrain.world.task import first_error


def exact_labels(question: str, steps: list[str], completion: str):
    """1.0 for each step before the first wrong one, 0.0 from it on; and that first error (None: right)."""
    err = first_error(question, completion)
    cut = len(steps) if err is None else err.step
    return [1.0 if i < cut else 0.0 for i in range(len(steps))], err


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output_dir", required=True)
    ap.add_argument("--model_name_or_path", default="default")
    ap.add_argument("--per_level", type=int, default=80)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    generator = load_generator("transformers", model=args.model_name_or_path)
    problems = load_problems("arith", "train", per_level=args.per_level, seed=args.seed)
    samples = sample_solutions(generator, problems, n=args.samples, temperature=args.temperature,
                               seed=args.seed, max_new_tokens=320, desc="exact-label samples")
    rows, kinds = [], collections.Counter()
    for s in samples:
        steps = list(s["steps"])
        if not steps:
            continue
        labels, err = exact_labels(s["question"], steps, s["completion"])
        right = err is None
        if right != bool(s["correct"]):  # e.g. a right answer reached through a wrong step: left out
            kinds["grader_disagrees"] += 1
            continue
        kinds["right" if right else err.kind] += 1
        rows.append({"prompt": s["prompt"], "completions": steps, "labels": labels, "problem_id": s["problem_id"],
                     "sample_index": s["sample_index"], "final_correct": right, "rollouts_per_step": [0] * len(steps),
                     "hard_labels": labels, "question": s["question"], "gold": s["gold"], "level": s["level"]})
    out = Path(args.output_dir)
    write_parquet(out / "train-00000-of-00001.parquet", rows)
    summary = {"rows": len(rows), "questions": len({r["problem_id"] for r in rows}), "first_errors": dict(kinds),
               "mean_label": round(sum(x for r in rows for x in r["labels"]) / sum(len(r["labels"]) for r in rows), 4),
               **vars(args)}
    (out / "exact_labels.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
