"""Every statistic of the study: pass@k, avg@n, maj@n, seed aggregation and bootstrap intervals.

Small pure functions (arrays or frames in, numbers or frames out), used by the report
(``polarity.report.tables``) and the tests. A foundation library: no torch, nothing from
``polarity`` but ``files``/``seeds``.

Per problem (``n`` samples, ``c`` correct): avg@n = c/n, unbiased pass@k = 1 - C(n-c, k)/C(n, k),
maj@n = correctness of the majority-vote answer. A study value is the mean over problems (and
seeds); intervals are percentile bootstraps over problems and seeds (see the notes above
``bootstrap_means``).
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

__all__ = [
    "PairedDifference",
    "align_seeds",
    "bootstrap_ci",
    "bootstrap_differences",
    "bootstrap_means",
    "k_values",
    "maj_per_problem",
    "mean_ci",
    "pass_at_k",
    "pass_at_k_array",
    "pass_at_k_matrix",
    "percentile_interval",
    "problem_counts",
    "problem_scores",
    "stratified_paired_difference",
]


def _as_int(value: object, name: str) -> int:
    try:
        return operator.index(value)  # ints, numpy ints, bools; not floats
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None


# ----------------------------------------------------------------------------- pass@k


def _pass_at_k_tail(n: int, k: int, c: int) -> list[float]:
    """pass@k for ``c' = 1..c`` correct samples (``2 <= k``, ``c <= n - k``).

    ``-expm1(sum_{i=n-c'+1}^{n} log1p(-k/i))``, the sum accumulated term by term from ``i = n``
    down with Python floats (``math`` functions, no SIMD paths), so a prefix of a longer table is
    bit-for-bit the shorter table.
    """
    return [-math.expm1(s) for s in itertools.accumulate(math.log1p(-k / i)
                                                          for i in range(n, n - c, -1))]


def _pass_at_k_table(n: int, k: int) -> np.ndarray:
    """pass@k for every correct count ``c = 0..n`` (index ``c``), as :func:`pass_at_k` computes it."""
    if k == 0:
        return np.zeros(n + 1)
    if k == 1:
        return np.array([c / n for c in range(n + 1)])
    out = np.ones(n + 1)
    out[0] = 0.0
    out[1 : n - k + 1] = _pass_at_k_tail(n, k, n - k)
    return out


def _check_nck(n: object, c: object, k: object) -> tuple[int, int, int]:
    n, c, k = _as_int(n, "n"), _as_int(c, "c"), _as_int(k, "k")
    if n < 0 or c < 0 or k < 0:
        raise ValueError(f"n, c, k must be non-negative, got n={n}, c={c}, k={k}")
    if k > n:
        raise ValueError(f"k={k} exceeds the number of samples n={n}")
    if c > n:
        raise ValueError(f"c={c} exceeds the number of samples n={n}")
    return n, c, k


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021) of one problem with ``n`` samples, ``c`` correct.

    ``1 - C(n-c, k) / C(n, k)`` (1.0 when ``n - c < k``), computed without binomials as
    ``-expm1(sum_{i=n-c+1}^{n} log1p(-k/i))`` (summed from ``i = n`` down): a few ulp of relative
    error at n = 256 and beyond, never decreasing in ``c`` or ``k``. pass@1 is exactly ``c / n``,
    pass@0 is 0.
    """
    n, c, k = _check_nck(n, c, k)
    if k == 0:
        return 0.0
    if k == 1:
        return c / n
    if n - c < k:
        return 1.0
    if c == 0:
        return 0.0
    return _pass_at_k_tail(n, k, c)[-1]


def pass_at_k_array(n: int, correct_counts: np.ndarray, k: int) -> np.ndarray:
    """:func:`pass_at_k` of each problem's correct count, all with the same ``n``.

    Bit-for-bit the scalar function (one table of the n + 1 possible values, indexed).
    """
    counts = np.asarray(correct_counts)
    if (counts.size and not np.issubdtype(counts.dtype, np.integer)
            and not np.all(np.equal(np.mod(counts, 1), 0))):
        raise ValueError("correct_counts must be integers")
    counts = counts.astype(np.int64, copy=False)
    n, _, k = _check_nck(n, 0, k)
    if counts.size and (counts.min() < 0 or counts.max() > n):
        raise ValueError(f"correct counts must lie in [0, n={n}]")
    return _pass_at_k_table(n, k)[counts]


def pass_at_k_matrix(n, c, ks: Sequence[int]) -> np.ndarray:
    """pass@k for every k of ``ks``, shape ``[*n.shape, len(ks)]``.

    ``n`` and ``c``: sample and correct counts of the same shape (e.g. [problems, seeds]), each
    problem with its own n; NaN where ``n`` is NaN (a seed that lacks the problem).
    """
    n, c = np.asarray(n, dtype=np.float64), np.asarray(c, dtype=np.float64)
    out = np.full((*n.shape, len(ks)), np.nan)
    present = ~np.isnan(n)
    n_present, c_present = n[present].astype(np.int64), c[present].astype(np.int64)
    values = np.empty((len(n_present), len(ks)))
    for n_value in np.unique(n_present):
        rows = n_present == n_value
        for j, k in enumerate(ks):
            values[rows, j] = pass_at_k_array(int(n_value), c_present[rows], int(k))
    out[present] = values
    return out


def k_values(n: int) -> list[int]:
    """The k of pass@k to report: 1, 2, 4, ... up to ``n``, plus ``n`` if not a power of 2."""
    n = _as_int(n, "n")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    ks = []
    k = 1
    while k <= n:
        ks.append(k)
        k *= 2
    if ks[-1] != n:
        ks.append(n)
    return ks


# ----------------------------------------------------------------------------- per problem


def maj_per_problem(problem_ids, answers, correct) -> pd.Series:
    """maj@n correctness of each problem (1.0 or 0.0) from one row per sample, in sample order.

    The most frequent non-missing answer wins (ties: the answer seen first); the problem scores
    1.0 when the first sample giving that answer is correct (``correct >= 0.5``), 0.0 when every
    answer is missing (None/NaN). Answers compare as strings (exact equality of the extracted,
    math-verify-normalized answer). A float Series indexed by problem id in order of first
    appearance; its mean is maj@n.
    """
    pids = pd.Series(np.asarray(problem_ids, dtype=object) if not hasattr(problem_ids, "dtype")
                     else problem_ids).reset_index(drop=True)
    ans = pd.Series(answers).reset_index(drop=True)
    ok = np.asarray(correct, dtype=np.float64) >= 0.5
    if not len(pids) == len(ans) == len(ok):
        raise ValueError("problem_ids, answers and correct differ in length")
    p_codes, p_uniques = pd.factorize(pids, sort=False)
    if isinstance(ans.dtype, pd.CategoricalDtype) and all(isinstance(c, str) for c in ans.cat.categories):
        a_codes = ans.cat.codes.to_numpy().astype(np.int64)
    else:
        a_codes, _ = pd.factorize(ans.astype("string"), sort=False)
        a_codes = np.asarray(a_codes, dtype=np.int64)
    out = np.zeros(len(p_uniques), dtype=np.float64)
    rows = np.flatnonzero(a_codes >= 0)
    if rows.size:
        width = int(a_codes.max()) + 1
        keys = p_codes[rows].astype(np.int64) * width + a_codes[rows]
        uniq, first, counts = np.unique(keys, return_index=True, return_counts=True)
        first_row = rows[first]  # np.unique's index is the first occurrence
        problem = uniq // width
        order = np.lexsort((first_row, -counts, problem))  # by problem, most votes, seen first
        problem, first_row = problem[order], first_row[order]
        winner = np.r_[True, problem[1:] != problem[:-1]]
        out[problem[winner]] = ok[first_row[winner]]
    return pd.Series(out, index=pd.Index(p_uniques, name="problem_id"), name="maj")


def problem_counts(problem_ids, correct, answers=None) -> pd.DataFrame:
    """One row per problem (sorted by id): ``n`` samples, ``c`` correct (``correct >= 0.5``) and
    ``maj`` (:func:`maj_per_problem`, rows taken in sample order; NaN without ``answers``).

    Rows whose problem id is missing are left out. Columns: problem_id, n, c, maj.
    """
    ok = np.asarray(correct, dtype=np.float64) >= 0.5
    codes, problems = pd.factorize(pd.Series(problem_ids), sort=True)
    keep = codes >= 0
    if not keep.all():
        codes, ok = codes[keep], ok[keep]
        answers = None if answers is None else pd.Series(answers).reset_index(drop=True)[keep]
    n = np.bincount(codes, minlength=len(problems))
    c = np.bincount(codes, weights=ok, minlength=len(problems)).round().astype(np.int64)
    maj = np.full(len(problems), np.nan)
    if answers is not None:
        by_problem = maj_per_problem(codes, answers, ok)
        maj[by_problem.index.to_numpy()] = by_problem.to_numpy()
    return pd.DataFrame({"problem_id": np.asarray(problems), "n": n.astype(int),
                         "c": c.astype(int), "maj": maj})


def problem_scores(n, c, maj=None) -> np.ndarray:
    """avg@n, pass@n and maj@n of each problem (and seed), shape ``[*n.shape, 3]``.

    avg@n = c/n, pass@n = [c > 0] (pass@k at k = the problem's own n), maj@n = ``maj`` (zeros
    when None); NaN where ``n`` is NaN.
    """
    n, c = np.asarray(n, dtype=np.float64), np.asarray(c, dtype=np.float64)
    if n.shape != c.shape:
        raise ValueError(f"n and c differ in shape: {n.shape} vs {c.shape}")
    avg = c / n
    passed = np.where(np.isnan(n), np.nan, (c > 0).astype(float))
    maj = np.asarray(maj, dtype=np.float64) if maj is not None else np.zeros_like(avg)
    maj = np.where(np.isnan(n), np.nan, maj)
    return np.stack([avg, passed, maj], axis=-1)


def align_seeds(strata: Sequence[np.ndarray], seeds: Sequence[tuple]) -> list[np.ndarray]:
    """Strata ``[P_j, S, T]`` whose seed columns are the same runs, for one joint seed resample.

    ``seeds[j]`` names the seed columns of stratum j. A stratum with a missing (problem, seed)
    (NaN) becomes its per-problem mean over the seeds present, ``[P_j, 1, T]``; when the strata
    then differ in their seeds, every stratum's seeds are averaged away (``[P_j, 1, T]``).
    """
    collapsed = [x if not np.isnan(x).any() else np.nanmean(x, axis=1, keepdims=True)
                 for x in strata]
    same = len(set(seeds)) == 1 and all(c.shape == x.shape for c, x in zip(collapsed, strata))
    if same or all(x.shape[1] == 1 for x in collapsed):
        return collapsed
    return [x.mean(axis=1, keepdims=True) for x in collapsed]


# ----------------------------------------------------------------------------- bootstrap
#
# Every interval below is a percentile bootstrap computed by one engine. The data of one policy
# are "strata" (benchmarks), each a matrix x[p, s] of per-problem values (problems p, seeds s;
# a 1-D array is one seed). The statistic is the mean over strata of each stratum's mean,
#     T = (1/J) sum_j (1/(P_j S)) sum_{p,s} x_j[p, s].
# One bootstrap replicate draws, with replacement, P_j problem indices within every stratum j
# and S seed indices once (a seed is one training run, shared by all its benchmarks); as counts
# w_j[p] (how often problem p was drawn) and v[s], the replicate is
#     T* = (1/J) sum_j (1/(P_j S)) sum_{p,s} w_j[p] v[s] x_j[p, s],
# a matrix product, so replicates are computed in vectorized blocks. Extra trailing axes
# x[p, s, ...] are separate statistics computed under the same resamples (e.g. every k of a
# pass@k curve at once). A paired comparison of two policies a and b on the same problems
# shares w_j between them (the pairing) and draws their seeds independently (seed s of one
# algorithm has nothing to do with seed s of another).

_BLOCK_CELLS = 2_000_000  # bound on the (replicates x problems) weight matrix of one block


class PairedDifference(NamedTuple):
    """Result of :func:`stratified_paired_difference`: a - b, its interval and p-values."""

    diff: float  #: mean(a) - mean(b)
    ci_low: float  #: lower percentile-bootstrap bound of diff
    ci_high: float  #: upper percentile-bootstrap bound of diff
    p_value: float  #: one-sided: fraction of bootstrap differences <= 0 (small: a > b)
    p_two_sided: float  #: min(1, 2 * min(fraction <= 0, fraction >= 0))
    mean_a: float  #: mean(a)
    mean_b: float  #: mean(b)


def _stratum(x, name: str, min_dims: int = 1, max_dims: int | None = None) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim < min_dims or (max_dims is not None and arr.ndim > max_dims):
        raise ValueError(f"{name} must have {min_dims} to {max_dims or 'more'} dimensions "
                         f"[problems, seeds, ...], got shape {arr.shape}")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.shape[0] == 0 or arr.shape[1] == 0 or arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN")
    return arr


def _side(strata, name: str) -> list[np.ndarray]:
    if isinstance(strata, np.ndarray) or not isinstance(strata, Sequence) or not len(strata):
        raise ValueError(f"{name} must be a non-empty sequence of arrays (one per stratum)")
    side = [_stratum(x, f"{name}[{j}]") for j, x in enumerate(strata)]
    if len({x.shape[1:] for x in side}) != 1:
        raise ValueError(f"{name}: every stratum needs the same seeds and statistics, got shapes "
                         f"{[x.shape for x in side]}")
    return side


def _counts(rng: np.random.Generator, m: int, b: int) -> np.ndarray:
    """[b, m] how often each of m items is drawn in each of b resamples of size m (with replacement)."""
    if m == 1:
        return np.ones((b, 1))
    idx = rng.integers(0, m, size=(b, m)) + (np.arange(b, dtype=np.int64) * m)[:, None]
    return np.bincount(idx.ravel(), minlength=b * m).reshape(b, m).astype(np.float64)


def _replicates(sides: list[list[np.ndarray]], n_boot: int, seed: int, paired: bool) -> list[np.ndarray]:
    """Bootstrap replicates of T for each side: a list of [n_boot, *stat_shape] arrays."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    n_strata = len(sides[0])
    largest = max(x.shape[0] for side in sides for x in side)
    block = max(1, min(n_boot, _BLOCK_CELLS // largest))
    outs = [np.empty((n_boot, *side[0].shape[2:])) for side in sides]
    for lo in range(0, n_boot, block):
        b = min(block, n_boot - lo)
        seed_w = [_counts(rng, side[0].shape[1], b) for side in sides]
        totals = [0.0] * len(sides)
        for j in range(n_strata):
            shared = _counts(rng, sides[0][j].shape[0], b) if paired else None
            for i, side in enumerate(sides):
                x = side[j]
                p, s = x.shape[:2]
                w = shared if paired else _counts(rng, p, b)
                by_seed = (w @ x.reshape(p, -1)).reshape(b, s, *x.shape[2:])  # sum over drawn problems
                totals[i] = totals[i] + np.einsum("bs...,bs->b...", by_seed, seed_w[i]) / (p * s)
        for i in range(len(sides)):
            outs[i][lo : lo + b] = totals[i] / n_strata
    return outs


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")


def percentile_interval(replicates: np.ndarray, level: float = 0.95):
    """The ``(1-level)/2`` and ``(1+level)/2`` quantiles of bootstrap replicates (along axis 0)."""
    _check_level(level)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(np.asarray(replicates, dtype=np.float64), [alpha, 1.0 - alpha], axis=0)
    return lo, hi


def bootstrap_means(strata, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """Bootstrap replicates of the mean of stratum means T, shape ``[n_boot, *stats]``.

    ``strata``: one array per stratum (benchmark), ``[problems]``, ``[problems, seeds]`` or
    ``[problems, seeds, *stats]``, all with the same seed and statistic axes. Problems are drawn
    within each stratum, seeds once per replicate for all strata (the notes above).
    """
    return _replicates([_side(strata, "strata")], n_boot, seed, paired=False)[0]


def mean_ci(strata, n_boot: int = 1000, seed: int = 0, level: float = 0.95):
    """``(T, ci_low, ci_high)``: the mean of stratum means ``T = (1/J) sum_j mean(x_j)`` and its
    percentile bootstrap interval (:func:`bootstrap_means`; benchmarks weighted equally).

    ``strata`` as in :func:`bootstrap_means`; with trailing statistic axes each of the three is an
    array over them.
    """
    _check_level(level)
    side = _side(strata, "strata")
    value = np.mean([x.mean(axis=(0, 1)) for x in side], axis=0)
    lo, hi = percentile_interval(bootstrap_means(side, n_boot, seed), level)
    return value, lo, hi


def bootstrap_ci(
    per_problem: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of one ``[problems]`` or ``[problems, seeds]``
    array: :func:`mean_ci` of a single stratum, as floats (replicate = mean of x[p*, s*])."""
    _check_level(level)
    arr = _stratum(per_problem, "per_problem", 1, 2)
    _, lo, hi = mean_ci([arr], n_boot, seed, level)
    return float(lo), float(hi)


def bootstrap_differences(a_strata, b_strata, n_boot: int = 1000, seed: int = 0,
                          paired: bool = True) -> np.ndarray:
    """Bootstrap replicates of ``T(a) - T(b)`` (T: mean of stratum means), ``[n_boot, *stats]``.

    ``a_strata[j]``/``b_strata[j]``: benchmark j of each side, ``[problems]``,
    ``[problems, seeds]`` or ``[problems, seeds, *stats]`` (same problems in the same rows when
    ``paired``; the seed counts of a and b may differ, the trailing axes may not). Problems are
    drawn once per replicate and stratum for both sides when ``paired`` (independently when not),
    seeds independently per side, once for all strata.
    """
    a_side = _side(a_strata, "a_strata")
    b_side = _side(b_strata, "b_strata")
    if len(a_side) != len(b_side):
        raise ValueError(f"a has {len(a_side)} strata but b has {len(b_side)}")
    if a_side[0].shape[2:] != b_side[0].shape[2:]:
        raise ValueError(f"a and b differ in their statistic axes: {a_side[0].shape[2:]} vs "
                         f"{b_side[0].shape[2:]}")
    for j, (x, y) in enumerate(zip(a_side, b_side)):
        if paired and x.shape[0] != y.shape[0]:
            raise ValueError(f"stratum {j}: a has {x.shape[0]} problems but b has {y.shape[0]}; "
                             "a paired comparison needs the same problems")
    reps_a, reps_b = _replicates([a_side, b_side], n_boot, seed, paired=paired)
    return reps_a - reps_b


def stratified_paired_difference(
    a_strata, b_strata, n_boot: int = 1000, seed: int = 0, level: float = 0.95, paired: bool = True
) -> PairedDifference:
    """Difference ``diff = T(a) - T(b)`` of two policies on the same problems, with a bootstrap CI.

    ``a_strata[j]``/``b_strata[j]``: benchmark j's per-problem scores of each policy, same rows
    (``[problems]``, ``[problems, seeds]`` or ``[problems, seeds, *stats]``; seed counts may
    differ); one stratum is a plain comparison. Each replicate draws problems once for both
    sides (the pairing: a problem's difficulty cancels) and seeds per side:
    ``diff* = T(a[p*, s*_a]) - T(b[p*, s*_b])``. ``ci_low``/``ci_high``: the ``(1 -+ level)/2``
    quantiles of diff*; ``p_value = #{diff* <= 0} / n_boot`` (one-sided, "a beats b");
    ``p_two_sided = min(1, 2 min(#{diff* <= 0}, #{diff* >= 0}) / n_boot)``. ``paired=False``
    draws the problems of a and b independently. With trailing statistic axes every field is
    an array over them.
    """
    _check_level(level)
    diffs = bootstrap_differences(a_strata, b_strata, n_boot, seed, paired)
    a_side, b_side = _side(a_strata, "a_strata"), _side(b_strata, "b_strata")
    mean_a = np.mean([x.mean(axis=(0, 1)) for x in a_side], axis=0)
    mean_b = np.mean([y.mean(axis=(0, 1)) for y in b_side], axis=0)
    lo, hi = percentile_interval(diffs, level)
    below = np.mean(diffs <= 0, axis=0)
    above = np.mean(diffs >= 0, axis=0)
    two = np.minimum(1.0, 2.0 * np.minimum(below, above))
    fields = (mean_a - mean_b, lo, hi, below, two, mean_a, mean_b)
    if np.ndim(fields[0]) == 0:
        return PairedDifference(*(float(f) for f in fields))
    return PairedDifference(*(np.asarray(f, dtype=np.float64) for f in fields))
