"""Stage progress bars move inside a chunk, as the generator's continuations finish, with tokens/s."""

from __future__ import annotations

from ttstrain.generation import SamplingParams
from ttstrain.generation.scripted import ScriptedGenerator
from ttstrain.runner.progress import StageProgress


def test_the_bar_moves_with_each_generate_call_and_restores_the_hook():
    gen = ScriptedGenerator(lambda p, j, params: "1 + 1 = 2\nThe answer is \\boxed{2}.")
    with StageProgress(8, "test", gen, calls_per_chunk=2, chunk_size=4, enabled=True) as bar:
        assert gen.progress_hook == bar.on_generation
        gen.generate(["a", "b"], SamplingParams(n=3))
        assert bar.bar.n == 2.0  # one of the chunk's two calls done: half of its 4 problems
        assert "tok_s" in bar.bar.postfix and bar.tokens > 0
        gen.generate(["a"], SamplingParams(n=1))
        assert 3.9 < bar.bar.n < 4.0  # never shown as written before the chunk is
        bar.chunk_done(4)
        assert bar.bar.n == 4 and bar.calls_in_chunk == 0
        gen.generate(["c"], SamplingParams(n=2))
        assert bar.bar.n == 6.0
    assert gen.progress_hook is None


def test_the_transformers_backend_reports_each_call(tiny_llama, char_tokenizer):
    from ttstrain.generation.hf import HFGenerator

    gen = HFGenerator(tiny_llama, char_tokenizer)
    seen = []
    gen.progress_hook = lambda done, total, tokens, finished: seen.append((done, total, tokens, finished))
    out = gen.generate(["Problem:\nx\nSolution:\n"] * 2, SamplingParams(n=3, max_new_tokens=8, seed=1))
    assert seen[-1] == (6, 6, sum(r.generated_tokens for r in out), True)
