"""Resumable, sharded, atomic chunk runs: the execution skeleton of every data-generation stage.

The items of a stage (problems, usually) are cut into fixed chunks; chunk c covers items
[start, end) and is written as `chunks/chunk-<start>-<end>.parquet` plus its counters in
`chunks/chunk-<start>-<end>.json`. A chunk is complete exactly when its parquet file exists:
files are written under a temporary name and renamed, counters first, so a run killed at any
moment leaves only complete chunks, and the same command resumes from where it stopped,
recomputing nothing finished and writing no duplicates.

`--shard i/n` takes the chunks c with c % n == i, so n independent jobs (a SLURM array, several
GPUs) write disjoint chunks into one output folder; `merge_chunks` then checks every chunk is
there and writes the dataset as parquet shards `data/train-XXXXX-of-YYYYY.parquet` with a
summary of the summed counters. The runner refuses to add chunks to a folder made with a
different config, which would silently mix two datasets, and a merge checks the config the
same way (a merge with other settings or another `--limit` is refused, not written). A run
removes the temporary files that a killed run left behind for the chunks it owns (never
another shard's, which may be writing them now).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ttstrain.io import read_parquet, write_json, write_parquet


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str | None) -> "Shard":
        if not text:
            return cls()
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not m or int(m.group(2)) < 1 or int(m.group(1)) >= int(m.group(2)):
            raise ValueError(f"--shard must look like i/n with 0 <= i < n, got {text!r}")
        return cls(int(m.group(1)), int(m.group(2)))

    def owns(self, chunk_index: int) -> bool:
        return chunk_index % self.count == self.index


def chunk_ranges(num_items: int, chunk_size: int) -> list[tuple[int, int]]:
    if chunk_size < 1:
        raise ValueError(f"chunk size must be >= 1, got {chunk_size}")
    return [(s, min(s + chunk_size, num_items)) for s in range(0, num_items, chunk_size)]


def chunk_stem(start: int, end: int) -> str:
    return f"chunk-{start:06d}-{end:06d}"


FINGERPRINT_FILE = "run_fingerprint.json"


def check_or_write_config(out_dir: Path, fingerprint: dict, name: str = FINGERPRINT_FILE,
                          must_exist: bool = False, defaults: dict | None = None,
                          uncounted: set[str] | frozenset = frozenset(), unrecorded_ok: set[str] | frozenset = frozenset()) -> None:
    """Refuse to resume into (or merge) a folder whose chunks came from a different config.

    must_exist: the folder must already hold chunks with a recorded config (a merge). A field that
    one side lacks counts as its default in `defaults` (else None): an option added later, left at
    its default, is the behaviour the run had then. `uncounted`: fields the config no longer counts
    (a recorded value of theirs is not compared); `unrecorded_ok`: fields counted since a version that
    did not record them (a recording that lacks one cannot say, and is taken at its word).
    """
    path = out_dir / name
    if not path.exists() and must_exist:
        raise ValueError(f"{out_dir} has no {name}: no run of this stage wrote chunks there, so there is "
                         f"nothing to merge (run without merge_only first)")
    if path.exists():
        old = json.loads(path.read_text())
        defaults = defaults or {}
        keys = (set(old) | set(fingerprint)) - set(uncounted) - {k for k in unrecorded_ok if k not in old}
        diff = sorted(k for k in keys if old.get(k, defaults.get(k)) != fingerprint.get(k, defaults.get(k)))
        if diff:
            raise ValueError(f"{out_dir} holds chunks made with a different config (differs in {diff}); "
                             f"use a new output_dir or delete that folder")
    else:
        write_json(path, fingerprint)


def run_chunks(out_dir: Path, items: Sequence, chunk_size: int, shard: Shard,
               process: Callable[[Sequence, int], tuple], progress: Callable[[int], None] | None = None) -> dict:
    """Process every chunk this shard owns that is not yet on disk; returns run counters.

    process(items, start) returns (rows, counters) or (rows, counters, {name: rows}): side tables of
    the chunk, written as `<stem>.<name>.parquet` before the chunk's own parquet file."""
    chunks_dir = out_dir / "chunks"
    chunks_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(chunks_dir, len(items), chunk_size, shard)
    done = skipped = 0
    for c, (start, end) in enumerate(chunk_ranges(len(items), chunk_size)):
        if not shard.owns(c):
            continue
        stem = chunk_stem(start, end)
        if (chunks_dir / f"{stem}.parquet").exists():
            skipped += 1
            if progress:
                progress(end - start)
            continue
        run_chunk(chunks_dir, stem, process, items[start:end], start)
        done += 1
        if progress:
            progress(end - start)
    return {"chunks_written": done, "chunks_already_done": skipped}


def run_chunk(chunks_dir: Path, stem: str, process: Callable[[Sequence, int], tuple], items: Sequence,
              start: int) -> dict:
    """Make one chunk and write it: side tables, then its counters, then its rows (the file that marks it
    done), each atomically. Returns its counters (with the seconds it took)."""
    t0 = time.time()
    rows, counters, *tables = process(items, start)
    counters = {**counters, "seconds": round(time.time() - t0, 3)}
    for table, table_rows in (tables[0] if tables else {}).items():
        write_parquet(chunks_dir / f"{stem}.{table}.parquet", table_rows)
    write_json(chunks_dir / f"{stem}.json", counters)
    write_parquet(chunks_dir / f"{stem}.parquet", rows)
    return counters


_TEMPORARY = re.compile(r"^\.(chunk-\d{6}-\d{6})\..+\.tmp$")


def remove_stale_temporaries(chunks_dir: Path, num_items: int, chunk_size: int, shard: Shard) -> int:
    """Delete the half-written files a killed run left for chunks this shard owns; returns how many."""
    owned = {chunk_stem(s, e) for c, (s, e) in enumerate(chunk_ranges(num_items, chunk_size)) if shard.owns(c)}
    removed = 0
    for path in chunks_dir.iterdir():
        m = _TEMPORARY.match(path.name)
        if m and m.group(1) in owned:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def shard_configs(out_dir: Path) -> dict:
    """What the shards of a sharded run recorded: their config files, the first one's generator, and the
    prompt format (with its step format) they all wrote their rows in; shards that disagree on it fail."""
    files = sorted(out_dir.glob("config.shard-*.json"))
    configs = [json.loads(f.read_text()) for f in files]
    out = {"shard_configs": [f.name for f in files], "generator": configs[0].get("generator") if configs else None}
    formats = [c.get("prompt_format") for c in configs]
    for f, fmt in zip(files[1:], formats[1:]):
        if fmt != formats[0]:
            raise ValueError(f"{f} records the prompt format {fmt!r}, {files[0].name} {formats[0]!r}: the shards' "
                             "rows were written in different formats and cannot be merged into one dataset")
    if formats and isinstance(formats[0], dict):
        out["prompt_format"] = formats[0]
    return out


def missing_chunks(out_dir: Path, num_items: int, chunk_size: int) -> list[str]:
    return [chunk_stem(s, e) for s, e in chunk_ranges(num_items, chunk_size)
            if not (out_dir / "chunks" / f"{chunk_stem(s, e)}.parquet").exists()]


def read_chunks(out_dir: Path, num_items: int, chunk_size: int) -> tuple[list[dict], dict]:
    """Every chunk's rows in item order, and the sum of their numeric counters."""
    rows: list[dict] = []
    totals: dict = {}
    for s, e in chunk_ranges(num_items, chunk_size):
        stem = chunk_stem(s, e)
        rows += read_parquet(out_dir / "chunks" / f"{stem}.parquet")
        for k, v in json.loads((out_dir / "chunks" / f"{stem}.json").read_text()).items():
            if isinstance(v, (int, float)):
                totals[k] = totals.get(k, 0) + v
    return rows, totals


def merge_chunks(out_dir: Path, num_items: int, chunk_size: int, rows_per_file: int = 50_000,
                 split: str = "train") -> dict:
    """Concatenate all chunks (in item order) into parquet shards and sum their counters."""
    missing = missing_chunks(out_dir, num_items, chunk_size)
    if missing:
        raise FileNotFoundError(f"{out_dir}: {len(missing)} chunk(s) not done yet, e.g. {missing[:3]}; "
                                f"run the remaining shards first")
    rows, totals = read_chunks(out_dir, num_items, chunk_size)
    data_dir = out_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    for old in data_dir.glob(f"{split}-*.parquet"):
        old.unlink()
    num_files = max(1, -(-len(rows) // rows_per_file))
    for f in range(num_files):
        write_parquet(data_dir / f"{split}-{f:05d}-of-{num_files:05d}.parquet",
                      rows[f * rows_per_file:(f + 1) * rows_per_file])
    totals = {k: round(v, 3) if isinstance(v, float) else v for k, v in totals.items()}
    return {"rows": len(rows), "files": num_files, **totals}


def load_dataset_dir(out_dir: str | Path, split: str = "train"):
    """The merged dataset of a stage's output folder as a `datasets.Dataset`."""
    from datasets import load_dataset

    files = sorted(str(p) for p in (Path(out_dir) / "data").glob(f"{split}-*.parquet"))
    if not files:
        raise FileNotFoundError(f"no {split}-*.parquet under {Path(out_dir) / 'data'}; was the run merged?")
    return load_dataset("parquet", data_files={split: files}, split=split)
