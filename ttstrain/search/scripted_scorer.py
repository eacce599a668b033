"""Scripted verifier: step scores from a plain function, every call recorded; drives the search tests.

`ScriptedScorer(fn)` scores step j of a solution as `fn(prompt, steps[: j + 1])`, the value of
the solution's prefix after that step, like a PRM read at the step's end; `fn` may also be a
dict from step text to score (default `default` for unknown steps). Tokens read are counted as
characters of prompt + joined steps, the way `ScriptedGenerator` counts characters, and
reported both per solution of the last call (`last_scored_tokens`) and as a running total
(`scored_tokens`, and `stats["tokens"]`), the forms `ttstrain.search.base.Verifier` accepts. It has every
member of `ttstrain.prm.verifiers.Verifier`; its prompts are plain unless `prompt_format` says otherwise.

    scorer = ScriptedScorer({"2 + 3 = 5": 0.9, "2 + 3 = 6": 0.1}, default=0.5, num_parameters=1000)
    scorer.score(["Q\\n"], [["2 + 3 = 5", "The answer is 5."]])   # [[0.9, 0.5]]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ttstrain.aggregation import DEFAULT_AGGREGATION, aggregate
from ttstrain.prompts import PromptFormat


@dataclass
class ScoreCall:
    prompts: list[str]
    steps: list[list[str]]


class ScriptedScorer:
    reads_questions = False

    def __init__(self, fn: Callable[[str, list[str]], float] | dict[str, float], default: float = 0.5,
                 num_parameters: int | None = None, prompt_format: PromptFormat | None = None):
        self.fn = fn
        self.default = default
        self.num_parameters = num_parameters
        self.prompt_format = prompt_format or PromptFormat()
        self.scored_tokens = 0
        self.stats = {"solutions": 0, "tokens": 0}
        self.last_scored_tokens: list[int] = []
        self.calls: list[ScoreCall] = []
        self.progress_hook = None  # never called: a scripted score call is no batch

    def value(self, prompt: str, prefix: list[str]) -> float:
        if callable(self.fn):
            return float(self.fn(prompt, prefix))
        return float(self.fn.get(prefix[-1], self.default))

    def count_tokens(self, prompt: str, steps: list[str]) -> int:
        return len(prompt) + sum(map(len, steps)) + len(steps) - 1  # the text joined one step a line

    def score(self, prompts: list[str], steps: list[list[str]]) -> list[list[float]]:
        if len(prompts) != len(steps):
            raise ValueError(f"{len(prompts)} prompts but {len(steps)} step lists")
        self.calls.append(ScoreCall(list(prompts), [list(s) for s in steps]))
        out = [[self.value(p, list(s[: j + 1])) for j in range(len(s))] for p, s in zip(prompts, steps)]
        self.last_scored_tokens = [self.count_tokens(p, s) if s else 0 for p, s in zip(prompts, steps)]
        self.scored_tokens += sum(self.last_scored_tokens)
        self.stats["solutions"] += sum(1 for s in steps if s)
        self.stats["tokens"] += sum(self.last_scored_tokens)
        return out

    def score_solutions(self, prompts: list[str], steps: list[list[str]], how: str = DEFAULT_AGGREGATION
                        ) -> list[float]:
        return [aggregate(s, how) for s in self.score(prompts, steps)]

    def prompt_for(self, question: str) -> str:
        return self.prompt_format.build(question)

    def describe(self) -> dict:
        return {}

    def clear_prefix_caches(self) -> None:
        """No prefix cache."""
