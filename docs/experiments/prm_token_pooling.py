"""Experiment: a PRM value head read at every token and pooled, against the head read at the step end.

The step-end head must judge a whole multi-digit result in one forward pass at the step's last
character. Here the same `score` head gives a logit at every token of the solution and a step's
value is a soft minimum of them, -log(mean(exp(-x))), over the step's own tokens (`--pool step`)
or over every solution token up to the step's end (`--pool prefix`); `--pool last` is the
project's head (the control). Same data, optimiser and early stopping for every mode: AdamW
(0.9, 0.95), 10 warmup steps then linear decay, batch 16, soft-label BCE, the epoch with the lowest
validation BCE kept (patience 2). Prints within-question AUROC (last / min / prod) and weighted
best-of-16 minus majority-of-16 on the test samples.

    python docs/experiments/prm_token_pooling.py --labels runs/demo/label_mc-24x8x8-seed0 \\
        --samples runs/demo/samples.parquet --pool prefix
"""
import argparse
import copy
import json
import random
import time

import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

from ttstrain.aggregation import aggregate
from ttstrain.prm.data import load_prm_rows, split_by_question
from ttstrain.prm.evaluation import bon_vs_majority, sample_prompt
from ttstrain.steps import step_end_positions
from ttstrain.prm.trainer import load_prm_model


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--labels", required=True); p.add_argument("--samples", required=True)
    p.add_argument("--pool", choices=["last", "step", "prefix"], default="prefix")
    p.add_argument("--model", default="default"); p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--epochs", type=int, default=8); p.add_argument("--bs", type=int, default=16)
    p.add_argument("--patience", type=int, default=2); p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    torch.manual_seed(a.seed); random.seed(a.seed); torch.set_num_threads(2)
    model, tok = load_prm_model(a.model)
    pad = tok.pad_token_id

    def encode(prompt, steps):
        enc = step_end_positions(tok, prompt, list(steps))
        return enc.input_ids, enc.prompt_length, enc.step_end_positions

    def step_logits(x, start, ends):
        """One logit per step from the per-token logits x of one sequence."""
        if a.pool == "last":
            return x[torch.as_tensor(ends)]
        out, lo = [], start
        for e in ends:
            seg = x[(start if a.pool == "prefix" else lo):e + 1].float()
            out.append(-(torch.logsumexp(-seg, 0) - torch.log(torch.tensor(float(len(seg))))))
            lo = e + 1
        return torch.stack(out)

    def forward(items):
        """items: (ids, prompt_length, ends) -> list of per-step logit tensors."""
        T = max(len(i[0]) for i in items)
        ids = torch.full((len(items), T), pad, dtype=torch.long)
        mask = torch.zeros((len(items), T), dtype=torch.long)
        for r, (q, _, _) in enumerate(items):
            ids[r, :len(q)] = torch.as_tensor(q); mask[r, :len(q)] = 1
        x = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[..., 0]
        return [step_logits(x[r], s, e) for r, (_, s, e) in enumerate(items)]

    def rows_of(ds):
        out = []
        for r in ds:
            ids, start, ends = encode(r["prompt"], r["completions"])
            out.append(((ids, start, ends), torch.tensor([float(v) for v in r["labels"]])))
        return out

    def bce(batch):
        logits = forward([i for i, _ in batch])
        return F.binary_cross_entropy_with_logits(torch.cat(logits), torch.cat([y for _, y in batch]))

    train, val = split_by_question(load_prm_rows(a.labels), 0.1, a.seed)
    train, val = rows_of(train), rows_of(val)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.0)
    total = a.epochs * ((len(train) + a.bs - 1) // a.bs)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 10) * max(0.0, 1 - s / total))
    t0, best, best_state, hist, since = time.time(), None, None, [], 0
    for ep in range(a.epochs):
        model.train(); random.shuffle(train)
        for b in range(0, len(train), a.bs):
            loss = bce(train[b:b + a.bs]); opt.zero_grad(); loss.backward(); opt.step(); sched.step()
        model.eval()
        with torch.no_grad():
            vl = sum(bce(val[b:b + a.bs]).item() * len(val[b:b + a.bs]) for b in range(0, len(val), a.bs)) / len(val)
        hist.append(round(vl, 4)); print("epoch", ep, hist[-1], round(time.time() - t0), "s", flush=True)
        if best is None or vl < best:
            best, best_state, since = vl, copy.deepcopy(model.state_dict()), 0
        else:
            since += 1
            if since >= a.patience:
                break
    train_s = round(time.time() - t0)
    model.load_state_dict(best_state); model.eval()
    samples = pq.read_table(a.samples).to_pylist()
    items = [encode(sample_prompt(r), r["steps"]) if len(r["steps"]) else None for r in samples]
    todo = [i for i, it in enumerate(items) if it is not None]
    step_scores = [[] for _ in samples]
    with torch.no_grad():
        for b in range(0, len(todo), 64):
            idx = todo[b:b + 64]
            for i, v in zip(idx, forward([items[i] for i in idx])):
                step_scores[i] = torch.sigmoid(v.float()).tolist()
    res = {how: bon_vs_majority(None, samples, [1, 4, 16], scores=[aggregate(s, how) if s else 0.0 for s in step_scores])
           for how in ("last", "min", "prod")}
    last = res["last"]
    print("RESULT", json.dumps({
        "pool": a.pool, "lr": a.lr, "val_bce": hist, "train_s": train_s, "score_s": round(time.time() - t0 - train_s),
        "within_question_auroc": {h: r["within_question_auroc"] for h, r in res.items()},
        "pooled_auroc": last["pooled_auroc"],
        "w16_minus_m16": {h: round(r["weighted_at"][16] - r["majority_at"][16], 4) for h, r in res.items()},
        "se16_last": last["weighted_minus_majority_se_at"].get(16),
        "w4_minus_m4_last": round(last["weighted_at"][4] - last["majority_at"][4], 4)}), flush=True)


if __name__ == "__main__":
    main()
