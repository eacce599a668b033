"""Generation backends: the transformers backend against model.generate, KV reuse, seeds, stops;
the scripted backend's exact outputs and token counts; a sampling stage driven by it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ttstrain.generation import SamplingParams, load_generator
from ttstrain.generation.hf import HFGenerator, counter_uniforms, sample_tokens
from ttstrain.generation.scripted import ScriptedGenerator
from ttstrain.generation.sampling import sample_solutions
from ttstrain.steps import STEP_SEPARATOR

PROMPTS = ["Problem:\nStart with 5.\n1. Add 7.\nWhat is the result?\nSolution:\n", "Problem:\nabc\nSolution:\n12 + 3 = 15\n"]


@pytest.fixture
def hf(tiny_llama, char_tokenizer):
    return HFGenerator(tiny_llama, char_tokenizer, max_batch_rows=64)


def test_greedy_matches_transformers_generate(hf, tiny_llama, char_tokenizer):
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=12)
    ours = hf.generate(PROMPTS, params)
    for prompt, res in zip(PROMPTS, ours):
        ids = char_tokenizer(prompt, return_tensors="pt")["input_ids"]
        ref = tiny_llama.generate(ids, max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=0)
        ref_tokens = ref[0, ids.shape[1]:].tolist()
        c = res.completions[0]
        # compare up to where our backend stopped (it stops at a blank line or EOS)
        assert char_tokenizer.decode(ref_tokens[: c.num_tokens], skip_special_tokens=True).startswith(c.text)
        assert res.prompt_tokens == ids.shape[1]


def test_shared_prefix_is_prefilled_once(hf):
    before = hf.stats.prefill_tokens
    res = hf.generate(PROMPTS, SamplingParams(n=8, temperature=1.0, max_new_tokens=6, seed=3))
    prompt_tokens = sum(r.prompt_tokens for r in res)
    assert hf.stats.prefill_tokens - before == prompt_tokens
    assert hf.stats.prompt_tokens >= 8 * prompt_tokens
    assert all(len(r.completions) == 8 for r in res)


def test_seeded_and_batch_invariant(hf):
    params = SamplingParams(n=6, temperature=1.0, max_new_tokens=10, seed=11)
    a = hf.generate(PROMPTS, params)
    b = hf.generate(PROMPTS, params)
    alone = hf.generate(PROMPTS[:1], params)
    texts = lambda r: [c.text for c in r.completions]  # noqa: E731
    assert texts(a[0]) == texts(b[0]) == texts(alone[0])
    assert len(set(texts(a[0]))) > 1, "different continuations draw different streams"
    other = hf.generate(PROMPTS[:1], SamplingParams(n=6, temperature=1.0, max_new_tokens=10, seed=12))
    assert texts(other[0]) != texts(a[0])


def test_small_batches_give_the_same_rows(tiny_llama, char_tokenizer):
    params = SamplingParams(n=5, temperature=1.0, max_new_tokens=8, seed=2)
    big = HFGenerator(tiny_llama, char_tokenizer, max_batch_rows=64).generate(PROMPTS, params)
    small = HFGenerator(tiny_llama, char_tokenizer, max_batch_rows=3).generate(PROMPTS, params)
    assert [[c.text for c in r.completions] for r in big] == [[c.text for c in r.completions] for r in small]


def test_token_counts_and_stop_modes(hf, char_tokenizer):
    for stop in ("step", "solution"):
        res = hf.generate(PROMPTS, SamplingParams(n=4, temperature=1.0, max_new_tokens=30, stop=stop, seed=5))
        for r in res:
            for c in r.completions:
                assert 1 <= c.num_tokens <= 30
                if stop == "step":
                    assert STEP_SEPARATOR not in c.text
                if c.finish_reason == "length":
                    assert c.num_tokens == 30
                elif c.finish_reason in ("eos", "step_end"):
                    # char tokenizer: one token per character, plus the stopping token
                    assert c.num_tokens == len(c.text) + 1


def test_sampler_follows_probabilities():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1, 0.0]]).repeat(4000, 1))
    u = counter_uniforms(np.arange(4000, dtype=np.uint64) * np.uint64(7919), 0)
    toks = sample_tokens(logits, 1.0, 1.0, u)
    freq = torch.bincount(toks, minlength=4).float() / 4000
    assert torch.allclose(freq, torch.tensor([0.7, 0.2, 0.1, 0.0]), atol=0.03)
    nucleus = sample_tokens(logits, 1.0, 0.75, u)
    assert set(nucleus.tolist()) == {0, 1}, "top_p=0.75 keeps the two most likely tokens"
    assert sample_tokens(logits[:2], 0.0, 1.0, u[:2]).tolist() == [0, 0]


def test_scripted_backend_exact_outputs_and_counts():
    script = {"P\n": ["1 + 1 = 2\n2 * 3 = 6\nThe answer is \\boxed{6}.", "\nignored"]}
    gen = ScriptedGenerator(script)
    out = gen.generate(["P\n"], SamplingParams(n=3, stop="step"))[0]
    assert [(c.text, c.num_tokens, c.finish_reason) for c in out.completions] == [
        ("1 + 1 = 2", 10, "step_end"), ("", 1, "solution_end"), ("1 + 1 = 2", 10, "step_end")]
    full = gen.generate(["P\n"], SamplingParams(n=1, stop="solution"))[0].completions[0]
    assert full.text == script["P\n"][0] and full.num_tokens == len(full.text) + 1 and full.finish_reason == "eos"
    capped = gen.generate(["P\n"], SamplingParams(n=1, max_new_tokens=4))[0].completions[0]
    assert (capped.text, capped.num_tokens, capped.finish_reason) == ("1 + ", 4, "length")
    assert len(gen.calls) == 3 and gen.calls[0].params.n == 3
    assert gen.stats.generated_tokens == 10 + 1 + 10 + full.num_tokens + 4


def test_sampling_stage_with_scripted_backend():
    problems = [{"id": "p1", "question": "Start with 2.\n1. Add 3.\nWhat is the result?", "answer": "5", "level": 1},
                {"id": "p2", "question": "Start with 4.\n1. Multiply by 2.\nWhat is the result?", "answer": "8", "level": 1}]
    answers = {"p1": ["2 + 3 = 5\nThe answer is \\boxed{5}.", "2 + 3 = 6\nThe answer is \\boxed{6}."],
               "p2": ["4 * 2 = 8\nThe answer is \\boxed{8}.", "4 * 2 = 8"]}

    def script(prompt, j, params):
        pid = "p1" if "Start with 2." in prompt else "p2"
        return answers[pid][j % 2]

    gen = ScriptedGenerator(script)
    rows = sample_solutions(gen, problems, n=2, temperature=1.0, seed=0, progress=False)
    got = [(r["problem_id"], r["sample_index"], r["answer"], r["correct"], r["num_tokens"], r["steps"]) for r in rows]
    assert got == [
        ("p1", 0, "5", True, 35, ["2 + 3 = 5", "The answer is \\boxed{5}."]),
        ("p1", 1, "6", False, 35, ["2 + 3 = 6", "The answer is \\boxed{6}."]),
        ("p2", 0, "8", True, 35, ["4 * 2 = 8", "The answer is \\boxed{8}."]),
        ("p2", 1, None, False, 10, ["4 * 2 = 8"]),
    ]
    assert rows[0]["prompt_tokens"] == len("Problem:\n" + problems[0]["question"] + "\nSolution:\n")
    assert gen.stats.generated_tokens == 35 * 3 + 10


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown generation backend 'nope'"):
        load_generator("nope")


def test_streams_separate_identical_prompts(hf):
    params = SamplingParams(n=2, temperature=1.0, max_new_tokens=10, seed=4)
    same = hf.generate([PROMPTS[0], PROMPTS[0]], params)
    assert [c.text for c in same[0].completions] == [c.text for c in same[1].completions]
    split = hf.generate([PROMPTS[0], PROMPTS[0]], params, streams=[0, 1])
    assert [c.text for c in split[0].completions] == [c.text for c in same[0].completions]
    assert [c.text for c in split[1].completions] != [c.text for c in split[0].completions]
    with pytest.raises(ValueError, match="2 streams for 1 prompts"):
        hf.generate([PROMPTS[0]], params, streams=[0, 1])
    scripted = ScriptedGenerator(lambda p, j, prm: f"x{j}")
    out = scripted.generate(["a", "a"], SamplingParams(n=2), streams=[0, 3])
    assert [[c.text for c in r.completions] for r in out] == [["x0", "x1"], ["x6", "x7"]]
