"""The row order of every report frame.

Algorithms: ``base`` first, then the registry's order (``polarity.algorithms.registry``), then
any unknown names sorted. Benchmarks: by name, the ``"average"`` pseudo-benchmark (the
unweighted mean over benchmarks, see ``report.tables``) last.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import pandas as pd

from ..algorithms.registry import ALGORITHMS

AVERAGE = "average"  # the pseudo-benchmark of the unweighted mean over benchmarks


def algorithm_order(names: Iterable[str] | None = None) -> list[str]:
    """``base`` first, then registry order, then unknown names sorted; only ``names`` if given."""
    known = ["base", *ALGORITHMS]
    if names is None:
        return known
    present = {str(n) for n in names if n is not None and not (isinstance(n, float) and math.isnan(n))}
    return [n for n in known if n in present] + sorted(present - set(known))


def _algorithm_key(names: pd.Series) -> pd.Series:
    rank = {name: i for i, name in enumerate(algorithm_order(names.unique()))}
    return names.map(rank)


def _benchmark_key(names: pd.Series) -> pd.Series:
    """Benchmarks sorted by name, the ``average`` pseudo-benchmark last."""
    rank = {name: i for i, name in enumerate(sorted(set(names) - {AVERAGE}, key=str))}
    return names.map(lambda b: rank.get(b, len(rank)))


def sort_rows(frame: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """``frame`` sorted (stable) by the columns ``by`` it has, algorithms and benchmarks in report
    order; a fresh RangeIndex."""
    if frame.empty:
        return frame.reset_index(drop=True)
    by = [c for c in by if c in frame.columns]

    def key(col: pd.Series) -> pd.Series:
        if col.name == "algorithm":
            return _algorithm_key(col)
        if col.name == "benchmark":
            return _benchmark_key(col)
        return col

    return frame.sort_values(by, key=key, kind="stable").reset_index(drop=True)
