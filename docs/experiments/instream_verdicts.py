"""Experiment (not shipped): world v2 read on with its checked solutions under the `Solution:` head
instead of `Check:`, so a verdict (a newline after a right step, ` <- wrong: <right step>` after a
wrong one) follows a step in the very layout the PRM reads; then how well that body's own in-stream
verdict ranks a demo's answers within a question.

    # 300 steps from the default policy with config_v2.yaml's mixture (about 7 minutes of training)
    python docs/experiments/instream_verdicts.py build --config recipes/default/world/config_v2.yaml \\
        --init_from default --output_dir runs/world/v2i --max_steps 300 --learning_rate 3e-4 \\
        --save_probe_checkpoints false --eval_per_level 50 --eval_sampled_per_level 20 --eval_samples 8
    # P(step is wrong) after each step under Solution:, on the first 16 samples of each test question
    python docs/experiments/instream_verdicts.py score runs/world/v2i runs/demo/samples.parquet

`build` is `ttstrain build-world` with `ttstrain.world_builder.checking.check_prompt` replaced for the run
(its card's `checking` block is then measured under `Solution:` too).
"""

from __future__ import annotations

import collections
import sys

import ttstrain.world_builder.checking as checking
from ttstrain.analysis.metrics import auroc
from ttstrain.io import read_parquet
from ttstrain.models import load_causal_lm, load_tokenizer
from ttstrain.prompts import format_prompt
from ttstrain.world_builder.build import main as build_world


def solution_head_prompt(question: str) -> str:
    return format_prompt(question.strip())


def score(model_path: str, samples_path: str, per_question: int = 16) -> None:
    model, tokenizer = load_causal_lm(model_path), load_tokenizer(model_path)
    rows = [r for r in read_parquet(samples_path) if int(r["sample_index"]) < per_question]
    by_question = collections.defaultdict(list)
    for r, wrong in zip(rows, checking.check_scores(model, tokenizer, rows)):
        by_question[r["problem_id"]].append((str(r["correct"]) == "True", 1 - max(wrong), 1 - wrong[-1]))
    for i, name in ((1, "1 - max over steps"), (2, "1 - last step")):
        per_q = [auroc([x[i] for x in v], [x[0] for x in v]) for v in by_question.values()
                 if 0 < sum(x[0] for x in v) < len(v)]
        print(f"{name}: within-question AUROC {sum(per_q) / len(per_q):.3f} on {len(per_q)} questions")


def main(argv: list[str] | None = None) -> None:
    checking.check_prompt = solution_head_prompt
    argv = sys.argv[1:] if argv is None else argv
    command, args = argv[0], argv[1:]
    if command == "build":
        build_world(args)
    elif command == "score":
        score(*args[:2], *map(int, args[2:]))  # optional third: samples per question
    else:
        raise SystemExit(f"unknown command {command!r}: build or score")


if __name__ == "__main__":
    main()
