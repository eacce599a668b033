"""Search methods against a baseline at matched budgets: paired differences with standard errors,
overall and per difficulty bin, from a `ttstrain search` results.parquet.

For method A, baseline B and budget N, the difference is mean over problems of (acc_A - acc_B)
on the problems both were run on, and its standard error is the sample standard deviation of
the per-problem differences over sqrt(problems) (paired: each problem's difficulty cancels).

    from ttstrain.reporting.method_comparison import compare_methods, comparison_markdown
    cmp = compare_methods(rows, ["dvts", "slg"], "best_of_n_weighted", bins={"q1": 1, ...})
    print(comparison_markdown(cmp))
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from ttstrain.reporting.markdown import md_table


def paired_difference(a: Mapping[str, float], b: Mapping[str, float]) -> dict:
    both = sorted(set(a) & set(b))
    diffs = [a[p] - b[p] for p in both]
    if not diffs:
        return {"diff": None, "se": None, "problems": 0}
    mean = sum(diffs) / len(diffs)
    var = sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1) if len(diffs) > 1 else 0.0
    return {"diff": round(mean, 4), "se": round(math.sqrt(var / len(diffs)), 4), "problems": len(diffs)}


def compare_methods(rows: Sequence[Mapping], methods: Sequence[str], baseline: str,
                    bins: Mapping[str, int] | None = None) -> dict:
    """{method: {"overall": {N: diff}, "by_bin": {bin: {N: diff}}}} for every method present in rows."""
    acc: dict[str, dict[int, dict[str, float]]] = {}
    for r in rows:
        acc.setdefault(r["method"], {}).setdefault(int(r["budget"]), {})[str(r["problem_id"])] = float(r["accuracy"])
    if baseline not in acc:
        raise ValueError(f"the results have no baseline method {baseline!r}; methods: {sorted(acc)}")
    out = {"baseline": baseline, "methods": {}}
    for m in methods:
        if m not in acc:
            continue
        budgets = sorted(set(acc[m]) & set(acc[baseline]))
        entry = {"overall": {n: paired_difference(acc[m][n], acc[baseline][n]) for n in budgets}, "by_bin": {}}
        for k in sorted(set((bins or {}).values())):
            members = {p for p, b in bins.items() if b == k}
            entry["by_bin"][k] = {n: paired_difference({p: v for p, v in acc[m][n].items() if p in members},
                                                       {p: v for p, v in acc[baseline][n].items() if p in members})
                                  for n in budgets}
        out["methods"][m] = entry
    return out


def _fmt(d: dict | None) -> str:
    if not d or d.get("diff") is None:
        return "-"
    return f"{d['diff']:+.3f} ± {d['se']:.3f}"


def verdict(d: dict | None) -> str:
    """'ahead' / 'behind' when the difference is at least two standard errors from 0, else 'level'."""
    if not d or d.get("diff") is None:
        return "not run"
    if d["se"] > 0 and abs(d["diff"]) >= 2 * d["se"]:
        return "ahead" if d["diff"] > 0 else "behind"
    if d["se"] == 0 and d["diff"] != 0:
        return "ahead" if d["diff"] > 0 else "behind"
    return "level (within 2 SE)"


def comparison_markdown(cmp: dict) -> str:
    lines = []
    for m, entry in cmp["methods"].items():
        budgets = list(entry["overall"])
        top = budgets[-1] if budgets else None
        lines += [f"**{m}** minus {cmp['baseline']} (accuracy, paired standard error over problems); at N = {top}: "
                  f"{_fmt(entry['overall'].get(top))}, {verdict(entry['overall'].get(top))}.", "",
                  md_table(["", *[f"N={n}" for n in budgets]],
                           [["all problems", *[_fmt(entry["overall"][n]) for n in budgets]]]
                           + [[f"oracle bin {k}", *[_fmt(v[n]) for n in budgets]] for k, v in entry["by_bin"].items()]),
                  ""]
    return "\n".join(lines).rstrip()
