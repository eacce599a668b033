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
3. Otherwise math-verify (`parse` + `verify`) runs in a worker process under a hard
   wall-clock limit (`timeout`, default 1 s). A pair longer than IN_PROCESS_MAX_CHARS is
   sent to a worker whole, so its normalisation runs under the same limit (normalisation is
   linear in the input, but no caller should depend on that). A worker that runs over is killed with SIGKILL
   (which also stops C-level big-integer work that no Python signal can interrupt) and the
   comparison counts as False. Workers are forked from a "zygote" process that imported and
   warmed up sympy once, so a replacement is ready in milliseconds. The zygote caps its
   address space (RLIMIT_AS, inherited by the workers), so an answer like 9^{9^{9^9}} cannot
   eat the machine's memory. Answers longer than MAX_SYMBOLIC_CHARS never go to sympy.

The pool (at most TTSTRAIN_GRADING_WORKERS workers, default min(4, CPUs)) starts lazily, is
thread-safe and fork-aware, and is torn down at interpreter exit; if this process dies
without exiting cleanly, the zygote sees its socket close and kills the workers. Starting the
zygote (importing and warming up sympy) is not counted against `timeout`; call `warm_up()` to
pay it ahead of time. A zygote that does not start says why: its exit code, the signal that
killed it, or that it ran past WORKER_STARTUP_TIMEOUT_S (TTSTRAIN_GRADING_STARTUP_TIMEOUT).
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
from fractions import Fraction

# Answers longer than this (after normalisation) are compared as strings only.
MAX_SYMBOLIC_CHARS = 2000
# Address-space cap of a worker process. Sympy on any sensible answer stays far below it.
WORKER_MEMORY_BYTES = 1 << 30
# How long the zygote may take to import and warm up sympy + math-verify before we give up
# (TTSTRAIN_GRADING_STARTUP_TIMEOUT overrides it, for a loaded machine).
WORKER_STARTUP_TIMEOUT_S = float(os.environ.get("TTSTRAIN_GRADING_STARTUP_TIMEOUT", 120.0))
# Pairs longer than this (both answers together) are compared wholly in a worker, normalisation
# included, so no input can hold the caller past the time limit; shorter ones normalise here in
# microseconds and go to a worker only when the fast path has no verdict.
IN_PROCESS_MAX_CHARS = 1000
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
    verdict, pred_n, gold_n = _normalised_verdict(pred, gold)
    if verdict is not None:
        return verdict
    return _in_worker(pred_n, gold_n, timeout, whole=False)


def _normalised_verdict(pred: str, gold: str) -> tuple[bool | None, str, str]:
    """(verdict or None when only sympy can tell, normalised pred, normalised gold)."""
    pred_n, gold_n = normalize_answer(pred), normalize_answer(gold)
    if not pred_n or not gold_n:
        return False, pred_n, gold_n
    verdict = _fast_verdict(pred_n, gold_n)
    if verdict is None and (len(pred_n) > MAX_SYMBOLIC_CHARS or len(gold_n) > MAX_SYMBOLIC_CHARS):
        verdict = False
    return verdict, pred_n, gold_n


def _in_worker(pred: str, gold: str, timeout: float, whole: bool) -> bool:
    try:
        return _symbolic_equal(pred, gold, timeout, whole)
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
def _symbolic_equal(pred: str, gold: str, timeout: float, whole: bool = False) -> bool:
    # Many samples of a problem share an answer; caching saves a round-trip per repeat.
    return _get_pool().compare(pred, gold, timeout, whole)


# ---------------------------------------------------------------------------------------------
# Worker processes (parent side)
# ---------------------------------------------------------------------------------------------
#
# A "zygote" process imports sympy + math-verify and warms them up once (about 3 s). Workers
# are os.fork()ed from it on demand, so a worker killed on timeout is replaced in
# milliseconds, already warm. The zygote is the workers' real parent: it kills and reaps them
# (no pid can be reused under us), and kills them all when our control socket closes, even
# when this process dies without running atexit.
#
# The zygote loads this very file by path, so it needs neither the ttstrain package on its
# sys.path nor this process's __main__ (which a multiprocessing "spawn" would re-import).
_ZYGOTE_BOOTSTRAP = (
    "import importlib.util as u; "
    "s = u.spec_from_file_location('_ttstrain_grading_zygote', {path!r}); "
    "m = u.module_from_spec(s); s.loader.exec_module(m); m._serve_zygote({fd})"
)
_CONTROL_REPLY_TIMEOUT_S = 30.0


class _ZygoteGone(Exception):
    """The zygote exited or stopped answering."""


class _Zygote:
    """Parent-side handle of the zygote; its control socket carries one command at a time."""

    def __init__(self) -> None:
        self._control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        fd = theirs.fileno()
        self.proc = subprocess.Popen(
            [sys.executable, "-P", "-c", _ZYGOTE_BOOTSTRAP.format(path=os.path.abspath(__file__), fd=fd)],
            stdin=subprocess.DEVNULL,
            pass_fds=[fd],
            env=dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1"),
        )
        theirs.close()
        self._lock = threading.Lock()
        self._ready = False

    def alive(self) -> bool:
        return self.proc.poll() is None and self._control.fileno() >= 0

    def fork_worker(self) -> _Worker:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with self._lock:
                self._wait_ready()
                try:
                    socket.send_fds(self._control, [b"fork"], [theirs.fileno()])
                except OSError as exc:
                    raise _ZygoteGone() from exc
                pid = int(self._reply(_CONTROL_REPLY_TIMEOUT_S))
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return _Worker(ours, pid, self)

    def kill_worker(self, pid: int) -> None:
        with self._lock:
            try:
                self._control.send(b"kill %d" % pid)
                self._reply(_CONTROL_REPLY_TIMEOUT_S)
            except (_ZygoteGone, OSError):
                self.close()  # a zygote that cannot kill is useless; its exit ends the worker too

    def _wait_ready(self) -> None:
        if self._ready:
            return
        started = time.monotonic()
        try:
            reply = self._reply(WORKER_STARTUP_TIMEOUT_S)
        except _ZygoteGone:
            reply = b""
        if reply != b"ready":
            code = self.proc.poll()  # before close(), which kills a zygote still starting
            self.close()
            raise RuntimeError(self._startup_failure(code, time.monotonic() - started))
        self._ready = True

    @staticmethod
    def _startup_failure(code: int | None, waited: float) -> str:
        if code is None:
            return (f"grading worker did not finish starting (importing and warming up sympy and "
                    f"math-verify) within {WORKER_STARTUP_TIMEOUT_S:g} s, so it was stopped; the machine "
                    f"may be overloaded: set TTSTRAIN_GRADING_STARTUP_TIMEOUT to more seconds")
        if code < 0:
            return (f"grading worker was killed by signal {-code} {waited:.1f} s into its start-up "
                    f"(not by ttstrain; out of memory?)")
        return (f"grading worker exited with code {code} {waited:.1f} s into its start-up, before it was "
                f"ready (is math-verify installed? its error is on stderr above)")

    def _reply(self, timeout: float) -> bytes:
        try:
            readable = select.select([self._control], [], [], timeout)[0]
            reply = self._control.recv(64) if readable else b""
        except OSError:
            reply = b""
        if not reply:
            raise _ZygoteGone()
        return reply

    def close(self) -> None:
        self._control.close()  # the zygote kills its workers and exits
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def forget_after_fork(self) -> None:
        self._control.close()  # our copy only; the parent's connection is untouched


class _Worker:
    """One forked worker; requests and replies are JSON lines over a socket."""

    def __init__(self, sock: socket.socket, pid: int, zygote: _Zygote) -> None:
        self.sock, self.pid, self.zygote = sock, pid, zygote
        self._buffer = b""

    def compare(self, pred: str, gold: str, timeout: float, whole: bool = False) -> bool:
        """The worker's verdict; raises _NoVerdict on timeout or worker death.

        whole: the worker normalises the raw answers itself (the whole comparison runs under
        the limit); otherwise pred and gold are normalised already and go straight to sympy.
        """
        deadline = time.monotonic() + timeout
        try:
            self.sock.sendall(json.dumps([pred, gold, timeout, whole]).encode() + b"\n")
        except OSError as exc:
            raise _NoVerdict("worker died") from exc
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.sock], [], [], remaining)[0]:
                raise _NoVerdict("timeout")
            chunk = self.sock.recv(4096)
            if not chunk:
                raise _NoVerdict("worker exited")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line == b"1"

    def looks_dead(self) -> bool:
        """An idle worker never writes, so anything readable (EOF) means it has exited."""
        try:
            return bool(select.select([self.sock], [], [], 0)[0])
        except (OSError, ValueError):
            return True

    def kill(self) -> None:
        self.zygote.kill_worker(self.pid)
        self.sock.close()

    def close(self) -> None:
        self.sock.close()  # the worker exits at end of input


class _WorkerPool:
    """Up to `size` workers; a thread borrows an idle one (or forks one) per comparison."""

    def __init__(self, size: int) -> None:
        self._size = max(1, size)
        self._idle: list[_Worker] = []
        self._workers: set[_Worker] = set()  # idle and busy
        self._busy = 0
        self._zygote: _Zygote | None = None
        self._cond = threading.Condition()
        self._closed = False

    def compare(self, pred: str, gold: str, timeout: float, whole: bool = False) -> bool:
        worker = self._acquire()
        try:
            result = worker.compare(pred, gold, timeout, whole)
        except BaseException:
            # Timeout, death, or e.g. KeyboardInterrupt mid-request: the worker's state is unknown.
            self._discard(worker)
            raise
        self._release(worker)
        return result

    def warm_up(self) -> None:
        self._release(self._acquire())

    def _acquire(self) -> _Worker:
        with self._cond:
            while True:
                if self._closed:
                    raise RuntimeError("grading worker pool is closed (interpreter exiting)")
                while self._idle:
                    worker = self._idle.pop()
                    if not worker.looks_dead():
                        self._busy += 1
                        return worker
                    self._workers.discard(worker)
                    worker.kill()  # e.g. killed from outside while idle
                if self._busy < self._size:
                    self._busy += 1
                    zygote = self._current_zygote()
                    break
                self._cond.wait()
        try:
            return self._fork_worker(zygote)
        except BaseException:
            with self._cond:
                self._busy -= 1
                self._cond.notify()
            raise

    def _fork_worker(self, zygote: _Zygote) -> _Worker:
        try:
            worker = zygote.fork_worker()
        except _ZygoteGone:
            with self._cond:  # it died after starting (killed, OOM): start one more
                if self._zygote is zygote:
                    self._zygote = None
                zygote = self._current_zygote()
            worker = zygote.fork_worker()
        with self._cond:
            self._workers.add(worker)
        return worker

    def _current_zygote(self) -> _Zygote:
        if self._zygote is None or not self._zygote.alive():
            self._zygote = _Zygote()
        return self._zygote

    def _release(self, worker: _Worker) -> None:
        with self._cond:
            self._busy -= 1
            self._idle.append(worker)
            self._cond.notify()

    def _discard(self, worker: _Worker) -> None:
        worker.kill()
        with self._cond:
            self._workers.discard(worker)
            self._busy -= 1
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._workers.clear()
            zygote, self._zygote = self._zygote, None
            self._cond.notify_all()
        for worker in idle:
            worker.close()
        if zygote is not None:
            zygote.close()

    def forget_after_fork(self) -> None:
        """In a forked child: drop our copies of the parent's sockets, touching none of its processes."""
        for worker in self._workers:
            worker.sock.close()
        if self._zygote is not None:
            self._zygote.forget_after_fork()


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
# Inside the zygote and the workers
# ---------------------------------------------------------------------------------------------


def _serve_zygote(control_fd: int) -> None:
    """Zygote main loop: warm up, then fork a worker per "fork" command, kill one per "kill PID"."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    os.dup2(2, 1)  # a stray print from a library goes to stderr
    control = socket.socket(fileno=control_fd)
    _import_math_verify()
    _limit_memory(WORKER_MEMORY_BYTES)
    _warm_up_sympy()
    control.send(b"ready")
    children: set[int] = set()
    try:
        while True:
            message, fds, _flags, _address = socket.recv_fds(control, 64, 1)
            if not message:
                break  # the parent closed the socket or died
            _reap_exited(children)
            if message == b"fork":
                pid = os.fork()
                if pid == 0:
                    control.close()
                    _serve_worker(socket.socket(fileno=fds[0]))
                os.close(fds[0])
                children.add(pid)
                control.send(b"%d" % pid)
            elif message.startswith(b"kill "):
                _kill_child(int(message[5:]), children)
                control.send(b"ok")
    except OSError:
        pass  # the parent went away mid-conversation
    finally:
        for pid in list(children):
            _kill_child(pid, children)
        os._exit(0)  # skip tearing down sympy's modules; the parent may be waiting on us


def _reap_exited(children: set[int]) -> None:
    for pid in list(children):
        try:
            exited = os.waitpid(pid, os.WNOHANG)[0] == pid
        except ChildProcessError:
            exited = True
        if exited:
            children.discard(pid)


def _kill_child(pid: int, children: set[int]) -> None:
    # Only our own unreaped children: their pids cannot have been reused by anyone else.
    if pid in children:
        import signal

        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        children.discard(pid)


def _serve_worker(sock: socket.socket) -> None:
    """Worker main loop (a forked zygote child): read [pred, gold, timeout, whole] lines, answer 1 or 0."""
    try:
        for line in sock.makefile("rb"):
            pred, gold, timeout, whole = json.loads(line)
            _limit_cpu_from_now(max(10.0, 10 * timeout))
            try:
                verdict = _whole_comparison(pred, gold) if whole else _math_verify_equal(pred, gold)
            except Exception:  # MemoryError, RecursionError, sympy internals: not equivalent
                verdict = False
            sock.sendall(b"1\n" if verdict else b"0\n")
    finally:
        os._exit(0)  # never return into the zygote's loop or run its atexit handlers

# Sympy and the LaTeX parser initialise lazily: a first tuple or interval comparison takes
# close to a second, a later one a tenth of that. Pay it before accepting timed requests.
_WARM_UP_PAIRS = (
    ("\\frac{1}{2}", "0.5"),
    ("(\\frac{\\pi}{2},3)", "(3,\\frac{\\pi}{2})"),
    ("(-1/3,2/3,5/3)", "(-1/3,2/3,5/2)"),
    ("[-2,7)", "(-\\infty,7]\\cup\\{9\\}"),
    ("[-\\sqrt{2},\\sqrt{2}]", "(-\\sqrt{2},\\sqrt{2})"),
    ("y=2x-3", "y=2x+3"),
    ("\\frac{\\cos x}{\\sin x}", "\\cot x"),
    ("1\\pm\\sqrt{2}", "2.5"),
)


def _whole_comparison(pred: str, gold: str) -> bool:
    verdict, pred_n, gold_n = _normalised_verdict(pred, gold)
    return verdict if verdict is not None else _math_verify_equal(pred_n, gold_n)


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
    warm_up()  # so the time printed below is the comparison's, not the worker start-up's
    start = time.perf_counter()
    verdict = is_equivalent(pred, gold)
    print(f"equivalent: {verdict}  ({time.perf_counter() - start:.3f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
