"""Runs a chunked stage's chunks on a Ray cluster (`--executor ray`): one actor per worker, each
holding its own generator and verifier, whole chunks handed to whichever worker is free.

    ttstrain label-mc --config recipes/default/label_mc/config_pipeline.yaml --executor ray --num_workers 2
    ttstrain search --config ... --backend vllm --executor ray --ray_address auto --num_workers 8 --gpus_per_worker 1

Each actor opens the stage's worker once (`ChunkedStage.open_worker`: the model, the prompt format,
the verifier) and runs chunks with `ttstrain.runner.shards.run_chunk`, writing the chunk files
itself, atomically, into the stage's output folder under the names the local executor uses, so
resume, `--shard`, `--merge_only` and every reader work unchanged. Across nodes that folder must
be on a filesystem every node sees (docs/scale-out.md). Rows equal the local executor's: every
draw is keyed by the chunk's problems and the seed, never by the process that runs it.

Faults: a worker process that dies (SIGKILL, a lost node) is restarted by Ray and its chunk runs
again (`MAX_RESTARTS` times), so the run ends with the rows of an uninterrupted one; a chunk whose
own processing raises (bad data) fails the run at once, naming the chunk and its problems, and is
not retried. A driver that dies leaves the finished chunks on disk; the same command resumes.

Why actors and not Ray Data's `map_batches`: a chunk is the unit of resume (one atomic file per
chunk, named by its problems), a generate call wants a whole chunk's prompts at once, and a worker
must build its engine once and keep it; an actor per worker with a queue of chunks is that, with
Ray's actor restart and task retry giving the fault tolerance, and nothing in between to convert.
"""

from __future__ import annotations

import os
import socket
import time

from tqdm.auto import tqdm

from ttstrain.runner.stage import (ChunkedStage, ChunkFailed, ChunkWorker, chunk_failure,  # noqa: F401 - ChunkFailed: re-exported
                                   worker_throughput, write_run_config)
from ttstrain.runner.shards import chunk_stem, remove_stale_temporaries, run_chunk
from ttstrain.user_errors import user_error_types

RAY_INSTALL = "pip install 'ttstrain[ray]'"
MAX_RESTARTS = 3  # a worker that dies is restarted this many times, and its chunk retried, before the run fails
PLACEMENT_WAIT_S = 120  # how long the workers' CPUs and GPUs may take to come free
# the driver's settings a worker needs (offline data, caches, debug): passed to every worker process
# (an access token is not: a runtime env is shown by Ray's dashboard; give workers theirs with `huggingface-cli login`)
FORWARDED_ENV_PREFIXES = ("TTSTRAIN_", "HF_", "TRANSFORMERS_", "VLLM_")
FORWARDED_ENV = ("XDG_CACHE_HOME",)


def import_ray():
    try:
        import ray
    except ImportError as e:
        raise ImportError(f"--executor ray needs Ray, which is not installed: {RAY_INSTALL}") from e
    return ray


class ChunkActorBody:
    """One Ray worker: the stage's worker, opened once; `run` makes and writes one chunk."""

    def __init__(self, open_worker, chunks_dir: str, cpus: float, driver_cwd: str):
        import torch

        torch.set_num_threads(max(1, int(cpus)))  # the CPUs Ray gave this worker, not the node's
        if os.path.isdir(driver_cwd):  # relative model, PRM and data paths mean what they mean to the driver
            os.chdir(driver_cwd)
        self.chunks_dir = chunks_dir
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        # a worker that cannot open (a model that does not load) says why through its calls: Ray would
        # report a constructor's error as a dead actor, without the exception
        self.error: BaseException | None = None
        try:
            self.worker: ChunkWorker | None = open_worker()
        except Exception as e:  # noqa: BLE001 - re-raised, unchanged, by every call
            self.worker, self.error = None, e

    def record(self) -> dict:
        if self.error is not None:
            raise self.error
        return self.worker.record

    def run(self, items: list[dict], start: int, stem: str) -> dict:
        from pathlib import Path

        if self.error is not None:
            raise self.error
        generator = self.worker.generator
        before = generator.stats.generated_tokens if generator is not None else 0
        counters = run_chunk(Path(self.chunks_dir), stem, self.worker.process, items, start)
        tokens = (generator.stats.generated_tokens - before) if generator is not None else 0
        return {"stem": stem, "problems": len(items), "seconds": counters["seconds"], "generated_tokens": tokens,
                "worker": self.name}

    def close(self) -> None:
        if self.worker is not None and self.worker.close is not None:
            self.worker.close()


def _connect(ray, stage: ChunkedStage) -> bool:
    """Join the cluster the config names, or start a local one; True when this call started it."""
    if ray.is_initialized():
        return False
    cfg = stage.config
    env = {k: v for k, v in os.environ.items()
           if (k.startswith(FORWARDED_ENV_PREFIXES) or k in FORWARDED_ENV) and "TOKEN" not in k}
    kw = {"runtime_env": {"env_vars": env}} if env else {}
    if cfg.ray_address:
        ray.init(address=cfg.ray_address, **kw)
    else:  # "local": a new cluster for this command, even where RAY_ADDRESS or a `ray start` head is found
        need = cfg.num_workers * cfg.cpus_per_worker
        ray.init(address="local", num_cpus=max(os.cpu_count() or 1, int(need + 0.999)), include_dashboard=False, **kw)
    return True


def _gpus(cfg) -> float:
    return cfg.gpus_per_worker if cfg.gpus_per_worker is not None else (1.0 if cfg.backend == "vllm" else 0.0)


def _failure(stage: ChunkedStage, start: int, end: int, err: Exception) -> Exception:
    """The error that ends the run: which chunk, which problems, and why (a bad chunk's own error)."""
    cause = getattr(err, "cause", None) or err
    return chunk_failure(stage, start, end, f"{type(cause).__name__}: {' '.join(str(cause).split())}",
                         isinstance(cause, user_error_types()))


def placeable_workers(resources: dict, wanted: int, cpus: float, gpus: float) -> int:
    """How many workers of `cpus` and `gpus` the cluster can hold at once (at most `wanted`): Ray would
    wait forever for a worker it cannot place, so none asked for is beyond the cluster."""
    fits = [wanted]
    for name, need in (("CPU", cpus), ("GPU", gpus)):
        if need > 0:
            fits.append(int(resources.get(name, 0) // need))
    if min(fits) < 1:
        raise ValueError(f"the Ray cluster has {resources.get('CPU', 0):g} CPUs and {resources.get('GPU', 0):g} GPUs: "
                         f"not enough for one worker of {cpus:g} CPUs and {gpus:g} GPUs (--cpus_per_worker, "
                         f"--gpus_per_worker)")
    if min(fits) < wanted:
        print(f"[ray] the cluster holds {min(fits)} of the {wanted} workers asked for ({cpus:g} CPUs, {gpus:g} GPUs "
              "each); running with those", flush=True)
    return min(fits)


def reserve_workers(ray, workers: int, cpus: float, gpus: float):
    """A placement group holding every worker's CPUs and GPUs, or a clear error when the cluster cannot give
    them within `PLACEMENT_WAIT_S` (other jobs hold them): an actor Ray cannot place would wait forever."""
    from ray.util import placement_group, remove_placement_group

    bundle = {"CPU": cpus, **({"GPU": gpus} if gpus > 0 else {})}
    group = placement_group([bundle] * workers, strategy="PACK")
    if not group.wait(timeout_seconds=PLACEMENT_WAIT_S):
        remove_placement_group(group)
        raise ValueError(f"the Ray cluster could not give {workers} workers of {cpus:g} CPUs and {gpus:g} GPUs within "
                         f"{PLACEMENT_WAIT_S} s (other jobs hold them?): ask for fewer (--num_workers) or wait")
    return group


def ray_executor(stage: ChunkedStage, progress: bool) -> dict:
    """Run the chunks this shard owns on `num_workers` Ray actors; returns the run's counters and per-worker
    throughput."""
    ray = import_ray()
    from ray.util import remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    cfg = stage.config
    if cfg.num_workers < 1:
        raise ValueError(f"--num_workers must be >= 1, got {cfg.num_workers}")
    chunks_dir = stage.output_dir / "chunks"
    chunks_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(chunks_dir, len(stage.items), stage.chunk_size, stage.shard)
    todo = stage.owned_missing()
    done_problems = sum(e - s for s, e in stage.owned_ranges()) - sum(e - s for s, e in todo)
    already = len(stage.owned_ranges()) - len(todo)
    started = _connect(ray, stage)
    actor_class = ray.remote(max_restarts=MAX_RESTARTS, max_task_retries=MAX_RESTARTS)(ChunkActorBody)
    cpus, gpus = cfg.cpus_per_worker, _gpus(cfg)
    try:
        workers = placeable_workers(ray.cluster_resources(), min(cfg.num_workers, len(todo)), cpus, gpus)
        group = reserve_workers(ray, workers, cpus, gpus)
    except ValueError:
        if started:
            ray.shutdown()
        raise
    actors = [actor_class.options(num_cpus=cpus, num_gpus=gpus,
                                  scheduling_strategy=PlacementGroupSchedulingStrategy(group, i))
              .remote(stage.open_worker, str(chunks_dir.resolve()), cpus, os.getcwd()) for i in range(workers)]
    results: list[dict] = []
    bar = tqdm(total=len(stage.items), initial=done_problems, desc=f"{stage.name} (ray x{len(actors)})",
               unit="problem", disable=not progress, mininterval=0.5)
    t0 = time.monotonic()
    try:
        try:
            write_run_config(stage, ray.get(actors[0].record.remote()))
        except ray.exceptions.RayTaskError as err:  # the worker could not open: a model that cannot load, a bad option
            cause = err.cause if isinstance(getattr(err, "cause", None), BaseException) else RuntimeError(str(err))
            raise cause from None
        except ray.exceptions.RayError as err:
            raise RuntimeError(f"{stage.name}: a Ray worker could not start: {' '.join(str(err).split())[-2000:]}") from err
        queue = list(reversed(todo))  # later problems first: where levels rise along the items, the long chunks start early
        running: dict = {}
        for actor in actors:
            if queue:
                s, e = queue.pop(0)
                running[actor.run.remote(list(stage.items[s:e]), s, chunk_stem(s, e))] = (actor, s, e)
        while running:
            finished, _ = ray.wait(list(running), num_returns=1)
            ref = finished[0]
            actor, s, e = running.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as err:
                raise _failure(stage, s, e, err) from err
            results.append(result)
            bar.update(result["problems"])
            tokens = sum(r["generated_tokens"] for r in results)
            bar.set_postfix(chunks=f"{len(results)}/{len(todo)}", tok_s=f"{tokens / max(time.monotonic() - t0, 1e-9):.0f}",
                            refresh=False)
            if queue:
                s, e = queue.pop(0)
                running[actor.run.remote(list(stage.items[s:e]), s, chunk_stem(s, e))] = (actor, s, e)
        ray.get([a.close.remote() for a in actors])
    finally:
        bar.close()
        for actor in actors:
            ray.kill(actor)
        remove_placement_group(group)
        remove_stale_temporaries(chunks_dir, len(stage.items), stage.chunk_size, stage.shard)  # from killed attempts
        if started:
            ray.shutdown()
    return {"chunks_written": len(results), "chunks_already_done": already, "executor": "ray",
            "workers": worker_throughput(results)}
