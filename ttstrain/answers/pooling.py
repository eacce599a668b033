"""Pool one problem's answers by equivalence: answers that grade as equal get one key to vote under.

    >>> from ttstrain.answers.pooling import pool_answers
    >>> pool_answers(["1/2", "\\\\frac{1}{2}", "0.5", "3", None, "\\\\dfrac12"])
    ['1/2', '1/2', '1/2', '3', None, '1/2']

From a shell: `python -m ttstrain.answers.pooling ANSWER ...` prints each answer's pooled key.

`ttstrain.answers.grading.answer_key` is normalised text, so `1/2`, `\\frac{1}{2}` and `0.5` are three
keys though `is_equivalent` calls them one answer, and a vote over them undercounts it. Every
vote (search selection, revision selection, sampling baselines, eval-prm's best-of-N,
compute-optimal's revision curves) counts pooled keys instead. Grading every pair of N answers is
quadratic and a symbolic check can take up to the grading limit, so pooling works in two stages:

1. Canonical form, no sympy (`ttstrain.answers.normalization.canonical_form`): the normalised text,
   except that a plain number (integer, decimal, a/b, `\\frac{a}{b}`, `\\dfrac12`) is its exact
   value and plain words are compared in lower case. Answers with the same form are one answer.
2. Equivalence among the few distinct forms left: each new form, in order of first appearance,
   is compared with the first form of each group so far, in the order the groups were made, and
   joins the first group it matches (else it starts one). A comparison is `is_equivalent`'s,
   decided in this process where its fast path can (two plain numbers, a plain word), or where
   both answers are constant expressions (numbers, `\\frac`, `\\sqrt`, `^`, `\\pi`, `i`, + - * /)
   or lists of them, and some value of one, computed in floating point, is more than 1e-5
   (relative) from every value of the other: then they are not equal as numbers, tuples or sets
   (math-verify rounds to 6 decimals). Only pairs that need sympy to tell reach the grading
   sandbox. Whatever the evaluator cannot read exactly as LaTeX does (a mixed number
   `1\\frac{1}{2}`, `2^32`, a root of a negative number, an interval with `[`, a variable) goes to
   sympy. A form is placed once and remembered, so no pair of forms is compared twice for one pool.

Equivalence is not transitive in general (0.333333 is 1/3 to six places, and so is 0.3333333,
but a third answer may match only one of them); comparing only against each group's first form,
in a fixed order, keeps the grouping deterministic. A group's key is the normalised text
(`answer_key`) of its first-seen answer; None answers stay None. Integer answers (the default
world's) are exact values that never equal each other unless they are equal, so their pooled keys
are their answer keys and no symbolic check runs.

One `AnswerPool` belongs to one problem: a caller that votes over many subsets of a problem's
answers pools them all once and reads the keys of each subset from it.
"""

from __future__ import annotations

import cmath
import math
import re
import sys
from typing import Iterable, Sequence

from ttstrain.answers.normalization import canonical_form, fast_verdict
from ttstrain.answers.grading import answer_key, is_equivalent


class AnswerPool:
    """Pooled keys for the answers of ONE problem (see the module docstring).

    `timeout` is `is_equivalent`'s limit for each symbolic check; `comparisons` counts the pairs compared.
    """

    def __init__(self, timeout: float = 1.0):
        self.timeout = timeout
        self.comparisons = 0
        self._groups: list[tuple[str, str, tuple | None]] = []  # (first answer, pooled key, values), in order
        self._key_of_form: dict = {}  # canonical form -> pooled key
        self._form_of_answer: dict[str, tuple] = {}  # raw answer -> (canonical form, normalised text): normalise once

    def key(self, answer: str | None) -> str | None:
        """The pooled key of `answer` (None for None), placing it in a group on first sight."""
        if answer is None:
            return None
        known = self._form_of_answer.get(answer)
        if known is None:
            normalised = answer_key(answer)
            known = self._form_of_answer[answer] = (canonical_form(normalised), normalised)
        form, normalised = known
        pooled = self._key_of_form.get(form)
        if pooled is None:
            pooled = self._key_of_form[form] = self._place(answer, normalised, form)
        return pooled

    def keys(self, answers: Iterable[str | None]) -> list[str | None]:
        return [self.key(a) for a in answers]

    def _place(self, answer: str, pooled: str, form: tuple) -> str:
        """The key of the first group `answer` (normalised: `pooled`) matches, or its own in a new group."""
        if form == ("text", ""):  # grades as equal to nothing, itself included: its own key, no group
            return pooled
        value = constant_values(pooled)
        for representative, key, other in self._groups:
            self.comparisons += 1
            verdict = fast_verdict(pooled, key)
            if verdict is None:
                verdict = fast_verdict(key, pooled)  # a plain word is decided as the gold side only
            if verdict is None and value is not None and other is not None and _apart(value, other):
                verdict = False
            if verdict is None:
                verdict = is_equivalent(answer, representative, timeout=self.timeout)
            if verdict:
                return key
        self._groups.append((answer, pooled, value))
        return pooled


# ---------------------------------------------------------------------------------------------
# Constant expressions, evaluated in floating point: a cheap proof that two answers differ
# ---------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"\d+(?:\.\d+)?|\.\d+|\\[A-Za-z]+|[-+*/^{}()i]")
_MAX_VALUE_CHARS = 200
_MAX_MAGNITUDE = 1e15
_RELATIVE_GAP = 1e-5  # far above math-verify's 6-decimal rounding


class _Unreadable(Exception):
    """Not a constant expression this evaluator reads as LaTeX does."""


def constant_values(normalised: str) -> tuple[complex, ...] | None:
    """The values of a normalised answer that is a constant expression, or a list of them (`a,b`,
    `(a,b)`, `\\{a,b\\}`); None when it is anything else or anything this evaluator might read
    differently from LaTeX (see the module docstring)."""
    if len(normalised) > _MAX_VALUE_CHARS or "[" in normalised or "]" in normalised:
        return None  # [ and ] make intervals, and empty intervals are all equal: (8,4] is (9,4]
    if "," not in normalised:
        value = _constant_value(normalised)
        return None if value is None else (value,)
    inner, wrapped = normalised, False
    if inner.startswith("\\{") and inner.endswith("\\}"):
        inner = inner[2:-2]
    elif inner.startswith("(") and _closing(inner, 0) == len(inner) - 1:
        inner, wrapped = inner[1:-1], True
    values = []
    for part in _top_level_parts(inner):
        value = _constant_value(part)
        if value is None:
            return None
        values.append(value)
    if wrapped and len(values) == 2 and values[0].imag == values[1].imag == 0 and values[0].real >= values[1].real:
        return None  # (3,1) might be read as an interval, and every empty interval is the same set
    return tuple(values)


def _closing(s: str, start: int) -> int | None:
    """Index of the bracket closing the one at `start` (( and { counted together)."""
    depth = 0
    for i in range(start, len(s)):
        depth += (s[i] in "({") - (s[i] in ")}")
        if depth == 0:
            return i
    return None


def _top_level_parts(s: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, c in enumerate(s):
        depth += (c in "({") - (c in ")}")
        if c == "," and depth == 0:
            parts.append(s[start:i])
            start = i + 1
    return parts + [s[start:]]


def _constant_value(normalised: str) -> complex | None:
    tokens, pos = [], 0
    while pos < len(normalised):
        match = _TOKEN.match(normalised, pos)
        if match is None:
            return None
        tokens.append(match.group())
        pos = match.end()
    try:
        reader = _Reader(tokens)
        value = reader.expression()
        if reader.pos != len(tokens):
            return None
    except (_Unreadable, ZeroDivisionError, OverflowError, ValueError, RecursionError):
        return None
    if not (cmath.isfinite(value) and abs(value) < _MAX_MAGNITUDE):
        return None
    return value


def _apart(a: tuple[complex, ...], b: tuple[complex, ...]) -> bool:
    """Some value of one answer is far from every value of the other: unequal read as numbers,
    tuples or sets alike (math-verify reads `1` and `1,1` as one set)."""
    return any(all(_far(x, y) for y in b) for x in a) or any(all(_far(y, x) for x in a) for y in b)


def _far(x: complex, y: complex) -> bool:
    return abs(x - y) > _RELATIVE_GAP * max(1.0, abs(x), abs(y))


class _Reader:
    """Recursive descent over LaTeX tokens: sums of products of (signed) powers of atoms, with
    implicit multiplication as in `2\\sqrt{3}\\pi`; commands' unbraced arguments one digit long."""

    _COMMANDS = {"\\frac", "\\sqrt", "\\pi"}
    _TIMES = {"*", "\\cdot", "\\times"}

    def __init__(self, tokens: list[str]):
        self.tokens, self.pos = tokens, 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise _Unreadable
        self.pos += 1
        return token

    def expression(self) -> complex:
        value = self.product()
        while self.peek() in ("+", "-"):
            value = value + self.product() if self.take() == "+" else value - self.product()
        return value

    def product(self) -> complex:
        value, divided = self.signed(), False
        while True:
            token = self.peek()
            if token in self._TIMES or token == "/":
                self.take()
                divided = divided or token == "/"
                value = value * self.signed() if token != "/" else value / self.signed()
            elif token is not None and self._starts_atom(token):
                if token == "\\frac" and self.tokens[self.pos - 1][0].isdigit():
                    raise _Unreadable  # 1\frac{1}{2}: a mixed number or a product, read both ways
                if divided:
                    raise _Unreadable  # 1/2\pi: (1/2)pi or 1/(2pi), read both ways
                value = value * self.power()
            else:
                return value

    def signed(self) -> complex:
        if self.peek() in ("+", "-"):
            return self.signed() if self.take() == "+" else -self.signed()
        return self.power()

    def power(self) -> complex:
        base = self.atom()
        if self.peek() != "^":
            return base
        self.take()
        exponent = self.argument()
        if base.imag == 0 and base.real < 0 and exponent.imag == 0 and exponent.real != int(exponent.real):
            raise _Unreadable  # which root of a negative number: readers differ
        if base.imag == 0 and exponent.imag == 0 and base.real >= 0:
            return complex(base.real ** exponent.real)
        return base ** exponent

    def atom(self) -> complex:
        token = self.peek()
        if token is None or not self._starts_atom(token):
            raise _Unreadable
        if token == "(":
            self.take()
            value = self.expression()
            self.take(")")
            return value
        if token == "{":
            return self.group()
        if token == "\\frac":
            self.take()
            return self.argument() / self.argument()
        if token == "\\sqrt":
            self.take()
            radicand = self.argument()
            if radicand.imag != 0 or radicand.real < 0:
                raise _Unreadable
            return complex(math.sqrt(radicand.real))
        return self.single()

    def group(self) -> complex:
        self.take("{")
        value = self.expression()
        self.take("}")
        return value

    def argument(self) -> complex:
        """An argument of \\frac, \\sqrt or ^: a braced group, or one token (a digit, \\pi, i)."""
        return self.group() if self.peek() == "{" else self.single(unbraced_argument=True)

    def single(self, unbraced_argument: bool = False) -> complex:
        token = self.take()
        if token == "\\pi":
            return complex(math.pi)
        if token == "i":
            return 1j
        if token[0].isdigit() or token[0] == ".":
            if unbraced_argument and len(token) > 1:
                raise _Unreadable  # \frac{1}23 or 2^32: LaTeX takes one digit, other readers the number
            return complex(float(token))
        raise _Unreadable

    def _starts_atom(self, token: str) -> bool:
        return token in ("(", "{", "i") or token in self._COMMANDS or token[0].isdigit() or token[0] == "."


def pool_answers(answers: Iterable[str | None], timeout: float = 1.0) -> list[str | None]:
    """The pooled key of each answer of one problem, in order (None for None)."""
    return AnswerPool(timeout).keys(answers)


def correct_keys(keys: Sequence[str | None], correct: Iterable[bool]) -> set[str]:
    """The pooled keys that count as right: those whose first member (the answer that named the group)
    was graded right. Equivalence is not transitive, so a group may hold an answer graded otherwise;
    the group is what its representative is, as when a search selects it."""
    out, seen = set(), set()
    for k, ok in zip(keys, correct):
        if k is not None and k not in seen:
            seen.add(k)
            if ok:
                out.add(k)
    return out


def _main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m ttstrain.answers.pooling ANSWER [ANSWER ...]", file=sys.stderr)
        return 2
    pool = AnswerPool()
    for answer in argv:
        print(f"{answer!r} -> {pool.key(answer)!r}")
    print(f"{pool.comparisons} comparisons")
    return 0


__all__ = ["AnswerPool", "constant_values", "pool_answers"]


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
