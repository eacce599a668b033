"""Token sequences -> model inputs, packed or padded: the one batching of PRM training and scoring.

Packing lays several sequences into one row (first-fit decreasing, capacity = the longest
sequence, so it never computes more than padding would), with `position_ids` restarting at 0 for
each sequence and no attention mask; transformers then builds a block-diagonal causal mask (sdpa,
eager) or runs varlen flash attention, so a sequence attends only to itself
(`tests/test_prm_trainer.py` checks packed and unpacked logits agree). The forward must run with
`use_cache=False`: with a cache transformers does not look for packed sequences.

The trainer's collator, the scorer's value-head pass and the reference features' log-prob pass
all batch through here, so a packing change reaches training and scoring alike.

    from ttstrain.prm.batching import packed_batches
    for indices, inputs, where in packed_batches(seqs, pad_token_id=0, batch_size=32):
        logits = model(**inputs, use_cache=False).logits   # sequence indices[k] starts at where[k]
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch


def pack_rows(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """First-fit decreasing: groups of row indices whose lengths sum to at most `capacity`.

    A row longer than `capacity` gets a group of its own.
    """
    groups: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda k: -lengths[k]):
        for g, free in enumerate(room):
            if lengths[i] <= free:
                groups[g].append(i)
                room[g] -= lengths[i]
                break
        else:
            groups.append([i])
            room.append(capacity - lengths[i])
    return groups


def build_batch(seqs: Sequence[Sequence[int]], pad_token_id: int, packing: bool = True,
                packing_length: int | None = None) -> tuple[dict[str, torch.Tensor], list[tuple[int, int]]]:
    """Model inputs for token sequences, and where each sequence starts: (row, offset).

    packing=True: sequences share rows (`pack_rows`, capacity `packing_length` or the longest
    sequence); `position_ids` restart at 0 for every sequence and for the padding at a row's end,
    and there is no attention mask, which is how transformers recognises packed sequences.
    packing=False: one sequence per row, right-padded, with an attention mask.
    """
    lengths = [len(s) for s in seqs]
    if packing:
        groups = pack_rows(lengths, max(packing_length or 0, max(lengths)))
    else:
        groups = [[i] for i in range(len(seqs))]
    width = max(sum(lengths[i] for i in g) for g in groups)
    ids = torch.full((len(groups), width), pad_token_id, dtype=torch.long)
    aux = torch.zeros((len(groups), width), dtype=torch.long)
    where: list[tuple[int, int]] = [(0, 0)] * len(seqs)
    for r, g in enumerate(groups):
        o = 0
        for i in g:
            n = lengths[i]
            ids[r, o:o + n] = torch.as_tensor(seqs[i], dtype=torch.long)
            if packing:
                aux[r, o:o + n] = torch.arange(n)
            else:
                aux[r, :n] = 1
            where[i] = (r, o)
            o += n
        if packing and o < width:
            aux[r, o:] = torch.arange(width - o)
    key = "position_ids" if packing else "attention_mask"
    return {"input_ids": ids, key: aux}, where


def packed_batches(seqs: Sequence[Sequence[int]], pad_token_id: int, batch_size: int, packing: bool = True,
                   packing_length: int | None = None, indices: Sequence[int] | None = None,
                   ) -> Iterator[tuple[list[int], dict[str, torch.Tensor], list[tuple[int, int]]]]:
    """Batches of `batch_size` sequences, longest first (similar lengths pack tightly): yields
    (the sequences' indices, `build_batch` inputs, where each starts). `indices` picks a subset."""
    todo = range(len(seqs)) if indices is None else indices
    order = sorted(todo, key=lambda i: -len(seqs[i]))
    for b in range(0, len(order), batch_size):
        chunk = order[b:b + batch_size]
        inputs, where = build_batch([seqs[i] for i in chunk], pad_token_id, packing, packing_length)
        yield chunk, inputs, where
