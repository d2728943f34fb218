"""Exact verification with memos: math-verify's verdict, computed once per distinct answer.

Runs inside the pool's worker processes (:mod:`.pool`), where math-verify's SIGALRM timeouts are
off and the pool enforces the limit from outside. Imports only the standard library at module
level and math_verify inside :func:`make_evaluator`, so a worker stays light. The memos and the
regex shortcuts are exact (tests compare them with math-verify's own code); they are what makes
n samples of one problem cheap (``benchmarks/bench_scoring.py``).
"""

from __future__ import annotations

import re

from .extract import DEFAULT_EXTRACTION, extract_answer, final_answer, last_boxed, wrap_ground_truth

__all__ = ["make_evaluator"]

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


def make_evaluator(announce=None, done=None, settled=None):
    """Import math_verify and return ``evaluate(gold, response, extraction, monitor)``.

    ``evaluate`` gives ``(correct, reason, answer, lenient_only)`` and never raises; its
    ``poison`` attribute is the set of digests it answers ``timeout`` at once. This is the
    default evaluator factory of the pool's workers (``pool.EVALUATOR_FACTORY``).

    The lenient verdict is ``verify(parse(wrap(gold)), parse(response))`` with math-verify's
    default configs (a strict policy's: the same on the wrapped final answer), computed with two
    exact memos that make the n samples of one problem cheap:

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
                        lambda: not judge_final(gold, last_boxed(response))[0])
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

