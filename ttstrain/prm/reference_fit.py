"""Fitting the reference-feature combiner of a trained PRM: a training-time step after `train-prm`.

Four numbers (weights of the value-head logit and of the min and mean reference log-probs, and a
bias) are fitted by the same soft-label BCE on the training questions' steps, then recorded in the
checkpoint's `config.ttstrain_prm` under `reference_features`; `ttstrain.prm.scoring.PRMScorer` applies
them (`ttstrain.prm.reference_features`). Run by `ttstrain train-prm --reference_features true`.

Under several processes every process reads the features of its share of the rows on its own
device and the shares are gathered: the fit is that much faster, and no process waits at a
barrier through another's whole fit (a real model's fit outlasts the process group's timeout).

    from ttstrain.prm.reference_fit import fit_reference_features
    spec = fit_reference_features("runs/demo/prm", train_rows, reference="default")
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import torch

from ttstrain.io import write_text
from ttstrain.prm.data import row_targets
from ttstrain.prm.checkpoint import PRM_CONFIG_KEY
from ttstrain.prm.reference_features import FEATURES, META_KEY, load_reference_model, prefix_features, token_logprobs
from ttstrain.prm.scoring import PRMScorer


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
    raw = w.detach() / sd
    weights, bias = raw.tolist(), float(b.detach()[0] - (raw * mu).sum())
    before, after = combiner_bce(x, y, weights, bias)
    return weights, bias, before, after


# fewer fitted steps than this and four fitted numbers can follow the rows' noise (the stage warns)
MIN_FIT_STEPS = 300


def step_features(prm: PRMScorer, ref, rows, label_mode: str, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(features (n, 3): value logit, min and mean reference log-prob; targets (n,); rows used) of labelled rows."""
    encoded, targets, steps_used = [], [], []
    for row in rows:
        if not len(row["completions"]):
            continue
        steps, values = row_targets(row, label_mode)
        encoded.append(prm.tokenize(row["prompt"], list(row["completions"])))
        targets.extend(values)
        steps_used.append(steps)
    if not targets:
        return torch.zeros((0, 3)), torch.zeros(0), 0
    values = prm.value_logits([e.input_ids for e in encoded], [e.step_end_positions for e in encoded])
    lps = token_logprobs(ref, [e.input_ids for e in encoded], prm.pad_token_id, batch_size)
    feats = []
    for e, v, lp, steps in zip(encoded, values, lps, steps_used):
        f = prefix_features(lp, e.prompt_length, e.step_end_positions)
        feats.extend([(v[s], *f[s]) for s in steps])
    return torch.tensor(feats), torch.tensor(targets), len(encoded)


def shared_step_features(prm: PRMScorer, ref, rows, label_mode: str, batch_size: int,
                         accelerator=None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """`step_features` of all rows; with an `accelerator` of several processes, each reads rows i, i+n, ...
    and every process gets all of them (every process must call this)."""
    if accelerator is None or accelerator.num_processes == 1:
        return step_features(prm, ref, rows, label_mode, batch_size)
    from accelerate.utils import gather_object

    share = range(accelerator.process_index, len(rows), accelerator.num_processes)
    share = rows.select(share) if hasattr(rows, "select") else [rows[i] for i in share]
    parts = gather_object([step_features(prm, ref, share, label_mode, batch_size)])
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), sum(p[2] for p in parts)


def combiner_bce(x: torch.Tensor, y: torch.Tensor, weights: list[float], bias: float) -> tuple[float, float]:
    """(BCE of the value head alone, BCE of the combiner) on features x and targets y."""
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    x, y = x.double(), y.double().clamp(0, 1)
    return float(bce(x[:, 0], y)), float(bce(x @ torch.tensor(weights, dtype=torch.float64) + bias, y))


@contextlib.contextmanager
def _whole_models():
    """Models loaded inside are whole on every process, though a ZeRO-3 run's TrainingArguments live:
    transformers would build them partitioned (`deepspeed.zero.Init`) for a DeepSpeed engine the fit has not."""
    from transformers.integrations import deepspeed as hf_deepspeed

    ref = hf_deepspeed._hf_deepspeed_config_weak_ref  # no public getter; restored as it was
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = ref


def fit_reference_features(prm_dir: str | Path, rows, *, reference: str, label_mode: str = "soft",
                           batch_size: int = 16, l2: float = 1e-3, fitted_on: str = "train",
                           validation_rows=None, device: str | torch.device = "cpu", accelerator=None) -> dict:
    """Fit the combiner of a saved PRM on labelled rows and record it in its config.json; returns the record.

    `rows` are PRM dataset rows (prompt, completions, labels, ...); the targets are those the PRM
    trained on (`row_targets` with `label_mode`). `reference` is the causal LM whose
    log-probs are read (a hub id, folder or alias such as "default"). With `validation_rows` (the
    questions held out of training) the record also holds the combiner's BCE there, beside the
    value head's; a fit on fewer than MIN_FIT_STEPS steps is recorded with a `warning`. Both models
    run on `device`. With `accelerator` every process calls this and reads its share of the rows
    (`shared_step_features`); all fit the same four numbers and only the main process records them.
    """
    with _whole_models():
        prm = PRMScorer.from_pretrained(prm_dir, use_reference_features=False, batch_size=batch_size, device=device)
        ref = load_reference_model(reference, prm.tokenizer, device=prm.device)
    x, y, used = shared_step_features(prm, ref, rows, label_mode, batch_size, accelerator)
    if not len(y):
        raise ValueError(f"no labelled step to fit the reference-feature combiner of {prm_dir} on")
    weights, bias, before, after = fit_combiner(x, y, l2)
    spec = {"reference_model": reference, "features": list(FEATURES), "weights": weights, "bias": bias,
            "fitted_on": fitted_on, "fitted_steps": len(y), "fitted_rows": used, "l2": l2,
            "bce_value_head_only": round(before, 5), "bce_combined": round(after, 5)}
    if validation_rows is not None:
        vx, vy, vused = shared_step_features(prm, ref, validation_rows, label_mode, batch_size, accelerator)
        if len(vy):
            alone, combined = combiner_bce(vx, vy, weights, bias)
            spec["validation"] = {"rows": vused, "steps": len(vy), "bce_value_head_only": round(alone, 5),
                                  "bce_combined": round(combined, 5)}
    if len(y) < MIN_FIT_STEPS:
        spec["warning"] = (f"fitted on {len(y)} steps (fewer than {MIN_FIT_STEPS}): the four numbers may follow the "
                           "training rows' noise; compare the validation BCE before trusting them")
    if accelerator is None or accelerator.is_main_process:
        record_spec(prm_dir, spec)
    return spec


def record_spec(prm_dir: str | Path, spec: dict) -> None:
    """Write the combiner into `config.json`'s `ttstrain_prm` (the rest of the file is kept as it was)."""
    path = Path(prm_dir) / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config.setdefault(PRM_CONFIG_KEY, {})[META_KEY] = spec
    if not all(math.isfinite(v) for v in [*spec["weights"], spec["bias"]]):
        raise ValueError(f"the fitted reference-feature combiner is not finite: {spec}")
    write_text(path, json.dumps(config, indent=2, sort_keys=True) + "\n")


__all__ = ["fit_combiner", "fit_reference_features", "record_spec", "shared_step_features"]
