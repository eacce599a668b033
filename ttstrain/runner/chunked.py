"""The one chunked-stage runner: every generating stage (sample, label-mc, search, build-revisions,
eval-revision) runs its problems through it.

A stage hands the runner a `ChunkedStage`: its items (problems), its chunk size, what a resume must
match (`stage_fingerprint`), and `open_worker`, which builds what the chunks need (the generator,
a verifier) once and returns a `ChunkWorker` whose `process(items, start)` makes one chunk's rows.
The runner checks the folder's fingerprint; when the shard still owns an unfinished chunk, an
executor opens the worker, writes the run's config (`config.json`, or `config.shard-i-of-n.json`
under `--shard i/n`) and runs the chunks with one progress bar; the runner then says whether every
chunk is done, and the stage reads them (`ChunkSet`) and writes its outputs and summary.

    stage = ChunkedStage("label-mc", cfg, problems, cfg.problems_per_chunk, stage_fingerprint(cfg),
                         open_worker=lambda: ChunkWorker(process, generator, {"generator": ...}))
    chunks = run_chunked_stage(stage)          # None: other shards still have chunks to write
    summary = chunks.merge() if chunks else None

The executor is the one seam a distributed run needs (`--executor`): `local_executor` opens the
worker in this process and runs the owned chunks one after another (`ttstrain.runner.shards.
run_chunks`); `ttstrain.runner.process_executor` opens it once and forks processes that run the
chunks on one machine's cores; `ttstrain.runner.ray_executor` opens one worker per Ray actor and runs
the chunks on them. All write the same chunk files (`ttstrain.runner.shards`: names, atomic writes), so resume,
`--merge_only` and every reader work unchanged whichever ran them.

Which fields count for a resume is one rule (`stage_fingerprint`): every field of the stage config,
except those its classes declare in `runtime_fields` (where the output goes, which shard, devices,
batch sizes: where and how fast it runs, not what it writes) and `read_after_chunks` (read only after
the chunks are written, e.g. eval-revision's verifiers). Class attributes, not field metadata: TRL's
and transformers' parsers pass metadata to argparse, and users parse these configs with them. A
field that a recorded fingerprint lacks (an option added since) counts as its default.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from ttstrain.io import read_parquet, write_resolved_config
from ttstrain.runner.local_executor import local_executor
from ttstrain.runner.shards import (check_or_write_config, chunk_ranges, chunk_stem, merge_chunks, missing_chunks,
                                    read_chunks, shard_configs)
from ttstrain.runner.stage import (ChunkedStage, ChunkWorker, config_file_name, field_defaults, stage_fingerprint,
                                   uncounted_fields, write_run_config)

__all__ = ["ChunkSet", "ChunkedStage", "ChunkWorker", "config_file_name", "local_executor", "run_chunked_stage",
           "stage_executor", "stage_fingerprint", "write_run_config"]


@dataclass
class ChunkSet:
    """Every chunk of a finished stage, read in item order."""

    stage: ChunkedStage
    run: dict = field(default_factory=dict)  # this invocation's chunks_written and chunks_already_done

    def rows(self) -> tuple[list[dict], dict]:
        """The rows and the sum of the chunks' numeric counters."""
        return read_chunks(self.stage.output_dir, len(self.stage.items), self.stage.chunk_size)

    def table(self, name: str) -> list[dict]:
        """A side table's rows (`chunks/<stem>.<name>.parquet`) in item order."""
        out: list[dict] = []
        for s, e in chunk_ranges(len(self.stage.items), self.stage.chunk_size):
            out += read_parquet(self.stage.output_dir / "chunks" / f"{chunk_stem(s, e)}.{name}.parquet")
        return out

    def workers(self) -> dict:
        """Per-worker throughput of a distributed run (`executor`, `workers`), for the stage's summary; {} locally."""
        return {k: v for k, v in self.run.items() if k in ("executor", "workers")}

    def rate_seconds(self, summed_chunk_seconds: float) -> float:
        """What a stage's per-second rates divide by: the chunks' own seconds, summed, except where processes or
        Ray workers wrote every chunk in this run at once: then the run's wall time (summed chunk seconds would
        count each worker's time and show the faster run as the slower)."""
        every_chunk = self.stage is None or self.run.get("chunks_written") == len(
            chunk_ranges(len(self.stage.items), self.stage.chunk_size))  # not one shard's of several, not a resume
        if self.run.get("workers") and every_chunk and self.run.get("seconds"):
            return self.run["seconds"]
        return summed_chunk_seconds

    def merge(self) -> dict:
        """The rows as the dataset `data/train-*.parquet` (`ttstrain.runner.shards.merge_chunks`); its counters."""
        return merge_chunks(self.stage.output_dir, len(self.stage.items), self.stage.chunk_size)


Executor = Callable[[ChunkedStage, bool], dict]


def stage_executor(cfg) -> Executor:
    """The executor a stage config names (`--executor`): local, processes (`ttstrain.runner.process_executor`)
    or ray (`ttstrain.runner.ray_executor`)."""
    name = getattr(cfg, "executor", "local")
    if name == "local":
        return local_executor
    if name == "processes":
        from ttstrain.runner.process_executor import process_executor

        return process_executor
    if name == "ray":
        from ttstrain.runner.ray_executor import ray_executor  # Ray is an optional extra

        return ray_executor
    raise ValueError(f"executor must be local, processes or ray, got {name!r}")


def run_chunked_stage(stage: ChunkedStage, progress: bool = True, executor: Executor | None = None) -> ChunkSet | None:
    """Run the chunks this shard still owns; the finished chunks, or None while some are not written yet."""
    out = stage.output_dir
    check_or_write_config(out, stage.fingerprint, must_exist=stage.merge_only, defaults=field_defaults(stage.config),
                          uncounted=uncounted_fields(stage.config),
                          unrecorded_ok=set(getattr(stage.config, "counted_since_recorded", ())))
    out.mkdir(parents=True, exist_ok=True)
    run = {"chunks_written": 0, "chunks_already_done": 0 if stage.merge_only else len(stage.owned_ranges())}
    if not stage.merge_only and stage.owned_missing():
        executor = executor or stage_executor(stage.config)
        t0 = time.time()
        run = executor(stage, progress)
        print(f"[{stage.name}] {run} in {time.time() - t0:.1f} s", flush=True)
        run = {"seconds": round(time.time() - t0, 3), **run}  # an executor's own timing (after its start-up) first
    missing = missing_chunks(out, len(stage.items), stage.chunk_size)
    if missing:
        print(f"[{stage.name}] {len(missing)} chunk(s) still to do (other shards?); merge when all are done", flush=True)
        return None
    if not (out / "config.json").exists():  # a sharded run: the merged output's config, with its shards'
        write_resolved_config(out, stage.config, problems_loaded=len(stage.items), **shard_configs(out))
    return ChunkSet(stage, run)
