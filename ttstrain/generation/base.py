"""The generation interface every stage uses: prompts in, continuations and exact token counts out.

A call takes a list of prompts and one `SamplingParams`; each prompt gets `params.n`
continuations. Many continuations of one prompt are how a shared prefix is expressed (Monte
Carlo rollouts from a step prefix, beam expansions): backends must compute that prefix once.

Stopping follows `params.step_format` (`ttstrain.steps.StepFormat.find_stop`, one rule for every
backend): `stop="solution"` ends at the end-of-sequence token or, where the format ends solutions
on one, a blank line (which may begin in the prompt); `stop="step"` also ends at the first step
separator in the generated text, and the returned text is cut to exactly one step (without the
separator; text the stopping token carried past it is dropped, its token still counted). Token counts are what the model
actually processed: `prompt_tokens` once per prompt, `num_tokens` per continuation including
the token that stopped it.

Randomness is counter-based per continuation: continuation j of a prompt draws from a stream
fixed by (seed, prompt text, j, stream), so results do not depend on batch size or on which other
prompts share the call (see `row_seed`). `streams` (one int per prompt, default 0) lets callers
that hold several independent copies of one text (two beams or revision chains that happen to
agree so far) draw different continuations for each copy.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import Sequence

from ttstrain.steps import LINE, StepFormat

STOP_MODES = ("solution", "step")


@dataclass(frozen=True)
class SamplingParams:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 512
    stop: str = "solution"
    seed: int = 0
    step_format: StepFormat = LINE

    def __post_init__(self):
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.stop not in STOP_MODES:
            raise ValueError(f"stop must be one of {STOP_MODES}, got {self.stop!r}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SamplingArguments:
    """How solutions are sampled: the options every generating stage takes and the library configs
    (`MCSettings`, `SearchConfig`) compose, one default each."""

    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus threshold."})
    max_new_tokens: int = field(default=320, metadata={"help": "Generation cap per solution (a rollout, an attempt)."})


@dataclass
class Completion:
    text: str
    num_tokens: int
    # eos | solution_end | step_end | length
    finish_reason: str

    @property
    def finished_solution(self) -> bool:
        """True when the continuation ended the whole solution (not a step, not the length cap)."""
        return self.finish_reason in ("eos", "solution_end")


@dataclass
class PromptResult:
    prompt: str
    prompt_tokens: int
    completions: list[Completion] = field(default_factory=list)

    @property
    def generated_tokens(self) -> int:
        return sum(c.num_tokens for c in self.completions)


@dataclass
class GenerationStats:
    """Running totals a backend keeps across calls (what it really computed)."""

    calls: int = 0
    prompts: int = 0
    completions: int = 0
    prompt_tokens: int = 0  # tokens of the prompts as requested (what a naive backend would prefill)
    prefill_tokens: int = 0  # prompt tokens the backend actually ran through the model
    generated_tokens: int = 0

    def add(self, results: Sequence[PromptResult], prefill_tokens: int) -> None:
        self.calls += 1
        self.prompts += len(results)
        self.completions += sum(len(r.completions) for r in results)
        self.prompt_tokens += sum(r.prompt_tokens * len(r.completions) for r in results)
        self.prefill_tokens += prefill_tokens
        self.generated_tokens += sum(r.generated_tokens for r in results)


class Generator(ABC):
    """A text generator behind one interface; see the module docstring for the contract."""

    backend: str = "abstract"
    # continuations one generate call should carry to keep the backend busy (callers that split work into
    # calls send at least this many when they have them); vLLM schedules up to 1,024 sequences at once
    min_call_rows: int = 0

    def __init__(self):
        self.stats = GenerationStats()
        # progress_hook(rows_done, rows_total, tokens_so_far, finished): called as a call's continuations
        # finish (throttled) and once at its end; stage progress bars set it (ttstrain.runner.progress)
        self.progress_hook = None

    def report_progress(self, rows_done: int, rows_total: int, tokens: int, finished: bool = False) -> None:
        if self.progress_hook is not None:
            self.progress_hook(rows_done, rows_total, tokens, finished)

    @abstractmethod
    def generate(self, prompts: Sequence[str], params: SamplingParams,
                 streams: Sequence[int] | None = None) -> list[PromptResult]:
        ...

    @abstractmethod
    def identity(self) -> dict:
        """What produced the texts: backend, model path or id, revision; written next to outputs."""

    @property
    def tokenizer(self):
        return None

    @property
    def num_parameters(self) -> int | None:
        return None

    def fresh_prefix_cache(self, max_bytes: int):
        """A context in which prompts reuse the KV of prompts prefilled earlier in it (`HFGenerator`'s); a
        backend without a cache of its own to reset (vLLM caches prefixes itself) gives an empty one."""
        return nullcontext()

    def close(self) -> None:
        """Give back what the backend holds (vLLM: the engine and its GPU memory); nothing here."""


def eos_id_list(*values) -> list[int]:
    """End-of-sequence ids from values that are each an id, a list of ids or None (a tokenizer's
    `eos_token_id`, a generation config's)."""
    return [e for v in values for e in ([v] if isinstance(v, int) else list(v or []))]


def check_streams(prompts: Sequence[str], streams: Sequence[int] | None) -> list[int]:
    if streams is None:
        return [0] * len(prompts)
    if len(streams) != len(prompts):
        raise ValueError(f"got {len(streams)} streams for {len(prompts)} prompts")
    return [int(s) for s in streams]


def row_seed(seed: int, prompt: str, index: int, stream: int = 0) -> int:
    """A 63-bit seed for continuation `index` of `prompt` in `stream` under `seed` (batch-invariant)."""
    key = f"{seed}\x00{index}\x00{prompt}" if stream == 0 else f"{seed}\x00{index}\x00{stream}\x00{prompt}"
    h = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << 63) - 1)
