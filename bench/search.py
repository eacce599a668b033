"""Benchmark: wall time per problem of beam search, DVTS and SLG against best-of-N (weighted) at the same N.

Same policy (the default world), same PRM, same problems, same backend; each method is one
`run_search` call over all the problems at once, as `ttstrain search` runs it. Beam search batches
every expansion across beams and problems into one generate call per round (shared prefixes
prefilled once) and every PRM call into one packed score call per round; DVTS does the same with
N/M subtrees; SLG makes three generate and three score calls (root, states, remainder); best-of-N
is one generate and one score call. Printed per N: seconds per problem of each, generations,
prefill tokens per problem, PRM tokens per problem (read: the cost record's verifier tokens; run:
what the PRM computed after its prefix KV cache), and each method's ratio to best-of-N; then one summary line per
method (its worst N) and, last, the worst of them.

    python bench/search.py                                   # N = 8, 16, 32; 2 problems per level
    python bench/search.py --prm_path runs/demo/prm --budgets 8 16 --per_level 4

Without --prm_path the PRM is the world body with a fresh (untrained) value head: the timing measures
the search machinery, not the PRM's quality (a trained PRM can change how long beams live).
A PRM with reference features (the demo's) runs two models per scoring call, which beam search
makes at every step: `--value_head_only` times the same PRM without them.
"""

from __future__ import annotations

import argparse
import time

import torch

from ttstrain.generation import load_generator
from ttstrain.prm.scoring import PRMScorer
from ttstrain.prm.trainer import load_prm_model
from ttstrain.problems import load_problems
from ttstrain.search import run_search


def load_prm(path: str | None, value_head_only: bool = False, prefix_cache_mb: int = 512):
    if path:
        return PRMScorer.from_pretrained(path, use_reference_features=not value_head_only,
                                         prefix_cache_bytes=prefix_cache_mb << 20)
    torch.manual_seed(0)
    model, tok = load_prm_model("default", head_dropout=0.0, model_dropout=0.0)
    return PRMScorer(model, tok, prefix_cache_bytes=prefix_cache_mb << 20)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budgets", type=int, nargs="+", default=[8, 16, 32])
    ap.add_argument("--per_level", type=int, default=2)
    ap.add_argument("--beam_width", type=int, default=4)
    ap.add_argument("--prm_path", default=None)
    ap.add_argument("--value_head_only", action="store_true",
                    help="score with the PRM's value head alone (a PRM with reference features also runs its "
                         "reference model on every scored solution)")
    ap.add_argument("--backend", default="transformers")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", nargs="+", default=["beam_search", "dvts", "slg"])
    ap.add_argument("--prefix_cache_mb", type=int, default=512,
                    help="the PRM's prefix KV cache, as `ttstrain search --prm_prefix_cache_mb` (0: off)")
    args = ap.parse_args()

    generator = load_generator(args.backend, model="default")
    prm = load_prm(args.prm_path, args.value_head_only, args.prefix_cache_mb)
    problems = load_problems("arith", "test", per_level=args.per_level, seed=args.seed)
    run_search("best_of_n_weighted", generator, prm, problems[:2], budget=2, seed=args.seed)  # warm-up
    ratios: dict[str, list[float]] = {m: [] for m in args.methods}
    for n in args.budgets:
        row = {}
        for method in ("best_of_n_weighted", *args.methods):
            prm.clear_prefix_caches()  # each method starts cold, as in `ttstrain search`
            tokens_before, prefill_before = prm.stats["tokens"], generator.stats.prefill_tokens
            t0 = time.perf_counter()
            with generator.fresh_prefix_cache(args.prefix_cache_mb << 20):  # as `ttstrain search` runs it
                results = run_search(method, generator, prm, problems, budget=n, beam_width=args.beam_width,
                                     seed=args.seed, max_new_tokens=320)
            ran_prefill = (generator.stats.prefill_tokens - prefill_before) / len(problems)
            seconds = time.perf_counter() - t0
            gens = sum(r.cost.generations for r in results) / len(results)
            prefill = sum(r.cost.prefill_tokens for r in results) / len(results)
            read = sum(r.cost.verifier_tokens for r in results) / len(results)
            ran = (prm.stats["tokens"] - tokens_before) / len(results)
            row[method] = seconds / len(problems)
            print(f"N={n:3d} {method:19s} {seconds / len(problems):7.3f} s/problem, {gens:.1f} generations/problem, "
                  f"prefill tokens/problem {prefill:.0f} sent, {ran_prefill:.0f} run, "
                  f"PRM tokens/problem {read:.0f} read, {ran:.0f} run",
                  flush=True)
        for method in args.methods:
            ratios[method].append(row[method] / row["best_of_n_weighted"])
            print(f"N={n:3d} {method}/best-of-N wall time: {ratios[method][-1]:.2f}", flush=True)
    for method in args.methods:
        print(f"ratio wall time {method} over best-of-N (worst of N={args.budgets}): {max(ratios[method]):.2f}")
    worst = max(args.methods, key=lambda m: max(ratios[m]))
    n_worst = args.budgets[ratios[worst].index(max(ratios[worst]))]
    print(f"ratio wall time search over best-of-N (worst method and N: {worst}, N={n_worst}): {max(ratios[worst]):.2f}")

if __name__ == "__main__":
    main()
