"""The process executor (`--executor processes`): chunks run in processes forked from the driver, one thread
each, on the shipped default world's policy (transformers, CPU). The same rows as the local executor for
sample, label-mc and search, and the same generator counters in the driver; a chunk that fails on its own
data stops the run naming it, and a worker process killed mid-chunk fails the run with the finished chunks
kept, which the same call then resumes to the local rows; what it cannot run (GPUs, threads) is refused
before anything opens; the pipeline's `--executor auto` picks it only where it can run and gain."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest

from ttstrain.io import read_parquet
from ttstrain.pipeline.run import PipelineConfig, choose_executor
from ttstrain.runner import process_executor
from ttstrain.runner.chunked import ChunkedStage, ChunkWorker, run_chunked_stage
from ttstrain.runner.process_executor import check_processes_config, fork_map, suits_processes
from ttstrain.runner.stage import ChunkFailed
from ttstrain.stages.label_mc import LabelMCConfig, run_label_mc
from ttstrain.stages.run_search import SearchStageConfig, run_search_stage
from ttstrain.stages.sample import SampleConfig, run_sample, sample_worker

SMALL = dict(problems="arith", levels=[1, 2], seed=1, problems_per_chunk=1, device="cpu")  # CPU on a GPU host too
PROCESSES = dict(executor="processes", num_workers=2)


def _rows(out: Path, name: str) -> list[dict]:
    if name == "data":
        return [r for f in sorted((out / "data").glob("train-*.parquet")) for r in read_parquet(f)]
    return read_parquet(out / name)


def _label_cfg(out, **kw):
    return LabelMCConfig(output_dir=str(out), split="train", per_level=2, num_samples=2, num_rollouts=2, **SMALL, **kw)


def test_processes_write_the_rows_of_the_local_executor(tmp_path):
    run_sample(SampleConfig(output_dir=str(tmp_path / "s_local"), per_level=2, num_samples=3, **SMALL), progress=False)
    summary = run_sample(SampleConfig(output_dir=str(tmp_path / "s_proc"), per_level=2, num_samples=3, **SMALL,
                                      **PROCESSES), progress=False)
    assert _rows(tmp_path / "s_proc", "samples.parquet") == _rows(tmp_path / "s_local", "samples.parquet")
    assert summary["executor"] == "processes" and 1 <= len(summary["workers"]) <= 2  # one may take every chunk
    assert sum(w["chunks"] for w in summary["workers"]) == 4
    assert all(w["worker"] != f"pid {os.getpid()}" for w in summary["workers"])  # not run in this process

    run_label_mc(_label_cfg(tmp_path / "l_local"), progress=False)
    labelled = run_label_mc(_label_cfg(tmp_path / "l_proc", **PROCESSES), progress=False)
    assert sum(w["problems"] for w in labelled["workers"]) == 4
    assert _rows(tmp_path / "l_proc", "data") == _rows(tmp_path / "l_local", "data") != []

    search = dict(split="test", per_level=1, max_budget=2, methods=["majority", "best_of_n_weighted", "beam_search"],
                  verifier="likelihood", beam_width="2", resamples=2, prm_device="cpu", **SMALL)
    run_search_stage(SearchStageConfig(output_dir=str(tmp_path / "q_local"), **search), progress=False)
    run_search_stage(SearchStageConfig(output_dir=str(tmp_path / "q_proc"), **search, **PROCESSES), progress=False)
    for name in ("results.parquet", "candidates.parquet"):
        assert _rows(tmp_path / "q_proc", name) == _rows(tmp_path / "q_local", name)


def test_the_drivers_generator_counts_what_the_processes_generated(tmp_path):
    """The pipeline reads its generation record off the shared generator: the processes' tokens are added."""
    counts = {}
    for name, kw in (("local", {}), ("proc", PROCESSES)):
        cfg = SampleConfig(output_dir=str(tmp_path / name), per_level=2, num_samples=3, **SMALL, **kw)
        generator = sample_worker(cfg).generator
        run_sample(cfg, generator=generator, progress=False)
        counts[name] = vars(generator.stats).copy()
    assert counts["proc"] == counts["local"] and counts["local"]["generated_tokens"] > 0


@dataclass
class _Config:
    output_dir: str
    executor: str = "processes"
    num_workers: int = 2
    cpus_per_worker: float = 1
    backend: str = "transformers"


def _toy_stage(out: Path, items, process) -> ChunkedStage:
    return ChunkedStage("toy", _Config(str(out)), items, 2, {"seed": 0}, open_worker=lambda: ChunkWorker(process))


def test_a_chunk_that_fails_on_its_own_data_stops_the_run_naming_it(tmp_path):
    items = [{"id": f"q{i}", "answer": "?" if i == 3 else str(i)} for i in range(6)]

    def process(chunk, start):
        if any(p["answer"] == "?" for p in chunk):
            raise ValueError(f"problem q3: gold answer {chunk[1]['answer']!r} cannot be graded")
        return [{"problem_id": p["id"]} for p in chunk], {}

    with pytest.raises(ChunkFailed, match=r"toy: chunk chunk-000002-000004 \(problems q2, q3\) failed: ValueError: "
                                          r"problem q3: gold answer '\?' cannot be graded") as failed:
        run_chunked_stage(_toy_stage(tmp_path / "out", items, process), progress=False)
    assert "in process\n" in str(failed.value.__cause__)  # the worker's traceback, naming the function that raised
    written = sorted(p.name for p in (tmp_path / "out" / "chunks").glob("chunk-*[0-9].parquet"))
    assert "chunk-000002-000004.parquet" not in written  # the bad chunk wrote nothing
    assert not list((tmp_path / "out" / "chunks").glob(".*.tmp"))


def test_a_worker_killed_mid_chunk_fails_the_run_and_the_same_call_resumes(tmp_path):
    items = [{"id": f"q{i}"} for i in range(8)]
    out = tmp_path / "out"
    marker = tmp_path / "killed-once"

    def process(chunk, start):
        if start == 4 and not marker.exists():  # the first attempt at chunk 4-6 dies as an OOM kill would
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return [{"problem_id": p["id"], "start": start} for p in chunk], {"made": len(chunk)}

    with pytest.raises(RuntimeError, match=r"toy: a worker process died \(killed, or out of memory\?\) with \d "
                                           r"chunk\(s\) unfinished \(.*chunk-000004-000006.*\); the chunks written "
                                           r"so far are kept"):
        run_chunked_stage(_toy_stage(out, items, process), progress=False)
    kept = {p.name for p in (out / "chunks").glob("chunk-*[0-9].parquet")}
    assert "chunk-000004-000006.parquet" not in kept and len(kept) <= 3
    chunks = run_chunked_stage(_toy_stage(out, items, process), progress=False)
    assert chunks.run["chunks_already_done"] == len(kept) and chunks.run["chunks_written"] == 4 - len(kept)
    rows, counters = chunks.rows()
    assert [r["problem_id"] for r in rows] == [f"q{i}" for i in range(8)] and counters["made"] == 8
    assert not list((out / "chunks").glob(".*.tmp"))


def test_one_chunk_left_runs_in_this_process(tmp_path):
    pids = []

    def process(chunk, start):
        pids.append(os.getpid())  # appended in this process only when the chunk runs here
        return [{"problem_id": p["id"]} for p in chunk], {}

    chunks = run_chunked_stage(_toy_stage(tmp_path / "out", [{"id": "a"}, {"id": "b"}], process), progress=False)
    assert pids == [os.getpid()] and "executor" not in chunks.run


@pytest.mark.parametrize("change, message", [
    (dict(cpus_per_worker=2), r"one thread .*--cpus_per_worker 2"),
    (dict(backend="vllm"), r"CPU only .*--executor ray"),
    (dict(device="cuda:0"), r"CPU only"),
    (dict(prm_device="cuda"), r"CPU only"),
    (dict(num_workers=0), r"--num_workers must be >= 1"),
])
def test_what_it_cannot_run_is_refused_before_anything_opens(tmp_path, change, message):
    cfg = SampleConfig(output_dir=str(tmp_path / "s"), per_level=1, num_samples=1, **SMALL, **PROCESSES)
    for name, value in change.items():
        object.__setattr__(cfg, name, value)
    with pytest.raises(ValueError, match=message):
        check_processes_config(cfg)
    opened = []
    stage = ChunkedStage("toy", cfg, [{"id": "a"}, {"id": "b"}, {"id": "c"}], 1, {"seed": 0},
                         open_worker=lambda: opened.append(1))
    with pytest.raises(ValueError, match=message):
        run_chunked_stage(stage, progress=False)
    assert opened == []


def test_auto_picks_processes_only_where_they_run_and_gain(tmp_path, monkeypatch):
    cfg = SampleConfig(output_dir=str(tmp_path / "s"), **SMALL)
    monkeypatch.setattr(process_executor, "usable_cores", lambda: 2)
    assert suits_processes(cfg)
    monkeypatch.setattr(process_executor, "usable_cores", lambda: 1)
    assert not suits_processes(cfg)  # one core: nothing to share
    monkeypatch.setattr(process_executor, "usable_cores", lambda: 4)
    assert not suits_processes(SampleConfig(output_dir=str(tmp_path / "s"), backend="vllm", **SMALL))
    monkeypatch.setattr(process_executor.sys, "platform", "darwin")
    assert not suits_processes(cfg)


def test_the_pipeline_sets_the_executor_unless_the_recipe_names_one(tmp_path, monkeypatch):
    import ttstrain.pipeline.run as pipeline_run

    monkeypatch.setattr(pipeline_run, "usable_cores", lambda: 12)
    monkeypatch.setattr(pipeline_run, "suits_processes", lambda cfg: True)

    def chosen(recipe=None, stage_kw=None, **pipeline):
        stage = SampleConfig(output_dir=str(tmp_path / "s"), **{**SMALL, **(stage_kw or {})})
        choose_executor(stage, PipelineConfig(**pipeline), recipe or {})
        return stage.executor, stage.num_workers

    assert chosen() == ("processes", 8)  # one per core, at most 8
    assert chosen(num_workers=3) == ("processes", 3)
    assert chosen(executor="local") == ("local", 2)
    assert chosen(executor="ray", num_workers=4) == ("ray", 4)
    assert chosen(recipe={"executor": "local"}) == ("local", 2)  # the recipe's value stands
    assert chosen(recipe={"num_workers": 5}, stage_kw={"num_workers": 5}) == ("processes", 5)  # and its count
    with pytest.raises(ValueError, match="CPU only"):  # named explicitly on a GPU stage: refused before any stage runs
        chosen(executor="processes", stage_kw={"device": "cuda"})
    with pytest.raises(ValueError, match="--num_workers must be >= 1"):
        chosen(executor="processes", num_workers=0)
    monkeypatch.setattr(pipeline_run, "suits_processes", lambda cfg: False)
    assert chosen() == ("local", 2)


def test_a_search_of_one_chunk_shares_its_runs_and_keeps_its_rows(tmp_path):
    """One chunk (the demo's search): its method x budget runs go to the processes, rows and counters unchanged."""
    search = dict(split="test", per_level=2, max_budget=4, methods=["majority", "best_of_n_weighted", "beam_search",
                                                                    "dvts"],
                  verifier="likelihood", beam_width="2", resamples=2, problems="arith", levels=[1, 2], seed=1,
                  problems_per_chunk=64, device="cpu", prm_device="cpu")
    stats = {}
    for name, kw in (("local", {}), ("proc", PROCESSES)):
        cfg = SearchStageConfig(output_dir=str(tmp_path / name), **search, **kw)
        generator = sample_worker(SampleConfig(output_dir=str(tmp_path / "unused"), **SMALL)).generator
        summary = run_search_stage(cfg, generator=generator, progress=False)
        stats[name] = vars(generator.stats).copy()
        assert sorted(k for k in summary["seconds"] if k != "seconds") == ["seconds_beam_search_N1", "seconds_beam_search_N2",
                                              "seconds_beam_search_N4", "seconds_best_of_n", "seconds_dvts_N1",
                                              "seconds_dvts_N2", "seconds_dvts_N4"]
    for name in ("results.parquet", "candidates.parquet"):
        assert _rows(tmp_path / "proc", name) == _rows(tmp_path / "local", name) != []
    assert stats["proc"] == stats["local"] and stats["local"]["generated_tokens"] > 0


def test_fork_map_returns_results_in_call_order_and_names_a_failing_call():
    pid = os.getpid()

    def square(x):
        return x * x, os.getpid(), fork_map(lambda y: y, [(1,), (2,)], 2)  # inside a worker: run there, no fork

    out = fork_map(square, [(i,) for i in range(5)], 2, cost=lambda call: call[0])
    assert [o[0] for o in out] == [0, 1, 4, 9, 16] and all(o[1] != pid for o in out)
    assert all(o[2] == [1, 2] for o in out)
    assert fork_map(square, [(3,)], 2)[0][1] == pid  # one call: nothing to share

    def bad(x):
        if x == 2:
            raise ValueError(f"row {x}: no answer")
        return x

    with pytest.raises(ValueError, match=r"bad\(2,\): ValueError: row 2: no answer$") as failed:
        fork_map(bad, [(1,), (2,), (3,)], 2)
    assert 'raise ValueError(f"row {x}: no answer")' in str(failed.value.__cause__)


def test_rates_divide_by_the_wall_time_of_a_parallel_run():
    """Summed chunk seconds count each worker's time: a parallel run's rates divide by its wall time instead."""
    from ttstrain.runner.chunked import ChunkSet

    stage = ChunkedStage("toy", _Config("unused"), [{"id": i} for i in range(8)], 2, {}, open_worker=None)
    parallel = {"chunks_written": 4, "chunks_already_done": 0, "seconds": 10.0, "workers": [{}, {}]}
    local = ChunkSet(stage, {**parallel, "workers": None})
    resumed = ChunkSet(stage, {**parallel, "chunks_written": 2, "chunks_already_done": 2})
    one_shard_of_two = ChunkSet(stage, {**parallel, "chunks_written": 2})  # the merge sums both shards' counters
    assert [c.rate_seconds(19.0) for c in (local, ChunkSet(stage, parallel), resumed, one_shard_of_two)] == \
        [19.0, 10.0, 19.0, 19.0]
