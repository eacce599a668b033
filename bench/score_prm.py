"""Benchmark: PRM scoring, one forward pass per solution against one forward pass per step prefix.

Solutions of 8 steps (7 arithmetic operations and the answer line, gold solutions of the default
world's task), scored by a PRM with the default world's body:

(a) ttstrain  `PRMScorer.score`: each solution tokenised once, every step end read from the same
              pass, solutions packed several per row.
(b) prefix    the common naive approach: for every step, the prompt and the steps up to it as a
              sequence of its own, scored at its last token (batched and right-padded, same batch size).
Both must give the same step scores (checked, to 1e-4); it prints steps scored per second of each.
A PRM trained with reference features is scored by its value head here (`use_reference_features=False`).

    python bench/score_prm.py                   # 64 solutions of 8 steps, batch 16
    python bench/score_prm.py --solutions 128 --steps 8 --prm_path runs/demo/prm
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from ttstrain.prm.scoring import PRMScorer
from ttstrain.prm.trainer import load_prm_model
from ttstrain.prompts import format_prompt
from ttstrain.world.task import LEVEL_SPECS, ArithmeticProblem, LevelSpec, draw_start_and_ops


def eight_step_solutions(n: int, num_ops: int, seed: int) -> tuple[list[str], list[list[str]]]:
    top = LEVEL_SPECS[max(LEVEL_SPECS)]
    spec = LevelSpec(num_ops, top.start_range, top.addsub_range, top.mul_range)  # the top level, longer
    rng = random.Random(seed)
    prompts, steps = [], []
    for i in range(n):
        start, ops = draw_start_and_ops(rng, spec)
        p = ArithmeticProblem(id=f"bench-{i}", level=5, start=start, ops=ops)
        prompts.append(format_prompt(p.question))
        steps.append(p.gold_steps())
    return prompts, steps


@torch.inference_mode()
def score_per_prefix(scorer, prompts: list[str], steps: list[list[str]], batch_size: int) -> list[list[float]]:
    seqs = []  # (solution index, token ids of prompt + steps[:k+1])
    for i, (p, s) in enumerate(zip(prompts, steps)):
        for k in range(len(s)):
            enc = scorer.tokenize(p, s[:k + 1])
            seqs.append((i, enc.input_ids[:enc.step_end_positions[-1] + 1]))
    out: list[list[float]] = [[] for _ in prompts]
    pad = scorer.pad_token_id
    for b in range(0, len(seqs), batch_size):
        chunk = seqs[b:b + batch_size]
        width = max(len(ids) for _, ids in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for r, (_, s) in enumerate(chunk):
            ids[r, :len(s)] = torch.as_tensor(s)
            mask[r, :len(s)] = 1
        logits = scorer.model(input_ids=ids, attention_mask=mask, use_cache=False).logits[..., 0]
        for r, (i, s) in enumerate(chunk):
            out[i].append(torch.sigmoid(logits[r, len(s) - 1]).item())
    return out


def load_scorer(prm: str | None, batch_size: int):
    if prm:
        # the value head: what the two approaches compute differently (a PRM with reference features adds the
        # same one pass of its reference model to either)
        return PRMScorer.from_pretrained(prm, batch_size=batch_size, use_reference_features=False)
    torch.manual_seed(0)
    model, tok = load_prm_model("default", head_dropout=0.0, model_dropout=0.0)
    return PRMScorer(model, tok, batch_size=batch_size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--solutions", type=int, default=64)
    ap.add_argument("--steps", type=int, default=8, help="steps per solution (operations + the answer line)")
    ap.add_argument("--batch_size", type=int, default=16)
    ap.add_argument("--prm_path", default=None, help="a trained PRM folder (default: the world body with a fresh head)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    scorer = load_scorer(args.prm_path, args.batch_size)
    prompts, steps = eight_step_solutions(args.solutions, args.steps - 1, args.seed)
    total_steps = sum(len(s) for s in steps)

    def timed(fn):
        fn()  # warm-up
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            result = fn()
            best = min(best, time.perf_counter() - t0)
        return result, best

    one, t_one = timed(lambda: scorer.score(prompts, steps))
    naive, t_naive = timed(lambda: score_per_prefix(scorer, prompts, steps, args.batch_size))
    worst = max(abs(a - b) for x, y in zip(one, naive) for a, b in zip(x, y))
    if worst > 1e-4:
        raise SystemExit(f"one-pass and per-prefix scores differ by {worst:.2e}")
    print(f"{args.solutions} solutions x {args.steps} steps, batch {args.batch_size}; scores agree (max diff {worst:.1e})")
    print(f"one pass    {total_steps / t_one:9.1f} steps/s ({t_one:.3f} s)")
    print(f"per prefix  {total_steps / t_naive:9.1f} steps/s ({t_naive:.3f} s)")
    print(f"ratio steps/s one-pass over per-prefix: {t_naive / t_one:.2f}")


if __name__ == "__main__":
    main()
