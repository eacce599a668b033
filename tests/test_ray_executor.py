"""The Ray executor (`--executor ray`) on a local Ray cluster, CPU, the shipped default world on the
transformers backend: the same rows as the local executor for sample, label-mc and search; a worker
SIGKILLed mid-chunk costs only that chunk; a killed driver resumes; a chunk that fails on its own data
stops the run naming it, once; without Ray installed the option fails at once with the pip command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")  # the [ray] extra; `make install` installs it, so `make test` runs these

from ttstrain.io import read_parquet  # noqa: E402
from ttstrain.runner.chunked import ChunkedStage, ChunkWorker, run_chunked_stage  # noqa: E402
from ttstrain.runner.ray_executor import ChunkFailed  # noqa: E402
from ttstrain.stages.label_mc import LabelMCConfig, run_label_mc  # noqa: E402
from ttstrain.stages.run_search import SearchStageConfig, run_search_stage  # noqa: E402
from ttstrain.stages.sample import SampleConfig, run_sample  # noqa: E402

SMALL = dict(problems="arith", levels=[1, 2], seed=1, problems_per_chunk=1)


@pytest.fixture(scope="module")
def local_cluster():
    """One local Ray cluster for the module (its start-up costs seconds); stages join it."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _rows(out: Path, name: str) -> list[dict]:
    if name == "data":
        return [r for f in sorted((out / "data").glob("train-*.parquet")) for r in read_parquet(f)]
    return read_parquet(out / name)


def _label_cfg(out, **kw):
    return LabelMCConfig(output_dir=str(out), split="train", per_level=2, num_samples=2, num_rollouts=2, **SMALL, **kw)


def test_ray_writes_the_rows_of_the_local_executor(tmp_path, local_cluster):
    ray_kw = dict(executor="ray", num_workers=2)
    run_sample(SampleConfig(output_dir=str(tmp_path / "s_local"), per_level=2, num_samples=3, **SMALL), progress=False)
    summary = run_sample(SampleConfig(output_dir=str(tmp_path / "s_ray"), per_level=2, num_samples=3, **SMALL, **ray_kw),
                         progress=False)
    assert _rows(tmp_path / "s_ray", "samples.parquet") == _rows(tmp_path / "s_local", "samples.parquet")
    assert summary["executor"] == "ray" and sum(w["chunks"] for w in summary["workers"]) == 4

    run_label_mc(_label_cfg(tmp_path / "l_local"), progress=False)
    labelled = run_label_mc(_label_cfg(tmp_path / "l_ray", **ray_kw), progress=False)
    assert [w["problems"] for w in labelled["workers"]] != [] and sum(w["problems"] for w in labelled["workers"]) == 4
    assert _rows(tmp_path / "l_ray", "data") == _rows(tmp_path / "l_local", "data") != []

    search = dict(split="test", per_level=1, max_budget=2, methods=["majority", "best_of_n_weighted", "beam_search"],
                  verifier="likelihood", beam_width="2", resamples=2, **SMALL)
    run_search_stage(SearchStageConfig(output_dir=str(tmp_path / "q_local"), **search), progress=False)
    run_search_stage(SearchStageConfig(output_dir=str(tmp_path / "q_ray"), **search, **ray_kw), progress=False)
    for name in ("results.parquet", "candidates.parquet"):
        assert _rows(tmp_path / "q_ray", name) == _rows(tmp_path / "q_local", name)
    # the workers recorded what they ran, as the local executor does
    config = json.loads((tmp_path / "q_ray" / "config.json").read_text())
    assert config["generator"]["backend"] == "transformers" and config["scorer"]["type"] == "LikelihoodScorer"


def _chunk_workers() -> dict[int, str]:
    """pid -> process title of this machine's Ray chunk workers (Ray titles a worker by what it runs)."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                title = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")[0].decode()
            except OSError:
                continue
            if title.startswith("ray::ChunkActorBody"):
                found[int(entry)] = title
    return found


def test_a_worker_killed_mid_chunk_costs_that_chunk_only(tmp_path, local_cluster):
    run_label_mc(_label_cfg(tmp_path / "local"), progress=False)
    out = tmp_path / "ray"
    killed = []

    def kill_one_mid_chunk():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            done = list((out / "chunks").glob("chunk-*[0-9].parquet")) if (out / "chunks").exists() else []
            busy = [pid for pid, title in _chunk_workers().items() if title.endswith(".run")]
            if done and busy:
                os.kill(busy[0], signal.SIGKILL)
                killed.append(busy[0])
            time.sleep(0.005)

    watcher = threading.Thread(target=kill_one_mid_chunk)
    watcher.start()
    summary = run_label_mc(_label_cfg(out, executor="ray", num_workers=2), progress=False)
    watcher.join()
    assert killed, "no worker was caught inside a chunk"
    assert _rows(out, "data") == _rows(tmp_path / "local", "data")  # none lost, none duplicated
    assert summary["rows"] == len(_rows(tmp_path / "local", "data"))
    assert not list((out / "chunks").glob(".*.tmp"))  # the killed attempt's half-written files are gone


DRIVER = """
import sys
from ttstrain.stages.sample import SampleConfig, run_sample
run_sample(SampleConfig(output_dir=sys.argv[1], per_level=3, num_samples=4, problems="arith", levels=[1, 2],
                        seed=1, problems_per_chunk=1, executor="ray", num_workers=1), progress=False)
"""


@pytest.mark.slow
def test_a_killed_driver_resumes_from_its_finished_chunks(tmp_path, local_cluster):
    out = tmp_path / "ray"
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "chunks").exists() and len(list((out / "chunks").glob("chunk-*[0-9].parquet"))) >= 2:
            break
        time.sleep(0.01)
    assert proc.poll() is None, f"the driver ended before the kill: {proc.stderr.read()[-2000:]}"
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local cluster it started
    proc.wait()
    left = len(list((out / "chunks").glob("chunk-*[0-9].parquet")))
    assert 2 <= left < 6
    resumed = run_sample(SampleConfig(output_dir=str(out), per_level=3, num_samples=4, **SMALL, executor="ray"),
                         progress=False)
    assert resumed["chunks_already_done"] == left and resumed["chunks_written"] == 6 - left
    run_sample(SampleConfig(output_dir=str(tmp_path / "local"), per_level=3, num_samples=4, **SMALL), progress=False)
    assert _rows(out, "samples.parquet") == _rows(tmp_path / "local", "samples.parquet")


@dataclass
class _Config:
    output_dir: str
    executor: str = "ray"
    num_workers: int = 2
    cpus_per_worker: float = 1
    gpus_per_worker: float | None = None
    ray_address: str | None = None
    backend: str = "transformers"


def _open_bad_data_worker(attempts_dir: str) -> ChunkWorker:
    def process(items, start):
        Path(attempts_dir, f"{start}-{time.monotonic_ns()}").touch()
        if any(p["id"] == "q3" for p in items):
            raise ValueError(f"problem q3: gold answer {items[1]['answer']!r} cannot be graded")
        return [{"problem_id": p["id"]} for p in items], {}
    return ChunkWorker(process)


def test_a_chunk_that_fails_on_its_own_data_stops_the_run_naming_it_once(tmp_path, local_cluster):
    attempts = tmp_path / "attempts"
    attempts.mkdir()
    items = [{"id": f"q{i}", "answer": "?" if i == 3 else str(i)} for i in range(6)]
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    stage = ChunkedStage("toy", _Config(str(tmp_path / "out")), items, 2, {"seed": 0},
                         open_worker=lambda: _open_bad_data_worker(str(attempts)))
    with pytest.raises(ChunkFailed, match=r"toy: chunk chunk-000002-000004 \(problems q2, q3\) failed: ValueError: "
                                          r"problem q3: gold answer '\?' cannot be graded"):
        run_chunked_stage(stage, progress=False)
    assert len([f for f in attempts.iterdir() if f.name.startswith("2-")]) == 1  # not retried


def test_without_ray_the_option_fails_at_once_with_the_pip_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pip install 'ttstrain\[ray\]'"):
        run_sample(SampleConfig(output_dir=str(tmp_path / "s"), per_level=1, num_samples=1, **SMALL, executor="ray"),
                   progress=False)
    assert not (tmp_path / "s" / "config.json").exists()  # no model was loaded, nothing sampled


def test_workers_the_cluster_cannot_hold_are_not_asked_for():
    """Ray waits forever for an actor it cannot place (a GPU on a CPU cluster): the executor asks for what fits."""
    from ttstrain.runner.ray_executor import placeable_workers

    assert placeable_workers({"CPU": 2.0}, 4, 1, 0) == 2
    assert placeable_workers({"CPU": 16.0, "GPU": 4.0}, 8, 1, 1) == 4
    assert placeable_workers({"CPU": 16.0, "GPU": 4.0}, 3, 1, 2) == 2
    with pytest.raises(ValueError, match=r"0 GPUs: not enough for one worker of 1 CPUs and 1 GPUs"):
        placeable_workers({"CPU": 2.0}, 2, 1, 1)


def test_a_worker_that_cannot_open_says_why_in_one_line(tmp_path, local_cluster):
    """A constructor's error reaches the driver as the exception itself, not as a dead actor."""
    with pytest.raises(OSError, match="no-such-model"):
        run_sample(SampleConfig(output_dir=str(tmp_path / "s"), model_name_or_path=str(tmp_path / "no-such-model"),
                                per_level=1, num_samples=1, **SMALL, executor="ray"), progress=False)
