"""Experiment: combiners over a PRM's value logit, the policy's likelihood features and its checking
under the `Check:` head, fitted on MC labels; plus the policy's mean token log-prob with no fit.
Prints within-question AUROC and weighted-minus-majority at 4 and 16 on the test samples.

    python docs/experiments/prm_feature_combiner.py PRM_DIR LABELS_DIR SAMPLES_PARQUET
"""
import json, sys, math
import torch, pyarrow.parquet as pq
from ttstrain.prm.data import load_prm_rows, split_by_question, row_targets
from ttstrain.prm.scoring import PRMScorer
from ttstrain.prm.reference_features import load_reference_model, prefix_features, token_logprobs
from ttstrain.prm.reference_fit import fit_combiner
from ttstrain.prm.evaluation import bon_vs_majority, sample_prompt
from ttstrain.prompts import SOLUTION_HEAD
from ttstrain.world_builder.checking import CHECK_HEAD
from ttstrain.steps import step_end_positions


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    prm_dir, labels, samples_path = argv[:3]
    prm = PRMScorer.from_pretrained(prm_dir, use_reference_features=False)
    ref = load_reference_model("default", prm.tokenizer)
    nl = prm.tokenizer("\n", add_special_tokens=False)["input_ids"][0]

    def feats(prompts, stepss):
        enc = [prm.tokenize(p, s) for p, s in zip(prompts, stepss)]
        vals = prm.value_logits([e.input_ids for e in enc], [e.step_end_positions for e in enc])
        lps = token_logprobs(ref, [e.input_ids for e in enc], prm.pad_token_id, 32)
        cenc = [step_end_positions(prm.tokenizer, p[:-len(SOLUTION_HEAD)] + CHECK_HEAD, list(s)) for p, s in zip(prompts, stepss)]
        cseqs = [list(c.input_ids) + [nl] for c in cenc]
        clps = token_logprobs(ref, cseqs, prm.pad_token_id, 32)
        out = []
        for e, v, lp, c, clp in zip(enc, vals, lps, cenc, clps):
            f = prefix_features(lp, e.prompt_length, e.step_end_positions)
            right = [float(clp[x + 1]) for x in c.step_end_positions]
            rows = []
            for i in range(len(v)):
                rows.append([float(v[i]), f[i][0], f[i][1], min(right[: i + 1]), sum(right[: i + 1]), right[i]])
            out.append(rows)
        return out

    rows = load_prm_rows(labels)
    train, val = split_by_question(rows, 0.1, 0)
    tr = [r for r in train if len(r["completions"])]
    F = feats([r["prompt"] for r in tr], [list(r["completions"]) for r in tr])
    X, Y = [], []
    for r, f in zip(tr, F):
        steps, values = row_targets(r, "soft")
        for s, y in zip(steps, values):
            X.append(f[s]); Y.append(y)
    X, Y = torch.tensor(X), torch.tensor(Y)
    samples = [r for r in pq.read_table(samples_path).to_pylist()]
    SF = feats([sample_prompt(r) for r in samples], [list(r["steps"]) or ["?"] for r in samples])
    sets = {"value": [0], "value+lik": [0, 1, 2], "value+check": [0, 3, 4], "value+lik+check": [0, 1, 2, 3, 4],
            "check_prod_only": [4], "lik+check": [1, 2, 3, 4], "all6": [0, 1, 2, 3, 4, 5]}
    for name, cols in sets.items():
        w, b, before, after = fit_combiner(X[:, cols], Y)
        scores = []
        for r, f in zip(samples, SF):
            if not len(r["steps"]):
                scores.append(0.0); continue
            z = sum(wi * f[-1][c] for wi, c in zip(w, cols)) + b
            scores.append(1 / (1 + math.exp(-z)))
        res = bon_vs_majority(None, samples, [1, 4, 16], scores=scores)
        print("COMB", name, json.dumps({"w": [round(x, 3) for x in w], "bce": round(after, 4), "wq": res["within_question_auroc"],
              "pooled": res["pooled_auroc"], "w16-m16": round(res["weighted_at"][16] - res["majority_at"][16], 4),
              "se": res["weighted_minus_majority_se_at"].get(16), "w4-m4": round(res["weighted_at"][4] - res["majority_at"][4], 4)}), flush=True)
    sc = [1 / (1 + math.exp(-f[-1][2])) if len(r["steps"]) else 0.0 for r, f in zip(samples, SF)]
    res = bon_vs_majority(None, samples, [1, 4, 16], scores=sc)
    print("RAW mean_logprob", res["within_question_auroc"], round(res["weighted_at"][16] - res["majority_at"][16], 4),
          round(res["weighted_at"][4] - res["majority_at"][4], 4), flush=True)


if __name__ == "__main__":
    main()
