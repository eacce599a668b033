"""transformers backend of the generation interface (CPU or one GPU).

Each call groups continuations into batches of at most `max_batch_rows` rows. Within a batch
every distinct prompt is prefilled once (left-padded), and its KV cache is then copied to the
rows that continue it, so n rollouts from one prefix cost one prefill, not n. Decoding is a
plain loop over a DynamicCache that drops finished rows as it goes, samples with counter-based
per-row randomness (the same continuation comes out whatever else shares the batch) and stops
where `params.step_format.find_stop` says (a blank line, where the format ends solutions on one,
and with stop="step" the step separator, wherever the tokenizer put it: a separator token of its
own, merged with text, or spread over two tokens) or at an end-of-sequence token.

Where decoding time goes on CPU (issue #38, bench/generate_speed.py), and what this loop does about it,
each without changing a single output: the prefill computes logits at the last position only; the
decode cache is allocated once per batch with room for every new token (`_RoomyLayer`), instead of
DynamicCache's concatenation, which copies the whole cache of every layer at every step; and on CPU
a grouped-query model's attention runs with `enable_gqa` (`gqa_attention`) instead of transformers'
repeat of each key/value head, which it does whenever there is a padding mask.

    from ttstrain.generation import load_generator
    gen = load_generator("transformers", model="default")
    out = gen.generate([prompt], SamplingParams(n=4, temperature=0.8, seed=0))
"""

from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext
from typing import Sequence

import numpy as np
import torch

from ttstrain.generation.base import (Completion, Generator, PromptResult, SamplingParams, check_streams, eos_id_list,
                                      row_seed)
from ttstrain.generation.prefix_cache import PrefixBatch, PrefixKVCache, find_prefixes, takes_logits_to_keep
from ttstrain.steps import STEP_SEPARATOR

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def counter_uniforms(seeds: np.ndarray, step: int) -> np.ndarray:
    """Uniform [0, 1) draws from splitmix64(seed + step): row i's draw depends only on (seeds[i], step)."""
    with np.errstate(over="ignore"):
        z = seeds + np.uint64(step + 1) * _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def sample_tokens(logits: torch.Tensor, temperature: float, top_p: float, uniforms: np.ndarray) -> torch.Tensor:
    """One token per row: argmax at temperature 0, else inverse-CDF sampling with the given uniforms."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.double() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        before = sorted_probs.cumsum(-1) - sorted_probs
        sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    cdf = probs.cumsum(-1)
    u = torch.from_numpy(uniforms).to(cdf.device).unsqueeze(-1) * cdf[:, -1:]
    return torch.searchsorted(cdf, u).squeeze(-1).clamp_(max=probs.shape[-1] - 1)


GQA_ATTENTION = "ttstrain_sdpa_gqa"


def _sdpa_gqa(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs):
    """transformers' SDPA attention, except that with a mask, grouped key/value heads go to SDPA as they
    are (`enable_gqa`) instead of being repeated per query head: transformers repeats them whenever a mask
    is given (CUDA's fast kernels take no mask with GQA), a copy of the whole cache per layer and step,
    three times the cache's size for SmolLM2. On CPU the result is the same, bit for bit."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if attention_mask is None or getattr(module, "num_key_value_groups", 1) == 1 or query.device.type != "cpu" \
            or kwargs.get("position_bias") is not None or kwargs.get("cache") is not None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    out = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask,
                                                           dropout_p=dropout, scale=scaling, enable_gqa=True)
    return out.transpose(1, 2).contiguous(), None


@contextmanager
def gqa_attention(model):
    """Within the block, a CPU model that runs transformers' "sdpa" attention runs `_sdpa_gqa` (same masks,
    same results); anything else is left as it is."""
    config = getattr(model, "config", None)
    if getattr(config, "_attn_implementation", None) != "sdpa" or next(model.parameters()).device.type != "cpu":
        yield
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    if GQA_ATTENTION not in AttentionInterface._global_mapping:
        AttentionInterface.register(GQA_ATTENTION, _sdpa_gqa)
        AttentionMaskInterface.register(GQA_ATTENTION, sdpa_mask)
    config._attn_implementation = GQA_ATTENTION
    try:
        yield
    finally:
        config._attn_implementation = "sdpa"


def roomy_cache(cache, rows: torch.Tensor, room: int):
    """`cache` (a prefilled DynamicCache) with its batch rows `rows` (a prompt once per continuation) copied into
    buffers with `room` free positions per layer (`_RoomyLayer`); layers of other kinds are only row-selected."""
    from transformers.cache_utils import DynamicLayer

    for i, layer in enumerate(cache.layers):
        if type(layer) is DynamicLayer and layer.is_initialized and layer.keys.numel():
            cache.layers[i] = _RoomyLayer(layer.keys, layer.values, rows, room)
        else:
            layer.batch_select_indices(rows)
    return cache


def _roomy_layer_class():
    from transformers.cache_utils import DynamicLayer

    class RoomyLayer(DynamicLayer):
        """A DynamicLayer whose keys and values are views of buffers allocated once with room to grow: `update`
        writes the new positions in place (DynamicLayer concatenates, copying the whole layer each decode
        step), and dropping finished rows moves the kept ones up in place. The attention reads the same
        numbers either way."""

        def __init__(self, keys, values, rows, room):
            super().__init__()
            b, h, n, d = len(rows), keys.shape[1], keys.shape[2], keys.shape[3]
            self._k = keys.new_empty((b, h, n + room, d))
            self._v = values.new_empty((b, values.shape[1], n + room, values.shape[3]))
            self._k[:, :, :n] = keys[rows]
            self._v[:, :, :n] = values[rows]
            self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True
            self._rows, self._len = b, n
            self._view()

        def _view(self):
            self.keys = self._k[:self._rows, :, :self._len]
            self.values = self._v[:self._rows, :, :self._len]

        def update(self, key_states, value_states, *args, **kwargs):
            end = self._len + key_states.shape[-2]
            if end > self._k.shape[2]:  # out of room (not in `_generate_batch`): grow like DynamicLayer
                self._k = torch.cat([self.keys, key_states], dim=-2)
                self._v = torch.cat([self.values, value_states], dim=-2)
            else:
                self._k[:self._rows, :, self._len:end] = key_states
                self._v[:self._rows, :, self._len:end] = value_states
            self._len = end
            self._view()
            return self.keys, self.values

        def batch_select_indices(self, indices):
            keep = indices.tolist()
            if keep != sorted(set(keep)):  # not a subset in order: copy like DynamicLayer
                self._k, self._v = self.keys[indices], self.values[indices]
            else:
                for dst, src in enumerate(keep):  # dst <= src: an in-place move up, no new buffer
                    if dst != src:
                        self._k[dst, :, :self._len] = self._k[src, :, :self._len]
                        self._v[dst, :, :self._len] = self._v[src, :, :self._len]
            self._rows = len(keep)
            self._view()

        def crop(self, tokens_to_remove):
            super().crop(tokens_to_remove)
            self._len = self.keys.shape[-2]

    return RoomyLayer


class _LazyClass:
    """The class `factory()` makes, made at first use (transformers is imported at use, not import)."""

    def __init__(self, factory):
        self._factory, self._cls = factory, None

    def __call__(self, *args, **kwargs):
        if self._cls is None:
            self._cls = self._factory()
        return self._cls(*args, **kwargs)


_RoomyLayer = _LazyClass(_roomy_layer_class)


class _StopTable:
    """Per-vocabulary-id facts the stop checks read: each token's text, whether it holds a newline (the
    prefix cache cuts there) and whether it ends the sequence (the tokenizer's end-of-sequence token and
    the model's generation config's, e.g. an instruct model's end-of-turn)."""

    def __init__(self, tokenizer, vocab_size: int, eos_ids=()):
        n = max(vocab_size, len(tokenizer))
        self.text = [""] * n
        self.contains_sep = np.zeros(n, bool)
        self.is_eos = np.zeros(n, bool)
        for i in range(len(tokenizer)):
            s = tokenizer.decode([i], skip_special_tokens=True)
            self.text[i] = s
            self.contains_sep[i] = STEP_SEPARATOR in s
        for e in eos_id_list(tokenizer.eos_token_id, list(eos_ids)):
            self.is_eos[e] = True
        self._may_stop: dict = {}

    def may_stop(self, fmt) -> np.ndarray:
        """Per token: does its text hold a character of the format's separator or end marker? A stop can
        only complete in a token that does, so the others skip the text search."""
        if fmt not in self._may_stop:
            chars = set(fmt.separator + (fmt.end_marker or ""))
            self._may_stop[fmt] = np.array([any(c in chars for c in t) for t in self.text], bool)
        return self._may_stop[fmt]


class HFGenerator(Generator):
    backend = "transformers"

    def __init__(self, model, tokenizer=None, *, device: str = "cpu", dtype: str = "float32",
                 max_batch_rows: int = 256, num_threads: int | None = None, model_name: str | None = None,
                 prefix_cache_bytes: int = 0):
        super().__init__()
        from ttstrain.models import load_causal_lm, load_tokenizer, resolve_model  # transformers: at use, not import

        if num_threads:
            torch.set_num_threads(num_threads)
        if isinstance(model, str):
            model_name = model_name or model
            path = resolve_model(model)
            self._tokenizer = tokenizer if tokenizer is not None else load_tokenizer(path)
            self.model = load_causal_lm(path, dtype=dtype, device=device)
        else:
            if tokenizer is None:
                raise ValueError("pass the tokenizer along with a loaded model")
            self.model, self._tokenizer = model, tokenizer
            model_name = model_name or getattr(model.config, "_name_or_path", "in-memory model")
        self.model.eval()
        self.model_name = model_name
        self.device = torch.device(device)
        self.max_batch_rows = max_batch_rows
        pad = self._tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self._tokenizer.eos_token_id
        gen_eos = eos_id_list(getattr(getattr(self.model, "generation_config", None), "eos_token_id", None))
        self._stops = _StopTable(self._tokenizer, self.model.config.vocab_size, gen_eos)
        # prompts that extend an earlier prompt (at a step boundary) prefill only their new tokens
        self.prefix_cache = PrefixKVCache(prefix_cache_bytes) if prefix_cache_bytes > 0 else None

    @property
    def tokenizer(self):
        return self._tokenizer

    @contextmanager
    def fresh_prefix_cache(self, max_bytes: int):
        """Within the block, prompts reuse the KV of prompts prefilled earlier in the block (a new, empty
        cache of `max_bytes`; 0: none); afterwards the generator's own cache is back. A stage opens one per
        chunk, so a resumed run computes each chunk exactly as an uninterrupted one."""
        saved = self.prefix_cache
        self.prefix_cache = PrefixKVCache(max_bytes) if max_bytes > 0 else None
        try:
            yield self.prefix_cache
        finally:
            self.prefix_cache = saved

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def identity(self) -> dict:
        return {"backend": self.backend, "model": self.model_name, "device": str(self.device),
                "dtype": str(next(self.model.parameters()).dtype), "parameters": self.num_parameters}

    # ---- public entry -------------------------------------------------------------------
    def generate(self, prompts: Sequence[str], params: SamplingParams,
                 streams: Sequence[int] | None = None) -> list[PromptResult]:
        self._streams = check_streams(prompts, streams)
        encoded = [self._tokenizer(p)["input_ids"] for p in prompts]
        results = [PromptResult(prompt=p, prompt_tokens=len(ids), completions=[None] * params.n)
                   for p, ids in zip(prompts, encoded)]
        # rows = (prompt index, continuation index); longest prompts first limits padding per batch; with a
        # prefix cache, shortest first, so a prompt finds the shorter ones it extends already prefilled
        sign = 1 if self.prefix_cache is not None else -1
        order = sorted(range(len(prompts)), key=lambda i: sign * len(encoded[i]))
        rows = [(i, j) for i in order for j in range(params.n)]
        prefill = 0
        self._progress = {"done": 0, "total": len(rows), "tokens": 0, "last": time.monotonic()}
        for start in range(0, len(rows), self.max_batch_rows):
            batch = rows[start:start + self.max_batch_rows]
            prefill += self._generate_batch(batch, prompts, encoded, params, results)
        self.stats.add(results, prefill_tokens=prefill)
        rows = sum(len(r.completions) for r in results)
        self.report_progress(rows, rows, sum(r.generated_tokens for r in results), finished=True)
        return results

    # ---- one batch ----------------------------------------------------------------------
    @torch.inference_mode()
    def _generate_batch(self, batch, prompts, encoded, params, results) -> int:
        with gqa_attention(self.model) if self.device.type == "cpu" else nullcontext():
            return self._decode_batch(batch, prompts, encoded, params, results)

    def _decode_batch(self, batch, prompts, encoded, params, results) -> int:
        from transformers import DynamicCache

        unique = list(dict.fromkeys(i for i, _ in batch))
        slot = {i: k for k, i in enumerate(unique)}
        if self.prefix_cache is not None:
            cache, out, mask, prefill_tokens = self._prefill_from_cache([encoded[i] for i in unique])
        else:
            width = max(len(encoded[i]) for i in unique)
            ids = torch.full((len(unique), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(unique), width), dtype=torch.long)
            for k, i in enumerate(unique):
                seq = encoded[i]
                ids[k, width - len(seq):] = torch.tensor(seq)
                mask[k, width - len(seq):] = 1
            ids, mask = ids.to(self.device), mask.to(self.device)
            positions = (mask.cumsum(-1) - 1).clamp_(min=0)
            cache = DynamicCache()
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                             past_key_values=cache, use_cache=True,
                             **({"logits_to_keep": 1} if takes_logits_to_keep(self.model) else {}))
            prefill_tokens = int(mask.sum())

        row_slots = torch.tensor([slot[i] for i, _ in batch], device=self.device)
        roomy_cache(cache, row_slots, params.max_new_tokens)
        logits = out.logits[:, -1, :].float()[row_slots]
        mask = mask[row_slots]
        next_pos = mask.sum(-1)
        seeds = np.array([row_seed(params.seed, prompts[i], j, self._streams[i]) for i, j in batch], dtype=np.uint64)
        fmt = params.step_format
        texts = [""] * len(batch)  # each row's generated text so far, token by token
        may_stop = self._stops.may_stop(fmt)

        alive = np.arange(len(batch))  # batch row index of each row still in the cache
        tokens: list[list[int]] = [[] for _ in batch]
        reasons = [None] * len(batch)
        st = self._stops
        for t in range(params.max_new_tokens):
            new = sample_tokens(logits, params.temperature, params.top_p, counter_uniforms(seeds[alive], t))
            new_np = new.cpu().numpy()
            done = np.zeros(len(alive), bool)
            for k, (r, tok) in enumerate(zip(alive, new_np)):
                tokens[r].append(int(tok))
                if st.is_eos[tok]:
                    reasons[r] = "eos"
                else:
                    texts[r] += st.text[tok]
                    hit = fmt.find_stop(prompts[batch[r][0]], texts[r], params.stop) if may_stop[tok] else None
                    if hit is not None:
                        reasons[r] = hit[1]
                done[k] = reasons[r] is not None
            self._decode_progress(len(alive), int(done.sum()))
            if done.all() or t == params.max_new_tokens - 1:
                break
            keep = np.flatnonzero(~done)
            if len(keep) < len(alive):
                keep_t = torch.from_numpy(keep).to(self.device)
                cache.batch_select_indices(keep_t)
                mask, next_pos, new = mask[keep_t], next_pos[keep_t], new[keep_t]
                alive = alive[keep]
            mask = torch.cat([mask, mask.new_ones((len(alive), 1))], dim=-1)
            out = self.model(input_ids=new.unsqueeze(-1), attention_mask=mask, position_ids=next_pos.unsqueeze(-1),
                             past_key_values=cache, use_cache=True)
            next_pos = next_pos + 1
            logits = out.logits[:, -1, :].float()

        for r, (i, j) in enumerate(batch):
            results[i].completions[j] = self._completion(prompts[i], tokens[r], reasons[r] or "length", params)
        return prefill_tokens

    def _decode_progress(self, tokens: int, finished_rows: int) -> None:
        """Count a decode step's tokens and finished rows; tell the progress hook at most every half second."""
        if self.progress_hook is None:
            return
        pr = self._progress
        pr["tokens"] += tokens
        pr["done"] += finished_rows
        now = time.monotonic()
        if now - pr["last"] >= 0.5:
            pr["last"] = now
            self.report_progress(pr["done"], pr["total"], pr["tokens"])

    def _prefill_from_cache(self, seqs: list[list[int]]):
        """Prefill prompts on top of their longest cached prefixes (cut after a step separator), store each.

        New tokens are right-aligned (`PrefixBatch`), so the last column is every row's last prompt
        token. Returns the cache, the model output, the attention mask and the tokens actually prefilled.
        """
        cuts = [[k + 1 for k, t in enumerate(seq) if self._stops.contains_sep[t]] for seq in seqs]
        batch = PrefixBatch(self.model, seqs, find_prefixes(self.prefix_cache, seqs, cuts), self.pad_id,
                            right_align=True, last_logits_only=True)
        for r, seq in enumerate(seqs):
            batch.store(self.prefix_cache, r, seq, cuts[r], torch.zeros(0))
        return batch.cache, batch.output, batch.mask, sum(batch.lengths)

    def _completion(self, prompt: str, tokens: list[int], reason: str, params: SamplingParams) -> Completion:
        text = self._tokenizer.decode(tokens, skip_special_tokens=True)
        hit = params.step_format.find_stop(prompt, text, params.stop)
        if hit is not None:  # the text past the stop (in the stopping token) is not this step's
            text = text[:hit[0]]
        return Completion(text=text, num_tokens=len(tokens), finish_reason=reason)
