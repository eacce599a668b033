"""Best-of-N and majority vote: N full solutions per problem, one verifier pass, one selection.

All problems' samples come from ONE generate call (stop="solution", n=N) and are scored in ONE
score call. The final answer is picked by a selection from `ttstrain.search.selection.SELECTIONS`:

    weighted  Snell et al.'s "best-of-N weighted": sum the aggregated scores of the samples that
              reach each answer (answers pooled by equivalence, `ttstrain.answers.pooling`), take the largest.
    naive     the sample with the highest aggregated score.
    majority  the most frequent answer; the verifier is not called and costs nothing.

Curves over N come from nested subsets of one run at the largest N (`subset_result`): resampling
r takes a permutation of the N samples and budget b uses its first b, so every budget of a
resampling reuses the samples of the smaller ones (search-and-learn's scheme). A subset's cost is
what a run at that N would have cost: its samples' tokens, its samples' verifier tokens, and the
prompt prefilled once.

    from ttstrain.search import run_search
    results = run_search("best_of_n_weighted", generator, scorer, problems, budget=16)
"""

from __future__ import annotations

import random
from typing import Sequence

from ttstrain.answers.pooling import AnswerPool
from ttstrain.generation.base import Generator, SamplingParams
from ttstrain.answers.grading import extract_answer
from ttstrain.search.base import (Candidate, SearchConfig, SearchCost, SearchResult, check_verifier, generate_charged,
                                  score_candidates, verifier_parameters)
from ttstrain.search.selection import select


def best_of_n(generator: Generator, scorer, prompts: Sequence[str], config: SearchConfig,
              selection: str = "weighted", method: str | None = None) -> list[SearchResult]:
    """N samples per prompt, scored by the verifier unless selection="majority"."""
    scored = selection != "majority"
    if scored:
        check_verifier(scorer)
    n = config.n
    costs = [SearchCost(generations=n, rounds=1, policy_parameters=generator.num_parameters,
                        verifier_parameters=verifier_parameters(scorer) if scored else None) for _ in prompts]
    params = SamplingParams(n=n, temperature=config.temperature, top_p=config.top_p,
                            max_new_tokens=config.max_new_tokens, stop="solution", seed=config.seed,
                            step_format=config.step_format)
    results = generate_charged(generator, [(i, p, 0) for i, p in enumerate(prompts)], params, costs)
    cands: list[list[Candidate]] = []
    for res in results:
        row = []
        for c in res.completions:
            steps = config.step_format.split(c.text)
            row.append(Candidate(text=c.text, steps=steps, answer=extract_answer(c.text), finish_reason=c.finish_reason,
                                 finished=True, num_tokens=c.num_tokens))
        cands.append(row)
    if scored:
        score_candidates(scorer, cands, prompts, costs, config.aggregation)
    name = method or {"weighted": "best_of_n_weighted", "naive": "best_of_n_naive"}.get(selection, selection)
    return [SearchResult(method=name, prompt=p, n=n, selection=selection, candidates=row,
                         selected=select(row, selection), cost=cost) for p, row, cost in zip(prompts, cands, costs)]


def best_of_n_weighted(generator, scorer, prompts, config):
    return best_of_n(generator, scorer, prompts, config, selection="weighted")


def best_of_n_naive(generator, scorer, prompts, config):
    return best_of_n(generator, scorer, prompts, config, selection="naive")


def majority(generator, scorer, prompts, config):
    return best_of_n(generator, None, prompts, config, selection="majority")


# ---------------------------------------------------------------------------------------------
# Nested subsets of one run
# ---------------------------------------------------------------------------------------------


def nested_orders(n: int, resamples: int, seed: int | str) -> list[list[int]]:
    """`resamples` permutations of range(n); budget b of resampling r uses order[r][:b].

    The first order is the identity, so resampling 0 at budget b is exactly what a run at N=b
    with the same seed would have sampled (continuation streams 0..b-1).
    """
    rng = random.Random(str(seed))
    orders = [list(range(n))]
    for _ in range(resamples - 1):
        orders.append(rng.sample(range(n), n))
    return orders


def subset_result(result: SearchResult, indices: Sequence[int], selection: str,
                  pool: AnswerPool | None = None) -> SearchResult:
    """The result best-of-N with `selection` would have given had it sampled only `indices`; `pool`: the
    problem's answer pool, shared by all its subsets so no pair of answers is graded twice."""
    cands = [result.candidates[i] for i in indices]
    full = result.cost
    scored = selection != "majority"
    cost = SearchCost(generations=len(cands), completions=len(cands), rounds=1,
                      generated_tokens=sum(c.num_tokens for c in cands), prefill_tokens=full.prefill_tokens,
                      verifier_tokens=sum(c.verifier_tokens for c in cands) if scored else 0,
                      policy_parameters=full.policy_parameters,
                      verifier_parameters=full.verifier_parameters if scored else None)
    name = {"weighted": "best_of_n_weighted", "naive": "best_of_n_naive"}.get(selection, selection)
    return SearchResult(method=name, prompt=result.prompt, n=len(cands), selection=selection, candidates=cands,
                        selected=select(cands, selection, pool), cost=cost)
