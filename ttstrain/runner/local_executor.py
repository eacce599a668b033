"""The local executor (`--executor local`, the default): a chunked stage's worker opened in this process and
the chunks this shard owns run one after another, with one progress bar. `ttstrain.runner.chunked` runs a
stage through it; `ttstrain.runner.process_executor` falls back to it when there is nothing to share.
"""

from __future__ import annotations

from ttstrain.runner.progress import StageProgress
from ttstrain.runner.shards import run_chunks
from ttstrain.runner.stage import ChunkedStage, write_run_config


def local_executor(stage: ChunkedStage, progress: bool) -> dict:
    """Open the worker in this process and run the chunks this shard owns, one after another."""
    worker = stage.open_worker()
    write_run_config(stage, worker.record)
    try:
        with StageProgress(len(stage.items), stage.name, worker.generator, worker.calls_per_chunk, stage.chunk_size,
                           progress) as bar:
            return run_chunks(stage.output_dir, stage.items, stage.chunk_size, stage.shard, worker.process,
                              progress=bar.chunk_done)
    finally:
        if worker.close is not None:
            worker.close()
