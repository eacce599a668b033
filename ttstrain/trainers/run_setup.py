"""What both trainers (PRM and revision SFT) set up the same way before `Trainer.train` (how
both end, writing output_dir: `ttstrain.trainers.run_skeleton`).

- `default_wandb_offline`: W&B logs offline unless the user chose a mode (WANDB_MODE).
- `resolve_resume`: `--resume_from_checkpoint last|true|<folder>|none` as `Trainer.train` takes it.
- `set_dropout`: every dropout probability field a model config has (Llama's attention_dropout,
  GPT-2's attn_pdrop / resid_pdrop / embd_pdrop, BERT-style names, ...) set to one value.
- `cpu_attention_dropout_note`: what attention dropout costs on CPU, said before training: there
  `scaled_dot_product_attention` runs its fused kernel only without dropout, and falls back to the
  math path (every row's length x length weights materialised, a Bernoulli mask drawn over them).
- `no_master_weights` / `float32_trainable`: `bf16`/`fp16` mean mixed precision, as TRL and
  accelerate users expect it: float32 trainable weights, 16-bit autocast. Weights loaded in 16 bits
  would be updated in 16 bits, with no float32 master copy (outside DeepSpeed, whose optimizer
  keeps one), and an update below their resolution (lr 3e-5 on a weight near 1; bf16 steps by
  2^-8 there) rounds away. So a full fine-tune of 16-bit weights under `bf16`/`fp16` is refused
  with the option that fixes it, and a LoRA run's trainable parameters (adapters and head; the
  frozen base may stay 16-bit) are cast to float32. Pure 16-bit training stays possible on purpose:
  16-bit weights with `--bf16 false`.

    from ttstrain.trainers.run_setup import default_wandb_offline, resolve_resume, set_dropout
"""

from __future__ import annotations

import os

import torch

# the body's config fields that hold a dropout probability, across common architectures
DROPOUT_FIELDS = ("attention_dropout", "hidden_dropout", "attn_pdrop", "resid_pdrop", "embd_pdrop",
                  "hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "activation_dropout")


# the fields among DROPOUT_FIELDS that drop attention weights (the ones that take SDPA off its fused kernel)
ATTENTION_DROPOUT_FIELDS = ("attention_dropout", "attn_pdrop", "attention_probs_dropout_prob")


def cpu_attention_dropout_note(model, device) -> str | None:
    """One line for a model that will train with attention dropout through SDPA on a CPU, else None.

    PyTorch's CPU flash-attention kernel takes no dropout, so any attention dropout sends every
    attention call to the math path. On the default world's PRM rows (about 450 tokens, 16 rows) that
    is 77 ms against 9 ms per call, and 1.6x the training step (bench/cpu_paths.py, docs/benchmarks.md).
    """
    config = getattr(model, "config", None)
    if torch.device(device).type != "cpu" or getattr(config, "_attn_implementation", None) != "sdpa":
        return None
    rates = {f: getattr(config, f) for f in ATTENTION_DROPOUT_FIELDS
             if isinstance(getattr(config, f, None), (int, float)) and getattr(config, f) > 0}
    if not rates:
        return None
    said = ", ".join(f"{k}={v}" for k, v in rates.items())
    return (f"attention dropout ({said}) on CPU: scaled_dot_product_attention runs its math path, not its fused "
            "kernel, so each training step takes about 1.6x as long on the default world's PRM "
            "(bench/cpu_paths.py); --model_dropout 0 keeps the fused kernel, and changes what is trained")


def default_wandb_offline(report_to) -> None:
    """W&B logs offline unless the user chose a mode (WANDB_MODE) themselves."""
    targets = [report_to] if isinstance(report_to, str) else list(report_to or [])
    if any(t in ("wandb", "all") for t in targets):
        os.environ.setdefault("WANDB_MODE", "offline")


def resolve_resume(value):
    """`last`/`true` -> True (the newest checkpoint in output_dir), a folder -> itself, empty -> None."""
    if value in (None, "", "false", "False", "none", "None"):
        return None
    if value in ("last", "true", "True", True):
        return True
    return value


def set_dropout(config, p: float) -> list[str]:
    """Set every dropout probability field the config already has to p; returns the fields set."""
    done = []
    for name in DROPOUT_FIELDS:
        if isinstance(getattr(config, name, None), (int, float)) and not isinstance(getattr(config, name), bool):
            setattr(config, name, p)
            done.append(name)
    return done


LOW_PRECISION = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def _deepspeed(args) -> bool:
    return bool(args.deepspeed) or os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def no_master_weights(dtype: str, args, option: str = "--dtype") -> str | None:
    """Why `args` would train weights of `dtype` with no float32 master copy (one line), or None when it would not."""
    mixed = "bf16" if args.bf16 else "fp16" if args.fp16 else None
    if dtype not in LOW_PRECISION or mixed is None or _deepspeed(args):
        return None
    return (f"{option} {dtype} with {mixed}=True trains {dtype} weights with no float32 master copy, so small "
            f"updates round away (lr 3e-5 on a weight near 1): use {option} float32 for mixed precision (float32 "
            f"weights, {mixed} autocast), or --{mixed} false to train in pure {dtype} on purpose")


def float32_trainable(model, args, lora: bool, option: str = "--dtype") -> list[str]:
    """Under `bf16`/`fp16` mixed precision, the 16-bit trainable parameters of a LoRA model cast to
    float32 (their names returned); those of a full fine-tune refused (`no_master_weights`)."""
    low = [(n, p) for n, p in model.named_parameters() if p.requires_grad and p.dtype in LOW_PRECISION.values()]
    if not low:
        return []
    problem = no_master_weights(str(low[0][1].dtype).removeprefix("torch."), args, option)
    if problem is None:
        return []
    if not lora:
        raise ValueError(problem)
    for _, p in low:
        p.data = p.data.float()
    return [n for n, _ in low]
