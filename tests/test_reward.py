"""Tests for polarity.reward: agreement with math-verify, reasons, timeouts, robustness.

Every agreement test runs against both references: the strict one of the final-answer policies
(``boxed``, the default, and ``answer_line``), math-verify on the wrapped final answer alone,
and the lenient one (``extraction="lenient"``), math-verify on the whole response.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import math_verify
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polarity.reward import (
    DEFAULT_TIMEOUT,
    EXTRACTIONS,
    REASONS,
    Verdict,
    extract_answer,
    final_answer,
    last_boxed,
    pool,
    score,
    score_batch,
    score_batch_detailed,
    wrap_ground_truth,
)

from .helpers import lenient_reference, strict_reference
from .reward_hooks import HANG, hanging_workers

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


STRICT = ("boxed", "answer_line")


def mv_verdict(response: str, ground_truth: str) -> float:
    """The lenient reference (``helpers.lenient_reference``) as 1.0/0.0."""
    return float(lenient_reference(response, ground_truth))


def mv_strict(response: str, ground_truth: str, extraction: str = "boxed") -> float:
    """The strict reference (``helpers.strict_reference``) as 1.0/0.0."""
    return float(strict_reference(response, ground_truth, extraction))


def reference(response: str, ground_truth: str, extraction: str) -> float:
    """The verdict ``extraction`` must give, computed in this process with math-verify."""
    if extraction == "lenient":
        return mv_verdict(response, ground_truth)
    return mv_strict(response, ground_truth, extraction)


@pytest.fixture(scope="module")
def expected():
    """Per policy, the reference verdict of every case."""
    return {e: [reference(r, g, e) for r, g in CASES] for e in EXTRACTIONS}


@pytest.fixture
def hang_hook():
    """Workers started inside the test hang on ``HANG``; the pool is reset around the test."""
    with hanging_workers():
        yield HANG


# ---------------------------------------------------------------- agreement with math-verify


def test_hand_asserted_cases():
    assert score("\\boxed{579}", "579") == 1.0
    assert score("\\boxed{579}", "579", extraction="lenient") == 1.0
    assert score("Answer: 42", "42", extraction="lenient") == 1.0
    assert score("Answer: 42", "42") == 0.0  # the default credits only a \\boxed{} answer
    assert score("Answer: 42", "42", extraction="answer_line") == 1.0
    assert score("The answer is 12", "13") == 0.0
    assert score("The answer is 12", "13", extraction="lenient") == 0.0
    assert score("", "1") == 0.0
    assert score("", "1", extraction="lenient") == 0.0
    assert score("\\boxed{\\frac{1}{2}}", "0.5") == mv_strict("\\boxed{\\frac{1}{2}}", "0.5") == 1.0
    assert score("\\boxed{\\frac{1}{2}}", "0.5", extraction="lenient") == mv_verdict("\\boxed{\\frac{1}{2}}", "0.5")
    responses, truths = ["\\boxed{579}", "The answer is 12", "", "Answer: 42"], ["579", "13", "1", "42"]
    details = score_batch_detailed(responses, truths, extraction="lenient")
    assert [v.reason for v in details] == ["correct", "wrong", "no_answer", "correct"]
    assert details[0] == Verdict(True, "correct", "579")
    details = score_batch_detailed(responses, truths)
    assert [v.reason for v in details] == ["correct", "no_answer", "no_answer", "no_answer"]
    assert details[0] == Verdict(True, "correct", "579")
    assert [v.answer for v in details] == ["579", None, None, None]
    details = score_batch_detailed(responses, truths, extraction="answer_line")
    assert [v.reason for v in details] == ["no_answer", "no_answer", "no_answer", "correct"]
    assert details[3] == Verdict(True, "correct", "42")


def test_reference_policies_differ_on_the_cases(expected):
    """The cases tell the policies apart (else the agreement tests below would prove little)."""
    assert expected["boxed"] != expected["lenient"]
    assert expected["answer_line"] != expected["lenient"]
    for e in EXTRACTIONS:
        assert 0 < sum(expected[e]) < len(CASES)


@pytest.mark.parametrize("extraction", [None, *EXTRACTIONS])
def test_score_agrees_with_math_verify(expected, extraction):
    """``None``: the default policy, which must be the strict ``boxed`` reference."""
    want = expected["boxed" if extraction is None else extraction]
    if extraction is None:
        got = [score(r, g) for r, g in CASES]
    else:
        got = [score(r, g, extraction=extraction) for r, g in CASES]
    mismatches = [(c, e, s) for c, e, s in zip(CASES, want, got) if e != s]
    assert not mismatches


@pytest.mark.parametrize("extraction", EXTRACTIONS)
def test_batch_agrees_with_math_verify_and_reasons_consistent(expected, extraction):
    details = score_batch_detailed([r for r, _ in CASES], [g for _, g in CASES],
                                   extraction=extraction)
    assert [1.0 if v.correct else 0.0 for v in details] == expected[extraction]
    for (r, g), v in zip(CASES, details):
        assert v.reason in REASONS
        assert (v.reason == "correct") == v.correct, (r, g, v)
        assert v.reason != "timeout"
        if extraction in STRICT:
            # A strict verdict reports the final answer it judged; none means "no_answer".
            assert v.answer == final_answer(r, extraction), (r, g, v)
            if v.answer is None:
                assert v.reason == "no_answer", (r, g, v)
    by_case = dict(zip(CASES, details))
    assert by_case[("", "1")].reason == "no_answer"
    assert by_case[("\\boxed{", "1")].reason == "no_answer"
    if extraction == "lenient":
        assert by_case[("Answer: foo bar", "5")].reason == "parse_failure"  # found text, unparsable
    else:  # boxed: no box at all; answer_line: "foo bar" parses, as a product of symbols
        want = {"boxed": "no_answer", "answer_line": "wrong"}[extraction]
        assert by_case[("Answer: foo bar", "5")].reason == want
    if extraction != "answer_line":
        assert by_case[("\\boxed{3}", "\\unknownmacro{")].reason == "parse_failure"  # gold unparsable
        assert by_case[("I think 7 then \\boxed{8}", "7")].reason == "wrong"
    else:  # no Answer: line
        assert by_case[("\\boxed{3}", "\\unknownmacro{")].reason == "no_answer"
        assert by_case[("I think 7 then \\boxed{8}", "7")].reason == "no_answer"
    if extraction == "boxed":
        # Only the last box counts; math-verify's lenient default reads both boxes as "2,3".
        assert by_case[("\\boxed{2} and later \\boxed{3}", "3")] == Verdict(True, "correct", "3")
        assert by_case[("So x = 3.", "3")] == Verdict(False, "no_answer", None)


@pytest.mark.parametrize("extraction", EXTRACTIONS)
def test_monitor_agrees_with_the_two_references(expected, extraction):
    """lenient_only is exactly "the lenient reference credits, the final-answer one does not"."""
    details = score_batch_detailed([r for r, _ in CASES], [g for _, g in CASES],
                                   extraction=extraction, monitor=True)
    strict = expected["boxed" if extraction == "lenient" else extraction]
    want = [bool(le and not ok) for le, ok in zip(expected["lenient"], strict)]
    assert [v.lenient_only for v in details] == want
    assert [v.score for v in details] == expected[extraction]  # the monitor changes no verdict
    assert any(want)


def test_gold_is_wrapped_and_order_matters():
    assert wrap_ground_truth("\\frac{1}{2}") == "$\\frac{1}{2}$"
    assert wrap_ground_truth("\\boxed{3}") == "\\boxed{3}"
    assert wrap_ground_truth("$3$") == "$3$"
    # A LaTeX gold that would not parse as plain text without the wrapping.
    assert score("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}") == 1.0


@pytest.mark.parametrize("extraction, want", [
    ("lenient", [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]),
    ("boxed", [1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]),  # "Answer: 4" and "4.0" have no box
    ("answer_line", [0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]),
])
def test_score_batch_equals_score_one_by_one_with_repeats(extraction, want):
    responses = ["\\boxed{4}", "\\boxed{5}", "\\boxed{4}", "", "Answer: 4", "\\boxed{4}", "4.0", "\\boxed{5}"]
    truths = ["4", "4", "4", "4", "4", "5", "4", "4"]
    batch = score_batch(responses, truths, workers=2, extraction=extraction)
    assert batch == [score(r, g, extraction=extraction) for r, g in zip(responses, truths)]
    assert batch == want
    if extraction == "boxed":  # the default
        assert score_batch(responses, truths, workers=2) == want
    assert score_batch([], [], extraction=extraction) == []
    with pytest.raises(ValueError):
        score_batch(["a"], [], extraction=extraction)


def test_workers_argument_variants():
    responses, truths = ["\\boxed{1}", "\\boxed{2}", "\\boxed{3}"], ["1", "2", "4"]
    want = [1.0, 1.0, 0.0]
    for workers in (None, 0, 1, 3, 8):
        assert score_batch(responses, truths, workers=workers) == want
        assert score_batch(responses, truths, workers=workers, extraction="lenient") == want


@pytest.mark.parametrize("extraction", EXTRACTIONS)
def test_non_string_inputs_do_not_raise(extraction):
    assert score("\\boxed{42}", 42, extraction=extraction) == (0.0 if extraction == "answer_line" else 1.0)
    assert score("Answer: 42", 42, extraction=extraction) == (0.0 if extraction == "boxed" else 1.0)
    assert score(None, "1", extraction=extraction) == 0.0


def test_whitespace_shortcut_agrees_with_math_verify():
    for s in ["", " ", "\n\n", "\t \r\n", "\u2003\u00a0"]:
        assert math_verify.parse(s) == []
        assert all(final_answer(s, e) is None for e in EXTRACTIONS)
        assert score_batch_detailed([s], ["1"])[0] == Verdict(False, "no_answer", None)
        for e in EXTRACTIONS:
            assert score_batch_detailed([s], ["1"], extraction=e)[0] == Verdict(False, "no_answer", None)
            assert score_batch_detailed([s], ["1"], extraction=e, monitor=True)[0] == Verdict(
                False, "no_answer", None, False)


# ---------------------------------------------------------------- timeouts and robustness


def test_timeout_kills_hung_worker_and_batch_continues(hang_hook):
    assert score("\\boxed{1}", "1") == 1.0  # starts the persistent worker (with the hook)
    old_pid = pool._POOL.workers[0].proc.pid
    responses = ["\\boxed{1}", hang_hook, "\\boxed{2}", "\\boxed{3}", "\\boxed{9}"]
    truths = ["1", "1", "2", "3", "4"]
    timeout = 1.5
    start = time.monotonic()
    details = score_batch_detailed(responses, truths, workers=1, timeout=timeout)
    elapsed = time.monotonic() - start
    # liveness, not speed: the hung call never returns by itself; the margin covers a fresh
    # worker's start-up (imports) on a loaded machine (3.6 s seen with the suite running)
    assert elapsed < timeout + 20.0
    assert details[1] == Verdict(False, "timeout", None)
    assert [v.correct for v in details] == [True, False, True, True, False]
    assert [v.reason for v in details] == ["correct", "timeout", "correct", "correct", "wrong"]
    with pytest.raises(ProcessLookupError):
        os.kill(old_pid, 0)  # the hung worker was killed (and reaped)
    assert pool._POOL.workers[0].proc.pid != old_pid
    assert score("\\boxed{7}", "7") == 1.0  # the replacement keeps serving


def test_timeout_with_several_workers(hang_hook):
    responses = [hang_hook, "\\boxed{1}", hang_hook, "\\boxed{2}", "\\boxed{2}", "x"]
    truths = ["1", "1", "2", "2", "3", "1"]
    score_batch(["\\boxed{1}"] * 2, ["1"] * 2, workers=2)  # workers started before the clock
    start = time.monotonic()
    got = score_batch(responses, truths, workers=2, timeout=1.0)
    assert got == [0.0, 1.0, 0.0, 1.0, 0.0, 0.0]
    assert time.monotonic() - start < 2 * 1.0 + 4.0  # two hangs, possibly on one worker


def test_pathological_power_tower_is_bounded():
    timeout = 2.0
    score("\\boxed{1}", "1")  # a worker started before the clock (start-up is not the input's)
    start = time.monotonic()
    details = score_batch_detailed(["The answer is \\boxed{9^{9^{9^{9}}}}", "\\boxed{2}"], ["9", "2"], timeout=timeout)
    assert time.monotonic() - start < timeout + 3.0
    assert details[0].correct in (True, False) and details[0].reason in REASONS
    assert details[1].correct


def test_dead_worker_is_restarted():
    assert score("\\boxed{1}", "1") == 1.0
    worker = pool._POOL.workers[0]
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
    score("\\boxed{1}", "1")  # a worker started before the clock (start-up is not the input's)
    start = time.monotonic()
    value = score(big, "7")
    assert value in (0.0, 1.0)
    assert time.monotonic() - start < DEFAULT_TIMEOUT + 3.0


def test_surrogates_do_not_crash():
    for e in EXTRACTIONS:
        assert score("\ud800", "1", extraction=e) == 0.0
        assert score("\\boxed{2}\ud800", "2", extraction=e) == reference("\\boxed{2}\ud800", "2", e)
        assert score("\\boxed{2}", "2\udfff", extraction=e) in (0.0, 1.0)
        assert score("Answer: \ud800", "1", extraction=e) == 0.0
    assert score("\\boxed{2}\ud800", "2") == mv_strict("\\boxed{2}\ud800", "2") == 1.0
    assert extract_answer("\\boxed{\ud800}") == "\ud800"
    assert final_answer("\\boxed{\ud800}") == "\ud800"


def test_thread_safe():
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda i: score(f"\\boxed{{{i}}}", str(i % 3)), range(12)))
    assert got == [1.0 if i == i % 3 else 0.0 for i in range(12)]


alphabet = st.sampled_from(list("{}\\$()[]^_0123456789 abx=+-.,:\n") + ["\\boxed{", "\\frac", "Answer:", "\\fbox{", "\ud800"])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(alphabet, max_size=40).map("".join), st.sampled_from(["1", "x", "\\frac{1}{2}", "{", ""]),
       st.sampled_from(EXTRACTIONS))
def test_fuzz_score_never_raises(response, truth, extraction):
    assert score(response, truth) in (0.0, 1.0)
    assert score(response, truth, extraction=extraction) in (0.0, 1.0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.characters() | st.sampled_from(["\\boxed{", "}", "{", "Answer:", "\\", "\n"]), max_size=200).map("".join))
def test_fuzz_extract_answer(text):
    out = extract_answer(text)
    assert out is None or (isinstance(out, str) and out.strip() == out and out)
    assert out == final_answer(text, "lenient")
    boxed, line = final_answer(text), final_answer(text, "answer_line")
    for got in (boxed, line):
        assert got is None or (isinstance(got, str) and got.strip() == got and got)
    assert out == (boxed if boxed is not None else line)  # lenient: the box, else the line
    assert boxed == last_boxed(text)


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
        # The box that opens last counts: truncated (never closed) or empty, there is no answer;
        # an earlier box does not stand in for it.
        ("\\boxed{a} and \\boxed{b", None),
        ("\\boxed{a} and \\boxed{}", None),
        ("\\boxed{a} and \\boxed{ }", None),
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
        ("\\boxed{\\boxed{3}}", "3"),  # the inner box opens last
        ("\\boxed{\\frac{1}{\\boxed{2}}}", "2"),
        ("} } \\boxed{4} {", "4"),
    ],
)
def test_extract_answer(text, want):
    assert extract_answer(text) == want


def test_last_boxed_is_the_boxed_policy():
    """``last_boxed``, public as the project's one boxed-answer extractor (``polarity.data``
    reads ground truths with it): the box that opens last; None when unclosed or empty."""
    assert last_boxed("first \\boxed{1} then \\boxed{2}") == "2"
    assert last_boxed("\\boxed {3}") == last_boxed("\\fbox{3}") == "3"
    assert last_boxed("\\boxed{\\frac{1}{\\boxed{2}}}") == "2"
    assert last_boxed("\\boxed{\\{1,2\\}}") == "\\{1,2\\}"
    for text in ("\\boxed{a} and \\boxed{b", "\\boxed{a} and \\boxed{ }", "Answer: 42", ""):
        assert last_boxed(text) is None
        assert final_answer(text) is None
