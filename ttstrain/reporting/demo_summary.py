"""The demo report's sections as data: what each stage's output says, and the `findings` block.

Each function reads a stage's summary (or its output folder) and returns plain dicts that go into
`report.json`; `ttstrain.reporting.demo_report` renders them. The findings are the figures every
run is compared by (null where a stage did not give them).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ttstrain.io import read_parquet
from ttstrain.reporting.method_comparison import compare_methods
from ttstrain.runner.shards import load_dataset_dir


def search_methods_vs_bon(search_dir: Path, co_report: dict) -> dict:
    """Beam search, DVTS and SLG minus weighted best-of-N at every budget, overall and per oracle bin."""
    rows = read_parquet(search_dir / "results.parquet")
    bins = co_report["bins"]["oracle"]["assignment"]
    return compare_methods(rows, ["beam_search", "dvts", "slg"], "best_of_n_weighted", bins=bins)


def _compute_optimal_figures(search: dict | None) -> tuple[float | None, float | None]:
    """Efficiency at the largest budget and the smallest compute-optimal minus best-of-N accuracy
    (oracle bins) of one search summary for the report."""
    if not search:
        return None, None
    co = search["compute_optimal"].get("oracle", {})
    base = search["methods"].get("best_of_n_weighted", {})
    gains = [co[b] - base[b] for b in co if co[b] is not None and base.get(b) is not None]
    efficiency = search["efficiency"].get("oracle", {})
    return (efficiency.get(max(search["budgets"])) if search.get("budgets") else None,
            round(min(gains), 4) if gains else None)


def demo_findings(report: dict, policy: str) -> dict:
    """The figures every run is compared by (null where a stage did not give them).

    The findings' targets read the PRM's value head alone: the PRM as trained where it has no
    reference features, else its value head (`prm.value_head_only`, `search_value_head`). The PRM
    as the demo deploys it (value head plus reference features) has the `deployed_prm_*` keys; the
    search-method rows (dvts, slg) use it too.
    """
    deployed = report["prm"]["best_of_n"]
    lik = (report["prm"].get("likelihood_baseline") or {}).get("best_of_n") or {}
    alone = (report["prm"].get("value_head_only") or {}).get("best_of_n") or deployed
    top = max(deployed["weighted_at"]) if deployed["weighted_at"] else None
    at16 = 16 if 16 in deployed["weighted_at"] else top
    vs = report["search_vs_best_of_n"]["methods"]
    efficiency, min_gain = _compute_optimal_figures(report.get("search_value_head") or report["search"])
    deployed_efficiency, deployed_min_gain = _compute_optimal_figures(report["search"])
    rev = report["revisions"]
    by_step = [rev["pass@1_by_revision_step"][k] for k in sorted(rev["pass@1_by_revision_step"])]
    attempts = rev["problems"] * rev["num_chains"]  # attempts at each revision step
    step_se = max((math.sqrt(p * (1 - p) / attempts) for p in by_step), default=None) if attempts else None

    def weighted_minus_majority(curves: dict):
        return (round(curves["weighted_at"][at16] - curves["majority_at"][at16], 4)
                if at16 in curves.get("weighted_at", {}) else None)

    def se_at16(curves: dict):
        return (curves.get("weighted_minus_majority_se_at") or {}).get(at16)

    def at_largest(method):
        overall = vs.get(method, {}).get("overall", {})
        return overall[max(overall)]["diff"] if overall else None

    search_budgets = (report.get("search") or {}).get("budgets") or []

    return {
        "policy": policy,
        "deployed_prm": "value head + reference features" if report["prm"].get("reference_features") else "value head",
        "value_head_within_question_auroc": alone.get("within_question_auroc"),
        "weighted_minus_majority_at_16": weighted_minus_majority(alone),
        "weighted_minus_majority_at_16_se": se_at16(alone),
        "deployed_prm_within_question_auroc": deployed.get("within_question_auroc"),
        "deployed_prm_weighted_minus_majority_at_16": weighted_minus_majority(deployed),
        "deployed_prm_weighted_minus_majority_at_16_se": se_at16(deployed),
        "likelihood_within_question_auroc": lik.get("within_question_auroc"),
        "likelihood_weighted_minus_majority_at_16": weighted_minus_majority(lik),
        "revision_pass1_by_step": by_step,
        "revision_pass1_se": None if step_se is None else round(step_se, 4),
        "compute_optimal_efficiency_at_16": efficiency,
        "compute_optimal_min_gain_over_bon": min_gain,
        "deployed_prm_compute_optimal_efficiency_at_16": deployed_efficiency,
        "deployed_prm_compute_optimal_min_gain_over_bon": deployed_min_gain,
        "dvts_minus_bon_at_16": at_largest("dvts"),
        "slg_minus_bon_at_16": at_largest("slg"),
        "bon_prediction_error": report["bon_prediction"]["accuracy_mae_at_largest_n"],
        # A run whose largest budget is under 16 reads the *_at_16 keys at its largest N: say which.
        "at_16_keys_read_at": {"best_of_n": at16, "search": max(search_budgets) if search_budgets else None},
        "demo_seconds": report["stage_seconds"]["total"],
    }


def revision_training_summary(model_dir: Path, revision_cfg) -> dict:
    """Optimizer settings, steps, and the first, last and mean training loss of the revision SFT run."""
    state_file = model_dir / "trainer_state.json"
    history = json.loads(state_file.read_text())["log_history"] if state_file.exists() else []
    losses = [h["loss"] for h in history if "loss" in h]
    mean_loss = next((h["train_loss"] for h in history if "train_loss" in h), None)
    return {"mean_loss": mean_loss, "learning_rate": revision_cfg.learning_rate, "epochs": revision_cfg.num_train_epochs,
            "batch": revision_cfg.per_device_train_batch_size * revision_cfg.gradient_accumulation_steps,
            "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
            "optimizer_steps": max((h.get("step", 0) for h in history), default=None)}


def label_signal(label_dir: Path) -> dict:
    """Mean soft label of steps in samples that end correct vs wrong (labels must carry signal)."""
    ds = load_dataset_dir(label_dir)
    right = [x for r in ds if r["final_correct"] for x in r["labels"][:-1]]
    wrong = [x for r in ds if not r["final_correct"] for x in r["labels"][:-1]]
    mean = lambda xs: round(sum(xs) / len(xs), 4) if xs else None  # noqa: E731
    return {"mean_label_steps_of_correct_samples": mean(right), "mean_label_steps_of_wrong_samples": mean(wrong),
            "steps_of_correct_samples": len(right), "steps_of_wrong_samples": len(wrong)}


def search_summary_for_report(summary: dict, co_report: dict) -> dict:
    """Accuracy per method and budget, beam vs best-of-N overall and per oracle bin, compute-optimal."""
    fam = co_report["families"]["search"]
    methods = {m: {int(b): e["accuracy"] for b, e in per_b.items()} for m, per_b in summary["methods"].items()}
    beam = next(s for s in fam["strategies"] if s.startswith("beam_search"))
    bon = fam["baseline"]
    by_bin = fam["by_bin"]["oracle"]
    low = [b for b in fam["budgets"] if b <= 4]
    beam_minus_bon_by_bin = {
        int(k): {int(b): (None if by_bin[beam][k][b] is None or by_bin[bon][k][b] is None
                          else round(by_bin[beam][k][b] - by_bin[bon][k][b], 4)) for b in low}
        for k in by_bin[bon]}
    return {
        "problems": summary["problems"], "budgets": summary["budgets"], "methods": methods,
        "generations": {m: {int(b): e["generations"] for b, e in per_b.items()} for m, per_b in summary["methods"].items()},
        "beam_strategy": beam, "baseline": bon, "beam_minus_bon_low_budget_by_oracle_bin": beam_minus_bon_by_bin,
        "compute_optimal": {kind: {int(b): v for b, v in sel["accuracy"].items()}
                            for kind, sel in fam["compute_optimal"].items()},
        "efficiency": {kind: {int(b): e["ratio"] for b, e in eff.items()} for kind, eff in fam["efficiency"].items()},
        "bin_agreement": co_report.get("bin_agreement"),
        "seconds": summary.get("seconds"),
    }


def revision_summary_for_report(data: dict | None, training: dict, evaluation: dict, co_report: dict,
                                data_cfg, selection: str) -> dict:
    """Revision data and training, pass@1 along chains against the base policy's samples on the same
    problems (the eval stage's answer bounds), selection rules per split, and the sequential-vs-parallel
    compute-optimal family."""
    bounds = evaluation.get("answer_bounds") or {}
    fam = co_report["families"].get("revisions", {})
    data = data or {}
    return {
        "data": {**{k: data.get(k, 0) for k in ("questions", "rows", "samples", "samples_valid", "correct", "incorrect",
                                                "questions_without_correct", "questions_without_incorrect",
                                                "samples_dropped_no_answer")},
                 "k_histogram": data.get("k_histogram"), "samples_per_question": data_cfg.num_samples},
        "training": training, "temperature": data_cfg.temperature,
        "problems": evaluation["problems"], "num_chains": evaluation["num_chains"],
        "chain_length": evaluation["chain_length"],
        "base_policy_sampled_pass@1": bounds.get("first_attempt"),
        "pass@1_by_revision_step": {int(k): v for k, v in evaluation["pass@1_by_revision_step"].items()},
        "flip_rates": evaluation["flip_rates"],
        "answer_bounds": evaluation.get("answer_bounds"),
        "changed_attempts": evaluation.get("changed_attempts"),
        "majority": evaluation["majority"],
        "prm_hierarchical": evaluation["verifiers"].get("prm", {}).get("hierarchical"),
        "prm_auroc": evaluation["verifiers"].get("prm", {}).get("auroc_all_attempts"),
        "compute_optimal": {kind: {int(b): v for b, v in sel["accuracy"].items()}
                            for kind, sel in fam.get("compute_optimal", {}).items()},
        "choices_oracle": fam.get("compute_optimal", {}).get("oracle", {}).get("choices"),
        "curves": {name: {int(b): v for b, v in c.items()} for name, c in fam.get("curves", {}).items()},
        "selection": selection,
    }
