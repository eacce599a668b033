"""Benchmark: Monte Carlo labelling, ttstrain's labeller against a naive one, same problems and seed.

(a) ttstrain: `label_chunk` on the transformers backend: every step prefix of the chunk in one
    call, each distinct prefix prefilled once and its KV cache shared by its rollouts, finished
    rows leaving the batch; with the prefix cache (label-mc's default) a prefix prefills only the
    step it adds to the shorter prefix before it. Run both ways: the share of prompt prefill
    avoided before and after the cache, and their labels, which must agree.
(b) naive: for every sample, every step prefix and every rollout, one generation call of batch 1
    with the whole prefix recomputed (what a loop around `model.generate` does).
Both draw the same per-continuation random streams, so they must give identical labels; the
benchmark checks it and prints labelled steps per second of each and their ratio.

    python bench/mc_label.py                         # default world, 2 problems/level, 4 samples, 8 rollouts
    python bench/mc_label.py --per_level 4 --rollouts 16
"""

from __future__ import annotations

import argparse
import time

from ttstrain.generation.base import PromptResult, SamplingParams
from ttstrain.generation.hf import HFGenerator
from ttstrain.answers.grading import extract_answer, is_equivalent
from ttstrain.labeling.mc import MCSettings, label_chunk, rollout_correct
from ttstrain.problems import load_problems
from ttstrain.prompts import format_prompt
from ttstrain.steps import join_steps, prefix_text, split_steps


class NaiveGenerator(HFGenerator):
    """One continuation per call, prefix recomputed every time: the baseline's generator."""

    def one(self, prompt: str, index: int, params: SamplingParams):
        encoded = [self.tokenizer(prompt)["input_ids"]]
        self._streams = [0]  # stream 0, as in label_chunk
        result = [PromptResult(prompt=prompt, prompt_tokens=len(encoded[0]), completions=[None] * params.n)]
        prefill = self._generate_batch([(0, index)], [prompt], encoded, params, result)
        self.stats.prefill_tokens += prefill
        self.stats.generated_tokens += result[0].completions[index].num_tokens
        return result[0].completions[index]


def naive_labels(gen: NaiveGenerator, problems, s: MCSettings) -> list[dict]:
    sample_params = SamplingParams(n=s.num_samples, temperature=s.temperature, max_new_tokens=s.max_new_tokens, seed=s.seed)
    rollout_params = SamplingParams(n=s.num_rollouts, temperature=s.rollout_temperature,
                                    max_new_tokens=s.max_new_tokens, seed=s.seed + 1)
    rows = []
    for p in problems:
        prompt = format_prompt(p["question"])
        for j in range(s.num_samples):
            steps = split_steps(gen.one(prompt, j, sample_params).text)
            if not steps or extract_answer(join_steps(steps)) is None:
                continue
            correct = is_equivalent(extract_answer(join_steps(steps)), p["answer"])
            labels = []
            for i in range(1, len(steps)):
                pp = prompt + prefix_text(steps, i)
                hits = sum(rollout_correct(pp, gen.one(pp, r, rollout_params).text, p["answer"])
                           for r in range(s.num_rollouts))
                labels.append(hits / s.num_rollouts)
            rows.append({"problem_id": p["id"], "sample_index": j, "labels": labels + [float(correct)]})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model_name_or_path", default="default")
    ap.add_argument("--per_level", type=int, default=2)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--rollouts", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prefix_cache_mb", type=int, default=512)
    args = ap.parse_args()

    problems = load_problems("arith", "train", per_level=args.per_level, seed=args.seed)
    settings = MCSettings(num_samples=args.samples, num_rollouts=args.rollouts, seed=args.seed)

    # before: prompts of one call share nothing across batches; after: each prefix prefills only the step it
    # adds to the shorter prefix before it (label-mc's default, --prefix_cache_mb)
    before = HFGenerator(args.model_name_or_path)
    t0 = time.time()
    rows_before, _ = label_chunk(before, problems, settings)
    before_s = time.time() - t0
    fast = HFGenerator(args.model_name_or_path)
    t0 = time.time()
    with fast.fresh_prefix_cache(args.prefix_cache_mb << 20):
        rows, counters = label_chunk(fast, problems, settings)
    fast_s = time.time() - t0

    naive = NaiveGenerator(args.model_name_or_path)
    t0 = time.time()
    baseline = naive_labels(naive, problems, settings)
    naive_s = time.time() - t0

    ours = {(r["problem_id"], r["sample_index"]): r["labels"] for r in rows}
    theirs = {(r["problem_id"], r["sample_index"]): r["labels"] for r in baseline}
    same = sum(ours.get(k) == v for k, v in theirs.items())
    steps = sum(len(v) for v in ours.values())
    print(f"problems {len(problems)}, samples kept {len(ours)}, labelled steps {steps}, rollouts {counters['rollouts']} "
          f"(naive: {sum(len(v) - 1 for v in theirs.values()) * args.rollouts})")
    print(f"identical labels: {same}/{len(theirs)} samples" + ("" if same == len(theirs) and set(ours) == set(theirs)
                                                              else "  <-- MISMATCH"))
    same_cache = sum(r["labels"] == q["labels"] for r, q in zip(rows, rows_before))
    print(f"prefix cache off vs on: identical labels {same_cache}/{len(rows)} samples"
          + ("" if same_cache == len(rows) == len(rows_before) else "  <-- MISMATCH"))
    print(f"ttstrain, prefix cache off: {before_s:.1f} s, {steps / before_s:.2f} labelled steps/s, prefilled "
          f"{before.stats.prefill_tokens} of {before.stats.prompt_tokens} requested prompt tokens "
          f"({1 - before.stats.prefill_tokens / before.stats.prompt_tokens:.1%} avoided)")
    print(f"ttstrain: {fast_s:.1f} s, {steps / fast_s:.2f} labelled steps/s, "
          f"{fast.stats.generated_tokens / fast_s:.0f} generated tokens/s, prefilled {fast.stats.prefill_tokens} of "
          f"{fast.stats.prompt_tokens} requested prompt tokens ({1 - fast.stats.prefill_tokens / fast.stats.prompt_tokens:.1%} avoided)")
    print(f"naive:    {naive_s:.1f} s, {steps / naive_s:.2f} labelled steps/s, "
          f"{naive.stats.generated_tokens / naive_s:.0f} generated tokens/s, prefilled {naive.stats.prefill_tokens} tokens")
    print(f"ratio prefill tokens prefix cache on over off: {fast.stats.prefill_tokens / before.stats.prefill_tokens:.2f}")
    print(f"ratio labelled steps/s ttstrain over naive: {naive_s / fast_s:.2f}")


if __name__ == "__main__":
    main()
