"""Tests for polarity.metrics: pass@k, avg@n and maj@n per problem, against hand-computed
values, direct binomial formulas and invariants. The bootstrap: test_metrics_bootstrap.py."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polarity.metrics import (
    align_seeds,
    k_values,
    maj_per_problem,
    pass_at_k,
    pass_at_k_array,
    pass_at_k_matrix,
    problem_counts,
    problem_scores,
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
    n, c = np.full(3, 4), correct.sum(1)
    avg = problem_scores(n, c)[:, 0]
    assert avg.mean() == pytest.approx(6 / 12)
    assert problem_scores([2], [np.sum([True, False])])[:, 0].mean() == 0.5
    # avg@n equals pass@1 averaged over problems
    assert avg.mean() == pytest.approx(pass_at_k_array(4, correct.sum(1), 1).mean())
    assert problem_scores(n, c)[:, 1].tolist() == [1.0, 1.0, 0.0]  # pass@n = [c > 0]
    with pytest.raises(ValueError):
        problem_scores(np.array([4]), np.array([1, 0]))


def test_problem_scores_and_pass_at_k_matrix_leave_missing_seeds_nan():
    n = np.array([[4.0, np.nan], [2.0, 2.0]])  # [problems, seeds]; seed 1 lacks problem 0
    c = np.array([[1.0, np.nan], [0.0, 2.0]])
    scores = problem_scores(n, c, maj=np.array([[1.0, np.nan], [0.0, 1.0]]))
    assert scores.shape == (2, 2, 3) and np.isnan(scores[0, 1]).all()
    assert scores[1].tolist() == [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]
    assert problem_scores(n, c)[1, 1, 2] == 0.0  # no majority votes: zeros
    matrix = pass_at_k_matrix(n, c, [1, 2])  # every problem with its own n
    assert matrix.shape == (2, 2, 2) and np.isnan(matrix[0, 1]).all()
    assert matrix[0, 0].tolist() == [0.25, pass_at_k(4, 1, 2)]
    assert matrix[1].tolist() == [[0.0, 0.0], [1.0, 1.0]]


def _maj_reference(answers: list[list], correct: list[list]) -> float:
    """maj@n straight from its definition, problem by problem: the most frequent non-None answer
    (ties: seen first) decides, through the first sample giving it; all None: wrong."""
    hits = 0
    for ans, cor in zip(answers, correct):
        counts: dict[str, int] = {}
        for a in ans:
            if a is not None:
                counts[a] = counts.get(a, 0) + 1
        if counts:
            best = max(counts, key=lambda a: (counts[a], -ans.index(a)))
            hits += bool(cor[ans.index(best)])
    return hits / len(answers)


def _flat(answers: list[list], correct: list[list]):
    """Nested per-problem lists -> one row per sample (problem_ids, answers, correct)."""
    pids = [p for p, ans in enumerate(answers) for _ in ans]
    return pids, [a for ans in answers for a in ans], [x for cor in correct for x in cor]


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
    assert maj_per_problem(*_flat(answers, correct)).mean() == pytest.approx(3 / 5)
    assert maj_per_problem([0], ["x"], [True]).mean() == 1.0
    with pytest.raises(ValueError):
        maj_per_problem([0], ["x"], [True, False])
    assert maj_per_problem([], [], []).empty


def test_maj_at_n_uses_first_sample_of_winning_answer():
    # Same string, different flags (should not happen with a deterministic verifier): first wins.
    assert maj_per_problem([0, 0], ["3", "3"], [False, True]).mean() == 0.0
    assert maj_per_problem([0, 0], ["3", "3"], [True, False]).mean() == 1.0


def test_maj_per_problem_hand_case():
    # problem 7: "2" twice beats "1" -> sample 1 decides (correct); problem 3: tie "5"/"6", "5" first
    # (wrong); problem 9: no answer at all -> 0
    pids = [7, 7, 7, 7, 3, 3, 3, 9, 9]
    answers = ["1", "2", "2", None, "5", "6", float("nan"), None, None]
    correct = [0, 1, 1, 0, 0, 1, 0, 1, 1]
    out = maj_per_problem(pids, answers, correct)
    assert list(out.index) == [7, 3, 9]
    assert out.tolist() == [1.0, 0.0, 0.0]


def test_maj_per_problem_matches_the_definition():
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
        expected = _maj_reference(grouped_a, grouped_c)
        got = maj_per_problem(pids, answers, correct)
        assert got.mean() == pytest.approx(expected)
        # same per problem, and categorical answers (as parquet dictionary columns read) agree
        cat = maj_per_problem(pids, pd.Categorical(answers), correct)
        pd.testing.assert_series_equal(got, cat)


def test_maj_per_problem_rejects_length_mismatch():
    with pytest.raises(ValueError):
        maj_per_problem([1, 1], ["a"], [1, 0])


def test_problem_counts_by_hand():
    # rows in sample order; problem "b" first seen but sorted after "a"; a missing id is left out
    out = problem_counts(["b", "b", "a", "a", "a", None], [1, 0, 0.0, 1.0, 1.0, 1],
                         ["x", "y", "4", "3", "3", "z"])
    assert list(out.columns) == ["problem_id", "n", "c", "maj"]
    assert out.values.tolist() == [["a", 3, 2, 1.0], ["b", 2, 1, 1.0]]
    no_answers = problem_counts([2, 1, 2], [True, False, False])
    assert no_answers[["problem_id", "n", "c"]].values.tolist() == [[1, 1, 0], [2, 2, 1]]
    assert no_answers["maj"].isna().all()


def test_align_seeds():
    full = np.arange(12.0).reshape(3, 2, 2)  # [problems, seeds, stats]
    gap = full.copy()
    gap[0, 1] = np.nan  # seed 1 lacks problem 0: per-problem mean over the seeds present
    same = align_seeds([full, full + 1], [(0, 1), (0, 1)])
    assert [x.shape for x in same] == [(3, 2, 2), (3, 2, 2)]  # the same runs: kept
    collapsed = align_seeds([gap], [(0, 1)])[0]
    assert collapsed.shape == (3, 1, 2) and collapsed[0, 0].tolist() == [0.0, 1.0]
    assert collapsed[1, 0].tolist() == [5.0, 6.0]
    # strata with other seeds (or one collapsed): every stratum's seeds averaged away
    other = align_seeds([full, full[:, :1]], [(0, 1), (2,)])
    assert [x.shape for x in other] == [(3, 1, 2), (3, 1, 2)]
    np.testing.assert_array_equal(other[0][:, 0], full.mean(axis=1))
    assert [x.shape for x in align_seeds([full, gap], [(0, 1), (0, 1)])] == [(3, 1, 2), (3, 1, 2)]
