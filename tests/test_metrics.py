"""Tests for polarity.metrics: hand-computed values, direct binomial formulas and invariants."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polarity.metrics import (
    avg_at_n,
    bootstrap_ci,
    k_values,
    maj_at_n,
    pass_at_k,
    pass_at_k_array,
    summarize_samples,
)


def direct(n: int, c: int, k: int) -> float:
    """pass@k straight from the definition with exact binomials."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def exact(n: int, c: int, k: int) -> Fraction:
    if n - c < k:
        return Fraction(1)
    return 1 - Fraction(math.comb(n - c, k), math.comb(n, k))


# ---------------------------------------------------------------- pass@k


def test_pass_at_k_matches_comb_for_all_small_cases():
    for n in range(0, 13):
        for c in range(0, n + 1):
            for k in range(0, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(direct(n, c, k), abs=1e-14), (n, c, k)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 60).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_pass_at_k_matches_comb_hypothesis(nck):
    n, c, k = nck
    value = pass_at_k(n, c, k)
    assert 0.0 <= value <= 1.0
    assert value == pytest.approx(float(exact(n, c, k)), abs=1e-12)


def test_pass_at_k_hand_values():
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2) = 1 - 3/6
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)  # 1 - C(3,2)/C(5,2) = 1 - 3/10
    assert pass_at_k(8, 3, 1) == pytest.approx(3 / 8)


def test_pass_at_k_edges():
    for n in (1, 8, 256):
        for k in k_values(n):
            assert pass_at_k(n, 0, k) == 0.0
            assert pass_at_k(n, n, k) == 1.0
    assert pass_at_k(8, 5, 4) == 1.0  # n - c = 3 < k


@pytest.mark.parametrize("args", [(4, 1, 5), (4, 5, 1), (-1, 0, 0), (4, -1, 1), (4, 1, -1)])
def test_pass_at_k_invalid(args):
    with pytest.raises(ValueError):
        pass_at_k(*args)


def test_pass_at_k_rejects_floats():
    with pytest.raises(TypeError):
        pass_at_k(4.0, 1, 1)


def test_pass_at_k_accepts_numpy_ints():
    assert pass_at_k(np.int64(4), np.int32(1), np.int64(2)) == pytest.approx(0.5)


def test_pass_at_k_n256_stable_and_precise():
    n = 256
    for c in (0, 1, 2, 3, 10, 64, 128, 200, 255, 256):
        prev = -1.0
        for k in range(1, n + 1):
            value = pass_at_k(n, c, k)
            assert math.isfinite(value) and 0.0 <= value <= 1.0
            assert value >= prev - 1e-15, (c, k)  # monotone non-decreasing in k
            prev = value
            if k in (1, 2, 4, 16, 64, 128, 256) or c in (1, 3):
                assert abs(value - float(exact(n, c, k))) < 1e-12, (c, k)


def test_pass_at_k_monotone_in_c():
    n, k = 64, 8
    values = [pass_at_k(n, c, k) for c in range(n + 1)]
    assert all(b >= a for a, b in zip(values, values[1:]))


def test_pass_at_k_array_matches_scalar():
    counts = np.array([0, 1, 3, 8, 3, 0, 5])
    for k in k_values(8):
        got = pass_at_k_array(8, counts, k)
        assert got.shape == counts.shape
        np.testing.assert_allclose(got, [pass_at_k(8, int(c), k) for c in counts], rtol=0, atol=0)
    assert pass_at_k_array(8, np.array([], dtype=int), 2).shape == (0,)
    np.testing.assert_allclose(pass_at_k_array(4, np.array([1.0, 2.0]), 1), [0.25, 0.5])
    with pytest.raises(ValueError):
        pass_at_k_array(4, np.array([5]), 1)
    with pytest.raises(ValueError):
        pass_at_k_array(4, np.array([1.5]), 1)


# ---------------------------------------------------------------- k values, avg, maj


def test_k_values():
    assert k_values(1) == [1]
    assert k_values(2) == [1, 2]
    assert k_values(8) == [1, 2, 4, 8]
    assert k_values(10) == [1, 2, 4, 8, 10]
    assert k_values(256) == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert k_values(128 + 1)[-2:] == [128, 129]
    with pytest.raises(ValueError):
        k_values(0)


def test_avg_at_n():
    correct = np.array([[1, 0, 0, 1], [1, 1, 1, 1], [0, 0, 0, 0]])
    assert avg_at_n(correct) == pytest.approx(6 / 12)
    assert avg_at_n(np.array([[True, False]])) == 0.5
    # avg@n equals pass@1 averaged over problems
    assert avg_at_n(correct) == pytest.approx(pass_at_k_array(4, correct.sum(1), 1).mean())
    with pytest.raises(ValueError):
        avg_at_n(np.array([1, 0]))


def test_maj_at_n_hand_cases():
    answers = [
        ["1", "2", "2", None],  # majority "2" (correct)
        ["5", "6", None, None],  # tie 5 vs 6 -> first seen "5" (wrong)
        [None, None, None],  # all None -> wrong even if a flag says True
        ["a", "b", "b", "a", "c"],  # tie a/b at 2 -> "a" first (correct)
        [None, "7", None],  # None never wins: "7" (correct)
    ]
    correct = [
        [False, True, True, False],
        [False, True, False, False],
        [True, True, True],
        [True, False, False, True, False],
        [False, True, False],
    ]
    assert maj_at_n(answers, correct) == pytest.approx(3 / 5)
    assert maj_at_n([["x"]], [[True]]) == 1.0
    with pytest.raises(ValueError):
        maj_at_n([["x"]], [[True, False]])
    with pytest.raises(ValueError):
        maj_at_n([], [])


def test_maj_at_n_uses_first_sample_of_winning_answer():
    # Same string, different flags (should not happen with a deterministic verifier): first wins.
    assert maj_at_n([["3", "3"]], [[False, True]]) == 0.0
    assert maj_at_n([["3", "3"]], [[True, False]]) == 1.0


# ---------------------------------------------------------------- summarize_samples


def test_summarize_samples():
    frame = pd.DataFrame(
        {
            "problem_id": ["p1"] * 4 + ["p2"] * 4,
            "correct": [1, 0, 0, 1, 0, 0, 0, 0],
            "answer": ["4", "5", "5", "4", "7", None, "8", "8"],
        }
    )
    out = summarize_samples(frame)
    assert list(out.columns) == ["metric", "k", "value", "n"]
    assert (out["n"] == 4).all()
    avg = out[out.metric == "avg@n"].value.item()
    assert avg == pytest.approx(0.25)
    passk = out[out.metric == "pass@k"].set_index("k").value
    assert list(passk.index) == [1, 2, 4]
    assert passk[1] == pytest.approx((0.5 + 0) / 2)
    assert passk[2] == pytest.approx((1 - 1 / 6 + 0) / 2)
    assert passk[4] == pytest.approx(0.5)
    # p1: tie "4"/"5" -> "4" first -> correct; p2: "8" wins -> wrong
    assert out[out.metric == "maj@n"].value.item() == pytest.approx(0.5)


def test_summarize_samples_without_answers_and_bool_correct():
    frame = pd.DataFrame({"problem_id": [1, 1, 2, 2, 3, 3], "correct": [True, True, False, True, False, False]})
    out = summarize_samples(frame)
    assert set(out.metric) == {"avg@n", "pass@k"}
    assert out[out.metric == "avg@n"].value.item() == pytest.approx(0.5)
    assert out[(out.metric == "pass@k") & (out.k == 2)].value.item() == pytest.approx(2 / 3)


def test_summarize_samples_rejects_bad_input():
    with pytest.raises(ValueError):
        summarize_samples(pd.DataFrame({"problem_id": [1], "correct": [2]}))
    with pytest.raises(ValueError):
        summarize_samples(pd.DataFrame({"problem_id": [1]}))
    assert summarize_samples(pd.DataFrame({"problem_id": [], "correct": []})).empty


# ---------------------------------------------------------------- bootstrap


def test_bootstrap_ci_contains_mean_and_shrinks():
    rng = np.random.default_rng(1)
    small = rng.binomial(1, 0.4, size=50).astype(float)
    large = rng.binomial(1, 0.4, size=2000).astype(float)
    lo_s, hi_s = bootstrap_ci(small)
    lo_l, hi_l = bootstrap_ci(large)
    assert lo_s <= small.mean() <= hi_s
    assert lo_l <= large.mean() <= hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s) / 3
    # deterministic given the seed
    assert bootstrap_ci(small, seed=3) == bootstrap_ci(small, seed=3)
    # a wider level gives a wider interval
    lo90, hi90 = bootstrap_ci(small, level=0.9)
    assert hi90 - lo90 <= hi_s - lo_s


def test_bootstrap_ci_constant_and_2d():
    assert bootstrap_ci(np.full(10, 0.7)) == pytest.approx((0.7, 0.7))
    rng = np.random.default_rng(0)
    table = rng.random((40, 3))
    lo, hi = bootstrap_ci(table, n_boot=300)
    assert lo <= table.mean() <= hi
    with pytest.raises(ValueError):
        bootstrap_ci(np.array([]))
    with pytest.raises(ValueError):
        bootstrap_ci(np.ones(5), level=1.5)
