"""Benchmark: PRM training throughput, ttstrain's trainer against TRL's and against a bare loop.

Same tiny model (the default world's 1.2M-parameter Llama body with a token head), same labelled
rows (gold solutions of training problems of the arithmetic world, levels 1-5, with seeded random
soft labels: only speed is measured here), same rows per optimizer step, one epoch:

(a) ttstrain  `ttstrain.prm.trainer.PRMTrainer` (packed rows, float soft labels at step ends).
(b) trl       `trl.experimental.prm.PRMTrainer` (trl 1.13.0) on the hard-labelled export of the same
              rows (`ttstrain.converters.to_trl_stepwise_hard`), a 2-label token classifier, at TRL's
              defaults apart from batch size, steps, saving and logging. Also run as (b') with
              `bf16=False`, to show where its time goes (see the README).
(c) bare      a PyTorch forward/backward/AdamW loop over the same rows packed in advance with
              `build_batch`: no Trainer, no data loader; the practical ceiling.

Each contender runs in its own process so peak memory (max RSS on CPU, max allocated on CUDA) is
its own. It prints real (non-padding) tokens per second, peak memory and the ratios.

    python bench/train_prm.py                    # 320 rows, batch 16, all contenders (~3 min on 2 cores)
    python bench/train_prm.py --rows 160 --skip trl_fp32
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time

from ttstrain.prompts import format_prompt
from ttstrain.steps import step_end_positions
from ttstrain.world.task import sample_training_problem

# each contender imports its own libraries in its function: a process's peak memory is its contender's own
CONTENDERS = ("ttstrain", "trl", "trl_fp32", "bare")


def bench_rows(n: int, seed: int) -> list[dict]:
    """Labelled rows in ttstrain's schema: gold solutions of world training problems, random soft labels."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        p = sample_training_problem(rng, 1 + i % 5)
        steps = p.gold_steps()
        labels = [round(rng.random(), 3) for _ in steps]
        rows.append({"prompt": format_prompt(p.question), "completions": steps, "labels": labels,
                     "problem_id": f"bench-{i}", "sample_index": 0, "final_correct": True,
                     "hard_labels": [float(x >= 0.5) for x in labels]})
    return rows


def peak_memory_mb() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def real_tokens(rows, tokenizer) -> int:
    return sum(len(step_end_positions(tokenizer, r["prompt"], r["completions"]).input_ids) for r in rows)


def run_ttstrain(rows, batch_size: int, out: str) -> float:
    from datasets import Dataset

    from ttstrain.prm.config import PRMConfig
    from ttstrain.prm.trainer import PRMTrainer, load_prm_model

    model, tok = load_prm_model("default")
    args = PRMConfig(output_dir=out, per_device_train_batch_size=batch_size, gradient_accumulation_steps=1,
                     num_train_epochs=1, eval_strategy="no", save_strategy="no", load_best_model_at_end=False,
                     validation_fraction=0.0, report_to=[], logging_steps=10_000, disable_tqdm=True,
                     learning_rate=3e-5, seed=0)
    trainer = PRMTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    t0 = time.perf_counter()
    trainer.train()
    return time.perf_counter() - t0


def run_trl(rows, batch_size: int, out: str, bf16_default: bool) -> float:
    from datasets import Dataset
    from transformers import AutoModelForTokenClassification
    from trl.experimental.prm import PRMConfig, PRMTrainer

    from ttstrain.converters import to_trl_stepwise_hard
    from ttstrain.models import load_tokenizer, resolve_model

    path = resolve_model("default")
    tok = load_tokenizer(path)
    model = AutoModelForTokenClassification.from_pretrained(path, num_labels=2)
    import torch

    # TRL's configs default to bf16=True, which on a CPU machine needs use_cpu=True to start at all
    kw = {} if torch.cuda.is_available() else {"use_cpu": True}
    if not bf16_default:
        kw["bf16"] = False
    args = PRMConfig(output_dir=out, per_device_train_batch_size=batch_size, gradient_accumulation_steps=1,
                     num_train_epochs=1, eval_strategy="no", save_strategy="no", report_to=[],
                     logging_steps=10_000, disable_tqdm=True, learning_rate=3e-5, seed=0, **kw)
    data = Dataset.from_list([to_trl_stepwise_hard(r) for r in rows])
    trainer = PRMTrainer(model=model, args=args, train_dataset=data, processing_class=tok)
    print(f"[trl] bf16={trainer.args.bf16} max_length={trainer.args.max_length}", file=sys.stderr)
    t0 = time.perf_counter()
    trainer.train()
    return time.perf_counter() - t0


def bare_batches(rows, tok, batch_size: int, seed: int = 0) -> list:
    """(inputs, labels) per optimizer step: the rows shuffled by `seed`, packed `batch_size` at a time with
    `build_batch`, each row's soft labels at its step ends (-100 elsewhere)."""
    import torch

    from ttstrain.prm.batching import build_batch

    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    batches = []
    for b in range(0, len(order), batch_size):
        enc = [step_end_positions(tok, rows[i]["prompt"], rows[i]["completions"]) for i in order[b:b + batch_size]]
        inputs, where = build_batch([e.input_ids for e in enc], tok.pad_token_id)
        labels = torch.full(inputs["input_ids"].shape, -100.0)
        for e, i, (r, o) in zip(enc, order[b:b + batch_size], where):
            labels[r, torch.as_tensor(e.step_end_positions) + o] = torch.tensor(rows[i]["labels"])
        batches.append((inputs, labels))
    return batches


def bare_train(model, batches) -> float:
    """Seconds of forward, BCE at the step ends, backward and AdamW (lr 3e-5, betas 0.9/0.95) over `batches`."""
    import torch

    from ttstrain.prm.trainer import step_bce

    opt = torch.optim.AdamW(model.parameters(), lr=3e-5, betas=(0.9, 0.95))
    t0 = time.perf_counter()
    for inputs, labels in batches:
        loss_sum, count = step_bce(model(**inputs, use_cache=False).logits[..., 0], labels)
        (loss_sum / count).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def run_bare(rows, batch_size: int) -> float:
    import torch

    from ttstrain.prm.trainer import load_prm_model

    torch.manual_seed(0)
    model, tok = load_prm_model("default")
    model.train()
    return bare_train(model, bare_batches(rows, tok, batch_size))


def worker(name: str, n_rows: int, batch_size: int, seed: int) -> dict:
    from ttstrain.models import load_tokenizer, resolve_model

    rows = bench_rows(n_rows, seed)
    tokens = real_tokens(rows, load_tokenizer(resolve_model("default")))
    with tempfile.TemporaryDirectory() as out:
        if name == "ttstrain":
            seconds = run_ttstrain(rows, batch_size, out)
        elif name == "trl":
            seconds = run_trl(rows, batch_size, out, bf16_default=True)
        elif name == "trl_fp32":
            seconds = run_trl(rows, batch_size, out, bf16_default=False)
        elif name == "bare":
            seconds = run_bare(rows, batch_size)
        else:
            raise ValueError(name)
    return {"contender": name, "rows": n_rows, "real_tokens": tokens, "seconds": round(seconds, 2),
            "tokens_per_s": round(tokens / seconds, 1), "peak_memory_mb": round(peak_memory_mb(), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=320)
    ap.add_argument("--batch_size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", nargs="*", default=[], choices=CONTENDERS)
    ap.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.rows, args.batch_size, args.seed)))
        return
    results = {}
    for name in CONTENDERS:
        if name in args.skip:
            continue
        cmd = [sys.executable, __file__, "--worker", name, "--rows", str(args.rows),
               "--batch_size", str(args.batch_size), "--seed", str(args.seed)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-3000:])
            raise SystemExit(f"contender {name} failed (exit {proc.returncode})")
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        r = results[name]
        print(f"{name:9s} {r['real_tokens']} real tokens in {r['seconds']:7.2f} s = {r['tokens_per_s']:8.1f} tokens/s, "
              f"peak memory {r['peak_memory_mb']:.0f} MB", flush=True)
    if "ttstrain" in results and "trl" in results:
        print(f"ttstrain over trl (defaults): {results['ttstrain']['tokens_per_s'] / results['trl']['tokens_per_s']:.1f}x")
    if "ttstrain" in results and "trl_fp32" in results:
        print(f"ttstrain over trl (bf16=False): "
              f"{results['ttstrain']['tokens_per_s'] / results['trl_fp32']['tokens_per_s']:.1f}x")
    if "ttstrain" in results and "bare" in results:
        print(f"ratio tokens/s ttstrain over bare loop: "
              f"{results['ttstrain']['tokens_per_s'] / results['bare']['tokens_per_s']:.2f}")


if __name__ == "__main__":
    main()
