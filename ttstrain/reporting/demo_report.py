"""report.md and the plots of `ttstrain demo`, rendered from the report dict (`report.json`).

    from ttstrain.reporting.demo_report import write_demo_report
    write_demo_report(Path("runs/demo"), json.load(open("runs/demo/report.json")))

The verdict lines (what the PRM ranks, whether a chain rises) are pure functions of measured
numbers, tested in tests/test_demo_report.py.
"""

from __future__ import annotations

import math
from pathlib import Path

from ttstrain.io import write_json, write_text
from ttstrain.reporting.method_comparison import comparison_markdown
from ttstrain.reporting.finding_targets import finding_rows
from ttstrain.reporting.markdown import fmt
from ttstrain.reporting.markdown import md_table
from ttstrain.reporting.plots import plot_curves


def write_demo_report(out: Path, report: dict) -> None:
    base = report["sampling"]
    curves = {"pass@N (oracle)": base["overall"]["pass_at"], "majority@N": base["overall"]["majority_at"]}
    plot_curves(out / "baselines.png", curves, "Default world: sampling baselines")
    by_level = {f"majority@N L{lvl}": v["majority_at"] for lvl, v in base["by_level"].items()}
    plot_curves(out / "majority_by_level.png", by_level, "Majority vote by level")
    bon = report["prm"]["best_of_n"]
    plot_curves(out / "best_of_n.png", {"PRM-weighted best-of-N": bon["weighted_at"],
                                        "majority@N": bon["majority_at"], "pass@N (oracle)": base["overall"]["pass_at"]},
                "Default world: PRM best-of-N vs majority")
    write_json(out / "report.json", report)

    s = report["sizes"]
    levels = list(base["by_level"])
    lines = [
        "# ttstrain demo report",
        "",
        f"Policy: `{report['generator'].get('model')}` ({report['generator'].get('parameters', '?')} parameters, "
        f"backend {report['generator']['backend']}).",
        f"Sizes: {s['test_problems']} test problems ({s['test_per_level']} per level, levels {s['levels']}), "
        f"{s['samples_per_problem']} samples per problem at temperature {s['temperature']}"
        + (" (--quick)." if s["quick"] else "."),
        "",
        "## Findings",
        "",
        findings_section(report["findings"], report["sizes"]["quick"], report.get("finding_targets")),
        "",
        "## Policy accuracy by level",
        "",
        md_table(["level", "greedy pass@1", "sampled pass@1", f"pass@{s['budgets'][-1]}", f"majority@{s['budgets'][-1]}"],
                 [[lvl, report["greedy_pass@1"][lvl], base["by_level"][lvl]["pass@1"],
                   base["by_level"][lvl]["pass_at"][s["budgets"][-1]], base["by_level"][lvl]["majority_at"][s["budgets"][-1]]]
                  for lvl in levels]
                 + [["all", report["greedy_pass@1"]["all"], base["overall"]["pass@1"],
                     base["overall"]["pass_at"][s["budgets"][-1]], base["overall"]["majority_at"][s["budgets"][-1]]]]),
        "",
        "## Accuracy vs samples per problem",
        "",
        md_table(["N", "pass@N", "majority@N"],
                 [[b, base["overall"]["pass_at"][b], base["overall"]["majority_at"][b]] for b in s["budgets"]]),
        "",
        "![baselines](baselines.png)",
        "",
        "![majority by level](majority_by_level.png)",
        "",
        "## Monte Carlo step labels (PRM training data)",
        "",
        labelling_section(report["labelling"], s),
        "",
        "## Process reward model",
        "",
        prm_section(report["prm"]),
        "",
        "## Test-time search and compute-optimal scaling",
        "",
        search_section(report["search"]),
        "",
        *value_head_search_lines(report.get("search_value_head")),
        "### DVTS and SLG against weighted best-of-N",
        "",
        search_methods_section(report["search_vs_best_of_n"]),
        "",
        "### Predicting best-of-N from a few samples",
        "",
        bon_prediction_section(report["bon_prediction"]),
        "",
        "## Revisions",
        "",
        revision_section(report["revisions"]),
        "",
        "## Cost",
        "",
        f"Sampling throughput: {report['throughput']['sample_generated_tokens_per_s']:.0f} generated tokens/s; "
        f"prompt tokens requested {report['throughput']['prompt_tokens_requested']}, actually prefilled "
        f"{report['throughput']['prompt_tokens_prefilled']} (shared-prefix KV reuse).",
        "",
        md_table(["stage", "seconds"], list(report["stage_seconds"].items())),
        "",
        machine_line(report.get("machine")),
        "",
    ]
    write_text(out / "report.md", "\n".join(lines))


def machine_line(machine: dict | None) -> str:
    if not machine:
        return ""
    env = ", ".join(f"{k}={v}" for k, v in machine["environment"].items()) or "no thread variables set"
    per_core = machine.get("threads_per_core")
    cores = f"{machine['cpu_count']} cores" + (f" ({per_core} thread{'s' if per_core != 1 else ''} per core)" if per_core else "")
    return (f"Machine: {machine['cpu']}, {cores}; torch {machine['torch']} "
            f"({machine['blas']}, {machine['torch_cpu_capability']} kernels, {machine['torch_threads']} threads); {env}.")


def value_head_search_lines(sr: dict | None) -> list[str]:
    """The search again with the value head alone as verifier (only a PRM with reference features has it)."""
    if not sr:
        return []
    return ["### The same search, scored by the value head alone", "",
            "The findings' targets read this one: the trained value head without the policy's token log-probs.", "",
            search_section(sr, "the PRM's value head alone as verifier (reference features off)"), ""]


def findings_section(findings: dict, quick: bool = False, targets: dict | None = None) -> str:
    rows = finding_rows(findings, quick, targets)
    table = md_table(["finding", "value", "target", "verdict"],
                     [[k, fmt(v) if isinstance(v, float) else v, t, verdict] for k, v, t, verdict in rows])
    return (table + "\n\nThe targets read the PRM's value head alone, without the policy's token log-probs. "
            "`deployed_prm_*` rows, DVTS and "
            f"SLG score with the PRM as the demo deploys it: {findings.get('deployed_prm', 'value head')}."
            + read_at_note(findings.get("at_16_keys_read_at") or {}))


def read_at_note(read_at: dict) -> str:
    """A sentence for a run that has no N = 16 and reads its *_at_16 findings at its largest budget."""
    names = {"best_of_n": "the best-of-N rows (weighted minus majority)",
             "search": "the search rows (compute-optimal efficiency, DVTS and SLG minus best-of-N)"}
    other = [f"{names[k]} at N = {n}" for k, n in read_at.items() if n is not None and n != 16 and k in names]
    if not other:
        return ""
    return " This run's `*_at_16` keys are read at its largest budget, not 16: " + "; ".join(other) + "."


def search_methods_section(cmp: dict) -> str:
    return ("Same test problems and PRM; every method at each budget N spends at most N generations "
            "(DVTS: N/4 subtrees of width 4; SLG: root samples, first-step states and the remainder to the "
            "state with the best reward-tail prediction). Differences in accuracy, paired over problems, "
            "with standard errors; oracle bin 1 is the easiest.\n\n" + comparison_markdown(cmp))


def bon_prediction_section(pred: dict) -> str:
    curves = pred["curves"]
    return "\n".join([
        f"From the first {pred['fit_samples']} PRM-scored samples of each of the {pred['questions']} test problems "
        f"(`ttstrain predict-bon`), the predicted best-of-N accuracy against what all samples show "
        f"(exact expectation over random N-subsets); mean absolute error over problems at "
        f"N = {pred['largest_checked_n']}: {fmt(pred['accuracy_mae_at_largest_n'])}.",
        "",
        md_table(["N", "predicted accuracy", "observed accuracy", "MAE over problems", "predicted reward",
                  "observed reward"],
                 [[n, c["predicted_accuracy"], c["observed_accuracy"], c["accuracy_mae"], c["predicted_reward"],
                   c["observed_reward"]] for n, c in curves.items()]),
        "",
        "![best-of-N prediction](predict_bon/predict_bon.png)",
    ])


def labelling_section(lab: dict, sizes: dict) -> str:
    sig = lab["signal"]
    return "\n".join([
        f"{lab['problems']} training problems ({sizes['label_problems_per_level']} per level), "
        f"{sizes['label_samples']} samples each, {sizes['label_rollouts']} rollouts per step prefix "
        f"(paper: 16 and 16; see recipes/default/label_mc/config_paper.yaml).",
        "",
        md_table(["samples", "kept", "dropped (no answer)", "steps labelled", "rollouts", "distinct prefixes",
                  "generated tokens", "labelled steps/s"],
                 [[lab["samples"], lab["samples_kept"], lab.get("samples_dropped_no_answer", 0), lab["steps_labelled"],
                   lab.get("rollouts", 0), lab.get("distinct_prefixes", 0), lab["generated_tokens"],
                   lab["labelled_steps_per_second"]]]),
        "",
        f"Signal: mean soft label of the non-final steps of samples that end correct "
        f"{sig['mean_label_steps_of_correct_samples']} vs wrong {sig['mean_label_steps_of_wrong_samples']}.",
    ])


def prm_section(prm: dict) -> str:
    tr, ho, bon = prm["training"], prm["heldout"], prm["best_of_n"]
    budgets = list(bon["weighted_at"])
    data = tr["data"]
    return "\n".join([
        f"Trained on the soft labels above from the policy's weights (BCE at step ends, lr {prm['learning_rate']}, "
        f"batch 16, up to {prm['epochs']} epochs, early stopping on the validation loss): "
        f"{data['train']['rows_kept']} training rows ({data['train'].get('questions', '?')} questions), "
        f"{data.get('validation', {}).get('rows_kept', 0)} validation rows "
        f"({data.get('validation', {}).get('questions', '?')} held-out questions); best validation BCE "
        f"{tr['best_validation_bce']:.4f} at {tr['best_checkpoint']} of {tr['optimizer_steps']} optimizer steps.",
        "",
        f"Held-out questions: BCE {ho['bce']}, step AUROC {ho['step_auroc']} (steps with Monte Carlo value >= "
        f"{ho['step_positive_at']} as positives: {ho['positive_steps']} of {ho['steps']}), solution AUROC "
        f"{ho['solution_auroc']} (last-step score vs final correctness).",
        "",
        f"Best-of-N on the test samples, {bon['problems']} problems, {bon['resamples']} random subsets per N "
        f"(the same subsets for every rule), aggregation `{bon['aggregation']}`:",
        "",
        md_table(["N", "PRM-weighted best-of-N", "PRM best-of-N (naive)", "majority@N"],
                 [[b, bon["weighted_at"][b], bon["naive_at"][b], bon["majority_at"][b]] for b in budgets]),
        "",
        weighted_vs_majority_line(bon),
        "",
        within_question_line(bon),
        "",
        *reference_feature_lines(prm),
        *likelihood_baseline_lines(prm),
        "![best-of-N](best_of_n.png)",
    ])


def headline_budget(curve: dict, preferred: int = 16):
    """The budget a one-line summary reads: N = 16 (the findings' targets) where measured, else the largest."""
    keys = list(curve)
    return next((k for k in keys if int(k) == preferred), keys[-1])


def weighted_vs_majority_line(bon: dict) -> str:
    """Weighted best-of-N minus majority at N = 16 (else the largest budget), with its paired standard error."""
    n = headline_budget(bon["weighted_at"])
    diff = bon["weighted_at"][n] - bon["majority_at"][n]
    se = (bon.get("weighted_minus_majority_se_at") or {}).get(n)
    verdict = "beats" if diff > 0 else ("ties" if diff == 0 else "is below")
    spread = f" (paired standard error over problems {se})" if se is not None else ""
    return f"At N = {n}, PRM-weighted best-of-N {verdict} majority by {diff:+.4f}{spread}."


def reference_feature_lines(prm: dict) -> list[str]:
    """The combiner the PRM scores with, and the value head alone (the ablation)."""
    spec, alone = prm.get("reference_features"), prm.get("value_head_only")
    if not spec:
        return []
    w = spec["weights"]
    lines = [
        f"The PRM scores with reference features (`train-prm --reference_features`): step logit = {w[0]:.3f} x "
        f"value-head logit + {w[1]:.3f} x min + {w[2]:.3f} x mean of the policy's token log-probs of the solution "
        f"so far + {spec['bias']:.3f}, fitted on the {spec['fitted_rows']} rows of the "
        f"{spec['fitted_on']} split ({spec['fitted_steps']} steps; their BCE {spec['bce_value_head_only']} with the value head alone, "
        f"{spec['bce_combined']} combined)."
        + (f" On the {spec['validation']['steps']} steps of the held-out validation questions: BCE "
           f"{spec['validation']['bce_value_head_only']} with the value head alone, {spec['validation']['bce_combined']} "
           "combined." if spec.get("validation") else " Not checked on held-out questions.")
        + (f" Warning: {spec['warning']}." if spec.get("warning") else ""), ""]
    if alone and alone.get("best_of_n"):
        ab, ho = alone["best_of_n"], alone.get("heldout") or {}
        n = headline_budget(ab["weighted_at"])
        lines += [f"Ablation, the value head alone: held-out BCE {ho.get('bce')}, step AUROC {ho.get('step_auroc')}; "
                  f"weighted best-of-{n} {ab['weighted_at'][n]} vs majority {ab['majority_at'][n]}; AUROC within a "
                  f"question {ab.get('within_question_auroc')}, pooled {ab.get('pooled_auroc')}.", ""]
    return lines


def likelihood_baseline_lines(prm: dict) -> list[str]:
    """The policy-likelihood baseline on the same samples and subsets: the verifier a trained PRM must beat."""
    lik = prm.get("likelihood_baseline")
    if not lik:
        return []
    lb = lik["best_of_n"]
    alone = (prm.get("value_head_only") or {}).get("best_of_n") or prm["best_of_n"]
    n = headline_budget(lb["weighted_at"])
    return [f"Baseline, the policy's own likelihood (`{lik['model']}`, geometric-mean token probability of the "
            f"solution, no training): AUROC within a question {lb.get('within_question_auroc')} (the value head "
            f"{alone.get('within_question_auroc')}), pooled {lb.get('pooled_auroc')}; likelihood-weighted best-of-{n} "
            f"{lb['weighted_at'][n]} vs majority {lb['majority_at'][n]} (paired standard error "
            f"{(lb.get('weighted_minus_majority_se_at') or {}).get(n)}).", ""]


def within_question_line(bon: dict, near_chance: float = 0.05) -> str:
    """How the PRM ranks answers inside a question vs across questions (what weighted best-of-N needs)."""
    within, pooled = bon.get("within_question_auroc"), bon.get("pooled_auroc")
    if within is None:
        return "No test problem has both right and wrong samples, so the PRM's ranking within a question is unmeasured."
    if within <= 0.5 + near_chance:
        verdict = ("near chance within a question: the PRM tells easy questions from hard ones, not right answers from "
                   "wrong ones, so weighting can add little to majority vote")
    else:
        verdict = "the PRM ranks right answers above wrong ones within a question"
    return (f"Ranking: AUROC of the solution scores against correctness {within} within a question (mean over the "
            f"{bon['within_question_problems']} problems with both right and wrong samples) vs {pooled} pooled over "
            f"all test samples; {verdict}.")


def revision_trend(first: float, last: float, attempts_per_step: int) -> str:
    """'rises', 'falls', or 'is flat within noise' when the change is under two standard errors of
    the difference of two proportions over `attempts_per_step` attempts each."""
    p = (first + last) / 2
    two_se = 2 * math.sqrt(2 * p * (1 - p) / attempts_per_step) if attempts_per_step else 0.0
    if abs(last - first) <= two_se:  # equal rates are flat even when the spread is 0 (both 0.0 or 1.0)
        return f"is flat within noise (2 standard errors: {two_se:.3f})"
    return "rises" if last > first else "falls"


def revision_section(rv: dict) -> str:
    d, tr = rv["data"], rv["training"]
    steps = rv["pass@1_by_revision_step"]
    first, last = steps[min(steps)], steps[max(steps)]
    trend = revision_trend(first, last, rv["problems"] * rv["num_chains"])
    fr = rv["flip_rates"]
    splits = sorted(rv["majority"], key=lambda k: (int(k.split("x")[0]) * int(k.split("x")[1]), k))
    curves = rv["curves"]
    budgets = sorted({b for c in curves.values() for b in c})
    kinds = list(rv["compute_optimal"])
    lines = [
        f"Data: {d['questions']} training problems x {d['samples_per_question']} answers at temperature "
        f"{rv['temperature']}; {d['correct']} correct answers became {d['rows']} rows "
        f"(k previous wrong attempts, histogram {d['k_histogram']}); {d['questions_without_correct']} problems had "
        f"no correct answer, {d['questions_without_incorrect']} no wrong one.",
        "",
        f"Revision SFT of the policy (loss on the correct answer only): lr {tr['learning_rate']}, batch {tr['batch']}, "
        f"{tr['epochs']} epochs, {tr['optimizer_steps']} optimizer steps; training loss {fmt(tr['first_loss'])} "
        f"(first logged) -> {fmt(tr['last_loss'])} (last), {fmt(tr['mean_loss'])} on average.",
        "",
        f"Sequential chains on {rv['problems']} test problems ({rv['num_chains']} chains x {rv['chain_length']} "
        f"attempts, each attempt conditioned on the chain's previous ones, at most 4). pass@1 by revision step "
        f"{trend} from step 1 to step {max(steps) + 1} ({first:.3f} -> {last:.3f}); the base policy's sampled pass@1 "
        f"on the same problems is {fmt(rv['base_policy_sampled_pass@1'])}.",
        "",
        md_table(["revision step"] + [str(s + 1) for s in steps], [["pass@1"] + [fmt(v) for v in steps.values()]]),
        "",
        f"A correct answer turned into a wrong one at the next revision {fmt(fr['correct_to_incorrect'])} of the time "
        f"({fr['transitions_from_correct']} transitions; the paper saw 0.38); a wrong one into a right one "
        f"{fmt(fr['incorrect_to_correct'])} ({fr['transitions_from_incorrect']}). The PRM's AUROC on the attempts: "
        f"{fmt(rv['prm_auroc'])}.",
        "",
        *answer_bounds_lines(rv.get("answer_bounds"), rv.get("changed_attempts")),
        "Accuracy of L sequential x P parallel attempts (budget L*P), answer by majority over all attempts or "
        "hierarchically with the PRM (weighted best-of-N within each chain, then across chains):",
        "",
        md_table(["L x P", "budget", "majority", "PRM hierarchical"],
                 [[k, int(k.split("x")[0]) * int(k.split("x")[1]), fmt(rv["majority"].get(k)),
                   fmt((rv["prm_hierarchical"] or {}).get(k))] for k in splits]),
        "",
        f"Compute-optimal over the sequential:parallel split ({rv['selection']} selection, "
        "oracle bins, 2-fold CV) against parallel sampling (L = 1):",
        "",
        md_table(["N"] + list(curves) + [f"compute-optimal ({k} bins)" for k in kinds],
                 [[b] + [fmt(c.get(b)) for c in curves.values()] + [fmt(rv["compute_optimal"][k].get(b)) for k in kinds]
                  for b in budgets]),
        "",
        "Sequential length chosen per oracle bin (1 = easiest) and budget, one choice per cross-validation fold:",
        "",
        choices_table(rv["choices_oracle"] or {}),
        "",
        "Plots: [compute_optimal/accuracy_revisions.png](compute_optimal/accuracy_revisions.png), "
        "[compute_optimal/revision_ratio_sweep.png](compute_optimal/revision_ratio_sweep.png).",
    ]
    return "\n".join(lines)


def answer_bounds_lines(bounds: dict | None, changed: dict | None = None) -> list[str]:
    """What keeping or excluding the previous answer buys on these problems, and how the revision
    model's changed wrong attempts compare with fresh samples (ttstrain.revisions.bounds)."""
    if not bounds:
        return []
    lines = [f"What a next attempt gets from the base policy's {bounds['samples_per_question']:g} samples per problem: "
             f"a fresh sample {fmt(bounds['first_attempt'])}; a fresh sample with the previous answer excluded "
             f"(what wrong-only revision contexts teach) {fmt(bounds['exclude_previous'])}; keeping a right answer "
             f"and excluding a wrong one (perfect error detection) {fmt(bounds['keep_or_exclude_oracle'])}."]
    if bounds["exclude_previous"] < bounds["first_attempt"]:
        lines[0] += (" Exclusion loses here (the wrong answers are spread thin), so a chain can rise above its "
                     "first attempt only as far as the revision model tells its right attempts from its wrong ones.")
    if changed and changed.get("changed_wrong_attempts"):
        lines[0] += (f" When the revision model changed a wrong answer ({changed['changed_wrong_attempts']} times), "
                     f"its new attempt was right {fmt(changed['right_after_change'])} of the time; a fresh base sample "
                     f"avoiding the previous answer would be right {fmt(changed['fresh_sample_excluding_previous'])}.")
    return lines + [""]


def choices_table(choices: dict) -> str:
    """bins x budgets, each cell the strategies chosen by the folds, `revisions(L=4)` shown as `L=4`."""
    budgets = sorted({int(b) for per in choices.values() for b in per})
    short = lambda name: name.replace("revisions(", "").rstrip(")")  # noqa: E731
    return md_table(["bin"] + [f"N={b}" for b in budgets],
                    [[k] + [" / ".join(short(c) for c in per.get(str(b), per.get(b, []))) for b in budgets]
                     for k, per in sorted(choices.items(), key=lambda kv: int(kv[0]))])


def search_section(sr: dict, verifier: str = "the PRM above as verifier") -> str:
    budgets = sr["budgets"]
    kinds = list(sr["compute_optimal"])
    rows = []
    for b in budgets:
        rows.append([b] + [fmt(sr["methods"][m].get(b)) for m in ("majority", "best_of_n_weighted", "beam_search")]
                    + [fmt(sr["compute_optimal"][k].get(b)) for k in kinds])
    low = [b for b in budgets if b <= 4]
    diffs = [sr["methods"]["beam_search"][b] - sr["methods"]["best_of_n_weighted"][b] for b in low]
    verdict = ("beats" if all(d > 0 for d in diffs) else "does not beat" if all(d <= 0 for d in diffs)
               else "is mixed against")
    bins_better = sorted(k for k, v in sr["beam_minus_bon_low_budget_by_oracle_bin"].items()
                         if any(d is not None and d > 0 for d in v.values()))
    eff = sr["efficiency"].get("oracle", {})
    best_eff = max((r for r in eff.values() if r is not None), default=None)
    return "\n".join([
        f"{sr['problems']} test problems, {verifier}, beam width M=4, budgets N = {budgets} "
        f"(generations; best-of-N curves from nested subsets averaged over resamplings).",
        "",
        md_table(["N", "majority", "PRM-weighted best-of-N", f"beam search ({sr['beam_strategy']})"]
                 + [f"compute-optimal ({k} bins)" for k in kinds], rows),
        "",
        f"At low budgets (N <= 4) beam search {verdict} best-of-N weighted overall "
        f"(beam minus best-of-N: {', '.join(f'N={b}: {d:+.3f}' for b, d in zip(low, diffs))}); "
        f"oracle difficulty bins where beam search is ahead at some N <= 4: {bins_better or 'none'} (1 = easiest).",
        "",
        md_table(["oracle bin"] + [f"beam - BoN, N={b}" for b in low],
                 [[k] + [fmt(v.get(b)) for b in low] for k, v in sorted(sr["beam_minus_bon_low_budget_by_oracle_bin"].items())]),
        "",
        f"Compute-optimal efficiency (oracle bins): the largest ratio of best-of-N's budget to the smallest "
        f"compute-optimal budget that matches its accuracy is {fmt(best_eff, 2)}"
        + ("x" if best_eff is not None else " (never matched)") + "; per budget: "
        + ", ".join(f"N={b}: {fmt(r, 2)}" for b, r in eff.items()) + ". "
        f"Oracle/predicted bin agreement {fmt(sr['bin_agreement'], 2)}. Full analysis: "
        f"[compute_optimal/compute_optimal.md](compute_optimal/compute_optimal.md).",
    ])
