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
    rise_standard_errors: k     (a list, such as revision pass@1 by step) last - first >= k * findings["<key minus _by_step>_se"]
    below: s, below_quick: s    value < s (with --quick, below_quick)
    note: text                  said after the target, in parentheses
"""

from __future__ import annotations

from pathlib import Path

import yaml

TARGETS_FILE = "targets.yaml"
CONDITIONS = {"at_least", "above", "by", "standard_errors", "rise_standard_errors", "below", "below_quick", "note"}

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
    targets = yaml.safe_load(path.read_text()) or {}
    if not isinstance(targets, dict):
        raise ValueError(f"{path}: expected a mapping of finding -> conditions, got {type(targets).__name__}")
    for key, conditions in targets.items():
        if not isinstance(conditions, dict) or not conditions:
            raise ValueError(f"{path}: {key}: expected a mapping of conditions ({', '.join(sorted(CONDITIONS))})")
        unknown = set(conditions) - CONDITIONS
        if unknown:
            raise ValueError(f"{path}: {key}: unknown condition(s) {sorted(unknown)}; "
                             f"known: {', '.join(sorted(CONDITIONS))}")
        if ("above" in conditions) != ("by" in conditions):
            raise ValueError(f"{path}: {key}: 'above' and 'by' go together (value >= above's finding + by)")
    return targets


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
        texts.append(f"step {len(value) if isinstance(value, list) and value else 'last'} - step 1 >= "
                     f"{conditions['rise_standard_errors']:g} SE")
        oks.append(None if rise is None else rise[0] >= conditions["rise_standard_errors"] * rise[1])
    if "below" in conditions:
        limit = conditions.get("below_quick", conditions["below"]) if quick else conditions["below"]
        texts.append(f"< {limit:g}" + (" (--quick)" if quick else ""))
        oks.append(None if value is None else value < limit)
    text = " and ".join(texts) + (f" ({conditions['note']})" if conditions.get("note") else "")
    ok = None if any(o is None for o in oks) or not oks else all(oks)
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
