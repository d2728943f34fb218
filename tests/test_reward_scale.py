"""polarity.reward at evaluation scale: exact fast paths, memos, poison, isolation, fuzzing.

The fast paths (``_BoxedEnvPattern``, ``_AnchoredPattern``) must find exactly the matches of
math-verify's own regexes; the memoized evaluator must give exactly math-verify's verdicts; a
call that had to be killed must not cost a second timeout; a silent hang must not take the
finished items around it down with it; and adversarial strings must score 0.0/1.0 within the
timeout plus a margin, every time.
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
from polarity.reward import REASONS, Verdict, score, score_batch_detailed, wrap_ground_truth

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from scoring_pairs import make_pairs  # noqa: E402

CONFIGS = [math_verify.LatexExtractionConfig(), math_verify.ExprExtractionConfig()]


def naive(response: str, truth: str) -> bool:
    """math-verify's own verdict, as its README computes it (timeouts off: no hangs here)."""
    gold = math_verify.parse(wrap_ground_truth(truth), parsing_timeout=None)
    return bool(math_verify.verify(gold, math_verify.parse(response, parsing_timeout=None),
                                   timeout_seconds=None))


def wrapped_pairs():
    """(math-verify's compiled pattern, our wrapper) for every pattern the fast path wraps."""
    original = mvp.get_extraction_regexes(CONFIGS)
    fast = reward._fast_regexes(mvp, original)
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


def test_memoized_verdicts_equal_math_verify_on_a_realistic_evaluation():
    """Many problems x samples with repeated answers in many forms: every verdict is exact."""
    responses, truths = make_pairs(1200, samples=40, seed=11, pathological=0)
    got = score_batch_detailed(responses, truths, timeout=30.0)
    want = [naive(r, t) for r, t in zip(responses, truths)]
    assert [v.correct for v in got] == want
    assert {v.reason for v in got} >= {"correct", "wrong"}
    assert all(v.reason in REASONS for v in got)
    # and one worker, which sees every repeat, agrees too
    assert [v.correct for v in score_batch_detailed(responses, truths, workers=1)] == want


def test_in_process_evaluator_counts_each_distinct_answer_once():
    """The memos: 200 samples of 3 answer values in 2 wrappings need few math-verify calls."""
    calls = []
    original = (mvp.extract_match, mvp.parse_latex_cached)
    try:
        # Builds the evaluator in this process, which patches math-verify here: undone below
        # so that ``naive`` stays math-verify's own code.
        evaluate = reward._make_evaluator(announce=calls.append)
        rng = random.Random(0)
        answers = ["\\frac{3}{4}", "0.75", "7"]
        texts = [f"step {i} ... so $\\boxed{{{rng.choice(answers)}}}$" if i % 2 else
                 f"step {i}\n\\[\\boxed{{{rng.choice(answers)}}}\\]" for i in range(200)]
        verdicts = [evaluate("\\frac{3}{4}", t) for t in texts]
    finally:
        mvp.extract_match, mvp.parse_latex_cached = original
    extractions = sum(1 for c in calls if c.startswith("x"))
    verifications = sum(1 for c in calls if c.startswith("v"))
    assert extractions <= 2 * 3 + 1  # each (wrapping, answer) once, plus the gold's own
    # each (wrapping, value) once, and the fallback string of the wrong value per wrapping
    assert verifications <= 2 * 3 + 2
    assert [v[0] for v in verdicts] == [naive(t, "\\frac{3}{4}") for t in texts]


def test_a_killed_call_is_poisoned_not_retried():
    """Two different responses with the same hanging answer: one timeout's worth of time."""
    reward.shutdown()
    timeout = 2.0
    responses = ["First try: \\boxed{9^{9^{9^{9}}}}", "Again, so \\boxed{9^{9^{9^{9}}}}",
                 "\\boxed{3}"]
    start = time.monotonic()
    got = score_batch_detailed(responses, ["3", "3", "3"], workers=1, timeout=timeout)
    elapsed = time.monotonic() - start
    assert [v.reason for v in got] == ["timeout", "timeout", "correct"]
    assert elapsed < 1.6 * timeout + 2.0  # not 2 x timeout
    assert len(reward._POOL.poison) == 1


def test_a_silent_hang_reruns_the_unanswered_items_one_by_one(monkeypatch):
    """A hang outside math-verify's calls: finished-but-unsent results are not lost."""
    reward.shutdown()
    monkeypatch.setenv(reward._HANG_SILENT_ENV, "<<hang silently>>")
    try:
        # Chunks of 4 then 2: the hang is the second item of its chunk, after one the worker
        # finished but (most likely) had not sent yet.
        responses = [f"\\boxed{{{i}}}" for i in range(8)]
        responses[5] = "<<hang silently>>"
        truths = [str(i) for i in range(7)] + ["8"]
        got = score_batch_detailed(responses, truths, workers=1, timeout=1.0)
    finally:
        reward.shutdown()
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


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(ADVERSARIAL, st.sampled_from(["3", "\\frac{1}{2}", "x", "{", ""]))
def test_adversarial_inputs_score_within_the_timeout(response, truth):
    timeout = 1.0
    start = time.monotonic()
    got = score_batch_detailed([response], [truth], workers=1, timeout=timeout)[0]
    elapsed = time.monotonic() - start
    assert isinstance(got, Verdict) and got.score in (0.0, 1.0) and got.reason in REASONS
    assert elapsed < timeout + 3.0  # the margin covers a replacement worker's start


def test_score_never_raises_on_odd_types():
    for value in (None, 3, 2.5, b"\\boxed{1}", ["\\boxed{1}"], object()):
        assert score(value, "1") in (0.0, 1.0)
        assert score("\\boxed{1}", value) in (0.0, 1.0)


@pytest.mark.parametrize("workers", [1, 2])
def test_ordered_answers_are_not_confused_by_the_memo(workers):
    """latex2sympy's sets keep their written order, which math-verify compares against tuples:
    ``\\boxed{1, 2}`` and ``\\boxed{2, 1}`` must keep their own verdicts, in either order."""
    reward.shutdown()
    cases = [("$\\boxed{1, 2}$", "(1,2)"), ("$\\boxed{2, 1}$", "(1,2)"),
             ("$x = 1, y = 2$", "x=1, y=2"), ("$y = 2, x = 1$", "x=1, y=2"),
             ("$2$ and $1$", "(1, 2)"), ("$1$ and $2$", "(1, 2)")]
    for order in (cases, cases[::-1]):
        responses, truths = zip(*order)
        got = score_batch_detailed(list(responses), list(truths), workers=workers)
        assert [v.correct for v in got] == [naive(r, t) for r, t in order]


def test_a_call_that_gave_up_leaves_no_stale_work(monkeypatch):
    """Workers still holding items of a call that ended early are replaced, so a later call's
    items are never settled by the earlier call's deadlines."""
    reward.shutdown()
    pool = reward._get_pool()
    pool.run([("1", "$1$")], 1, 5.0)
    pool.workers[0].inflight.extend([0, 1])  # as if an earlier call broke off mid-chunk
    pool.workers[0].busy = "x-stale"
    stale_pid = pool.workers[0].proc.pid
    assert pool.run([("3", "$3$"), ("4", "$4$")], 1, 1.0) == [
        (True, "correct", "3"), (True, "correct", "4")]
    assert pool.workers[0].proc.pid != stale_pid
    reward.shutdown()
