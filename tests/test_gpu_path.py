"""The stages on the vLLM backend (issue #35), on CPU against `tests/fake_vllm.py` (vLLM 0.32.0's behaviour,
read from its source): names resolved before vLLM sees them, the dtype and the GPU share handed over,
the share planned around the verifier, calls large enough to fill vLLM's batch, FLOPs counted,
a run fingerprint that does not change once a hub model is downloaded."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

import fake_vllm  # tests/fake_vllm.py
from fake_vllm import tokens
from ttstrain import devices
from ttstrain.models import load_tokenizer, model_revision, resolve_model
from ttstrain.generation.sampling import sample_solutions
from ttstrain.stages import run_fingerprint, stage_generator
from ttstrain.stages.run_search import SearchStageConfig, planned_vllm_share, run_search_stage
from ttstrain.stages.sample import SampleConfig

GIB = 1 << 30


@pytest.fixture
def vllm(monkeypatch):
    """The fake vllm module on an empty simulated 80 GiB GPU; engines ttstrain builds write `default_script`."""
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm.module())
    monkeypatch.setattr(fake_vllm.LLM, "instances", [])
    monkeypatch.setattr(fake_vllm.LLM, "default_script", None)
    fake_vllm.reset_device()
    return fake_vllm


def test_stage_generator_hands_vllm_a_folder_the_dtype_and_the_share(vllm):
    """#35.1 and #35.6: 'default' reached vLLM unresolved and --dtype was dropped (the identity said "auto")."""
    gen = stage_generator(SampleConfig(backend="vllm", model_name_or_path="default", dtype="bfloat16"))
    (llm,) = vllm.LLM.instances
    assert llm.kwargs["model"] == resolve_model("default") and Path(llm.kwargs["model"]).is_dir()
    assert llm.kwargs["dtype"] == "bfloat16" and llm.kwargs["gpu_memory_utilization"] == 0.9
    assert gen.identity()["dtype"] == "torch.bfloat16" and gen.num_parameters == 1292416
    gen.close()
    stage_generator(SampleConfig(backend="vllm", gpu_memory_utilization=0.4))
    assert vllm.LLM.instances[-1].kwargs["gpu_memory_utilization"] == 0.4


@pytest.mark.parametrize("device, cuda, expected", [("auto", False, "cpu"), ("auto", True, "cuda"),
                                                     ("cpu", True, "cpu"), ("cuda:1", True, "cuda:1")])
def test_stage_generator_puts_the_transformers_backend_on_the_device(monkeypatch, device, cuda, expected):
    """#35.9: stage_generator never passed a device, so --backend transformers never used the GPU."""
    seen = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr("ttstrain.stages.load_generator", lambda backend, **kw: seen.update(kw))
    stage_generator(SampleConfig(device=device, dtype="float32"))
    assert seen["device"] == expected and seen["dtype"] == "float32"


def test_device_and_share_are_not_part_of_the_run_fingerprint():
    """Where and how fast the policy runs does not change its rows: a resume on another GPU is accepted."""
    a = run_fingerprint(SampleConfig(device="cpu", gpu_memory_utilization=0.5, max_batch_rows=8))
    assert a == run_fingerprint(SampleConfig())


def test_a_hub_model_fingerprint_is_its_commit_from_the_first_run(monkeypatch, tmp_path):
    """#35.8: the fingerprint was computed before the model was downloaded (model_revision None on the first
    run, the commit after), so a resume on a fresh node was refused."""
    import huggingface_hub

    snapshot = tmp_path / "models--org--policy" / "snapshots" / "c0ffee1234"
    cache: dict[str, str] = {}

    def try_to_load_from_cache(repo, filename):
        return cache.get(repo)

    def hf_hub_download(repo, filename):  # what a download does: the file lands in the cache under its commit
        snapshot.mkdir(parents=True, exist_ok=True)
        (snapshot / filename).write_text("{}")
        cache[repo] = str(snapshot / filename)
        return cache[repo]

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", try_to_load_from_cache)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    assert model_revision("org/policy") is None  # not cached yet: what HEAD wrote into the first run's config
    cfg = SampleConfig(model_name_or_path="org/policy")
    first = run_fingerprint(cfg)
    assert first["model_revision"] == "c0ffee1234"
    assert run_fingerprint(cfg) == first  # the resume, with the model now in the cache


def test_a_hub_model_that_cannot_be_reached_is_named(monkeypatch):
    import huggingface_hub

    def offline(repo, filename):
        raise huggingface_hub.errors.LocalEntryNotFoundError("cannot reach the hub")

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, filename: None)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(OSError, match="model 'org/policy' is not a local folder nor in the Hugging Face cache"):
        run_fingerprint(SampleConfig(model_name_or_path="org/policy"))


# ---- the GPU shared by vLLM and the verifier ------------------------------------------------------------

@pytest.fixture
def prm_with_reference(tmp_path):
    """A PRM folder that records a reference model ('default'), as a reference-feature PRM does; its weights
    are the world policy's file (only the header is read here)."""
    folder = tmp_path / "prm"
    folder.mkdir()
    shutil.copy(Path(resolve_model("default")) / "model.safetensors", folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({"ttstrain_prm": {"reference_features": {"reference_model": "default"}}}))
    return folder


def on_gpu(monkeypatch, gib: int):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(devices, "gpu_total_bytes", lambda: gib * GIB)
    monkeypatch.setattr("ttstrain.stages.run_search.gpu_total_bytes", lambda: gib * GIB)


def test_vllm_share_leaves_room_for_the_verifier_on_its_gpu(monkeypatch, prm_with_reference):
    """#35.2/#35.3: search loaded the PRM, its reference model and two 512 MB prefix caches next to an engine
    holding 90% of the GPU. The planned share leaves their weights, caches and a workspace free."""
    on_gpu(monkeypatch, 16)
    weights = (Path(resolve_model("default")) / "model.safetensors").stat().st_size
    cfg = SearchStageConfig(backend="vllm", prm_path=str(prm_with_reference), prm_device="auto",
                            prm_prefix_cache_mb=512)
    need = devices.WORKSPACE_BYTES + 2 * (weights + (512 << 20))  # the PRM and its reference model, each cached
    assert devices.verifier_bytes(["default", "default"], "auto", 512 << 20) == pytest.approx(need, rel=0.01)
    share = planned_vllm_share(cfg)
    assert share == round(0.9 - need / (16 * GIB), 2) and share < 0.9
    # on the simulated GPU: the engine starts with that share and the verifier fits in what is left
    gpu = fake_vllm.reset_device(total_bytes=16 * GIB)
    gpu.claim("engine", share)
    assert gpu.free_bytes >= need
    gpu = fake_vllm.reset_device(total_bytes=16 * GIB)
    gpu.claim("engine", 0.9)  # HEAD's fixed share
    assert gpu.free_bytes < need
    # the verifier elsewhere, or a share given: nothing to plan
    assert planned_vllm_share(SearchStageConfig(backend="vllm", prm_path=str(prm_with_reference),
                                                prm_device="cuda:1")) is None
    assert planned_vllm_share(SearchStageConfig(backend="vllm", prm_path=str(prm_with_reference),
                                                gpu_memory_utilization=0.5)) is None
    assert planned_vllm_share(SearchStageConfig(backend="vllm", methods=["majority"])) is None


def test_a_verifier_too_big_for_the_gpu_is_refused_with_the_ways_out(monkeypatch, prm_with_reference):
    on_gpu(monkeypatch, 4)
    with pytest.raises(ValueError, match=r"--prm_device cuda:1.*--gpu_memory_utilization"):
        planned_vllm_share(SearchStageConfig(backend="vllm", prm_path=str(prm_with_reference),
                                             prm_prefix_cache_mb=2048))


# ---- calls that fill vLLM's batch ------------------------------------------------------------------------

def test_sampling_sends_vllm_calls_that_fill_its_batch(vllm):
    """#35.11: sample_solutions sent 16 prompts a call (256 requests at n=16): vLLM 0.32 schedules up to 1,024
    sequences on an H100, so each call ended on a thin tail. A vLLM generator now gets >= min_call_rows a call."""
    tok = load_tokenizer("default")
    vllm.LLM.default_script = tokens(tok, "1 + 1 = 2", eos=True)
    gen = stage_generator(SampleConfig(backend="vllm"))
    problems = [{"id": f"p{i}", "question": f"{i} + 1", "answer": str(i + 1), "level": 1} for i in range(300)]
    rows = sample_solutions(gen, problems, n=16, temperature=1.0, progress=False)
    assert len(rows) == 300 * 16
    assert [len(c.prompts) for c in gen.llm.calls] == [256 * 16, 44 * 16]  # ceil(4096 / 16) prompts a call


# ---- a whole search on the vLLM backend ---------------------------------------------------------------------

def test_search_on_vllm_counts_policy_flops(vllm, tmp_path):
    """#35.6: num_parameters was None on vLLM, so every search row's FLOPs were unknown."""
    tok = load_tokenizer("default")
    vllm.LLM.default_script = tokens(tok, "1 + 1 = 2", "\n", "The answer is 2", eos=True)
    cfg = SearchStageConfig(backend="vllm", output_dir=str(tmp_path / "search"), methods=["majority"],
                            per_level=1, levels=[1], max_budget=2, max_new_tokens=32)
    summary = run_search_stage(cfg, progress=False)
    assert summary is not None
    from ttstrain.io import read_parquet

    rows = read_parquet(tmp_path / "search" / "results.parquet")
    assert rows and all(r["policy_flops"] and r["policy_flops"] > 0 for r in rows)
    config = json.loads((tmp_path / "search" / "config.json").read_text())
    assert config["generator"]["parameters"] == 1292416 and config["generator"]["model"] == "default"
