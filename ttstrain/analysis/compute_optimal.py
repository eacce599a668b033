"""Compute-optimal test-time scaling (Snell et al. 2024, §3.2, §5.3, §6.3, §7): difficulty bins,
a strategy chosen per bin and budget by two-fold cross-validation, the compute it saves over
best-of-N, and the FLOPs-matched exchange against a larger model.

    from ttstrain.analysis.compute_optimal import oracle_bins, assign_folds, select_compute_optimal
    bins = oracle_bins(sample_rows)                      # {problem_id: 1..5}, bin 1 = easiest
    folds = assign_folds(bins, seed=0)                   # {problem_id: 0 or 1}, stratified by bin
    sel = select_compute_optimal(table, bins, folds, budgets=[1, 2, 4, 8, 16],
                                 strategies=["best_of_n_weighted", "beam_search(M=4)"])
    sel.accuracy[16], sel.by_bin[5][16], sel.choices[5][16]
    efficiency_ratios(sel.accuracy, baseline_curve)      # {B: {"matched_budget": b, "ratio": B / b}}

The stage that reads search / sampling / revision outputs and writes the report is
`ttstrain.stages.compute_optimal` (`ttstrain compute-optimal --search_dirs runs/search ...`).

Definitions (the report repeats them):

Difficulty bins. A question's oracle difficulty is its pass@1 estimated from graded samples (the
mean of `correct`); its predicted difficulty is the mean verifier final score over the same kind
of samples (no ground truth). Questions are ranked by value, highest first, ties broken by the
SHA-256 of the problem id (stable, and not correlated with how ids are numbered); rank i
(0-based) of n goes to bin 1 + floor(5 i / n). So bin 1 is the EASIEST (as in the paper's
figures), bin 5 the hardest, and every bin holds floor(n/5) or ceil(n/5) questions.

Budget. The unit is the paper's generation count (`SearchCost.generations`): N for best-of-N
and beam search at N, N (k + 1) for lookahead, L * P for P revision chains of length L. A
strategy's accuracy at budget B is that of its run with the most generations <= B (it may spend
less than B, never more); a strategy with no run <= B is not a candidate at B.

Strategy table. `table[strategy][budget][problem_id] = accuracy` (a number in [0, 1]; the search
stage's per-problem accuracy is already a mean over resamplings).

Two-fold cross-validation. Each bin's questions are split into two folds (SHA-256 of
"seed:problem_id" order inside each bin, alternating folds with a counter that runs across bins,
so each bin's folds differ by at most one question and the totals by at most one). A question
in fold f is scored with the strategy that has the highest mean accuracy on the questions of its
bin that are NOT in fold f; its own fold never takes part in the choice. The reported accuracy of
a bin (or overall) is the mean of these held-out scores over its questions, i.e. the two
folds' held-out accuracies averaged with weights equal to their sizes. Ties go to the strategy
declared first (the stage puts the baseline first); a choosing set with no question (a bin of
one question) chooses the first declared strategy available at that budget.

Efficiency ratio. For each budget B, b is the smallest budget at which the compute-optimal curve
reaches the baseline's accuracy at B. The compute-optimal curve is linear in log2(budget) between
measured budgets (interpolate=True; the report's default) or only measured points count
(interpolate=False); it is never extrapolated below the smallest or above the largest measured
budget. The ratio is B / b ("4x less compute" is 4); None when the curve never reaches it; a
lower bound (flagged) when the curve is already above the target at its smallest budget.

FLOPs exchange (§7). See `flops_matched_generations`.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from ttstrain.answers.pooling import AnswerPool
from ttstrain.search.selection import CHAIN_SELECTIONS, has_verifier_scores, select_over_chains

NUM_BINS = 5
Table = Mapping[str, Mapping[int, Mapping[str, float]]]  # strategy -> budget -> problem_id -> accuracy


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Difficulty bins
# ---------------------------------------------------------------------------------------------


def per_problem_mean(rows: Iterable[Mapping], column: str) -> dict[str, float]:
    """Mean of `column` per problem_id (booleans count as 0/1; rows whose value is None are skipped)."""
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for r in rows:
        v = r.get(column)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        pid = str(r["problem_id"])
        sums[pid] += float(v)
        counts[pid] += 1
    return {p: sums[p] / counts[p] for p in sorted(counts)}


def quantile_bins(values: Mapping[str, float], num_bins: int = NUM_BINS) -> dict[str, int]:
    """Bins 1..num_bins by rank, highest value in bin 1; ties by SHA-256 of the id (module docstring)."""
    if num_bins < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}")
    order = sorted(values, key=lambda p: (-float(values[p]), _hash(str(p))))
    n = len(order)
    return {p: 1 + (i * num_bins) // n for i, p in enumerate(order)}


def oracle_bins(samples: Iterable[Mapping], num_bins: int = NUM_BINS) -> dict[str, int]:
    """Bins from pass@1 (mean `correct` of each question's graded samples); bin 1 = easiest."""
    return quantile_bins(per_problem_mean(samples, "correct"), num_bins)


def predicted_bins(scored: Iterable[Mapping], num_bins: int = NUM_BINS) -> dict[str, int]:
    """Bins from the mean verifier final `score` of each question's samples; bin 1 = easiest."""
    return quantile_bins(per_problem_mean(scored, "score"), num_bins)


def bin_members(bins: Mapping[str, int], problems: Iterable[str] | None = None) -> dict[int, list[str]]:
    """{bin: sorted problem ids}, restricted to `problems` when given."""
    keep = None if problems is None else set(problems)
    out: dict[int, list[str]] = defaultdict(list)
    for p, b in bins.items():
        if keep is None or p in keep:
            out[b].append(p)
    return {b: sorted(out[b]) for b in sorted(out)}


# ---------------------------------------------------------------------------------------------
# Strategy tables and curves
# ---------------------------------------------------------------------------------------------


def strategy_table(rows: Iterable[Mapping], *, strategy_key: str = "strategy", budget_key: str = "generations",
                   value_key: str = "accuracy") -> dict[str, dict[int, dict[str, float]]]:
    """`table[strategy][budget][problem_id]` from per-problem rows; a repeated cell is an error."""
    table: dict[str, dict[int, dict[str, float]]] = {}
    for r in rows:
        s, b, p = str(r[strategy_key]), int(round(float(r[budget_key]))), str(r["problem_id"])
        cell = table.setdefault(s, {}).setdefault(b, {})
        if p in cell:
            raise ValueError(f"two rows for strategy {s!r}, budget {b}, problem {p!r}")
        cell[p] = float(r[value_key])
    return table


def run_at_budget(curve: Mapping[int, Mapping[str, float]], budget: float) -> tuple[int, Mapping[str, float]] | None:
    """(budget used, per-problem accuracy) of the run with the most generations <= budget, or None."""
    ok = [b for b in curve if b <= budget]
    return None if not ok else (max(ok), curve[max(ok)])


def common_problems(table: Table, bins: Mapping[str, int], strategies: Sequence[str] | None = None) -> list[str]:
    """Questions that have a bin and a value in every run of every strategy."""
    keep = set(bins)
    for s in strategies or list(table):
        for run in table[s].values():
            keep &= set(run)
    return sorted(keep)


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def measured_curves(table: Table, problems: Sequence[str]) -> dict[str, dict[int, float]]:
    """Mean accuracy over `problems` of each strategy at each of its measured budgets."""
    return {s: {b: _mean([run[p] for p in problems]) for b, run in sorted(curve.items())} for s, curve in table.items()}


def curves_by_bin(table: Table, bins: Mapping[str, int], problems: Sequence[str],
                  budgets: Sequence[int]) -> dict[str, dict[int, dict[int, float | None]]]:
    """`out[strategy][bin][B]`: mean accuracy over the bin's questions at budget B (run <= B rule)."""
    members = bin_members(bins, problems)
    out: dict = {}
    for s, curve in table.items():
        out[s] = {}
        for k, ps in members.items():
            row = {}
            for B in budgets:
                got = run_at_budget(curve, B)
                row[B] = None if got is None else _mean([got[1][p] for p in ps])
            out[s][k] = row
    return out


# ---------------------------------------------------------------------------------------------
# Compute-optimal selection with two-fold cross-validation
# ---------------------------------------------------------------------------------------------


def assign_folds(bins: Mapping[str, int], seed: int = 0, num_folds: int = 2) -> dict[str, int]:
    """{problem_id: fold}, stratified by bin and deterministic from `seed` (module docstring)."""
    if num_folds < 2:
        raise ValueError("cross-validation needs at least 2 folds")
    folds, counter = {}, 0
    for k, ps in bin_members(bins).items():
        for p in sorted(ps, key=lambda p: _hash(f"{seed}:{p}")):
            folds[p] = counter % num_folds
            counter += 1
    return folds


@dataclass
class Selection:
    """Compute-optimal accuracy by cross-validation (see `select_compute_optimal`).

    accuracy: {B: mean held-out accuracy over every question}
    by_bin: {bin: {B: mean held-out accuracy over the bin's questions}}
    choices: {bin: {B: [strategy chosen to score fold 0, ... fold k-1]}}
    budget_used: {bin: {B: [budget of the chosen strategy's run, per fold]}}
    """

    accuracy: dict[int, float]
    by_bin: dict[int, dict[int, float]]
    choices: dict[int, dict[int, list[str]]]
    budget_used: dict[int, dict[int, list[int]]]
    problems: int
    folds: dict[int, int] = field(default_factory=dict)  # fold -> questions

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "by_bin": self.by_bin, "choices": self.choices,
                "budget_used": self.budget_used, "problems": self.problems, "fold_sizes": self.folds}


def select_compute_optimal(table: Table, bins: Mapping[str, int], folds: Mapping[str, int], budgets: Sequence[int],
                           strategies: Sequence[str] | None = None,
                           problems: Sequence[str] | None = None) -> Selection:
    """Per bin and budget, score each fold with the strategy best on the bin's other fold(s).

    `problems` defaults to `common_problems(table, bins, strategies)`; every one needs a bin, a fold
    and a value in every run of every strategy. Ties: the strategy declared first wins.
    """
    strategies = list(strategies or table)
    missing = [s for s in strategies if s not in table]
    if missing:
        raise ValueError(f"strategies {missing} are not in the table (have {sorted(table)})")
    problems = sorted(problems if problems is not None else common_problems(table, bins, strategies))
    if not problems:
        raise ValueError("no question has a bin and a value for every strategy")
    for p in problems:
        if p not in folds:
            raise ValueError(f"problem {p!r} has no fold")
    fold_ids = sorted({folds[p] for p in problems})
    held: dict[int, dict[str, float]] = {B: {} for B in budgets}
    by_bin: dict[int, dict[int, float]] = {}
    choices: dict[int, dict[int, list[str]]] = {}
    used: dict[int, dict[int, list[int]]] = {}
    for k, members in bin_members(bins, problems).items():
        by_bin[k], choices[k], used[k] = {}, {}, {}
        for B in budgets:
            avail = [(s, got) for s in strategies if (got := run_at_budget(table[s], B)) is not None]
            if not avail:
                raise ValueError(f"no strategy has a run with at most {B} generations")
            picks, budgets_used = [], []
            for f in fold_ids:
                choose_on = [p for p in members if folds[p] != f]
                score_on = [p for p in members if folds[p] == f]
                best = 0
                if choose_on:
                    means = [sum(run[p] for p in choose_on) / len(choose_on) for _, (_, run) in avail]
                    best = max(range(len(avail)), key=lambda i: (means[i], -i))
                name, (b_used, run) = avail[best]
                for p in score_on:
                    held[B][p] = run[p]
                picks.append(name)
                budgets_used.append(b_used)
            choices[k][B], used[k][B] = picks, budgets_used
            by_bin[k][B] = _mean([held[B][p] for p in members])
    accuracy = {B: _mean(list(held[B].values())) for B in budgets}
    sizes = {f: sum(folds[p] == f for p in problems) for f in fold_ids}
    return Selection(accuracy, by_bin, choices, used, len(problems), sizes)


# ---------------------------------------------------------------------------------------------
# Efficiency ratio
# ---------------------------------------------------------------------------------------------


def matched_budget(curve: Mapping[int, float], target: float, interpolate: bool = True) -> float | None:
    """Smallest budget at which `curve` ({budget: accuracy}) reaches `target` (module docstring)."""
    pts = sorted((b, a) for b, a in curve.items() if a is not None)
    eps = 1e-12
    for i, (b, a) in enumerate(pts):
        if a >= target - eps:
            if i == 0 or not interpolate:
                return float(b)
            b0, a0 = pts[i - 1]
            x0, x1 = math.log2(b0), math.log2(b)
            return float(2.0 ** (x0 + (target - a0) / (a - a0) * (x1 - x0)))
    return None


def efficiency_ratios(optimal: Mapping[int, float], baseline: Mapping[int, float],
                      interpolate: bool = True) -> dict[int, dict]:
    """{B: baseline accuracy at B, smallest budget b where `optimal` reaches it, ratio B / b or None}.

    `lower_bound` is True when the compute-optimal curve is already above the target at its smallest
    measured budget: the true b may be smaller, so B / b is a lower bound.
    """
    first = min((b for b, a in optimal.items() if a is not None), default=None)
    out = {}
    for B in sorted(baseline):
        target = baseline[B]
        b = None if target is None else matched_budget(optimal, target, interpolate)
        floor = b is not None and b == first and optimal[first] > target  # reached before the first measurement
        out[B] = {"baseline_accuracy": target, "matched_budget": b, "ratio": None if b is None else B / b,
                  "lower_bound": floor}
    return out


# ---------------------------------------------------------------------------------------------
# FLOPs-matched comparison with a larger model (§7)
# ---------------------------------------------------------------------------------------------

PAPER_INFERENCE_TO_PRETRAIN_RATIOS = (0.16, 0.79, 22.0)


def pretraining_flops(n_params: float, d_pretrain: float) -> float:
    """X = 6 N D_pretrain."""
    return 6.0 * n_params * d_pretrain


def inference_flops(n_params: float, d_inference: float) -> float:
    """Y = 2 N D_inference."""
    return 2.0 * n_params * d_inference


def flops_matched_generations(n_small: float, n_large: float, d_pretrain: float, d_inference: float) -> float:
    """K, the generations per question the small model may spend to match the larger model's FLOPs.

    The larger model (N_l parameters) answers greedily, one generation per question; the small one
    (N_s) spends K generations per question. Both are pretrained on D_pretrain tokens; D_inference
    is the tokens of greedy answers over all the queries served. Total FLOPs (X + Y, §7):

        large:  6 N_l D_pre + 2 N_l D_inf
        small:  6 N_s D_pre + 2 N_s D_inf K

    Equating and solving for K:

        K = (6 N_l D_pre + 2 N_l D_inf - 6 N_s D_pre) / (2 N_s D_inf)
          = M + 3 (D_pre / D_inf) (M - 1),        M = N_l / N_s, R = D_inf / D_pre
          = M + 3 (M - 1) / R

    which is the paper's "multiply inference tokens by M + 3 (D_pretrain / D_inference)(M - 1)".
    At M = 14: R = 0.16 -> K = 257.75, R = 0.79 -> K = 63.37, R = 22 -> K = 15.77. A generation of
    the small model is taken to be as long as a greedy answer; the verifier's (or revision
    prompts') extra FLOPs are not charged, as in the paper.
    """
    if min(n_small, n_large, d_pretrain, d_inference) <= 0:
        raise ValueError("parameter and token counts must be positive")
    return (pretraining_flops(n_large, d_pretrain) + inference_flops(n_large, d_inference)
            - pretraining_flops(n_small, d_pretrain)) / inference_flops(n_small, d_inference)


def flops_matched_generations_at_ratio(param_multiplier: float, ratio: float) -> float:
    """K = M + 3 (M - 1) / R, the same as `flops_matched_generations` with M = N_l / N_s, R = D_inf / D_pre."""
    if param_multiplier <= 0 or ratio <= 0:
        raise ValueError("param_multiplier and ratio must be positive")
    return param_multiplier + 3.0 * (param_multiplier - 1.0) / ratio


def flops_matched_comparison(optimal: Mapping[int, float], optimal_by_bin: Mapping[int, Mapping[int, float]], *,
                             n_small: float, n_large: float,
                             large_accuracy: float | None, large_by_bin: Mapping[int, float] | None = None,
                             ratios: Sequence[float] = PAPER_INFERENCE_TO_PRETRAIN_RATIOS,
                             d_pretrain: float | None = None) -> list[dict]:
    """One row per R, for a compute-optimal curve {B: accuracy} and its per-bin curves {bin: {B: acc}}:
    K, the budget used (largest measured budget <= K: the small model never
    spends more than the match allows; `capped` when K is above every measured budget, which
    understates the small model), and compute-optimal accuracy against the larger model's greedy
    accuracy overall and per bin (`beats`: strictly higher). FLOPs totals when `d_pretrain` is given."""
    if n_large < n_small:
        raise ValueError(f"the larger model ({n_large:g}) has fewer parameters than the small one ({n_small:g})")
    m = n_large / n_small
    budgets = sorted(optimal)
    rows = []
    for R in ratios:
        k = flops_matched_generations_at_ratio(m, R)
        ok = [b for b in budgets if b <= k]
        used = max(ok) if ok else None
        small = None if used is None else optimal[used]
        row = {"ratio": R, "param_multiplier": m, "matched_generations": k, "budget_used": used,
               "capped": k > max(budgets), "small_accuracy": small, "large_accuracy": large_accuracy,
               "beats": None if small is None or large_accuracy is None else small > large_accuracy, "by_bin": {}}
        for b, acc in (large_by_bin or {}).items():
            s = None if used is None else optimal_by_bin.get(b, {}).get(used)
            row["by_bin"][b] = {"small": s, "large": acc, "margin": None if s is None or acc is None else s - acc,
                                "beats": None if s is None or acc is None else s > acc}
        if d_pretrain is not None:
            d_inf = R * d_pretrain
            row["flops"] = {"d_pretrain": d_pretrain, "d_inference": d_inf,
                            "large_total": pretraining_flops(n_large, d_pretrain) + inference_flops(n_large, d_inf),
                            "small_total_at_k": pretraining_flops(n_small, d_pretrain)
                            + inference_flops(n_small, d_inf) * k}
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------
# Revisions: sequential/parallel strategies from revision chains
# ---------------------------------------------------------------------------------------------


def revision_strategy(sequential: int) -> str:
    return f"revisions(L={sequential})"


REVISION_SELECTIONS = ("auto",) + CHAIN_SELECTIONS  # revision_accuracy_rows: auto picks one of them


def revision_accuracy_rows(chain_rows: Iterable[Mapping], max_budget: int | None = None,
                           selection: str = "auto") -> list[dict]:
    """Per-problem accuracy of P parallel chains of L revision steps (budget N = L * P generations).

    Chain rows are `ttstrain.revisions.chains.run_revision_chains` output (problem_id, chain, step,
    answer, correct, and a verifier `score` for the verifier selections). L and P run over powers of
    two up to the shortest chain and the chain count; the answer is selected from all L * P attempts
    (steps 0..L-1 of the chains) by `select_over_chains` (`auto`: weighted when every answered attempt has a
    score, else majority), averaged over the disjoint groups of P chains (chains sorted by id). The
    strategy is named by L (`revisions(L=4)`); L = 1 is parallel sampling. Answers pool by
    equivalence over all of a problem's attempts (`ttstrain.answers.pooling`), once per problem.
    """
    if selection not in REVISION_SELECTIONS:
        raise ValueError(f"selection must be one of {REVISION_SELECTIONS}, got {selection!r}")
    per: dict[str, dict[int, dict[int, Mapping]]] = defaultdict(lambda: defaultdict(dict))
    for r in chain_rows:
        per[str(r["problem_id"])][int(r["chain"])][int(r["step"])] = r
    out = []
    for pid in sorted(per):
        chains = [per[pid][c] for c in sorted(per[pid])]
        length = min(len(c) for c in chains)
        scored = has_verifier_scores(a for c in chains for a in c.values())
        how = selection if selection != "auto" else ("weighted" if scored else "majority")
        pool = AnswerPool()
        pool.keys(c[s].get("answer") for c in chains for s in sorted(c))  # keys fixed in chain, step order
        L = 1
        while L <= length:
            P = 1
            while P <= len(chains) and (max_budget is None or L * P <= max_budget):
                hits = []
                for g in range(len(chains) // P):
                    group = [[chains[c][s] for s in range(L)] for c in range(g * P, (g + 1) * P)]
                    win = select_over_chains(group, how, pool=pool)
                    # the winning group is right when its first attempt (in chain, step order) is
                    first = next((a for c in group for a in c if pool.key(a.get("answer")) == win), None)
                    hits.append(first is not None and bool(first["correct"]))
                out.append({"problem_id": pid, "strategy": revision_strategy(L), "sequential": L, "parallel": P,
                            "ratio": L / P, "generations": L * P, "accuracy": sum(hits) / len(hits),
                            "groups": len(hits), "selection": how})
                P *= 2
            L *= 2
    return out


def ratio_sweep(rows: Iterable[Mapping], bins: Mapping[str, int]) -> dict[int, dict[int, dict[float, float]]]:
    """`out[bin][budget][L / P]`: mean accuracy over the bin's questions (descriptive, no selection)."""
    acc: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in rows:
        b = bins.get(str(r["problem_id"]))
        if b is not None:
            acc[b][int(r["generations"])][float(r["sequential"]) / float(r["parallel"])].append(float(r["accuracy"]))
    return {b: {n: {q: sum(v) / len(v) for q, v in sorted(per_q.items())} for n, per_q in sorted(per_n.items())}
            for b, per_n in sorted(acc.items())}


# ---------------------------------------------------------------------------------------------
# One family of strategies end to end
# ---------------------------------------------------------------------------------------------


def analyze_family(table: Table, baseline: str, bins: Mapping[str, Mapping[str, int]], *,
                   strategies: Sequence[str] | None = None, budgets: Sequence[int] | None = None, seed: int = 0,
                   num_folds: int = 2, interpolate: bool = True) -> dict:
    """Curves, per-bin curves, compute-optimal selection and efficiency for each kind of bins.

    `bins` maps a kind ("oracle", "predicted") to its assignment. The baseline is declared first
    (it wins ties). Budgets default to the baseline's measured budgets. Questions are those with a
    value in every run and a bin of every kind, so the kinds are compared on the same questions.
    """
    if baseline not in table:
        raise ValueError(f"baseline {baseline!r} is not among the strategies {sorted(table)}")
    strategies = [baseline] + [s for s in (strategies or sorted(table)) if s != baseline]
    unknown = [s for s in strategies if s not in table]
    if unknown:
        raise ValueError(f"strategies {unknown} are not among {sorted(table)}")
    sub = {s: table[s] for s in strategies}
    budgets = sorted(budgets or table[baseline])
    problems = set(common_problems(sub, next(iter(bins.values())), strategies))
    for assignment in bins.values():
        problems &= set(assignment)
    problems = sorted(problems)
    everyone = set().union(*(set(run) for curve in sub.values() for run in curve.values()))
    out = {"baseline": baseline, "strategies": strategies, "budgets": budgets, "problems": len(problems),
           "dropped_problems": len(everyone - set(problems)), "problem_ids": problems,
           "curves": measured_curves(sub, problems),
           "by_bin": {}, "compute_optimal": {}, "efficiency": {}}
    base_curve = {B: run_at_budget(sub[baseline], B) for B in budgets}
    base_curve = {B: _mean([got[1][p] for p in problems]) for B, got in base_curve.items() if got is not None}
    out["baseline_curve"] = base_curve
    for kind, assignment in bins.items():
        folds = assign_folds({p: assignment[p] for p in problems}, seed, num_folds)
        sel = select_compute_optimal(sub, assignment, folds, budgets, strategies, problems)
        out["by_bin"][kind] = curves_by_bin(sub, assignment, problems, budgets)
        out["compute_optimal"][kind] = sel.to_dict()
        out["efficiency"][kind] = efficiency_ratios(sel.accuracy, base_curve, interpolate)
    return out
