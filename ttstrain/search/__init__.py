"""Test-time search over a policy with a verifier: one signature, one table, one cost record.

Every method is `fn(generator, scorer, prompts, config) -> list[SearchResult]` and is looked up
by name in `SEARCH_METHODS`; all of a call's problems run together (one generate call and one
score call per round across problems). `run_search` formats the problems' prompts and builds the
config from keyword hyperparameters:

    from ttstrain.search import run_search
    results = run_search("beam_search", generator, prm, problems, budget=16, beam_width=4)
    results[0].answer, results[0].cost.generated_tokens, results[0].cost.to_dict()

Methods (Snell et al. 2024, §5):
    best_of_n_weighted  N samples, answer with the largest summed PRM score       generations N
    best_of_n_naive     N samples, the single highest-scored sample                generations N
    majority            N samples, most frequent answer, no verifier               generations N
    beam_search         N beams, width M, PRM-pruned step by step                  generations N
    lookahead           beam search valued by k-step temperature-0 rollouts        generations N(k+1)
    dvts                N/M independent subtrees, each keeping its best of M next   generations N
                        steps per round (diverse verifier tree search; no lookahead)
    slg                 m root samples, K first-step states x m, the rest to the    generations <= N
                        state with the best reward-tail prediction (slg_weighted:
                        weighted selection instead of the top-rewarded solution)
    revisions           N/L chains of L attempts from a revision model (§6.1)      generations N
                        (the generator passed in is the revision model)

`SUBSAMPLED` names the methods whose curves over N come from nested subsets of one run at the
largest N (`bon.subset_result`); the others must be run at each budget. The cost record's
definitions are in `ttstrain.search.base`; the stage that runs methods x budgets over a problem
set is `ttstrain.stages.run_search` (`ttstrain search --config ...`).
"""

from __future__ import annotations

from typing import Sequence

from ttstrain.prompts import format_prompt, step_format_of
from ttstrain.search.base import Candidate, SearchConfig, SearchCost, SearchMethod, SearchResult, SearchSettings, Verifier
from ttstrain.search.selection import SELECTIONS, select
from ttstrain.search.beam import beam_search, lookahead_search, step_search
from ttstrain.search.dvts import dvts
from ttstrain.search.bon import (best_of_n, best_of_n_naive, best_of_n_weighted, majority, nested_orders,
                                       subset_result)
from ttstrain.search.revisions import revision_search
from ttstrain.search.scripted_scorer import ScriptedScorer
from ttstrain.search.slg import slg, slg_weighted

SEARCH_METHODS: dict[str, SearchMethod] = {
    "best_of_n_weighted": best_of_n_weighted,
    "best_of_n_naive": best_of_n_naive,
    "majority": majority,
    "beam_search": beam_search,
    "lookahead": lookahead_search,
    "dvts": dvts,
    "slg": slg,
    "slg_weighted": slg_weighted,
    "revisions": revision_search,
}

# methods computed from one best-of-N run at the largest budget, and the selection each applies
SUBSAMPLED: dict[str, str] = {"best_of_n_weighted": "weighted", "best_of_n_naive": "naive", "majority": "majority"}

# methods that never call the verifier
NO_VERIFIER = frozenset({"majority"})


def get_method(name: str) -> SearchMethod:
    try:
        return SEARCH_METHODS[name]
    except KeyError:
        raise ValueError(f"unknown search method {name!r}; choose from {sorted(SEARCH_METHODS)}") from None


def run_search(method: str | SearchMethod, generator, scorer, problems: Sequence[dict | str], budget: int, *,
               few_shot: "list[tuple[str, str]] | PromptFormat | None" = None, **hparams) -> list[SearchResult]:
    """Run one method at budget N over problems (dicts with "question", or prompt strings as they are).

    hparams are `SearchConfig` fields (beam_width, lookahead_steps, aggregation, temperature, top_p,
    max_new_tokens, max_step_tokens, max_rounds, seed, step_format: by default the PromptFormat's).
    """
    fn = get_method(method) if isinstance(method, str) else method
    hparams.setdefault("step_format", step_format_of(few_shot))
    config = SearchConfig(n=budget, **hparams)
    prompts = [p if isinstance(p, str) else format_prompt(p["question"], few_shot) for p in problems]
    return fn(generator, scorer, prompts, config)


__all__ = ["NO_VERIFIER", "SEARCH_METHODS", "SELECTIONS", "SUBSAMPLED", "Candidate", "ScriptedScorer", "SearchConfig", "SearchSettings",
           "SearchCost", "SearchMethod", "SearchResult", "Verifier", "beam_search", "best_of_n", "best_of_n_naive",
           "best_of_n_weighted", "dvts", "get_method", "lookahead_search", "majority", "nested_orders", "revision_search", "run_search", "select", "slg", "slg_weighted",
           "step_search", "subset_result"]
