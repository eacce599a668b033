"""Benchmark: label-mc on the process and Ray executors against the local one, same job, same machine.

Runs one `ttstrain label-mc` job on the default world (the shipped policy, transformers backend,
CPU) three times, each as its own process into a fresh folder:

local     `--executor local`: one process, torch at N threads (OMP/MKL_NUM_THREADS=N, default 2),
          the chunks one after another.
processes `--executor processes --num_workers N`: the policy loaded once, N processes of 1 thread
          forked from the command's, chunks handed to whichever is free.
ray       `--executor ray --num_workers N --cpus_per_worker 1`: a local Ray cluster started by the
          command, N actors of 1 thread each, each holding its own policy, chunks handed to
          whichever is free.

Wall time is the whole command (process start, imports, Ray's start-up and shutdown, model
loads, the chunks, the merge). The merged rows (`data/train-*.parquet`) of every run must equal
the local run's: every draw is keyed by the chunk's problems and the seed, not by the process; the
script exits non-zero when they are not. It prints each run's time inside the runner (the
`[label-mc] ... in X s` line), the workers' throughput (from summary.json, else from that line),
`ratio wall time ray over local: X`, and ends with `ratio wall time processes over local: X`.
Target for processes: < 1 (what `ttstrain pipeline --executor auto` assumes when it picks them).
Target for Ray: <= 1.15 on 2 cores: the same cores as workers of
one thread instead of one process of two threads should cost no more than Ray's start-up (about
10 s: the cluster, and each worker loading its own policy); decoding this small policy gains only
part of a second thread, so the workers may well be faster.

    python bench/executor.py                     # ~6 min on 2 cores: 40 problems in 10 chunks, 8 x 8
    python bench/executor.py --quick             # ~35 s: 2 problems, 2 samples, 2 rollouts (a smoke test)
    python bench/executor.py --executors processes   # local and processes only (no Ray needed)
    python bench/executor.py --per_level 4 --num_samples 4 --num_rollouts 4 --workers 2
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ttstrain.io import read_parquet
from ttstrain.machine_facts import machine_facts

RUNNER_LINE = re.compile(r"^\[label-mc\] (\{.*\}) in ([0-9.]+) s$", re.M)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def job_args(args, out_dir: Path) -> list[str]:
    return ["label-mc", "--model_name_or_path", "default", "--backend", "transformers", "--device", "cpu",
            "--per_level", str(args.per_level), "--levels", *map(str, args.levels),
            "--num_samples", str(args.num_samples), "--num_rollouts", str(args.num_rollouts),
            "--problems_per_chunk", str(args.problems_per_chunk), "--seed", str(args.seed),
            "--output_dir", str(out_dir)]


def run(name: str, cmd: list[str], env: dict) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-4000:])
        raise SystemExit(f"{name} run failed (exit {proc.returncode}): {' '.join(cmd)}")
    return seconds, proc.stdout


def runner_record(stdout: str) -> tuple[dict, float | None]:
    """The runner's `[label-mc] {counters} in X s` line: its counters and seconds (None where absent)."""
    m = RUNNER_LINE.search(stdout)
    return (ast.literal_eval(m.group(1)), float(m.group(2))) if m else ({}, None)


def merged_rows(out_dir: Path) -> list[dict]:
    rows: list[dict] = []
    for path in sorted((out_dir / "data").glob("train-*.parquet")):
        rows += read_parquet(path)
    return rows


def first_difference(a: list[dict], b: list[dict]) -> str:
    if len(a) != len(b):
        return f"{len(a)} rows vs {len(b)}"
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            keys = sorted(k for k in set(x) | set(y) if x.get(k) != y.get(k))
            return (f"row {i} (problem {x.get('problem_id')}, sample {x.get('sample_index')}) differs in {keys}; "
                    f"{sum(p != q for p, q in zip(a, b))} of {len(a)} rows differ")
    return "equal"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="A tiny job (seconds): levels 1 2, 1 problem each, "
                    "2 samples, 2 rollouts; for a smoke test.")
    ap.add_argument("--per_level", type=int, default=8, help="Problems per level.")
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    ap.add_argument("--num_samples", type=int, default=8)
    ap.add_argument("--num_rollouts", type=int, default=8)
    ap.add_argument("--problems_per_chunk", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2, help="Processes and Ray workers of 1 thread; the local run "
                    "gets as many threads.")
    ap.add_argument("--executors", nargs="+", default=["processes", "ray"], choices=["processes", "ray"],
                    help="What to time against the local run (each in its own process, one after another).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", help="Write the runs under this folder (kept) instead of a temporary one.")
    args = ap.parse_args()
    if args.quick:
        args.per_level, args.levels, args.num_samples, args.num_rollouts, args.problems_per_chunk = 1, [1, 2], 2, 2, 1

    print("machine_facts", json.dumps(machine_facts()), flush=True)
    problems = args.per_level * len(args.levels)
    print(f"job: label-mc, {problems} problems in {-(-problems // args.problems_per_chunk)} chunks, "
          f"{args.num_samples} samples, {args.num_rollouts} rollouts, seed {args.seed}", flush=True)
    verdicts = {}
    with tempfile.TemporaryDirectory(prefix="bench-executor-") as tmp:
        root = Path(args.keep or tmp)
        base = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
        workers = ["--num_workers", str(args.workers), "--cpus_per_worker", "1"]
        options = {
            "local": ([], {**base, **{k: str(args.workers) for k in THREAD_VARIABLES}}),
            # each forked process sets itself to 1 thread
            "processes": (["--executor", "processes", *workers], base),
            # Ray sets each worker's threads from its CPUs (and the actor calls torch.set_num_threads(1))
            "ray": (["--executor", "ray", *workers], base),
        }
        wall, records = {}, {}
        for name in ["local", *args.executors]:
            extra, env = options[name]
            out = root / name
            if out.exists():
                raise SystemExit(f"{out} exists: give --keep a fresh folder")
            cmd = [sys.executable, "-m", "ttstrain.cli", *job_args(args, out), *extra]
            wall[name], stdout = run(name, cmd, env)
            records[name], in_runner = runner_record(stdout)
            summary = json.loads((out / "summary.json").read_text())
            inside = f"{in_runner:.1f} s in the runner" if in_runner is not None else "runner time not printed"
            print(f"{name:9s} wall {wall[name]:7.1f} s ({inside}); {summary.get('rows')} rows, "
                  f"{summary.get('steps_labelled')} steps labelled, {summary.get('generated_tokens')} tokens "
                  f"generated, {summary.get('seconds')} s summed over chunks", flush=True)
            records[name]["summary"] = summary
        local_rows = merged_rows(root / "local")
        for name in args.executors:
            rows = merged_rows(root / name)
            verdicts[name] = first_difference(local_rows, rows)
            print(f"merged rows equal, {name} and local: {verdicts[name] == 'equal'} ({len(local_rows)} local, "
                  f"{len(rows)} {name}" + ("" if verdicts[name] == "equal" else f"; {verdicts[name]}") + ")", flush=True)
            found, source = records[name]["summary"].get("workers"), "summary.json"
            if found is None:
                found, source = records[name].get("workers"), "the runner's line; summary.json has none"
            if found:
                print(f"{name} workers ({source}):")
                for w in found:
                    print(f"  {w['worker']}: {w['chunks']} chunks, {w['problems']} problems, {w['seconds']:.1f} s, "
                          f"{w['generated_tokens']} tokens, {w['generated_tokens_per_s']:.1f} tokens/s")
            else:
                print(f"{name} workers: no per-worker throughput recorded")
    for name in args.executors:  # the last line is the first executor asked for (processes by default)
        if name != args.executors[0]:
            print(f"ratio wall time {name} over local: {wall[name] / wall['local']:.2f}")
    print(f"ratio wall time {args.executors[0]} over local: {wall[args.executors[0]] / wall['local']:.2f}")
    if any(v != "equal" for v in verdicts.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
