"""Math-verify scoring that never hangs and never raises, crediting only the final answer.

The verdict is exactly math-verify's on the text an extraction policy selects
(:data:`EXTRACTIONS`): by default the final answer, the content of the last ``\\boxed{}``,
``verify(parse(wrap(ground_truth)), parse(wrap(final_answer(response))))``; with ``lenient``,
math-verify's own default on the whole response, ``verify(parse(wrap(ground_truth)),
parse(response))``, whose fallback to the last expression in the text credits a response that
restates the question. ``monitor=True`` reports, per response, whether the lenient policy would
credit what the final-answer check does not: the reward-hacking monitor.

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

At evaluation scale (n samples per problem, answers repeating) workers memoize math-verify's
extraction and verification per (ground truth, extracted answer), skip regex scanning that
provably cannot match, keep a problem's samples on one worker, and remember calls that had to
be killed (``_make_evaluator``, ``_Pool.run``); ``benchmarks/bench_scoring.py`` measures it
against the naive per-item loop.

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
    "DEFAULT_EXTRACTION",
    "DEFAULT_TIMEOUT",
    "EXTRACTIONS",
    "REASONS",
    "Verdict",
    "check_extraction",
    "extract_answer",
    "final_answer",
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

EXTRACTIONS = ("boxed", "answer_line", "lenient")
"""Extraction policies: which part of a response is credited.

``boxed`` (default) and ``answer_line`` credit only the final answer (the last ``\\boxed{}``;
DAPO's last ``Answer:`` line), judged with math-verify's equivalence: the verdict is
``verify(parse(wrap(gold)), parse(wrap(final_answer(response))))``. ``lenient`` is math-verify's
default, ``verify(parse(wrap(gold)), parse(response))``, which falls back to the last expression
anywhere in the text when there is no well-formed box, so restating the question
(``48+28. \\boxed{.``) is credited.
"""
DEFAULT_EXTRACTION = "boxed"

# Test hooks: a worker started while one of these environment variables is set hangs (sleeps
# forever, ignoring SIGTERM) on any response equal to its value, to test the kill paths
# deterministically: inside an announced call (like a hung sympy call) or silently.
_HANG_ENV = "POLARITY_REWARD_TEST_HANG"
_HANG_SILENT_ENV = "POLARITY_REWARD_TEST_HANG_SILENT"

_STARTUP_TIMEOUT = 120.0  # seconds a fresh worker may take to import math_verify
_MAX_STARTUP_FAILURES = 3  # consecutive worker start failures before giving up on a batch
_MAX_CHUNK = 32  # items sent to a worker per message (the deadline stays per item)
_POISON_FRACTION = 0.9  # a killed call is poisoned if it alone ran this share of the limit
_MAX_POISON = 1000  # poisoned digests kept (the list sent to a new worker stays < 64 KiB)


@dataclass(frozen=True)
class Verdict:
    """Outcome for one response under one extraction policy.

    ``answer``: under a strict policy the final answer it judged (:func:`final_answer`); under
    ``lenient`` math-verify's extracted answer string when it extracted one, else
    :func:`extract_answer`'s; None when there is none. Used for majority voting.
    ``lenient_only``: the reward-hacking monitor, True when math-verify's lenient extraction
    credits the response but the final-answer check does not (under ``lenient``: the ``boxed``
    check); None when not asked for (``monitor=False``) or when scoring timed out.
    """

    correct: bool
    reason: str
    answer: str | None
    lenient_only: bool | None = None

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
    """Content of the last ``\\boxed{}``/``\\fbox{}`` (the one that opens last), stripped.

    None when there is no box, when that last box is never closed (a truncated answer) or when
    it is empty: an earlier box does not stand in for it. This is the right-most-box rule of the
    papers' verifiers (verl's ``last_boxed_only_string``), with braces matched by one linear
    scan and ``\\{ \\} \\\\`` read as text.
    """
    if "\\boxed" not in text and "\\fbox" not in text:
        return None
    stack: list[int] = []  # content start for a box opener, -1 for a plain "{"
    last_open = -1  # content start of the last box opener
    last_close = -1  # where that box closes, once it does
    for m in _BRACE_TOKENS.finditer(text):
        kind = m.lastgroup
        if kind == "box":
            stack.append(m.end())
            last_open, last_close = m.end(), -1
        elif kind == "brace":
            if m.group() == "{":
                stack.append(-1)
            elif stack:
                start = stack.pop()
                if start == last_open:
                    last_close = m.start()
        # "esc": \{ \} \\ are literal, never structure
    if last_close < 0:
        return None
    return text[last_open:last_close].strip() or None


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


def final_answer(response: str, extraction: str = DEFAULT_EXTRACTION) -> str | None:
    """The final answer a strict policy credits, or None when the response has none.

    ``boxed``: the content of the last ``\\boxed{}`` (:func:`_last_box`); ``answer_line``: the
    value on DAPO's last ``Answer:`` line (``$``, markdown ``*`` and a final period removed);
    ``lenient``: the boxed answer, else the ``Answer:`` line (math-verify decides the verdict;
    this string is only reported). Linear time, never raises.
    """
    check_extraction(extraction)
    try:
        if not isinstance(response, str):
            return None
        if extraction == "answer_line":
            return _answer_line(response)
        boxed = _last_box(response)
        if boxed is not None or extraction == "boxed":
            return boxed
        return _answer_line(response)
    except Exception:  # pragma: no cover - defensive, must never raise
        return None


def extract_answer(response: str) -> str | None:
    """The last ``\\boxed{}`` answer, else the last ``Answer:`` line (see :func:`final_answer`).

    Pure Python, independent of math-verify, linear time (safe on megabyte strings).
    """
    return final_answer(response, "lenient")


def check_extraction(extraction: str) -> str:
    """``extraction`` if it names a policy in :data:`EXTRACTIONS`, else ValueError."""
    if extraction not in EXTRACTIONS:
        raise ValueError(f"unknown extraction policy {extraction!r}; known: {', '.join(EXTRACTIONS)}")
    return extraction


_MATH_DOLLAR = re.compile(r"(?<!\\)\$")  # a $ delimiter, not an escaped \$ (currency)


def wrap_ground_truth(ground_truth: str) -> str:
    """Wrap a LaTeX answer in ``$...$`` unless it already has ``\\boxed`` or a ``$`` delimiter
    (an escaped ``\\$``, as in ``\\$18.90``, is text and does not count)."""
    if "\\boxed" in ground_truth or _MATH_DOLLAR.search(ground_truth):
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

_MEMO_LIMIT = 200_000  # memo entries per worker before both memos are cleared


class _BoxedEnvPattern:
    """math-verify's boxed-in-math-environment regex, scanned from where a match can start.

    Every alternative of ``make_latex_env_pattern("first_", context="boxed")`` is an opener
    (``$$``, ``\\[``, ``$``, ``\\(``, whitespace + ``[``) followed by content containing
    ``\\boxed{`` that cannot contain a ``$$`` (display dollars), a ``\\]`` (display brackets) or
    a newline (the three inline forms). Let ``b`` be the first ``\\boxed{``; a match contains
    some ``\\boxed{`` at or after ``b``. A display-dollar match then starts at or after
    ``rfind("$$", 0, b) - 1`` (or ``b - 1`` when there is no ``$$`` before ``b``: its opener
    must come later); a display-bracket match at or after ``rfind("\\]", 0, b) - 1`` (its
    opener is ``\\[``, so without a ``\\]`` before ``b`` it may start anywhere); an inline
    match at or after ``rfind("\\n", 0, b)``. No match starts before the least of the three, and without
    ``\\boxed{`` there is no match at all. ``finditer(text, pos)`` still sees the
    characters before ``pos`` for the lookbehinds, so the matches are exactly the full scan's
    (tests compare the two on the benchmark's and the fuzzers' strings). Chain-of-thought text
    has a newline shortly before its boxed answer, so this skips almost the whole response:
    the one regex that otherwise dominates scoring time.
    """

    __slots__ = ("pattern",)

    def __init__(self, pattern) -> None:
        self.pattern = pattern

    def finditer(self, text: str):
        b = text.find("\\boxed{")
        if b < 0:
            return iter(())
        dollars = text.rfind("$$", 0, b)
        brackets = text.rfind("\\]", 0, b)
        start = min(
            dollars - 1 if dollars >= 0 else b - 1,
            brackets - 1,  # -2 when absent: the opener may be anywhere before b
            text.rfind("\n", 0, b),
        )
        return self.pattern.finditer(text, max(0, start))


class _AnswerAnchor:
    """Position of the first case-insensitive ``answer`` in a text, shared by the patterns.

    Uses the same ``(?i:answer)`` sub-pattern as math-verify's anchored regexes, so it finds
    exactly the positions they can anchor on; remembers the last text (the patterns of one
    ``extract_target_from_pred`` call scan the same string one after another).
    """

    _ANSWER = re.compile("(?i:answer)", re.DOTALL)

    def __init__(self) -> None:
        self.text: str | None = None
        self.pos = -1

    def first(self, text: str) -> int:
        if text is not self.text:
            m = self._ANSWER.search(text)
            self.text, self.pos = text, (m.start() if m else -1)
        return self.pos


class _AnchoredPattern:
    """A math-verify regex that begins with ``(?i:answer)`` or ``(?i:final answer...)``.

    Such a match contains ``answer`` at a fixed offset from its start (0, or 6 after
    ``final ``; ``(?i:)`` matches character by character), so no match starts before the
    first ``answer`` minus that offset, and there is none without one. Scanning from there
    gives exactly the full scan's matches (lookbehinds still see the text before ``pos``).
    """

    __slots__ = ("pattern", "offset", "anchor")

    def __init__(self, pattern, offset: int, anchor: _AnswerAnchor) -> None:
        self.pattern, self.offset, self.anchor = pattern, offset, anchor

    def finditer(self, text: str):
        first = self.anchor.first(text)
        if first < 0:
            return iter(())
        return self.pattern.finditer(text, max(0, first - self.offset))


def _fast_regexes(mvp, target_res):
    """``target_res`` with math-verify's costly patterns wrapped to skip text they cannot match.

    :class:`_BoxedEnvPattern` and :class:`_AnchoredPattern` are applied only to patterns that
    begin with exactly the text their analyses are about; any other pattern (or math-verify
    version) keeps the plain full scan.
    """
    boxed_prefix = mvp.make_latex_env_pattern(prefix="first_", context="boxed")
    anchor = _AnswerAnchor()

    def wrap(p):
        if p.pattern.startswith(boxed_prefix):
            return _BoxedEnvPattern(p)
        if p.pattern.startswith("(?i:final answer"):
            return _AnchoredPattern(p, len("final "), anchor)
        if p.pattern.startswith("(?i:answer)"):
            return _AnchoredPattern(p, 0, anchor)
        return p

    return [([(wrap(p), priority) for p, priority in patterns], target_type)
            for patterns, target_type in target_res]


def _make_evaluator(announce=None, done=None, settled=None):
    """Import math_verify and return ``evaluate(gold, response) -> (correct, reason, answer)``.

    The verdict is ``verify(parse(wrap(gold)), parse(response))`` with math-verify's default
    configs, computed with two exact memos that make the n samples of one problem cheap:

    * extraction: math-verify's ``extract_match`` is a pure function of the regex match's
      groups, so it is memoized on them (the many identical ``\\boxed{3/4}`` are parsed once);
    * verification: ``verify(gold, items)`` is ``any`` of ``verify(gold, [item])`` (math-verify
      compares every pair on its own), memoized per (ground truth, item), where an item is a
      fallback string or an extracted object named by the extraction that made it.

    ``announce(digest)`` and ``done()`` bracket every memo miss (the expensive calls that can
    hang), with a digest that names the call across processes. The parent remembers the digest
    of a call it had to kill; a worker then answers ``timeout`` for that call at once
    (``evaluate.poison``), so a pathological answer repeated across samples costs one timeout,
    not one per sample. ``settled(correct, reason, answer)`` is called when the verdict is known
    and only the monitor's second opinion remains, so that a kill during that check can keep it.
    """
    import functools
    import hashlib

    import math_verify
    import math_verify.grader
    import math_verify.parser as mvp

    # We disable math-verify's own timeouts on purpose; silence its one-time warning.
    mvp.TIMEOUT_WARNING_SHOWN = True
    math_verify.grader.TIMEOUT_WARNING_SHOWN = True

    extract_memo: dict = {}
    verify_memo: dict = {}
    canon: dict = {}  # id(extracted object) -> (digest of the extraction that made it, object)
    poison: set = set()
    # math-verify's own function, also when an earlier evaluator in this process patched it.
    original_extract = getattr(mvp.extract_match, "original", mvp.extract_match)
    # The antlr LaTeX parse behind every extraction, with a larger cache than its own 20.
    mvp.parse_latex_cached = functools.lru_cache(maxsize=1 << 16)(mvp.parse_latex_cached.__wrapped__)

    def canonical(obj):
        """The extraction (type + regex groups) an object came from: it determines the object
        entirely, which no printed form does (latex2sympy's sets keep their written order)."""
        entry = canon.get(id(obj))
        if entry is None or entry[1] is not obj:
            entry = canon[id(obj)] = (("id", id(obj)), obj)  # not from an extraction: itself
        return entry[0]

    def digest(kind: str, key) -> str:
        return kind + hashlib.blake2b(repr(key).encode("utf-8", "surrogatepass"),
                                      digest_size=12).hexdigest()

    class Poisoned(BaseException):
        """A call that was killed before: raised past math-verify's ``except Exception``
        handlers (which would turn it into a cached empty parse) up to ``evaluate``."""

    def memo_extract(match, target_type):
        key = (id(target_type), tuple(match.groupdict().items()))
        hit = extract_memo.get(key)
        if hit is None:
            d = digest("x", (type(target_type).__name__, key[1]))
            if d in poison:
                raise Poisoned
            if announce is not None:
                announce(d)
            hit = extract_memo[key] = original_extract(match, target_type)
            if hit[0] is not None:
                canon[id(hit[0])] = (d, hit[0])
            if done is not None:
                done()
        return hit

    # extract_target_from_pred looks extract_match up in its module at call time. Only this
    # worker process is patched (and a test process that builds an evaluator).
    memo_extract.original = original_extract  # type: ignore[attr-defined]
    mvp.extract_match = memo_extract
    target_res = _fast_regexes(mvp, mvp.get_extraction_regexes(
        [math_verify.LatexExtractionConfig(), math_verify.ExprExtractionConfig()]))

    def parse_response(text: str) -> list:
        # == math_verify.parse(text, parsing_timeout=None) with its defaults: errors give [].
        try:
            return mvp.extract_target_from_pred(
                text, target_res, fallback_mode="first_match", extraction_mode="any_match")
        except Exception:
            return []

    @functools.lru_cache(maxsize=4096)
    def parse_gold(gold: str):
        return math_verify.parse(wrap_ground_truth(gold), parsing_timeout=None)

    def verify(gold: str, gold_parsed, pred) -> bool:
        # math_verify.verify(g, p) is any(compare(gi, pj)) over all pairs, each pair caught on
        # its own: so it equals any(verify(g, [pj])) over the extracted items, memoized per
        # (ground truth, item), where an item is a string or a sympy object named by the
        # extraction that made it.
        for p in pred:
            key = (gold, p) if isinstance(p, str) else (gold, None, canonical(p))
            hit = verify_memo.get(key)
            if hit is None:
                d = digest("v", key)
                if d in poison:
                    raise Poisoned
                if announce is not None:
                    announce(d)
                hit = verify_memo[key] = math_verify.verify(gold_parsed, [p], timeout_seconds=None)
                if done is not None:
                    done()
            if hit:
                return True
        return False

    def judge(gold: str, text: str) -> tuple[bool, str, str | None]:
        """math-verify's verdict on a whole text, with a reason and its extracted answer."""
        pred = parse_response(text)
        if not pred:
            found = extract_answer(text)
            return False, ("no_answer" if found is None else "parse_failure"), found
        answer = next((p for p in reversed(pred) if isinstance(p, str) and p), None)
        if answer is None:
            answer = extract_answer(text)
        gold_parsed = parse_gold(gold)
        if verify(gold, gold_parsed, pred):
            return True, "correct", answer
        # Only fallback strings (no sympy object) on either side: math-verify found text it
        # could not parse, so the 0.0 is a parse failure rather than a wrong answer.
        if all(isinstance(p, str) for p in pred) or all(isinstance(g, str) for g in gold_parsed):
            return False, "parse_failure", answer
        return False, "wrong", answer

    def judge_final(gold: str, answer: str | None) -> tuple[bool, str]:
        """The strict verdict: math-verify on the final answer alone, parsed as the gold is."""
        if answer is None:
            return False, "no_answer"
        correct, reason, _ = judge(gold, wrap_ground_truth(answer))
        return correct, reason

    def evaluate(gold: str, response: str, extraction: str = DEFAULT_EXTRACTION,
                 monitor: bool = False) -> tuple[bool, str, str | None, bool | None]:
        """(correct, reason, answer, lenient_only) of one response under ``extraction``.

        The monitor's second opinion runs only where it can differ: under a strict policy the
        lenient verdict of a response the policy scored 0; under ``lenient`` the ``boxed``
        verdict of a response it credited.
        """
        if len(extract_memo) + len(verify_memo) > _MEMO_LIMIT:
            verify_memo.clear()
            extract_memo.clear()
            canon.clear()
        def second_opinion(check) -> bool | None:
            # The monitor never changes the verdict: a poisoned or failing check gives None.
            try:
                return bool(check())
            except Poisoned:
                return None
            except Exception:
                return None

        answer = None
        try:
            if extraction == "lenient":
                correct, reason, answer = judge(gold, response)
                lenient_only = False if monitor else None
                if monitor and correct:
                    if settled is not None:
                        settled(correct, reason, answer)
                    lenient_only = second_opinion(
                        lambda: not judge_final(gold, _last_box(response))[0])
                return correct, reason, answer, lenient_only
            answer = final_answer(response, extraction)
            correct, reason = judge_final(gold, answer)
            lenient_only = None
            if monitor and not correct:
                if settled is not None:
                    settled(correct, reason, answer)
                lenient_only = second_opinion(lambda: judge(gold, response)[0])
            elif monitor:
                lenient_only = False
            return correct, reason, answer, lenient_only
        except Poisoned:
            return False, "timeout", answer if answer is not None else extract_answer(response), None
        except Exception:
            return False, "parse_failure", answer, None

    evaluate.poison = poison  # type: ignore[attr-defined]
    return evaluate


_FLUSH_SECONDS = 0.01  # a worker sends its finished results at least this often


def _worker_main(fd_in: int, fd_out: int) -> None:
    """Child loop: receive chunks of ``(idx, gold, response)``, send results in batches.

    To the parent: ``("ready", pid)`` once; ``("r", batch, [(idx, correct, reason, answer,
    lenient_only), ...])`` at the end of each chunk, every ``_FLUSH_SECONDS`` and before every announcement;
    ``("a", digest)`` / ``("e",)`` around every memo-miss math-verify call (see
    ``_make_evaluator``); ``("p", batch, idx, correct, reason, answer)`` when an item's verdict
    is settled and only the monitor's second opinion remains (after a flush, so ``idx`` is the
    first item the parent has not heard about). Because results are flushed before ``("a",
    ...)``, the parent knows
    that the first item it has not heard back about is the one inside that call. From the
    parent: ``("poison", [digest, ...])``, ``("unpoison", [digest, ...])`` (a larger limit retries
    them), ``(batch, extraction, monitor, items)``, or None to
    stop.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    conn_in = Connection(fd_in, writable=False)
    conn_out = Connection(fd_out, readable=False)
    out: list = []
    state = {"batch": 0, "flushed": time.monotonic()}

    def flush() -> None:
        if out:
            conn_out.send(("r", state["batch"], list(out)))
            out.clear()
        state["flushed"] = time.monotonic()

    def announce(digest: str) -> None:
        flush()
        conn_out.send(("a", digest))

    def settled(correct, reason, answer) -> None:
        # Earlier results first, so that this item is the first the parent has not heard
        # about: it keeps this verdict if the monitor's check must be killed.
        flush()
        conn_out.send(("p", state["batch"], state["idx"], bool(correct), reason, answer))

    evaluate = _make_evaluator(announce=announce, done=lambda: conn_out.send(("e",)),
                               settled=settled)
    hang_on = os.environ.get(_HANG_ENV)
    hang_silent = os.environ.get(_HANG_SILENT_ENV)
    conn_out.send(("ready", os.getpid()))
    try:
        while True:
            try:
                msg = conn_in.recv()
            except (EOFError, OSError):
                break
            if msg is None:
                break
            if msg[0] == "poison":
                evaluate.poison.update(msg[1])
                continue
            if msg[0] == "unpoison":  # a call with a larger limit retries these
                evaluate.poison.difference_update(msg[1])
                continue
            state["batch"], extraction, monitor, items = msg
            for idx, gold, response in items:
                if response in (hang_on, hang_silent):
                    # Test hooks: hang inside an announced call (as math-verify does) or
                    # silently between calls (as a runaway regex would), ignoring SIGTERM.
                    if response == hang_on:
                        announce("test-hang")
                    signal.signal(signal.SIGTERM, signal.SIG_IGN)
                    while True:
                        time.sleep(3600)
                state["idx"] = idx
                out.append((idx, *evaluate(gold, response, extraction, monitor)))
                if time.monotonic() - state["flushed"] > _FLUSH_SECONDS:
                    flush()
            flush()
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

    __slots__ = ("proc", "rx", "tx", "ready", "inflight", "since", "spawned", "busy", "busy_since",
                 "settled")

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
        w = _Worker()
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
    extraction: str = DEFAULT_EXTRACTION,
    monitor: bool = False,
) -> list[Verdict]:
    """Verdicts for paired responses and ground truths under ``extraction`` (:data:`EXTRACTIONS`).

    Identical (ground_truth, response) pairs are verified once per call. ``workers=None`` uses
    ``min(cpus, unique items)`` processes; ``workers<=0`` means one worker (a killable process is
    always needed for the timeout). ``timeout`` is the hard limit per item in seconds. With
    ``monitor=True`` every verdict carries ``lenient_only`` (the reward-hacking monitor); it
    costs a second math-verify pass on the responses where the two policies can differ.
    An unknown ``extraction`` raises ValueError; nothing else does.
    """
    check_extraction(extraction)
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
            verdicts[key] = Verdict(False, "no_answer", None, False if monitor else None)
        else:
            todo.append(key)
            queued.add(key)
    if todo:
        n = _default_workers(len(todo)) if workers is None else max(1, int(workers))
        try:
            with _LOCK:
                outcome = _get_pool().run(todo, n, timeout, extraction, monitor)
        except Exception:  # never propagate: an infrastructure failure scores 0.0
            logger.exception("polarity.reward: scoring failed")
            outcome = [(False, "parse_failure", None, None)] * len(todo)
        for key, (correct, reason, answer, lenient_only) in zip(todo, outcome):
            verdicts[key] = Verdict(bool(correct), reason, answer,
                                    lenient_only if monitor else None)
    return [verdicts[key] for key in pairs]


def score_batch(
    responses: list[str],
    ground_truths: list[str],
    workers: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    extraction: str = DEFAULT_EXTRACTION,
) -> list[float]:
    """1.0/0.0 per (response, ground truth) pair; same verdicts as :func:`score` one by one."""
    return [v.score for v in score_batch_detailed(responses, ground_truths, workers, timeout,
                                                  extraction)]


def score(response: str, ground_truth: str, extraction: str = DEFAULT_EXTRACTION) -> float:
    """1.0 if ``response``'s answer under ``extraction`` is math-verify-equivalent to
    ``ground_truth`` else 0.0. Never raises on any response or ground truth (an unknown
    ``extraction`` is a ValueError)."""
    check_extraction(extraction)
    try:
        return score_batch_detailed([response], [ground_truth], workers=1,
                                    extraction=extraction)[0].score
    except Exception:
        logger.exception("polarity.reward: score failed")
        return 0.0
