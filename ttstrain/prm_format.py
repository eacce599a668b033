"""What a PRM checkpoint records about itself, so any stage can score with it correctly.

A PRM folder is plain Hugging Face format (`AutoModelForTokenClassification`, one output); its
config carries `ttstrain_prm` (PRM_CONFIG_KEY) with the head type, the step separator it was
trained on, the label mode and, when fitted, the reference-feature combiner. The trainer writes
it (`prm_metadata`); the scorer checks it before reading a single step.

    from ttstrain.prm_format import PRM_CONFIG_KEY, prm_metadata
    prm_metadata("soft", base_model="default")["step_separator"]   # "\n"
"""

from __future__ import annotations

from ttstrain.steps import STEP_SEPARATOR

PRM_CONFIG_KEY = "ttstrain_prm"
HEAD_TYPE = "token_value"
PRM_FORMAT_VERSION = 1


def prm_metadata(label_mode: str, base_model: str | None = None) -> dict:
    """What `config.ttstrain_prm` records, so a checkpoint says how to score with it."""
    return {"format_version": PRM_FORMAT_VERSION, "head": HEAD_TYPE, "step_separator": STEP_SEPARATOR,
            "label_mode": label_mode, "activation": "sigmoid", "add_special_tokens": True,
            "base_model": base_model}
