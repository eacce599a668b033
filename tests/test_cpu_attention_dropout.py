"""Attention dropout on CPU: PyTorch's fused attention kernel refuses it, and train-prm says so before training.

The premise is checked against the installed torch (if a later torch's CPU flash kernel takes dropout,
the first test fails and the note is stale); the note is checked on the default world's PRM body.
"""

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from ttstrain.prm.trainer import load_prm_model
from ttstrain.trainers.run_setup import cpu_attention_dropout_note


def test_cpus_fused_attention_kernel_takes_no_dropout():
    q, k, v = (torch.randn(2, 4, 16, 32) for _ in range(3))
    mask = torch.ones(16, 16, dtype=torch.bool).tril()
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # no dropout: the fused kernel runs
        with pytest.raises(RuntimeError, match="No available kernel"):
            F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.05)


def test_train_prm_notes_attention_dropout_on_cpu_only():
    dropped, _ = load_prm_model("default", model_dropout=0.05)
    note = cpu_attention_dropout_note(dropped, "cpu")
    assert note is not None and "attention_dropout=0.05" in note and "--model_dropout 0" in note
    assert cpu_attention_dropout_note(dropped, torch.device("cuda")) is None  # CUDA's fused kernels take dropout
    plain, _ = load_prm_model("default", model_dropout=0.0)
    assert cpu_attention_dropout_note(plain, "cpu") is None
    eager, _ = load_prm_model("default", model_dropout=0.05, attn_implementation="eager")
    assert cpu_attention_dropout_note(eager, "cpu") is None  # eager attention has no fused kernel to lose
