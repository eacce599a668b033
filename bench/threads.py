"""Benchmark: how much PRM training and sampling gain from the second CPU thread.

Issue #16 saw a machine of the same 2-core kind run the demo's training and scoring stages 2.3x
slower than another while sampling and labelling took the same time. This benchmark measures each
kind of work at 1 thread and at N threads (default 2) on this machine, each in its own process
(`torch.set_num_threads` and OMP/MKL_NUM_THREADS set before torch loads), on the default world:

train   the bare PRM training loop of `bench/train_prm.py` (forward, backward, AdamW over packed
        batches of gold solutions with random soft labels): large matmuls, where a second core pays.
sample  `HFGenerator.generate` at temperature 1 over world training problems (many small steps of
        decoding with Python work between them).

Work whose time falls by about N times with N threads is the work that slows by that much on a
machine whose N "cores" are in fact fewer (hyperthreads of one core, or a shared, throttled
host); work that barely gains from threads does not. Compare the `machine_facts` line printed
first (threads per core, MHz, SIMD flags) between two machines.

    python bench/threads.py                      # ~2 min on 2 cores
    python bench/threads.py --threads 2 --rows 320 --problems 40
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time

from ttstrain.generation import load_generator
from ttstrain.generation.base import SamplingParams
from ttstrain.machine_facts import machine_facts
from ttstrain.prompts import format_prompt
from ttstrain.world.task import sample_training_problem

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

WORKLOADS = ("train", "sample")


def run_sample(problems: int, num_samples: int, seed: int) -> tuple[float, int]:
    rng = random.Random(seed)
    prompts = [format_prompt(sample_training_problem(rng, 1 + i % 5).question) for i in range(problems)]
    gen = load_generator("transformers", model="default")
    t0 = time.perf_counter()
    results = gen.generate(prompts, SamplingParams(n=num_samples, temperature=1.0, seed=seed, max_new_tokens=320))
    seconds = time.perf_counter() - t0
    return seconds, sum(r.generated_tokens for r in results)


def worker(workload: str, threads: int, args) -> dict:
    import torch

    torch.set_num_threads(threads)
    if workload == "train":
        from train_prm import bench_rows, real_tokens, run_bare
        from ttstrain.models import load_tokenizer, resolve_model

        rows = bench_rows(args.rows, args.seed)
        tokens = real_tokens(rows, load_tokenizer(resolve_model("default")))
        seconds = run_bare(rows, args.batch_size)
    else:
        seconds, tokens = run_sample(args.problems, args.num_samples, args.seed)
    return {"workload": workload, "threads": torch.get_num_threads(), "seconds": round(seconds, 2),
            "tokens": tokens, "tokens_per_s": round(tokens / seconds, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="Thread count compared with 1.")
    ap.add_argument("--rows", type=int, default=320, help="Training rows (train).")
    ap.add_argument("--batch_size", type=int, default=32, help="Rows per optimizer step (train).")
    ap.add_argument("--problems", type=int, default=20, help="Prompts (sample).")
    ap.add_argument("--num_samples", type=int, default=8, help="Samples per prompt (sample).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workloads", nargs="*", default=list(WORKLOADS), choices=WORKLOADS)
    ap.add_argument("--worker", nargs=2, metavar=("WORKLOAD", "THREADS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), args)))
        return
    print("machine_facts", json.dumps(machine_facts()), flush=True)
    speedups = {}
    for workload in args.workloads:
        per = {}
        for threads in (1, args.threads):
            env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
            cmd = [sys.executable, __file__, "--worker", workload, str(threads), "--rows", str(args.rows),
                   "--batch_size", str(args.batch_size), "--problems", str(args.problems),
                   "--num_samples", str(args.num_samples), "--seed", str(args.seed)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                sys.stderr.write(proc.stderr[-3000:])
                raise SystemExit(f"{workload} at {threads} threads failed (exit {proc.returncode})")
            per[threads] = r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{workload:6s} threads={r['threads']} {r['tokens']} tokens in {r['seconds']:7.2f} s = "
                  f"{r['tokens_per_s']:8.1f} tokens/s", flush=True)
        speedups[workload] = per[args.threads]["tokens_per_s"] / per[1]["tokens_per_s"]
        print(f"{workload} speed-up {args.threads} threads over 1: {speedups[workload]:.2f}", flush=True)
    if set(speedups) == set(WORKLOADS):
        print(f"ratio training speed-up over sampling speed-up ({args.threads} threads over 1): "
              f"{speedups['train'] / speedups['sample']:.2f}")


if __name__ == "__main__":
    main()
