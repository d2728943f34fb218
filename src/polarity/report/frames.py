"""Tidy frames behind every report figure: pure loaders of a study's results directory.

Layout read (``R = results/<study>``)::

    R/runs/<model>/<algorithm>/seed<k>/metrics.jsonl        one JSON object per training step
    R/eval/<model>/<algorithm>/seed<k>/<benchmark>.parquet  one row per (problem, sample)
    R/models/<model>/warmup.json                            optional warm-up record

Every function returns a pandas DataFrame with documented columns, also when nothing is
there (an empty frame with those columns), so notebooks and tests share one code path.
Algorithms are ordered ``base`` first, then in registry order, then any unknown names sorted.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .. import metrics as _metrics

N_BOOT = 1000  # bootstrap resamples over problems
BOOT_SEED = 0  # fixed so that reports are reproducible
CI_LEVEL = 0.95

RUN_KEYS = ["model", "algorithm", "seed"]
TRAINING_KEYS = [*RUN_KEYS, "step"]
SAMPLE_KEYS = [*RUN_KEYS, "benchmark"]
SAMPLE_COLUMNS = ["problem_id", "sample", "response", "ground_truth", "answer", "correct",
                  "reason", "response_length", "truncated"]
PER_PROBLEM_COLUMNS = [*SAMPLE_KEYS, "problem_id", "n", "c"]
PASSK_COLUMNS = [*SAMPLE_KEYS, "k", "pass_at_k", "ci_low", "ci_high"]
FINAL_COLUMNS = ["model", "algorithm", "benchmark", "seeds", "problems", "n",
                 "avg_at_n", "avg_ci_low", "avg_ci_high", "pass_at_n", "pass_ci_low", "pass_ci_high"]
REASONS = ["correct", "wrong", "no_answer", "parse_failure", "timeout"]
ZERO_REASONS = REASONS[1:]
ZERO_REASON_COLUMNS = ["model", "algorithm", "benchmark", "reason", "count", "frac"]
LONG_COLUMNS = [*TRAINING_KEYS, "metric", "value"]
WARMUP_COLUMNS = ["model", "step", "loss", "accuracy", "seconds"]

_SEED_DIR = re.compile(r"^seed(\d+)$")


# ----------------------------------------------------------------------------- ordering


def algorithm_order(names: Iterable[str] | None = None) -> list[str]:
    """``base`` first, then registry order, then unknown names sorted; only ``names`` if given."""
    try:
        from ..algorithms import ALGORITHMS

        registry = list(ALGORITHMS)
    except Exception:  # the report must still order names if the registry cannot import
        registry = ["grpo", "dr_grpo", "dapo", "psr", "nsr", "w_reinforce", "a3po", "popo", "ppo"]
    known = ["base", *registry]
    if names is None:
        return known
    present = {str(n) for n in names if n is not None and not (isinstance(n, float) and math.isnan(n))}
    return [n for n in known if n in present] + sorted(present - set(known))


def _order_key(names: pd.Series) -> pd.Series:
    rank = {name: i for i, name in enumerate(algorithm_order(names.unique()))}
    return names.map(rank)


def _sort(frame: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Sort with ``algorithm`` in report order; a fresh RangeIndex."""
    if frame.empty:
        return frame.reset_index(drop=True)
    by = [c for c in by if c in frame.columns]
    key = lambda col: _order_key(col) if col.name == "algorithm" else col  # noqa: E731
    return frame.sort_values(by, key=key, kind="stable").reset_index(drop=True)


def _run_dirs(base: Path, depth_glob: str):
    """Yield (model, algorithm, seed, path) for files matching ``<model>/<algo>/seed<k>/<glob>``."""
    if not base.is_dir():
        return
    for path in sorted(base.glob(f"*/*/seed*/{depth_glob}")):
        m = _SEED_DIR.match(path.parent.name)
        if not m or not path.is_file():
            continue
        yield path.parent.parent.parent.name, path.parent.parent.name, int(m.group(1)), path


# ----------------------------------------------------------------------------- training


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSONL file (JSON NaN allowed); a last line cut short by a kill is ignored."""
    rows = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


def load_training(results_dir) -> pd.DataFrame:
    """One row per (model, algorithm, seed, step) from every ``runs/*/*/seed*/metrics.jsonl``.

    Columns: model, algorithm, seed, step, then every metric logged (A3PO/POPO columns are
    NaN for other algorithms). ``model`` comes from the path; ``algorithm`` and ``seed`` in
    a row are kept and only filled in from the path where missing. A step logged twice in one
    file (a resumed run) keeps its last row.
    """
    frames = []
    for model, algo, seed, path in _run_dirs(Path(results_dir) / "runs", "metrics.jsonl"):
        rows = read_jsonl(path)
        if not rows:
            continue
        df = pd.DataFrame(rows)
        df["model"] = model
        for col, value in (("algorithm", algo), ("seed", seed)):
            if col not in df.columns:
                df[col] = value
            else:
                df[col] = df[col].where(df[col].notna(), value)
        if "step" not in df.columns:
            df["step"] = range(len(df))
        df = df.drop_duplicates("step", keep="last")  # a resumed run may log a step twice
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=TRAINING_KEYS)
    out = pd.concat(frames, ignore_index=True)
    out["seed"] = out["seed"].astype(int)
    out["step"] = out["step"].astype(int)
    out["algorithm"] = out["algorithm"].astype(str)
    rest = [c for c in out.columns if c not in TRAINING_KEYS]
    return _sort(out[TRAINING_KEYS + rest], TRAINING_KEYS)


def training_long(frame: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Melt the named metrics of ``load_training`` into (model, algorithm, seed, step, metric, value).

    Metrics absent from ``frame`` are skipped; ``metric`` keeps the order asked for (an
    ordered categorical), so faceted plots show panels in that order. Rows whose value is
    NaN are dropped.
    """
    present = [m for m in metrics if m in frame.columns]
    if frame.empty or not present:
        return pd.DataFrame(columns=LONG_COLUMNS)
    keys = [k for k in TRAINING_KEYS if k in frame.columns]
    long = frame[keys + present].melt(id_vars=keys, value_vars=present,
                                      var_name="metric", value_name="value")
    long["value"] = pd.to_numeric(long["value"], errors="coerce")
    long = long.dropna(subset=["value"])
    long["metric"] = pd.Categorical(long["metric"], categories=present, ordered=True)
    return _sort(long, ["metric", *keys]).reindex(columns=LONG_COLUMNS)


def load_warmup(results_dir) -> pd.DataFrame:
    """The warm-up history of each locally made model: (model, step, loss, accuracy, seconds)."""
    frames = []
    base = Path(results_dir) / "models"
    for path in sorted(base.glob("*/warmup.json")) if base.is_dir() else []:
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        hist = pd.DataFrame(record.get("history") or [])
        if hist.empty:
            continue
        hist["model"] = path.parent.name
        frames.append(hist)
    if not frames:
        return pd.DataFrame(columns=WARMUP_COLUMNS)
    out = pd.concat(frames, ignore_index=True).reindex(columns=WARMUP_COLUMNS)
    return out.sort_values(["model", "step"], kind="stable").reset_index(drop=True)


def load_warmup_summary(results_dir) -> pd.DataFrame:
    """One row per model with the scalar fields of ``warmup.json`` (history left out)."""
    rows = []
    base = Path(results_dir) / "models"
    for path in sorted(base.glob("*/warmup.json")) if base.is_dir() else []:
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        row = {"model": path.parent.name}
        row.update({k: v for k, v in record.items() if not isinstance(v, (list, dict))})
        rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else ["model"])


# ----------------------------------------------------------------------------- evaluation


def load_samples(results_dir, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Every ``eval/*/*/seed*/<benchmark>.parquet`` stacked, with model, algorithm, seed, benchmark.

    ``columns`` restricts the parquet columns read (e.g. leave out ``response`` for speed).
    """
    wanted = list(columns) if columns is not None else None
    frames = []
    for model, algo, seed, path in _run_dirs(Path(results_dir) / "eval", "*.parquet"):
        df = pd.read_parquet(path, columns=wanted)
        df.insert(0, "benchmark", path.stem)
        df.insert(0, "seed", seed)
        df.insert(0, "algorithm", algo)
        df.insert(0, "model", model)
        frames.append(df)
    cols = SAMPLE_KEYS + (wanted if wanted is not None else SAMPLE_COLUMNS)
    if not frames:
        return pd.DataFrame(columns=cols)
    out = pd.concat(frames, ignore_index=True)
    return _sort(out, [*SAMPLE_KEYS, "problem_id", "sample"])


def per_problem(samples: pd.DataFrame) -> pd.DataFrame:
    """n (samples) and c (correct samples) per (model, algorithm, seed, benchmark, problem_id)."""
    if samples.empty:
        return pd.DataFrame(columns=PER_PROBLEM_COLUMNS)
    keys = [*SAMPLE_KEYS, "problem_id"]
    ok = pd.to_numeric(samples["correct"], errors="coerce").fillna(0.0) >= 0.5
    grouped = ok.groupby([samples[k] for k in keys], sort=False)
    out = pd.DataFrame({"n": grouped.size(), "c": grouped.sum()}).reset_index()
    out["n"] = out["n"].astype(int)
    out["c"] = out["c"].astype(int)
    return _sort(out[PER_PROBLEM_COLUMNS], keys)


def _ci(values: np.ndarray) -> tuple[float, float]:
    """95% percentile-bootstrap CI of the mean (fixed seed): over problems for a 1-D array,
    over problems and seeds independently for a 2-D [problems, seeds] array."""
    values = np.asarray(values, dtype=float)
    if values.size == 0 or np.isnan(values).any():
        return math.nan, math.nan
    low, high = _metrics.bootstrap_ci(values, n_boot=N_BOOT, seed=BOOT_SEED, level=CI_LEVEL)
    return float(low), float(high)


def _per_problem_passk(n: np.ndarray, c: np.ndarray, k: int) -> np.ndarray:
    """pass@k of each problem, grouping problems by their n (usually one n for all)."""
    out = np.empty(len(n), dtype=float)
    for n_value in np.unique(n):
        idx = n == n_value
        if k > n_value:
            out[idx] = np.nan
        else:
            out[idx] = np.asarray(_metrics.pass_at_k_array(int(n_value), c[idx], int(k)), dtype=float)
    return out


def passk_curves(samples: pd.DataFrame) -> pd.DataFrame:
    """pass@k for k in ``k_values(n)`` per (model, algorithm, seed, benchmark), with 95% CIs.

    pass@k is the unbiased estimator averaged over problems; the CI bootstraps problems.
    ``n`` is the smallest number of samples of any problem of that run and benchmark.
    """
    pp = per_problem(samples)
    rows = []
    for key, group in pp.groupby(SAMPLE_KEYS, sort=False):
        n = group["n"].to_numpy()
        c = group["c"].to_numpy()
        for k in _metrics.k_values(int(n.min())):
            values = _per_problem_passk(n, c, int(k))
            low, high = _ci(values)
            rows.append((*key, int(k), float(values.mean()), low, high))
    out = pd.DataFrame(rows, columns=PASSK_COLUMNS)
    return _sort(out, [*SAMPLE_KEYS, "k"])


def final_table(samples: pd.DataFrame) -> pd.DataFrame:
    """avg@n and pass@n per (model, algorithm, benchmark), averaged over seeds, with 95% CIs.

    Per problem and seed, avg@n = c/n and pass@n = [c > 0]; the value is their mean over
    problems and seeds (a problem is the same in every seed). The CI bootstraps problems and,
    with several seeds evaluated on the same problems, seeds as well
    (``bootstrap_ci`` of the [problems, seeds] matrix).
    Columns: model, algorithm, benchmark, seeds, problems, n (fewest samples of a problem),
    avg_at_n, avg_ci_low, avg_ci_high, pass_at_n, pass_ci_low, pass_ci_high.
    """
    pp = per_problem(samples)
    if pp.empty:
        return pd.DataFrame(columns=FINAL_COLUMNS)
    pp = pp.assign(avg=pp["c"] / pp["n"], passed=(pp["c"] > 0).astype(float))
    rows = []
    for (model, algo, bench), group in pp.groupby(["model", "algorithm", "benchmark"], sort=False):
        stats = []
        for col in ("avg", "passed"):
            matrix = group.pivot(index="problem_id", columns="seed", values=col)  # [problems, seeds]
            if matrix.isna().any().any():  # seeds saw different problems: average what is there
                per_problem_mean = matrix.mean(axis=1).to_numpy()
                stats += [float(per_problem_mean.mean()), *_ci(per_problem_mean)]
            else:
                values = matrix.to_numpy()
                stats += [float(values.mean()), *_ci(values if values.shape[1] > 1 else values[:, 0])]
        rows.append((model, algo, bench, group["seed"].nunique(), group["problem_id"].nunique(),
                     int(group["n"].min()), *stats))
    out = pd.DataFrame(rows, columns=FINAL_COLUMNS)
    return _sort(out, ["model", "algorithm", "benchmark"])


def zero_reasons(samples: pd.DataFrame) -> pd.DataFrame:
    """Why samples scored zero: count and fraction (of all samples) per reason, summed over seeds.

    One row per (model, algorithm, benchmark, reason) for every reason of a zero
    (wrong, no_answer, parse_failure, timeout, then any other reason seen), zeros included.
    """
    if samples.empty:
        return pd.DataFrame(columns=ZERO_REASON_COLUMNS)
    keys = ["model", "algorithm", "benchmark"]
    ok = pd.to_numeric(samples["correct"], errors="coerce").fillna(0.0) >= 0.5
    totals = samples.groupby(keys, sort=False).size()
    zeros = samples.loc[~ok]
    reasons = zeros["reason"].fillna("unknown").astype(str)
    extra = sorted(set(reasons) - set(ZERO_REASONS))
    counts = reasons.groupby([zeros[k] for k in keys]).value_counts()
    rows = []
    for key, total in totals.items():
        for reason in ZERO_REASONS + extra:
            count = int(counts.get((*key, reason), 0))
            rows.append((*key, reason, count, count / total if total else math.nan))
    out = pd.DataFrame(rows, columns=ZERO_REASON_COLUMNS)
    return _sort(out, keys)
