"""Benchmark: generated tokens/s of the transformers backend (`HFGenerator`) vs a bare `model.generate` loop.

Issue #38: SmolLM2-135M-Instruct sampled on CPU at about 47 tokens/s (prefill included) with
`recipes/smollm2-135m/sample/config_arith1.yaml`. This benchmark builds the prompts exactly as the
sample stage does from a recipe (default that one: chat format, 4 worked examples, levels 1-3 of the
arithmetic world), loads the policy once, and in the same process runs

ttstrain  `HFGenerator.generate` over all prompts, `--num_samples` continuations each, at most
          `--batch` rows per forward (its `max_batch_rows`); each prompt prefilled once per batch.
bare      `model.generate` (HF's own DynamicCache, left padding, `num_return_sequences`) over
          `--batch // --num_samples` prompts at a time, with the same temperature and top_p (top_k
          off), max_new_tokens, the model's end-of-sequence ids and the blank line as a stop string.

Both count the same thing: per continuation, the tokens up to and including the one that stopped
it (end-of-sequence, or the step format's blank line, `StepFormat.find_stop`), capped at
max_new_tokens; the tokens the bare loop computes past a row's stop while other rows go on are
printed but not counted. Timings include prefill and every per-step Python cost. The two are
interleaved one batch of prompts at a time (`--batch // --num_samples` prompts; which side goes first
alternates), after a short warm-up of each, so both see the same load on a shared machine; each
side's figure is its tokens over its seconds, summed over all batches and `--repeats` rounds. The
machine's facts are printed first.

    python bench/generate_speed.py                                  # 12 prompts x 8 samples, ~2 min on 2 cores
    python bench/generate_speed.py --prompts 24 --batch 32 --repeats 2
    ATEN_CPU_CAPABILITY=avx2 python bench/generate_speed.py         # an AVX2-only machine's kernels
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time

import torch

from ttstrain.generation.base import SamplingParams
from ttstrain.machine_facts import machine_facts
from ttstrain.prompts import format_prompt, step_format_of

DEFAULT_CONFIG = "recipes/smollm2-135m/sample/config_arith1.yaml"


def load_sample_stage(config: str, n_prompts: int, levels=(), dtype: str | None = None):
    """(model, tokenizer, sample config, prompt format, problems) of `ttstrain sample --config <config>`:
    the policy on CPU and its first `n_prompts` test problems, prompts built as the stage builds them."""
    from ttstrain.models import load_causal_lm, load_tokenizer, resolve_model
    from ttstrain.stages import stage_problems, stage_prompt_format
    from ttstrain.stages.sample import make_parser

    argv = ["--config", config, "--output_dir", "/tmp/bench_sample_unused"]
    if levels:
        argv += ["--levels", *[str(x) for x in levels]]
    (cfg,) = make_parser().parse_args_and_config(argv)
    cfg.per_level = math.ceil(n_prompts / max(1, len(cfg.levels or [1])))
    path = resolve_model(cfg.model_name_or_path)
    tokenizer = load_tokenizer(path)
    model = load_causal_lm(path, dtype=dtype or cfg.dtype, device="cpu")

    class _Tok:  # what stage_prompt_format reads off a generator
        pass

    holder = _Tok()
    holder.tokenizer = tokenizer
    return model, tokenizer, cfg, stage_prompt_format(cfg, holder), stage_problems(cfg)[:n_prompts]


def build(args):
    """(model, tokenizer, prompts, sampling params) as `ttstrain sample --config ...` would have them."""
    model, tokenizer, cfg, shots, problems = load_sample_stage(args.config, args.prompts, args.levels or (),
                                                               args.dtype)
    if args.attn:
        model.set_attn_implementation(args.attn)
    prompts = [format_prompt(p["question"], shots) for p in problems]
    params = SamplingParams(n=args.num_samples, temperature=cfg.temperature, top_p=cfg.top_p,
                            max_new_tokens=args.max_new_tokens or cfg.max_new_tokens, stop="solution",
                            seed=cfg.seed, step_format=step_format_of(shots))
    return model, tokenizer, prompts, params, cfg


def run_ttstrain(gen, prompts, params, prefix_cache_mb: int) -> dict:
    t0 = time.perf_counter()
    with gen.fresh_prefix_cache(prefix_cache_mb << 20):
        before = gen.stats.prefill_tokens
        results = gen.generate(prompts, params)
        prefill = gen.stats.prefill_tokens - before
    seconds = time.perf_counter() - t0
    tokens = sum(c.num_tokens for r in results for c in r.completions)
    return {"seconds": seconds, "tokens": tokens, "computed": tokens, "prefill": prefill,
            "texts": [c.text for r in results for c in r.completions]}


def counted_tokens(ids: list[int], prompt: str, params: SamplingParams, token_text: list[str], eos: set[int]) -> int:
    """Tokens of one bare continuation up to and including the one where ttstrain's rule stops it."""
    text = ""
    for k, tok in enumerate(ids):
        if tok in eos:
            return k + 1
        text += token_text[tok]
        if params.step_format.find_stop(prompt, text, params.stop) is not None:
            return k + 1
    return len(ids)


def run_bare(model, tokenizer, prompts, params, batch: int, token_text: list[str], eos: list[int]) -> dict:
    """`model.generate` over `batch // n` prompts at a time, n return sequences each."""
    per_batch = max(1, batch // params.n)
    marker = params.step_format.end_marker
    kw = dict(do_sample=params.temperature > 0, max_new_tokens=params.max_new_tokens,
              num_return_sequences=params.n, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id or eos[0])
    if params.temperature > 0:
        kw.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
    if marker:
        kw.update(stop_strings=[marker], tokenizer=tokenizer)
    tokenizer.padding_side = "left"
    torch.manual_seed(params.seed)
    tokens = computed = prefill = 0
    t0 = time.perf_counter()
    for start in range(0, len(prompts), per_batch):
        chunk = prompts[start:start + per_batch]
        enc = tokenizer(chunk, return_tensors="pt", padding=True)
        with torch.inference_mode():
            out = model.generate(**enc, **kw)
        new = out[:, enc["input_ids"].shape[1]:].tolist()
        prefill += int(enc["attention_mask"].sum()) * params.n
        for r, ids in enumerate(new):
            tokens += counted_tokens(ids, chunk[r // params.n], params, token_text, set(eos))
            computed += len(ids)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "tokens": tokens, "computed": computed, "prefill": prefill}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=DEFAULT_CONFIG, help="Sample-stage recipe the prompts and sampling settings come from.")
    ap.add_argument("--prompts", type=int, default=12, help="Problems (split evenly over the levels).")
    ap.add_argument("--levels", type=int, nargs="*", default=[1, 2, 3], help="World levels (none: the recipe's).")
    ap.add_argument("--num_samples", type=int, default=8, help="Continuations per prompt.")
    ap.add_argument("--batch", type=int, default=32, help="Rows per batch: ttstrain's max_batch_rows; the bare loop "
                    "runs batch // num_samples prompts x num_samples sequences.")
    ap.add_argument("--max_new_tokens", type=int, default=None, help="Default: the recipe's.")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own).")
    ap.add_argument("--dtype", default=None, help="float32 or bfloat16 (default: the recipe's).")
    ap.add_argument("--attn", default=None, choices=["sdpa", "eager"], help="Attention implementation (default: the model's).")
    ap.add_argument("--prefix_cache_mb", type=int, default=0, help="ttstrain's prefix KV cache (what the sample stage runs: 0).")
    ap.add_argument("--repeats", type=int, default=1, help="Rounds over all prompts.")
    ap.add_argument("--skip", nargs="*", default=[], choices=["ttstrain", "bare"])
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print("machine_facts", json.dumps(machine_facts()), flush=True)

    from ttstrain.generation.base import eos_id_list
    from ttstrain.generation.hf import HFGenerator

    model, tokenizer, prompts, params, cfg = build(args)
    gen = HFGenerator(model, tokenizer, max_batch_rows=args.batch, model_name=cfg.model_name_or_path)
    eos = eos_id_list(tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None))
    eos = list(dict.fromkeys(eos))
    token_text = gen._stops.text
    lengths = [len(tokenizer(p)["input_ids"]) for p in prompts]
    print(f"{len(prompts)} prompts (mean {sum(lengths) / len(lengths):.0f} tokens) x {params.n} samples, batch "
          f"{args.batch} rows, max_new_tokens {params.max_new_tokens}, temperature {params.temperature}, top_p "
          f"{params.top_p}; torch {torch.__version__}, {torch.get_num_threads()} threads, cpu capability "
          f"{torch.backends.cpu.get_cpu_capability()}, dtype {model.dtype}, attention "
          f"{model.config._attn_implementation}", flush=True)

    warm = prompts[:1]
    wparams = dataclasses.replace(params, n=2, max_new_tokens=4)
    sides = {"ttstrain": lambda group: run_ttstrain(gen, group, params, args.prefix_cache_mb),
             "bare": lambda group: run_bare(model, tokenizer, group, params, args.batch, token_text, eos)}
    sides = {k: v for k, v in sides.items() if k not in args.skip}
    if "ttstrain" in sides:
        gen.generate(warm, wparams)  # warm-up: first-call costs (allocator, kernels) out of the timings
    if "bare" in sides:
        run_bare(model, tokenizer, warm, wparams, 2, token_text, eos)
    totals = {k: [0.0, 0] for k in sides}
    per_batch = max(1, args.batch // params.n)
    for rep in range(args.repeats):
        rounds = {k: {"seconds": 0.0, "tokens": 0, "computed": 0, "prefill": 0} for k in sides}
        for g, start in enumerate(range(0, len(prompts), per_batch)):
            group = prompts[start:start + per_batch]
            names = list(sides) if (g + rep) % 2 == 0 else list(reversed(sides))
            for name in names:
                r = sides[name](group)
                for key in rounds[name]:
                    rounds[name][key] += r[key]
        for name, r in rounds.items():
            totals[name][0] += r["seconds"]
            totals[name][1] += r["tokens"]
            extra = f" (computed {r['computed']})" if r["computed"] != r["tokens"] else ""
            print(f"{name:8s} round {rep + 1}: {r['tokens']} generated tokens{extra}, prefill {r['prefill']} tokens, "
                  f"{r['seconds']:.1f} s = {r['tokens'] / r['seconds']:.1f} generated tokens/s", flush=True)
    rates = {k: t / s for k, (s, t) in totals.items()}
    for name, rate in rates.items():
        print(f"{name}: {rate:.1f} generated tokens/s")
    if len(rates) == 2:
        print(f"ratio generated tokens/s ttstrain over bare generate: {rates['ttstrain'] / rates['bare']:.2f}")


if __name__ == "__main__":
    main()
