"""The grading sandbox: math-verify comparisons in worker processes under a hard wall-clock limit.

    from ttstrain.answers.sandbox import get_pool
    get_pool().compare("(1,2)", "(1, 2)", timeout=1.0)   # True; raises NoVerdict on timeout

A "zygote" process imports sympy + math-verify and warms them up once; workers are forked from it
on demand, so a worker killed on timeout (SIGKILL, which also stops C-level big-integer work no
Python signal can interrupt) is replaced in milliseconds, already warm. The zygote caps its
address space (RLIMIT_AS, inherited by the workers), so an answer like 9^{9^{9^9}} cannot eat the
machine's memory, and kills its workers when the parent's socket closes, even when the parent
dies without running atexit. A worker compares either normalised answers (`whole=False`) or a
raw pair, normalisation included (`whole=True`, for long inputs).

The pool (at most TTSTRAIN_GRADING_WORKERS workers, default min(4, CPUs)) starts lazily, is
thread-safe and fork-aware, and is torn down at interpreter exit. A zygote that does not start
says why: its exit code, the signal that killed it, or that it ran past WORKER_STARTUP_TIMEOUT_S
(TTSTRAIN_GRADING_STARTUP_TIMEOUT). Used by `ttstrain.answers.grading.is_equivalent`.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time

from ttstrain.answers.normalization import normalised_verdict

# Address-space cap of a worker process. Sympy on any sensible answer stays far below it.
WORKER_MEMORY_BYTES = 1 << 30
# How long the zygote may take to import and warm up sympy + math-verify before we give up
# (TTSTRAIN_GRADING_STARTUP_TIMEOUT overrides it, for a loaded machine).
WORKER_STARTUP_TIMEOUT_S = float(os.environ.get("TTSTRAIN_GRADING_STARTUP_TIMEOUT", 120.0))
DEFAULT_POOL_SIZE = min(4, os.cpu_count() or 1)


class NoVerdict(Exception):
    """The worker ran over its time limit or died; not cached, so a later call may retry."""


# ---------------------------------------------------------------------------------------------
# Worker processes (parent side)
# ---------------------------------------------------------------------------------------------
#
# A "zygote" process imports sympy + math-verify and warms them up once (seconds). Workers
# are os.fork()ed from it on demand, so a worker killed on timeout is replaced in
# milliseconds, already warm. The zygote is the workers' real parent: it kills and reaps them
# (no pid can be reused under us), and kills them all when our control socket closes, even
# when this process dies without running atexit.
#
# The zygote imports this module from the checkout or install it lives in ({path}: the folder
# above the package), so it needs neither this process's sys.path nor its __main__ (which a
# multiprocessing "spawn" would re-import).
_ZYGOTE_BOOTSTRAP = (
    "import sys; sys.path.insert(0, {path!r}); "
    "from ttstrain.answers.sandbox import _serve_zygote; _serve_zygote({fd})"
)
_CONTROL_REPLY_TIMEOUT_S = 30.0


class _ZygoteGone(Exception):
    """The zygote exited or stopped answering."""


class _NoReplyInTime(_ZygoteGone):
    """The zygote's socket is open but nothing came within the wait."""


class _Zygote:
    """Parent-side handle of the zygote; its control socket carries one command at a time."""

    def __init__(self) -> None:
        self._control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        fd = theirs.fileno()
        self.proc = subprocess.Popen(
            [sys.executable, "-P", "-c", _ZYGOTE_BOOTSTRAP.format(path=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), fd=fd)],
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
        exited = False
        try:
            reply = self._reply(WORKER_STARTUP_TIMEOUT_S)
        except _NoReplyInTime:
            reply = b""
        except _ZygoteGone:
            reply, exited = b"", True
        if reply != b"ready":
            code = self.proc.poll()  # before close(), which kills a zygote still starting
            if code is None and exited:
                # the kernel closes its socket a moment before the exit status can be read
                try:
                    code = self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    code = None
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
            if not select.select([self._control], [], [], timeout)[0]:
                raise _NoReplyInTime()
            reply = self._control.recv(64)
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
        """The worker's verdict; raises NoVerdict on timeout or worker death.

        whole: the worker normalises the raw answers itself (the whole comparison runs under
        the limit); otherwise pred and gold are normalised already and go straight to sympy.
        """
        deadline = time.monotonic() + timeout
        try:
            self.sock.sendall(json.dumps([pred, gold, timeout, whole]).encode() + b"\n")
        except OSError as exc:
            raise NoVerdict("worker died") from exc
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.sock], [], [], remaining)[0]:
                raise NoVerdict("timeout")
            chunk = self.sock.recv(4096)
            if not chunk:
                raise NoVerdict("worker exited")
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


def get_pool() -> _WorkerPool:
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
    verdict, pred_n, gold_n = normalised_verdict(pred, gold)
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
