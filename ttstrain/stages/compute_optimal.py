"""Compute-optimal scaling report from search (and revision) results: difficulty bins, strategies
chosen per bin and budget by two-fold cross-validation, efficiency over best-of-N, and the
FLOPs-matched comparison with a larger model (Snell et al. §3.2, §5.3, §6.3, §7).

    ttstrain compute-optimal --search_dirs runs/search runs/search_sqrt --output_dir runs/compute_optimal
    ttstrain compute-optimal --search_dirs runs/search --samples runs/samples --revisions runs/chains.parquet \\
        --large_model_samples runs/samples_large_greedy --param_multiplier 14
    python eval/compute_optimal.py --config <recipe.yaml>

Inputs:
  search_dirs          `ttstrain search` folders (results.parquet, config.json). A strategy is a
                       method with its hyperparameters from config.json: best_of_n_weighted,
                       majority, beam_search(M=4), lookahead(M=4,k=3), ...; a name that two folders
                       share gets "@<folder>" on the second.
  samples              graded samples for the oracle bins (problem_id, correct): a parquet file or
                       a `ttstrain sample` folder. Default: the best-of-N candidates (run
                       "best_of_n", at the largest budget) of the first search folder.
  scores               rows with problem_id and a verifier `score` for the predicted bins. Default:
                       `samples` if it has scores, else the first search folder's best-of-N
                       candidates; predicted bins are skipped when no source has scores.
  revisions            optional: revision chains (problem_id, chain, step, answer, correct[, score],
                       as `ttstrain.revisions.chains.run_revision_chains` writes) or per-problem
                       rows (problem_id, sequential, parallel, accuracy); a second family of
                       strategies, one per chain length L, baseline L = 1 (parallel).
  large_model_*        the larger model of §7: greedy samples (problem_id, correct) for per-bin
                       comparisons, or one accuracy; its size as parameters or a multiple.

Output folder: compute_optimal.md, compute_optimal.json, accuracy_<family>.png,
bins_<family>_<oracle|predicted>.png, revision_ratio_sweep.png (with revisions), bins.parquet
(problem_id, oracle/predicted value and bin), config.json. Definitions and the analysis (pure
functions): ttstrain.analysis.compute_optimal; the markdown and plots: ttstrain.reporting.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ttstrain.analysis import compute_optimal as co
from ttstrain.analysis.compute_optimal import bin_members, revision_accuracy_rows, revision_strategy
from ttstrain.io import write_json, write_parquet, write_resolved_config, write_text
from ttstrain.parsing import StageParser
from ttstrain.reporting.compute_optimal_report import markdown_report
from ttstrain.reporting.plots import family_plots, plot_ratio_sweep
from ttstrain.runner.rows import read_rows, row_columns
from ttstrain.validation import InputError, check_result_rows, check_sample_rows, probability, require_columns


@dataclass
class ComputeOptimalConfig:
    output_dir: str = field(default="runs/compute_optimal", metadata={"help": "Output folder (report, plots, JSON)."})
    search_dirs: list[str] = field(default_factory=list, metadata={"help": "Search stage output folders (results.parquet, config.json)."})
    samples: str | None = field(default=None, metadata={"help": "Graded samples for oracle bins (parquet or `ttstrain sample` folder); default: the first search folder's best-of-N candidates."})
    scores: str | None = field(default=None, metadata={"help": "Rows with problem_id and verifier `score` for predicted bins; default: samples if scored, else the best-of-N candidates."})
    revisions: str | None = field(default=None, metadata={"help": "Revision chains parquet, or per-problem rows (problem_id, sequential, parallel, accuracy)."})
    revision_score: str = field(default="score", metadata={"help": "Column of the revision chains holding the verifier score (`ttstrain eval-revision` writes score_prm and score_orm)."})
    revision_selection: str = field(default="auto", metadata={"help": "Answer selection over revision chains: majority, weighted (all attempts), hierarchical (within each chain, then across), auto (weighted if scored, else majority)."})
    strategies: list[str] = field(default_factory=list, metadata={"help": "Search strategies to choose among (empty: all found)."})
    baseline: str = field(default="best_of_n_weighted", metadata={"help": "Search strategy compute-optimal is compared with."})
    budget_key: str = field(default="generations", metadata={"help": "Budget axis of search results: generations (paper's unit) or budget (nominal N)."})
    num_bins: int = field(default=co.NUM_BINS, metadata={"help": "Difficulty bins (quantiles; bin 1 = easiest)."})
    num_folds: int = field(default=2, metadata={"help": "Cross-validation folds of the strategy choice (paper: 2)."})
    interpolate: bool = field(default=True, metadata={"help": "Efficiency ratio: interpolate in log2 budget (false: measured budgets only)."})
    small_model_params: float | None = field(default=None, metadata={"help": "Policy parameters N_s; default: the search run's generator identity."})
    large_model_params: float | None = field(default=None, metadata={"help": "Larger model's parameters N_l; default: param_multiplier * N_s."})
    param_multiplier: float = field(default=14.0, metadata={"help": "N_l / N_s when large_model_params is not set (paper: ~14)."})
    large_model_samples: str | None = field(default=None, metadata={"help": "Larger model's greedy answers (problem_id, correct): parquet or `ttstrain sample` folder."})
    large_model_accuracy: float | None = field(default=None, metadata={"help": "Larger model's greedy accuracy, when no per-problem samples are given."})
    inference_to_pretrain_ratios: list[float] = field(default_factory=lambda: list(co.PAPER_INFERENCE_TO_PRETRAIN_RATIOS), metadata={"help": "R = D_inference / D_pretrain values of the FLOPs-matched comparison."})
    pretrain_tokens: float | None = field(default=None, metadata={"help": "D_pretrain, only to print FLOPs totals (K depends on M and R alone)."})
    seed: int = field(default=0, metadata={"help": "Seed of the cross-validation folds."})


def strategy_label(method: str, config: dict) -> str:
    """A search method named with the hyperparameters that change it."""
    if method == "beam_search":
        return f"beam_search(M={config.get('beam_width', '?')})"
    if method == "lookahead":
        return f"lookahead(M={config.get('beam_width', '?')},k={config.get('lookahead_steps', '?')})"
    if method == "dvts":
        return f"dvts(M={config.get('beam_width', '?')})"
    if method == "revisions":
        return f"revisions(L={config.get('revision_length', '?')},{config.get('revision_selection', '?')})"
    return method


def load_search_rows(dirs: list[str], budget_key: str = "generations") -> tuple[list[dict], dict]:
    """Per-problem rows (problem_id, strategy, generations, accuracy) from search folders, and the
    first folder's config.json (for the generator's identity)."""
    rows, seen, first_config = [], set(), {}
    for i, d in enumerate(dirs):
        d = Path(d)
        config = json.loads((d / "config.json").read_text()) if (d / "config.json").exists() else {}
        if i == 0:
            first_config = config
        labels = {}
        results = read_rows(d / "results.parquet", columns=["problem_id", "method", "budget", "generations", "accuracy"])
        check_result_rows(results, d / "results.parquet", budget_key, columns=row_columns(d / "results.parquet"))
        for r in results:
            m = r["method"]
            if m not in labels:
                label = strategy_label(m, config)
                labels[m] = label if label not in seen else f"{label}@{d.name}"
            rows.append({"problem_id": str(r["problem_id"]), "strategy": labels[m],
                         "generations": r[budget_key], "accuracy": r["accuracy"]})
        seen |= set(labels.values())
    return rows, first_config


def load_revision_rows(path: str, selection: str = "auto", score_column: str = "score") -> list[dict]:
    rows = read_rows(path, columns=["problem_id", "chain", "step", "answer", "correct", score_column, "sequential",
                                    "parallel", "accuracy"])
    if not rows:
        raise InputError(path, "has no rows")
    if "chain" in rows[0]:
        check_sample_rows(rows, path, ("problem_id", "chain", "step", "correct"), columns=row_columns(path))
        if score_column != "score":
            if score_column not in rows[0]:
                raise ValueError(f"{path}: no column {score_column!r} (revision_score); columns: {sorted(rows[0])}")
            rows = [{**{k: v for k, v in r.items() if k != score_column}, "score": r.get(score_column)} for r in rows]
        return revision_accuracy_rows(rows, selection=selection)
    require_columns(row_columns(path), ("problem_id", "sequential", "parallel", "accuracy"), path)
    for i, r in enumerate(rows, 1):
        probability(r["accuracy"], path, i, "accuracy", what="accuracy")
    return [{"problem_id": str(r["problem_id"]), "strategy": revision_strategy(int(r["sequential"])),
             "sequential": int(r["sequential"]), "parallel": int(r["parallel"]),
             "generations": int(r["sequential"]) * int(r["parallel"]), "accuracy": float(r["accuracy"])} for r in rows]


def _bin_summary(values: dict[str, float], bins: dict[str, int]) -> dict:
    members = bin_members(bins)
    return {"sizes": {b: len(ps) for b, ps in members.items()},
            "value_range": {b: [min(values[p] for p in ps), max(values[p] for p in ps)] for b, ps in members.items()},
            "assignment": bins}


DEFINITIONS = {
    "bins": "quantiles of oracle pass@1 (mean correct over graded samples) or predicted difficulty (mean verifier "
            "final score over samples); bin 1 = easiest (highest value), bin 5 = hardest; rank i of n (value "
            "descending, ties by SHA-256 of the problem id) goes to bin 1 + floor(5 i / n), so sizes differ by at most 1",
    "budget": "generations (SearchCost.generations: N for best-of-N and beam search, N(k+1) for lookahead, L*P for "
              "revisions); a strategy counts at budget B with its run of the most generations <= B",
    "compute-optimal": "per bin and budget, each fold's questions are scored with the strategy of highest mean "
                       "accuracy on the bin's other fold (2-fold CV, folds stratified by bin, deterministic from "
                       "the seed); ties go to the baseline, then to the order listed; accuracy is the mean held-out "
                       "score over questions",
    "efficiency": "for each B, the smallest budget b at which compute-optimal reaches the baseline's accuracy at B, "
                  "linear in log2(budget) between measured budgets (no extrapolation); ratio B / b, None if never",
    "flops-matched": "K = M + 3(M-1)/R generations per question, from 6 N_l D_pre + 2 N_l D_inf = 6 N_s D_pre + "
                     "2 N_s D_inf K with M = N_l/N_s and R = D_inf/D_pre; the small model is scored at the largest "
                     "measured budget <= K (capped: K beyond the largest measured budget); verifier FLOPs not charged",
}


def run_compute_optimal(cfg: ComputeOptimalConfig, progress: bool = True) -> dict:
    if not cfg.search_dirs and not cfg.revisions:
        raise ValueError("give search_dirs (ttstrain search outputs) and/or revisions")
    out = Path(cfg.output_dir)
    # every input is read and checked before anything is written
    search_rows, search_config = load_search_rows(cfg.search_dirs, cfg.budget_key) if cfg.search_dirs else ([], {})
    revision_rows = load_revision_rows(cfg.revisions, cfg.revision_selection, cfg.revision_score) if cfg.revisions else []
    large_values = co.per_problem_mean(read_rows(cfg.large_model_samples, default_name="samples.parquet",
                                                  columns=["problem_id", "correct"], required=["problem_id", "correct"]),
                                        "correct") if cfg.large_model_samples else {}
    candidates = Path(cfg.search_dirs[0]) / "candidates.parquet" if cfg.search_dirs else None

    def best_of_n_candidates():
        if candidates is None or not candidates.exists():
            return []
        rows = [r for r in read_rows(candidates, columns=["problem_id", "run", "correct", "score"])
                if r.get("run") == "best_of_n"]
        if rows:
            check_sample_rows(rows, candidates, columns=row_columns(candidates))
        return rows

    if cfg.samples:
        samples = read_rows(cfg.samples, default_name="samples.parquet", columns=["problem_id", "correct", "score"],
                            required=["problem_id", "correct"])
    else:
        samples = best_of_n_candidates()
    if not samples:
        raise ValueError("no graded samples for the oracle bins: set `samples` (a search folder without best-of-N "
                         "candidates has none)")
    if cfg.scores:
        scored = read_rows(cfg.scores, default_name="candidates.parquet", columns=["problem_id", "score"],
                           required=["problem_id", "score"])
    elif any(r.get("score") is not None for r in samples):
        scored = samples
    else:
        scored = best_of_n_candidates()
    values = {"oracle": co.per_problem_mean(samples, "correct"), "predicted": co.per_problem_mean(scored, "score")}
    if not values["predicted"]:
        del values["predicted"]
    bins = {kind: co.quantile_bins(v, cfg.num_bins) for kind, v in values.items()}
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"definitions": DEFINITIONS,
                    "bins": {kind: _bin_summary(values[kind], bins[kind]) for kind in bins},
                    "bin_agreement": None, "families": {}}
    if "predicted" in bins:
        both = set(bins["oracle"]) & set(bins["predicted"])
        report["bin_agreement"] = sum(bins["oracle"][p] == bins["predicted"][p] for p in both) / max(1, len(both))
    write_parquet(out / "bins.parquet", [{"problem_id": p, **{f"{k}_value": values[k].get(p) for k in bins},
                                          **{f"{k}_bin": bins[k].get(p) for k in bins}} for p in sorted(bins["oracle"])])

    analysis_kw = {"seed": cfg.seed, "num_folds": cfg.num_folds, "interpolate": cfg.interpolate}
    if search_rows:
        table = co.strategy_table(search_rows)
        report["families"]["search"] = co.analyze_family(table, cfg.baseline, bins, strategies=cfg.strategies or None,
                                                         **analysis_kw)
    if revision_rows:
        table = co.strategy_table(revision_rows)
        by_length = [s for _, s in sorted({(r["sequential"], r["strategy"]) for r in revision_rows})]
        report["families"]["revisions"] = co.analyze_family(table, co.revision_strategy(1), bins, strategies=by_length,
                                                            **analysis_kw)
        report["revision_sweep"] = {kind: co.ratio_sweep(revision_rows, b) for kind, b in bins.items()}

    # §7: the larger model
    n_small = cfg.small_model_params or (search_config.get("generator") or {}).get("parameters")
    n_large = cfg.large_model_params or (None if n_small is None else cfg.param_multiplier * n_small)
    sizes_known = n_small is not None
    if n_small is None and n_large is None:
        n_small, n_large = 1.0, cfg.param_multiplier  # K depends on M = N_l / N_s alone
    elif n_small is None:
        raise ValueError("large_model_params needs small_model_params (the generator's size is unknown)")
    groups = []
    for name, fam in report["families"].items():
        for kind, sel in fam["compute_optimal"].items():
            large_acc, large_by_bin = cfg.large_model_accuracy, None
            if large_values:
                in_family = set(fam["problem_ids"])
                problems = sorted(p for p in bins[kind] if p in large_values and p in in_family)
                large_acc = sum(large_values[p] for p in problems) / len(problems) if problems else None
                large_by_bin = {b: sum(large_values[p] for p in ps) / len(ps)
                                for b, ps in co.bin_members(bins[kind], problems).items()}
            rows = co.flops_matched_comparison(sel["accuracy"], sel["by_bin"], n_small=float(n_small),
                                               n_large=float(n_large), large_accuracy=large_acc,
                                               large_by_bin=large_by_bin, ratios=cfg.inference_to_pretrain_ratios,
                                               d_pretrain=cfg.pretrain_tokens if sizes_known else None)
            groups.append({"family": name, "bins": kind, "rows": rows})
    report["flops_matched"] = {"n_small": float(n_small), "n_large": float(n_large), "sizes_known": sizes_known,
                               "large_accuracy": cfg.large_model_accuracy if not large_values else
                               sum(large_values.values()) / len(large_values),
                               "large_problems": len(large_values) or None, "groups": groups}

    plots = []
    for name, fam in report["families"].items():
        plots += family_plots(out, name, fam)
    if report.get("revision_sweep"):
        plots.append(plot_ratio_sweep(out / "revision_ratio_sweep.png", report["revision_sweep"]["oracle"],
                                         "Revisions: sequential/parallel ratio by oracle bin"))
    report["plots"] = [p.name for p in plots]
    write_json(out / "compute_optimal.json", report)
    write_text(out / "compute_optimal.md", markdown_report(report))
    write_resolved_config(out, cfg, small_model_params_resolved=n_small, large_model_params_resolved=n_large)
    if progress:
        for name, fam in report["families"].items():
            for kind, eff in fam["efficiency"].items():
                top = max((e["ratio"] for e in eff.values() if e["ratio"] is not None), default=None)
                print(f"[compute-optimal] {name} ({kind} bins): best efficiency ratio "
                      f"{'none' if top is None else f'{top:.2f}x'}; report in {out / 'compute_optimal.md'}")
    return report


def make_parser():
    return StageParser((ComputeOptimalConfig,))


def main(args: list[str] | None = None) -> None:
    (cfg,) = make_parser().parse_args_and_config(args)
    run_compute_optimal(cfg)


if __name__ == "__main__":
    main()
