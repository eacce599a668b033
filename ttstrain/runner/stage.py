"""What a chunked stage is, for the runner and its executors: the stage (`ChunkedStage`: config, items,
chunk size, fingerprint, how to open a worker), the worker one process runs chunks with
(`ChunkWorker`), which config fields a resume must match (`stage_fingerprint`), and the run's config
file. `ttstrain.runner.chunked` runs a stage; `ttstrain.runner.ray_executor` runs its chunks on Ray.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ttstrain.io import write_resolved_config
from ttstrain.runner.shards import Shard, chunk_ranges, chunk_stem

# what process(items, start) returns: rows, counters, and optionally named side tables of the chunk
# (written as chunks/<stem>.<name>.parquet, e.g. search's candidates)
ChunkResult = tuple  # (list[dict], dict) or (list[dict], dict, dict[str, list[dict]])


def declared(cfg, name: str) -> set[str]:
    """The field names every class of the config's MRO declares in its class attribute `name`."""
    return {field_name for klass in type(cfg).__mro__ for field_name in vars(klass).get(name, ())}


def stage_fingerprint(cfg) -> dict:
    """The config fields that change what a chunk holds: a resume or a merge must match them. Every field
    counts except those an argument group or the stage declares `runtime_fields` (where and how fast it
    runs) or `read_after_chunks` (read only once the chunks are written)."""
    left_out = declared(cfg, "runtime_fields") | declared(cfg, "read_after_chunks")
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in left_out}


def uncounted_fields(cfg) -> set[str]:
    """The config's fields a resume need not match (`stage_fingerprint` leaves them out)."""
    return {f.name for f in dataclasses.fields(cfg)} - set(stage_fingerprint(cfg))


def field_defaults(cfg) -> dict:
    """Each counted field's default: what a fingerprint recorded before the field existed stands for."""
    out = {}
    for f in dataclasses.fields(cfg):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def config_file_name(shard: Shard) -> str:
    return "config.json" if shard.count == 1 else f"config.shard-{shard.index}-of-{shard.count}.json"


@dataclass
class ChunkWorker:
    """What the chunks run on, built once per process: `process(items, start)` makes one chunk."""

    process: Callable[[Sequence[dict], int], ChunkResult]
    generator: Any = None  # the progress bar listens to it
    record: dict = field(default_factory=dict)  # recorded in the run's config file (generator identity, prompt format)
    calls_per_chunk: int = 1  # generate calls a chunk makes (the progress bar moves within a chunk)
    close: Callable[[], None] | None = None  # frees what the worker built itself (an engine's GPU memory)


@dataclass
class ChunkedStage:
    name: str  # the command, in messages and the progress bar
    config: Any  # the stage's config dataclass: recorded, and its output_dir, shard and merge_only read
    items: Sequence[dict]
    chunk_size: int
    fingerprint: dict
    open_worker: Callable[[], ChunkWorker]

    @property
    def output_dir(self) -> Path:
        return Path(self.config.output_dir)

    @property
    def shard(self) -> Shard:
        return Shard.parse(getattr(self.config, "shard", None))

    @property
    def merge_only(self) -> bool:
        return bool(getattr(self.config, "merge_only", False))

    def owned_ranges(self) -> list[tuple[int, int]]:
        """The [start, end) item ranges of the chunks this shard owns."""
        return [r for c, r in enumerate(chunk_ranges(len(self.items), self.chunk_size)) if self.shard.owns(c)]

    def owned_missing(self) -> list[tuple[int, int]]:
        """The owned chunks not yet on disk."""
        return [(s, e) for s, e in self.owned_ranges()
                if not (self.output_dir / "chunks" / f"{chunk_stem(s, e)}.parquet").exists()]


class ChunkFailed(ValueError):
    """A chunk whose own processing failed (bad data): the run stops and names it."""


def chunk_failure(stage: "ChunkedStage", start: int, end: int, why: str, user_error: bool) -> Exception:
    """The error that ends a run: which chunk, which problems, and why. A user error (bad data, a bad
    option) is a `ChunkFailed` (a ValueError: the CLI shows it in one line); anything else a RuntimeError."""
    ids = [str(p.get("id", p.get("problem_id", "?"))) for p in stage.items[start:end]]
    shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
    message = f"{stage.name}: chunk {chunk_stem(start, end)} (problems {shown}) failed: {why}"
    return ChunkFailed(message) if user_error else RuntimeError(message)


def worker_throughput(results: list[dict]) -> list[dict]:
    """Per worker (a Ray actor, a forked process): chunks, problems, seconds in chunks and generated tokens per
    second (a slow node shows), from the executors' per-chunk results."""
    workers: dict[str, dict] = {}
    for r in results:
        w = workers.setdefault(r["worker"], {"worker": r["worker"], "chunks": 0, "problems": 0, "seconds": 0.0,
                                             "generated_tokens": 0})
        w["chunks"] += 1
        w["problems"] += r["problems"]
        w["seconds"] += r["seconds"]
        w["generated_tokens"] += r["generated_tokens"]
    for w in workers.values():
        w["seconds"] = round(w["seconds"], 3)
        w["generated_tokens_per_s"] = round(w["generated_tokens"] / max(w["seconds"], 1e-9), 1)
    return sorted(workers.values(), key=lambda w: w["worker"])


def write_run_config(stage: ChunkedStage, record: dict) -> None:
    """The run's config file (this shard's under --shard), with what its worker resolved."""
    write_resolved_config(stage.output_dir, stage.config, name=config_file_name(stage.shard),
                          problems_loaded=len(stage.items), **record)
