"""Benchmark: the likelihood baseline with its prompt cache against every sequence run whole.

`ttstrain eval-prm --likelihood_baseline` scores every test sample by the policy's own token
probabilities; the samples of a question share its prompt, and a real model's prompt (a chat template
with worked examples) is most of each sequence's tokens. Prompts as `ttstrain pipeline
recipes/smollm2-135m` builds them (its sample stage's YAML: SmolLM2-135M-Instruct, chat, two worked
examples, level 1), `--samples` solutions per prompt (the gold solution with its result and answer
moved by 0, 1, 2, ...: right and wrong answers of the same shape), scored in one call each way, as
eval-prm scores them:

whole   `LikelihoodScorer(..., prefix_cache_bytes=0)`: every sequence whole, packed.
cached  `LikelihoodScorer(...)` (the default): each wave of prompts once, each solution from it.

Both must give the same scores (checked, relative 1e-4). It prints seconds, the tokens each ran,
and the ratio.

    python bench/likelihood_cache.py                   # 6 prompts x 32 solutions (~2 min on 2 cores)
    python bench/likelihood_cache.py --prompts 12 --samples 16
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from ttstrain.machine_facts import machine_facts
from ttstrain.prm.likelihood_baseline import LikelihoodScorer
from ttstrain.prompts import format_prompt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from generate_speed import load_sample_stage  # noqa: E402  (bench/generate_speed.py)

CONFIG = "recipes/smollm2-135m/sample/config_pipeline.yaml"


def prompts_and_solutions(n_prompts: int, n_samples: int):
    """(prompt per sequence, steps per sequence, tokenizer, model) for the pipeline's sample stage."""
    model, tokenizer, _, shots, problems = load_sample_stage(CONFIG, n_prompts, dtype="float32")
    prompts, steps = [], []
    for p in problems:
        gold = p["solution"].split("\n")
        work, answer = gold[:-1], int(p["answer"])
        for k in range(n_samples):
            moved = answer + k
            body = [*work[:-1], work[-1].rsplit("= ", 1)[0] + f"= {moved}"] if work else []
            prompts.append(format_prompt(p["question"], shots))
            steps.append(body + [f"The answer is \\boxed{{{moved}}}."])
    return prompts, steps, tokenizer, model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=6)
    ap.add_argument("--samples", type=int, default=32, help="Solutions per prompt.")
    ap.add_argument("--batch_size", type=int, default=16, help="eval-prm's --prm_batch_size in the SmolLM2 recipe.")
    args = ap.parse_args()
    print("machine_facts", machine_facts(), flush=True)
    prompts, steps, tok, model = prompts_and_solutions(args.prompts, args.samples)
    torch.set_grad_enabled(False)
    results = {}
    for name, cache_bytes in (("whole", 0), ("cached", 256 << 20)):
        scorer = LikelihoodScorer(model, tok, batch_size=args.batch_size, prefix_cache_bytes=cache_bytes)
        t0 = time.perf_counter()
        scores = scorer.score(prompts, steps)
        seconds = time.perf_counter() - t0
        ran = scorer.prefix_cache.stats["tokens_computed"] if scorer.prefix_cache else scorer.stats["tokens"]
        results[name] = (seconds, scores)
        print(f"{name:6s} {len(prompts)} solutions in {seconds:6.2f} s, {ran} tokens run "
              f"(of {scorer.stats['tokens']} read)", flush=True)
    for a, b in zip(results["whole"][1], results["cached"][1]):
        assert torch.allclose(torch.tensor(a), torch.tensor(b), rtol=1e-4), (a, b)
    print("scores equal (relative 1e-4)")
    print(f"ratio seconds whole over cached: {results['whole'][0] / results['cached'][0]:.2f}")


if __name__ == "__main__":
    main()
