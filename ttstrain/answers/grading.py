"""Answer extraction and equivalence checking for math reasoning (MATH, GSM8K).

    >>> from ttstrain.answers.grading import extract_answer, is_equivalent, grade
    >>> extract_answer("So $x = 2$.\\nThe answer is \\\\boxed{\\\\dfrac{1}{2}}.")
    '\\\\dfrac{1}{2}'
    >>> is_equivalent("0.5", "\\\\frac12")
    True
    >>> grade("... #### 1,234", "1234")
    True

From a shell: `python -m ttstrain.answers.grading PRED GOLD` prints the normalised forms and the verdict.

How a comparison is decided (`is_equivalent`):

1. Both answers are normalised (`ttstrain.answers.normalization.normalize_answer`).
2. Fast path, in this process: identical normalised strings; plain words (compared
   case-insensitively); or two plain numbers (compared exactly, or to 6 decimals when one is
   written as a decimal, as math-verify does).
3. Otherwise math-verify (`parse` + `verify`) runs in a worker process of the grading sandbox
   (`ttstrain.answers.sandbox`) under a hard wall-clock limit (`timeout`, default 1 s); running
   over counts as False. A pair longer than IN_PROCESS_MAX_CHARS is sent to a worker whole, so
   its normalisation runs under the same limit (normalisation is linear in the input, but no
   caller should depend on that). Answers longer than MAX_SYMBOLIC_CHARS never go to sympy.

Starting the sandbox (importing and warming up sympy) is not counted against `timeout`; call
`warm_up()` to pay it ahead of time.
"""
from __future__ import annotations

import functools
import sys
import time

from ttstrain.answers.normalization import (MAX_SYMBOLIC_CHARS, answer_key, extract_answer, extract_boxed,
                                           normalised_verdict, normalize_answer)
from ttstrain.answers.sandbox import NoVerdict, get_pool

# Pairs longer than this (both answers together) are compared wholly in a worker, normalisation
# included, so no input can hold the caller past the time limit; shorter ones normalise here in
# microseconds and go to a worker only when the fast path has no verdict.
IN_PROCESS_MAX_CHARS = 1000


# ---------------------------------------------------------------------------------------------
# Public comparison API
# ---------------------------------------------------------------------------------------------


def is_equivalent(pred: str | None, gold: str, timeout: float = 1.0) -> bool:
    """Whether the predicted answer means the same as the gold answer.

    `timeout` is a hard wall-clock limit in seconds on the whole comparison of a long pair
    (normalisation included) and on the symbolic check of a short one; running over counts as
    not equivalent. None as pred is never equivalent.
    """
    if pred is None or gold is None:
        return False
    if pred.strip() == gold.strip() and pred.strip():
        return True
    timeout = max(float(timeout), 0.01)
    if len(pred) + len(gold) > IN_PROCESS_MAX_CHARS:
        return _in_worker(pred, gold, timeout, whole=True)
    verdict, pred_n, gold_n = normalised_verdict(pred, gold)
    if verdict is not None:
        return verdict
    return _in_worker(pred_n, gold_n, timeout, whole=False)


def _in_worker(pred: str, gold: str, timeout: float, whole: bool) -> bool:
    try:
        return _symbolic_equal(pred, gold, timeout, whole)
    except NoVerdict:
        return False


def grade(solution_text: str, gold: str) -> bool:
    """Whether the final answer of a solution text matches the gold answer."""
    return is_equivalent(extract_answer(solution_text), gold)


def warm_up() -> None:
    """Start a symbolic worker now (and wait for it), so the first comparison is fast."""
    get_pool().warm_up()


@functools.lru_cache(maxsize=65536)
def _symbolic_equal(pred: str, gold: str, timeout: float, whole: bool = False) -> bool:
    # Many samples of a problem share an answer; caching saves a round-trip per repeat.
    return get_pool().compare(pred, gold, timeout, whole)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def _main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m ttstrain.answers.grading PRED GOLD", file=sys.stderr)
        return 2
    pred, gold = argv
    print(f"pred: {normalize_answer(pred)!r}")
    print(f"gold: {normalize_answer(gold)!r}")
    warm_up()  # so the time printed below is the comparison's, not the worker start-up's
    start = time.perf_counter()
    verdict = is_equivalent(pred, gold)
    print(f"equivalent: {verdict}  ({time.perf_counter() - start:.3f} s)")
    return 0



__all__ = ["IN_PROCESS_MAX_CHARS", "MAX_SYMBOLIC_CHARS", "answer_key", "extract_answer", "extract_boxed", "grade",
           "is_equivalent", "normalize_answer", "warm_up"]


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
