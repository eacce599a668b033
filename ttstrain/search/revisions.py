"""Sequential revisions as a search method: P parallel chains of L attempts from a revision model.

The policy passed in is the *revision model* (`ttstrain train-revision`); each chain's attempt s
is generated from `fit_revision_prompt(question, the chain's previous attempts)` (at most 4, the
oldest dropped first when the model's context would overflow), one generate call per revision
step for every chain of every problem, one random stream per chain. A budget of N generations is
split into L = min(config.revision_length, N) sequential attempts x P = N // L parallel chains
(Snell et al. §6.1; `revision_length=1` is parallel sampling).

The answer is picked from all L x P attempts by `config.revision_selection` (App. I):
    hierarchical  best-of-N weighted within each chain, then across chains (needs a verifier;
                  each attempt is scored after the plain question prompt)
    majority      the most frequent answer over all attempts; the verifier is not called
    weighted      best-of-N weighted over all attempts at once

    from ttstrain.search import run_search
    results = run_search("revisions", revision_model, prm, problems, budget=16, revision_length=4)

Cost record: generations = completions = L * P; prefill counts every revision prompt (they
grow with the chain); verifier tokens are the attempts' scoring. Candidates are in chain-major
order: candidate c * L + s is chain c's attempt s.
"""

from __future__ import annotations

from typing import Sequence

from ttstrain.answers.pooling import AnswerPool
from ttstrain.generation.base import Generator, SamplingParams
from ttstrain.answers.grading import extract_answer
from ttstrain.prompts import question_from_prompt
from ttstrain.revisions.pairs import MAX_CONTEXT_ATTEMPTS, fit_revision_prompt, prompt_token_limit
from ttstrain.search.base import (Candidate, SearchConfig, SearchCost, SearchResult, check_verifier, generate_charged,
                                  score_candidates, verifier_parameters)
from ttstrain.search.selection import CHAIN_SELECTIONS, representative, select_over_chains


def split_budget(n: int, revision_length: int) -> tuple[int, int]:
    """(L, P): L sequential attempts per chain, P chains, L * P <= n."""
    length = max(1, min(revision_length, n))
    return length, max(1, n // length)


def revision_search(generator: Generator, scorer, prompts: Sequence[str], config: SearchConfig) -> list[SearchResult]:
    how = config.revision_selection
    if how not in CHAIN_SELECTIONS:
        raise ValueError(f"revision_selection must be one of {CHAIN_SELECTIONS}, got {how!r}")
    scored = how != "majority"
    if scored:
        check_verifier(scorer)
    length, chains = split_budget(config.n, config.revision_length)
    try:
        questions = [question_from_prompt(p) for p in prompts]
    except ValueError as e:
        raise ValueError(f"revision search: {e}") from None
    costs = [SearchCost(generations=length * chains, rounds=length, policy_parameters=generator.num_parameters,
                        verifier_parameters=verifier_parameters(scorer) if scored else None) for _ in prompts]
    counter = generator.tokenizer
    max_prompt = prompt_token_limit(counter, config.max_new_tokens)
    params = SamplingParams(n=1, temperature=config.temperature, top_p=config.top_p,
                            max_new_tokens=config.max_new_tokens, stop="solution", seed=config.seed,
                            step_format=config.step_format)
    attempts: list[list[list[Candidate]]] = [[[] for _ in range(chains)] for _ in prompts]
    for _ in range(length):
        requests = [(i, fit_revision_prompt(questions[i], [a.text for a in attempts[i][c]], None,
                                            MAX_CONTEXT_ATTEMPTS, max_tokens=max_prompt, counter=counter), c)
                    for i in range(len(prompts)) for c in range(chains)]
        for (i, _, c), res in zip(requests, generate_charged(generator, requests, params, costs)):
            comp = res.completions[0]
            attempts[i][c].append(Candidate(text=comp.text, steps=config.step_format.split(comp.text),
                                            answer=extract_answer(comp.text), finish_reason=comp.finish_reason,
                                            num_tokens=comp.num_tokens))
    flat = [[a for chain in per for a in chain] for per in attempts]
    if scored:
        # the base PRM judges an attempt as a solution of the plain question, in the PRM's prompt format
        score_candidates(scorer, flat, [scorer.prompt_for(q) for q in questions], costs, config.aggregation)
    results = []
    for p, per, row, cost in zip(prompts, attempts, flat, costs):
        pool = AnswerPool()  # one per problem: the chosen key and the candidates' keys come from it
        chosen = select_over_chains([[{"answer": a.answer, "score": a.score} for a in chain] for chain in per], how,
                                    pool=pool)
        results.append(SearchResult(method="revisions", prompt=p, n=config.n, selection=how, candidates=row,
                                    selected=representative(row, pool.keys(a.answer for a in row), chosen,
                                                            by_score=scored), cost=cost))
    return results
