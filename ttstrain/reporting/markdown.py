"""Markdown helpers shared by every report: tables and number formatting.

    from ttstrain.reporting.markdown import md_table, fmt
    md_table(["N", "accuracy"], [[1, 0.25], [2, 0.5]])
"""

from __future__ import annotations

from typing import Sequence


def md_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(x, digits: int = 3, missing: str = "-") -> str:
    """A number for a report cell: floats to `digits` places, None as `missing`."""
    return missing if x is None else f"{x:.{digits}f}"


def cell(x, digits: int = 3) -> str:
    """Any value for a table cell: None as an em dash, booleans as yes/no, floats to `digits` places."""
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)
