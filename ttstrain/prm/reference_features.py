"""Reference-likelihood features: how surprised the frozen starting policy is by a solution so far.

A value head trained on a few thousand Monte Carlo labels can learn which questions are hard
without learning to check a step. The policy the PRM started from already scores each token of a
solution; its log-probabilities carry what the policy knows about a step's arithmetic. This module
turns them into PRM inputs, in the spirit of implicit PRMs (Yuan et al., 2024) that read step
rewards off token log-likelihoods. What they buy on the default world: docs/design.md.

At each step end the PRM's step logit becomes

    w0 * value_logit + w1 * min log p_ref(solution tokens so far) + w2 * mean log p_ref(...) + b

where p_ref is the frozen reference policy (the checkpoint the PRM was initialised from) and only
the solution's tokens count (the prompt is the question, not the policy's choice). The four
numbers are fitted after training (`ttstrain.prm.reference_fit`) and stored in the
checkpoint's `config.ttstrain_prm` under `reference_features`; `ttstrain.prm.scoring.PRMScorer` loads
the reference model next to the PRM and applies them with the functions here.

    ttstrain train-prm --config recipes/default/prm/config_pipeline.yaml --reference_features true
"""

from __future__ import annotations

from typing import Sequence

import torch
from transformers import AutoModelForCausalLM

from ttstrain.models import _torch_dtype, resolve_model
from ttstrain.generation.prefix_cache import PrefixKVCache, cached_forward, logprob_pass, position_outputs
from ttstrain.prm.batching import packed_batches

META_KEY = "reference_features"
FEATURES = ("value_logit", "reference_min_logprob", "reference_mean_logprob")


@torch.inference_mode()
def token_logprobs(model, seqs: Sequence[Sequence[int]], pad_token_id: int, batch_size: int = 16,
                   packing: bool = True, cache: PrefixKVCache | None = None,
                   boundaries: Sequence[Sequence[int]] | None = None) -> list[torch.Tensor]:
    """log p(token t | tokens before t) under a causal LM for each sequence; entry 0 (no context) is 0.

    Sequences run packed like the PRM's (one pass per sequence, each attending only to itself), or,
    with a prefix cache and `boundaries`, each from its longest cached prefix (`ttstrain.generation.prefix_cache`).
    Either way the model's body runs and the LM head reads a bounded chunk of positions at a time
    (`ttstrain.generation.prefix_cache.logprob_pass`): only the tokens read, never the batch's full logits.
    """
    runner, per_token = logprob_pass(model)
    if cache is not None and boundaries is not None:
        nxt = cached_forward(runner, seqs, boundaries, cache, pad_token_id, batch_size, per_token)
        return [torch.cat([torch.zeros(1), nxt[i][:-1]]) if len(seqs[i]) else torch.zeros(0) for i in range(len(seqs))]
    device = next(model.parameters()).device
    out: list[torch.Tensor] = [torch.zeros(0)] * len(seqs)
    for chunk, inputs, where in packed_batches(seqs, pad_token_id, batch_size, packing):
        ids = inputs["input_ids"]
        outputs = position_outputs(runner(**{k: v.to(device) for k, v in inputs.items()}, use_cache=False))
        # only the positions read: o .. o+n-2 of each sequence's row (the next token is the sequence's own)
        spans = [(r, o, max(len(seqs[i]) - 1, 0)) for i, (r, o) in zip(chunk, where)]
        rows = torch.cat([torch.full((m,), r) for r, o, m in spans])
        cols = torch.cat([torch.arange(o, o + m) for r, o, m in spans])
        nxt = per_token(outputs[rows.to(device), cols.to(device)], ids[rows, cols + 1].to(device)).float().cpu()
        for i, piece in zip(chunk, nxt.split([m for _, _, m in spans])):
            out[i] = torch.cat([torch.zeros(1), piece]) if len(seqs[i]) else torch.zeros(0)
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


def load_reference_model(name: str, tokenizer, *, device="cpu", dtype: str = "auto", **kw):
    """The reference causal LM (hub id, folder or alias), in eval mode on `device`, checked against the PRM's tokenizer."""
    model = AutoModelForCausalLM.from_pretrained(resolve_model(name), dtype=_torch_dtype(dtype), **kw)
    check_vocab(tokenizer, model, name)
    return model.to(device).eval()


def check_vocab(tokenizer, reference_model, name: str) -> None:
    """The reference reads the PRM's token ids, so their vocabularies must agree."""
    n = reference_model.config.vocab_size
    if len(tokenizer) > n:
        raise ValueError(f"reference model {name!r} has {n} tokens but the PRM's tokenizer has {len(tokenizer)}; "
                         "reference features need the model the PRM was initialised from (same tokenizer)")


__all__ = ["FEATURES", "META_KEY", "check_vocab", "combined_logits", "load_reference_model", "prefix_features",
           "token_logprobs"]
