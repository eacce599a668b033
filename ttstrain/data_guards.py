"""Warnings about data that cannot teach anything: samples all wrong (or all right), labels all equal.

A PRM trained on labels that are all 0, or a sampling run whose pass@1 is 0, finishes without an
error and produces nothing useful; these checks say so at the end of the stage, print it, and
record it in the stage's `summary.json` under `warnings` (an empty list when all is well).

    from ttstrain.data_guards import sample_warnings, label_warnings
    sample_warnings(rows)      # ["pass@1 is 0.000 over 24 samples: ..."]
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

# pass@1 outside [LOW, HIGH] leaves too few right (or wrong) samples to learn from or to compare
PASS_AT_1_LOW, PASS_AT_1_HIGH = 0.02, 0.98
# labels whose most common value covers more than this share carry almost no signal
SAME_LABEL_SHARE = 0.95


def sample_warnings(rows: Sequence[dict]) -> list[str]:
    """Graded samples whose pass@1 is near 0 or 1, or that mostly have no answer."""
    if not rows:
        return ["no samples were written"]
    out = []
    acc = sum(bool(r["correct"]) for r in rows) / len(rows)
    if acc < PASS_AT_1_LOW:
        out.append(f"pass@1 is {acc:.3f} over {len(rows)} samples: the policy almost never solves these problems "
                   "(check the prompt format, few-shot examples, max_new_tokens and the answer format), so search "
                   "and PRM training have nothing right to find")
    elif acc > PASS_AT_1_HIGH:
        out.append(f"pass@1 is {acc:.3f} over {len(rows)} samples: almost every sample is right, so verifiers and "
                   "search have nothing to choose between (harder problems or a higher temperature)")
    no_answer = sum(r.get("answer") is None for r in rows) / len(rows)
    if no_answer > 0.5:
        out.append(f"{no_answer:.0%} of samples have no extractable answer (the answer format the grader reads: "
                   "\\boxed{...}, 'The answer is ...' or '#### ...')")
    return out


def label_warnings(rows: Sequence[dict]) -> list[str]:
    """Monte Carlo labels that are (almost) all the same value."""
    labels = [round(float(x), 6) for r in rows for x in r["labels"]]
    if not labels:
        return ["no step was labelled"]
    value, count = Counter(labels).most_common(1)[0]
    if count / len(labels) > SAME_LABEL_SHARE:
        return [f"{count / len(labels):.1%} of {len(labels)} step labels are {value:g}: a PRM trained on them learns "
                "a constant (the policy solves almost all or almost none of these problems; change the problems, "
                "the temperature or num_rollouts)"]
    return []


def report_warnings(stage: str, warnings: list[str]) -> list[str]:
    """Print each warning under the stage's name; returns them for the summary."""
    for w in warnings:
        print(f"[{stage}] WARNING: {w}", flush=True)
    return warnings
