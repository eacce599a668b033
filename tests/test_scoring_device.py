"""Stages that score with a PRM or the likelihood model load it on the device asked for; `auto` is cuda when
torch sees a GPU, else cpu (`ttstrain.prm.scoring.resolve_device`)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from ttstrain.prm.likelihood_baseline import LikelihoodScorer
from ttstrain.prompts import format_prompt
from ttstrain.prm import scoring
from ttstrain.prm.scoring import PRMScorer


class Stop(Exception):
    """Raised by a recording loader that should not load anything."""


def record_loads(monkeypatch, cls, seen: list, stop: bool = False):
    """Make `cls.from_pretrained` note (class name, device, dtype) before loading (or, with stop, instead)."""
    original = cls.from_pretrained.__func__

    def recording(klass, name, **kw):
        seen.append((klass.__name__, kw.get("device"), kw.get("dtype")))
        if stop:
            raise Stop
        return original(klass, name, **kw)

    monkeypatch.setattr(cls, "from_pretrained", classmethod(recording))


@pytest.fixture()
def prm_and_samples(tmp_path, base_dir):
    from ttstrain.prm.trainer import load_prm_model

    model, tok = load_prm_model(str(base_dir))
    prm = tmp_path / "prm"
    model.save_pretrained(prm)
    tok.save_pretrained(prm)
    rows = [{"problem_id": f"p{i}", "sample_index": j, "level": 1, "prompt": format_prompt(f"Start with {i}. Add 2."),
             "steps": [f"{i} + 2 = {i + 2 + j}", f"The answer is \\boxed{{{i + 2 + j}}}."], "answer": str(i + 2 + j),
             "correct": j == 0} for i in range(2) for j in range(2)]
    samples = tmp_path / "samples.parquet"
    pq.write_table(pa.Table.from_pylist(rows), samples)
    return prm, samples


def test_auto_is_cuda_only_when_torch_sees_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert scoring.resolve_device("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert scoring.resolve_device("auto") == "cuda"
    assert [scoring.resolve_device(d) for d in ("cpu", "cuda", "cuda:1")] == ["cpu", "cuda", "cuda:1"]
    for bad in ("tpu", "gpu0"):
        with pytest.raises((ValueError, RuntimeError)):
            scoring.resolve_device(bad)


def test_eval_prm_loads_the_prm_and_the_baseline_on_the_device_given(tmp_path, monkeypatch, prm_and_samples, base_dir):
    from ttstrain.stages.eval_prm import make_parser, run_eval_prm

    prm, samples = prm_and_samples
    seen: list = []
    record_loads(monkeypatch, PRMScorer, seen)
    record_loads(monkeypatch, LikelihoodScorer, seen)
    out = tmp_path / "out"
    (cfg,) = make_parser().parse_args_and_config(
        ["--prm_path", str(prm), "--samples", str(samples), "--output_dir", str(out), "--budgets", "1", "2",
         "--likelihood_baseline", str(base_dir), "--prm_device", "cpu", "--prm_dtype", "float32"])
    run_eval_prm(cfg)
    assert seen == [("PRMScorer", "cpu", "float32"), ("LikelihoodScorer", "cpu", "float32")]
    assert json.loads((out / "config.json").read_text())["prm_device"] == "cpu"


def test_eval_prm_auto_device_follows_torch(tmp_path, monkeypatch, prm_and_samples):
    from ttstrain.stages.eval_prm import make_parser, run_eval_prm

    prm, samples = prm_and_samples
    seen: list = []
    record_loads(monkeypatch, PRMScorer, seen, stop=True)
    args = ["--prm_path", str(prm), "--samples", str(samples), "--output_dir", str(tmp_path / "o")]
    for available, want in ((False, "cpu"), (True, "cuda")):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
        (cfg,) = make_parser().parse_args_and_config(args)  # prm_device defaults to auto
        with pytest.raises(Stop):
            run_eval_prm(cfg)
        assert seen.pop() == ("PRMScorer", want, "auto")


def test_eval_revision_loads_its_verifiers_on_the_device_given(tmp_path, monkeypatch, prm_and_samples):
    from ttstrain.generation.scripted import ScriptedGenerator
    from ttstrain.stages.eval_revision import make_parser, run_eval_revision

    prm, _ = prm_and_samples
    seen: list = []
    record_loads(monkeypatch, PRMScorer, seen, stop=True)
    (cfg,) = make_parser().parse_args_and_config(
        ["--output_dir", str(tmp_path / "ev"), "--problems", "arith", "--per_level", "1", "--num_chains", "1",
         "--chain_length", "1", "--prm_path", str(prm), "--prm_device", "cpu", "--prm_dtype", "bfloat16"])
    with pytest.raises(Stop):
        run_eval_revision(cfg, generator=ScriptedGenerator(lambda prompt, j, params: "1 + 1 = 2"), progress=False)
    assert seen == [("PRMScorer", "cpu", "bfloat16")]
