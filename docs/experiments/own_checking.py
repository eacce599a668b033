"""Experiment: what a world policy's own temperature-1 slips look like, and how well its `Check:` head
judges them, against the synthetic mistakes of the checking mixture (ttstrain.world_builder.checking).

Prints (1) where the policy's own arithmetic first errors differ from the right result (only above
the units digit, only the units, a length change; off by +-10 or +-20), (2) mean P(wrong) after the
first wrong step of its own samples by kind and operation, and after right steps, (3) the same for
one synthetic mistake injected per test problem, by kind, under the chosen slip model.

    python docs/experiments/own_checking.py --model default --per_level 20 --samples 8 --slips any_digit
"""
import argparse
import random
from collections import Counter, defaultdict

import torch

from ttstrain.generation.hf import HFGenerator
from ttstrain.models import load_causal_lm, load_tokenizer
from ttstrain.generation.sampling import sample_solutions
from ttstrain.steps import join_steps, split_steps
from ttstrain.world_builder.checking import check_scores, wrong_step
from ttstrain.world.task import ArithmeticProblem, apply_op, first_error, parse_question, problems_split


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="default"); p.add_argument("--per_level", type=int, default=20)
    p.add_argument("--samples", type=int, default=8); p.add_argument("--slips", default="any_digit")
    p.add_argument("--seed", type=int, default=11)
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    gen = HFGenerator(load_causal_lm(args.model), load_tokenizer(args.model), model_name=args.model)
    rows = sample_solutions(gen, problems_split("test", args.per_level, args.seed), n=args.samples, temperature=1.0,
                            seed=args.seed, desc="own samples", progress=False)
    scores = check_scores(gen.model, gen.tokenizer, rows)

    shape, own_wrong, own_right = Counter(), defaultdict(list), []
    for r, s in zip(rows, scores):
        err = None if r["correct"] else first_error(r["question"], r["completion"])
        steps = split_steps(r["completion"])
        upto = len(s) if err is None else min(err.step + 1, len(s))
        own_right += s[:upto - (err is not None and err.step < len(s))]
        if err is None or err.step >= len(s):
            continue
        step = steps[err.step]
        op = "answer" if "boxed" in step else (step.split()[1] if len(step.split()) > 2 else "?")
        own_wrong[(err.kind, op)].append(s[err.step])
        if err.kind != "arithmetic":
            continue
        try:
            lhs, written = step.split(" = "); a, op, x = lhs.split(); a, x, written = int(a), int(x), int(written)
        except ValueError:
            shape["unparsed"] += 1
            continue
        right = apply_op(a, op, x)
        shape["all"] += 1
        if len(str(right)) != len(str(written)):
            shape["length changed"] += 1
        elif written % 10 == right % 10:
            shape["only above the units"] += 1
        elif written // 10 == right // 10:
            shape["only the units"] += 1
        else:
            shape["units and above"] += 1
        shape["off by 10 or 20"] += abs(written - right) in (10, 20)

    n = shape.pop("all")
    print(f"own arithmetic first errors: {n}")
    for k, v in shape.most_common():
        print(f"  {k}: {v} ({v / n:.2f})")
    mean = lambda v: f"{sum(v) / len(v):.2f} (n={len(v)})"
    print("own samples, P(wrong) after the first wrong step:")
    for k in sorted(own_wrong):
        print(f"  {k}: {mean(own_wrong[k])}")
    print(f"  right steps: {mean(own_right)}")

    rng, synth_rows, kinds = random.Random(0), [], []
    for q in problems_split("test", 60, 3):
        start, ops = parse_question(q["question"])
        prob = ArithmeticProblem(id="", level=q["level"], start=start, ops=tuple(ops))
        gold = prob.gold_steps()
        i = rng.randrange(len(gold))
        kind, text = wrong_step(rng, prob, i, args.slips)
        synth_rows.append({"question": q["question"], "completion": join_steps(gold[:i] + [text])})
        kinds.append((kind, i))
    synth_wrong, synth_right = defaultdict(list), []
    for (kind, i), s in zip(kinds, check_scores(gen.model, gen.tokenizer, synth_rows)):
        synth_wrong[kind].append(s[i]); synth_right += s[:i]
    print(f"synthetic mistakes ({args.slips} slips), P(wrong) at the mistake:")
    for k in sorted(synth_wrong):
        print(f"  {k}: {mean(synth_wrong[k])}")
    print(f"  right steps before them: {mean(synth_right)}")


if __name__ == "__main__":
    main()
