"""compute_optimal.md: the human summary of `ttstrain compute-optimal`'s report dict.

    from ttstrain.reporting.compute_optimal_report import markdown_report
    text = markdown_report(json.load(open("runs/compute_optimal/compute_optimal.json")))
"""

from __future__ import annotations

from typing import Mapping

from ttstrain.reporting.markdown import cell, md_table


def markdown_report(report: Mapping) -> str:
    """The human summary of `report` (as built by `ttstrain.stages.compute_optimal`)."""
    lines = ["# Compute-optimal test-time scaling", "", "## Definitions", ""]
    lines += [f"- **{k}**: {v}" for k, v in report["definitions"].items()]
    lines += ["", "## Difficulty bins (bin 1 = easiest)", ""]
    bins = report["bins"]
    headers = ["bin"] + [f"{kind}: questions" for kind in bins] + [f"{kind}: value range" for kind in bins]
    all_bins = sorted({int(b) for kind in bins.values() for b in kind["sizes"]})
    lines.append(md_table(headers, [[b] + [bins[k]["sizes"].get(b, 0) for k in bins]
                                    + [" – ".join(cell(v) for v in bins[k]["value_range"].get(b, [None, None]))
                                       for k in bins] for b in all_bins]))
    if report.get("bin_agreement") is not None:
        lines += ["", f"Predicted bin equals oracle bin for {report['bin_agreement']:.1%} of questions."]
    for name, fam in report["families"].items():
        budgets = fam["budgets"]
        lines += ["", f"## {name}", "", f"{fam['problems']} questions ({fam['dropped_problems']} dropped for missing "
                  f"runs or bins); baseline `{fam['baseline']}`; budgets in generations.", "",
                  "### Accuracy vs budget", ""]
        rows = [[s] + [cell(c.get(B)) for B in budgets] for s, c in fam["curves"].items()]
        rows += [[f"**compute-optimal ({kind} bins, 2-fold CV)**"] + [cell(sel["accuracy"].get(B)) for B in budgets]
                 for kind, sel in fam["compute_optimal"].items()]
        lines.append(md_table(["strategy"] + [f"N={B}" for B in budgets], rows))
        lines += ["", "Each strategy at its measured budgets in generations (lookahead with N beams at N(k+1), "
                  "L revision steps x P chains at L*P); compute-optimal at the baseline's budgets."]
        for kind, sel in fam["compute_optimal"].items():
            lines += ["", f"### Per bin, {kind} bins: {fam['baseline']} vs compute-optimal (choices fold 0 / fold 1)", ""]
            base = fam["by_bin"][kind][fam["baseline"]]
            rows = []
            for b in sorted(sel["by_bin"]):
                rows.append([b] + [f"{cell(base[b].get(B))} → {cell(sel['by_bin'][b].get(B))} "
                                   f"({' / '.join(sel['choices'][b][B])})" for B in budgets])
            lines.append(md_table(["bin"] + [f"N={B}" for B in budgets], rows))
            eff = fam["efficiency"][kind]
            lines += ["", f"Efficiency ({kind} bins): budget b at which compute-optimal reaches "
                      f"{fam['baseline']} at B, and B / b (≥: reached at the smallest budget measured).", ""]
            lines.append(md_table(["B", "baseline accuracy", "matched b", "B / b"],
                                  [[B, cell(e["baseline_accuracy"]), cell(e["matched_budget"], 2),
                                    ("≥ " if e.get("lower_bound") else "") + cell(e["ratio"], 2)]
                                   for B, e in eff.items()]))
    fm = report.get("flops_matched")
    if fm:
        lines += ["", "## FLOPs-matched comparison with a larger model (§7)", "",
                  (f"N_s = {fm['n_small']:.4g}, N_l = {fm['n_large']:.4g} " if fm.get("sizes_known", True) else "")
                  + f"(M = {fm['n_large'] / fm['n_small']:.3g}); "
                  f"larger model greedy accuracy {cell(fm['large_accuracy'])}. K = M + 3(M-1)/R generations per "
                  "question; the small model is scored at the largest measured budget ≤ K.", ""]
        for group in fm["groups"]:
            rows = group["rows"]
            lines += [f"**{group['family']}, {group['bins']} bins**", ""]
            bins_ = sorted({b for r in rows for b in r["by_bin"]})
            table = [[cell(r["ratio"], 2), cell(r["matched_generations"], 2),
                      cell(r["budget_used"]) + (" (capped)" if r["capped"] else ""),
                      cell(r["small_accuracy"]), cell(r["large_accuracy"]), cell(r["beats"])]
                     + [cell(r["by_bin"][b]["margin"]) for b in bins_] for r in rows]
            lines.append(md_table(["R = D_inf/D_pre", "K", "budget used", "small (compute-optimal)", "large greedy",
                                   "beats"] + [f"bin {b} margin" for b in bins_], table))
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"
