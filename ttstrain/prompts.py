"""The one prompt builder: every stage that writes or scores a solution builds its prompt here.

Formats (`PromptFormat.kind`):
  plain     `Problem:` / question / `Solution:` (what the default world's policy was trained on)
  few_shot  worked examples in the same layout before the question, each closed by a blank line
            (the step contract's SOLUTION_END), so a base model writes one step per line
  chat      the tokenizer's chat template: an optional system prompt, the examples as earlier
            user/assistant turns, the question as the user turn; the step-format solution is the
            assistant turn the model writes (for instruct models)

A stage records the format it used (`PromptFormat.record()`, in its config.json, and a PRM in its
checkpoint's `ttstrain_prm`), and a stage that reads another's output checks the records agree
(`check_same_format`), so a PRM is never scored on a prompt layout it was not trained on.

    >>> format_prompt("Start with 3.\\n1. Add 4.\\nWhat is the result?")
    'Problem:\\nStart with 3.\\n1. Add 4.\\nWhat is the result?\\nSolution:\\n'
    PromptFormat("chat", system_prompt="Solve step by step.", tokenizer=tok).build(question)
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field

from ttstrain.problems import load_problems
from ttstrain.steps import LINE, SOLUTION_END, StepFormat, check_same_steps, join_steps, resolve_step_format, split_steps


QUESTION_HEAD, SOLUTION_HEAD = "Problem:\n", "\nSolution:\n"


def format_example(question: str, solution: str, steps: StepFormat = LINE) -> str:
    """A worked example (its solution stored one step a line) written in `steps`, closed by a blank line."""
    return f"{QUESTION_HEAD}{question.strip()}{SOLUTION_HEAD}{steps.join(split_steps(solution))}{SOLUTION_END}"


def format_prompt(question: str, few_shot: "list[tuple[str, str]] | PromptFormat | None" = None,
                  steps: StepFormat = LINE) -> str:
    """The prompt for `question`, after the (question, solution) examples in `few_shot`, or as a
    `PromptFormat` builds it."""
    if isinstance(few_shot, PromptFormat):
        return few_shot.build(question)
    shots = "".join(format_example(q, s, steps) for q, s in (few_shot or []))
    return f"{shots}{QUESTION_HEAD}{question.strip()}{SOLUTION_HEAD}"


PROMPT_FORMATS = ("plain", "few_shot", "chat")


@dataclass
class PromptFormat:
    """How a question becomes model input; `tokenizer` is needed (and used) by `chat` only."""

    kind: str = "plain"
    examples: list = field(default_factory=list)  # (question, solution) pairs
    system_prompt: str | None = None
    tokenizer: object = field(default=None, repr=False, compare=False)
    # how the solution is cut into steps and how it ends (ttstrain.steps); LINE for plain and few_shot
    steps: StepFormat = LINE

    def __post_init__(self):
        if self.kind not in PROMPT_FORMATS:
            raise ValueError(f"prompt format must be one of {PROMPT_FORMATS}, got {self.kind!r}")
        self.examples = [tuple(e) for e in self.examples]
        if self.kind == "plain" and self.examples:
            raise ValueError("a plain prompt has no examples; use kind='few_shot'")
        if self.kind == "few_shot" and self.steps.end_marker is None:
            raise ValueError("a few-shot prompt closes each worked example with a blank line, so its solutions must "
                             f"end at one; got {self.steps.describe()}")
        if self.kind == "chat" and self.tokenizer is not None and not getattr(self.tokenizer, "chat_template", None):
            raise ValueError("prompt format 'chat' needs a tokenizer with a chat template; this one has none "
                             "(use 'plain' or 'few_shot')")

    def build(self, question: str) -> str:
        if self.kind != "chat":
            return format_prompt(question, self.examples, self.steps)
        if self.tokenizer is None:
            raise ValueError("prompt format 'chat' needs the tokenizer whose chat template it applies")
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        for q, sol in self.examples:  # worked examples are stored one step a line; shown in the run's format
            messages += [{"role": "user", "content": q.strip()},
                         {"role": "assistant", "content": self.steps.join(split_steps(sol))}]
        messages.append({"role": "user", "content": question.strip()})
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def record(self) -> dict:
        """What a stage writes down about its prompts; equal records build equal prompts."""
        out = {"kind": self.kind, "examples": [list(e) for e in self.examples], "system_prompt": self.system_prompt,
               "step_format": self.steps.record()}
        if self.kind == "chat" and self.tokenizer is not None:
            out["chat_template_sha256"] = hashlib.sha256(self.tokenizer.chat_template.encode()).hexdigest()[:16]
        return out

    @classmethod
    def from_record(cls, record: dict | None, tokenizer=None) -> "PromptFormat":
        record = record or {"kind": "plain"}
        return cls(record["kind"], list(record.get("examples") or []), record.get("system_prompt"), tokenizer,
                   StepFormat.from_record(record.get("step_format")))


_SENTINEL = "\x00QUESTION\x00"


class QuestionReader:
    """Takes the question back out of prompts a `PromptFormat` built (the text around it is the same for
    every question; the question itself is inserted stripped)."""

    def __init__(self, prompt_format):
        self.prompt_format = prompt_format
        self._frame()

    def _frame(self) -> None:
        built = self.prompt_format.build(_SENTINEL)
        if built.count(_SENTINEL) != 1:
            raise ValueError("this prompt format does not hold its question once, verbatim; a PRM that reads questions "
                             "(a public PRM, or one trained without the worked examples) cannot read them from its prompts")
        self.prefix, self.suffix = built.split(_SENTINEL)

    def _fits(self, prompt: str) -> bool:
        return (prompt.startswith(self.prefix) and prompt.endswith(self.suffix)
                and len(prompt) >= len(self.prefix) + len(self.suffix))

    def __call__(self, prompt: str) -> str:
        if not self._fits(prompt):
            self._frame()  # a chat template may print today's date: a run that crosses midnight frames anew
            if not self._fits(prompt):
                raise ValueError(f"prompt {prompt[:80]!r}... was not built by the policy prompt format this "
                                 "verifier was told of (read_prompts_as)")
        return prompt[len(self.prefix):len(prompt) - len(self.suffix)]


def check_same_format(producer: dict | None, consumer: dict | None, producer_name: str, consumer_name: str) -> None:
    """Fail when two recorded prompt formats, or the step formats recorded with them, differ (a missing
    record is the plain format, a missing step format LINE)."""
    a, b = producer or {"kind": "plain"}, consumer or {"kind": "plain"}
    check_same_steps(a.get("step_format"), b.get("step_format"), producer_name, consumer_name)
    keys = ("kind", "examples", "system_prompt", "chat_template_sha256")
    if any((a.get(k) or None) != (b.get(k) or None) for k in keys):
        def short(r):
            return f"{r.get('kind')} ({len(r.get('examples') or [])} examples" + \
                (f", system prompt {r['system_prompt'][:40]!r}" if r.get("system_prompt") else "") + ")"
        raise ValueError(f"prompt formats differ: {producer_name} was made with {short(a)}, {consumer_name} "
                         f"uses {short(b)}; a PRM scored on prompts it was not trained on reads the wrong text. "
                         "Use the same --prompt_format, --few_shot and --system_prompt")


def step_format_of(few_shot: "list[tuple[str, str]] | PromptFormat | None") -> StepFormat:
    """The step format of what `format_prompt` accepts: a PromptFormat's own, LINE for bare examples."""
    return few_shot.steps if isinstance(few_shot, PromptFormat) else LINE


def resolve_prompt_kind(kind: str, has_examples: bool) -> str:
    """`auto`: few_shot with examples, else plain; otherwise the named kind."""
    return ("few_shot" if has_examples else "plain") if kind == "auto" else kind


def resolve_prompt_format(kind: str, examples: list, system_prompt: str | None, tokenizer=None,
                          step_separator: str = "auto", solution_end: str = "auto") -> PromptFormat:
    """The named kind (`resolve_prompt_kind`); the step format follows the kind unless set
    (`ttstrain.steps.resolve_step_format`)."""
    kind = resolve_prompt_kind(kind, bool(examples))
    steps = resolve_step_format(step_separator, solution_end, kind)
    return PromptFormat(kind, list(examples), system_prompt, tokenizer, steps)


def question_from_prompt(prompt: str) -> str:
    """Inverse of `format_prompt`: the question of its last problem (after any worked examples)."""
    head = prompt.rfind(QUESTION_HEAD)
    if head < 0 or not prompt.endswith(SOLUTION_HEAD):
        raise ValueError("expected a prompt made by ttstrain.prompts.format_prompt "
                         f"('Problem:' ... 'Solution:'), got {prompt[-80:]!r}")
    return prompt[head + len(QUESTION_HEAD):-len(SOLUTION_HEAD)]


def gsm8k_solution_to_steps(solution: str) -> str:
    """A GSM8K worked answer in the step format: calculator annotations dropped, `#### X` boxed."""
    lines = [re.sub(r"<<[^>]*>>", "", line).strip() for line in solution.strip().split("\n")]
    steps = [line for line in lines if line and not line.startswith("####")]
    final = solution.rsplit("####", 1)[-1].strip().replace(",", "")
    return join_steps(steps + [f"The answer is \\boxed{{{final}}}."])


def few_shot_examples(source: str, k: int, seed: int = 0, data_dir=None, levels=None) -> list[tuple[str, str]]:
    """k worked (question, solution) examples in the step format from a training pool.

    source: "gsm8k" (GSM8K train, annotations removed) or "arith" (the default world's train pool,
    from `levels` only when given).
    """
    if k <= 0:
        return []
    if source == "gsm8k":
        pool = load_problems("gsm8k", "train", data_dir=data_dir)
        picks = random.Random(seed).sample(pool, k)
        return [(p["question"], gsm8k_solution_to_steps(p["solution"])) for p in picks]
    if source == "arith":
        pool = load_problems("arith", "train", per_level=max(1, k), seed=seed, levels=levels)
        picks = random.Random(seed).sample(pool, k)
        return [(p["question"], p["solution"]) for p in picks]
    raise ValueError(f"no few-shot pool for {source!r}; use 'gsm8k' or 'arith', or few_shot=0")
