"""Greedy generations of two backends on the same prompts, compared: vLLM against transformers on a GPU.

    python bench/backend_agreement.py --model default --problems arith --num_problems 16      # on a CUDA machine
    python bench/backend_agreement.py --backends transformers transformers --num_problems 4  # the check itself, CPU

Each backend is built as the stages build it (`ttstrain.stages.stage_generator` on a `SampleConfig`: the same
model name, dtype and prompt format), one after the other (the first is freed before the second starts).
Every problem's prompt is continued greedily in step mode (the first step) and in solution mode (the whole
solution), and the two backends' (text, finish_reason, num_tokens) are compared. Both run in --dtype float32
by default: bf16 kernels of the two backends round differently and split near-ties of greedy decoding
differently. Writes the mismatches to --output and ends with one line
`ratio agreeing over compared: X`; exits 1 when X is below --min_agreement.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from pathlib import Path

import torch

from ttstrain.generation import SamplingParams
from ttstrain.prompts import format_prompt
from ttstrain.stages import stage_generator, stage_problems, stage_prompt_format
from ttstrain.stages.sample import SampleConfig


def greedy_rows(backend: str, args) -> tuple[list[tuple], dict]:
    """(prompt index, mode, text, finish_reason, num_tokens) of every greedy continuation, and the generator's identity."""
    cfg = SampleConfig(backend=backend, model_name_or_path=args.model, problems=args.problems, split=args.split,
                       limit=args.num_problems, per_level=args.per_level, dtype=args.dtype, device=args.device,
                       gpu_memory_utilization=args.gpu_memory_utilization if backend == "vllm" else None,
                       prompt_format=args.prompt_format)
    generator = stage_generator(cfg)
    fmt = stage_prompt_format(cfg, generator)
    prompts = [format_prompt(p["question"], fmt) for p in stage_problems(cfg)]
    rows = []
    for mode, max_new in (("step", args.max_step_tokens), ("solution", args.max_new_tokens)):
        params = SamplingParams(n=1, temperature=0.0, max_new_tokens=max_new, stop=mode, step_format=fmt.steps)
        for i, res in enumerate(generator.generate(prompts, params)):
            c = res.completions[0]
            rows.append((i, mode, c.text, c.finish_reason, c.num_tokens))
    identity = generator.identity()
    if hasattr(generator, "close"):
        generator.close()
    del generator
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return rows, identity


def make_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", nargs=2, default=["transformers", "vllm"])
    ap.add_argument("--model", default="default")
    ap.add_argument("--problems", default="arith")
    ap.add_argument("--split", default="test")
    ap.add_argument("--per_level", type=int, default=4)
    ap.add_argument("--num_problems", type=int, default=16)
    ap.add_argument("--prompt_format", default="auto")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--device", default="auto", help="The transformers backend's device.")
    ap.add_argument("--gpu_memory_utilization", type=float, default=0.6)
    ap.add_argument("--max_step_tokens", type=int, default=64)
    ap.add_argument("--max_new_tokens", type=int, default=256)
    ap.add_argument("--min_agreement", type=float, default=0.9)
    ap.add_argument("--output", default=None)
    return ap


def main(argv=None) -> int:
    args = make_parser().parse_args(argv)

    (a, id_a), (b, id_b) = (greedy_rows(backend, args) for backend in args.backends)
    if [r[:2] for r in a] != [r[:2] for r in b]:
        raise RuntimeError("the two backends were given different prompts")
    mismatches = [{"prompt": ra[0], "mode": ra[1], args.backends[0]: ra[2:], args.backends[1]: rb[2:]}
                  for ra, rb in zip(a, b) if ra[2:] != rb[2:]]
    agreeing = len(a) - len(mismatches)
    for mode in ("step", "solution"):
        n = sum(r[1] == mode for r in a)
        bad = sum(m["mode"] == mode for m in mismatches)
        print(f"{mode:8s}: {n - bad}/{n} continuations agree (text, finish reason, tokens)")
    for m in mismatches[:5]:
        print("mismatch:", json.dumps(m)[:400])
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps({"generators": [id_a, id_b], "compared": len(a),
                                                 "agreeing": agreeing, "mismatches": mismatches}, indent=1))
    ratio = agreeing / max(len(a), 1)
    print(f"ratio agreeing over compared: {ratio:.3f}")
    return 0 if ratio >= args.min_agreement else 1


if __name__ == "__main__":
    sys.exit(main())
