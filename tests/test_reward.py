"""Tests for polarity.reward: agreement with math-verify, reasons, timeouts, robustness."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import math_verify
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polarity import reward
from polarity.reward import (
    DEFAULT_TIMEOUT,
    REASONS,
    Verdict,
    extract_answer,
    score,
    score_batch,
    score_batch_detailed,
    wrap_ground_truth,
)

SENTINEL = "<<polarity-test: hang this worker>>"

# (response, ground truth): formats, equivalences, near misses, malformed inputs.
CASES = [
    ("\\boxed{579}", "579"),
    ("\\boxed{\\frac{1}{2}}", "0.5"),
    ("The answer is 12", "13"),
    ("Answer: 42", "42"),
    ("", "1"),
    ("The final answer is $\\boxed{\\frac{\\sqrt{3}}{2}}$", "\\frac{\\sqrt3}{2}"),
    ("\\boxed{x^2+2x+1}", "(x+1)^2"),
    ("So x = 3.", "3"),
    ("\\boxed{(1, 2)}", "(1,2)"),
    ("\\boxed{\\{1,2\\}}", "\\{2,1\\}"),
    ("\\boxed{[0, 1)}", "[0,1)"),
    ("\\boxed{50\\%}", "0.5"),
    ("\\boxed{10^\\circ}", "10"),
    ("\\boxed{1,000}", "1000"),
    ("I think 7 then \\boxed{8}", "7"),
    ("\\boxed{2} and later \\boxed{3}", "3"),
    ("\\boxed{\\text{(B)}}", "B"),
    ("$x = 5$", "5"),
    ("\\boxed{\\infty}", "\\infty"),
    ("\\boxed{-\\frac{3}{4}}", "-0.75"),
    ("\\boxed{y=2x+1}", "2x+1"),
    ("\\boxed{\\dfrac{1}{3}}", "\\frac13"),
    ("\\boxed{", "1"),
    ("Answer: $\\frac{7}{2}$", "3.5"),
    ("\\fbox{4}", "4"),
    ("\\boxed{\\pi}", "3.14159"),
    ("\\boxed{2\\sqrt{2}}", "\\sqrt{8}"),
    ("\\boxed{1/2}", "\\frac{1}{2}"),
    ("\\boxed{6}", "\\boxed{6}"),
    ("6", "$6$"),
    ("\\boxed{3}", "\\unknownmacro{"),
    ("\\boxed{\\text{yes}}", "yes"),
    ("\\boxed{1, 2}", "1,2"),
    ("\\boxed{\\begin{pmatrix}1\\\\2\\end{pmatrix}}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"),
    ("no numbers here", "5"),
    ("Answer: foo bar", "5"),
    ("$\\frac{1}{2}$", "1/2"),
    ("0.333333", "\\frac{1}{3}"),
    ("The answer is \\boxed{3}. I hope it is correct.", "3"),
    ("x \\in (0, 1]", "(0,1]"),
    ("\\boxed{x \\in (0, 1]}", "(0,1]"),
    ("\\boxed{a+b}", "b+a"),
    ("\\boxed{}", "1"),
    ("Answer:", "1"),
    ("\\boxed{3}", ""),
    ("\\boxed{3}", "abc def"),
    ("\\boxed{2}\ud800", "2"),
    ("\ud800", "1"),
]


def mv_verdict(response: str, ground_truth: str) -> float:
    """math-verify's own verdict, computed in this process with its default settings."""
    gold = math_verify.parse(wrap_ground_truth(ground_truth))
    return 1.0 if math_verify.verify(gold, math_verify.parse(response)) else 0.0


@pytest.fixture(scope="module")
def expected():
    return [mv_verdict(r, g) for r, g in CASES]


@pytest.fixture
def hang_hook(monkeypatch):
    """Workers started inside the test hang on SENTINEL; the pool is reset around the test."""
    reward.shutdown()
    monkeypatch.setenv(reward._HANG_ENV, SENTINEL)
    yield SENTINEL
    reward.shutdown()


# ---------------------------------------------------------------- agreement with math-verify


def test_hand_asserted_cases():
    assert score("\\boxed{579}", "579") == 1.0
    assert score("Answer: 42", "42") == 1.0
    assert score("The answer is 12", "13") == 0.0
    assert score("", "1") == 0.0
    assert score("\\boxed{\\frac{1}{2}}", "0.5") == mv_verdict("\\boxed{\\frac{1}{2}}", "0.5")
    details = score_batch_detailed(["\\boxed{579}", "The answer is 12", "", "Answer: 42"], ["579", "13", "1", "42"])
    assert [v.reason for v in details] == ["correct", "wrong", "no_answer", "correct"]
    assert details[0] == Verdict(True, "correct", "579")


def test_score_agrees_with_math_verify(expected):
    got = [score(r, g) for r, g in CASES]
    mismatches = [(c, e, s) for c, e, s in zip(CASES, expected, got) if e != s]
    assert not mismatches


def test_batch_agrees_with_math_verify_and_reasons_consistent(expected):
    details = score_batch_detailed([r for r, _ in CASES], [g for _, g in CASES])
    assert [1.0 if v.correct else 0.0 for v in details] == expected
    for (r, g), v in zip(CASES, details):
        assert v.reason in REASONS
        assert (v.reason == "correct") == v.correct, (r, g, v)
        assert v.reason != "timeout"
    by_case = dict(zip(CASES, details))
    assert by_case[("", "1")].reason == "no_answer"
    assert by_case[("\\boxed{", "1")].reason == "no_answer"
    assert by_case[("Answer: foo bar", "5")].reason == "parse_failure"  # found text, unparsable
    assert by_case[("\\boxed{3}", "\\unknownmacro{")].reason == "parse_failure"  # gold unparsable
    assert by_case[("I think 7 then \\boxed{8}", "7")].reason == "wrong"


def test_gold_is_wrapped_and_order_matters():
    assert wrap_ground_truth("\\frac{1}{2}") == "$\\frac{1}{2}$"
    assert wrap_ground_truth("\\boxed{3}") == "\\boxed{3}"
    assert wrap_ground_truth("$3$") == "$3$"
    # A LaTeX gold that would not parse as plain text without the wrapping.
    assert score("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}") == 1.0


def test_score_batch_equals_score_one_by_one_with_repeats():
    responses = ["\\boxed{4}", "\\boxed{5}", "\\boxed{4}", "", "Answer: 4", "\\boxed{4}", "4.0", "\\boxed{5}"]
    truths = ["4", "4", "4", "4", "4", "5", "4", "4"]
    batch = score_batch(responses, truths, workers=2)
    assert batch == [score(r, g) for r, g in zip(responses, truths)]
    assert batch == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert score_batch([], []) == []
    with pytest.raises(ValueError):
        score_batch(["a"], [])


def test_workers_argument_variants():
    responses, truths = ["\\boxed{1}", "\\boxed{2}", "\\boxed{3}"], ["1", "2", "4"]
    want = [1.0, 1.0, 0.0]
    for workers in (None, 0, 1, 3, 8):
        assert score_batch(responses, truths, workers=workers) == want


def test_non_string_inputs_do_not_raise():
    assert score("\\boxed{42}", 42) == 1.0
    assert score(None, "1") == 0.0


def test_whitespace_shortcut_agrees_with_math_verify():
    for s in ["", " ", "\n\n", "\t \r\n", "\u2003\u00a0"]:
        assert math_verify.parse(s) == []
        assert score_batch_detailed([s], ["1"])[0] == Verdict(False, "no_answer", None)


# ---------------------------------------------------------------- timeouts and robustness


def test_timeout_kills_hung_worker_and_batch_continues(hang_hook):
    assert score("\\boxed{1}", "1") == 1.0  # starts the persistent worker (with the hook)
    old_pid = reward._POOL.workers[0].proc.pid
    responses = ["\\boxed{1}", hang_hook, "\\boxed{2}", "\\boxed{3}", "\\boxed{9}"]
    truths = ["1", "1", "2", "3", "4"]
    timeout = 1.5
    start = time.monotonic()
    details = score_batch_detailed(responses, truths, workers=1, timeout=timeout)
    elapsed = time.monotonic() - start
    assert elapsed < timeout + 2.0
    assert details[1] == Verdict(False, "timeout", None)
    assert [v.correct for v in details] == [True, False, True, True, False]
    assert [v.reason for v in details] == ["correct", "timeout", "correct", "correct", "wrong"]
    with pytest.raises(ProcessLookupError):
        os.kill(old_pid, 0)  # the hung worker was killed (and reaped)
    assert reward._POOL.workers[0].proc.pid != old_pid
    assert score("\\boxed{7}", "7") == 1.0  # the replacement keeps serving


def test_timeout_with_several_workers(hang_hook):
    responses = [hang_hook, "\\boxed{1}", hang_hook, "\\boxed{2}", "\\boxed{2}", "x"]
    truths = ["1", "1", "2", "2", "3", "1"]
    start = time.monotonic()
    got = score_batch(responses, truths, workers=2, timeout=1.0)
    assert got == [0.0, 1.0, 0.0, 1.0, 0.0, 0.0]
    assert time.monotonic() - start < 2 * 1.0 + 4.0  # two hangs, possibly on one worker


def test_pathological_power_tower_is_bounded():
    timeout = 2.0
    start = time.monotonic()
    details = score_batch_detailed(["The answer is \\boxed{9^{9^{9^{9}}}}", "\\boxed{2}"], ["9", "2"], timeout=timeout)
    assert time.monotonic() - start < timeout + 3.0
    assert details[0].correct in (True, False) and details[0].reason in REASONS
    assert details[1].correct


def test_dead_worker_is_restarted():
    assert score("\\boxed{1}", "1") == 1.0
    worker = reward._POOL.workers[0]
    worker.proc.kill()
    worker.proc.wait()
    assert score("\\boxed{2}", "2") == 1.0
    assert score_batch(["\\boxed{3}"] * 3, ["3"] * 3) == [1.0] * 3


def test_megabyte_input_does_not_hang():
    big = "a" * 1_000_000 + " so the answer is \\boxed{7}"
    start = time.monotonic()
    assert extract_answer(big) == "7"
    assert extract_answer("{" * 1_000_000) is None
    assert extract_answer("\\boxed{" * 100_000) is None
    assert extract_answer("Answer: " * 100_000) is None
    assert time.monotonic() - start < 5.0
    start = time.monotonic()
    value = score(big, "7")
    assert value in (0.0, 1.0)
    assert time.monotonic() - start < DEFAULT_TIMEOUT + 3.0


def test_surrogates_do_not_crash():
    assert score("\ud800", "1") == 0.0
    assert score("\\boxed{2}\ud800", "2") == mv_verdict("\\boxed{2}\ud800", "2")
    assert score("\\boxed{2}", "2\udfff") in (0.0, 1.0)
    assert extract_answer("\\boxed{\ud800}") == "\ud800"


def test_thread_safe():
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda i: score(f"\\boxed{{{i}}}", str(i % 3)), range(12)))
    assert got == [1.0 if i == i % 3 else 0.0 for i in range(12)]


alphabet = st.sampled_from(list("{}\\$()[]^_0123456789 abx=+-.,:\n") + ["\\boxed{", "\\frac", "Answer:", "\\fbox{", "\ud800"])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(alphabet, max_size=40).map("".join), st.sampled_from(["1", "x", "\\frac{1}{2}", "{", ""]))
def test_fuzz_score_never_raises(response, truth):
    assert score(response, truth) in (0.0, 1.0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.characters() | st.sampled_from(["\\boxed{", "}", "{", "Answer:", "\\", "\n"]), max_size=200).map("".join))
def test_fuzz_extract_answer(text):
    out = extract_answer(text)
    assert out is None or (isinstance(out, str) and out.strip() == out and out)


# ---------------------------------------------------------------- extract_answer


@pytest.mark.parametrize(
    "text, want",
    [
        ("\\boxed{42}", "42"),
        ("first \\boxed{1} then \\boxed{2}", "2"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed {3}", "3"),
        ("\\fbox{5}", "5"),
        ("\\boxed{\\{1,2\\}}", "\\{1,2\\}"),
        ("\\boxed{a} and \\boxed{b", "a"),  # last box unbalanced (truncated): previous one
        ("\\boxed{}", None),
        ("\\boxed{x} Answer: 7", "x"),  # boxed wins over Answer:
        ("Answer: 42", "42"),
        ("answer: $\\frac{3}{4}$.", "\\frac{3}{4}"),
        ("ANSWER:  17.  \nmore text", "17"),
        ("Answer: 1\nThe final Answer: 2", "2"),
        ("**Answer:** 12", "12"),
        ("Answer:   ", None),
        ("nothing here", None),
        ("", None),
        ("\\boxed{\\boxed{3}}", "\\boxed{3}"),
        ("} } \\boxed{4} {", "4"),
    ],
)
def test_extract_answer(text, want):
    assert extract_answer(text) == want
