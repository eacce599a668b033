"""Scaling-law guided search (SLG, arXiv 2602.01485): spend the budget on the state whose
predicted best-of-N is highest, predicted from the tail of its completions' rewards.

At budget N, with (m, K) from `slg_budget_schedule(N)`, for every problem at once:

  phase 1   m complete solutions from the prompt; the verifier scores each (`config.aggregation`).
  phase 2   the K best of them, cut back to their first step (or, with `config.slg_prefix_tokens`
            T > 0, to their first T tokens, which may end inside a step), are the candidate states (a
            cut that leaves nothing to continue is not a state; the next best takes its place);
            m completions from each state, scored.
  phase 3   each state's m rewards are fitted by `ttstrain.search.tail.fit_tail` (top alpha =
            `config.tail_alpha`); the remaining R = N - m - K*m completions all go to the state
            with the highest predicted best-of-(m + R) reward (to the root when no root solution
            had a first step to continue from).
  answer    the highest-rewarded complete solution of all phases (selection "naive", as the paper);
            `slg_weighted` picks by weighted best-of-N over the same solutions.

Budget matching is exact: every phase's completions are counted, the root's included, and the
total is at most N (`generations` = completions). The reference schedule (m = max(20, ln(N)^3 / 5)
rounded to 5, K = max(2, min(round(N / 2m), floor(N / (m + 2))))) needs m (K + 1) <= N - m,
i.e. N >= 80 at m = 20, K = 2; below that, this implementation scales down: K = 2 and
m = N // (K + 2), so root, states and remainder each get about a quarter or more of the budget;
with m < 2 (N < 8) it is plain best-of-N from the root (K = 0). Streams: the root samples on
stream 0, state k on stream k + 1, the remainder on stream K + 1, so no two draws coincide.

    from ttstrain.search import run_search
    results = run_search("slg", generator, prm, problems, budget=64)
"""

from __future__ import annotations

from typing import Sequence

from ttstrain.generation.base import Generator, SamplingParams
from ttstrain.answers.grading import extract_answer
from ttstrain.search.base import (Candidate, SearchConfig, SearchCost, SearchResult, check_verifier, generate_charged,
                                  score_candidates, verifier_parameters)
from ttstrain.search.selection import select
from ttstrain.search.tail import expected_best_of_n, fit_tail, slg_schedule
from ttstrain.steps import LINE, StepFormat


def slg_budget_schedule(budget: int) -> tuple[int, int]:
    """(m completions per state, K states) that keep root + states + remainder within `budget`."""
    m, k = slg_schedule(budget)
    if m * (k + 2) <= budget:
        return m, k
    k = 2
    m = budget // (k + 2)
    return (m, k) if m >= 2 else (budget, 0)


def _solutions(res, prefix: list[str] | str, fmt: StepFormat = LINE) -> list[Candidate]:
    """Complete solutions from a state: its steps (a step state) or its text (a first-tokens state) + each continuation."""
    out = []
    for c in res.completions:
        if isinstance(prefix, str):
            steps = fmt.split(prefix + c.text)
        else:
            steps = prefix + fmt.split(c.text)
        text = fmt.join(steps)
        out.append(Candidate(text=text, steps=steps, answer=extract_answer(text), finish_reason=c.finish_reason,
                             finished=True, num_tokens=c.num_tokens))
    return out


def slg_search(generator: Generator, scorer, prompts: Sequence[str], config: SearchConfig,
               selection: str = "naive", method: str = "slg") -> list[SearchResult]:
    check_verifier(scorer)
    n = config.n
    m, k = slg_budget_schedule(n)
    costs = [SearchCost(generations=0, policy_parameters=generator.num_parameters,
                        verifier_parameters=verifier_parameters(scorer)) for _ in prompts]

    def sample(requests, count, prefixes):
        params = SamplingParams(n=count, temperature=config.temperature, top_p=config.top_p,
                                max_new_tokens=config.max_new_tokens, stop="solution", seed=config.seed,
                                step_format=config.step_format)
        rows = [_solutions(res, pre, config.step_format) for res, pre in zip(generate_charged(generator, requests, params, costs),
                                                          prefixes)]
        if rows:
            score_candidates(scorer, rows, [prompts[i] for i, _, _ in requests], [costs[i] for i, _, _ in requests],
                             config.aggregation)
        for (i, _, _), row in zip(requests, rows):
            costs[i].generations += len(row)
        for i in {i for i, _, _ in requests}:  # one round per phase, however many states it sampled
            costs[i].rounds += 1
        return rows

    # phase 1: the root
    root = sample([(i, p, 0) for i, p in enumerate(prompts)], m, [[] for _ in prompts])
    pool = [list(row) for row in root]
    states: list[list[list[str]]] = [[] for _ in prompts]
    if k > 0:
        for i, row in enumerate(root):
            ranked = sorted(range(len(row)), key=lambda j: (-(row[j].score or 0.0), j))
            cut = [_state(row[j], config.slg_prefix_tokens, generator.tokenizer) for j in ranked]
            states[i] = [st for st in cut if st is not None][:k]
        # phase 2: m completions from each state
        requests, owners = [], []
        for i, sts in enumerate(states):
            for s, state in enumerate(sts):
                requests.append((i, prompts[i] + _state_text(state, config.step_format), s + 1))
                owners.append((i, s))
        rows = sample(requests, m, [states[i][s] for i, s in owners]) if requests else []
        by_state: dict[tuple[int, int], list[Candidate]] = dict(zip(owners, rows))
        for (i, _), row in zip(owners, rows):
            pool[i] += row
        # phase 3: the remainder to the state with the highest predicted best-of-(m + R)
        requests, prefixes = [], []
        for i, sts in enumerate(states):
            remaining = n - costs[i].generations
            if remaining < 1:
                continue
            if not sts:  # no solution of the root had a first step to continue from: more root samples
                requests.append((i, prompts[i], k + 1))
                prefixes.append(([], remaining))
                continue
            predicted = [expected_best_of_n(fit_tail([c.score or 0.0 for c in by_state[i, s]], config.tail_alpha),
                                            m + remaining) for s in range(len(sts))]
            best = max(range(len(sts)), key=lambda s: (predicted[s], -s))
            requests.append((i, prompts[i] + _state_text(sts[best], config.step_format), k + 1))
            prefixes.append((sts[best], remaining))
        for remaining in sorted({r for _, r in prefixes}):  # one call per distinct remainder size
            group = [(req, pre) for req, (pre, r) in zip(requests, prefixes) if r == remaining]
            rows = sample([req for req, _ in group], remaining, [pre for _, pre in group])
            for (req, _), row in zip(group, rows):
                pool[req[0]] += row
    return [SearchResult(method=method, prompt=p, n=n, selection=selection, candidates=row,
                         selected=select(row, selection), cost=cost) for p, row, cost in zip(prompts, pool, costs)]


def _state(candidate: Candidate, prefix_tokens: int, tokenizer) -> list[str] | str | None:
    """The state a root solution is cut back to: its first step, or with `prefix_tokens` > 0 its first
    that many tokens (characters where the generator has no tokenizer); None when nothing would be left."""
    if prefix_tokens <= 0:
        return candidate.steps[:1] if len(candidate.steps) > 1 else None
    if tokenizer is None:
        return candidate.text[:prefix_tokens] if len(candidate.text) > prefix_tokens else None
    ids = tokenizer(candidate.text, add_special_tokens=False)["input_ids"]
    return tokenizer.decode(ids[:prefix_tokens]) if len(ids) > prefix_tokens else None


def _state_text(state: list[str] | str, fmt: StepFormat = LINE) -> str:
    return state if isinstance(state, str) else fmt.prefix(state, len(state))


def slg(generator, scorer, prompts, config):
    return slg_search(generator, scorer, prompts, config, selection="naive", method="slg")


def slg_weighted(generator, scorer, prompts, config):
    return slg_search(generator, scorer, prompts, config, selection="weighted", method="slg_weighted")
