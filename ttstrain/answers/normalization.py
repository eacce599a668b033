"""Answer extraction and normalisation, and the comparisons that need no sympy (cheap, pure).

    >>> from ttstrain.answers.normalization import extract_answer, normalize_answer
    >>> extract_answer("So $x = 2$.\nThe answer is \\boxed{\\dfrac{1}{2}}.")
    '\\dfrac{1}{2}'
    >>> normalize_answer("\\$1,000")
    '1000'

`normalize_answer`: `\\dfrac`/`\\tfrac` -> `\\frac`, `\\left`/`\\right`, LaTeX spacing, dollar
signs, `\\%`, units ("cm", `^\\circ`, `\\text{ inches}^2`, ...), thousands separators, trailing
".0", `\\text{...}`, a leading `x =` or `x \\in`, choice letters "(C)" -> "C", column vectors ->
tuples; every rule is linear in the input. `normalised_verdict` decides what the fast path can
(identical strings, plain words, two plain numbers) and leaves the rest to math-verify, which
`ttstrain.answers.grading` runs in the sandbox (`ttstrain.answers.sandbox`). `answer_key` is an answer's
normalised text; `canonical_form` goes further where no sympy is needed (a plain number's exact
value), and `ttstrain.answers.pooling` pools the answers of a vote by equivalence from there.
"""

from __future__ import annotations

import re
from fractions import Fraction

# Answers longer than this (after normalisation) are compared as strings only.
MAX_SYMBOLIC_CHARS = 2000


# ---------------------------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------------------------


def extract_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}) in text, nested braces respected; None if absent."""
    best = None
    for marker in ("\\boxed{", "\\fbox{"):
        idx = text.rfind(marker)
        if idx >= 0 and (best is None or idx > best[0]):
            best = (idx, marker)
    if best is None:
        return None
    start = best[0] + len(best[1])
    depth = 1
    for i in range(start, len(text)):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
    return None


_ANSWER_IS = re.compile(r"answer\s+is\s*:?[ \t]*([^\n]*)", re.IGNORECASE)
_GSM8K_ANSWER = re.compile(r"####[ \t]*([^\n]*)")


def extract_answer(text: str) -> str | None:
    """The final answer of a solution text, or None if it has none.

    Looks, in this order, for the last `\\boxed{...}` / `\\fbox{...}`, the last "The answer is: X"
    (also "the final answer is X"), and the last GSM8K-style "#### X".
    """
    boxed = extract_boxed(text)
    if boxed is not None and boxed.strip():
        return boxed.strip()
    for pattern in (_ANSWER_IS, _GSM8K_ANSWER):
        matches = pattern.findall(text)
        if matches:
            answer = _clean_answer_phrase(matches[-1])
            if answer:
                return answer
    return None


def _clean_answer_phrase(phrase: str) -> str:
    """'$5$. I hope it is correct.' -> '5'; '**42**.' -> '42'; '\\(x\\)' -> 'x'."""
    s = phrase.strip().strip("*").strip()
    for opener, closer in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(opener):
            end = s.find(closer, len(opener))
            if end >= 0:
                return s[len(opener) : end].strip()
    # Cut at the end of the sentence; a period followed by a digit is a decimal point.
    s = re.split(r"\.\s", s, maxsplit=1)[0]
    return s.strip().rstrip(".").strip().strip("*").strip()


# ---------------------------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------------------------

_UNIT_WORDS = (
    r"(?:square\s+|sq\.?\s+|cubic\s+)?"
    r"(?:units?|cm|mm|km|m|centimeters?|millimeters?|kilometers?|meters?|metres?|inches|inch|in"
    r"|feet|foot|ft|yards?|miles?|mph|degrees?|cents?|dollars?|hours?|hrs?|minutes?|mins?"
    r"|seconds?|days?|weeks?|months?|years?|kg|grams?|g|pounds?|lbs?|ounces?|oz|liters?|litres?"
    r"|gallons?|percent)"
)
_POWER = r"(?:\^\{?[23]\}?)?"
_TEXT_UNIT = re.compile(r"\\(?:text|mbox|mathrm|textrm)\{\s*" + _UNIT_WORDS + r"\s*\}" + _POWER)
# Bare unit words only after a digit, a closing brace or a space, and only at the end.
_BARE_UNIT = re.compile(
    r"(?<=[\d}\s])\s*(?:square\s+|sq\.?\s+|cubic\s+)?"
    r"(?:units?|cm|mm|km|centimeters?|meters?|metres?|inches|feet|ft|yards?|miles?|mph|degrees?"
    r"|cents?|dollars?|hours?|minutes?|seconds?|days?|weeks?|years?|kg|grams?|pounds?|percent)"
    + _POWER
    + r"\s*$"
)
# Only ^\circ: a bare \circ may be function composition.
_DEGREES = re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|°|\^\s*\{\s*\\degree\s*\}|\^\s*\\degree|\\degree")
_TEXT_COMMAND = re.compile(
    r"\\(?:text|textbf|textit|textrm|textnormal|mbox|mathrm|mathbf|mathit|mathsf|operatorname)\s*\{([^{}]*)\}"
)
# One digit class, no nested quantifiers: stays linear on a 10,000-digit string.
_NUMBER_THEN_WORDS = re.compile(r"^([-+]?[\d,.]*\d)\s+[A-Za-z]{2,}(?:\s+[A-Za-z]+){0,3}$")
_JOINING_WORDS = {"and", "or", "to", "through", "plus", "minus", "times", "over", "by", "of", "per"}
_VARIABLE_PREFIX = re.compile(r"^(?:[A-Za-z]|\\[A-Za-z]+)(?:_\{?[A-Za-z0-9]+\}?)?\s*(?:=|\\in\b)(?!=)")
_THOUSANDS = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_COLUMN_VECTOR = re.compile(r"^\\begin\{([pb]matrix)\}(.*)\\end\{\1\}$", re.DOTALL)
_WORD = re.compile(r"^[A-Za-z]+(?: [A-Za-z]+)*$")
_WHITESPACE_RUN = re.compile(r"\s+")


def normalize_answer(answer: str) -> str:
    """Canonical string form of an answer, used for the fast path and fed to math-verify."""
    # Whitespace runs become one space first: every rule below treats any run as one separator,
    # and a long run would otherwise make the end-anchored unit pattern quadratic.
    s = _strip_math_delimiters(_WHITESPACE_RUN.sub(" ", answer).strip())
    s = _unwrap_whole_box(s)
    s = _simplify_latex(s)
    s = _strip_units(s)
    s = _unwrap_text_commands(s)
    s = _VARIABLE_PREFIX.sub("", s, count=1) if s.count("=") <= 1 else s
    s = _strip_words_after_number(s.strip())
    s = _squeeze_spaces(s)
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    s = _canonical_decimals(s)
    s = _column_vector_to_tuple(s)
    s = re.sub(r"^\(([A-Za-z])\)$", r"\1", s)  # multiple choice "(C)" -> "C"
    return s.rstrip(".").strip()


def answer_key(answer: str | None) -> str | None:
    """The answer's normalised text (None for None); votes pool these further by equivalence
    (`ttstrain.answers.pooling`)."""
    return None if answer is None else normalize_answer(answer)


def _strip_math_delimiters(s: str) -> str:
    for opener, closer in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(opener) and s.endswith(closer) and len(s) >= len(opener) + len(closer):
            return s[len(opener) : len(s) - len(closer)].strip()
    return s


def _unwrap_whole_box(s: str) -> str:
    content = extract_boxed(s)
    if content is not None and s in ("\\boxed{" + content + "}", "\\fbox{" + content + "}"):
        return content.strip()
    return s


def _simplify_latex(s: str) -> str:
    s = re.sub(r"\\[dtc]frac(?![A-Za-z])", r"\\frac", s)
    s = re.sub(r"\\(?:left|right)\.", "", s)
    s = re.sub(r"\\(?:left|right|[bB]igg?[lr]?)(?![A-Za-z])", "", s)
    s = re.sub(r"\\(?:displaystyle|quad|qquad)(?![A-Za-z])", " ", s)
    # LaTeX spacing (\! \, \; \: and backslash-space); the lookbehind keeps the row separator \\.
    s = re.sub(r"(?<!\\)\\[!,;: ]", "", s)
    s = s.replace("~", " ")
    s = s.replace("\\$", "").replace("$", "")
    s = s.replace("\\%", "").replace("%", "")
    return s.strip()


def _strip_units(s: str) -> str:
    s = _DEGREES.sub("", s)
    s = _TEXT_UNIT.sub("", s)
    stripped = _BARE_UNIT.sub("", s).strip()
    return stripped or s.strip()


def _unwrap_text_commands(s: str) -> str:
    # Innermost first, one level per pass; a few levels cover real answers and keep a
    # pathological 2,000-deep nesting from costing quadratic time.
    for _ in range(4):
        s, count = _TEXT_COMMAND.subn(r"\1", s)
        if count == 0:
            break
    return s.strip()


def _strip_words_after_number(s: str) -> str:
    """ "18 apples" -> "18", but "5 and 7" stays: there the words join two answers."""
    match = _NUMBER_THEN_WORDS.match(s)
    if match is None or _JOINING_WORDS & set(s.lower().split()):
        return s
    return match.group(1)


def _squeeze_spaces(s: str) -> str:
    """Drop whitespace except between two letters, where it separates words or `\\cot x`."""
    s = re.sub(r"\s+", " ", s.strip())
    return re.sub(r"(?<![A-Za-z]) | (?![A-Za-z])", "", s)


def _canonical_decimals(s: str) -> str:
    s = re.sub(r"(?<![\d.])\.(\d)", r"0.\1", s)  # ".5" -> "0.5"
    s = re.sub(r"(\d)\.0+(?![\d])", r"\1", s)  # "18.00" -> "18"
    return re.sub(r"(\d\.\d*?[1-9])0+(?![\d])", r"\1", s)  # "1.250" -> "1.25"


def _column_vector_to_tuple(s: str) -> str:
    match = _COLUMN_VECTOR.match(s)
    if match is None or "&" in match.group(2):
        return s
    entries = [e.strip() for e in match.group(2).split("\\\\")]
    entries = [e for e in entries if e]
    return "(" + ",".join(entries) + ")" if len(entries) >= 2 else s


# ---------------------------------------------------------------------------------------------
# Fast path
# ---------------------------------------------------------------------------------------------

_DECIMAL = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)$")
_SLASH_FRACTION = re.compile(r"^([-+]?)(\d+)/(\d+)$")
_LATEX_FRACTION = re.compile(r"^([-+]?)\\frac(?:\{([-+]?\d+)\}|(\d))(?:\{([-+]?\d+)\}|(\d))$")
_MAX_FAST_NUMBER_CHARS = 60  # long digit strings go to the general path; Fraction stays cheap


def _as_number(s: str) -> Fraction | None:
    """Exact value of a plain number: integer, decimal, a/b or \\frac{a}{b}; None otherwise."""
    if len(s) > _MAX_FAST_NUMBER_CHARS:
        return None
    if _DECIMAL.match(s):
        return Fraction(s)
    match = _SLASH_FRACTION.match(s)
    if match:
        sign, num, den = match.groups()
        return _signed_fraction(sign, num, den)
    match = _LATEX_FRACTION.match(s)
    if match:
        sign, num_braced, num_digit, den_braced, den_digit = match.groups()
        return _signed_fraction(sign, num_braced or num_digit, den_braced or den_digit)
    return None


def canonical_form(normalised: str) -> tuple[str, object]:
    """A form under which answers are equal exactly when the fast path calls them equal, without
    sympy: ("number", exact value) for a plain number, ("word", lower case) for plain words,
    ("text", the normalised text) otherwise. `normalised` is `normalize_answer`'s output."""
    value = _as_number(normalised)
    if value is not None:
        return "number", value
    if _WORD.match(normalised):
        return "word", normalised.lower()
    return "text", normalised


def _signed_fraction(sign: str, num: str, den: str) -> Fraction | None:
    if int(den) == 0:
        return None
    value = Fraction(int(num), int(den))
    return -value if sign == "-" else value


def _fast_verdict(pred: str, gold: str) -> bool | None:
    """True/False when the answers can be judged without sympy; None to go symbolic."""
    if pred == gold:
        return True
    # Words are judged here: math-verify reads "seat" as s*e*a*t, equal to "east".
    if _WORD.match(gold) and (len(gold) > 1 or _WORD.match(pred)):
        return pred.lower() == gold.lower()
    pred_value, gold_value = _as_number(pred), _as_number(gold)
    if pred_value is None or gold_value is None:
        return None
    if pred_value == gold_value:
        return True
    # Same rule as math-verify: a number written as a decimal only has to agree to 6 places.
    if "." in pred or "." in gold:
        return round(pred_value, 6) == round(gold_value, 6)
    return False


def normalised_verdict(pred: str, gold: str) -> tuple[bool | None, str, str]:
    """(verdict or None when only sympy can tell, normalised pred, normalised gold)."""
    pred_n, gold_n = normalize_answer(pred), normalize_answer(gold)
    return fast_verdict(pred_n, gold_n), pred_n, gold_n


def fast_verdict(pred_n: str, gold_n: str) -> bool | None:
    """The verdict on two answers already normalised where no sympy is needed, else None."""
    if not pred_n or not gold_n:
        return False
    verdict = _fast_verdict(pred_n, gold_n)
    if verdict is None and (len(pred_n) > MAX_SYMBOLIC_CHARS or len(gold_n) > MAX_SYMBOLIC_CHARS):
        verdict = False
    return verdict
