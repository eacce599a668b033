"""Runs a chunked stage's chunks in worker processes forked from this one (`--executor processes`):
the CPU cores of one machine used by several generators at once, without a cluster.

    ttstrain label-mc --config recipes/default/label_mc/config_pipeline.yaml --executor processes --num_workers 2

The stage's worker (the policy, the prompt format, the verifier) is opened once, here, exactly as the
local executor opens it; then `num_workers` processes are forked, each inheriting it (the weights are
shared copy-on-write, not loaded again), each running torch at one thread, and whole chunks go to
whichever process is free, later problems first. With one chunk left to run (or `--num_workers 1`)
the chunk runs in this process, as `local` runs it (search then shares its runs: below). Each process writes its chunks with
`ttstrain.runner.shards.run_chunk`, under the names the local executor uses, so resume, `--shard`,
`--merge_only` and every reader work unchanged. Rows equal the local executor's: every draw is keyed by
the chunk's problems and the seed, never by the process that runs it (`tests/test_process_executor.py`
checks it on the default world's policy; `bench/executor.py` times it).

Why it pays on CPU: one generate call at a time leaves part of the second core idle (small matrix
products, Python between decode steps: 1.39x from a second thread in `bench/threads.py`), while two
one-thread processes keep both busy. Training stages gain nearly 2x from threads and stay in-process.

A stage whose chunks are fewer than the workers can still share one chunk's work: `fork_map` runs a
chunk's independent calls (search's runs of each method at each budget, which each start from cold
caches) in forked processes the same way, and returns their results in order (`ttstrain.stages.
run_search`).

Faults: a chunk whose processing raises fails the run, naming the chunk and its problems, with the
worker's traceback as its cause; a worker process that dies (killed, out of memory) fails the run with
what it had not finished. Either way the other workers are stopped at once, the chunks already written
stay, and the same command resumes from them. Ctrl-C reaches the parent only (the workers ignore it),
which stops them; a worker whose parent dies ends too (Linux's parent-death signal).

Limits: one thread per process (GNU OpenMP, which torch's CPU build uses, hangs in a forked process that
starts threads again after its parent used them), CPU only (a CUDA context cannot be forked; on GPUs use `--executor ray`), and platforms that
can fork (Linux; on macOS fork is unsafe for some system libraries and the executor refuses).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from tqdm.auto import tqdm

from ttstrain.runner.local_executor import local_executor
from ttstrain.runner.shards import chunk_stem, remove_stale_temporaries, run_chunk
from ttstrain.runner.stage import ChunkedStage, ChunkWorker, chunk_failure, worker_throughput, write_run_config
from ttstrain.user_errors import user_error_types

STOP_WAIT_S = 5  # how long stopped workers get to end on SIGTERM before SIGKILL
STAT_FIELDS = ("calls", "prompts", "completions", "prompt_tokens", "prefill_tokens", "generated_tokens")

# what the forked workers inherit: set by the parent just before it forks them, read only in the children
_INHERITED: dict = {}
_IN_WORKER = False  # True in a forked worker: it runs its share at one thread and forks no workers of its own


def _init_worker(parent: int) -> None:
    import torch

    global _IN_WORKER
    _IN_WORKER = True
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the workers
    _die_with_parent(parent)
    generator = _INHERITED.get("generator") or getattr(_INHERITED.get("worker"), "generator", None)
    if generator is not None:
        generator.progress_hook = None  # the parent's progress bar is the parent's to move
    # one thread: GNU OpenMP's pool does not survive a fork, and a forked process that starts it again
    # (any op run on more than one thread) hangs once the parent has used it
    torch.set_num_threads(1)


def _die_with_parent(parent: int) -> None:
    """Linux: end this worker when the parent dies (killed, out of memory) instead of waiting on its queue forever."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the call above
        os._exit(1)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """End the pool's processes now (a failed chunk, Ctrl-C): calls already handed to them would otherwise run to
    their end first. Their half-written chunk files are temporaries, which the caller removes. (CPython 3.14's
    `terminate_workers` does the same; the pool's internals named here are those of 3.11 and 3.12.)"""
    manager = getattr(pool, "_executor_manager_thread", None)
    results = getattr(pool, "_result_queue", None)
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + STOP_WAIT_S
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()
    if results is not None:  # a worker killed mid-send leaves half a message: with no writer left, the reader ends
        results._writer.close()
    if manager is not None:
        manager.join(timeout=STOP_WAIT_S)


class RemoteTraceback(Exception):
    """The traceback of an error raised in a worker process, shown as the cause of the error the parent raises."""

    def __str__(self) -> str:
        return self.args[0]


def _remote_error(out: dict, message: str) -> Exception:
    err = (ValueError if out["user_error"] else RuntimeError)(message)
    err.__cause__ = RemoteTraceback(out["traceback"])
    return err


def _stats(generator) -> dict:
    stats = getattr(generator, "stats", None)
    return {k: getattr(stats, k, 0) for k in STAT_FIELDS} if stats is not None else {}


def _run_one(start: int, end: int) -> dict:
    """In a worker process: make and write one chunk; what it took, and the generator counters it moved."""
    stage: ChunkedStage = _INHERITED["stage"]
    worker: ChunkWorker = _INHERITED["worker"]
    before = _stats(worker.generator)
    try:
        counters = run_chunk(Path(_INHERITED["chunks_dir"]), chunk_stem(start, end), worker.process,
                             stage.items[start:end], start)
    except Exception as e:  # noqa: BLE001 - sent back as text: an exception class may not unpickle in the parent
        return {"start": start, "end": end, "error": f"{type(e).__name__}: {' '.join(str(e).split())}",
                "user_error": isinstance(e, user_error_types()), "traceback": traceback.format_exc()}
    after = _stats(worker.generator)
    return {"start": start, "end": end, "problems": end - start, "seconds": counters["seconds"],
            "stats": {k: after[k] - before.get(k, 0) for k in after}, "worker": f"pid {os.getpid()}",
            "generated_tokens": after.get("generated_tokens", 0) - before.get("generated_tokens", 0)}


def _call_inherited(index: int, args: tuple) -> dict:
    """In a worker process: one call of the function `fork_map` was given; its result, or its error as text."""
    generator = _INHERITED.get("generator")
    before = _stats(generator)
    try:
        result = _INHERITED["fn"](*args)
    except Exception as e:  # noqa: BLE001 - sent back as text: an exception class may not unpickle in the parent
        return {"index": index, "error": f"{type(e).__name__}: {' '.join(str(e).split())}",
                "user_error": isinstance(e, user_error_types()), "traceback": traceback.format_exc()}
    after = _stats(generator)
    return {"index": index, "result": result, "stats": {k: after[k] - before.get(k, 0) for k in after}}


def fork_map(fn, calls: list[tuple], workers: int, generator=None, cost=None) -> list:
    """`[fn(*args) for args in calls]`, the calls shared among `workers` processes forked from this one (one
    thread each, inheriting everything `fn` reads), most costly first (`cost(args)`); results in call order.
    The work of one chunk that splits into independent calls (search's method x budget runs) uses the cores
    this way when the stage has too few chunks to share. In a worker process, or with one worker, the calls
    run here, one after another. `generator`'s counters afterwards include what the processes generated."""
    if workers <= 1 or len(calls) < 2 or _IN_WORKER:
        return [fn(*args) for args in calls]
    order = sorted(range(len(calls)), key=lambda i: -cost(calls[i])) if cost else list(range(len(calls)))
    results: list = [None] * len(calls)
    _INHERITED.update(fn=fn, generator=generator)
    try:
        with ProcessPoolExecutor(max_workers=min(workers, len(calls)), mp_context=fork_context(),
                                 initializer=_init_worker, initargs=(os.getpid(),)) as pool:
            futures: list = []
            try:
                futures += [pool.submit(_call_inherited, i, calls[i]) for i in order]
                for future in futures:
                    try:
                        out = future.result()
                    except BrokenProcessPool as err:
                        unfinished = [calls[i] for i, f in zip(order, futures)
                                      if not (f.done() and not f.cancelled() and f.exception() is None)]
                        raise RuntimeError(f"a worker process died (killed, or out of memory?) with {len(unfinished)} "
                                           f"call(s) of {fn.__qualname__} unfinished, such as {unfinished[:3]}") from err
                    if "error" in out:
                        raise _remote_error(out, f"{fn.__qualname__}{tuple(calls[out['index']])}: {out['error']}")
                    results[out["index"]] = out["result"]
                    if generator is not None:
                        for k, v in out["stats"].items():
                            setattr(generator.stats, k, getattr(generator.stats, k) + v)
            except BaseException:
                _stop_workers(pool)
                raise
    finally:
        _INHERITED.clear()
    return results


def fork_context():
    """The fork start method, or a clear error where this platform cannot fork safely."""
    if sys.platform == "darwin" or "fork" not in multiprocessing.get_all_start_methods():
        raise ValueError(f"--executor processes forks worker processes, which {sys.platform} cannot do safely: "
                         "use --executor local or ray")
    return multiprocessing.get_context("fork")


def check_processes_config(cfg) -> None:
    """What the executor refuses before it opens anything: GPUs, a bad worker count."""
    if cfg.num_workers < 1:
        raise ValueError(f"--num_workers must be >= 1, got {cfg.num_workers}")
    if cfg.cpus_per_worker != 1:
        raise ValueError(f"--executor processes runs each process at one thread (GNU OpenMP hangs in a process forked "
                         f"from one that used its threads), got --cpus_per_worker {cfg.cpus_per_worker:g}: ask for "
                         "more processes with --num_workers, or use --executor ray for workers of several threads")
    if getattr(cfg, "backend", "transformers") == "vllm" or getattr(cfg, "prm_backend", "transformers") == "vllm" \
            or any(_on_gpu(getattr(cfg, name, "cpu")) for name in ("device", "prm_device")):
        raise ValueError("--executor processes runs on CPU only (a CUDA context cannot be forked): on GPUs use "
                         "--executor ray (docs/scale-out.md)")


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (`taskset`, a container's cpuset), capped by a cgroup v2
    CPU quota (`docker --cpus 2` on a larger host)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity call on this platform
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores


def suits_processes(cfg) -> bool:
    """Whether `--executor processes` can run this stage config and has cores to gain from: CPU, a platform
    that forks, and at least two cores. The pipeline's `--executor auto` picks it then."""
    try:
        check_processes_config(cfg)
        fork_context()
    except ValueError:
        return False
    return usable_cores() >= 2


def _on_gpu(device) -> bool:
    device = str(device or "cpu")
    if device == "auto":
        import torch

        return torch.cuda.is_available()
    return device.startswith("cuda")


def process_executor(stage: ChunkedStage, progress: bool) -> dict:
    """Run the chunks this shard owns in `num_workers` forked processes; the run's counters and per-process
    throughput. The parent's generator counters afterwards include what the processes generated."""
    cfg = stage.config
    check_processes_config(cfg)
    context = fork_context()
    chunks_dir = stage.output_dir / "chunks"
    chunks_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(chunks_dir, len(stage.items), stage.chunk_size, stage.shard)
    todo = stage.owned_missing()
    if cfg.num_workers == 1 or len(todo) < 2:  # nothing to share: this process, at all its threads, is faster
        return local_executor(stage, progress)
    already = len(stage.owned_ranges()) - len(todo)
    done_problems = sum(e - s for s, e in stage.owned_ranges()) - sum(e - s for s, e in todo)
    worker = stage.open_worker()
    write_run_config(stage, worker.record)
    results: list[dict] = []
    bar = tqdm(total=len(stage.items), initial=done_problems, desc=f"{stage.name} (processes x{min(cfg.num_workers, len(todo))})",
               unit="problem", disable=not progress, mininterval=0.5)
    _INHERITED.update(stage=stage, worker=worker, chunks_dir=str(chunks_dir))
    t0 = time.monotonic()
    try:
        with ProcessPoolExecutor(max_workers=min(cfg.num_workers, len(todo)), mp_context=context,
                                 initializer=_init_worker, initargs=(os.getpid(),)) as pool:
            # later problems first: where levels rise along the items, the long chunks start early
            running: dict = {}
            try:
                for s, e in reversed(todo):
                    running[pool.submit(_run_one, s, e)] = (s, e)
                while running:
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in finished:
                        s, e = running.pop(future)
                        try:
                            result = future.result()
                        except BrokenProcessPool as err:
                            unfinished = [chunk_stem(a, b) for a, b in [(s, e), *running.values()]]
                            raise RuntimeError(
                                f"{stage.name}: a worker process died (killed, or out of memory?) with "
                                f"{len(unfinished)} chunk(s) unfinished ({', '.join(sorted(unfinished)[:4])}"
                                f"{', ...' if len(unfinished) > 4 else ''}); the chunks written so far are kept: "
                                "run the same command to resume") from err
                        if "error" in result:
                            err = chunk_failure(stage, s, e, result["error"], result["user_error"])
                            raise err from RemoteTraceback(result["traceback"])
                        results.append(result)
                        bar.update(result["problems"])
                        tokens = sum(r["generated_tokens"] for r in results)
                        bar.set_postfix(chunks=f"{len(results)}/{len(todo)}",
                                        tok_s=f"{tokens / max(time.monotonic() - t0, 1e-9):.0f}", refresh=False)
            except BaseException:
                _stop_workers(pool)
                raise
        seconds = time.monotonic() - t0  # the chunks' wall time: after the worker opened, as local's chunk seconds
    finally:
        _INHERITED.clear()
        bar.close()
        remove_stale_temporaries(chunks_dir, len(stage.items), stage.chunk_size, stage.shard)
        if worker.close is not None:
            worker.close()
    stats = getattr(worker.generator, "stats", None)
    if stats is not None:  # the callers' totals (the pipeline's generation record) count the processes' work
        for r in results:
            for k, v in r["stats"].items():
                setattr(stats, k, getattr(stats, k) + v)
    return {"chunks_written": len(results), "chunks_already_done": already, "executor": "processes",
            "workers": worker_throughput(results), "seconds": round(seconds, 3)}
