"""The grading sandbox (ttstrain.answers.sandbox): workers, limits, and start-up failures that say why.

`ttstrain.answers.grading.is_equivalent` is tested in tests/test_grading.py; these drive the pool directly.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

import ttstrain.answers.sandbox as sandbox


def test_pool_compares_normalised_and_whole_pairs():
    pool = sandbox.get_pool()
    pool.warm_up()
    assert pool.compare("\\frac{\\sin x}{\\cos x}", "\\tan x", timeout=5.0, whole=False) is True
    assert pool.compare("(1,2)", "(2,1)", timeout=5.0, whole=False) is False
    # whole=True: the worker normalises first (the raw "\\$1,000" is not a number before that)
    assert pool.compare("\\$1,000" + " " * 2_000, "1000", timeout=5.0, whole=True) is True


def test_a_comparison_past_its_limit_has_no_verdict_and_the_worker_is_replaced():
    pool = sandbox.get_pool()
    pool.warm_up()
    start = time.monotonic()
    with pytest.raises(sandbox.NoVerdict):
        pool.compare("9^{9^{9^{9}}}", "1", timeout=0.5, whole=False)
    assert time.monotonic() - start < 2.0
    assert pool.compare("\\sqrt{50}", "5\\sqrt{2}", timeout=5.0, whole=False) is True


def test_worker_killed_from_outside_is_replaced():
    sandbox.get_pool().warm_up()
    for worker in list(sandbox.get_pool()._idle):
        os.kill(worker.pid, signal.SIGKILL)
    time.sleep(0.2)
    assert sandbox.get_pool().compare("\\sqrt{45}", "3\\sqrt{5}", timeout=5.0, whole=False)


def test_startup_that_runs_past_its_wait_says_so(monkeypatch):
    monkeypatch.setattr(sandbox, "WORKER_STARTUP_TIMEOUT_S", 0.01)
    zygote = sandbox._Zygote()
    with pytest.raises(RuntimeError, match="did not finish starting .* within 0.01 s.*TTSTRAIN_GRADING_STARTUP_TIMEOUT"):
        zygote.fork_worker()


def test_startup_that_exits_says_its_exit_code(monkeypatch):
    monkeypatch.setattr(sandbox, "_ZYGOTE_BOOTSTRAP", "raise SystemExit(3) if True else ({path!r}, {fd})")
    zygote = sandbox._Zygote()
    with pytest.raises(RuntimeError, match="exited with code 3"):
        zygote.fork_worker()
