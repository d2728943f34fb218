"""Tests for the bootstrap of polarity.metrics: exact resampling distributions, variances over
problems, seeds and strata, the mean with its interval, and paired comparisons."""

from __future__ import annotations

import math

import numpy as np
import pytest

from polarity.metrics import (
    PairedDifference,
    bootstrap_ci,
    bootstrap_differences,
    bootstrap_means,
    mean_ci,
    percentile_interval,
    stratified_paired_difference,
)

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


def test_mean_ci_of_strata():
    rng = np.random.default_rng(5)
    a, b = rng.binomial(1, 0.3, 200).astype(float), rng.binomial(1, 0.8, 50).astype(float)
    lo, hi = mean_ci([a, b])[1:]
    mean_of_means = (a.mean() + b.mean()) / 2
    assert lo < mean_of_means < hi
    # the pooled mean (weighted by size) is a different number, and not what is estimated
    assert abs(np.concatenate([a, b]).mean() - mean_of_means) > 0.05
    assert mean_ci([np.full(5, 0.2), np.full(9, 0.6)])[1:] == pytest.approx((0.4, 0.4))
    with pytest.raises(ValueError):
        mean_ci([])


# ---------------------------------------------------------------- paired comparison


def test_paired_difference_hand_cases():
    # a - b per problem = [1, 0]: diff* = mean of 2 draws: 0, 0.5, 1 with prob 1/4, 1/2, 1/4
    res = stratified_paired_difference([[1, 0]], [[0, 0]], n_boot=20_000, seed=0)
    assert isinstance(res, PairedDifference)
    assert (res.diff, res.mean_a, res.mean_b) == (0.5, 0.5, 0.0)
    assert (res.ci_low, res.ci_high) == (0.0, 1.0)
    assert res.p_value == pytest.approx(0.25, abs=0.015)  # P(diff* <= 0) = P(both draws problem 2)
    assert res.p_two_sided == pytest.approx(0.5, abs=0.03)
    # per-problem differences [1, -1]: diff* in {1, 0, -1} w.p. 1/4, 1/2, 1/4
    res = stratified_paired_difference([[1, 0]], [[0, 1]], n_boot=20_000, seed=0)
    assert res.diff == 0.0 and (res.ci_low, res.ci_high) == (-1.0, 1.0)
    assert res.p_value == pytest.approx(0.75, abs=0.015)
    assert res.p_two_sided == 1.0
    # unpaired: a* and b* independent, each 0, .5, 1 w.p. 1/4, 1/2, 1/4;
    # P(a* <= b*) = 1 - (1/2 * 1/4 + 1/4 * 3/4) = 0.6875
    res = stratified_paired_difference([[1, 0]], [[0, 1]], n_boot=20_000, seed=0, paired=False)
    assert res.p_value == pytest.approx(0.6875, abs=0.015)


def test_paired_difference_identical_inputs():
    rng = np.random.default_rng(6)
    x = rng.random(40)
    res = stratified_paired_difference([x], [x])
    assert (res.diff, res.ci_low, res.ci_high) == (0.0, 0.0, 0.0)
    assert res.p_value == 1.0 and res.p_two_sided == 1.0
    # several seeds that agree: seed resampling cannot move anything either (up to rounding,
    # as means over 3 and over 2 columns)
    same = np.repeat(x[:, None], 3, axis=1)
    res = stratified_paired_difference([same], [same[:, :2]])
    assert (res.diff, res.ci_low, res.ci_high) == pytest.approx((0.0, 0.0, 0.0), abs=1e-15)
    # seeds that disagree: the seeds of a and b are other runs, drawn independently,
    # so the interval is not degenerate but centred on 0
    noisy = x[:, None] + rng.normal(0, 0.2, (40, 3))
    res = stratified_paired_difference([noisy], [noisy])
    assert res.diff == 0.0 and res.ci_low < 0 < res.ci_high


def test_paired_difference_shift_and_swap():
    rng = np.random.default_rng(7)
    a, b = rng.random(60), rng.random(60)
    base = stratified_paired_difference([a], [b], n_boot=800, seed=3)
    shifted = stratified_paired_difference([a], [b + 0.25], n_boot=800, seed=3)
    assert shifted.diff == pytest.approx(base.diff - 0.25, abs=1e-12)
    assert shifted.ci_low == pytest.approx(base.ci_low - 0.25, abs=1e-12)
    assert shifted.ci_high == pytest.approx(base.ci_high - 0.25, abs=1e-12)
    swapped = stratified_paired_difference([b], [a], n_boot=800, seed=3)
    assert swapped.diff == pytest.approx(-base.diff, abs=1e-15)
    assert swapped.ci_low == pytest.approx(-base.ci_high, abs=1e-12)
    assert swapped.ci_high == pytest.approx(-base.ci_low, abs=1e-12)
    assert swapped.p_two_sided == pytest.approx(base.p_two_sided)
    # [problems, seeds] with other seed counts per side: the difference negates exactly, the
    # interval only approximately (the two sides' seed draws change places)
    a2, b2 = rng.random((60, 3)), rng.random((60, 2))
    one = stratified_paired_difference([a2], [b2], n_boot=4000)
    two = stratified_paired_difference([b2], [a2], n_boot=4000)
    assert two.diff == pytest.approx(-one.diff, abs=1e-15)
    assert two.ci_low == pytest.approx(-one.ci_high, abs=0.02)
    assert two.ci_high == pytest.approx(-one.ci_low, abs=0.02)


def test_paired_interval_narrower_than_unpaired_when_correlated():
    rng = np.random.default_rng(8)
    difficulty = rng.normal(0, 1, 300)
    a = difficulty + 0.1 + rng.normal(0, 0.2, 300)
    b = difficulty + rng.normal(0, 0.2, 300)
    paired = stratified_paired_difference([a], [b])
    unpaired = stratified_paired_difference([a], [b], paired=False)
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
        res = stratified_paired_difference([a], [b], n_boot=400, seed=trial)
        covered += res.ci_low <= truth <= res.ci_high
    assert 0.88 <= covered / 200 <= 0.99


def test_paired_difference_seeds_and_errors():
    rng = np.random.default_rng(10)
    a, b = rng.random((20, 3)), rng.random((20, 1))
    res = stratified_paired_difference([a], [b])
    assert res.diff == pytest.approx(a.mean() - b.mean())
    assert res.ci_low <= res.diff <= res.ci_high
    assert stratified_paired_difference([a], [b[:, 0]]).diff == pytest.approx(res.diff)
    with pytest.raises(ValueError):
        stratified_paired_difference([a], [b[:10]])  # not the same problems
    unpaired = stratified_paired_difference([a], [b[:10]], paired=False)
    assert unpaired.diff == pytest.approx(a.mean() - b[:10].mean())
    with pytest.raises(ValueError):
        stratified_paired_difference([[1.0, np.nan]], [[0.0, 0.0]])
    with pytest.raises(ValueError):
        stratified_paired_difference([[]], [[]])
    with pytest.raises(ValueError):
        stratified_paired_difference([[1.0]], [[0.0]], level=1.0)


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
