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
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Sequence

import torch

PerToken = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


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


@torch.inference_mode()
def cached_forward(model, seqs: Sequence[Sequence[int]], boundaries: Sequence[Sequence[int]], cache: PrefixKVCache,
                   pad_token_id: int, batch_size: int, per_token: PerToken,
                   indices: Sequence[int] | None = None) -> dict[int, torch.Tensor]:
    """Per-position outputs (1-D float tensors, one per sequence) of `seqs[i]` for i in `indices` (default
    all), running each only from its longest cached prefix; every sequence is stored for later calls."""
    from transformers import DynamicCache

    device = next(model.parameters()).device
    todo = list(range(len(seqs)) if indices is None else indices)
    reuse: dict[int, tuple[int, _Entry | None]] = {}
    for i in todo:
        length, entry = cache.lookup(seqs[i], boundaries[i])
        reuse[i] = (length - 1, entry) if entry is not None else (0, None)  # recompute the seam position
    out: dict[int, torch.Tensor] = {}
    order = sorted(todo, key=lambda i: -(len(seqs[i]) - reuse[i][0]))
    for b in range(0, len(order), batch_size):
        chunk = order[b:b + batch_size]
        past_len = max(reuse[i][0] for i in chunk)
        new_len = max(len(seqs[i]) - reuse[i][0] for i in chunk)
        rows = len(chunk)
        ids = torch.full((rows, new_len), pad_token_id, dtype=torch.long)
        next_ids = torch.full((rows, new_len), pad_token_id, dtype=torch.long)
        mask = torch.zeros((rows, past_len + new_len), dtype=torch.long)
        positions = torch.zeros((rows, new_len), dtype=torch.long)
        for r, i in enumerate(chunk):
            start, seq = reuse[i][0], seqs[i]
            n = len(seq) - start
            ids[r, :n] = torch.as_tensor(seq[start:], dtype=torch.long)
            next_ids[r, :n - 1] = torch.as_tensor(seq[start + 1:], dtype=torch.long)
            mask[r, past_len - start:past_len + n] = 1
            positions[r] = start + torch.arange(new_len)
        kv_cache = DynamicCache()
        if past_len:
            for layer, past in enumerate(stack_past([reuse[i] for i in chunk], past_len)):
                kv_cache.update(past[0].to(device), past[1].to(device), layer)
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                       past_key_values=kv_cache, use_cache=True).logits
        values = per_token(logits.float(), next_ids.to(device)).float().cpu()
        for r, i in enumerate(chunk):
            start, entry = reuse[i]
            n = len(seqs[i]) - start
            head = entry.outputs[:start] if entry is not None else values.new_zeros(0)
            out[i] = torch.cat([head, values[r, :n]])
            kv = [(layer.keys[r, :, past_len - start:past_len + n].clone(),
                   layer.values[r, :, past_len - start:past_len + n].clone()) for layer in kv_cache.layers]
            cache.store(seqs[i], boundaries[i], kv, out[i])
            cache.stats["tokens_reused"] += start
            cache.stats["tokens_computed"] += n
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


def next_token_logprobs(logits: torch.Tensor, next_ids: torch.Tensor) -> torch.Tensor:
    """log p(next token | tokens so far) at each position (the last position's value is never read)."""
    return torch.log_softmax(logits, dim=-1).gather(-1, next_ids[..., None])[..., 0]


def value_head_logits(logits: torch.Tensor, next_ids: torch.Tensor) -> torch.Tensor:
    """A token-value PRM's logit at each position."""
    return logits[..., 0]
