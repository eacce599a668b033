"""Diverse verifier tree search (DVTS, Hugging Face search-and-learn), batched over problems.

At budget N and width M the budget is split into S = N // M independent subtrees:

  round r   every subtree that has not ended proposes M next steps from its current prefix
            (subtree s always samples with stream s, so subtrees never share a draw, even from
            the same prompt in round 1); the verifier scores each proposal (aggregated with
            `config.aggregation`, "last" by default) and the subtree keeps the best one, greedily.
  stop      a subtree ends when its kept proposal ends the solution (end-of-sequence, blank line,
            a length cap); the search stops when every subtree has ended or after `max_rounds`.
  answer    weighted best-of-N over the S subtrees' solutions, one candidate per subtree. A
            subtree stopped by the round cap is returned with `finished=False` and
            `finish_reason="max_rounds"`, never passed off as a finished solution.

Each round is ONE generate call (every open subtree of every problem, n=M) and ONE score call.
Budget: S * M <= N step proposals per round, as beam search spends N; `generations` is S * M
(N when M divides N; with N < M, one subtree of width N). There is no lookahead: DVTS here
never reads `config.lookahead_steps` (lookahead search's k, whose non-zero default would
otherwise leak in: a known reproduction trap of the reference implementation).

    from ttstrain.search import run_search
    results = run_search("dvts", generator, prm, problems, budget=16, beam_width=4)   # 4 subtrees
"""

from __future__ import annotations

import math
from typing import Sequence

from ttstrain.aggregation import aggregate
from ttstrain.generation.base import Generator, SamplingParams
from ttstrain.search.base import (SearchConfig, SearchCost, SearchResult, check_verifier, generate_charged,
                                  score_charged, verifier_parameters)
from ttstrain.search.selection import select
from ttstrain.search.beam import Beam, beam_candidate, child_beam, top_beams


def dvts_shape(config: SearchConfig) -> tuple[int, int]:
    """(subtrees S, width M) at this budget: M from beam_width (an int or "sqrt"), at most N; S = N // M."""
    n = config.n
    m = math.isqrt(n) if str(config.beam_width).strip() == "sqrt" else int(config.beam_width)
    m = max(1, min(m, n))
    return n // m, m


def dvts(generator: Generator, scorer, prompts: Sequence[str], config: SearchConfig) -> list[SearchResult]:
    check_verifier(scorer)
    subtrees, m = dvts_shape(config)
    agg = config.aggregation
    costs = [SearchCost(generations=subtrees * m, policy_parameters=generator.num_parameters,
                        verifier_parameters=verifier_parameters(scorer)) for _ in prompts]
    params = SamplingParams(n=m, temperature=config.temperature, top_p=config.top_p,
                            max_new_tokens=config.max_step_tokens, stop="step", seed=config.seed,
                            step_format=config.step_format)
    fmt = config.step_format
    nodes = {(i, s): Beam(steps=[]) for i in range(len(prompts)) for s in range(subtrees)}
    open_ = list(nodes)
    for rnd in range(1, config.max_rounds + 1):
        if not open_:
            break
        requests = [(i, prompts[i] + fmt.prefix(nodes[i, s].steps, len(nodes[i, s].steps)), s) for i, s in open_]
        proposals = {key: [child_beam(nodes[key], c, config.max_new_tokens) for c in res.completions]
                     for key, res in zip(open_, generate_charged(generator, requests, params, costs))}
        items, owners = [], []
        for (i, s), children in proposals.items():
            for b in children:
                if b.steps:
                    items.append((i, prompts[i], b.steps))
                    owners.append(b)
                else:
                    b.step_scores, b.search_score = [], aggregate([], agg)
        scores, tokens = score_charged(scorer, items, costs)
        for b, sc, t in zip(owners, scores, tokens):
            b.step_scores, b.verifier_tokens, b.search_score = sc, t, aggregate(sc, agg)
        still = []
        for key, children in proposals.items():
            nodes[key] = top_beams(children, 1, lambda b: b.search_score)[0]
            costs[key[0]].rounds = rnd
            if not nodes[key].finished:
                still.append(key)
        open_ = still
    for key in open_:  # stopped by the round cap
        nodes[key].finish_reason = "max_rounds"
    out = []
    for i, prompt in enumerate(prompts):
        cands = [beam_candidate(nodes[i, s], agg, fmt) for s in range(subtrees)]
        out.append(SearchResult(method="dvts", prompt=prompt, n=config.n, selection="weighted", candidates=cands,
                                selected=select(cands, "weighted"), cost=costs[i]))
    return out
