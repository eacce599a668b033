"""Reference-likelihood features: how surprised the frozen starting policy is by a solution so far.

A value head trained on a few thousand Monte Carlo labels can learn which questions are hard
without learning to check a step: on the default world it ranks right answers above wrong ones
*within* a question at chance (AUROC 0.46) although it ranks all samples well (0.80). The policy
the PRM started from already knows whether `55 + 84 = 149` is likely: its own token
log-probabilities of a solution rank answers within a question at about 0.75. This module turns
them into PRM inputs, in the spirit of implicit PRMs (Yuan et al., 2024) that read step rewards
off token log-likelihoods.

At each step end the PRM's step logit becomes

    w0 * value_logit + w1 * min log p_ref(solution tokens so far) + w2 * mean log p_ref(...) + b

where p_ref is the frozen reference policy (the checkpoint the PRM was initialised from) and
only the solution's tokens count (the prompt is the question, not the policy's choice). The four
numbers are fitted after training, by the same soft-label BCE, on the training questions
(`fit_combiner`; the validation questions stay held out for evaluation), and stored in the
checkpoint's `config.ttstrain_prm` under `reference_features`; `ttstrain.scoring.PRMScorer`
loads the reference model next to the PRM and applies them. Scoring stays one forward pass per
solution, now in two models.

    ttstrain train-prm --config recipes/default/prm/config_demo.yaml --reference_features true
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import torch

from ttstrain.trainers.prm_trainer import PRM_CONFIG_KEY, build_batch

META_KEY = "reference_features"
FEATURES = ("value_logit", "reference_min_logprob", "reference_mean_logprob")


@torch.inference_mode()
def token_logprobs(model, seqs: Sequence[Sequence[int]], pad_token_id: int, batch_size: int = 16,
                   packing: bool = True) -> list[torch.Tensor]:
    """log p(token t | tokens before t) under a causal LM for each sequence; entry 0 (no context) is 0.

    Sequences run packed like the PRM's (one pass per sequence, each attending only to itself).
    """
    device = next(model.parameters()).device
    out: list[torch.Tensor] = [torch.zeros(0)] * len(seqs)
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    for b in range(0, len(order), batch_size):
        chunk = order[b:b + batch_size]
        inputs, where = build_batch([seqs[i] for i in chunk], pad_token_id, packing)
        ids = inputs["input_ids"]
        inputs = {k: v.to(device) for k, v in inputs.items()}
        logits = model(**inputs, use_cache=False).logits.float()
        # one log-softmax and gather for the whole batch: position t holds log p(token t+1); the values
        # across a packed boundary are never read
        nxt = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None].to(logits.device))[..., 0].cpu()
        for i, (r, o) in zip(chunk, where):
            n = len(seqs[i])
            lp = torch.zeros(n)
            lp[1:] = nxt[r, o:o + n - 1]
            out[i] = lp
    return out


def prefix_features(logprobs: torch.Tensor, prompt_length: int, step_ends: Sequence[int]) -> list[tuple[float, float]]:
    """(min, mean) of the solution's token log-probs up to and including each step end."""
    feats = []
    for end in step_ends:
        seg = logprobs[prompt_length:end + 1]
        feats.append((float(seg.min()), float(seg.mean())) if len(seg) else (0.0, 0.0))
    return feats


def combined_logits(spec: dict, value_logits: Sequence[float], feats: Sequence[tuple[float, float]]) -> list[float]:
    """The combiner's step logits from the value head's logits and the reference features."""
    w, b = spec["weights"], spec["bias"]
    return [w[0] * v + w[1] * f[0] + w[2] * f[1] + b for v, f in zip(value_logits, feats)]


def fit_combiner(x: torch.Tensor, y: torch.Tensor, l2: float = 1e-3) -> tuple[list[float], float, float, float]:
    """Logistic regression of soft targets y on features x (n, 3): (weights, bias, BCE of value head alone, BCE after).

    Features are standardised for the fit and the weights mapped back, so the stored weights apply
    to raw features. "Value head alone" is the BCE of sigmoid(value_logit), the PRM as trained.
    """
    x = x.double()
    y = y.double().clamp(0, 1)
    if len(x) > 1:
        mu, sd = x.mean(0), x.std(0).clamp(min=1e-6)
    else:
        mu, sd = torch.zeros(x.shape[1], dtype=torch.float64), torch.ones(x.shape[1], dtype=torch.float64)
    xn = (x - mu) / sd
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xn @ w + b, y) + l2 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    weights = (w.detach() / sd)
    bias = float(b.detach()[0] - (weights * mu).sum())
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    before = float(bce(x[:, 0], y))
    after = float(bce(x @ weights + bias, y))
    return [float(v) for v in weights], bias, before, after


def fit_reference_features(prm_dir: str | Path, rows, *, reference: str, label_mode: str = "soft",
                           batch_size: int = 16, l2: float = 1e-3, fitted_on: str = "train") -> dict:
    """Fit the combiner of a saved PRM on labelled rows and record it in its config.json; returns the record.

    `rows` are PRM dataset rows (prompt, completions, labels, ...); the targets are those the PRM
    trained on (`row_targets` with `label_mode`). `reference` is the causal LM whose
    log-probs are read (a hub id, folder or alias such as "default").
    """
    from ttstrain.scoring import PRMScorer
    from ttstrain.trainers.prm_trainer import row_targets

    prm = PRMScorer.from_pretrained(prm_dir, use_reference_features=False, batch_size=batch_size)
    ref = load_reference_model(reference, prm.tokenizer, device=prm.device)
    encoded, targets, steps_used = [], [], []
    for row in rows:
        if not len(row["completions"]):
            continue
        steps, values = row_targets(row, label_mode)
        encoded.append(prm.tokenize(row["prompt"], list(row["completions"])))
        targets.extend(values)
        steps_used.append(steps)
    if not targets:
        raise ValueError(f"no labelled step to fit the reference-feature combiner of {prm_dir} on")
    values = prm.value_logits([e.input_ids for e in encoded], [e.step_end_positions for e in encoded])
    lps = token_logprobs(ref, [e.input_ids for e in encoded], prm.pad_token_id, batch_size)
    feats = []
    for e, v, lp, steps in zip(encoded, values, lps, steps_used):
        f = prefix_features(lp, e.prompt_length, e.step_end_positions)
        feats.extend([(v[s], *f[s]) for s in steps])
    weights, bias, before, after = fit_combiner(torch.tensor(feats), torch.tensor(targets), l2)
    spec = {"reference_model": reference, "features": list(FEATURES), "weights": weights, "bias": bias,
            "fitted_on": fitted_on, "fitted_steps": len(targets), "fitted_rows": len(encoded), "l2": l2,
            "bce_value_head_only": round(before, 5), "bce_combined": round(after, 5)}
    record_spec(prm_dir, spec)
    return spec


def load_reference_model(name: str, tokenizer, *, device="cpu", dtype: str = "auto", **kw):
    """The reference causal LM (hub id, folder or alias), in eval mode on `device`, checked against the PRM's tokenizer."""
    from transformers import AutoModelForCausalLM

    from ttstrain.models import _torch_dtype, resolve_model

    model = AutoModelForCausalLM.from_pretrained(resolve_model(name), dtype=_torch_dtype(dtype), **kw)
    check_vocab(tokenizer, model, name)
    return model.to(device).eval()


def check_vocab(tokenizer, reference_model, name: str) -> None:
    """The reference reads the PRM's token ids, so their vocabularies must agree."""
    n = reference_model.config.vocab_size
    if len(tokenizer) > n:
        raise ValueError(f"reference model {name!r} has {n} tokens but the PRM's tokenizer has {len(tokenizer)}; "
                         "reference features need the model the PRM was initialised from (same tokenizer)")


def record_spec(prm_dir: str | Path, spec: dict) -> None:
    """Write the combiner into `config.json`'s `ttstrain_prm` (the rest of the file is kept as it was)."""
    from ttstrain.io import write_text

    path = Path(prm_dir) / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config.setdefault(PRM_CONFIG_KEY, {})[META_KEY] = spec
    if not all(math.isfinite(v) for v in [*spec["weights"], spec["bias"]]):
        raise ValueError(f"the fitted reference-feature combiner is not finite: {spec}")
    write_text(path, json.dumps(config, indent=2, sort_keys=True) + "\n")


__all__ = ["FEATURES", "META_KEY", "check_vocab", "combined_logits", "fit_combiner", "fit_reference_features",
           "load_reference_model", "prefix_features", "record_spec", "token_logprobs"]
