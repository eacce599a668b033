"""Measure a world policy on held-out test problems and write `world_card.json` next to it.

Greedy pass@1 per level, sampled pass@1 and pass@k per level (temperature 1), and for wrong
samples the kind of their first wrong step (arithmetic, copy, format, length, answer).

    python -m ttstrain.world.card ttstrain/world/default_policy
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from ttstrain.metrics import pass_at_k
from ttstrain.sampling import group_by_problem, sample_solutions
from ttstrain.world.task import LEVELS, first_error, problems_split


def measure_policy(generator, eval_per_level: int = 200, sampled_per_level: int = 50, samples: int = 16,
                   seed: int = 0) -> dict:
    greedy_problems = problems_split("test", eval_per_level, seed)
    greedy = sample_solutions(generator, greedy_problems, n=1, temperature=0.0, seed=seed, desc="greedy eval")
    sampled_problems = problems_split("test", sampled_per_level, seed)
    sampled = sample_solutions(generator, sampled_problems, n=samples, temperature=1.0, seed=seed,
                               desc=f"sampled eval (n={samples})")
    card: dict = {"greedy_pass@1": {}, "sampled_pass@1": {}, f"sampled_pass@{samples}": {},
                  "problems_per_level": {"greedy": eval_per_level, "sampled": sampled_per_level},
                  "samples_per_problem": samples}
    for level in LEVELS:
        g = [r for r in greedy if r["level"] == level]
        card["greedy_pass@1"][level] = round(sum(r["correct"] for r in g) / len(g), 4)
        groups = [v for v in group_by_problem([r for r in sampled if r["level"] == level]).values()]
        card["sampled_pass@1"][level] = round(sum(pass_at_k(len(v), sum(r["correct"] for r in v), 1) for v in groups) / len(groups), 4)
        card[f"sampled_pass@{samples}"][level] = round(
            sum(pass_at_k(len(v), sum(r["correct"] for r in v), samples) for v in groups) / len(groups), 4)
    wrong = [r for r in sampled if not r["correct"]]
    kinds = Counter()
    for r in wrong:
        err = first_error(r["question"], r["completion"])
        kinds[err.kind if err else "none-found"] += 1
    card["wrong_samples"] = len(wrong)
    card["first_error_kinds"] = dict(kinds.most_common())
    card["wrong_with_identified_step"] = round(1 - kinds.get("none-found", 0) / max(1, len(wrong)), 4)
    return card


def write_world_card(policy_dir: Path, cfg=None) -> dict:
    from ttstrain.generation.hf import HFGenerator
    from ttstrain.models import load_causal_lm, load_tokenizer

    policy_dir = Path(policy_dir)
    gen = HFGenerator(load_causal_lm(str(policy_dir)), load_tokenizer(str(policy_dir)), model_name=str(policy_dir))
    kw = {}
    if cfg is not None:
        kw = dict(eval_per_level=cfg.eval_per_level, sampled_per_level=cfg.eval_sampled_per_level,
                  samples=cfg.eval_samples, seed=cfg.seed)
    card = measure_policy(gen, **kw)
    card["parameters"] = gen.num_parameters
    (policy_dir / "world_card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card, indent=2))
    return card


if __name__ == "__main__":
    write_world_card(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "default_policy"))
