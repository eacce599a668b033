"""Checks of every dataset a stage reads, run before the stage writes anything.

A bad row fails with `InputError`, whose message names the file, the row (1-based, in the
file's order) and the field, and says what was wrong and what was expected:

    labels.parquet, row 7, field 'labels': label 2 is nan; labels must be finite numbers in [0, 1]

The checkers below are the one place these rules live; stages call the one for what they read:
  check_prm_rows         PRM step labels (train-prm, eval-prm): prompt, completions, labels
  check_sample_rows      graded samples (eval-prm, eval-revision, compute-optimal)
  check_result_rows      per-problem search results (compute-optimal)
  check_revision_rows    revision SFT rows (train-revision)
  check_stepwise_input   a converter's input row (TRL stepwise: prompt, completions, labels)

    from ttstrain.validation import check_prm_rows
    check_prm_rows(rows, "runs/label_mc/data/train-00000-of-00001.parquet")
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Iterable, Mapping, Sequence


class InputError(ValueError):
    """A dataset a stage reads is malformed; the message says where (file, row, field) and why."""

    def __init__(self, source, message: str, row: int | None = None, field: str | None = None,
                 row_name: str = "row"):
        parts = [str(source)] if source is not None else []
        if row is not None:
            parts.append(f"{row_name} {row}")
        if field is not None:
            parts.append(f"field {field!r}")
        super().__init__(f"{', '.join(parts)}: {message}" if parts else message)
        self.source, self.row, self.field, self.detail = source, row, field, message

    def located(self, source, row: int, row_name: str = "row") -> "InputError":
        """The same error, placed at `row` of `source` (for checks that ran on one row alone)."""
        return InputError(source, self.detail, row, self.field, row_name)


def require_columns(columns: Iterable[str], required: Sequence[str], source) -> None:
    have = set(columns)
    missing = [c for c in required if c not in have]
    if missing:
        raise InputError(source, f"no column {', '.join(map(repr, missing))} (needs {', '.join(required)}; "
                                 f"has {', '.join(sorted(have)) or 'none'})")


def require_rows(rows: Sequence, source, what: str = "rows") -> None:
    if len(rows) == 0:
        raise InputError(source, f"has no {what}; nothing to read")


def is_number(value) -> bool:
    """A real number that is not a string (bools count: TRL's stepwise labels are bools)."""
    return isinstance(value, Real)


def probability(value, source, row: int, field: str, what: str = "value") -> float:
    """`value` as a float in [0, 1]; anything else (a string, None, NaN, 1.7) is an InputError."""
    if not is_number(value):
        raise InputError(source, f"{what} is {value!r} ({type(value).__name__}); expected a number in [0, 1]",
                         row, field)
    x = float(value)
    if not math.isfinite(x) or not 0.0 <= x <= 1.0:
        raise InputError(source, f"{what} is {x}; expected a finite number in [0, 1]", row, field)
    return x


def number_list(value, source, row: int, field: str) -> list:
    """A list (or array) value; a string, which Python would happily iterate, is refused."""
    if isinstance(value, (str, bytes)) or isinstance(value, Mapping) or not hasattr(value, "__len__"):
        raise InputError(source, f"is {type(value).__name__} {_short(value)}; expected a list", row, field)
    return list(value)


def probability_list(value, source, row: int, field: str) -> list[float]:
    values = number_list(value, source, row, field)
    return [probability(x, source, row, field, what=f"entry {i}") for i, x in enumerate(values)]


def string_list(value, source, row: int, field: str, non_empty: bool = True) -> list[str]:
    values = number_list(value, source, row, field)
    for i, x in enumerate(values):
        if not isinstance(x, str):
            raise InputError(source, f"entry {i} is {type(x).__name__} {_short(x)}; expected a string", row, field)
    if non_empty and not values:
        raise InputError(source, "is empty; expected at least one step", row, field)
    return values


def text(value, source, row: int, field: str) -> str:
    if not isinstance(value, str):
        raise InputError(source, f"is {type(value).__name__} {_short(value)}; expected a string", row, field)
    return value


def flag(value, source, row: int, field: str) -> bool:
    """A bool (or 0/1); None and strings are refused."""
    if isinstance(value, bool) or (is_number(value) and float(value) in (0.0, 1.0)):
        return bool(value)
    raise InputError(source, f"is {_short(value)}; expected true/false", row, field)


def _short(value, width: int = 40) -> str:
    r = repr(value)
    return r if len(r) <= width else r[:width - 3] + "..."


# ---------------------------------------------------------------------------------------------
# one checker per kind of dataset

PRM_COLUMNS = ("prompt", "completions", "labels")


def check_prm_rows(rows: Sequence[Mapping], source, columns: Iterable[str] | None = None) -> None:
    """PRM step labels in TRL's stepwise schema: one label in [0, 1] per step, steps as strings."""
    require_columns(columns if columns is not None else (rows[0].keys() if rows else PRM_COLUMNS), PRM_COLUMNS,
                    source)
    require_rows(rows, source)
    for i, r in enumerate(rows, 1):
        text(r["prompt"], source, i, "prompt")
        steps = string_list(r["completions"], source, i, "completions")
        labels = number_list(r["labels"], source, i, "labels")
        if len(labels) != len(steps):
            raise InputError(source, f"{len(labels)} labels for {len(steps)} steps (completions); "
                                     f"expected one label per step", i, "labels")
        for k, x in enumerate(labels):
            probability(x, source, i, "labels", what=f"label {k}")
        if r.get("hard_labels") is not None:
            hard = probability_list(r["hard_labels"], source, i, "hard_labels")
            if len(hard) != len(steps):
                raise InputError(source, f"{len(hard)} hard labels for {len(steps)} steps", i, "hard_labels")
        if r.get("final_correct") is not None:
            flag(r["final_correct"], source, i, "final_correct")


def check_sample_rows(rows: Sequence[Mapping], source, required: Sequence[str] = ("problem_id", "correct"),
                      columns: Iterable[str] | None = None) -> None:
    """Graded samples: the columns a reader needs, `correct` a bool, `score` (if any) a finite number."""
    require_columns(columns if columns is not None else (rows[0].keys() if rows else ()), required, source)
    require_rows(rows, source, "samples")
    for i, r in enumerate(rows, 1):
        if r.get("problem_id") is None and "problem_id" in required:
            raise InputError(source, "is empty", i, "problem_id")
        if "correct" in required:
            flag(r.get("correct"), source, i, "correct")
        if "steps" in required and r.get("steps") is not None:
            string_list(r["steps"], source, i, "steps", non_empty=False)
        score = r.get("score")
        if score is not None and (not is_number(score) or not math.isfinite(float(score))):
            raise InputError(source, f"is {_short(score)}; expected a finite number", i, "score")


def check_result_rows(rows: Sequence[Mapping], source, budget_key: str = "generations",
                      columns: Iterable[str] | None = None) -> None:
    """Per-problem search results: problem_id, method, a positive budget and an accuracy in [0, 1]."""
    required = ("problem_id", "method", budget_key, "accuracy")
    require_columns(columns if columns is not None else (rows[0].keys() if rows else ()), required, source)
    require_rows(rows, source, "results")
    for i, r in enumerate(rows, 1):
        for key in ("problem_id", "method"):
            if r.get(key) is None:
                raise InputError(source, "is empty", i, key)
        budget = r.get(budget_key)
        if not is_number(budget) or isinstance(budget, bool) or not math.isfinite(float(budget)) or budget <= 0:
            raise InputError(source, f"is {_short(budget)}; expected a positive number", i, budget_key)
        probability(r.get("accuracy"), source, i, "accuracy", what="accuracy")


REVISION_COLUMNS = ("question", "previous_attempts", "target")


def check_revision_rows(rows: Sequence[Mapping], source, columns: Iterable[str] | None = None) -> None:
    """Revision SFT rows: a question, a list of previous attempts (strings) and a target string."""
    require_columns(columns if columns is not None else (rows[0].keys() if rows else ()), REVISION_COLUMNS, source)
    require_rows(rows, source)
    for i, r in enumerate(rows, 1):
        text(r["question"], source, i, "question")
        string_list(r["previous_attempts"], source, i, "previous_attempts", non_empty=False)
        if not text(r["target"], source, i, "target").strip():
            raise InputError(source, "is empty; expected the correct solution", i, "target")


def check_stepwise_input(row: Mapping, source, index: int) -> tuple[str, list[str], list[float]]:
    """A TRL stepwise-supervision row as a converter reads it: (prompt, steps, labels)."""
    missing = [c for c in PRM_COLUMNS if c not in row]
    if missing:
        raise InputError(source, f"has no field {', '.join(map(repr, missing))} (needs {', '.join(PRM_COLUMNS)})",
                         index)
    prompt = text(row["prompt"], source, index, "prompt")
    steps = string_list(row["completions"], source, index, "completions")
    labels = probability_list(row["labels"], source, index, "labels")
    if len(labels) != len(steps):
        raise InputError(source, f"{len(labels)} labels for {len(steps)} steps", index, "labels")
    return prompt, steps, labels
