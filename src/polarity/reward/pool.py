"""The worker pool: math-verify in killable processes, with a hard per-item deadline.

parse/verify run with their SIGALRM timeouts off inside separate worker processes and the
timeout is enforced from outside: a worker stuck on an item (sympy can block inside C code where
no signal is handled, e.g. ``\\boxed{9^{9^{9^{9}}}}``) is killed with SIGKILL, the item scores
0.0 with reason ``"timeout"`` and a fresh worker takes over the remaining items. This also makes
scoring safe from threads (Ray actors, thread pools), where SIGALRM cannot be used.

Workers are plain ``python -c`` subprocesses that load this package's files by path and import
only the standard library and math_verify: no ``multiprocessing`` start-method pitfalls
(``__main__`` re-import under spawn, forking a parent that holds torch/CUDA state or threads),
and no import of the ``polarity`` package. They are kept in a lazily started module-level pool
that is reused across calls, restarted when dead or after a fork, and killed at interpreter
exit. A problem's samples stay on one worker (memo hits), results come back in batches, and a
call that had to be killed is remembered so that its repeats are answered ``timeout`` at once.

Linux/POSIX only (pipes passed by file descriptor).
"""

from __future__ import annotations

import atexit
import collections
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait

from .extract import DEFAULT_EXTRACTION, final_answer
from .worker import BOOT

__all__ = ["EVALUATOR_FACTORY", "default_workers", "run", "shutdown"]

logger = logging.getLogger("polarity.reward")

EVALUATOR_FACTORY: Callable | None = None
"""The function a worker calls to build its evaluator; None: :func:`.verify.make_evaluator`.

A module-level function of a Python file, called in the worker as ``factory(announce=...,
done=..., settled=...)`` with :func:`.verify.make_evaluator`'s contract (it returns
``evaluate(gold, response, extraction, monitor) -> (correct, reason, answer, lenient_only)``
with a ``poison`` set). Workers are fresh interpreters, so a worker loads the file that defines
the function by path (with the parent's ``sys.path``) and looks the function up by name. Read
when a worker starts: call :func:`shutdown` after changing it so that every worker uses it. For
another verifier or for instrumenting workers; the tests use it to make a worker hang.
"""

_STARTUP_TIMEOUT = 120.0  # seconds a fresh worker may take to import math_verify
_MAX_STARTUP_FAILURES = 3  # consecutive worker start failures before giving up on a batch
_MAX_CHUNK = 32  # items sent to a worker per message (the deadline stays per item)
_POISON_FRACTION = 0.9  # a killed call is poisoned if it alone ran this share of the limit
_MAX_POISON = 1000  # poisoned digests kept (the list sent to a new worker stays < 64 KiB)


def _factory_location(factory) -> tuple[str, str]:
    """(file, name) of :data:`EVALUATOR_FACTORY` for a worker's argv; ("", "") for the default."""
    if factory is None:
        return "", ""
    module = sys.modules.get(getattr(factory, "__module__", None) or "")
    path = getattr(module, "__file__", None)
    name = getattr(factory, "__name__", "")
    if not path or getattr(module, name, None) is not factory:
        raise ValueError(f"EVALUATOR_FACTORY must be a module-level function of a file: {factory!r}")
    return os.path.abspath(path), name


class _Worker:
    """One child process and its two pipes, plus the parent's bookkeeping."""

    __slots__ = ("proc", "rx", "tx", "ready", "inflight", "since", "spawned", "busy", "busy_since",
                 "settled")

    def __init__(self, factory: tuple[str, str] = ("", "")) -> None:
        child_in, parent_out = os.pipe()
        parent_in, child_out = os.pipe()
        try:
            extra = json.dumps([p for p in sys.path if isinstance(p, str) and p])
            self.proc = subprocess.Popen(
                [sys.executable, "-c", BOOT, os.path.dirname(os.path.abspath(__file__)),
                 str(child_in), str(child_out), extra, *factory],
                pass_fds=(child_in, child_out),
                stdin=subprocess.DEVNULL,
                close_fds=True,
            )
        except BaseException:
            for fd in (child_in, parent_out, parent_in, child_out):
                os.close(fd)
            raise
        os.close(child_in)
        os.close(child_out)
        self.rx = Connection(parent_in, writable=False)
        self.tx = Connection(parent_out, readable=False)
        self.ready = False
        self.inflight: collections.deque = collections.deque()
        self.since = time.monotonic()  # start of the current item (or of the spawn)
        self.spawned = self.since
        self.busy: str | None = None  # digest of the math-verify call running now, if any
        self.busy_since = 0.0  # when that call started
        self.settled: tuple | None = None  # (idx, correct, reason, answer) awaiting the monitor

    def kill(self) -> None:
        """SIGKILL the child and release its pipes."""
        try:
            self.proc.kill()
        except Exception:
            pass
        try:
            self.proc.wait(timeout=5)
        except Exception:
            pass
        for conn in (self.rx, self.tx):
            try:
                conn.close()
            except Exception:
                pass


class _Pool:
    """Persistent, growable set of workers, used by one call at a time (guarded by a lock)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.workers: list[_Worker] = []
        self.batch = 0
        # digest of a math-verify call that had to be killed -> the limit it was killed at
        self.poison: dict[str, float] = {}

    def _spawn(self) -> _Worker:
        w = _Worker(_factory_location(EVALUATOR_FACTORY))
        if self.poison:
            try:
                w.tx.send(("poison", sorted(self.poison)))
            except (OSError, ValueError):
                pass  # a dead worker is noticed and replaced by the caller
        return w

    def shutdown(self) -> None:
        workers, self.workers = self.workers, []
        for w in workers:
            w.kill()

    def _replace(self, slot: int) -> None:
        self.workers[slot].kill()
        self.workers[slot] = self._spawn()

    def run(
        self, items: list[tuple[str, str]], n_workers: int, timeout: float | None,
        extraction: str = DEFAULT_EXTRACTION, monitor: bool = False,
    ) -> list[tuple[bool, str, str | None, bool | None]]:
        """Evaluate ``items`` on ``n_workers`` workers with a hard per-item deadline.

        Items are grouped by ground truth and a worker keeps taking chunks of the group it
        started (its memos then serve that problem's repeated answers) before opening the next
        group; once every group is started, idle workers help with the largest one left.
        """
        total = len(items)
        results: list[tuple[bool, str, str | None, bool | None] | None] = [None] * total
        if total == 0:
            return []
        limit = float("inf") if timeout is None or timeout <= 0 else float(timeout)
        n_workers = max(1, min(n_workers, total))
        for slot, w in enumerate(self.workers[:n_workers]):
            # Dead, or still holding work of an earlier call that gave up or was interrupted.
            if w.proc.poll() is not None or w.inflight or w.busy is not None:
                self._replace(slot)
        while len(self.workers) < n_workers:
            self.workers.append(self._spawn())
        # A call killed at a smaller limit than this one's is tried again (in every worker).
        retry = sorted(d for d, killed_at in self.poison.items() if killed_at < limit)
        if retry:
            for d in retry:
                del self.poison[d]
            for w in self.workers:
                try:
                    w.tx.send(("unpoison", retry))
                except (OSError, ValueError):
                    pass  # a dead worker is noticed and replaced below
        self.batch += 1
        batch = self.batch
        groups: dict[str, collections.deque] = {}
        for idx, (gold, _) in enumerate(items):
            groups.setdefault(gold, collections.deque()).append(idx)
        unstarted = collections.deque(groups)
        current: dict[int, str] = {}  # slot -> the group it works on
        isolated: collections.deque = collections.deque()  # re-run one per chunk (see lost)
        queued = total  # items waiting in some group
        done = 0
        start_failures = 0

        def take(slot: int, size: int) -> list[int]:
            nonlocal queued
            group = groups.get(current.get(slot, ""))
            if not group:
                if unstarted:
                    current[slot] = unstarted.popleft()
                else:  # help with the largest group left
                    current[slot] = max(groups, key=lambda g: len(groups[g]))
                group = groups[current[slot]]
            chunk = [group.popleft() for _ in range(min(size, len(group)))]
            queued -= len(chunk)
            return chunk

        def requeue(chunk) -> None:
            nonlocal queued
            for idx in reversed(chunk):
                groups[items[idx][0]].appendleft(idx)
            queued += len(chunk)

        def finish(idx: int, value: tuple[bool, str, str | None, bool | None]) -> None:
            nonlocal done
            if results[idx] is None:
                results[idx] = value
                done += 1

        def lost(slot: int, reason: str) -> None:
            """Worker in ``slot`` died or hung: settle the item that did it, requeue the rest.

            The culprit is known when the worker announced a call (it flushes its results
            first, so the call belongs to its first unanswered item) or when only one item
            was unanswered. Otherwise finished-but-unsent results may precede it: every
            unanswered item is re-run alone, and only an item that fails alone is settled.
            """
            nonlocal start_failures, queued
            w = self.workers[slot]
            # Poison a call only when it used (nearly) the whole limit by itself, not when it
            # merely was running as the item's time ran out.
            hung = w.busy is not None and time.monotonic() - w.busy_since >= _POISON_FRACTION * limit
            if (reason == "timeout" and hung and w.busy not in self.poison
                    and len(self.poison) < _MAX_POISON):
                self.poison[w.busy] = limit
                for other in self.workers:
                    if other is not w:
                        try:
                            other.tx.send(("poison", [w.busy]))
                        except (OSError, ValueError):
                            pass
            if w.inflight:
                settled_head = w.settled is not None and w.settled[0] == w.inflight[0]
                if w.busy is not None or len(w.inflight) == 1 or settled_head:
                    idx = w.inflight.popleft()
                    if w.settled is not None and w.settled[0] == idx:
                        finish(idx, (*w.settled[1:], None))  # only the monitor's check was left
                    else:
                        finish(idx, (False, reason, final_answer(items[idx][1], extraction), None))
                rest = [i for i in w.inflight if results[i] is None]
                isolated.extend(rest)
                queued += len(rest)
                w.inflight.clear()
            elif not w.ready:
                start_failures += 1
            self._replace(slot)

        try:
            while done < total:
                if start_failures >= _MAX_STARTUP_FAILURES:
                    logger.error("polarity.reward: workers fail to start; scoring the rest as 0.0")
                    for idx in range(total):
                        finish(idx, (False, "parse_failure", None, None))
                    self.shutdown()  # workers still busy with this call's items must not linger
                    break
                active = self.workers[:n_workers]
                # Give every idle, ready worker a chunk. Only idle ones: a busy worker is not
                # reading its pipe, so a chunk larger than the pipe's buffer would block this
                # loop (and every deadline with it) until it finished, or forever if it hung.
                for slot, w in enumerate(active):
                    if not (w.ready and queued):
                        continue
                    if w.inflight:
                        continue
                    if isolated:  # re-run suspects one at a time
                        chunk = [isolated.popleft()]
                        queued -= 1
                    else:
                        chunk = take(slot, max(1, min(_MAX_CHUNK, queued // (2 * n_workers))))
                    w.since = time.monotonic()  # the chunk's first item starts now
                    w.busy = None
                    w.settled = None
                    w.inflight.extend(chunk)
                    try:
                        w.tx.send((batch, extraction, monitor,
                                   [(i, items[i][0], items[i][1]) for i in chunk]))
                    except (OSError, ValueError):
                        # Died before taking the work: requeue it all, count as a start failure.
                        requeue(list(w.inflight))
                        w.inflight.clear()
                        start_failures += 1
                        self._replace(slot)
                active = self.workers[:n_workers]
                # Wait for results or the nearest deadline.
                now = time.monotonic()
                deadline = min(
                    (w.since + limit if w.inflight else w.spawned + _STARTUP_TIMEOUT
                     if not w.ready else float("inf")) for w in active
                )
                wait_for = None if deadline == float("inf") else max(0.0, deadline - now)
                readable = wait([w.rx for w in active], timeout=wait_for)
                for slot, w in enumerate(active):
                    if w.rx not in readable:
                        continue
                    try:
                        while w.rx.poll():
                            msg = w.rx.recv()
                            if msg[0] == "ready":
                                w.ready = True
                                w.since = time.monotonic()
                                start_failures = 0
                                continue
                            if msg[0] == "p":
                                if msg[1] == batch and w.inflight and w.inflight[0] == msg[2]:
                                    w.settled = tuple(msg[2:])
                                continue
                            if msg[0] == "a":
                                w.busy, w.busy_since = msg[1], time.monotonic()
                                continue
                            if msg[0] == "e":
                                w.busy = None
                                continue
                            _, got_batch, answered = msg
                            if got_batch != batch:
                                continue  # stale message from an earlier, interrupted call
                            w.settled = None
                            for idx, correct, reason, answer, lenient_only in answered:
                                if not w.inflight or w.inflight[0] != idx:
                                    break
                                w.inflight.popleft()
                                finish(idx, (bool(correct), reason, answer, lenient_only))
                            w.busy = None
                            w.since = time.monotonic()
                    except (EOFError, OSError):
                        lost(slot, "parse_failure")  # crashed (segfault, OOM kill, ...)
                # Enforce deadlines.
                now = time.monotonic()
                for slot, w in enumerate(self.workers[:n_workers]):
                    if w.inflight and now - w.since > limit:
                        lost(slot, "timeout")
                    elif not w.ready and now - w.spawned > _STARTUP_TIMEOUT:
                        lost(slot, "parse_failure")
        except BaseException:
            # Interrupted mid-batch (e.g. KeyboardInterrupt): workers hold stale work; drop them.
            self.shutdown()
            raise
        return results  # type: ignore[return-value]


_POOL: _Pool | None = None
_LOCK = threading.Lock()


def _get_pool() -> _Pool:
    global _POOL
    if _POOL is None or _POOL.pid != os.getpid():
        _POOL = _Pool()
    return _POOL


def shutdown() -> None:
    """Kill the persistent worker processes (they restart lazily on the next call)."""
    global _POOL
    with _LOCK:
        if _POOL is not None and _POOL.pid == os.getpid():
            _POOL.shutdown()
        _POOL = None


def _after_fork_in_child() -> None:
    # The child must not talk to the parent's workers; it starts its own on demand.
    global _POOL, _LOCK
    _POOL = None
    _LOCK = threading.Lock()


def _atexit_shutdown() -> None:
    # Never block interpreter exit on a lock held by a thread still scoring.
    locked = _LOCK.acquire(timeout=1.0)
    try:
        if _POOL is not None and _POOL.pid == os.getpid():
            _POOL.shutdown()
    finally:
        if locked:
            _LOCK.release()


def run(
    items: list[tuple[str, str]], n_workers: int, timeout: float | None,
    extraction: str = DEFAULT_EXTRACTION, monitor: bool = False,
) -> list[tuple[bool, str, str | None, bool | None]]:
    """``(correct, reason, answer, lenient_only)`` per ``(gold, response)`` item, on this
    process's pool (started on first use), one call at a time; see :meth:`_Pool.run`."""
    with _LOCK:
        return _get_pool().run(items, n_workers, timeout, extraction, monitor)


def default_workers(n_items: int) -> int:
    """Workers for ``n_items`` distinct items: one per usable CPU, at most one per item."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, n_items))


atexit.register(_atexit_shutdown)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
