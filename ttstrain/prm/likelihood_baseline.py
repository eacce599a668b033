"""The policy-likelihood baseline: rank solutions by how probable the policy finds their tokens.

A PRM is worth training only if it ranks a question's answers better than what the policy already
knows for free. The cheapest such verifier is the policy's own confidence: the geometric mean of
its token probabilities over the solution (exp of the mean token log-prob, prompt excluded), read
at every step end so it aggregates like a PRM's step scores (`last` is the whole solution's).
`ttstrain eval-prm --likelihood_baseline auto` scores the same samples with it next to the PRM;
on the default world v2 it ranks answers within a question better than the trained value head
(docs/results.md). `ttstrain search --verifier likelihood` searches with it.

The samples of one question share their prompt (worked examples and all, often most of the tokens),
so a prefix KV cache (`ttstrain.generation.prefix_cache`, as the PRM scorer's) runs each shared prompt
once and each solution from it (the seam token again, so every log-prob reads its own next token), a
few prompt groups at a time so their prompts sit in the cache together;
`prefix_cache_bytes=0` runs every sequence whole.

    from ttstrain.prm.likelihood_baseline import LikelihoodScorer
    lik = LikelihoodScorer.from_pretrained("default")
    lik.score([prompt], [["3 + 4 = 7", "The answer is \\\\boxed{7}."]])   # [[p_step1, p_step2]]
"""

from __future__ import annotations

import math
from collections import Counter

import torch

from ttstrain.aggregation import DEFAULT_AGGREGATION, aggregate
from ttstrain.prompts import PromptFormat
from ttstrain.prm.reference_features import token_logprobs
from ttstrain.devices import resolve_device
from ttstrain.generation.prefix_cache import PrefixKVCache
from ttstrain.models import load_causal_lm, load_tokenizer
from ttstrain.steps import step_end_positions


class LikelihoodScorer:
    """A causal LM scoring each step end by exp(mean log p of the solution's tokens so far).

    The interface is `ttstrain.prm.verifiers.Verifier` (`PRMScorer`'s), so the evaluation and search code
    that takes a PRM scorer takes this one too.
    """

    def __init__(self, model, tokenizer, *, name: str = "", batch_size: int = 32,
                 prompt_format: PromptFormat | None = None, prefix_cache_bytes: int = 256 << 20):
        self.model, self.tokenizer, self.name, self.batch_size = model.eval(), tokenizer, name, batch_size
        self.prompt_format = prompt_format or PromptFormat()
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad is None:
            raise ValueError(f"the tokenizer of {name or 'the likelihood model'} has neither a pad nor an eos token")
        self.pad_token_id = pad
        self.stats = {"solutions": 0, "tokens": 0}
        self.last_scored_tokens: list[int] = []  # tokens read per solution of the latest score call (search costs)
        self.progress_hook = None  # called with the number of solutions of each wave scored (once a call, uncached)
        self.prefix_cache = PrefixKVCache(prefix_cache_bytes) if prefix_cache_bytes > 0 else None

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, device: str = "auto", dtype: str = "auto", **kw) -> "LikelihoodScorer":
        """The causal LM `name_or_path` (alias such as `default`, folder or hub id) and its tokenizer, on
        `device` (`ttstrain.prm.scoring.resolve_device`: auto is cuda when available)."""
        model = load_causal_lm(name_or_path, dtype=dtype, device=resolve_device(device))
        return cls(model, load_tokenizer(name_or_path), name=str(name_or_path), **kw)

    reads_questions = False

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def prompt_for(self, question: str) -> str:
        return self.prompt_format.build(question)

    def describe(self) -> dict:
        """Nothing beyond its type and model path, which a run records itself."""
        return {}

    def clear_prefix_caches(self) -> None:
        """Empty the prefix KV cache, keeping its size limit."""
        if self.prefix_cache is not None:
            self.prefix_cache = PrefixKVCache(self.prefix_cache.max_bytes)

    @torch.inference_mode()
    def score(self, prompts: list[str], steps: list[list[str]], batch_size: int | None = None) -> list[list[float]]:
        """Per-step geometric-mean token probability of the solution so far; a solution with no step gets []."""
        if len(prompts) != len(steps):
            raise ValueError(f"{len(prompts)} prompts but {len(steps)} step lists")
        fmt = self.prompt_format.steps  # the run's step format: each step ends where the PRM's steps do
        encoded = {i: step_end_positions(self.tokenizer, p, list(s), fmt=fmt) for i, (p, s) in
                   enumerate(zip(prompts, steps)) if len(s)}
        keys = list(encoded)
        seqs = [encoded[i].input_ids for i in keys]
        batch_size = batch_size or self.batch_size
        if self.prefix_cache is None:
            logprobs = token_logprobs(self.model, seqs, self.pad_token_id, batch_size)
            self._progress(len(keys))
        else:
            by_key = {}
            for wave in prompt_waves(encoded, keys, 4 * batch_size):
                by_key.update(zip(wave, self._cached_logprobs([encoded[i] for i in wave], batch_size)))
                self._progress(len(wave))
            logprobs = [by_key[i] for i in keys]
        out: list[list[float]] = [[] for _ in prompts]
        for i, lp in zip(keys, logprobs):
            start = encoded[i].prompt_length
            cumulative = torch.cumsum(lp[start:].double(), 0)
            out[i] = [math.exp(float(cumulative[end - start]) / (end - start + 1)) for end in encoded[i].step_end_positions]
        self.last_scored_tokens = [len(encoded[i].input_ids) if i in encoded else 0 for i in range(len(prompts))]
        self.stats["solutions"] += len(keys)
        self.stats["tokens"] += sum(self.last_scored_tokens)
        return out

    def _progress(self, solutions: int) -> None:
        if self.progress_hook is not None:
            self.progress_hook(solutions)

    def _cached_logprobs(self, encoded: list, batch_size: int) -> list[torch.Tensor]:
        """token_logprobs of these sequences through the prefix cache. A call looks its prefixes up before it
        runs, so the prompts that sequences of this call share run first, alone (the seam token is recomputed
        for each sequence, so every log-prob reads its own next token)."""
        shared = Counter(tuple(e.input_ids[:e.prompt_length]) for e in encoded)
        first = [list(p) for p, n in shared.items() if n > 1 and len(p) > 1]
        if first:
            token_logprobs(self.model, first, self.pad_token_id, batch_size, cache=self.prefix_cache,
                           boundaries=[[len(p)] for p in first])
        # prefixes a later sequence may share: the prompt, and the solution up to each step end
        cuts = [[e.prompt_length] + [end + 1 for end in e.step_end_positions] for e in encoded]
        return token_logprobs(self.model, [e.input_ids for e in encoded], self.pad_token_id, batch_size,
                              cache=self.prefix_cache, boundaries=cuts)

    def score_solutions(self, prompts: list[str], steps: list[list[str]], how: str = DEFAULT_AGGREGATION,
                        batch_size: int | None = None) -> list[float]:
        """One aggregated score per solution (`ttstrain.aggregation.aggregate` of `score`)."""
        return [aggregate(s, how) for s in self.score(prompts, steps, batch_size)]


def prompt_waves(encoded: dict, keys: list, size: int) -> list[list]:
    """`keys` in waves of whole prompt groups (the sequences sharing a prompt's tokens), each wave closed
    once it holds `size` sequences: a wave's shared prompts stay few enough to sit in the cache together."""
    groups: dict[tuple, list] = {}
    for i in keys:
        groups.setdefault(tuple(encoded[i].input_ids[:encoded[i].prompt_length]), []).append(i)
    waves, wave = [], []
    for members in groups.values():
        wave += members
        if len(wave) >= size:
            waves.append(wave)
            wave = []
    return waves + ([wave] if wave else [])


__all__ = ["LikelihoodScorer"]
