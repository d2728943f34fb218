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
    PairedDifference,
    avg_at_n,
    bootstrap_ci,
    bootstrap_differences,
    bootstrap_means,
    k_values,
    maj_at_n,
    maj_per_problem,
    paired_difference,
    pass_at_k,
    pass_at_k_array,
    percentile_interval,
    stratified_bootstrap_ci,
    stratified_paired_difference,
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


def test_pass_at_k_every_c_and_k_at_n256_matches_exact_binomial():
    """Done-when: pass@k equals 1 - C(n-c, k)/C(n, k) (exact Fractions) for EVERY (c, k) at n = 256."""
    n = 256
    worst_abs = worst_rel = 0.0
    for k in range(0, n + 1):
        table = pass_at_k_array(n, np.arange(n + 1), k)
        for c in range(0, n + 1):
            value = pass_at_k(n, c, k)
            assert value == table[c], (c, k)  # scalar and array agree bit for bit
            assert math.isfinite(value) and 0.0 <= value <= 1.0, (c, k)
            truth = exact(n, c, k)
            err = abs(Fraction(value) - truth)
            worst_abs = max(worst_abs, float(err))
            if truth:
                worst_rel = max(worst_rel, float(err / truth))
    assert worst_abs <= 1e-12
    assert worst_rel <= 1e-13  # relative precision too: tiny values are not 1 - (1 - tiny)


def test_pass_at_k_small_cases_exact():
    for n in range(0, 21):
        for c in range(0, n + 1):
            for k in range(0, n + 1):
                value = pass_at_k(n, c, k)
                assert abs(Fraction(value) - exact(n, c, k)) <= Fraction(1, 10**15), (n, c, k)


def test_pass_at_k_monotone_in_k_and_c_everywhere_at_n256():
    n = 256
    grid = np.array([pass_at_k_array(n, np.arange(n + 1), k) for k in range(1, n + 1)])  # [k, c]
    assert (np.diff(grid, axis=0) >= 0).all()  # no tolerance: never decreases in k
    assert (np.diff(grid, axis=1) >= 0).all()  # nor in c
    assert (grid[:, 0] == 0).all() and (grid[:, -1] == 1).all()


def test_pass_at_1_is_c_over_n_and_pass_at_n_is_any_correct():
    for n in (1, 2, 3, 7, 10, 100, 256, 1000):
        for c in range(n + 1):
            assert pass_at_k(n, c, 1) == c / n  # exactly
            assert pass_at_k(n, c, n) == (1.0 if c > 0 else 0.0)


def test_pass_at_k_hand_values_n256():
    # 1 - C(255, 2)/C(256, 2) = 1 - 254/256 = 2/256
    assert pass_at_k(256, 1, 2) == pytest.approx(2 / 256, rel=1e-15)
    # one correct sample among n: pass@k = k/n for every k
    for k in k_values(256):
        assert pass_at_k(256, 1, k) == pytest.approx(k / 256, rel=1e-14)
    # c = n - k: only the all-wrong k-subset misses, 1 - 1/C(n, k)
    assert pass_at_k(256, 128, 128) == pytest.approx(1 - 1 / math.comb(256, 128), abs=0)


@pytest.mark.parametrize("n", [1024, 4096])
def test_pass_at_k_large_n_stable(n):
    for k in k_values(n):
        table = pass_at_k_array(n, np.arange(n + 1), k)
        assert np.isfinite(table).all() and (np.diff(table) >= 0).all()
        for c in (1, 2, n // 3, n - k, n - k + 1):
            if 0 <= c <= n:
                assert abs(table[c] - float(exact(n, c, k))) < 1e-12, (n, c, k)


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
    with pytest.raises(ValueError):
        pass_at_k_array(4, np.array([-1]), 1)
    with pytest.raises(ValueError):
        pass_at_k_array(4, np.array([1]), 5)


# ---------------------------------------------------------------- k values, avg, maj


def test_k_values():
    assert k_values(1) == [1]
    assert k_values(2) == [1, 2]
    assert k_values(8) == [1, 2, 4, 8]
    assert k_values(10) == [1, 2, 4, 8, 10]
    assert k_values(256) == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert k_values(256) == [2**i for i in range(9)]
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


def test_maj_per_problem_hand_case():
    # problem 7: "2" twice beats "1" -> sample 1 decides (correct); problem 3: tie "5"/"6", "5" first
    # (wrong); problem 9: no answer at all -> 0
    pids = [7, 7, 7, 7, 3, 3, 3, 9, 9]
    answers = ["1", "2", "2", None, "5", "6", float("nan"), None, None]
    correct = [0, 1, 1, 0, 0, 1, 0, 1, 1]
    out = maj_per_problem(pids, answers, correct)
    assert list(out.index) == [7, 3, 9]
    assert out.tolist() == [1.0, 0.0, 0.0]


def test_maj_per_problem_matches_maj_at_n():
    rng = np.random.default_rng(5)
    for trial in range(30):
        problems = int(rng.integers(1, 12))
        n = int(rng.integers(1, 9))
        pids = np.repeat(rng.permutation(100)[:problems], n)
        pool = np.array(["a", "b", "c", "d", None], dtype=object)
        answers = pool[rng.integers(0, 3 + trial % 3, size=problems * n)]
        correct = rng.random(problems * n) < 0.5
        grouped_a = [list(answers[i * n:(i + 1) * n]) for i in range(problems)]
        grouped_c = [list(correct[i * n:(i + 1) * n]) for i in range(problems)]
        expected = maj_at_n(grouped_a, grouped_c)
        got = maj_per_problem(pids, answers, correct)
        assert got.mean() == pytest.approx(expected)
        # same per problem, and categorical answers (as parquet dictionary columns read) agree
        cat = maj_per_problem(pids, pd.Categorical(answers), correct)
        pd.testing.assert_series_equal(got, cat)


def test_maj_per_problem_rejects_length_mismatch():
    with pytest.raises(ValueError):
        maj_per_problem([1, 1], ["a"], [1, 0])


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


def test_bootstrap_ci_2d_rejects_3d_and_nan():
    with pytest.raises(ValueError):
        bootstrap_ci(np.ones((3, 2, 2)))
    with pytest.raises(ValueError):
        bootstrap_ci(np.array([1.0, np.nan]))
    with pytest.raises(ValueError):
        bootstrap_ci(np.ones(3), n_boot=0)


# ---------------------------------------------------------------- bootstrap engine


def test_bootstrap_means_reproduces_the_exact_resampling_distribution():
    # 3 problems: the 27 equally likely resamples give the mean's exact bootstrap distribution
    x = np.array([0.0, 1.0, 3.0])
    exact_dist: dict[float, int] = {}
    for i in range(3):
        for j in range(3):
            for k in range(3):
                m = round((x[i] + x[j] + x[k]) / 3, 9)
                exact_dist[m] = exact_dist.get(m, 0) + 1
    reps = bootstrap_means([x], n_boot=54_000, seed=1)
    assert reps.shape == (54_000,)
    values, counts = np.unique(np.round(reps, 9), return_counts=True)
    assert set(values) == set(exact_dist)
    for v, cnt in zip(values, counts):
        p = exact_dist[v] / 27
        sd = math.sqrt(p * (1 - p) / 54_000)
        assert abs(cnt / 54_000 - p) < 5 * sd, v


def test_bootstrap_means_variance_1d_and_2d_and_strata():
    rng = np.random.default_rng(2)
    r = rng.normal(0, 1, 40)
    # 1-D: Var(mean*) = population variance / P
    reps = bootstrap_means([r], n_boot=20_000, seed=0)
    assert reps.mean() == pytest.approx(r.mean(), abs=0.02)
    assert reps.var() == pytest.approx(r.var() / 40, rel=0.05)
    # 2-D additive x[p, s] = r_p + s_s: problems and seeds resampled independently,
    # Var = var(r)/P + var(s)/S
    s = np.array([0.0, 0.5, 2.0])
    x = r[:, None] + s[None, :]
    reps = bootstrap_means([x], n_boot=20_000, seed=0)
    assert reps.var() == pytest.approx(r.var() / 40 + s.var() / 3, rel=0.05)
    # strata: mean of stratum means, each stratum resampled within itself
    q = rng.normal(0, 3, 10)
    reps = bootstrap_means([r, q], n_boot=20_000, seed=0)
    assert reps.mean() == pytest.approx((r.mean() + q.mean()) / 2, abs=0.05)
    assert reps.var() == pytest.approx((r.var() / 40 + q.var() / 10) / 4, rel=0.05)


def test_bootstrap_means_draws_seeds_once_for_all_strata():
    # x_j[p, s] = seed effect only, the same runs in both benchmarks: the average over benchmarks
    # keeps the full seed variance var(s)/S (independent draws per benchmark would halve it)
    s = np.array([0.0, 1.0, 4.0, 5.0])
    x1 = np.tile(s, (30, 1))
    x2 = np.tile(s, (7, 1))
    reps = bootstrap_means([x1, x2], n_boot=20_000, seed=0)
    assert reps.var() == pytest.approx(s.var() / 4, rel=0.05)
    with pytest.raises(ValueError):  # seeds must agree across strata
        bootstrap_means([np.ones((3, 2)), np.ones((3, 3))])


def test_bootstrap_means_trailing_stats_share_resamples():
    rng = np.random.default_rng(3)
    x = rng.random((25, 2))
    stacked = np.stack([x, 2 * x + 1], axis=-1)  # [P, S, 2]
    reps = bootstrap_means([stacked], n_boot=500, seed=4)
    assert reps.shape == (500, 2)
    np.testing.assert_allclose(reps[:, 1], 2 * reps[:, 0] + 1, rtol=0, atol=1e-12)
    np.testing.assert_allclose(reps[:, 0], bootstrap_means([x], n_boot=500, seed=4), rtol=0, atol=1e-12)


def test_bootstrap_ci_matches_percentiles_of_bootstrap_means():
    rng = np.random.default_rng(4)
    x = rng.random((30, 3))
    lo, hi = percentile_interval(bootstrap_means([x], n_boot=700, seed=9), 0.9)
    assert bootstrap_ci(x, n_boot=700, seed=9, level=0.9) == (pytest.approx(lo), pytest.approx(hi))


def test_stratified_bootstrap_ci():
    rng = np.random.default_rng(5)
    a, b = rng.binomial(1, 0.3, 200).astype(float), rng.binomial(1, 0.8, 50).astype(float)
    lo, hi = stratified_bootstrap_ci([a, b])
    mean_of_means = (a.mean() + b.mean()) / 2
    assert lo < mean_of_means < hi
    # the pooled mean (weighted by size) is a different number, and not what is estimated
    assert abs(np.concatenate([a, b]).mean() - mean_of_means) > 0.05
    assert stratified_bootstrap_ci([np.full(5, 0.2), np.full(9, 0.6)]) == pytest.approx((0.4, 0.4))
    with pytest.raises(ValueError):
        stratified_bootstrap_ci([])


# ---------------------------------------------------------------- paired comparison


def test_paired_difference_hand_cases():
    # a - b per problem = [1, 0]: diff* = mean of 2 draws: 0, 0.5, 1 with prob 1/4, 1/2, 1/4
    res = paired_difference([1, 0], [0, 0], n_boot=20_000, seed=0)
    assert isinstance(res, PairedDifference)
    assert (res.diff, res.mean_a, res.mean_b) == (0.5, 0.5, 0.0)
    assert (res.ci_low, res.ci_high) == (0.0, 1.0)
    assert res.p_value == pytest.approx(0.25, abs=0.015)  # P(diff* <= 0) = P(both draws problem 2)
    assert res.p_two_sided == pytest.approx(0.5, abs=0.03)
    # per-problem differences [1, -1]: diff* in {1, 0, -1} w.p. 1/4, 1/2, 1/4
    res = paired_difference([1, 0], [0, 1], n_boot=20_000, seed=0)
    assert res.diff == 0.0 and (res.ci_low, res.ci_high) == (-1.0, 1.0)
    assert res.p_value == pytest.approx(0.75, abs=0.015)
    assert res.p_two_sided == 1.0
    # unpaired: a* and b* independent, each 0, .5, 1 w.p. 1/4, 1/2, 1/4;
    # P(a* <= b*) = 1 - (1/2 * 1/4 + 1/4 * 3/4) = 0.6875
    res = paired_difference([1, 0], [0, 1], n_boot=20_000, seed=0, paired=False)
    assert res.p_value == pytest.approx(0.6875, abs=0.015)


def test_paired_difference_identical_inputs():
    rng = np.random.default_rng(6)
    x = rng.random(40)
    res = paired_difference(x, x)
    assert (res.diff, res.ci_low, res.ci_high) == (0.0, 0.0, 0.0)
    assert res.p_value == 1.0 and res.p_two_sided == 1.0
    # several seeds that agree: seed resampling cannot move anything either (up to rounding,
    # as means over 3 and over 2 columns)
    same = np.repeat(x[:, None], 3, axis=1)
    res = paired_difference(same, same[:, :2])
    assert (res.diff, res.ci_low, res.ci_high) == pytest.approx((0.0, 0.0, 0.0), abs=1e-15)
    # seeds that disagree: the seeds of a and b are other runs, drawn independently,
    # so the interval is not degenerate but centred on 0
    noisy = x[:, None] + rng.normal(0, 0.2, (40, 3))
    res = paired_difference(noisy, noisy)
    assert res.diff == 0.0 and res.ci_low < 0 < res.ci_high


def test_paired_difference_shift_and_swap():
    rng = np.random.default_rng(7)
    a, b = rng.random(60), rng.random(60)
    base = paired_difference(a, b, n_boot=800, seed=3)
    shifted = paired_difference(a, b + 0.25, n_boot=800, seed=3)
    assert shifted.diff == pytest.approx(base.diff - 0.25, abs=1e-12)
    assert shifted.ci_low == pytest.approx(base.ci_low - 0.25, abs=1e-12)
    assert shifted.ci_high == pytest.approx(base.ci_high - 0.25, abs=1e-12)
    swapped = paired_difference(b, a, n_boot=800, seed=3)
    assert swapped.diff == pytest.approx(-base.diff, abs=1e-15)
    assert swapped.ci_low == pytest.approx(-base.ci_high, abs=1e-12)
    assert swapped.ci_high == pytest.approx(-base.ci_low, abs=1e-12)
    assert swapped.p_two_sided == pytest.approx(base.p_two_sided)
    # [problems, seeds] with other seed counts per side: the difference negates exactly, the
    # interval only approximately (the two sides' seed draws change places)
    a2, b2 = rng.random((60, 3)), rng.random((60, 2))
    one, two = paired_difference(a2, b2, n_boot=4000), paired_difference(b2, a2, n_boot=4000)
    assert two.diff == pytest.approx(-one.diff, abs=1e-15)
    assert two.ci_low == pytest.approx(-one.ci_high, abs=0.02)
    assert two.ci_high == pytest.approx(-one.ci_low, abs=0.02)


def test_paired_interval_narrower_than_unpaired_when_correlated():
    rng = np.random.default_rng(8)
    difficulty = rng.normal(0, 1, 300)
    a = difficulty + 0.1 + rng.normal(0, 0.2, 300)
    b = difficulty + rng.normal(0, 0.2, 300)
    paired = paired_difference(a, b)
    unpaired = paired_difference(a, b, paired=False)
    assert paired.diff == unpaired.diff
    assert (paired.ci_high - paired.ci_low) < (unpaired.ci_high - unpaired.ci_low) / 3
    assert paired.ci_low > 0 and paired.p_value < 0.01  # the shift of 0.1 is detected
    assert unpaired.ci_low < 0 < unpaired.ci_high  # hidden by difficulty without the pairing


def test_paired_difference_covers_the_true_difference():
    # 200 simulated studies (true difference 0.05): the 95% interval should cover it ~95% of the time
    rng = np.random.default_rng(9)
    covered = 0
    for trial in range(200):
        p = rng.beta(2, 2, 150)
        a = rng.binomial(16, np.clip(p + 0.05, 0, 1)) / 16
        b = rng.binomial(16, p) / 16
        truth = float(np.mean(np.clip(p + 0.05, 0, 1) - p))
        res = paired_difference(a, b, n_boot=400, seed=trial)
        covered += res.ci_low <= truth <= res.ci_high
    assert 0.88 <= covered / 200 <= 0.99


def test_paired_difference_seeds_and_errors():
    rng = np.random.default_rng(10)
    a, b = rng.random((20, 3)), rng.random((20, 1))
    res = paired_difference(a, b)
    assert res.diff == pytest.approx(a.mean() - b.mean())
    assert res.ci_low <= res.diff <= res.ci_high
    assert paired_difference(a, b[:, 0]).diff == pytest.approx(res.diff)
    with pytest.raises(ValueError):
        paired_difference(a, b[:10])  # not the same problems
    assert paired_difference(a, b[:10], paired=False).diff == pytest.approx(a.mean() - b[:10].mean())
    with pytest.raises(ValueError):
        paired_difference([1.0, np.nan], [0.0, 0.0])
    with pytest.raises(ValueError):
        paired_difference([], [])
    with pytest.raises(ValueError):
        paired_difference([1.0], [0.0], level=1.0)


def test_stratified_paired_difference_and_trailing_stats():
    rng = np.random.default_rng(11)
    a1, b1 = rng.random((30, 2)), rng.random((30, 1))
    a2, b2 = rng.random((8, 2)), rng.random((8, 1))
    res = stratified_paired_difference([a1, a2], [b1, b2])
    assert res.mean_a == pytest.approx((a1.mean() + a2.mean()) / 2)
    assert res.mean_b == pytest.approx((b1.mean() + b2.mean()) / 2)
    assert res.diff == pytest.approx(res.mean_a - res.mean_b)
    assert res.ci_low <= res.diff <= res.ci_high
    # trailing statistics: every field becomes an array; the first statistic is the plain call
    stack = lambda x: np.stack([x, 1 - x], axis=-1)  # noqa: E731
    multi = stratified_paired_difference([stack(a1), stack(a2)], [stack(b1), stack(b2)])
    assert multi.diff.shape == (2,)
    assert multi.diff[0] == pytest.approx(res.diff) and multi.diff[1] == pytest.approx(-res.diff)
    assert multi.ci_low[0] == pytest.approx(res.ci_low, abs=1e-12)
    assert multi.ci_low[1] == pytest.approx(-res.ci_high, abs=1e-12)
    assert multi.p_value[0] == res.p_value
    reps = bootstrap_differences([a1, a2], [b1, b2], n_boot=1000, seed=0)
    assert reps.shape == (1000,)
    assert percentile_interval(reps) == (pytest.approx(res.ci_low), pytest.approx(res.ci_high))
    with pytest.raises(ValueError):
        stratified_paired_difference([a1], [b1, b2])
