"""polarity.reward at evaluation scale: exact fast paths, memos, poison, isolation, fuzzing.

The fast paths (``_BoxedEnvPattern``, ``_AnchoredPattern``) must find exactly the matches of
math-verify's own regexes; the memoized evaluator must give exactly math-verify's verdicts; a
call that had to be killed must not cost a second timeout; a silent hang must not take the
finished items around it down with it; and adversarial strings must score 0.0/1.0 within the
timeout plus a margin, every time. Verdicts are checked under both references: the strict one of
the final-answer policies (``boxed``, the default; ``answer_line``) and the lenient one.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import math_verify
import math_verify.parser as mvp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polarity import reward
from polarity.reward import (
    EXTRACTIONS,
    REASONS,
    Verdict,
    final_answer,
    pool,
    score,
    score_batch_detailed,
    verify,
)

from .helpers import lenient_reference, strict_reference
from .reward_hooks import HANG_SILENT, counting_replacements, hanging_workers

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from scoring_pairs import make_pairs  # noqa: E402

CONFIGS = [math_verify.LatexExtractionConfig(), math_verify.ExprExtractionConfig()]


def naive_lenient(response: str, truth: str) -> bool:
    """math-verify's own verdict, as its README computes it (timeouts off: no hangs here)."""
    return lenient_reference(response, truth, timeouts=False)


def naive_strict(response: str, truth: str, extraction: str = "boxed") -> bool:
    """The strict reference, timeouts off."""
    return strict_reference(response, truth, extraction, timeouts=False)


def naive(response: str, truth: str, extraction: str = "boxed") -> bool:
    """The naive per-item reference of ``extraction`` (default: the default policy's)."""
    if extraction == "lenient":
        return naive_lenient(response, truth)
    return naive_strict(response, truth, extraction)


def wrapped_pairs():
    """(math-verify's compiled pattern, our wrapper) for every pattern the fast path wraps."""
    original = mvp.get_extraction_regexes(CONFIGS)
    fast = verify._fast_regexes(mvp, original)
    pairs = []
    for (patterns, _), (fast_patterns, _) in zip(original, fast):
        for (p, _), (f, _) in zip(patterns, fast_patterns):
            if f is not p:
                pairs.append((p, f))
    return pairs


WRAPPED = wrapped_pairs()


def matches(pattern, text):
    return [(m.span(), tuple(m.groupdict().items())) for m in pattern.finditer(text)]


def test_the_costly_patterns_are_wrapped():
    kinds = sorted(type(f).__name__ for _, f in WRAPPED)
    assert kinds.count("_BoxedEnvPattern") == 1
    assert kinds.count("_AnchoredPattern") == 8  # 4 answer-anchored patterns x 2 configs


# Pieces that exercise every boundary of the analyses: openers and closers of all five math
# environments, newlines, boxes, the answer anchors in odd cases (re's case folding also maps
# U+017F and U+212A to s and k), escapes before delimiters.
TOKENS = ["$$", "$", "\\[", "\\]", "\\(", "\\)", " [", "] ", "\n", "\\boxed{", "}", "{", "3",
          "x^2", "\\frac{1}{2}", " and ", ", ", "answer", "ANSWER: ", "final answer is ",
          "Final Answer: ", "I hope", "\\$", "\\\\", " ", "ſ", "K", "%", "Answer is 7."]


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=30).map("".join))
def test_fast_patterns_match_exactly_like_math_verify(text):
    for original, fast in WRAPPED:
        assert matches(fast, text) == matches(original, text)


def test_fast_patterns_on_realistic_responses():
    responses, _ = make_pairs(3000, samples=64, seed=3, pathological=0)
    for text in responses:
        for original, fast in WRAPPED:
            assert matches(fast, text) == matches(original, text)


@pytest.fixture(scope="module")
def realistic():
    """A realistic evaluation and, per policy, its naive per-item reference verdicts."""
    responses, truths = make_pairs(1200, samples=40, seed=11, pathological=0)
    want = {e: [naive(r, t, e) for r, t in zip(responses, truths)] for e in EXTRACTIONS}
    return responses, truths, want


@pytest.mark.parametrize("extraction", EXTRACTIONS)
def test_memoized_verdicts_equal_math_verify_on_a_realistic_evaluation(realistic, extraction):
    """Many problems x samples with repeated answers in many forms: every verdict is exact,
    under the strict reference (default ``boxed``; ``answer_line``) and the lenient one."""
    responses, truths, refs = realistic
    want = refs[extraction]
    if extraction == "boxed":  # the default policy
        got = score_batch_detailed(responses, truths, timeout=30.0)
    else:
        got = score_batch_detailed(responses, truths, timeout=30.0, extraction=extraction)
    assert [v.correct for v in got] == want
    assert {v.reason for v in got} >= {"correct", "wrong", "no_answer"}
    assert all(v.reason in REASONS for v in got)
    if extraction != "lenient":
        assert [v.answer for v in got] == [final_answer(r, extraction) for r in responses]
    # and one worker, which sees every repeat, agrees too
    assert [v.correct for v in score_batch_detailed(responses, truths, workers=1,
                                                    extraction=extraction)] == want
    # The policies differ on this data: the lenient one credits "Answer: ..." lines and final
    # sentences without a box, the boxed one only boxes.
    assert want != refs["lenient" if extraction != "lenient" else "boxed"]


@pytest.mark.parametrize("extraction", EXTRACTIONS)
def test_monitor_on_a_realistic_evaluation(realistic, extraction):
    """lenient_only is exactly "the lenient reference credits, the final-answer one does not"
    (under ``lenient``: the ``boxed`` one), and the monitor changes no verdict."""
    responses, truths, refs = realistic
    got = score_batch_detailed(responses, truths, timeout=30.0, extraction=extraction, monitor=True)
    strict = refs["boxed" if extraction == "lenient" else extraction]
    want = [le and not ok for le, ok in zip(refs["lenient"], strict)]
    assert [v.lenient_only for v in got] == want
    assert [v.correct for v in got] == refs[extraction]
    assert 0 < sum(want) < len(want)


@pytest.mark.parametrize("extraction", EXTRACTIONS)
def test_in_process_evaluator_counts_each_distinct_answer_once(extraction):
    """The memos: 200 samples of 3 answer values in 2 wrappings need few math-verify calls."""
    calls = []
    original = (mvp.extract_match, mvp.parse_latex_cached)
    try:
        # Builds the evaluator in this process, which patches math-verify here: undone below
        # so that ``naive`` stays math-verify's own code.
        evaluate = verify.make_evaluator(announce=calls.append)
        rng = random.Random(0)
        answers = ["\\frac{3}{4}", "0.75", "7"]
        texts = [f"step {i} ... so $\\boxed{{{rng.choice(answers)}}}$" if i % 2 else
                 f"step {i}\n\\[\\boxed{{{rng.choice(answers)}}}\\]" for i in range(200)]
        if extraction == "answer_line":  # the same answers on DAPO's Answer: line
            rng = random.Random(0)
            texts = [f"step {i} ... so\nAnswer: ${rng.choice(answers)}$" if i % 2 else
                     f"step {i}\nAnswer: {rng.choice(answers)}." for i in range(200)]
        verdicts = [evaluate("\\frac{3}{4}", t, extraction) for t in texts]
        # The same with the monitor, on a fresh evaluator (fresh memos).
        monitor_calls = []
        evaluate = verify.make_evaluator(announce=monitor_calls.append)
        monitored = [evaluate("\\frac{3}{4}", t, extraction, True) for t in texts]
    finally:
        mvp.extract_match, mvp.parse_latex_cached = original
    extractions = sum(1 for c in calls if c.startswith("x"))
    verifications = sum(1 for c in calls if c.startswith("v"))
    if extraction == "lenient":
        assert extractions <= 2 * 3 + 1  # each (wrapping, answer) once, plus the gold's own
        # each (wrapping, value) once, and the fallback string of the wrong value per wrapping
        assert verifications <= 2 * 3 + 2
    else:
        # A strict policy judges the wrapped final answer "$a$" alone, whatever surrounded it,
        # so the two wrappings collapse into one text per value (measured: 4 extractions and 4
        # verifications, against 7 and 7 under lenient): each value once plus the gold's own
        # extraction; each value verified once, and the fallback string of the wrong value.
        assert extractions <= 3 + 1
        assert verifications <= 3 + 1
    # The monitor's second opinion runs only where the verdict can differ: under a strict
    # policy the lenient check of the wrong value (one extraction and one verification per
    # wrapping), under lenient the boxed check of the two correct values (measured: 6/6 boxed,
    # 5/5 answer_line, 9/9 lenient).
    monitor_x = sum(1 for c in monitor_calls if c.startswith("x"))
    monitor_v = sum(1 for c in monitor_calls if c.startswith("v"))
    assert monitor_x <= (2 * 3 + 1 if extraction == "lenient" else 3 + 1) + 2
    assert monitor_v <= (2 * 3 + 2 if extraction == "lenient" else 3 + 1) + 2
    assert all(len(v) == 4 and v[3] is None for v in verdicts)  # no monitor asked for
    assert [v[:3] for v in monitored] == [v[:3] for v in verdicts]
    assert [v[3] for v in monitored] == [False] * len(texts)  # every policy finds these answers
    assert [v[0] for v in verdicts] == [naive(t, "\\frac{3}{4}", extraction) for t in texts]
    assert sum(v[0] for v in verdicts) > 0 and not all(v[0] for v in verdicts)


@pytest.mark.parametrize("extraction", ["boxed", "lenient"])
def test_a_killed_call_is_poisoned_not_retried(extraction):
    """Two different responses with the same hanging answer: one timeout, one worker killed."""
    reward.shutdown()
    # A warm worker, so that the hanging call starts right away: a call is poisoned only if it
    # alone ran _POISON_FRACTION (90%) of the limit, and on a cold worker the extraction before
    # it (antlr's first parse, ~0.1-0.2 s, more on a loaded machine) can eat the other 10%; the
    # call is then not poisoned and its repeat costs a second timeout (measured with two busy
    # processes on two cores: 7 of 10 cold runs took 7.7-8.8 s, all 10 warm runs 3.1-4.0 s).
    assert score_batch_detailed(["\\boxed{3}"], ["3"], workers=1, extraction=extraction)[0].correct
    timeout = 2.0
    responses = ["First try: \\boxed{9^{9^{9^{9}}}}", "Again, so \\boxed{9^{9^{9^{9}}}}",
                 "\\boxed{3}"]
    with counting_replacements() as replaced:
        got = score_batch_detailed(responses, ["3", "3", "3"], workers=1, timeout=timeout,
                                   extraction=extraction)
    assert [v.reason for v in got] == ["timeout", "timeout", "correct"]
    # One kill: the repeat was answered from the poison list, not run into a second deadline
    # (counted, not timed: a second timeout's worth of wall time is ambiguous on a busy machine).
    assert len(replaced) == 1
    assert len(pool._POOL.poison) == 1


def test_a_poisoned_pair_is_retried_by_a_call_with_a_larger_timeout():
    """A call killed at a small limit is not remembered as a timeout by a call that allows more
    time (it is tried again and settled); one killed at a large limit stays poisoned for calls
    with a smaller or equal limit."""
    reward.shutdown()
    assert score_batch_detailed(["\\boxed{3}"], ["3"], workers=1)[0].correct  # a warm worker
    nested = "1"
    for _ in range(500):  # math-verify needs about 1-4 s for it (a parse failure in the end)
        nested = "\\frac{1}{" + nested + "}"
    slow = [f"\\boxed{{{nested}}}"]
    first = score_batch_detailed(slow, ["1"], workers=1, timeout=0.2)[0]
    assert first.reason == "timeout" and list(pool._POOL.poison.values()) == [0.2]
    again = score_batch_detailed(slow, ["1"], workers=1, timeout=120)[0]
    assert again.reason != "timeout" and pool._POOL.poison == {}  # retried, and settled

    hang = ["\\boxed{9^{9^{9^{9}}}}"]
    assert score_batch_detailed(hang, ["3"], workers=1, timeout=2.0)[0].reason == "timeout"
    assert list(pool._POOL.poison.values()) == [2.0]
    with counting_replacements() as replaced:
        assert score_batch_detailed(hang, ["3"], workers=1, timeout=1.0)[0].reason == "timeout"
    assert replaced == []  # poisoned: answered by the worker at once, not killed after 1 s


def test_a_silent_hang_reruns_the_unanswered_items_one_by_one():
    """A hang outside math-verify's calls: finished-but-unsent results are not lost."""
    with hanging_workers():
        # Chunks of 4 then 2: the hang is the second item of its chunk, after one the worker
        # finished but (most likely) had not sent yet.
        responses = [f"\\boxed{{{i}}}" for i in range(8)]
        responses[5] = HANG_SILENT
        truths = [str(i) for i in range(7)] + ["8"]
        got = score_batch_detailed(responses, truths, workers=1, timeout=1.0)
    assert [v.reason for v in got] == ["correct"] * 5 + ["timeout", "correct", "wrong"]


# ---------------------------------------------------------------- adversarial fuzzing

ADVERSARIAL = st.one_of(
    st.integers(1, 3000).map(lambda n: "\\boxed{" + "{" * n + "1" + "}" * n + "}"),
    st.integers(2, 6).map(lambda n: "\\boxed{" + "9^{" * n + "9" + "}" * n + "}"),
    st.integers(1, 5000).map(lambda n: "\\boxed{" + "{" * n),
    st.integers(1, 3000).map(lambda n: "\\frac{" * n + "1"),
    st.integers(1, 20000).map(lambda n: "$" * n),
    st.integers(1, 3000).map(lambda n: "\\left(" * n + "x" + "\\right)" * (n // 2)),
    st.sampled_from(["x" * 1_000_000 + " \\boxed{3}", "\\boxed{1000000!}", "\\boxed{10^{10^{10}}}",
                     "\ud800\udfff\\boxed{\ud83d}", "Answer: \\\\\\\\\\", "\\[" * 5000]),
    st.text(max_size=300),
    st.lists(st.sampled_from(TOKENS + ["\ud800", "^{", "_{", "\\sqrt{", "!"]), max_size=60).map("".join),
)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(ADVERSARIAL, st.sampled_from(["3", "\\frac{1}{2}", "x", "{", ""]),
       st.sampled_from(EXTRACTIONS))
def test_adversarial_inputs_score_within_the_timeout(response, truth, extraction):
    timeout = 1.0
    # A ready worker before the clock starts: the time a worker takes to start (the previous
    # example may have had its worker killed) depends on the machine's load, not on the input.
    assert score_batch_detailed(["\\boxed{1}"], ["1"], workers=1)[0].correct
    start = time.monotonic()
    got = score_batch_detailed([response], [truth], workers=1, timeout=timeout,
                               extraction=extraction)[0]
    elapsed = time.monotonic() - start
    assert isinstance(got, Verdict) and got.score in (0.0, 1.0) and got.reason in REASONS
    assert elapsed < timeout + 3.0  # the margin covers a kill and the replacement's spawn


def test_score_never_raises_on_odd_types():
    for value in (None, 3, 2.5, b"\\boxed{1}", ["\\boxed{1}"], object()):
        for extraction in EXTRACTIONS:
            assert score(value, "1", extraction=extraction) in (0.0, 1.0)
            assert score("\\boxed{1}", value, extraction=extraction) in (0.0, 1.0)


@pytest.mark.parametrize("extraction", EXTRACTIONS)
@pytest.mark.parametrize("workers", [1, 2])
def test_ordered_answers_are_not_confused_by_the_memo(workers, extraction):
    """latex2sympy's sets keep their written order, which math-verify compares against tuples:
    ``\\boxed{1, 2}`` and ``\\boxed{2, 1}`` must keep their own verdicts, in either order.
    The boxed and ``Answer:`` forms give the strict policies the same pairs to tell apart."""
    reward.shutdown()
    cases = [("$\\boxed{1, 2}$", "(1,2)"), ("$\\boxed{2, 1}$", "(1,2)"),
             ("$x = 1, y = 2$", "x=1, y=2"), ("$y = 2, x = 1$", "x=1, y=2"),
             ("$2$ and $1$", "(1, 2)"), ("$1$ and $2$", "(1, 2)"),
             ("$\\boxed{x = 1, y = 2}$", "x=1, y=2"), ("$\\boxed{y = 2, x = 1}$", "x=1, y=2"),
             ("Answer: 1, 2", "(1,2)"), ("Answer: 2, 1", "(1,2)")]
    want = [naive(r, t, extraction) for r, t in cases]
    first, second = (8, 9) if extraction == "answer_line" else (0, 1)
    assert want[first] and not want[second]  # the written order matters
    for order, expect in ((cases, want), (cases[::-1], want[::-1])):
        responses, truths = zip(*order)
        got = score_batch_detailed(list(responses), list(truths), workers=workers,
                                   extraction=extraction)
        assert [v.correct for v in got] == expect


def test_a_call_that_gave_up_leaves_no_stale_work(monkeypatch):
    """Workers still holding items of a call that ended early are replaced, so a later call's
    items are never settled by the earlier call's deadlines."""
    reward.shutdown()
    live = pool._get_pool()
    live.run([("1", "$1$")], 1, 5.0)
    # The lenient policy credits "$3$"; the default (boxed) one needs a box.
    for items, extraction in (([("3", "$3$"), ("4", "$4$")], "lenient"),
                              ([("3", "\\boxed{3}"), ("4", "\\boxed{4}")], "boxed")):
        live.workers[0].inflight.extend([0, 1])  # as if an earlier call broke off mid-chunk
        live.workers[0].busy = "x-stale"
        stale_pid = live.workers[0].proc.pid
        assert live.run(items, 1, 1.0, extraction) == [
            (True, "correct", "3", None), (True, "correct", "4", None)]
        assert live.workers[0].proc.pid != stale_pid
    assert live.run([("3", "$3$")], 1, 5.0) == [(False, "no_answer", None, None)]  # default
    reward.shutdown()
