"""Evaluation metrics: avg@n, unbiased pass@k, maj@n and bootstrap intervals (pure functions)."""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = [
    "avg_at_n",
    "bootstrap_ci",
    "k_values",
    "maj_at_n",
    "pass_at_k",
    "pass_at_k_array",
    "summarize_samples",
]


def _as_int(value: object, name: str) -> int:
    try:
        return operator.index(value)  # ints, numpy ints, bools; not floats
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021) for one problem with ``n`` samples, ``c`` correct.

    ``1 - C(n-c, k) / C(n, k)``, computed as ``1 - prod_{i=n-c+1}^{n} (1 - k/i)`` so that large
    ``n`` (e.g. 256) neither overflows nor loses precision; 1.0 when ``n - c < k``.
    """
    n, c, k = _as_int(n, "n"), _as_int(c, "c"), _as_int(k, "k")
    if n < 0 or c < 0 or k < 0:
        raise ValueError(f"n, c, k must be non-negative, got n={n}, c={c}, k={k}")
    if k > n:
        raise ValueError(f"k={k} exceeds the number of samples n={n}")
    if c > n:
        raise ValueError(f"c={c} exceeds the number of samples n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def pass_at_k_array(n: int, correct_counts: np.ndarray, k: int) -> np.ndarray:
    """:func:`pass_at_k` for each problem's correct count (same ``n`` for all problems)."""
    counts = np.asarray(correct_counts)
    if counts.size and not np.issubdtype(counts.dtype, np.integer):
        if not np.all(np.equal(np.mod(counts, 1), 0)):
            raise ValueError("correct_counts must be integers")
        counts = counts.astype(np.int64)
    flat = counts.reshape(-1).astype(np.int64, copy=False)
    out = np.empty(flat.shape, dtype=np.float64)
    if flat.size == 0:
        pass_at_k(n, 0, k)  # validate n and k anyway
    for value in np.unique(flat):  # at most n + 1 distinct values
        out[flat == value] = pass_at_k(n, int(value), k)
    return out.reshape(counts.shape)


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


def avg_at_n(correct: np.ndarray) -> float:
    """avg@n: mean correctness over a [problems, n] array (equal to the per-problem mean's mean)."""
    arr = np.asarray(correct, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"correct must be 2-D [problems, n], got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("correct is empty")
    return float(arr.mean())


def _majority_index(answers: Sequence[str | None]) -> int | None:
    """Index of the first sample carrying the most frequent non-None answer (first wins ties)."""
    counts: dict[str, int] = {}
    first: dict[str, int] = {}
    for i, a in enumerate(answers):
        if a is None:
            continue
        counts[a] = counts.get(a, 0) + 1
        first.setdefault(a, i)
    if not counts:
        return None
    best = max(counts, key=lambda a: (counts[a], -first[a]))
    return first[best]


def maj_at_n(answers: list[list[str | None]], correct: list[list[bool]]) -> float:
    """maj@n: fraction of problems whose majority-vote answer is correct.

    Per problem, the most frequent non-None extracted answer wins (ties: the answer seen first);
    the problem counts as correct when the first sample giving that answer is correct, and as
    wrong when every answer is None. Answers are grouped by exact string equality of the
    (math-verify-normalized) extracted answer, not by pairwise math-verify equivalence.
    """
    if len(answers) != len(correct):
        raise ValueError("answers and correct differ in number of problems")
    if len(answers) == 0:
        raise ValueError("no problems")
    hits = 0
    for p, (ans, cor) in enumerate(zip(answers, correct)):
        ans, cor = list(ans), list(cor)
        if len(ans) != len(cor):
            raise ValueError(f"problem {p}: {len(ans)} answers but {len(cor)} correctness flags")
        i = _majority_index([_clean_answer(a) for a in ans])
        if i is not None and bool(cor[i]):
            hits += 1
    return hits / len(answers)


def _clean_answer(a: object) -> str | None:
    """None/NaN (as pandas stores missing answers) -> None; anything else -> str."""
    if a is None:
        return None
    if isinstance(a, float) and math.isnan(a):
        return None
    if a is pd.NA or a is pd.NaT:
        return None
    return a if isinstance(a, str) else str(a)


def summarize_samples(frame: pd.DataFrame) -> pd.DataFrame:
    """Metrics from one row per (problem, sample).

    Input columns: ``problem_id``, ``correct`` (0/1 or bool) and optionally ``answer`` (the
    extracted answer; enables maj@n). Output: one row per metric with columns ``metric``
    ("avg@n", "pass@k", "maj@n"), ``k`` (n for avg@n and maj@n), ``value`` and ``n``. Problems may
    have different sample counts: pass@k then uses each problem's own n, k runs over
    ``k_values(min n)`` and ``n`` is reported as the minimum.
    """
    missing = {"problem_id", "correct"} - set(frame.columns)
    if missing:
        raise ValueError(f"missing columns: {sorted(missing)}")
    columns = ["metric", "k", "value", "n"]
    if len(frame) == 0:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in
                             zip(columns, ["object", "int64", "float64", "int64"])})
    corr = frame["correct"].astype(float).to_numpy()
    if not np.all((corr == 0) | (corr == 1)):
        raise ValueError("correct must be 0/1")
    work = pd.DataFrame({"problem_id": frame["problem_id"].to_numpy(), "correct": corr})
    grouped = work.groupby("problem_id", sort=False)["correct"]
    n_per = grouped.size().to_numpy().astype(np.int64)
    c_per = grouped.sum().to_numpy().round().astype(np.int64)
    n_min = int(n_per.min())
    rows = [("avg@n", n_min, float(np.mean(c_per / n_per)), n_min)]
    for k in k_values(n_min):
        vals = [pass_at_k(int(n), int(c), k) for n, c in zip(n_per, c_per)]
        rows.append(("pass@k", k, float(np.mean(vals)), n_min))
    if "answer" in frame.columns:
        answers: list[list[str | None]] = []
        flags: list[list[bool]] = []
        work["answer"] = frame["answer"].to_numpy()
        for _, g in work.groupby("problem_id", sort=False):
            answers.append(list(g["answer"]))
            flags.append([bool(x) for x in g["correct"]])
        rows.append(("maj@n", n_min, maj_at_n(answers, flags), n_min))
    out = pd.DataFrame(rows, columns=columns)
    out["k"] = out["k"].astype("int64")
    out["n"] = out["n"].astype("int64")
    return out


def bootstrap_ci(
    per_problem: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean, resampling problems with replacement.

    A 2-D input [problems, seeds] resamples problems and seeds independently (the interval
    then covers both sources of variation).
    """
    arr = np.asarray(per_problem, dtype=np.float64)
    if arr.ndim not in (1, 2) or arr.size == 0:
        raise ValueError(f"per_problem must be a non-empty 1-D or 2-D array, got shape {arr.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot, dtype=np.float64)
    if arr.ndim == 1:
        m = arr.shape[0]
        step = max(1, 2_000_000 // m)  # bound memory of the index matrix
        for lo in range(0, n_boot, step):
            hi = min(n_boot, lo + step)
            idx = rng.integers(0, m, size=(hi - lo, m))
            means[lo:hi] = arr[idx].mean(axis=1)
    else:
        p, s = arr.shape
        for b in range(n_boot):
            rows = rng.integers(0, p, size=p)
            cols = rng.integers(0, s, size=s)
            means[b] = arr[np.ix_(rows, cols)].mean()
    alpha = (1.0 - level) / 2.0
    lo_q, hi_q = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo_q), float(hi_q)
