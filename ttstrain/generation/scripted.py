"""Scripted backend: pre-set continuations, every call recorded; drives the tests of every stage.

A script is a function `(prompt, index, params) -> str` (index = stream * n + continuation index) or a dict mapping a prompt to a list of
continuations (continuation j of that prompt is entry j modulo its length). A continuation is the
text the "model" would write if left to run: its end means end-of-sequence. The backend then
applies the same stop rule as the real ones (`params.step_format.find_stop`: the step separator
with stop="step", a blank line where the format ends solutions on one; `max_new_tokens`) and
counts tokens with `count_tokens` (characters by default, or a tokenizer): a continuation that
stops on a separator or on end-of-sequence is charged one token for it.

    gen = ScriptedGenerator({"Q": ["1 + 1 = 2\\nThe answer is \\\\boxed{2}."]})
    gen.generate(["Q"], SamplingParams(stop="step"))[0].completions[0].text   # '1 + 1 = 2'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from ttstrain.generation.base import Completion, Generator, PromptResult, SamplingParams, check_streams


@dataclass
class ScriptedCall:
    prompts: list[str]
    params: SamplingParams
    streams: list[int]


class ScriptedGenerator(Generator):
    backend = "scripted"

    def __init__(self, script: Callable[[str, int, SamplingParams], str] | dict[str, list[str]],
                 tokenizer=None, name: str = "scripted"):
        super().__init__()
        self.script = script
        self._tokenizer = tokenizer
        self.name = name
        self.calls: list[ScriptedCall] = []

    @property
    def tokenizer(self):
        return self._tokenizer

    def identity(self) -> dict:
        return {"backend": self.backend, "model": self.name}

    def count_tokens(self, text: str) -> int:
        if self._tokenizer is None:
            return len(text)
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def continuation(self, prompt: str, index: int, params: SamplingParams) -> str:
        if callable(self.script):
            return self.script(prompt, index, params)
        try:
            options = self.script[prompt]
        except KeyError:
            raise KeyError(f"scripted generator has no continuation for prompt {prompt!r}") from None
        return options[index % len(options)]

    def generate(self, prompts: Sequence[str], params: SamplingParams,
                 streams: Sequence[int] | None = None) -> list[PromptResult]:
        streams = check_streams(prompts, streams)
        self.calls.append(ScriptedCall(list(prompts), params, streams))
        results = []
        for prompt, stream in zip(prompts, streams):
            comps = [self._stop(prompt, self.continuation(prompt, stream * params.n + j, params), params)
                     for j in range(params.n)]
            prompt_tokens = self.count_tokens(prompt)
            results.append(PromptResult(prompt=prompt, prompt_tokens=prompt_tokens, completions=comps))
        self.stats.add(results, prefill_tokens=sum(r.prompt_tokens for r in results))
        rows = sum(len(r.completions) for r in results)
        self.report_progress(rows, rows, sum(r.generated_tokens for r in results), finished=True)
        return results

    def _stop(self, prompt: str, text: str, params: SamplingParams) -> Completion:
        hit = params.step_format.find_stop(prompt, text, params.stop)
        cut, reason = (text[:hit[0]], hit[1]) if hit is not None else (text, "eos")
        tokens = self.count_tokens(cut) + 1  # the separator or end-of-sequence token
        if tokens > params.max_new_tokens:
            return Completion(text=self._first_tokens(cut, params.max_new_tokens), num_tokens=params.max_new_tokens,
                              finish_reason="length")
        return Completion(text=cut, num_tokens=tokens, finish_reason=reason)

    def _first_tokens(self, text: str, k: int) -> str:
        if self._tokenizer is None:
            return text[:k]
        ids = self._tokenizer(text, add_special_tokens=False)["input_ids"][:k]
        return self._tokenizer.decode(ids)
