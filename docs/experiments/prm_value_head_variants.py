"""Experiment: a PRM value head trained (or not, --epochs 0) with the solution under the `Check:`
head, its head initialised from the policy's newline-vs-space logits, or only its head trained;
prints within-question AUROC and weighted-minus-majority at 16 on the test samples.

    python docs/experiments/prm_value_head_variants.py --labels L --samples S --out O --head check --init_lm
"""
import argparse, json, sys, time
import pyarrow.parquet as pq
from ttstrain.aggregation import aggregate
from ttstrain.prm.data import load_prm_rows, split_by_question
from ttstrain.prm.config import PRMConfig
from ttstrain.prm.trainer import PRMTrainer, load_prm_model
from ttstrain.prm.scoring import PRMScorer
from ttstrain.prm.evaluation import bon_vs_majority, sample_prompt
from ttstrain.prompts import SOLUTION_HEAD
from ttstrain.world_builder.checking import CHECK_HEAD


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--labels"); p.add_argument("--samples"); p.add_argument("--out")
    p.add_argument("--head", default="solution"); p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--epochs", type=int, default=8); p.add_argument("--bs", type=int, default=16)
    p.add_argument("--model", default="default"); p.add_argument("--init_lm", action="store_true"); p.add_argument("--freeze_body", action="store_true"); p.add_argument("--label_mode", default="soft")
    a = p.parse_args(argv)

    def rw(prompt):
        if a.head == "check":
            assert prompt.endswith(SOLUTION_HEAD), prompt[-30:]
            return prompt[: -len(SOLUTION_HEAD)] + CHECK_HEAD
        return prompt

    rows = load_prm_rows(a.labels)
    rows = rows.map(lambda r: {"prompt": rw(r["prompt"])})
    train, val = split_by_question(rows, 0.1, 0)
    args = PRMConfig(label_mode=a.label_mode, output_dir=a.out, model_name_or_path=a.model, dataset_path=a.labels, learning_rate=a.lr,
                     warmup_steps=10, per_device_train_batch_size=a.bs, gradient_accumulation_steps=1, num_train_epochs=a.epochs, eval_strategy="epoch",
                     save_strategy="epoch", save_total_limit=1, logging_steps=50, early_stopping_patience=2,
                     report_to=[], dataloader_pin_memory=False, seed=0)
    model, tok = load_prm_model(a.model, label_mode=a.label_mode)
    if a.init_lm:
        import torch
        E = model.get_input_embeddings().weight.detach()
        nl, sp = tok.convert_tokens_to_ids(["\n", " "])
        with torch.no_grad():
            model.score.weight.copy_((E[nl] - E[sp])[None]); model.score.bias.zero_()
    t = time.time()
    if a.freeze_body:
        for n_, p_ in model.named_parameters(): p_.requires_grad = n_.startswith("score")
    tr = PRMTrainer(model=model, args=args, train_dataset=train, eval_dataset=val, processing_class=tok)
    if a.epochs > 0: tr.train()
    evals = [round(h["eval_loss"], 4) for h in tr.state.log_history if "eval_loss" in h]
    scorer = PRMScorer(tr.model, tok, use_reference_features=False)
    samples = pq.read_table(a.samples).to_pylist()
    step_scores = scorer.score([rw(sample_prompt(r, scorer)) for r in samples], [list(r["steps"]) for r in samples])
    allres = {}
    for how in ("last", "min", "prod"):
        scores = [aggregate(s, how) for s in step_scores]
        allres[how] = bon_vs_majority(scorer, samples, [1, 4, 16], scores=scores)
    res = allres["last"]
    out = {"head": a.head, "lr": a.lr, "epochs": a.epochs, "train_s": round(time.time() - t), "evals": evals,
           "best": tr.state.best_metric, "wq": res["within_question_auroc"], "pooled": res["pooled_auroc"],
           "w16": res["weighted_at"].get(16), "m16": res["majority_at"].get(16), "se16": res["weighted_minus_majority_se_at"].get(16), "by_agg": {h: [r["within_question_auroc"], round(r["weighted_at"][16] - r["majority_at"][16], 4)] for h, r in allres.items()}}
    print("RESULT", json.dumps(out)); sys.stdout.flush()


if __name__ == "__main__":
    main()
