"""What both trainers (PRM and revision SFT) set up the same way before `Trainer.train`.

- `default_wandb_offline`: W&B logs offline unless the user chose a mode (WANDB_MODE).
- `resolve_resume`: `--resume_from_checkpoint last|true|<folder>|none` as `Trainer.train` takes it.
- `set_dropout`: every dropout probability field a model config has (Llama's attention_dropout,
  GPT-2's attn_pdrop / resid_pdrop / embd_pdrop, BERT-style names, ...) set to one value.

    from ttstrain.trainers.run_setup import default_wandb_offline, resolve_resume, set_dropout
"""

from __future__ import annotations

import os

# the body's config fields that hold a dropout probability, across common architectures
DROPOUT_FIELDS = ("attention_dropout", "hidden_dropout", "attn_pdrop", "resid_pdrop", "embd_pdrop",
                  "hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "activation_dropout")


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
