"""Answer extraction and equivalence checking for math reasoning (MATH, GSM8K).

    >>> from ttstrain.grading import extract_answer, is_equivalent, grade
    >>> extract_answer("So $x = 2$.\\nThe answer is \\\\boxed{\\\\dfrac{1}{2}}.")
    '\\\\dfrac{1}{2}'
    >>> is_equivalent("0.5", "\\\\frac12")
    True
    >>> grade("... #### 1,234", "1234")
    True

From a shell: `python -m ttstrain.grading PRED GOLD` prints the normalised forms and the verdict.

How a comparison is decided (`is_equivalent`):

1. Both answers are normalised (`normalize_answer`): `\\dfrac`/`\\tfrac` -> `\\frac`, `\\left`/`\\right`,
   LaTeX spacing, dollar signs, `\\%`, units ("cm", `^\\circ`, `\\text{ inches}^2`, ...),
   thousands separators, trailing ".0", `\\text{...}`, a leading `x =` or `x \\in`, choice
   letters "(C)" -> "C", column vectors -> tuples.
2. Fast path, in this process: identical normalised strings; plain words (compared
   case-insensitively); or two plain numbers (compared exactly, or to 6 decimals when one is
   written as a decimal, as math-verify does).
3. Otherwise math-verify (`parse` + `verify`) runs in a separate worker process under a hard
   wall-clock limit (`timeout`, default 1 s, start-up of a worker not counted). A worker that
   runs over is killed (SIGKILL, which also stops C-level big-integer work that no Python
   signal can interrupt) and replaced, and the comparison counts as False. Workers cap their
   address space (RLIMIT_AS) so an answer like 9^{9^{9^9}} cannot eat the machine's memory.
   Answers longer than MAX_SYMBOLIC_CHARS never go to sympy.

The worker pool is started lazily, is thread-safe and fork-aware, and is torn down at
interpreter exit; `warm_up()` starts a worker ahead of time so the first comparison does not
pay its start-up (about a second, mostly importing sympy).
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import re
import select
import subprocess
import sys
import threading
import time
from fractions import Fraction

# Answers longer than this (after normalisation) are compared as strings only.
MAX_SYMBOLIC_CHARS = 2000
# Address-space cap of a worker process. Sympy on any sensible answer stays far below it.
WORKER_MEMORY_BYTES = 1 << 30
# How long a new worker may take to import sympy + math-verify before we give up on it.
WORKER_STARTUP_TIMEOUT_S = 120.0
DEFAULT_POOL_SIZE = min(4, os.cpu_count() or 1)


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
_VARIABLE_PREFIX = re.compile(r"^(?:[A-Za-z]|\\[A-Za-z]+)(?:_\{?[A-Za-z0-9]+\}?)?\s*(?:=|\\in\b)(?!=)")
_THOUSANDS = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_COLUMN_VECTOR = re.compile(r"^\\begin\{([pb]matrix)\}(.*)\\end\{\1\}$", re.DOTALL)
_WORD = re.compile(r"^[A-Za-z]+(?: [A-Za-z]+)*$")


def normalize_answer(answer: str) -> str:
    """Canonical string form of an answer, used for the fast path and fed to math-verify."""
    s = _strip_math_delimiters(answer.strip())
    s = _unwrap_whole_box(s)
    s = _simplify_latex(s)
    s = _strip_units(s)
    s = _unwrap_text_commands(s)
    s = _VARIABLE_PREFIX.sub("", s, count=1) if s.count("=") <= 1 else s
    s = _NUMBER_THEN_WORDS.sub(r"\1", s.strip())  # "18 apples" -> "18"
    s = _squeeze_spaces(s)
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    s = _canonical_decimals(s)
    s = _column_vector_to_tuple(s)
    s = re.sub(r"^\(([A-Za-z])\)$", r"\1", s)  # multiple choice "(C)" -> "C"
    return s.rstrip(".").strip()


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


# ---------------------------------------------------------------------------------------------
# Public comparison API
# ---------------------------------------------------------------------------------------------


def is_equivalent(pred: str | None, gold: str, timeout: float = 1.0) -> bool:
    """Whether the predicted answer means the same as the gold answer.

    `timeout` is a hard wall-clock limit in seconds on the symbolic check; running over
    counts as not equivalent. None as pred is never equivalent.
    """
    if pred is None or gold is None:
        return False
    if pred.strip() == gold.strip() and pred.strip():
        return True
    pred_n, gold_n = normalize_answer(pred), normalize_answer(gold)
    if not pred_n or not gold_n:
        return False
    verdict = _fast_verdict(pred_n, gold_n)
    if verdict is not None:
        return verdict
    if len(pred_n) > MAX_SYMBOLIC_CHARS or len(gold_n) > MAX_SYMBOLIC_CHARS:
        return False
    try:
        return _symbolic_equal(pred_n, gold_n, max(float(timeout), 0.01))
    except _NoVerdict:
        return False


def grade(solution_text: str, gold: str) -> bool:
    """Whether the final answer of a solution text matches the gold answer."""
    return is_equivalent(extract_answer(solution_text), gold)


def warm_up() -> None:
    """Start a symbolic worker now (and wait for it), so the first comparison is fast."""
    _get_pool().warm_up()


class _NoVerdict(Exception):
    """The worker ran over its time limit or died; not cached, so a later call may retry."""


@functools.lru_cache(maxsize=65536)
def _symbolic_equal(pred: str, gold: str, timeout: float) -> bool:
    # Many samples of a problem share an answer; caching saves a round-trip per repeat.
    return _get_pool().compare(pred, gold, timeout)


# ---------------------------------------------------------------------------------------------
# Worker processes
# ---------------------------------------------------------------------------------------------

# The worker loads this very file by path, so it needs neither the ttstrain package on its
# sys.path nor the parent's __main__ module (which a multiprocessing "spawn" would re-import).
_WORKER_BOOTSTRAP = (
    "import importlib.util as u; "
    "s = u.spec_from_file_location('_ttstrain_grading_worker', {path!r}); "
    "m = u.module_from_spec(s); s.loader.exec_module(m); m._serve_worker()"
)


class _Worker:
    """One worker process; requests and replies are JSON lines over its stdin and stdout."""

    def __init__(self) -> None:
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-P", "-c", _WORKER_BOOTSTRAP.format(path=os.path.abspath(__file__))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self._buffer = b""
        self._ready = False

    def wait_ready(self) -> None:
        if self._ready:
            return
        try:
            line = self._read_line(time.monotonic() + WORKER_STARTUP_TIMEOUT_S)
        except _NoVerdict:
            line = None
        if line != b"ready":
            self.kill()
            raise RuntimeError(f"grading worker failed to start (exit code {self.proc.poll()}); see its stderr")
        self._ready = True

    def compare(self, pred: str, gold: str, timeout: float) -> bool:
        """The worker's verdict; raises _NoVerdict on timeout or worker death."""
        self.wait_ready()
        request = json.dumps([pred, gold, timeout]).encode() + b"\n"
        try:
            self.proc.stdin.write(request)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise _NoVerdict("worker died") from exc
        line = self._read_line(time.monotonic() + timeout)
        if line is None:
            raise _NoVerdict("timeout")
        return line == b"1"

    def _read_line(self, deadline: float) -> bytes | None:
        """Next reply line, None when the deadline passes first; raises _NoVerdict at EOF."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                raise _NoVerdict("worker exited")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.close_pipes()

    def close_pipes(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


class _WorkerPool:
    """Up to `size` workers; a thread borrows an idle one (or starts one) per comparison."""

    def __init__(self, size: int) -> None:
        self._size = max(1, size)
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._cond = threading.Condition()
        self._closed = False

    def compare(self, pred: str, gold: str, timeout: float) -> bool:
        worker = self._acquire()
        try:
            result = worker.compare(pred, gold, timeout)
        except BaseException:
            # Timeout, death, or e.g. KeyboardInterrupt mid-request: the worker's state is unknown.
            self._replace(worker)
            raise
        self._release(worker)
        return result

    def warm_up(self) -> None:
        worker = self._acquire()
        try:
            worker.wait_ready()
        finally:
            self._release(worker)

    def _acquire(self) -> _Worker:
        with self._cond:
            while True:
                if self._closed:
                    raise RuntimeError("grading worker pool is closed (interpreter exiting)")
                if self._idle:
                    return self._idle.pop()
                if len(self._all) < self._size:
                    worker = _Worker()
                    self._all.add(worker)
                    return worker
                self._cond.wait()

    def _release(self, worker: _Worker) -> None:
        with self._cond:
            self._idle.append(worker)
            self._cond.notify()

    def _replace(self, worker: _Worker) -> None:
        """Kill a worker and start its successor now, so its imports overlap the caller's work."""
        worker.kill()
        with self._cond:
            self._all.discard(worker)
            if not self._closed:
                successor = _Worker()
                self._all.add(successor)
                self._idle.append(successor)
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            workers = list(self._all)
            self._all.clear()
            self._idle.clear()
            self._cond.notify_all()
        for worker in workers:
            worker.kill()

    def forget_after_fork(self) -> None:
        """In a forked child: drop our copies of the parent's pipes without touching its workers."""
        for worker in self._all:
            worker.close_pipes()


_pool: _WorkerPool | None = None
_pool_lock = threading.Lock()


def _get_pool() -> _WorkerPool:
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                size = int(os.environ.get("TTSTRAIN_GRADING_WORKERS", DEFAULT_POOL_SIZE))
                _pool = _WorkerPool(size)
    return _pool


def _shutdown_pool() -> None:
    global _pool
    if _pool is not None:
        _pool.close()
        _pool = None


def _reset_after_fork() -> None:
    global _pool, _pool_lock
    _pool_lock = threading.Lock()
    if _pool is not None:
        _pool.forget_after_fork()
        _pool = None


atexit.register(_shutdown_pool)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


# ---------------------------------------------------------------------------------------------
# Inside a worker process
# ---------------------------------------------------------------------------------------------


def _serve_worker() -> None:
    """Worker main loop: read [pred, gold, timeout] lines, answer 1 or 0 per line."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    # Replies go to a private copy of stdout; fd 1 becomes stderr so a stray print from a
    # library cannot corrupt the protocol.
    replies = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    _import_math_verify()
    _limit_memory(WORKER_MEMORY_BYTES)
    _warm_up_sympy()
    replies.write(b"ready\n")
    for line in sys.stdin.buffer:
        pred, gold, timeout = json.loads(line)
        _limit_cpu_from_now(max(10.0, 10 * timeout))
        try:
            verdict = _math_verify_equal(pred, gold)
        except Exception:  # MemoryError, RecursionError, sympy internals: not equivalent
            verdict = False
        replies.write(b"1\n" if verdict else b"0\n")


# Sympy and the LaTeX parser initialise lazily: a first tuple or interval comparison takes
# close to a second, a later one a tenth of that. Pay it before accepting timed requests.
_WARM_UP_PAIRS = (
    ("\\frac{1}{2}", "0.5"),
    ("(\\frac{\\pi}{2},3)", "(3,\\frac{\\pi}{2})"),
    ("(-1/3,2/3,5/3)", "(-1/3,2/3,5/2)"),
    ("[-2,7)", "(-\\infty,7]\\cup\\{9\\}"),
    ("y=2x-3", "y=2x+3"),
    ("\\frac{\\cos x}{\\sin x}", "\\cot x"),
    ("1\\pm\\sqrt{2}", "2.5"),
)


def _warm_up_sympy() -> None:
    for pred, gold in _WARM_UP_PAIRS:
        _math_verify_equal(pred, gold)


def _import_math_verify() -> None:
    import logging

    import math_verify  # noqa: F401

    # math-verify warns about its disabled signal timeouts; the parent enforces the limit.
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)


def _limit_memory(max_bytes: int) -> None:
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        max_bytes = min(max_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (max_bytes, hard))


def _limit_cpu_from_now(seconds: float) -> None:
    """Backstop for an orphaned worker (parent killed mid-request): SIGXCPU ends it."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = int(usage.ru_utime + usage.ru_stime + seconds) + 1
    _old_soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _math_verify_equal(pred: str, gold: str) -> bool:
    from math_verify import parse, verify

    # The parent enforces the time limit (math-verify's own uses SIGALRM, whole seconds only).
    gold_parsed = parse(f"${gold}$", parsing_timeout=None)
    pred_parsed = parse(f"${pred}$", parsing_timeout=None)
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def _main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m ttstrain.grading PRED GOLD", file=sys.stderr)
        return 2
    pred, gold = argv
    print(f"pred: {normalize_answer(pred)!r}")
    print(f"gold: {normalize_answer(gold)!r}")
    start = time.perf_counter()
    verdict = is_equivalent(pred, gold)
    print(f"equivalent: {verdict}  ({time.perf_counter() - start:.3f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
