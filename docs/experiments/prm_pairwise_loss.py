"""Experiment: the PRM's soft-label BCE plus a within-question pairwise term, to see whether it keeps
the ranking BCE alone wears away. Batches hold whole questions (all their labelled solutions);
the pairwise term is softplus(-(s_right - s_wrong)) over every (right, wrong) pair of last-step
logits inside a question, weighted by --pair_weight (0 is BCE alone with question batches).
Model selection: the epoch with the lowest validation loss (same loss, validation questions).
Prints within-question AUROC and weighted-minus-majority at 16 on the test samples.

    python docs/experiments/prm_pairwise_loss.py --labels L --samples S --pair_weight 1.0 \
        [--pair_on last|prod] [--head check --init_lm] [--lr X] [--bce_weight W]
"""
import argparse, copy, json, random, sys, time
from collections import defaultdict

import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

from ttstrain.aggregation import aggregate
from ttstrain.prm.data import load_prm_rows, split_by_question, tokenize_dataset
from ttstrain.prm.evaluation import bon_vs_majority, sample_prompt
from ttstrain.prompts import SOLUTION_HEAD
from ttstrain.prm.scoring import PRMScorer
from ttstrain.world_builder.checking import CHECK_HEAD
from ttstrain.prm.batching import build_batch
from ttstrain.prm.trainer import load_prm_model


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--labels"); p.add_argument("--samples"); p.add_argument("--model", default="default")
    p.add_argument("--lr", type=float, default=1e-3); p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--questions_per_batch", type=int, default=2); p.add_argument("--pair_weight", type=float, default=1.0)
    p.add_argument("--bce_weight", type=float, default=1.0); p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pair_on", default="last", choices=["last", "prod"])  # prod: sum of log-sigmoid over steps
    p.add_argument("--head", default="solution", choices=["solution", "check"]); p.add_argument("--init_lm", action="store_true")
    a = p.parse_args(argv)
    torch.manual_seed(a.seed); random.seed(a.seed)

    def rw(prompt):
        if a.head == "check":
            assert prompt.endswith(SOLUTION_HEAD), prompt[-30:]
            return prompt[: -len(SOLUTION_HEAD)] + CHECK_HEAD
        return prompt

    rows = load_prm_rows(a.labels).map(lambda r: {"prompt": rw(r["prompt"])})
    train, val = split_by_question(rows, 0.1, 0)
    model, tok = load_prm_model(a.model)
    if a.init_lm:  # the policy's own verdict under `Check:`: logit(newline) - logit(space)
        E = model.get_input_embeddings().weight.detach()
        nl, sp = tok.convert_tokens_to_ids(["\n", " "])
        with torch.no_grad():
            model.score.weight.copy_((E[nl] - E[sp])[None]); model.score.bias.zero_()

    def groups(ds):
        tokd = tokenize_dataset(ds, tok)
        assert len(tokd) == len(ds), "rows without labels"
        by_q = defaultdict(list)
        for f, pid, ok in zip(tokd, ds["problem_id"], ds["final_correct"]):
            by_q[pid].append((f, bool(ok)))
        return list(by_q.values())

    def loss_of(batch_groups):
        feats = [f for g in batch_groups for f, _ in g]
        batch, where = build_batch([f["input_ids"] for f in feats], tok.pad_token_id)
        logits = model(**batch, use_cache=False).logits[..., 0]
        pos = [torch.as_tensor(f["label_positions"]) + o for f, (_, o) in zip(feats, where)]
        step_logits = torch.cat([logits[r, q] for q, (r, _) in zip(pos, where)]).float()
        targets = torch.tensor([v for f in feats for v in f["label_values"]], dtype=torch.float32)
        bce = F.binary_cross_entropy_with_logits(step_logits, targets)
        if a.pair_on == "last":
            last = torch.stack([logits[r, q[-1]] for q, (r, _) in zip(pos, where)]).float()
        else:
            last = torch.stack([F.logsigmoid(logits[r, q].float()).sum() for q, (r, _) in zip(pos, where)])
        pair_terms, i = [], 0
        for g in batch_groups:
            s = last[i:i + len(g)]; ok = torch.tensor([o for _, o in g])
            i += len(g)
            if ok.any() and (~ok).any():
                d = s[ok][:, None] - s[~ok][None, :]
                pair_terms.append(F.softplus(-d).mean())
        pair = torch.stack(pair_terms).mean() if pair_terms else logits.sum() * 0
        return a.bce_weight * bce + a.pair_weight * pair, bce.item(), pair.item()

    train_g, val_g = groups(train), groups(val)
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=a.lr, betas=(0.9, 0.95), weight_decay=0.0)
    steps_per_epoch = (len(train_g) + a.questions_per_batch - 1) // a.questions_per_batch
    total = steps_per_epoch * a.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 10) * max(0.0, 1 - s / total))
    t = time.time(); best, best_state, hist = None, None, []
    for ep in range(a.epochs):
        model.train(); random.shuffle(train_g)
        for b in range(0, len(train_g), a.questions_per_batch):
            loss, _, _ = loss_of(train_g[b:b + a.questions_per_batch])
            opt.zero_grad(); loss.backward(); opt.step(); sched.step()
        model.eval()
        with torch.no_grad():
            vals = [loss_of(val_g[b:b + a.questions_per_batch]) for b in range(0, len(val_g), a.questions_per_batch)]
        vl = sum(v[0].item() for v in vals) / len(vals); vb = sum(v[1] for v in vals) / len(vals); vp = sum(v[2] for v in vals) / len(vals)
        hist.append([round(vl, 4), round(vb, 4), round(vp, 4)])
        print("epoch", ep, hist[-1], round(time.time() - t), flush=True)
        if best is None or vl < best:
            best, best_state = vl, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state); model.eval()
    scorer = PRMScorer(model, tok, use_reference_features=False)
    samples = pq.read_table(a.samples).to_pylist()
    step_scores = scorer.score([rw(sample_prompt(r, scorer)) for r in samples], [list(r["steps"]) for r in samples])
    allres = {how: bon_vs_majority(scorer, samples, [1, 4, 16], scores=[aggregate(s, how) for s in step_scores])
              for how in ("last", "min", "prod")}
    res = allres["last"]
    out = {"head": a.head, "init_lm": a.init_lm, "pair_on": a.pair_on, "pair_weight": a.pair_weight, "bce_weight": a.bce_weight, "lr": a.lr, "epochs": a.epochs,
           "train_s": round(time.time() - t), "val_total_bce_pair": hist, "wq": res["within_question_auroc"],
           "pooled": res["pooled_auroc"], "w16": res["weighted_at"].get(16), "m16": res["majority_at"].get(16),
           "se16": res["weighted_minus_majority_se_at"].get(16),
           "by_agg": {h: [r["within_question_auroc"], round(r["weighted_at"][16] - r["majority_at"][16], 4)] for h, r in allres.items()}}
    print("RESULT", json.dumps(out)); sys.stdout.flush()


if __name__ == "__main__":
    main()
