"""The extraction policy of polarity.reward: the final answer is credited, not a restated question.

Hand-computed cases: the default ``boxed`` policy (and ``answer_line``) credits only the final
answer, judged with math-verify's equivalence; ``lenient`` is math-verify's own default, which
credits a response that restates the question (its fallback to the last expression in the
text); the monitor (``monitor=True``, ``Verdict.lenient_only``) flags exactly the responses the
lenient policy credits and the final-answer check does not. A property test checks the strict
verdicts against the strict reference computed in this process with math-verify.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polarity import reward
from polarity.reward import (
    DEFAULT_EXTRACTION,
    EXTRACTIONS,
    REASONS,
    Verdict,
    check_extraction,
    final_answer,
    score,
    score_batch,
    score_batch_detailed,
    wrap_ground_truth,
)

from .helpers import lenient_reference, strict_reference
from .reward_hooks import HANG, hanging_workers


def reference(response: str, gold: str, extraction: str) -> bool:
    if extraction == "lenient":
        return lenient_reference(response, gold)
    return strict_reference(response, gold, extraction)


def test_the_default_policy_is_boxed():
    assert DEFAULT_EXTRACTION == "boxed"
    assert EXTRACTIONS == ("boxed", "answer_line", "lenient")


# ---------------------------------------------------------------- restating the question


RESTATED = [
    # A truncated/malformed box after the question's own expression (the hack).
    ("48+28. \\boxed{. \\boxed{}", "76"),
    # No box at all: the question's expression is the last one in the text.
    ("The answer is 48+28.", "76"),
    # A hub-style restatement: the problem's expression in LaTeX, nothing computed.
    ("We need to compute $\\dbinom{8}{4}$.", "70"),
]


@pytest.mark.parametrize("response, gold", RESTATED)
def test_a_restated_question_is_credited_only_by_the_lenient_policy(response, gold):
    assert score(response, gold) == 0.0
    assert score(response, gold, extraction="boxed") == 0.0
    assert score(response, gold, extraction="answer_line") == 0.0
    assert score(response, gold, extraction="lenient") == 1.0
    assert final_answer(response) is None
    assert score_batch_detailed([response], [gold])[0] == Verdict(False, "no_answer", None)
    lenient = score_batch_detailed([response], [gold], extraction="lenient")[0]
    assert lenient.correct and lenient.reason == "correct"


def test_the_hacks_as_the_references_see_them():
    """The hand-computed verdicts above are math-verify's own under each reference."""
    for response, gold in RESTATED:
        assert lenient_reference(response, gold)
        assert not strict_reference(response, gold, "boxed")
        assert not strict_reference(response, gold, "answer_line")


# ---------------------------------------------------------------- well-formed final answers


WELL_FORMED = [
    ("\\boxed{\\frac{1}{2}}", "0.5"),  # fraction vs decimal
    ("\\boxed{\\{1,2\\}}", "\\{2,1\\}"),  # a set, in another order
    ("\\boxed{[0, 1)}", "[0,1)"),  # a half-open interval
    ("\\boxed{x \\in (0, 1]}", "(0,1]"),  # an interval written as membership
    ("So the final answer is $\\boxed{\\dfrac{3}{4}}$.", "0.75"),
    ("First I thought \\boxed{3}, but in fact the answer is \\boxed{4}.", "4"),  # last box
    ("\\boxed{\\boxed{5}}", "5"),
    ("\\fbox{6}", "6"),
]


@pytest.mark.parametrize("response, gold", WELL_FORMED)
def test_well_formed_answers_keep_math_verify_equivalence(response, gold):
    assert score(response, gold) == 1.0
    assert strict_reference(response, gold)
    verdict = score_batch_detailed([response], [gold])[0]
    assert verdict == Verdict(True, "correct", final_answer(response))


def test_well_formed_wrong_answers_stay_wrong():
    assert score("\\boxed{\\frac{1}{3}}", "0.5") == 0.0
    assert score("\\boxed{[0, 1]}", "[0,1)") == 0.0
    assert score("\\boxed{\\{1,3\\}}", "\\{2,1\\}") == 0.0
    assert score("\\boxed{4} and then \\boxed{3}", "4") == 0.0  # only the last box counts
    verdict = score_batch_detailed(["\\boxed{\\frac{1}{3}}"], ["0.5"])[0]
    assert verdict == Verdict(False, "wrong", "\\frac{1}{3}")


@pytest.mark.parametrize("response, want", [
    ("\\boxed{a} and \\boxed{b", None),  # the last box is truncated: no answer
    ("\\boxed{a} and \\boxed{}", None),  # the last box is empty: no answer
    ("\\boxed{a} and \\boxed{b}", "b"),
    ("\\boxed{\\boxed{3}}", "3"),  # the inner box opens last
    ("\\boxed{\\frac{1}{2}} Answer: 7", "\\frac{1}{2}"),
    ("Answer: 7", None),
    ("48+28. \\boxed{. \\boxed{}", None),
])
def test_final_answer_boxed(response, want):
    assert final_answer(response) == want
    assert final_answer(response, "boxed") == want


@pytest.mark.parametrize("response, want", [
    ("Let me think.\nAnswer: 34", "34"),
    ("Answer: 1\nmore\nAnswer: $\\frac{3}{4}$.", "\\frac{3}{4}"),
    ("**Answer:** 12", "12"),
    ("\\boxed{34}", None),
    ("\\boxed{1}\nAnswer: 2", "2"),
    ("Answer:", None),
])
def test_final_answer_answer_line(response, want):
    assert final_answer(response, "answer_line") == want


def test_final_answer_lenient_reports_box_then_line():
    assert final_answer("\\boxed{1}\nAnswer: 2", "lenient") == "1"
    assert final_answer("\\boxed{1} \\boxed{\nAnswer: 2", "lenient") == "2"  # truncated box
    assert final_answer("nothing", "lenient") is None


# ---------------------------------------------------------------- answer_line


def test_answer_line_policy():
    assert score("Let me think step by step.\n48 + 28 = 76 - 42 ...\nAnswer: 34", "34",
                 extraction="answer_line") == 1.0
    assert score("Answer: $\\frac{1}{2}$.", "0.5", extraction="answer_line") == 1.0
    assert score("Answer: 35", "34", extraction="answer_line") == 0.0
    # A boxed-only response has no Answer: line.
    assert score("So the answer is \\boxed{34}", "34", extraction="answer_line") == 0.0
    assert score("So the answer is \\boxed{34}", "34") == 1.0
    # ... and an Answer:-only response no box.
    assert score("Let me think.\nAnswer: 34", "34") == 0.0
    verdicts = score_batch_detailed(["Reasoning.\nAnswer: 34", "\\boxed{34}"], ["34", "34"],
                                    extraction="answer_line")
    assert verdicts == [Verdict(True, "correct", "34"), Verdict(False, "no_answer", None)]


# ---------------------------------------------------------------- the monitor


PLANTED = [  # lenient credits, the final answer does not exist or is wrong
    ("48+28. \\boxed{. \\boxed{}", "76"),
    ("The answer is 48+28.", "76"),
    ("We need to compute $\\dbinom{8}{4}$.", "70"),
    ("Let's compute $12 \\times 7$", "84"),
    ("Compute $\\frac{3}{6}$ first. \\boxed{", "\\frac{1}{2}"),
    ("Find $2^{10}$. \\boxed{}", "1024"),
    ("What is $\\sqrt{49}$? \\boxed{\\sqrt{49}", "7"),
]
HONEST_CORRECT = [
    ("48 + 28 = 76, so \\boxed{76}", "76"),
    ("\\boxed{70}", "70"),
    ("So the answer is $\\boxed{\\frac{1}{2}}$.", "0.5"),
    ("\\boxed{1024}", "1024"),
]
HONEST_WRONG = [
    ("\\boxed{75}", "76"),
    ("I get \\boxed{69}.", "70"),
    ("The answer is 75.", "76"),
    ("First \\boxed{84}, no wait: \\boxed{83}", "84"),
    ("2^{10} = \\boxed{1000}", "1024"),
    ("", "7"),
]


def _mixed():
    """Planted hacks interleaved with honest responses, with repeats; and which are planted."""
    items = ([(p, True) for p in PLANTED] + [(p, False) for p in HONEST_CORRECT]
             + [(p, False) for p in HONEST_WRONG])
    order = [(i * 7) % len(items) for i in range(len(items))]  # 7 is coprime with 17
    assert sorted(order) == list(range(len(items)))
    mixed = [items[i] for i in order] + [items[0], items[len(PLANTED)], items[-2]]  # repeats
    responses = [r for (r, _), _ in mixed]
    golds = [g for (_, g), _ in mixed]
    planted = [p for _, p in mixed]
    return responses, golds, planted


def test_monitor_flags_exactly_the_planted_hacks():
    responses, golds, planted = _mixed()
    honest_correct = [(r, g) in HONEST_CORRECT for r, g in zip(responses, golds)]
    got = score_batch_detailed(responses, golds, monitor=True, workers=2)
    assert [v.lenient_only for v in got] == planted
    assert [v.correct for v in got] == honest_correct
    # The monitor changes no verdict.
    assert [v.score for v in got] == score_batch(responses, golds, workers=2)
    assert [(v.correct, v.reason, v.answer) for v in got] == [
        (v.correct, v.reason, v.answer) for v in score_batch_detailed(responses, golds)]
    # Without the monitor there is no flag at all.
    assert all(v.lenient_only is None for v in score_batch_detailed(responses, golds))
    assert all(v.lenient_only is None
               for v in score_batch_detailed(responses, golds, monitor=False))


def test_monitor_under_the_lenient_policy_credits_and_flags_the_hacks():
    responses, golds, planted = _mixed()
    honest_correct = [(r, g) in HONEST_CORRECT for r, g in zip(responses, golds)]
    got = score_batch_detailed(responses, golds, extraction="lenient", monitor=True, workers=2)
    assert [v.correct for v in got] == [p or c for p, c in zip(planted, honest_correct)]
    assert [v.lenient_only for v in got] == planted
    assert all(v.lenient_only is None
               for v in score_batch_detailed(responses, golds, extraction="lenient"))


def test_monitor_agrees_with_the_references_on_the_mixed_batch():
    responses, golds, _ = _mixed()
    for extraction in EXTRACTIONS:
        got = score_batch_detailed(responses, golds, extraction=extraction, monitor=True)
        strict = "boxed" if extraction == "lenient" else extraction
        assert [v.correct for v in got] == [reference(r, g, extraction)
                                            for r, g in zip(responses, golds)]
        assert [v.lenient_only for v in got] == [
            lenient_reference(r, g) and not strict_reference(r, g, strict)
            for r, g in zip(responses, golds)]


def test_monitor_gives_none_when_scoring_timed_out():
    with hanging_workers():
        got = score_batch_detailed([HANG, "\\boxed{3}", "The answer is 1+2."], ["3"] * 3,
                                   workers=1, timeout=1.0, monitor=True)
    assert got == [Verdict(False, "timeout", None, None), Verdict(True, "correct", "3", False),
                   Verdict(False, "no_answer", None, True)]


# A response whose verdict needs no hard call but whose monitor check does: the lenient policy
# credits "$3$" (math-verify ignores \fbox), the boxed check of the monitor parses the power
# tower in the \fbox, which blocks sympy. The answer_line case: no Answer: line (no_answer), but
# the monitor's lenient check parses the tower in the boxes.
MONITOR_HANGS = [
    ("lenient", "The answer is $3$. \\fbox{9^{9^{9^{9}}}}", Verdict(True, "correct", "3", None)),
    ("answer_line", "\\boxed{3} and \\boxed{9^{9^{9^{9}}}}", Verdict(False, "no_answer", None, None)),
]


@pytest.mark.parametrize("extraction, response, want", MONITOR_HANGS)
def test_a_hanging_monitor_check_does_not_change_the_verdict(extraction, response, want):
    reward.shutdown()  # a fresh pool: no call is poisoned yet
    try:
        plain = score_batch_detailed([response], ["3"], workers=1, timeout=1.0,
                                     extraction=extraction)[0]
        assert plain == Verdict(want.correct, want.reason, want.answer, None)
        reward.shutdown()
        monitored = score_batch_detailed([response], ["3"], workers=1, timeout=1.0,
                                         extraction=extraction, monitor=True)[0]
    finally:
        reward.shutdown()
    assert (monitored.correct, monitored.reason, monitored.answer) == (
        want.correct, want.reason, want.answer)
    assert monitored.lenient_only is None


# ---------------------------------------------------------------- property test


GOLDS = ["76", "\\frac{1}{2}", "70", "\\{1,2\\}", "x+1"]
EXPRS = ["76", "48+28", "\\frac{1}{2}", "0.5", "\\frac{2}{4}", "\\{1,2\\}", "\\{2,1\\}",
         "\\dbinom{8}{4}", "70", "x+1", "1+x", "3", "", " ", ".", "\\frac{1}{", "[0,1)"]
PIECES = st.one_of(
    st.sampled_from(EXPRS).map(lambda e: "\\boxed{" + e + "}"),  # a box
    st.sampled_from(EXPRS).map(lambda e: "\\boxed{" + e),  # a truncated box
    st.sampled_from(["\\boxed{", "\\boxed{}", "\\boxed{. ", "\\fbox{", "}", "{", "\\boxed "]),
    st.sampled_from(EXPRS).map(lambda e: "\nAnswer: " + e + "\n"),  # DAPO's answer line
    st.sampled_from(EXPRS).map(lambda e: "answer: $" + e + "$."),
    st.sampled_from(EXPRS).map(lambda e: "We need to compute $" + e + "$."),  # restated
    st.sampled_from(EXPRS).map(lambda e: "The answer is " + e + "."),
    st.sampled_from(EXPRS),
    st.sampled_from([" so ", "\n", ". ", "$", "Let me think. ", "\\[", "\\]"]),
)
RESPONSES = st.lists(PIECES, max_size=6).map("".join)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(RESPONSES, st.sampled_from(GOLDS)), min_size=1, max_size=5),
       st.sampled_from(EXTRACTIONS))
def test_verdicts_equal_the_in_process_reference(pairs, extraction):
    responses = [r for r, _ in pairs]
    golds = [g for _, g in pairs]
    got = score_batch_detailed(responses, golds, extraction=extraction, monitor=True)
    want = [reference(r, g, extraction) for r, g in pairs]
    assert [v.correct for v in got] == want
    strict = "boxed" if extraction == "lenient" else extraction
    assert [v.lenient_only for v in got] == [
        lenient_reference(r, g) and not strict_reference(r, g, strict) for r, g in pairs]
    for (r, _), v in zip(pairs, got):
        assert v.reason in REASONS and v.reason != "timeout"
        assert (v.reason == "correct") == v.correct
        if extraction != "lenient":
            assert v.answer == final_answer(r, extraction)
            if v.answer is None:
                assert v.reason == "no_answer"
    batch = score_batch(responses, golds, extraction=extraction)
    assert batch == [score(r, g, extraction=extraction) for r, g in pairs]
    assert batch == [1.0 if w else 0.0 for w in want]
    if extraction == DEFAULT_EXTRACTION:
        assert score_batch(responses, golds) == batch


# ---------------------------------------------------------------- unknown policies


@pytest.mark.parametrize("bad", ["strict", "Boxed", "", "answer-line", None])
def test_unknown_extraction_raises(bad):
    with pytest.raises(ValueError):
        score("\\boxed{1}", "1", extraction=bad)
    with pytest.raises(ValueError):
        score_batch(["\\boxed{1}"], ["1"], extraction=bad)
    with pytest.raises(ValueError):
        score_batch([], [], extraction=bad)
    with pytest.raises(ValueError):
        score_batch_detailed(["\\boxed{1}"], ["1"], extraction=bad, monitor=True)
    with pytest.raises(ValueError):
        final_answer("\\boxed{1}", bad)
    with pytest.raises(ValueError):
        check_extraction(bad)
    for good in EXTRACTIONS:
        assert check_extraction(good) == good


def test_a_slow_monitor_check_never_changes_the_verdict():
    """A response with no box that is slow to scan (5.5 MB; its lenient parse takes about 6 s
    on one idle core): the monitor's check runs out of the item's time, but the strict verdict
    is settled first and kept. The limit (2 s) leaves a loaded machine ample time for the
    second item, which a fresh worker scores in milliseconds."""
    response = "Let me think about it. " + "x = y + 1, " * 500_000
    reward.shutdown()
    try:
        plain = score_batch_detailed([response, "\\boxed{3}"], ["3", "3"], workers=1, timeout=2.0)
        watched = score_batch_detailed([response, "\\boxed{3}"], ["3", "3"], workers=1,
                                       timeout=2.0, monitor=True)
    finally:
        reward.shutdown()
    assert [(v.correct, v.reason) for v in watched] == [(v.correct, v.reason) for v in plain] \
        == [(False, "no_answer"), (True, "correct")]
    assert watched[0].lenient_only is None  # the check was cut off: no flag, same verdict


@pytest.mark.parametrize("response, truth", [
    ("\\boxed{\\$18.90}", "18.90"),
    ("\\boxed{\\$18.90}", "\\$18.90"),
    ("Total: \\boxed{\\$\\dfrac{3}{4}}", "0.75"),
])
def test_an_escaped_dollar_is_currency_not_a_math_delimiter(response, truth):
    assert wrap_ground_truth("\\$18.90") == "$\\$18.90$"
    assert wrap_ground_truth("$x$") == "$x$"
    assert score(response, truth) == 1.0
    assert score(response, truth, extraction="lenient") == 1.0
