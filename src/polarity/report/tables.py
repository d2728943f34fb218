"""The report's tables with 95% intervals, from the per-problem frame of ``report.load``.

:func:`final_table` (avg@n, pass@n, maj@n), :func:`passk_summary` (pass@k curves over seeds),
:func:`passk_curves` (per seed) and :func:`paired_comparisons` (algorithm - reference). Each
accepts a per-problem frame (``load.load_evaluation``) or a samples frame (``load.load_samples``).
The statistics are ``polarity.metrics``: a (model, algorithm, benchmark) is a "block" of
[problems, seeds] matrices, its value the mean over problems and seeds, its interval a percentile
bootstrap (``N_BOOT`` resamples, fixed ``BOOT_SEED``) over problems and, when every seed has
every problem, seeds (``metrics.align_seeds``). The ``"average"`` pseudo-benchmark is the
unweighted mean over benchmarks, ``T = (1/J) sum_j T_j``, bootstrapped within each benchmark.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from .. import metrics
from .load import SAMPLE_KEYS, per_problem
from .ordering import AVERAGE, algorithm_order, sort_rows

N_BOOT = 1000  # bootstrap resamples (over problems, and seeds where there are several)
BOOT_SEED = 0  # fixed so that reports are reproducible
CI_LEVEL = 0.95

PASSK_COLUMNS = [*SAMPLE_KEYS, "k", "pass_at_k", "ci_low", "ci_high"]
PASSK_SUMMARY_COLUMNS = ["model", "algorithm", "benchmark", "seeds", "problems", "n",
                         "k", "pass_at_k", "ci_low", "ci_high"]
FINAL_COLUMNS = ["model", "algorithm", "benchmark", "seeds", "problems", "n",
                 "avg_at_n", "avg_ci_low", "avg_ci_high", "pass_at_n", "pass_ci_low", "pass_ci_high",
                 "maj_at_n", "maj_ci_low", "maj_ci_high"]
PAIRED_COLUMNS = ["model", "benchmark", "algorithm", "reference", "metric", "n", "problems",
                  "seeds", "reference_seeds", "value", "reference_value", "diff", "ci_low",
                  "ci_high", "p_value", "p_two_sided"]

__all__ = ["AVERAGE", "BOOT_SEED", "CI_LEVEL", "FINAL_COLUMNS", "N_BOOT", "PAIRED_COLUMNS",
           "PASSK_COLUMNS", "PASSK_SUMMARY_COLUMNS", "default_reference", "final_table",
           "paired_comparisons", "passk_curves", "passk_summary"]


class _Block(NamedTuple):
    """The per-problem values of one (model, algorithm, benchmark), all its seeds."""

    problems: np.ndarray  # [P] problem ids (sorted)
    seeds: tuple  # the seed columns
    n: np.ndarray  # [P, S] samples (NaN: that seed lacks the problem)
    c: np.ndarray  # [P, S] correct samples
    maj: np.ndarray | None  # [P, S] majority-vote correctness, None without answers

    @property
    def n_min(self) -> int:
        return int(np.nanmin(self.n))

    def rows(self, ids: np.ndarray) -> _Block:
        idx = np.searchsorted(self.problems, ids)
        return _Block(self.problems[idx], self.seeds, self.n[idx], self.c[idx],
                      None if self.maj is None else self.maj[idx])


def _blocks(pp: pd.DataFrame) -> dict[tuple, _Block]:
    """One _Block per (model, algorithm, benchmark) of a per-problem frame, in report order."""
    out = {}
    pp = sort_rows(pp, ["model", "algorithm", "benchmark", "problem_id", "seed"])
    for key, group in pp.groupby(["model", "algorithm", "benchmark"], sort=False):
        wide = group.pivot(index="problem_id", columns="seed", values=["n", "c", "maj"])
        seeds = tuple(wide["n"].columns)
        n = wide["n"].to_numpy(dtype=float)
        maj = wide["maj"].to_numpy(dtype=float)
        present = ~np.isnan(n)
        out[key] = _Block(wide.index.to_numpy(), seeds, n, wide["c"].to_numpy(dtype=float),
                          maj if not np.isnan(maj[present]).any() else None)
    return out


def _as_per_problem(frame: pd.DataFrame) -> pd.DataFrame:
    """A per-problem frame as is (it has n and c), a samples frame through ``load.per_problem``."""
    if {"n", "c"} <= set(frame.columns) and "correct" not in frame.columns:
        return frame if "maj" in frame.columns else frame.assign(maj=np.nan)
    return per_problem(frame)


def _interval(strata: list[np.ndarray], seeds: list[tuple]):
    """(value, ci_low, ci_high) over the statistic axis of seed-aligned strata (``metrics.mean_ci``)."""
    return metrics.mean_ci(metrics.align_seeds(strata, seeds), n_boot=N_BOOT, seed=BOOT_SEED,
                           level=CI_LEVEL)


def _evaluations(blocks: dict, average: bool):
    """``(model, algorithm, benchmark, blocks)`` per benchmark, then (``average``) one
    ``AVERAGE`` pseudo-benchmark per (model, algorithm) evaluated on at least two."""
    for (model, algo, bench), block in blocks.items():
        yield model, algo, bench, [block]
    if average:
        for model, algo in dict.fromkeys(k[:2] for k in blocks):
            parts = [b for key, b in blocks.items() if key[:2] == (model, algo)]
            if len(parts) >= 2:
                yield model, algo, AVERAGE, parts


def passk_curves(samples: pd.DataFrame) -> pd.DataFrame:
    """pass@k for k in ``k_values(n)`` per (model, algorithm, seed, benchmark), with 95% CIs.

    pass@k is the unbiased estimator averaged over problems; the CI bootstraps problems.
    ``n`` is the smallest number of samples of any problem of that run and benchmark.
    Columns: ``PASSK_COLUMNS``. :func:`passk_summary` gives curves over seeds.
    """
    pp = _as_per_problem(samples)
    rows = []
    for key, group in pp.groupby(SAMPLE_KEYS, sort=False):
        n = group["n"].to_numpy().astype(float)[:, None]
        c = group["c"].to_numpy().astype(float)[:, None]
        ks = metrics.k_values(int(np.nanmin(n)))
        value, low, high = _interval([metrics.pass_at_k_matrix(n, c, ks)], [(key[2],)])
        rows += [(*key, int(k), float(v), float(lo), float(hi))
                 for k, v, lo, hi in zip(ks, value, low, high)]
    out = pd.DataFrame(rows, columns=PASSK_COLUMNS)
    return sort_rows(out, [*SAMPLE_KEYS, "k"])


def passk_summary(samples: pd.DataFrame, average: bool = True) -> pd.DataFrame:
    """pass@k curves per (model, algorithm, benchmark) over all seeds, plus the benchmark average.

    For k in ``k_values(n)`` (n: fewest samples of any problem), pass@k is the per-problem
    unbiased estimate averaged over problems and seeds; the 95% CI bootstraps problems and seeds
    (all k under the same resamples). With ``average`` and at least two benchmarks, an
    ``"average"`` row per (model, algorithm, k): the mean of the benchmark values, k up to the
    smallest n of its benchmarks. Columns: ``PASSK_SUMMARY_COLUMNS`` (``problems`` summed over
    benchmarks in an average row).
    """
    pp = _as_per_problem(samples)
    if pp.empty:
        return pd.DataFrame(columns=PASSK_SUMMARY_COLUMNS)
    rows = []
    for model, algo, bench, parts in _evaluations(_blocks(pp), average):
        n_min = min(b.n_min for b in parts)
        ks = metrics.k_values(n_min)
        value, low, high = _interval([metrics.pass_at_k_matrix(b.n, b.c, ks) for b in parts],
                                     [b.seeds for b in parts])
        seeds = len(set().union(*(b.seeds for b in parts)))
        problems = sum(len(b.problems) for b in parts)
        rows.extend((model, algo, bench, seeds, problems, n_min, int(k), float(v), float(lo),
                     float(hi)) for k, v, lo, hi in zip(ks, value, low, high))
    out = pd.DataFrame(rows, columns=PASSK_SUMMARY_COLUMNS)
    return sort_rows(out, ["model", "algorithm", "benchmark", "k"])


def final_table(samples: pd.DataFrame, average: bool = True) -> pd.DataFrame:
    """avg@n, pass@n and maj@n per (model, algorithm, benchmark) over all seeds, with 95% CIs.

    Per problem and seed (``metrics.problem_scores``): avg@n = c/n, pass@n = [c > 0], maj@n =
    the majority-vote answer's correctness (NaN columns without ``answer``). A row's value is
    the mean over problems and seeds; the CI resamples problems and, when every seed has every
    problem, seeds (else each problem's seed mean over problems only). With ``average`` and at
    least two benchmarks, an ``"average"`` row per (model, algorithm): the unweighted mean of the
    benchmark values, its CI a stratified bootstrap (problems within each benchmark, seeds once
    for all). Its ``problems`` is the total and ``n`` the smallest of its benchmarks.
    Columns: ``FINAL_COLUMNS``.
    """
    pp = _as_per_problem(samples)
    if pp.empty:
        return pd.DataFrame(columns=FINAL_COLUMNS)
    rows = []
    for model, algo, bench, parts in _evaluations(_blocks(pp), average):
        value, low, high = _interval([metrics.problem_scores(b.n, b.c, b.maj) for b in parts],
                                     [b.seeds for b in parts])
        if any(b.maj is None for b in parts):
            value[2] = low[2] = high[2] = np.nan
        stats = [float(x) for i in range(3) for x in (value[i], low[i], high[i])]
        seeds = len(set().union(*(b.seeds for b in parts)))
        rows.append((model, algo, bench, seeds, sum(len(b.problems) for b in parts),
                     min(b.n_min for b in parts), *stats))
    out = pd.DataFrame(rows, columns=FINAL_COLUMNS)
    return sort_rows(out, ["model", "algorithm", "benchmark"])


def default_reference(algorithms: Iterable[str]) -> str | None:
    """``base`` when present, else the first trained algorithm in report order (None if none)."""
    order = algorithm_order(algorithms)
    return order[0] if order else None


def paired_comparisons(samples: pd.DataFrame, reference: str | None = None,
                       average: bool = True) -> pd.DataFrame:
    """Every algorithm against a reference algorithm on the problems both evaluated.

    Per model, benchmark and algorithm: the difference algorithm - reference of avg@n, pass@n
    and (when both have answers) maj@n on the common problems, by
    ``metrics.stratified_paired_difference`` (problems resampled jointly, seeds per side):
    95% interval, ``p_value`` = fraction of bootstrap differences <= 0 (small when the algorithm
    beats the reference), ``p_two_sided``. pass@n is pass@k at k = ``n``, the fewest samples of
    a problem in either policy. With ``average`` and at least two common benchmarks, an
    ``"average"`` row (unweighted mean, problems resampled within each benchmark).

    ``reference``: default per model ``base`` when present, else :func:`default_reference`;
    a model without it has no rows. Columns: ``PAIRED_COLUMNS``.
    """
    pp = _as_per_problem(samples)
    if pp.empty:
        return pd.DataFrame(columns=PAIRED_COLUMNS)
    blocks = _blocks(pp)
    rows = []
    for model in dict.fromkeys(k[0] for k in blocks):
        algos = algorithm_order({k[1] for k in blocks if k[0] == model})
        ref = reference if reference is not None else default_reference(algos)
        if ref not in algos:
            continue
        for algo in (a for a in algos if a != ref):
            pairs = []  # (benchmark, algo block, reference block) on the common problems
            for bench in dict.fromkeys(k[2] for k in blocks if k[:2] == (model, algo)):
                ref_block = blocks.get((model, ref, bench))
                if ref_block is None:
                    continue
                block = blocks[(model, algo, bench)]
                common = np.intersect1d(block.problems, ref_block.problems)
                if len(common):
                    pairs.append((bench, block.rows(common), ref_block.rows(common)))
            groups = [(bench, [(a, r)]) for bench, a, r in pairs]
            if average and len(pairs) >= 2:
                groups.append((AVERAGE, [(a, r) for _, a, r in pairs]))
            for bench, parts in groups:
                rows.extend(_paired_rows(model, algo, ref, bench, parts))
    out = pd.DataFrame(rows, columns=PAIRED_COLUMNS)
    return sort_rows(out, ["model", "benchmark", "algorithm"]) if not out.empty else out


def _paired_rows(model, algo, ref, bench, parts: Sequence[tuple[_Block, _Block]]) -> list[tuple]:
    n_min = min(min(a.n_min, r.n_min) for a, r in parts)
    with_maj = all(a.maj is not None and r.maj is not None for a, r in parts)

    def values(block: _Block) -> np.ndarray:
        """[P, S, stats]: avg@n, pass@k at k = n_min and (with answers) maj@n."""
        scores = metrics.problem_scores(block.n, block.c, block.maj)
        stats = [scores[..., :1], metrics.pass_at_k_matrix(block.n, block.c, [n_min])]
        if with_maj:
            stats.append(scores[..., 2:])
        return np.concatenate(stats, axis=-1)

    a_side = metrics.align_seeds([values(a) for a, _ in parts], [a.seeds for a, _ in parts])
    r_side = metrics.align_seeds([values(r) for _, r in parts], [r.seeds for _, r in parts])
    res = metrics.stratified_paired_difference(a_side, r_side, n_boot=N_BOOT, seed=BOOT_SEED,
                                               level=CI_LEVEL)
    metric_names = ["avg@n", "pass@n", "maj@n"][: a_side[0].shape[2]]
    problems = sum(len(a.problems) for a, _ in parts)
    seeds = len(set().union(*(a.seeds for a, _ in parts)))
    ref_seeds = len(set().union(*(r.seeds for _, r in parts)))
    return [(model, bench, algo, ref, name, n_min, problems, seeds, ref_seeds,
             float(res.mean_a[i]), float(res.mean_b[i]), float(res.diff[i]), float(res.ci_low[i]),
             float(res.ci_high[i]), float(res.p_value[i]), float(res.p_two_sided[i]))
            for i, name in enumerate(metric_names)]
