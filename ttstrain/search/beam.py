"""PRM-guided beam search and lookahead search (Snell et al. §5.2), batched over problems.

Beam search with N beams and beam width M, for every problem at once:

  round 1   sample N first steps from the prompt (stop="step").
  round r   score every new partial solution with the verifier (aggregated with
            `config.aggregation`, "last" by default); solutions that ended (end-of-sequence,
            blank line, or a length cap) move to the finished pool and are never expanded; of the
            unfinished ones keep the N/M best and sample M next steps from each: N new steps.
  stop      when a problem's finished pool holds N solutions, no unfinished solution is left, or
            after `max_rounds` (40) rounds. The final candidates are the N best finished ones, padded
            with the best unfinished ones if fewer than N finished; the answer is picked from them
            by best-of-N weighted selection, as in the paper.

Each round is ONE generate call (every kept prefix of every problem, n=M) and ONE score call
(every new partial solution of every problem), so a round costs about one step of best-of-N's
wall time. Two kept prefixes with the same text (beams that agree so far) draw different
continuations through the generator's `streams`.

Lookahead search is beam search whose candidate steps are valued differently: from each new,
unfinished candidate the policy rolls out up to k further steps at temperature 0 (stopping early
at the end of the solution), and the verifier's aggregated score of candidate + rollout is the
candidate's search score. The rollout is discarded, the candidate step kept. Each rollout depth is
one generate call (n=1) over every problem; the score call reads candidate + rollout. Its cost is
N * (k + 1) generations; the rollouts' tokens are counted in `generated_tokens`, their prefixes in
`prefill_tokens`, and the verifier's reading of them in `verifier_tokens`.

Departures: a step whose text is empty after stripping ends the solution (as a blank line does;
with paragraph steps, a blank paragraph right after a step); steps are kept stripped, as the step
format's `split` keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

from ttstrain.aggregation import aggregate
from ttstrain.generation.base import Generator, SamplingParams
from ttstrain.answers.grading import extract_answer
from ttstrain.search.base import (Candidate, SearchConfig, SearchCost, SearchResult, check_verifier, generate_charged,
                                  score_charged, verifier_parameters)
from ttstrain.search.selection import select
from ttstrain.steps import LINE, StepFormat


@dataclass
class Beam:
    steps: list[str]
    num_tokens: int = 0
    finished: bool = False
    finish_reason: str = "step_end"
    rollout: list[str] = field(default_factory=list)
    rollout_open: bool = True
    step_scores: list[float] | None = None
    search_score: float = 0.0
    verifier_tokens: int = 0


def step_search(generator: Generator, scorer, prompts: Sequence[str], config: SearchConfig,
                lookahead_steps: int = 0, method: str = "beam_search") -> list[SearchResult]:
    """Beam search (lookahead_steps=0) or lookahead search (k >= 1) over all prompts together."""
    check_verifier(scorer)
    n, m = config.n, config.width()
    keep, k = n // m, lookahead_steps
    agg = config.aggregation
    costs = [SearchCost(generations=n * (k + 1), policy_parameters=generator.num_parameters,
                        verifier_parameters=verifier_parameters(scorer)) for _ in prompts]
    step_params = SamplingParams(n=m, temperature=config.temperature, top_p=config.top_p,
                                 max_new_tokens=config.max_step_tokens, stop="step", seed=config.seed,
                                 step_format=config.step_format)
    rollout_params = replace(step_params, n=1, temperature=0.0, top_p=1.0)
    fmt = config.step_format
    live = list(range(len(prompts)))
    active: dict[int, list[Beam]] = {i: [Beam(steps=[])] for i in live}  # prefixes to expand this round
    finished: dict[int, list[Beam]] = {i: [] for i in live}
    leftover: dict[int, list[Beam]] = {i: [] for i in live}

    for rnd in range(1, config.max_rounds + 1):
        if not live:
            break
        # 1. expand: one call, every kept prefix of every live problem (round 1: the prompt, n=N)
        params = replace(step_params, n=n) if rnd == 1 else step_params
        requests, parents = [], []
        for i in live:
            copies: dict[str, int] = {}
            for beam in active[i]:
                text = prompts[i] + fmt.prefix(beam.steps, len(beam.steps))
                requests.append((i, text, copies.get(text, 0)))  # equal prefixes get distinct streams
                copies[text] = copies.get(text, 0) + 1
                parents.append(beam)
        new: dict[int, list[Beam]] = {i: [] for i in live}
        for (i, _, _), parent, res in zip(requests, parents, generate_charged(generator, requests, params, costs)):
            for c in res.completions:
                new[i].append(child_beam(parent, c, config.max_new_tokens))
        for i in live:
            costs[i].rounds = rnd
        # 2. lookahead: roll unfinished candidates out k steps at temperature 0, one call per depth
        open_ = [(i, b) for i in live for b in new[i] if not b.finished]
        for _ in range(k):
            open_ = [(i, b) for i, b in open_ if b.rollout_open]
            if not open_:
                break
            reqs = [(i, prompts[i] + fmt.prefix(b.steps + b.rollout, len(b.steps) + len(b.rollout)), 0)
                    for i, b in open_]
            for (_, b), res in zip(open_, generate_charged(generator, reqs, rollout_params, costs)):
                c = res.completions[0]
                text = c.text.strip()
                if text:
                    b.rollout.append(text)
                b.rollout_open = bool(text) and c.finish_reason == "step_end"
        # 3. score: one call, every new solution (with its rollout) of every live problem
        items, owners = [], []
        for i in live:
            for b in new[i]:
                path = b.steps + b.rollout
                if path:
                    items.append((i, prompts[i], path))
                    owners.append(b)
                else:
                    b.step_scores = []
        scores, tokens = score_charged(scorer, items, costs)
        for b, sc, t in zip(owners, scores, tokens):
            b.step_scores, b.verifier_tokens = sc[: len(b.steps)], t
            b.search_score = aggregate(sc, agg)
        # 4. select: finished beams leave the search, the N/M best unfinished ones are expanded
        still = []
        for i in live:
            finished[i] += [b for b in new[i] if b.finished]
            unfinished = [b for b in new[i] if not b.finished]
            if len(finished[i]) >= n or not unfinished or rnd == config.max_rounds:
                leftover[i] = unfinished
                continue
            active[i] = top_beams(unfinished, keep, lambda b: b.search_score)
            still.append(i)
        live = still

    out = []
    for i, prompt in enumerate(prompts):
        done = finished[i]
        if len(done) > n:
            done = top_beams(done, n, lambda b: aggregate(b.step_scores, agg), keep_order=True)
        final = done + top_beams(leftover[i], n - len(done), lambda b: b.search_score)
        cands = [beam_candidate(b, agg, fmt) for b in final]
        out.append(SearchResult(method=method, prompt=prompt, n=n, selection="weighted", candidates=cands,
                                selected=select(cands, "weighted"), cost=costs[i]))
    return out


def child_beam(parent: Beam, c, max_new_tokens: int) -> Beam:
    text = c.text.strip()
    steps = parent.steps + ([text] if text else [])
    tokens = parent.num_tokens + c.num_tokens
    if c.finished_solution or c.finish_reason == "length":
        return Beam(steps, tokens, finished=True, finish_reason=c.finish_reason)
    if not text:  # an empty step: the solution is over
        return Beam(steps, tokens, finished=True, finish_reason="solution_end")
    if tokens >= max_new_tokens:
        return Beam(steps, tokens, finished=True, finish_reason="length")
    return Beam(steps, tokens)


def top_beams(beams: list[Beam], count: int, key, keep_order: bool = False) -> list[Beam]:
    """The `count` best by key (ties: earlier first); in their original order if keep_order."""
    ranked = sorted(range(len(beams)), key=lambda j: (-key(beams[j]), j))[: max(count, 0)]
    return [beams[j] for j in (sorted(ranked) if keep_order else ranked)]


def beam_candidate(b: Beam, agg: str, fmt: StepFormat = LINE) -> Candidate:
    text = fmt.join(b.steps)
    return Candidate(text=text, steps=list(b.steps), answer=extract_answer(text), finish_reason=b.finish_reason,
                     finished=b.finished, step_scores=list(b.step_scores), score=aggregate(b.step_scores, agg),
                     num_tokens=b.num_tokens, verifier_tokens=b.verifier_tokens)


def beam_search(generator, scorer, prompts, config):
    return step_search(generator, scorer, prompts, config, lookahead_steps=0, method="beam_search")


def lookahead_search(generator, scorer, prompts, config):
    if config.lookahead_steps < 1:
        raise ValueError("lookahead search needs lookahead_steps >= 1 (k = 0 is beam search)")
    return step_search(generator, scorer, prompts, config, lookahead_steps=config.lookahead_steps, method="lookahead")
