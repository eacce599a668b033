"""The prefix KV cache: scores from cached prefixes equal full forwards, and the tokens it spares are counted."""

from __future__ import annotations

import pytest
import torch

from ttstrain.generation.prefix_cache import PrefixKVCache, cached_forward, next_token_logprobs, value_head_logits
from ttstrain.prompts import format_prompt
from ttstrain.prm.reference_features import token_logprobs
from ttstrain.prm.scoring import PRMScorer
from ttstrain.steps import split_steps
from ttstrain.world.task import problems_split



def _beam_like(n=6, seed=3):
    """Each solution's prefixes after 1, 2, ... steps: what beam rounds send the verifier."""
    rows = problems_split("test", n // 5 + 1, seed=seed)[:n]
    prompts = [format_prompt(r["question"]) for r in rows]
    steps = [split_steps(r["solution"]) for r in rows]
    return prompts, steps


def test_cached_forward_equals_a_full_forward(tiny_llama):
    torch.manual_seed(0)
    base = torch.randint(5, 40, (30,)).tolist()
    seqs = [base[:12], base[:20], base[:30], base[:20] + [7, 8, 9], [5] + base[1:25]]
    cuts = [[6, 12], [6, 12, 20], [6, 12, 20, 30], [6, 12, 20, 23], [6, 12, 25]]
    cache = PrefixKVCache()
    with torch.inference_mode():
        full = [tiny_llama(input_ids=torch.tensor([s])).logits[0].float() for s in seqs]
    first = cached_forward(tiny_llama, seqs[:1], cuts[:1], cache, 0, 4, next_token_logprobs)
    rest = cached_forward(tiny_llama, seqs, cuts, cache, 0, 2, next_token_logprobs, indices=[1, 2, 3, 4])
    outs = {0: first[0], **rest}
    for i, s in enumerate(seqs):
        want = torch.log_softmax(full[i], -1)[:-1].gather(-1, torch.tensor(s[1:])[:, None])[:, 0]
        assert torch.allclose(outs[i][:-1], want, atol=1e-5), i
    # seqs 1-3 grow from the first call's 12 tokens (the seam token recomputed: 11 reused each); a call's
    # sequences are looked up before any of them runs, so they do not reuse each other; seq 4 differs at token 0
    assert cache.stats["tokens_reused"] == 3 * 11
    assert cache.stats["tokens_computed"] == 12 + (20 - 11) + (30 - 11) + (23 - 11) + 25
    # a later call finds the longest stored prefix: base[:20] for base[:20] + [7, 8, 9]
    assert cache.lookup(seqs[3], cuts[3])[0] == 20


def test_only_boundary_prefixes_are_found_and_old_entries_are_evicted(tiny_llama):
    seq = list(range(5, 35))
    cache = PrefixKVCache()
    cached_forward(tiny_llama, [seq[:20]], [[10, 20]], cache, 0, 4, value_head_logits)
    assert cache.lookup(seq, [10, 15])[0] == 10 and cache.lookup(seq, [15])[0] == 0
    assert cache.lookup(seq[:20], [20])[0] == 0  # the whole sequence is not a proper prefix of itself
    bounded = PrefixKVCache(max_bytes=int(cache.nbytes * 2.2))  # room for two sequences of 20-22 tokens
    for k in range(3):
        cached_forward(tiny_llama, [[4 + k] + seq[1:20 + k]], [[10]], bounded, 0, 4, value_head_logits)
    assert len(bounded) == 2 and bounded.stats["evicted"] == 1 and bounded.nbytes <= bounded.max_bytes
    assert bounded.lookup([4] + seq[1:], [10])[0] == 0 and bounded.lookup([6] + seq[1:], [10])[0] == 10
    too_small = PrefixKVCache(max_bytes=10)
    out = cached_forward(tiny_llama, [seq], [[10]], too_small, 0, 4, value_head_logits)
    assert len(too_small) == 0 and len(out[0]) == len(seq)  # not stored, still computed
    with pytest.raises(ValueError, match="max_bytes"):
        PrefixKVCache(0)


def test_token_logprobs_from_the_cache_equal_the_packed_pass(tiny_llama):
    torch.manual_seed(1)
    base = torch.randint(5, 40, (26,)).tolist()
    seqs = [base[:10], base[:18], base, base[:18] + [9, 9]]
    cuts = [[5, 10], [5, 10, 18], [5, 10, 18, 26], [5, 10, 18, 20]]
    packed = token_logprobs(tiny_llama, seqs, 0, batch_size=2)
    cache = PrefixKVCache()
    token_logprobs(tiny_llama, seqs[:2], 0, batch_size=2, cache=cache, boundaries=cuts[:2])
    cached = token_logprobs(tiny_llama, seqs, 0, batch_size=2, cache=cache, boundaries=cuts)
    for a, b in zip(packed, cached):
        assert torch.allclose(a, b, atol=1e-5)
    assert cache.stats["tokens_reused"] > 0


def test_a_scorer_with_a_prefix_cache_scores_beam_rounds_as_without(prm_dir):  # noqa: F811
    prompts, steps = _beam_like()
    plain = PRMScorer.from_pretrained(prm_dir, batch_size=4)
    cached = PRMScorer.from_pretrained(prm_dir, batch_size=4, prefix_cache_bytes=64 << 20)
    rounds = max(len(s) for s in steps)
    for k in range(1, rounds + 1):
        live = [i for i in range(len(prompts)) if len(steps[i]) >= k]
        args = ([prompts[i] for i in live], [steps[i][:k] for i in live])
        for a, b in zip(plain.score(*args), cached.score(*args)):
            assert a == pytest.approx(b, abs=1e-5)
        assert cached.last_scored_tokens == plain.last_scored_tokens  # what the verifier read, as the cost record counts
    # after the first round only the new step (and one seam token) runs through the PRM
    assert cached.stats["tokens"] < 0.5 * plain.stats["tokens"]
    assert cached.stats["tokens"] + cached.stats["tokens_from_prefix_cache"] == plain.stats["tokens"]


def test_the_generator_prefills_only_what_a_cached_prompt_does_not_cover(tiny_llama, char_tokenizer):
    from ttstrain.generation import SamplingParams
    from ttstrain.generation.hf import HFGenerator

    base = format_prompt("Start with 2.\n1. Add 3.\nWhat is the result?")
    prompts = [base, base + "2 + 3 = 5\n", base + "2 + 3 = 5\nThe answer is 5\n", base + "2 + 3 = 6\n"]
    params = [SamplingParams(n=3, temperature=1.0, max_new_tokens=12, seed=4),
              SamplingParams(n=1, temperature=0.0, max_new_tokens=12, seed=4)]
    plain = HFGenerator(tiny_llama, char_tokenizer, max_batch_rows=3)
    cached = HFGenerator(tiny_llama, char_tokenizer, max_batch_rows=3, prefix_cache_bytes=64 << 20)
    for p in params:
        want = [[c.text for c in r.completions] for r in plain.generate(prompts, p)]
        got = [[c.text for c in r.completions] for r in cached.generate(prompts, p)]
        assert got == want
    # batches of 3 rows hold one prompt each, shortest first: the second and third prompts extend the first
    # and second, and the second call finds every prompt cached (each re-runs one seam token, and what follows)
    assert cached.stats.prefill_tokens < 0.6 * plain.stats.prefill_tokens
    assert cached.prefix_cache.stats["tokens_reused"] > 0
