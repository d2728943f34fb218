"""Hanging workers for the scorer's kill-path tests, through ``polarity.reward.pool``'s seam.

``hanging_workers()`` makes the workers started inside it build their evaluator with
:func:`hanging_evaluator` (``pool.EVALUATOR_FACTORY``): the real evaluator, except that a worker
hangs forever, ignoring SIGTERM, on a response equal to :data:`HANG` (inside an announced call,
as a hung sympy call does) or to :data:`HANG_SILENT` (between calls, as a runaway regex would).
A worker loads this file by path in a fresh interpreter: keep its imports light.
"""

from __future__ import annotations

import signal
import time
from contextlib import contextmanager

HANG = "<<polarity-test: hang this worker>>"
HANG_SILENT = "<<polarity-test: hang this worker silently>>"


def hanging_evaluator(announce=None, done=None, settled=None):
    """``polarity.reward.verify.make_evaluator``'s evaluator that hangs on the two sentinels."""
    from polarity.reward.verify import make_evaluator

    evaluate = make_evaluator(announce=announce, done=done, settled=settled)

    def hanging(gold, response, *args):
        if response in (HANG, HANG_SILENT):
            if response == HANG:
                announce("test-hang")
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            while True:
                time.sleep(3600)
        return evaluate(gold, response, *args)

    hanging.poison = evaluate.poison
    return hanging


@contextmanager
def hanging_workers():
    """Workers started inside hang on :data:`HANG` / :data:`HANG_SILENT`; the pool is reset
    (its workers killed) on entry and on exit."""
    from polarity import reward
    from polarity.reward import pool

    reward.shutdown()
    saved, pool.EVALUATOR_FACTORY = pool.EVALUATOR_FACTORY, hanging_evaluator
    try:
        yield
    finally:
        reward.shutdown()
        pool.EVALUATOR_FACTORY = saved


@contextmanager
def counting_replacements():
    """A list that collects the slot of every worker the pool replaces inside (killed past its
    deadline, found dead, or holding stale work): timeouts counted, not timed."""
    from polarity.reward import pool

    replaced: list[int] = []
    original = pool._Pool._replace

    def replace(self, slot: int) -> None:
        replaced.append(slot)
        original(self, slot)

    pool._Pool._replace = replace
    try:
        yield replaced
    finally:
        pool._Pool._replace = original
