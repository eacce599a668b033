"""Benchmark: what PRM training time depends on on a CPU: the SIMD kernel path, or attention dropout.

Issue #38 saw a 2-core AMD EPYC with AVX2 and no AVX-512 run the demo's PRM training, scoring and
search about twice as long as the AVX-512 machines, sampling and labelling not. This benchmark runs
the bare PRM training loop of `bench/train_prm.py` (the default world's body with a value head,
forward, backward, AdamW over packed batches of gold solutions with random soft labels), each
variant in its own process, on this machine:

kernels  `native` (what torch picks here) against `avx2`: ATen's kernels capped at AVX2
         (`ATEN_CPU_CAPABILITY=avx2`), MKL's too (`MKL_ENABLE_INSTRUCTIONS=AVX2`) and oneDNN's
         (`ONEDNN_MAX_CPU_ISA=AVX2`): the code paths an AVX2-only machine runs, on this machine's cores.
dropout  the body's attention dropout at the PRM default (0.05, Snell et al.'s dropout) against 0.
         With dropout > 0, `scaled_dot_product_attention` on CPU leaves its fused (flash) kernel for
         the math path: it materialises every row's length x length attention weights and draws a
         Bernoulli mask over all of them.

It prints each variant's seconds and the seconds spent inside scaled_dot_product_attention's forward,
then the kernel ratio, and last the dropout ratio.

    python bench/cpu_paths.py                    # 160 rows, batch 16, 4 variants (~2 min on 2 cores)
    python bench/cpu_paths.py --rows 320 --variants native:0.05 native:0.0
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

KERNEL_ENV = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
}
DEFAULT_VARIANTS = ("native:0.05", "avx2:0.05", "native:0.0", "avx2:0.0")


def run_variant(rows: int, batch_size: int, model_dropout: float, seed: int) -> dict:
    """The bare training loop of bench/train_prm.py at the given attention dropout, timed."""
    import torch
    import torch.nn.functional as F

    from train_prm import bare_batches, bare_train, bench_rows, real_tokens
    from ttstrain.models import load_tokenizer, resolve_model
    from ttstrain.prm.trainer import load_prm_model

    data = bench_rows(rows, seed)
    tokens = real_tokens(data, load_tokenizer(resolve_model("default")))
    torch.manual_seed(seed)
    model, tok = load_prm_model("default", model_dropout=model_dropout)
    model.train()
    batches = bare_batches(data, tok, batch_size, seed)

    sdpa_seconds = [0.0]
    fused = F.scaled_dot_product_attention

    def timed_sdpa(*a, **kw):
        t = time.perf_counter()
        out = fused(*a, **kw)
        sdpa_seconds[0] += time.perf_counter() - t
        return out

    F.scaled_dot_product_attention = timed_sdpa  # transformers' sdpa integration calls it through F
    seconds = bare_train(model, batches)
    return {"seconds": round(seconds, 2), "sdpa_forward_seconds": round(sdpa_seconds[0], 2), "tokens": tokens,
            "capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=160)
    ap.add_argument("--batch_size", type=int, default=16, help="Rows per optimizer step (the demo's PRM: 16).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", nargs="*", default=list(DEFAULT_VARIANTS),
                    help="KERNELS:DROPOUT pairs; KERNELS is native or avx2.")
    ap.add_argument("--worker", nargs=2, metavar=("KERNELS", "DROPOUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(run_variant(args.rows, args.batch_size, float(args.worker[1]), args.seed)))
        return

    from ttstrain.machine_facts import machine_facts

    print("machine_facts", json.dumps(machine_facts()), flush=True)
    results = {}
    for variant in args.variants:
        kernels, dropout = variant.split(":")
        env = {**os.environ, **KERNEL_ENV[kernels]}
        cmd = [sys.executable, __file__, "--worker", kernels, dropout, "--rows", str(args.rows),
               "--batch_size", str(args.batch_size), "--seed", str(args.seed)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-3000:])
            raise SystemExit(f"variant {variant} failed (exit {proc.returncode})")
        results[(kernels, float(dropout))] = r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"kernels={kernels:6s} (ATen {r['capability']}) attention dropout={float(dropout):<4} "
              f"{r['seconds']:7.2f} s ({r['tokens'] / r['seconds']:7.1f} tokens/s), "
              f"of which attention forward {r['sdpa_forward_seconds']:6.2f} s", flush=True)

    def ratio(a, b):
        return results[a]["seconds"] / results[b]["seconds"] if a in results and b in results else None

    kernel_ratio = ratio(("avx2", 0.05), ("native", 0.05))
    if kernel_ratio is not None:
        print(f"ratio training seconds avx2 kernels over native (dropout 0.05): {kernel_ratio:.2f}")
    dropout_ratio = ratio(("native", 0.05), ("native", 0.0))
    if dropout_ratio is not None:
        print(f"ratio training seconds attention dropout 0.05 over 0: {dropout_ratio:.2f}")


if __name__ == "__main__":
    main()
