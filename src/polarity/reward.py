"""Math-verify scoring that never hangs and never raises.

The verdict is exactly math-verify's own,
``verify(parse(wrap(ground_truth)), parse(response))`` with the default extraction configs, but
parse/verify run with their SIGALRM timeouts switched off inside separate worker processes and
the timeout is enforced from outside: a worker stuck on an item (sympy can block inside C code
where no signal is handled, e.g. ``\\boxed{9^{9^{9^{9}}}}``) is killed with SIGKILL, the item
scores 0.0 with reason ``"timeout"`` and a fresh worker takes over the remaining items. This also
makes scoring safe from threads (Ray actors, thread pools), where SIGALRM cannot be used.

Workers are plain ``python -c`` subprocesses that load this file by path and import only the
standard library and math_verify: no ``multiprocessing`` start-method pitfalls (``__main__``
re-import under spawn, forking a parent that holds torch/CUDA state or threads), and no import
of the ``polarity`` package. They are kept in a lazily started module-level pool that is reused
across calls, restarted when dead or after a fork, and killed at interpreter exit.

Linux/POSIX only (pipes passed by file descriptor).
"""

from __future__ import annotations

import atexit
import collections
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait

__all__ = [
    "DEFAULT_TIMEOUT",
    "REASONS",
    "Verdict",
    "extract_answer",
    "score",
    "score_batch",
    "score_batch_detailed",
    "shutdown",
    "wrap_ground_truth",
]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0
"""Hard per-item limit in seconds on the worker's time for one (ground truth, response) pair."""

REASONS = ("correct", "wrong", "no_answer", "parse_failure", "timeout")

# Test hook: a worker started while this environment variable is set hangs (sleeps forever,
# ignoring SIGTERM) on any response equal to its value, to test the kill path deterministically.
_HANG_ENV = "POLARITY_REWARD_TEST_HANG"

_STARTUP_TIMEOUT = 120.0  # seconds a fresh worker may take to import math_verify
_MAX_STARTUP_FAILURES = 3  # consecutive worker start failures before giving up on a batch
_MAX_CHUNK = 16  # items sent to a worker per message (the deadline stays per item)


@dataclass(frozen=True)
class Verdict:
    """Outcome for one response.

    ``answer`` is math-verify's extracted (normalized) answer string when it extracted one,
    else :func:`extract_answer`'s string, else None; used for majority voting.
    """

    correct: bool
    reason: str
    answer: str | None

    @property
    def score(self) -> float:
        """1.0 if correct else 0.0."""
        return 1.0 if self.correct else 0.0


# --------------------------------------------------------------------------------------------
# Answer extraction (pure Python, linear time)
# --------------------------------------------------------------------------------------------

# Tokens for a single left-to-right scan: box openers, escaped braces / backslashes, braces.
_BRACE_TOKENS = re.compile(r"(?P<box>\\(?:boxed|fbox)[ \t\r\n]*\{)|(?P<esc>\\[{}\\])|(?P<brace>[{}])")
_ANSWER_TAG = re.compile(r"answer:", re.IGNORECASE)


def _last_box(text: str) -> str | None:
    """Content of the last (by closing brace) balanced, non-empty ``\\boxed{}``/``\\fbox{}``."""
    if "\\boxed" not in text and "\\fbox" not in text:
        return None
    stack: list[int] = []  # content start for a box opener, -1 for a plain "{"
    last: tuple[int, int] | None = None
    for m in _BRACE_TOKENS.finditer(text):
        kind = m.lastgroup
        if kind == "box":
            stack.append(m.end())
        elif kind == "brace":
            if m.group() == "{":
                stack.append(-1)
            elif stack:
                start = stack.pop()
                if start >= 0 and text[start : m.start()].strip():
                    last = (start, m.start())
        # "esc": \{ \} \\ are literal, never structure
    if last is None:
        return None
    return text[last[0] : last[1]].strip()


def _answer_line(text: str) -> str | None:
    """Text after the last ``Answer:`` to the end of its line, cleaned; None if absent/empty."""
    last = None
    for last in _ANSWER_TAG.finditer(text):
        pass
    if last is None:
        return None
    end = text.find("\n", last.end())
    value = text[last.end() : end if end >= 0 else len(text)].strip()
    if value.endswith("."):
        value = value[:-1].rstrip()
    value = value.strip("*").strip()  # markdown bold around the value
    value = value.strip("$").strip()
    return value or None


def extract_answer(response: str) -> str | None:
    """Fast pure-Python answer extraction, independent of math-verify.

    The content of the last balanced ``\\boxed{...}`` (or ``\\fbox{...}``), else the text after
    the last ``Answer:`` (case-insensitive) to the end of that line with a trailing period,
    surrounding ``$`` (and markdown ``*``) removed; None if neither is present. Linear time, so
    safe on megabyte strings. Only used for reasons/answers, never for the verdict.
    """
    try:
        if not isinstance(response, str):
            return None
        boxed = _last_box(response)
        if boxed is not None:
            return boxed
        return _answer_line(response)
    except Exception:  # pragma: no cover - defensive, must never raise
        return None


def wrap_ground_truth(ground_truth: str) -> str:
    """Wrap a LaTeX gold answer in ``$...$`` unless it already has ``\\boxed`` or ``$``."""
    if "\\boxed" in ground_truth or "$" in ground_truth:
        return ground_truth
    return f"${ground_truth}$"


def _as_text(value: object) -> str:
    """Coerce an input to str (None -> "") so odd inputs score 0.0 instead of raising."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    try:
        return str(value)
    except Exception:
        return ""


# --------------------------------------------------------------------------------------------
# Worker side (runs in the child process; imports only stdlib + math_verify)
# --------------------------------------------------------------------------------------------


def _make_evaluator():
    """Import math_verify and return ``evaluate(gold, response) -> (correct, reason, answer)``."""
    import functools

    import math_verify
    import math_verify.grader
    import math_verify.parser

    # We disable math-verify's own timeouts on purpose; silence its one-time warning.
    math_verify.parser.TIMEOUT_WARNING_SHOWN = True
    math_verify.grader.TIMEOUT_WARNING_SHOWN = True

    @functools.lru_cache(maxsize=4096)
    def parse_gold(gold: str):
        return math_verify.parse(wrap_ground_truth(gold), parsing_timeout=None)

    def evaluate(gold: str, response: str) -> tuple[bool, str, str | None]:
        try:
            pred = math_verify.parse(response, parsing_timeout=None)
            if not pred:
                found = extract_answer(response)
                return False, ("no_answer" if found is None else "parse_failure"), found
            answer = next((p for p in reversed(pred) if isinstance(p, str) and p), None)
            if answer is None:
                answer = extract_answer(response)
            gold_parsed = parse_gold(gold)
            if math_verify.verify(gold_parsed, pred, timeout_seconds=None):
                return True, "correct", answer
            # Only fallback strings (no sympy object) on either side: math-verify found text it
            # could not parse, so the 0.0 is a parse failure rather than a wrong answer.
            if all(isinstance(p, str) for p in pred) or all(isinstance(g, str) for g in gold_parsed):
                return False, "parse_failure", answer
            return False, "wrong", answer
        except Exception:
            return False, "parse_failure", None

    return evaluate


def _worker_main(fd_in: int, fd_out: int) -> None:
    """Child loop: receive ``(batch, [(idx, gold, response), ...])``, send one result per item."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    conn_in = Connection(fd_in, writable=False)
    conn_out = Connection(fd_out, readable=False)
    evaluate = _make_evaluator()
    hang_on = os.environ.get(_HANG_ENV)
    conn_out.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn_in.recv()
        except (EOFError, OSError):
            break
        if msg is None:
            break
        batch, items = msg
        for idx, gold, response in items:
            if hang_on is not None and response == hang_on:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                while True:
                    time.sleep(3600)
            correct, reason, answer = evaluate(gold, response)
            try:
                conn_out.send((batch, idx, correct, reason, answer))
            except (BrokenPipeError, OSError):
                return


_WORKER_BOOT = (
    "import sys, json, importlib.util\n"
    "if sys.path and sys.path[0] == '': sys.path.pop(0)\n"
    "path, fd_in, fd_out, extra = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])\n"
    "sys.path.extend(p for p in extra if p not in sys.path)\n"
    "spec = importlib.util.spec_from_file_location('_polarity_reward_worker', path)\n"
    "mod = importlib.util.module_from_spec(spec)\n"
    "sys.modules[spec.name] = mod\n"
    "spec.loader.exec_module(mod)\n"
    "mod._worker_main(fd_in, fd_out)\n"
)


# --------------------------------------------------------------------------------------------
# Parent side: pool of killable workers
# --------------------------------------------------------------------------------------------


class _Worker:
    """One child process and its two pipes, plus the parent's bookkeeping."""

    __slots__ = ("proc", "rx", "tx", "ready", "inflight", "since", "spawned")

    def __init__(self) -> None:
        child_in, parent_out = os.pipe()
        parent_in, child_out = os.pipe()
        try:
            extra = json.dumps([p for p in sys.path if isinstance(p, str) and p])
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _WORKER_BOOT, os.path.abspath(__file__),
                 str(child_in), str(child_out), extra],
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

    def shutdown(self) -> None:
        workers, self.workers = self.workers, []
        for w in workers:
            w.kill()

    def _replace(self, slot: int) -> None:
        self.workers[slot].kill()
        self.workers[slot] = _Worker()

    def run(
        self, items: list[tuple[str, str]], n_workers: int, timeout: float | None
    ) -> list[tuple[bool, str, str | None]]:
        """Evaluate ``items`` on ``n_workers`` workers with a hard per-item deadline."""
        total = len(items)
        results: list[tuple[bool, str, str | None] | None] = [None] * total
        if total == 0:
            return []
        limit = float("inf") if timeout is None or timeout <= 0 else float(timeout)
        n_workers = max(1, min(n_workers, total))
        for slot, w in enumerate(self.workers[:n_workers]):
            if w.proc.poll() is not None:
                self._replace(slot)
        while len(self.workers) < n_workers:
            self.workers.append(_Worker())
        self.batch += 1
        batch = self.batch
        pending = collections.deque(range(total))
        done = 0
        start_failures = 0

        def finish(idx: int, value: tuple[bool, str, str | None]) -> None:
            nonlocal done
            if results[idx] is None:
                results[idx] = value
                done += 1

        def lost(slot: int, reason: str) -> None:
            """Worker in ``slot`` died or hung: settle its current item, requeue the rest."""
            nonlocal start_failures
            w = self.workers[slot]
            if w.inflight:
                idx = w.inflight.popleft()
                finish(idx, (False, reason, extract_answer(items[idx][1])))
                pending.extendleft(reversed(w.inflight))
                w.inflight.clear()
            elif not w.ready:
                start_failures += 1
            self._replace(slot)

        try:
            while done < total:
                if start_failures >= _MAX_STARTUP_FAILURES:
                    logger.error("polarity.reward: workers fail to start; scoring the rest as 0.0")
                    for idx in range(total):
                        finish(idx, (False, "parse_failure", None))
                    break
                active = self.workers[:n_workers]
                # Dispatch small chunks to idle, ready workers.
                for slot, w in enumerate(active):
                    if w.ready and not w.inflight and pending:
                        idle = sum(1 for x in active if not x.inflight) or 1
                        size = max(1, min(_MAX_CHUNK, len(pending) // (2 * idle)))
                        chunk = [pending.popleft() for _ in range(min(size, len(pending)))]
                        w.inflight.extend(chunk)
                        w.since = time.monotonic()
                        try:
                            w.tx.send((batch, [(i, items[i][0], items[i][1]) for i in chunk]))
                        except (OSError, ValueError):
                            # Died before taking the work: requeue it all, count as a start failure.
                            pending.extendleft(reversed(chunk))
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
                            got_batch, idx, correct, reason, answer = msg
                            if got_batch != batch or not w.inflight or w.inflight[0] != idx:
                                continue  # stale message from an earlier, interrupted call
                            w.inflight.popleft()
                            w.since = time.monotonic()
                            finish(idx, (bool(correct), reason, answer))
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


atexit.register(_atexit_shutdown)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# --------------------------------------------------------------------------------------------
# Public scoring API
# --------------------------------------------------------------------------------------------


def _default_workers(n_items: int) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, n_items))


def score_batch_detailed(
    responses: list[str],
    ground_truths: list[str],
    workers: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> list[Verdict]:
    """Verdicts for paired responses and ground truths (see module docstring).

    Identical (ground_truth, response) pairs are verified once per call. ``workers=None`` uses
    ``min(cpus, unique items)`` processes; ``workers<=0`` means one worker (a killable process is
    always needed for the timeout). ``timeout`` is the hard limit per item in seconds.
    """
    responses = list(responses)
    ground_truths = list(ground_truths)
    if len(responses) != len(ground_truths):
        raise ValueError(
            f"responses and ground_truths differ in length: {len(responses)} != {len(ground_truths)}"
        )
    pairs = [(_as_text(g), _as_text(r)) for g, r in zip(ground_truths, responses)]
    verdicts: dict[tuple[str, str], Verdict] = {}
    todo: list[tuple[str, str]] = []
    queued: set[tuple[str, str]] = set()
    for key in pairs:
        if key in verdicts or key in queued:
            continue
        if not key[1].strip():
            # Provably math-verify's verdict: every extraction pattern needs a non-space character.
            verdicts[key] = Verdict(False, "no_answer", None)
        else:
            todo.append(key)
            queued.add(key)
    if todo:
        n = _default_workers(len(todo)) if workers is None else max(1, int(workers))
        try:
            with _LOCK:
                outcome = _get_pool().run(todo, n, timeout)
        except Exception:  # never propagate: an infrastructure failure scores 0.0
            logger.exception("polarity.reward: scoring failed")
            outcome = [(False, "parse_failure", None)] * len(todo)
        for key, (correct, reason, answer) in zip(todo, outcome):
            verdicts[key] = Verdict(bool(correct), reason, answer)
    return [verdicts[key] for key in pairs]


def score_batch(
    responses: list[str],
    ground_truths: list[str],
    workers: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> list[float]:
    """1.0/0.0 per (response, ground truth) pair; same verdicts as :func:`score` one by one."""
    return [v.score for v in score_batch_detailed(responses, ground_truths, workers, timeout)]


def score(response: str, ground_truth: str) -> float:
    """1.0 if math-verify accepts ``response`` against ``ground_truth`` else 0.0; never raises."""
    try:
        return score_batch_detailed([response], [ground_truth], workers=1)[0].score
    except Exception:
        logger.exception("polarity.reward: score failed")
        return 0.0
