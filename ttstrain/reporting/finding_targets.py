"""Targets for the demo's findings and the verdict of a run against each.

`report.md` opens with the findings table built here: value, target, verdict (`met`, `missed`, or
`-` where a finding has no target or a stage did not run). The targets are the paper's findings
made measurable on the default world; `report.json`'s `findings` block holds the values alone.

    from ttstrain.reporting.finding_targets import finding_rows
    rows = finding_rows(report["findings"], quick=False)   # [[finding, value, target, verdict], ...]
"""

from __future__ import annotations

FULL_DEMO_SECONDS, QUICK_DEMO_SECONDS = 1800, 300


def _rise(findings: dict) -> tuple[float, float] | None:
    steps, se = findings.get("revision_pass1_by_step") or [], findings.get("revision_pass1_se")
    if len(steps) < 2 or se is None:
        return None
    return steps[-1] - steps[0], se


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "missed")


def finding_rows(findings: dict, quick: bool) -> list[list]:
    """[finding, value, target, verdict] for every finding, in the block's order."""
    rise = _rise(findings)
    limit = QUICK_DEMO_SECONDS if quick else FULL_DEMO_SECONDS
    # search ran (it gave a smallest gain) but compute-optimal never reached best-of-16's accuracy
    never_matched = (findings.get("compute_optimal_efficiency_at_16") is None
                     and findings.get("compute_optimal_min_gain_over_bon") is not None)

    def at_least(key, bound):
        v = findings.get(key)
        return None if v is None else v >= bound

    targets = {
        "value_head_within_question_auroc": (">= 0.75", at_least("value_head_within_question_auroc", 0.75)),
        "weighted_minus_majority_at_16": (">= +0.03", at_least("weighted_minus_majority_at_16", 0.03)),
        "revision_pass1_by_step": ("step 4 - step 1 >= 2 SE",
                                   None if rise is None else rise[0] >= 2 * rise[1]),
        "compute_optimal_efficiency_at_16": (">= 2x", False if never_matched
                                             else at_least("compute_optimal_efficiency_at_16", 2.0)),
        "compute_optimal_min_gain_over_bon": (">= 0 (at least best-of-N at every N)",
                                              at_least("compute_optimal_min_gain_over_bon", 0.0)),
        "demo_seconds": (f"< {limit}" + (" (--quick)" if quick else ""),
                         None if findings.get("demo_seconds") is None else findings["demo_seconds"] < limit),
    }
    rows = []
    for key, value in findings.items():
        if key == "at_16_keys_read_at":  # said in a sentence under the table
            continue
        target, ok = targets.get(key, ("", None))
        if key == "revision_pass1_by_step" and rise is not None:
            value = f"{value} (rise {rise[0]:+.3f})"
        if key == "compute_optimal_efficiency_at_16" and never_matched:
            value = "none (compute-optimal never reaches best-of-N's accuracy at the largest N)"
        rows.append([key, value, target or "-", _verdict(ok)])
    return rows
