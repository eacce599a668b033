"""Monte Carlo step labels (Math-Shepherd; Snell et al. Appendix D) for one chunk of problems.

For each problem: sample `num_samples` solutions, drop the ones with no parsable final answer,
split the rest into steps with the step contract, and from every step prefix (problem + steps
1..i, i < S) run `num_rollouts` completions with the same policy and prompt. Step i's *soft*
label is the fraction of its rollouts that reach the gold answer; its *hard* label (Math-Shepherd's
"hard estimation") is 1 if any rollout does. The last step's label is the sample's own
correctness (its prefix is the whole solution, so there is nothing left to roll out; it is
recorded with 0 rollouts).

Speed: all prefixes of a chunk (across samples and problems) go to the backend in one call, each
prefix once even when several samples share it (identical prefixes would draw identical rollouts
anyway, since randomness is keyed by the prompt text), and the backend prefills each prefix once
for all its rollouts.

`mode="binary_search"` (OmegaPRM style) spends fewer rollouts: a correct sample's steps are all
labelled 1, and for a wrong one a binary search over prefixes finds the first step whose Monte
Carlo value is 0 (assuming values fall monotonically); steps before it get 1, it gets 0 and
later steps are cut. Labels are then hard (the soft values are not all measured), and the chunk
counters report the rollouts spent next to what the full sweep would have spent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ttstrain.generation.base import Generator, SamplingArguments, SamplingParams
from ttstrain.answers.grading import extract_answer, is_equivalent, normalize_answer
from ttstrain.prompts import PromptFormat, format_prompt, step_format_of
from ttstrain.steps import StepFormat

LABEL_MODES = ("full", "binary_search")


@dataclass
class MCSettings(SamplingArguments):
    """Every setting of Monte Carlo labelling; `ttstrain label-mc`'s options are these fields."""

    num_samples: int = field(default=16, metadata={"help": "Solutions sampled per problem (paper: 16)."})
    num_rollouts: int = field(default=16, metadata={"help": "Monte Carlo rollouts per step prefix (paper: 16)."})
    rollout_temperature: float = field(default=1.0, metadata={"help": "Temperature of the rollouts (temperature: of the sampled solutions)."})
    max_steps_per_sample: int | None = field(default=None, metadata={"help": "Drop samples with more steps (counted)."})
    mode: str = field(default="full", metadata={"help": "full (every prefix) or binary_search (OmegaPRM-style, hard labels)."})
    seed: int = field(default=0, metadata={"help": "Seed of sampling and rollouts."})

    def __post_init__(self):
        if self.mode not in LABEL_MODES:
            raise ValueError(f"mode must be one of {LABEL_MODES}, got {self.mode!r}")
        if self.num_samples < 1 or self.num_rollouts < 1:
            raise ValueError("num_samples and num_rollouts must be >= 1")


def gold_is_usable(gold) -> bool:
    return isinstance(gold, str) and bool(gold.strip()) and bool(normalize_answer(gold))


def rollout_correct(prefix: str, continuation: str, gold: str) -> bool:
    return is_equivalent(extract_answer(prefix + continuation), gold)


class _Counters(dict):
    def add(self, key: str, value: int = 1) -> None:
        self[key] = self.get(key, 0) + value


def label_chunk(generator: Generator, problems: Sequence[dict], settings: MCSettings,
                few_shot: "list[tuple[str, str]] | PromptFormat | None" = None) -> tuple[list[dict], dict]:
    """Rows in TRL's stepwise-supervision schema (plus provenance) and the chunk's counters; steps are
    cut, and rollouts start after each step prefix, in the prompt format's step format."""
    counters = _Counters()
    fmt = step_format_of(few_shot)
    stats0 = (generator.stats.generated_tokens, generator.stats.prefill_tokens, generator.stats.prompt_tokens)
    usable = []
    for p in problems:
        counters.add("problems")
        if gold_is_usable(p.get("answer")):
            usable.append(p)
        else:
            counters.add("problems_skipped_bad_gold")
    prompts = [format_prompt(p["question"], few_shot) for p in usable]

    sample_params = SamplingParams(n=settings.num_samples, temperature=settings.temperature, top_p=settings.top_p,
                                   max_new_tokens=settings.max_new_tokens, stop="solution", seed=settings.seed,
                                   step_format=fmt)
    sampled = generator.generate(prompts, sample_params) if prompts else []
    kept = []  # (problem, prompt, sample_index, steps, correct)
    for p, prompt, res in zip(usable, prompts, sampled):
        for j, c in enumerate(res.completions):
            counters.add("samples")
            steps = fmt.split(c.text)
            if not steps or extract_answer(fmt.join(steps)) is None:
                counters.add("samples_dropped_no_answer")
                continue
            if settings.max_steps_per_sample and len(steps) > settings.max_steps_per_sample:
                counters.add("samples_dropped_too_many_steps")
                continue
            kept.append((p, prompt, j, steps, is_equivalent(extract_answer(fmt.join(steps)), p["answer"])))
    counters.add("samples_kept", len(kept))
    counters.add("samples_correct", sum(k[4] for k in kept))
    full_sweep = sum(len(steps) - 1 for *_, steps, _ in kept) * settings.num_rollouts
    counters.add("rollouts_full_sweep", full_sweep)

    rollout_params = SamplingParams(n=settings.num_rollouts, temperature=settings.rollout_temperature,
                                    top_p=settings.top_p, max_new_tokens=settings.max_new_tokens, stop="solution",
                                    seed=settings.seed + 1, step_format=fmt)
    value_cache: dict[str, int] = {}

    def values(prefix_prompts: list[str], golds: list[str]) -> list[int]:
        """Correct rollouts out of num_rollouts for each prefix prompt; each distinct prefix runs once."""
        todo = list(dict.fromkeys(pp for pp in prefix_prompts if pp not in value_cache))
        if todo:
            gold_of = dict(zip(prefix_prompts, golds))
            for pp, res in zip(todo, generator.generate(todo, rollout_params)):
                value_cache[pp] = sum(rollout_correct(pp, c.text, gold_of[pp]) for c in res.completions)
                counters.add("rollouts", len(res.completions))
                counters.add("distinct_prefixes")
        return [value_cache[pp] for pp in prefix_prompts]

    if settings.mode == "full":
        rows = _label_full(kept, settings, values, fmt)
    else:
        rows = _label_binary_search(kept, settings, values, fmt)
    counters.add("steps_labelled", sum(len(r["labels"]) for r in rows))
    counters.add("generated_tokens", generator.stats.generated_tokens - stats0[0])
    counters.add("prefill_tokens", generator.stats.prefill_tokens - stats0[1])
    counters.add("prompt_tokens_requested", generator.stats.prompt_tokens - stats0[2])
    return rows, dict(counters)


def _row(p: dict, prompt: str, j: int, steps: list[str], correct: bool, labels: list[float],
         hard: list[float], rollouts: list[int]) -> dict:
    return {"prompt": prompt, "completions": steps, "labels": labels, "problem_id": p["id"], "sample_index": j,
            "final_correct": bool(correct), "rollouts_per_step": rollouts, "hard_labels": hard,
            "question": p["question"], "gold": p["answer"], "level": p.get("level")}


def _label_full(kept, settings: MCSettings, values, fmt: StepFormat) -> list[dict]:
    prefix_prompts, golds = [], []
    for p, prompt, _, steps, _ in kept:
        for i in range(1, len(steps)):
            prefix_prompts.append(prompt + fmt.prefix(steps, i))
            golds.append(p["answer"])
    counts = iter(values(prefix_prompts, golds))
    k = settings.num_rollouts
    rows = []
    for p, prompt, j, steps, correct in kept:
        c = [next(counts) for _ in range(len(steps) - 1)]
        soft = [x / k for x in c] + [float(correct)]
        hard = [1.0 if x > 0 else 0.0 for x in c] + [float(correct)]
        rows.append(_row(p, prompt, j, steps, correct, soft, hard, [k] * len(c) + [0]))
    return rows


def _label_binary_search(kept, settings: MCSettings, values, fmt: StepFormat) -> list[dict]:
    k = settings.num_rollouts
    # per sample: [lo, hi] over 1-based step indices; the first zero lies in [lo, hi]; hi = S is known zero
    search = {idx: [1, len(steps)] for idx, (_, _, _, steps, correct) in enumerate(kept) if not correct}
    measured: dict[int, set[int]] = {idx: set() for idx in search}
    while True:
        active = [idx for idx, (lo, hi) in search.items() if lo < hi]
        if not active:
            break
        mids = {idx: (search[idx][0] + search[idx][1]) // 2 for idx in active}
        counts = values([kept[idx][1] + fmt.prefix(kept[idx][3], mids[idx]) for idx in active],
                        [kept[idx][0]["answer"] for idx in active])
        for idx, c in zip(active, counts):
            measured[idx].add(mids[idx])
            if c == 0:
                search[idx][1] = mids[idx]
            else:
                search[idx][0] = mids[idx] + 1
    rows = []
    for idx, (p, prompt, j, steps, correct) in enumerate(kept):
        if correct:
            labels = [1.0] * len(steps)
            rollouts = [0] * len(steps)
            rows.append(_row(p, prompt, j, steps, True, labels, labels, rollouts))
            continue
        first_zero = search[idx][0]  # 1-based
        labels = [1.0] * (first_zero - 1) + [0.0]
        rollouts = [k if (i + 1) in measured[idx] else 0 for i in range(first_zero)]
        rows.append(_row(p, prompt, j, steps[:first_zero], False, labels, labels, rollouts))
    return rows


__all__ = ["LABEL_MODES", "MCSettings", "gold_is_usable", "label_chunk"]
