"""What every search method shares: the verifier interface, one config, one result, one cost record.

A search method takes a policy (`ttstrain.generation.Generator`), a verifier (anything with the
`Verifier.score` signature; the PRM scorer of `ttstrain.prm.scoring` or the `ScriptedScorer` of the
tests), the prompts of many problems and one `SearchConfig`, and returns one `SearchResult` per
prompt. Methods run all problems together, so one generate call and one score call per round
serve every problem at once (the wall-time of step-level search hangs on that).

The cost record (`SearchCost`) is the same for every method, and each number is counted, not
estimated from the budget, except `generations`, which is the paper's nominal unit:

    generations       N for best-of-N, majority and beam search at N; N * (k + 1) for lookahead
                      with k rollout steps (Snell et al. §5). The budget a curve is plotted at.
    completions       continuations the policy sampled: solutions (best-of-N), steps (beam
                      search), candidate steps + rollout steps (lookahead).
    generated_tokens  sum of `Completion.num_tokens` over every continuation sampled, pruned
                      beams and lookahead rollouts included (stopping token included).
    prefill_tokens    sum of `PromptResult.prompt_tokens` over every prompt of every generate
                      call: a prompt with n continuations counts once per call (its n
                      continuations share the prefill), a beam prefix re-sent next round counts
                      again. This is what a backend without cross-call prefix caching runs;
                      `generator.stats.prefill_tokens` holds what the backend actually ran.
    verifier_tokens   tokens the verifier read: prompt + steps of every solution it scored, every
                      time it scored it (a beam prefix is re-read each round; lookahead reads the
                      rollout too). Reported by the verifier itself, see `Verifier`.
    policy_flops      2 * policy parameters * (prefill_tokens + generated_tokens); None when the
                      generator does not know its parameter count.
    verifier_flops    2 * verifier parameters * verifier_tokens; 0 when nothing was scored
                      (majority), None when tokens were read but the parameter count is unknown.

Selection of the final answer among candidates is one table, `ttstrain.search.selection.SELECTIONS`
(naive, weighted, majority); solution scores always come from `ttstrain.aggregation.aggregate`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Protocol, Sequence, runtime_checkable

from ttstrain.aggregation import DEFAULT_AGGREGATION, aggregate
from ttstrain.answers.grading import answer_key
from ttstrain.generation.base import Generator, PromptResult, SamplingArguments, SamplingParams
from ttstrain.steps import LINE, StepFormat


# ---------------------------------------------------------------------------------------------
# The verifier interface
# ---------------------------------------------------------------------------------------------


@runtime_checkable
class Verifier(Protocol):
    """A step-level verifier: per-step probabilities in [0, 1] for each (prompt, steps) solution.

    `score(prompts, steps)[i][j]` is the verifier's value of solution i after its step j. Every
    solution sent has at least one step (search never sends an empty one).

    Token accounting (one of these, best first; `check_verifier` refuses a verifier with none):
      last_scored_tokens  list[int], tokens read for each solution of the latest `score` call.
                          Exact per problem even when one call serves many problems.
      scored_tokens       int, running total of tokens read. The delta of a call is exact; its split
                          over the problems of the call is proportional to their text length.
      stats["tokens"]     the same running total under the name `PRMScorer.stats` uses.
    `num_parameters` (int or None) turns tokens into FLOPs; a verifier without it but with a torch
    `model` is counted from the model's parameters.
    """

    def score(self, prompts: list[str], steps: list[list[str]]) -> list[list[float]]:
        ...


def _running_tokens(scorer) -> int | None:
    total = getattr(scorer, "scored_tokens", None)
    if total is None:
        stats = getattr(scorer, "stats", None)
        if isinstance(stats, dict) and "tokens" in stats:
            total = stats["tokens"]
    return None if total is None else int(total)


def check_verifier(scorer) -> None:
    """Refuse a verifier whose cost cannot be counted (budgets that are not what they say)."""
    if scorer is None:
        raise ValueError("this search method needs a verifier (a PRM scorer); got None")
    if not callable(getattr(scorer, "score", None)):
        raise TypeError(f"{type(scorer).__name__} has no score(prompts, steps) method")
    if not hasattr(scorer, "last_scored_tokens") and _running_tokens(scorer) is None:
        raise TypeError(f"{type(scorer).__name__} reports no token count: give it `last_scored_tokens` (per "
                        f"solution of the latest call) or a running `scored_tokens` total")


def verifier_parameters(scorer) -> int | None:
    if scorer is None:
        return None
    n = getattr(scorer, "num_parameters", None)
    if n is None and hasattr(getattr(scorer, "model", None), "parameters"):
        n = sum(p.numel() for p in scorer.model.parameters())
    return None if n is None else int(n)


# ---------------------------------------------------------------------------------------------
# Config, candidates, cost, result
# ---------------------------------------------------------------------------------------------


@dataclass
class SearchSettings(SamplingArguments):
    """The hyperparameters of every method at any budget; `ttstrain search`'s options are these fields.

    beam_width: M, proposals per kept beam; N/M beams are kept each round. An integer, or "sqrt" for
        the largest divisor of N not above sqrt(N) (Snell et al. try M = 4 and M = sqrt(N)).
        M > N is clamped to N; N must be a multiple of M.
    lookahead_steps: k, the temperature-0 rollout depth of lookahead search (beam search is k = 0).
    max_new_tokens: cap on a whole solution's generated tokens (best-of-N: per sample; step
        search: a beam whose steps reach it is finished with finish_reason "length").
    max_step_tokens: cap on one step (step search and rollouts).
    max_rounds: step-search rounds before the search stops (Snell et al.: 40).
    revision_length: L, sequential attempts per chain of revision search (N = L x chains).
    revision_selection: how revision search picks its answer: hierarchical, majority or weighted.
    tail_alpha: the top fraction of a state's rewards SLG search fits its best-of-N prediction to.
    slg_prefix_tokens: SLG states are root solutions cut to their first step (0) or to their first
        this many tokens.
    """

    beam_width: str = field(default="4", metadata={"help": "Beam width M (an integer, or 'sqrt' for M = sqrt(N)); dvts: N/M subtrees of M proposals."})
    lookahead_steps: int = field(default=3, metadata={"help": "k, temperature-0 rollout steps of lookahead search (dvts has no lookahead: 0, and never reads this)."})
    aggregation: str = field(default=DEFAULT_AGGREGATION, metadata={"help": "Step-score aggregation (ttstrain.aggregation)."})
    max_step_tokens: int = field(default=128, metadata={"help": "Cap on one step's tokens (beam search, lookahead)."})
    max_rounds: int = field(default=40, metadata={"help": "Step-search rounds before stopping (paper: 40)."})
    revision_length: int = field(default=4, metadata={"help": "L, attempts per chain of `revisions` (run with --model_name_or_path <revision model>)."})
    revision_selection: str = field(default="hierarchical", metadata={"help": "Answer selection of `revisions`: hierarchical, majority or weighted."})
    tail_alpha: float = field(default=0.2, metadata={"help": "SLG: top fraction of a state's rewards its best-of-N prediction is fitted to."})
    slg_prefix_tokens: int = field(default=0, metadata={"help": "SLG: cut root solutions to their first step (0) or to their first this many tokens to make the candidate states."})
    seed: int = field(default=0, metadata={"help": "Seed of sampling, few-shot selection and resamplings."})


@dataclass
class SearchConfig(SearchSettings):
    """Every hyperparameter of every method at budget `n`; a method reads the ones it uses
    (`SearchSettings` says what each means).

    n: the budget N (samples for best-of-N, beams for beam search and lookahead).
    step_format: how solutions are cut into steps and end (`ttstrain.steps`); the search stage sets
        the policy's prompt format's, so steps are searched where the policy ends them.
    """

    n: int = 16
    step_format: StepFormat = LINE

    def __post_init__(self):
        if self.n < 1:
            raise ValueError(f"budget n must be >= 1, got {self.n}")
        aggregate([0.5], self.aggregation)  # fails early on an unknown aggregation
        if self.lookahead_steps < 0 or self.max_rounds < 1 or self.revision_length < 1:
            raise ValueError("lookahead_steps must be >= 0, max_rounds >= 1 and revision_length >= 1")

    def width(self) -> int:
        """M for this N (see the class docstring)."""
        if str(self.beam_width).strip() == "sqrt":
            m = max(d for d in range(1, math.isqrt(self.n) + 1) if self.n % d == 0)
        else:
            m = min(int(self.beam_width), self.n)
        if m < 1 or self.n % m:
            raise ValueError(f"beam width {self.beam_width!r} does not divide the budget n={self.n}")
        return m


@dataclass
class Candidate:
    """One final solution a method considered.

    step_scores: the verifier's value after each step (None when nothing was scored: majority).
    score: `aggregate(step_scores, config.aggregation)` (an empty solution scores 0), None if unscored.
    finished: the policy ended the solution (end-of-sequence, blank line, or a length cap); False for
        a beam padded in when the search stopped at max_rounds.
    num_tokens: generated tokens of this solution's own text (its steps' continuations).
    verifier_tokens: tokens the verifier read in the call that produced `step_scores`.
    """

    text: str
    steps: list[str]
    answer: str | None
    finish_reason: str
    finished: bool = True
    step_scores: list[float] | None = None
    score: float | None = None
    num_tokens: int = 0
    verifier_tokens: int = 0

    @property
    def key(self):
        """The answer's normalised text; votes pool answers by equivalence per problem instead
        (`ttstrain.search.selection`)."""
        return answer_key(self.answer)


@dataclass
class SearchCost:
    """One cost record for every method (definitions in the module docstring)."""

    generations: int = 0
    completions: int = 0
    rounds: int = 0
    generated_tokens: int = 0
    prefill_tokens: int = 0
    verifier_tokens: int = 0
    policy_parameters: int | None = None
    verifier_parameters: int | None = None

    @property
    def policy_flops(self) -> float | None:
        if self.policy_parameters is None:
            return None
        return 2.0 * self.policy_parameters * (self.prefill_tokens + self.generated_tokens)

    @property
    def verifier_flops(self) -> float | None:
        if self.verifier_tokens == 0:
            return 0.0
        if self.verifier_parameters is None:
            return None
        return 2.0 * self.verifier_parameters * self.verifier_tokens

    @property
    def total_flops(self) -> float | None:
        p, v = self.policy_flops, self.verifier_flops
        return None if p is None or v is None else p + v

    def to_dict(self) -> dict:
        return {**asdict(self), "policy_flops": self.policy_flops, "verifier_flops": self.verifier_flops,
                "total_flops": self.total_flops}


@dataclass
class SearchResult:
    method: str
    prompt: str
    n: int
    selection: str
    candidates: list[Candidate]
    selected: int | None  # index into candidates; None when no candidate has an answer
    cost: SearchCost = field(default_factory=SearchCost)

    @property
    def answer(self) -> str | None:
        return None if self.selected is None else self.candidates[self.selected].answer

    @property
    def text(self) -> str | None:
        return None if self.selected is None else self.candidates[self.selected].text


# one signature for every method: (policy, verifier, prompts, config) -> one result per prompt
SearchMethod = Callable[[Generator, "Verifier | None", Sequence[str], SearchConfig], "list[SearchResult]"]


# ---------------------------------------------------------------------------------------------
# Batched calls that charge each problem its own share
# ---------------------------------------------------------------------------------------------


def generate_charged(generator: Generator, requests: Sequence[tuple[int, str, int]], params: SamplingParams,
                     costs: Sequence[SearchCost]) -> list[PromptResult]:
    """One generate call for requests (problem index, prompt text, stream); each problem's cost
    gets its prompts' prefill, its continuations and their tokens."""
    if not requests:
        return []
    streams = [s for _, _, s in requests]
    kwargs = {"streams": streams} if any(streams) else {}
    results = generator.generate([p for _, p, _ in requests], params, **kwargs)
    if len(results) != len(requests):
        raise RuntimeError(f"generator returned {len(results)} results for {len(requests)} prompts")
    for (pi, _, _), res in zip(requests, results):
        cost = costs[pi]
        cost.prefill_tokens += res.prompt_tokens
        cost.generated_tokens += sum(c.num_tokens for c in res.completions)
        cost.completions += len(res.completions)
    return results


def score_candidates(scorer, rows: Sequence[Sequence[Candidate]], prompts: Sequence[str],
                     costs: Sequence[SearchCost], aggregation: str) -> None:
    """Score every candidate with steps in one call (row i after prompts[i]), charging row i's cost;
    sets each candidate's step_scores, verifier_tokens and aggregated score (an empty one scores [])."""
    items = [(i, prompts[i], c.steps) for i, row in enumerate(rows) for c in row if c.steps]
    scores, tokens = score_charged(scorer, items, costs)
    it = iter(zip(scores, tokens))
    for row in rows:
        for c in row:
            c.step_scores, c.verifier_tokens = next(it) if c.steps else ([], 0)
            c.score = aggregate(c.step_scores, aggregation)


def score_charged(scorer, items: Sequence[tuple[int, str, list[str]]],
                  costs: Sequence[SearchCost]) -> tuple[list[list[float]], list[int]]:
    """One score call for items (problem index, prompt, steps); returns the step scores and the
    tokens read per item, and charges each problem's cost its tokens."""
    if not items:
        return [], []
    prompts, steps = [p for _, p, _ in items], [list(s) for _, _, s in items]
    if any(not s for s in steps):
        raise ValueError("a solution with no step cannot be scored")
    before = _running_tokens(scorer)
    scores = scorer.score(prompts, steps)
    if len(scores) != len(items) or any(len(sc) != len(st) for sc, st in zip(scores, steps)):
        raise RuntimeError("verifier returned scores that do not match the solutions' steps")
    for sc in scores:
        for x in sc:
            if not 0.0 <= x <= 1.0:
                raise RuntimeError(f"verifier returned {x}, not a probability in [0, 1]")
    per = getattr(scorer, "last_scored_tokens", None)
    if per is not None and len(per) == len(items):
        tokens = [int(t) for t in per]
    else:
        after = _running_tokens(scorer)
        if before is None or after is None:
            raise TypeError(f"{type(scorer).__name__} reports no token count (see Verifier)")
        tokens = _split(after - before, [len(p) + sum(map(len, s)) + len(s) - 1 for p, s in zip(prompts, steps)])
    for (pi, _, _), t in zip(items, tokens):
        costs[pi].verifier_tokens += t
    return [list(map(float, sc)) for sc in scores], tokens


def _split(total: int, weights: Sequence[int]) -> list[int]:
    """`total` split in proportion to `weights` (largest remainder), summing exactly to `total`."""
    wsum = sum(weights) or 1
    raw = [total * w / wsum for w in weights]
    out = [int(math.floor(r)) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: out[i] - raw[i])[: total - sum(out)]:
        out[i] += 1
    return out
