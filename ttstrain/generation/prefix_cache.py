"""A bounded prefix KV cache: score a sequence by running only the tokens after its longest cached prefix.

Step search scores the same prefixes again and again: a beam round's candidates are their parents
plus one new step, DVTS subtrees extend one path, SLG's completions share their state, and the 64
samples of a question share its prompt. A causal model's outputs at a position depend only on the
tokens up to it, so the outputs and the key/value tensors of a scored sequence serve every longer
sequence that starts with it. `cached_forward` looks up each sequence's longest cached prefix
(cut at given boundaries: the prompt's end and each step end), runs the rest on top of that
prefix's KV (left-padded past, right-padded new tokens, explicit position ids), and stores the
whole sequence for the next call. Results equal a full forward up to float rounding (tested).

    cache = PrefixKVCache(max_bytes=512 << 20)
    outs = cached_forward(model, seqs, boundaries, cache, pad_token_id=0, batch_size=32,
                          per_token=lambda logits, next_ids: logits[..., 0])

`per_token(logits, next_ids)` maps the model's output for a batch (B, T, ...) and the next token at
each position (B, T; the pad id past the end) to one number per position (B, T): the value head's
logit for a PRM, log p(next token) for a reference policy. The last reused position is always
recomputed, so an output that reads the next token is right at the seam. The cache evicts the
least recently used sequences beyond `max_bytes` (keys, values and outputs counted); it is for one
model (keys are token ids only).

`model` may also be a causal LM's body (its hidden states are then what `per_token` reads):
`logprob_pass` gives the body and a `per_token` that applies the LM head to a bounded chunk of
positions at a time (`lm_head_logprobs`), so log-probs of a batch never hold batch x length x
vocabulary logits (Qwen's 151,936-token vocabulary makes that gigabytes). The packed pass of
`ttstrain.prm.reference_features.token_logprobs` reads its log-probs the same way.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from typing import Callable, Sequence

import torch

PerToken = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# the most bytes one float32 full-vocabulary chunk of logits may take in `lm_head_logprobs`
LOGPROB_CHUNK_BYTES = 256 << 20
# config fields of causal LMs whose logits are not lm_head(hidden), and the values meaning "unchanged"
_LOGIT_TRANSFORMS = {"final_logit_softcapping": (None,), "logit_scale": (None, 1, 1.0), "logits_scaling": (None, 1, 1.0)}


class _Entry:
    __slots__ = ("kv", "outputs", "keys", "nbytes")

    def __init__(self, kv: list[tuple[torch.Tensor, torch.Tensor]], outputs: torch.Tensor, keys: list[tuple]):
        self.kv, self.outputs, self.keys = kv, outputs, keys
        self.nbytes = sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in kv) \
            + outputs.numel() * outputs.element_size()


class PrefixKVCache:
    """Least-recently-used store of scored sequences, found by any of their boundary prefixes."""

    def __init__(self, max_bytes: int = 512 << 20):
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._by_prefix: dict[tuple, tuple[int, int]] = {}  # prefix -> (entry id, prefix length)
        self._next_id = 0
        self.stats = {"lookups": 0, "hits": 0, "tokens_reused": 0, "tokens_computed": 0, "evicted": 0}

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, seq: Sequence[int], boundaries: Sequence[int]) -> tuple[int, _Entry | None]:
        """(length, entry) of the longest cached prefix of `seq` cut at a boundary shorter than `seq`."""
        self.stats["lookups"] += 1
        for b in sorted({b for b in boundaries if 1 < b < len(seq)}, reverse=True):
            hit = self._by_prefix.get(tuple(seq[:b]))
            if hit is not None:
                entry_id, length = hit
                self._entries.move_to_end(entry_id)
                self.stats["hits"] += 1
                return length, self._entries[entry_id]
        return 0, None

    def store(self, seq: Sequence[int], boundaries: Sequence[int], kv, outputs: torch.Tensor) -> None:
        keys = [tuple(seq[:b]) for b in sorted({b for b in boundaries if 1 < b <= len(seq)} | {len(seq)})]
        entry = _Entry(kv, outputs, keys)
        if entry.nbytes > self.max_bytes:
            return
        entry_id, self._next_id = self._next_id, self._next_id + 1
        self._entries[entry_id] = entry
        self.nbytes += entry.nbytes
        for key in keys:
            self._by_prefix[key] = (entry_id, len(key))
        while self.nbytes > self.max_bytes:
            self._evict_oldest()

    def _evict_oldest(self) -> None:
        entry_id, entry = self._entries.popitem(last=False)
        self.nbytes -= entry.nbytes
        self.stats["evicted"] += 1
        for key in entry.keys:
            if self._by_prefix.get(key, (None,))[0] == entry_id:
                del self._by_prefix[key]


def find_prefixes(cache: PrefixKVCache, seqs: Sequence[Sequence[int]], boundaries: Sequence[Sequence[int]],
                  ) -> list[tuple[int, _Entry | None]]:
    """Per sequence, (how many leading tokens to reuse, the entry they come from): its longest cached
    prefix minus one token, so the seam position is recomputed; (0, None) without a cached prefix."""
    reuse = []
    for seq, cuts in zip(seqs, boundaries):
        length, entry = cache.lookup(seq, cuts)
        reuse.append((length - 1, entry) if entry is not None else (0, None))
    return reuse


def takes_logits_to_keep(model) -> bool:
    """Whether the model's forward takes `logits_to_keep` (transformers' causal LMs do; a stand-in may not)."""
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


class PrefixBatch:
    """One forward of sequences on top of their reused prefixes.

    Row layout: [padding | reused past | new tokens], the new tokens left-aligned in their part
    (right padding) or, with `right_align`, right-aligned so the last column is every row's last
    token (what a generator continues from); the attention mask's zeros are padding. With
    `last_logits_only` (a causal LM), the output's logits are the last column's alone.
    """

    def __init__(self, model, seqs: Sequence[Sequence[int]], reuse: Sequence[tuple[int, _Entry | None]],
                 pad_token_id: int, right_align: bool = False, last_logits_only: bool = False):
        from transformers import DynamicCache

        device = next(model.parameters()).device
        self.reuse, self.right_align = list(reuse), right_align
        self.lengths = [len(seq) - start for seq, (start, _) in zip(seqs, reuse)]  # new tokens per row
        self.past_len = max(start for start, _ in reuse)
        self.new_len = max(self.lengths)
        rows = len(seqs)
        ids = torch.full((rows, self.new_len), pad_token_id, dtype=torch.long)
        mask = torch.zeros((rows, self.past_len + self.new_len), dtype=torch.long)
        positions = torch.zeros((rows, self.new_len), dtype=torch.long)
        for r, (seq, (start, _)) in enumerate(zip(seqs, reuse)):
            cols = self.new_columns(r)
            ids[r, cols] = torch.as_tensor(seq[start:], dtype=torch.long)
            positions[r, cols] = start + torch.arange(self.lengths[r])
            mask[r, self.past_len - start:self.past_len] = 1
            mask[r, self.past_len + cols.start:self.past_len + cols.stop] = 1
        self.cache = DynamicCache()
        if self.past_len:
            for layer, (keys, values) in enumerate(stack_past(reuse, self.past_len)):
                self.cache.update(keys.to(device), values.to(device), layer)
        self.mask = mask.to(device)
        self.output = model(input_ids=ids.to(device), attention_mask=self.mask, position_ids=positions.to(device),
                            past_key_values=self.cache, use_cache=True,
                            **({"logits_to_keep": 1} if last_logits_only and takes_logits_to_keep(model) else {}))

    def new_columns(self, r: int) -> slice:
        """Where row r's new tokens sit among the `new_len` columns of the input."""
        n = self.lengths[r]
        return slice(self.new_len - n, self.new_len) if self.right_align else slice(0, n)

    def row_kv(self, r: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Row r's keys and values for its whole sequence (reused past, then new tokens), copied out."""
        start, cols, past = self.reuse[r][0], self.new_columns(r), self.past_len
        return [tuple(torch.cat([t[r, :, past - start:past], t[r, :, past + cols.start:past + cols.stop]], dim=1)
                      for t in (layer.keys, layer.values)) for layer in self.cache.layers]

    def store(self, cache: PrefixKVCache, r: int, seq: Sequence[int], boundaries: Sequence[int],
              outputs: torch.Tensor) -> None:
        """Keep row r's sequence in `cache` (with its per-position `outputs`) and count what ran."""
        cache.store(seq, boundaries, self.row_kv(r), outputs)
        cache.stats["tokens_reused"] += self.reuse[r][0]
        cache.stats["tokens_computed"] += self.lengths[r]


@torch.inference_mode()
def cached_forward(model, seqs: Sequence[Sequence[int]], boundaries: Sequence[Sequence[int]], cache: PrefixKVCache,
                   pad_token_id: int, batch_size: int, per_token: PerToken,
                   indices: Sequence[int] | None = None) -> dict[int, torch.Tensor]:
    """Per-position outputs (1-D float tensors, one per sequence) of `seqs[i]` for i in `indices` (default
    all), running each only from its longest cached prefix; every sequence is stored for later calls."""
    todo = list(range(len(seqs)) if indices is None else indices)
    reuse = dict(zip(todo, find_prefixes(cache, [seqs[i] for i in todo], [boundaries[i] for i in todo])))
    out: dict[int, torch.Tensor] = {}
    order = sorted(todo, key=lambda i: -(len(seqs[i]) - reuse[i][0]))
    for b in range(0, len(order), batch_size):
        chunk = order[b:b + batch_size]
        batch = PrefixBatch(model, [seqs[i] for i in chunk], [reuse[i] for i in chunk], pad_token_id)
        outputs = position_outputs(batch.output)
        next_ids = torch.full(outputs.shape[:2], pad_token_id, dtype=torch.long)
        for r, i in enumerate(chunk):
            start = reuse[i][0]
            next_ids[r, :batch.lengths[r] - 1] = torch.as_tensor(seqs[i][start + 1:], dtype=torch.long)
        values = per_token(outputs, next_ids.to(outputs.device)).float().cpu()
        for r, i in enumerate(chunk):
            start, entry = reuse[i]
            head = entry.outputs[:start] if entry is not None else values.new_zeros(0)
            out[i] = torch.cat([head, values[r, batch.new_columns(r)]])
            batch.store(cache, r, seqs[i], boundaries[i], out[i])
    return out


def stack_past(reuse: Sequence[tuple[int, _Entry | None]], past_len: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer, each row's reused keys and values (its first `start` positions) left-padded to `past_len`."""
    donor = next(entry for start, entry in reuse if entry is not None and start > 0)
    stacked = []
    for layer, (k0, v0) in enumerate(donor.kv):
        keys = k0.new_zeros((len(reuse), k0.shape[0], past_len, k0.shape[2]))
        values = v0.new_zeros((len(reuse), v0.shape[0], past_len, v0.shape[2]))
        for r, (start, entry) in enumerate(reuse):
            if entry is not None and start > 0:
                keys[r, :, past_len - start:] = entry.kv[layer][0][:, :start]
                values[r, :, past_len - start:] = entry.kv[layer][1][:, :start]
        stacked.append((keys, values))
    return stacked


def position_outputs(output) -> torch.Tensor:
    """The per-position tensor of a forward: a model's logits (as float32), or a body's hidden states."""
    logits = getattr(output, "logits", None)
    return logits.float() if logits is not None else output.last_hidden_state


def next_token_logprobs(logits: torch.Tensor, next_ids: torch.Tensor) -> torch.Tensor:
    """log p(next token | tokens so far) at each position from full logits (the last position's value is never read)."""
    return torch.log_softmax(logits, dim=-1).gather(-1, next_ids[..., None])[..., 0]


def lm_head_logprobs(hidden: torch.Tensor, head, targets: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """log p(target) at each position (hidden (..., H), targets (...)) through the LM head `head`, a chunk
    of positions at a time: no full-vocabulary tensor exceeds LOGPROB_CHUNK_BYTES in float32."""
    rows = max(1, LOGPROB_CHUNK_BYTES // (4 * vocab_size))
    flat, ids = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
    out = torch.empty(ids.shape, dtype=torch.float32, device=hidden.device)
    for s in range(0, len(ids), rows):
        out[s:s + rows] = next_token_logprobs(head(flat[s:s + rows]).float(), ids[s:s + rows])
    return out.view(targets.shape)


def logprob_pass(model) -> tuple[torch.nn.Module, PerToken]:
    """What to run for a causal LM's log p(next token), and the `per_token` that reads it off the output.

    The model's body and `lm_head_logprobs` over its hidden states; for a model whose logits are not
    its LM head's output (soft-capped or scaled: Gemma 2, Cohere, Granite), that has no separate body,
    or that is not a transformers model (a PEFT wrapper), the whole model and `next_token_logprobs`
    over its full logits.
    """
    from transformers import PreTrainedModel

    if not isinstance(model, PreTrainedModel):
        return model, next_token_logprobs
    body, head = model.base_model, model.get_output_embeddings()
    transformed = any(getattr(model.config, k, None) not in same for k, same in _LOGIT_TRANSFORMS.items())
    if body is model or head is None or transformed:
        return model, next_token_logprobs
    weight = getattr(head, "weight", None)
    vocab = weight.shape[0] if weight is not None else model.config.vocab_size
    return body, lambda hidden, next_ids: lm_head_logprobs(hidden, head, next_ids, vocab)


def value_head_logits(logits: torch.Tensor, next_ids: torch.Tensor) -> torch.Tensor:
    """A token-value PRM's logit at each position."""
    return logits[..., 0]
