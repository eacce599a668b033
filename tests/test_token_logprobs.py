"""Token log-probs read the LM head a bounded chunk of positions at a time, and equal a plain log-softmax."""

from __future__ import annotations

import pytest
import torch

from ttstrain.generation import prefix_cache
from ttstrain.prm.likelihood_baseline import LikelihoodScorer
from ttstrain.models import load_causal_lm, load_tokenizer
from ttstrain.generation.prefix_cache import PrefixKVCache
from ttstrain.prompts import format_prompt
from ttstrain.prm.reference_features import token_logprobs
from ttstrain.steps import split_steps
from ttstrain.world.task import problems_split

CHUNK_ROWS = 8


class RecordingHead(torch.nn.Module):
    """The model's LM head, noting how many positions each call reads."""

    def __init__(self, head):
        super().__init__()
        self.head, self.rows = head, []

    def forward(self, x):
        self.rows.append(x.shape[:-1].numel())
        return self.head(x)


@pytest.fixture()
def recorded_policy(monkeypatch):
    """The default world's policy with a recording LM head, and chunks of CHUNK_ROWS positions."""
    model = load_causal_lm("default")
    head = RecordingHead(model.get_output_embeddings())
    model.set_output_embeddings(head)
    monkeypatch.setattr(prefix_cache, "LOGPROB_CHUNK_BYTES", 4 * model.config.vocab_size * CHUNK_ROWS, raising=False)
    return model, head


def _world_inputs(n=6):
    rows = problems_split("test", n, seed=0)[:n]
    return [format_prompt(r["question"]) for r in rows], [split_steps(r["solution"]) for r in rows]


@pytest.mark.parametrize("path", ["packed", "unpacked", "prefix_cache", "likelihood"])
def test_the_lm_head_never_reads_more_than_a_chunk_of_positions(recorded_policy, path):
    model, head = recorded_policy
    tok = load_tokenizer("default")
    prompts, steps = _world_inputs()
    seqs = [tok(p + "\n".join(s))["input_ids"] for p, s in zip(prompts, steps)]
    positions = sum(len(s) for s in seqs)
    if path == "likelihood":
        LikelihoodScorer(model, tok, batch_size=len(seqs)).score(prompts, steps)
    elif path == "prefix_cache":
        cuts = [[len(s) // 2] for s in seqs]
        token_logprobs(model, seqs, tok.pad_token_id, len(seqs), cache=PrefixKVCache(), boundaries=cuts)
    else:
        token_logprobs(model, seqs, tok.pad_token_id, len(seqs), packing=(path == "packed"))
    assert positions > 10 * CHUNK_ROWS and head.rows
    assert max(head.rows) <= CHUNK_ROWS, f"the LM head read {max(head.rows)} positions at once ({positions} in the batch)"


@pytest.mark.parametrize("chunk_rows", [1, 3, 1000])
def test_chunked_logprobs_equal_a_plain_log_softmax(tiny_llama, monkeypatch, chunk_rows):
    monkeypatch.setattr(prefix_cache, "LOGPROB_CHUNK_BYTES", 4 * tiny_llama.config.vocab_size * chunk_rows,
                        raising=False)
    torch.manual_seed(2)
    base = torch.randint(5, 40, (30,)).tolist()
    seqs = [base[:9], base, base[:17] + [6, 7], [8], base[3:25]]
    with torch.inference_mode():
        want = []
        for s in seqs:
            logits = tiny_llama(input_ids=torch.tensor([s])).logits[0].float()
            lp = torch.zeros(len(s))
            lp[1:] = torch.log_softmax(logits[:-1], -1).gather(-1, torch.tensor(s[1:])[:, None])[:, 0]
            want.append(lp)
    cuts = [[5, len(s)] for s in seqs]
    cache = PrefixKVCache()
    token_logprobs(tiny_llama, seqs[:2], 0, batch_size=2, cache=cache, boundaries=cuts[:2])
    for got in (token_logprobs(tiny_llama, seqs, 0, batch_size=3),
                token_logprobs(tiny_llama, seqs, 0, batch_size=2, packing=False),
                token_logprobs(tiny_llama, seqs, 0, batch_size=2, cache=cache, boundaries=cuts)):
        for g, w in zip(got, want):
            assert g.shape == w.shape and torch.allclose(g, w, atol=1e-5)


def test_a_model_with_transformed_logits_keeps_the_full_logit_pass(char_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=len(char_tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2)
    plain = LlamaForCausalLM(cfg)
    assert prefix_cache.logprob_pass(plain)[0] is plain.base_model
    cfg.final_logit_softcapping = 30.0  # Gemma 2's: the logits are not the LM head's output
    runner, per_token = prefix_cache.logprob_pass(LlamaForCausalLM(cfg))
    assert per_token is prefix_cache.next_token_logprobs and runner.get_output_embeddings() is not None
