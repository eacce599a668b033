"""Measure a world policy on held-out test problems and write `world_card.json` next to it.

Greedy pass@1 per level, sampled pass@1 and pass@k per level (temperature 1), and for wrong
samples the kind of their first wrong step (arithmetic, copy, format, length, answer).

    python -m ttstrain.world_builder.card ttstrain/world/default_policy
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from ttstrain.analysis.metrics import auroc, pass_at_k
from ttstrain.generation.hf import HFGenerator
from ttstrain.generation.sampling import group_by_problem, sample_solutions
from ttstrain.world.task import CONTEXT_CHARS, LEVELS, first_error, problems_split
from ttstrain.world_builder import checking
from ttstrain.world_builder.checking import MISTAKE_KINDS
from ttstrain.world_builder.slipped import SLIPPED_KINDS


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
    if isinstance(generator, HFGenerator):  # checking is read from the policy's own next-token distribution
        card["checking"] = measure_checking(generator.model, generator.tokenizer, sampled)
    return card


def measure_checking(model, tokenizer, sampled: list[dict]) -> dict:
    """How well the policy judges its own samples under the `Check:` head (ttstrain.world_builder.checking).

    step_auroc: P(wrong) of the first wrong step against the right steps before it (steps after a
    first error are left out: they follow a wrong value). solution_auroc_within_question: a
    sample's largest P(wrong) against its correctness, averaged over questions with both kinds
    (what a verifier needs to pick answers). first_wrong_step_found: wrong samples whose first step
    above 0.5 is their first wrong step. A policy that never read checked solutions scores ~0.5.
    """
    scores = checking.check_scores(model, tokenizer, sampled)
    step_scores, step_wrong, found, wrong_total = [], [], 0, 0
    by_question: dict[str, list[tuple[float, bool]]] = {}
    for r, s in zip(sampled, scores):
        err = None if r["correct"] else first_error(r["question"], r["completion"])
        upto = len(s) if err is None else min(err.step + 1, len(s))
        step_scores += s[:upto]
        step_wrong += [False] * (upto - 1) + [err is not None and err.step < len(s)]
        if err is not None and err.step < len(s):
            wrong_total += 1
            flagged = next((i for i, p in enumerate(s) if p > 0.5), None)
            found += flagged == err.step
        by_question.setdefault(r["problem_id"], []).append((-max(s) if s else 0.0, bool(r["correct"])))
    within = [auroc([x for x, _ in v], [c for _, c in v]) for v in by_question.values()]
    within = [w for w in within if w is not None]
    step_auroc = auroc(step_scores, step_wrong)
    return {"step_auroc": None if step_auroc is None else round(step_auroc, 4),
            "solution_auroc_within_question": round(sum(within) / len(within), 4) if within else None,
            "within_question_problems": len(within),
            "first_wrong_step_found": round(found / wrong_total, 4) if wrong_total else None,
            "wrong_samples_with_a_located_step": wrong_total}


def pretraining_mixture(cfg) -> dict:
    """The last build phase's data mixture, as the card states it (earlier phases: their own cards)."""
    mixture = {"init_from": cfg.init_from, "steps": cfg.max_steps, "batch_size": cfg.batch_size,
               "solving": round(1 - cfg.check_fraction, 4)}
    if getattr(cfg, "solve_step_error_rate", 0.0):
        mixture.update({"solving_step_error_rate": cfg.solve_step_error_rate,
                        "solving_mistake_kinds": list(SLIPPED_KINDS),
                        "solving_text": "each operation line goes wrong with this probability, left out or with "
                                        "another line's operand, and the wrong value is carried on to the answer "
                                        "(ttstrain.world_builder.slipped); trained on whole"})
    if getattr(cfg, "solve_context_share", 0.0):
        mixture.update({"solving_after_other_problems": cfg.solve_context_share,
                        "solving_context": f"1 to {cfg.solve_context_max} other worked problems of any level before "
                                           f"the problem (format_example, at most {CONTEXT_CHARS} characters), "
                                           "untrained; never the same problem, never a 'Previous attempt:' head"})
    if cfg.check_fraction:
        every_step = cfg.check_style == "every_step"
        mixture.update({
            "checked_solutions": cfg.check_fraction,
            "check_style": cfg.check_style,
            ("wrong_steps" if every_step else "checked_solutions_with_a_wrong_step"): cfg.check_error_rate,
            "verdict_weight": cfg.verdict_weight,
            "mistake_kinds": list(MISTAKE_KINDS),
            "arithmetic_slips": getattr(cfg, "check_slips", "any_digit"),
            **({"slipped_share_of_wrong_steps": cfg.check_slipped_share}
               if getattr(cfg, "check_slipped_share", 0.0) else {}),
            "trained_on": "solving: the solution; checked solutions: the verdicts only (a newline after a right "
                          "step, ' <- wrong: <right step>' after a wrong one" +
                          (", each step judged on its own)" if every_step else
                           " where the text stops, 'All steps are right.' when none is)"),
            "not_in_it": "PRM value labels at Solution: step ends, revision prompts (earlier attempts followed by "
                         "a new solution): those are what train-prm and revision SFT teach",
        })
    return mixture


def write_world_card(policy_dir: Path, cfg=None) -> dict:
    from ttstrain.models import load_causal_lm, load_tokenizer  # transformers: at use, not import

    policy_dir = Path(policy_dir)
    gen = HFGenerator(load_causal_lm(str(policy_dir)), load_tokenizer(str(policy_dir)), model_name=str(policy_dir))
    kw = {}
    if cfg is not None:
        kw = dict(eval_per_level=cfg.eval_per_level, sampled_per_level=cfg.eval_sampled_per_level,
                  samples=cfg.eval_samples, seed=cfg.seed)
    card = measure_policy(gen, **kw)
    card["parameters"] = gen.num_parameters
    if cfg is not None:
        card["pretraining"] = pretraining_mixture(cfg)
    (policy_dir / "world_card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card, indent=2))
    return card


if __name__ == "__main__":
    write_world_card(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "world" / "default_policy"))
