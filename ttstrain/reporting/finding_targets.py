"""Targets for the pipeline's findings and the verdict of a run against each.

`report.md` opens with the findings table built here: value, target, verdict (`met`, `missed`, or
`-` where a finding has no target or a stage did not run). A recipe folder states its targets in
`targets.yaml` (finding key -> conditions, all of which must hold); without one, the default
world's (`DEFAULT_TARGETS`, issue #16's, also `recipes/default/targets.yaml`). `report.json`'s
`findings` block holds the values alone and `finding_targets` the targets read.

    from ttstrain.reporting.finding_targets import finding_rows, load_targets
    targets = load_targets("recipes/smollm2-135m")          # its targets.yaml, else DEFAULT_TARGETS
    rows = finding_rows(report["findings"], quick=False, targets=targets)   # [[finding, value, target, verdict], ...]

Conditions a finding's entry may hold:
    at_least: x                 value >= x
    above: other_key, by: m     value >= findings[other_key] + m
    standard_errors: k          value >= k * findings["<key>_se"]
    rise_standard_errors: k     (revision_pass1_by_step only) last - first step >= k * findings["revision_pass1_se"]
    below: s, below_quick: s    value < s (with --quick, below_quick)
    note: text                  said after the target, in parentheses
"""

from __future__ import annotations

from pathlib import Path

import yaml

TARGETS_FILE = "targets.yaml"
NUMBER_CONDITIONS = ("at_least", "by", "standard_errors", "rise_standard_errors", "below", "below_quick")
CONDITIONS = {*NUMBER_CONDITIONS, "above", "note"}

# The keys of `findings` (ttstrain.reporting.demo_summary.demo_findings) a target may name; those that
# hold a number, and the one list a rise is read on.
NUMBER_FINDINGS = (
    "value_head_within_question_auroc", "weighted_minus_majority_at_16", "weighted_minus_majority_at_16_se",
    "deployed_prm_within_question_auroc", "deployed_prm_weighted_minus_majority_at_16",
    "deployed_prm_weighted_minus_majority_at_16_se", "likelihood_within_question_auroc",
    "likelihood_weighted_minus_majority_at_16", "revision_pass1_se", "compute_optimal_efficiency_at_16",
    "compute_optimal_min_gain_over_bon", "deployed_prm_compute_optimal_efficiency_at_16",
    "deployed_prm_compute_optimal_min_gain_over_bon", "dvts_minus_bon_at_16", "slg_minus_bon_at_16",
    "bon_prediction_error", "demo_seconds")
LIST_FINDINGS = ("revision_pass1_by_step",)

# The default world's targets (issue #16); recipes/default/targets.yaml holds the same.
DEFAULT_TARGETS = {
    "value_head_within_question_auroc": {"at_least": 0.75},
    "weighted_minus_majority_at_16": {"at_least": 0.03},
    "revision_pass1_by_step": {"rise_standard_errors": 2},
    "compute_optimal_efficiency_at_16": {"at_least": 2.0},
    "compute_optimal_min_gain_over_bon": {"at_least": 0.0, "note": "at least best-of-N at every N"},
    "demo_seconds": {"below": 1800, "below_quick": 300},
}


def load_targets(recipes: str | Path) -> dict:
    """The recipe folder's `targets.yaml`, checked, else `DEFAULT_TARGETS`."""
    path = Path(recipes) / TARGETS_FILE
    if not path.exists():
        return DEFAULT_TARGETS
    try:
        targets = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(targets, dict):
        raise ValueError(f"{path}: expected a mapping of finding -> conditions, got {type(targets).__name__}")
    for key, conditions in targets.items():
        check_target(key, conditions, f"{path}: {key}")
    return targets


def check_target(key, conditions, where: str) -> None:
    """Raise ValueError (prefixed with `where`) unless `conditions` can judge finding `key`."""
    if key not in NUMBER_FINDINGS + LIST_FINDINGS:
        raise ValueError(f"{where}: not a finding with a target; one of {', '.join(NUMBER_FINDINGS + LIST_FINDINGS)}")
    if not isinstance(conditions, dict) or not set(conditions) - {"note"}:
        raise ValueError(f"{where}: expected a mapping of conditions ({', '.join(sorted(CONDITIONS))})")
    unknown = set(conditions) - CONDITIONS
    if unknown:
        raise ValueError(f"{where}: unknown condition(s) {sorted(unknown)}; known: {', '.join(sorted(CONDITIONS))}")
    for name in NUMBER_CONDITIONS:
        value = conditions.get(name)
        if name in conditions and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"{where}: {name} must be a number, got {value!r}"
                             + (" (YAML reads 1e3 as text: write 1000 or 1.0e+3)" if isinstance(value, str) else ""))
    if ("above" in conditions) != ("by" in conditions):
        raise ValueError(f"{where}: 'above' and 'by' go together (value >= above's finding + by)")
    if "above" in conditions and conditions["above"] not in NUMBER_FINDINGS:
        raise ValueError(f"{where}: above: {conditions['above']!r} is not a finding holding a number; "
                         f"one of {', '.join(NUMBER_FINDINGS)}")
    if "standard_errors" in conditions and _se_key(key) not in NUMBER_FINDINGS:
        raise ValueError(f"{where}: standard_errors needs the finding's standard error, and there is no {_se_key(key)}")
    if "below_quick" in conditions and "below" not in conditions:
        raise ValueError(f"{where}: below_quick needs below (the limit of a full run)")
    if "note" in conditions and (not isinstance(conditions["note"], str) or "|" in conditions["note"]):
        raise ValueError(f"{where}: note must be text without '|' (it sits in a markdown table)")
    on_list = key in LIST_FINDINGS
    if on_list != ({"rise_standard_errors"} >= set(conditions) - {"note"}):
        raise ValueError(f"{where}: " + ("a list of pass@1 by step takes rise_standard_errors only" if on_list
                                         else "rise_standard_errors is read on revision_pass1_by_step only"))


def _number(key: str, x: float) -> str:
    if "efficiency" in key:
        return f"{x:g}x"
    return f"{x:+g}" if ("minus" in key or "gain" in key) and x else f"{x:g}"


def _se_key(key: str) -> str:
    return (key[:-len("_by_step")] if key.endswith("_by_step") else key) + "_se"


def _rise(findings: dict, key: str) -> tuple[float, float] | None:
    steps, se = findings.get(key) or [], findings.get(_se_key(key))
    if not isinstance(steps, list) or len(steps) < 2 or se is None:
        return None
    return steps[-1] - steps[0], se


def _judge(key: str, conditions: dict, findings: dict, quick: bool) -> tuple[str, bool | None]:
    """The target's text and whether the run meets it (None: a value it needs is missing)."""
    value, texts, oks = findings.get(key), [], []
    if "at_least" in conditions:
        texts.append(f">= {_number(key, conditions['at_least'])}")
        oks.append(None if value is None else value >= conditions["at_least"])
    if "above" in conditions:
        other = findings.get(conditions["above"])
        texts.append(f">= {conditions['above']} {conditions['by']:+g}")
        oks.append(None if value is None or other is None else value >= other + conditions["by"])
    if "standard_errors" in conditions:
        se = findings.get(_se_key(key))
        texts.append(f">= {conditions['standard_errors']:g} SE")
        oks.append(None if value is None or se is None else value >= conditions["standard_errors"] * se)
    if "rise_standard_errors" in conditions:
        rise = _rise(findings, key)
        texts.append(f"step {len(value) if isinstance(value, list) and len(value) > 1 else 4} - step 1 >= "
                     f"{conditions['rise_standard_errors']:g} SE")
        oks.append(None if rise is None else rise[0] >= conditions["rise_standard_errors"] * rise[1])
    if "below" in conditions:
        limit = conditions.get("below_quick", conditions["below"]) if quick else conditions["below"]
        texts.append(f"< {limit:g}" + (" (--quick)" if quick else ""))
        oks.append(None if value is None else value < limit)
    text = " and ".join(texts) + (f" ({conditions['note']})" if conditions.get("note") else "")
    # one condition missed is a miss even where another lacks its value
    ok = False if False in oks else (None if None in oks or not oks else True)
    return text, ok


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "missed")


def finding_rows(findings: dict, quick: bool, targets: dict | None = None) -> list[list]:
    """[finding, value, target, verdict] for every finding, in the block's order."""
    targets = DEFAULT_TARGETS if targets is None else targets
    # search ran (it gave a smallest gain) but compute-optimal never reached best-of-16's accuracy
    never_matched = (findings.get("compute_optimal_efficiency_at_16") is None
                     and findings.get("compute_optimal_min_gain_over_bon") is not None)
    rows = []
    for key, value in findings.items():
        if key == "at_16_keys_read_at":  # said in a sentence under the table
            continue
        target, ok = _judge(key, targets[key], findings, quick) if key in targets else ("", None)
        rise = _rise(findings, key)
        if key == "revision_pass1_by_step" and rise is not None:
            value = f"{value} (rise {rise[0]:+.3f})"
        if key == "compute_optimal_efficiency_at_16" and never_matched:
            value = "none (compute-optimal never reaches best-of-N's accuracy at the largest N)"
            ok = False if target else None
        rows.append([key, value, target or "-", _verdict(ok)])
    return rows
