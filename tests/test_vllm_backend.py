"""VLLMGenerator against a fake `vllm` module (no GPU, no vLLM install needed)."""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import pytest

from ttstrain.generation.base import SamplingParams, row_seed
from ttstrain.steps import SOLUTION_END, STEP_SEPARATOR

# --- the fake vllm ----------------------------------------------------------------------------


class FakeSamplingParams:
    def __init__(self, **kwargs):
        self.kwargs = kwargs

    def __getattr__(self, name):
        try:
            return self.__dict__["kwargs"][name]
        except KeyError:
            raise AttributeError(name) from None


def _tokens(text: str) -> list[int]:
    """Toy tokenizer: one token per whitespace-separated word."""
    return list(range(len(text.split())))


class FakeLLM:
    """Records calls; `script(prompt, sampling_params, request_index)` returns
    (text, num_tokens, finish_reason, stop_reason) for one request."""

    instances: list["FakeLLM"] = []

    def __init__(self, script=None, **kwargs):
        self.kwargs = kwargs
        self.script = script or (lambda prompt, sp, k: (f"out{k}", 3, "length", None))
        self.calls = []
        FakeLLM.instances.append(self)

    def generate(self, prompts, sampling_params, use_tqdm=True):
        assert isinstance(prompts, list) and isinstance(sampling_params, list)
        assert len(prompts) == len(sampling_params)
        self.calls.append(SimpleNamespace(prompts=list(prompts), params=list(sampling_params), use_tqdm=use_tqdm))
        outs = []
        for k, (prompt, sp) in enumerate(zip(prompts, sampling_params)):
            text, num_tokens, finish_reason, stop_reason = self.script(prompt, sp, k)
            outs.append(
                SimpleNamespace(
                    prompt=prompt,
                    prompt_token_ids=_tokens(prompt),
                    outputs=[
                        SimpleNamespace(
                            index=0,
                            text=text,
                            token_ids=list(range(100, 100 + num_tokens)),
                            finish_reason=finish_reason,
                            stop_reason=stop_reason,
                        )
                    ],
                )
            )
        return outs

    def get_tokenizer(self):
        return "fake-tokenizer"


@pytest.fixture
def fake_vllm(monkeypatch):
    mod = types.ModuleType("vllm")
    mod.SamplingParams = FakeSamplingParams
    mod.LLM = FakeLLM
    mod.__version__ = "0.32.0"
    FakeLLM.instances = []
    monkeypatch.setitem(sys.modules, "vllm", mod)
    return mod


@pytest.fixture
def make_gen(fake_vllm):
    from ttstrain.generation.vllm_backend import VLLMGenerator

    def make(script=None, **kwargs):
        return VLLMGenerator("fake/model", llm=FakeLLM(script=script), **kwargs)

    return make


PROMPTS = ["Q: one two three" + STEP_SEPARATOR + "A:" + STEP_SEPARATOR, "Q: four five" + STEP_SEPARATOR + "A:" + STEP_SEPARATOR]

# --- tests ------------------------------------------------------------------------------------


def test_import_error_when_vllm_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    from ttstrain.generation.vllm_backend import VLLMGenerator

    with pytest.raises(ImportError, match=r"pip install 'ttstrain\[vllm\]' on a CUDA machine"):
        VLLMGenerator("fake/model")


def test_engine_built_with_prefix_caching(fake_vllm):
    from ttstrain.generation.vllm_backend import VLLMGenerator

    gen = VLLMGenerator("fake/model", dtype="bfloat16", seed=7, max_model_len=4096, enforce_eager=True)
    (llm,) = FakeLLM.instances
    assert gen.llm is llm
    assert llm.kwargs == dict(
        model="fake/model",
        tokenizer=None,
        dtype="bfloat16",
        seed=7,
        gpu_memory_utilization=0.9,
        tensor_parallel_size=1,
        enable_prefix_caching=True,
        max_model_len=4096,
        enforce_eager=True,
    )
    assert gen.backend == "vllm"
    assert gen.tokenizer == "fake-tokenizer"
    assert gen.num_parameters is None
    ident = gen.identity()
    assert ident == dict(
        backend="vllm",
        model="fake/model",
        tokenizer="fake/model",
        dtype="bfloat16",
        vllm_version="0.32.0",
        enable_prefix_caching=True,
    )


@pytest.mark.parametrize("stop, expected", [("step", [STEP_SEPARATOR]), ("solution", [SOLUTION_END])])
def test_sampling_params_mapping(make_gen, stop, expected):
    gen = make_gen()
    params = SamplingParams(n=3, temperature=0.7, top_p=0.9, max_new_tokens=64, stop=stop, seed=11)
    gen.generate(PROMPTS, params)
    (call,) = gen.llm.calls  # one engine call for all prompts and continuations
    assert call.use_tqdm is False
    assert call.prompts == [PROMPTS[0]] * 3 + [PROMPTS[1]] * 3
    seeds = []
    for k, sp in enumerate(call.params):
        prompt, j = PROMPTS[k // 3], k % 3
        assert sp.kwargs == dict(
            n=1,
            temperature=0.7,
            top_p=0.9,
            max_tokens=64,
            stop=expected,
            include_stop_str_in_output=False,
            seed=row_seed(11, prompt, j),
        )
        seeds.append(sp.seed)
    assert len(set(seeds)) == len(seeds)  # differ across j and across prompts


def test_seeds_are_batch_invariant(make_gen):
    params = SamplingParams(n=2, temperature=1.0, seed=3)
    gen = make_gen()
    gen.generate(PROMPTS, params)
    gen.generate(PROMPTS[1:], params)
    both, alone = gen.llm.calls
    assert [p.seed for p in both.params[2:]] == [p.seed for p in alone.params]


def test_greedy_mapping(make_gen):
    gen = make_gen()
    gen.generate(PROMPTS[:1], SamplingParams(n=2, temperature=0.0, top_p=0.5, max_new_tokens=5))
    for sp in gen.llm.calls[0].params:
        assert sp.temperature == 0.0
        assert sp.top_p == 1.0
        assert sp.n == 1
        assert sp.max_tokens == 5


def test_results_order_and_token_counts(make_gen):
    def script(prompt, sp, k):
        return (f"p{PROMPTS.index(prompt)}c{k % 2}", k + 1, "length", None)

    gen = make_gen(script)
    results = gen.generate(PROMPTS, SamplingParams(n=2, temperature=1.0, max_new_tokens=64))
    assert [r.prompt for r in results] == PROMPTS
    assert [[c.text for c in r.completions] for r in results] == [["p0c0", "p0c1"], ["p1c0", "p1c1"]]
    assert [[c.num_tokens for c in r.completions] for r in results] == [[1, 2], [3, 4]]
    assert [r.prompt_tokens for r in results] == [len(_tokens(p)) for p in PROMPTS]

    s = gen.stats
    assert (s.calls, s.prompts, s.completions) == (1, 2, 4)
    assert s.generated_tokens == 1 + 2 + 3 + 4
    n0, n1 = (len(_tokens(p)) for p in PROMPTS)
    assert s.prompt_tokens == 2 * n0 + 2 * n1
    assert s.prefill_tokens == n0 + n1  # each distinct prompt prefilled once (prefix cache)


def test_prefill_counts_duplicate_prompts_once_and_all_without_cache(make_gen):
    prompts = [PROMPTS[0], PROMPTS[0]]
    n0 = len(_tokens(PROMPTS[0]))
    gen = make_gen()
    results = gen.generate(prompts, SamplingParams(n=3))
    assert len(results) == 2
    assert gen.stats.prefill_tokens == n0
    gen = make_gen(enable_prefix_caching=False)
    gen.generate(prompts, SamplingParams(n=3))
    assert gen.stats.prefill_tokens == 6 * n0
    assert gen.identity()["enable_prefix_caching"] is False


@pytest.mark.parametrize(
    "stop, finish_reason, stop_reason, expected",
    [
        ("step", "length", None, "length"),
        ("step", "stop", STEP_SEPARATOR, "step_end"),
        ("solution", "stop", SOLUTION_END, "solution_end"),
        ("solution", "stop", None, "eos"),
        ("solution", "stop", 2, "eos"),  # a stop token id
        ("step", "stop", None, "eos"),
    ],
)
def test_finish_reason_mapping(make_gen, stop, finish_reason, stop_reason, expected):
    gen = make_gen(lambda prompt, sp, k: ("x = 1", 4, finish_reason, stop_reason))
    (result,) = gen.generate(PROMPTS[:1], SamplingParams(stop=stop))
    (c,) = result.completions
    assert (c.text, c.num_tokens, c.finish_reason) == ("x = 1", 4, expected)
    assert c.finished_solution == (expected in ("eos", "solution_end"))


def test_unexpected_finish_reason_raises(make_gen):
    gen = make_gen(lambda prompt, sp, k: ("x", 1, "abort", None))
    with pytest.raises(RuntimeError, match="abort"):
        gen.generate(PROMPTS[:1], SamplingParams())


def test_step_text_cut_back_past_separator(make_gen):
    text = "x = 1" + STEP_SEPARATOR + "y = 2"
    gen = make_gen(lambda prompt, sp, k: (text, 7, "length", None))
    (result,) = gen.generate(PROMPTS[:1], SamplingParams(stop="step"))
    (c,) = result.completions
    assert c.text == "x = 1"
    assert c.finish_reason == "step_end"
    assert c.num_tokens == 7  # what the model generated, not re-counted


def test_solution_text_cut_back_past_solution_end(make_gen):
    text = "x = 1" + STEP_SEPARATOR + "y = 2" + SOLUTION_END + "Q: next"
    gen = make_gen(lambda prompt, sp, k: (text, 9, "length", None))
    (result,) = gen.generate(PROMPTS[:1], SamplingParams(stop="solution"))
    (c,) = result.completions
    assert c.text == "x = 1" + STEP_SEPARATOR + "y = 2"
    assert c.finish_reason == "solution_end"


def test_empty_prompt_list(make_gen):
    gen = make_gen()
    assert gen.generate([], SamplingParams()) == []
    assert gen.llm.calls == []
