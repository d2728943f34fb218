"""Loaders: a study's results folder as tidy pandas frames.

Layout read (``R = results/<study>``)::

    R/runs/<model>/<algorithm>/seed<k>/metrics.jsonl        one JSON object per training step
    R/eval/<model>/<algorithm>/seed<k>/<benchmark>.parquet  one row per (problem, sample)
    R/models/<model>/warmup.json                            optional warm-up record

Every function returns a DataFrame with documented columns, also when nothing is there (an empty
frame with those columns), in report order (``report.ordering``). Evaluation:
:func:`load_evaluation` reduces each sample file to per-problem counts (n, c, maj;
``metrics.problem_counts``) and zero-reason counts as it reads it; :func:`per_problem` and
:func:`zero_reasons` do the same from a samples frame. The tables with intervals built from
these are ``report.tables``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..data.rows import SAMPLE_COLUMNS
from ..files import read_jsonl
from ..metrics import problem_counts
from ..reward import REASONS
from .ordering import sort_rows

RUN_KEYS = ["model", "algorithm", "seed"]
TRAINING_KEYS = [*RUN_KEYS, "step"]
SAMPLE_KEYS = [*RUN_KEYS, "benchmark"]
PER_PROBLEM_COLUMNS = [*SAMPLE_KEYS, "problem_id", "n", "c", "maj"]
ZERO_REASONS = [r for r in REASONS if r != "correct"]  # why a sample scored zero
ZERO_REASON_COLUMNS = ["model", "algorithm", "benchmark", "reason", "count", "frac", "samples",
                       "lenient_only"]
LONG_COLUMNS = [*TRAINING_KEYS, "metric", "value"]
WARMUP_COLUMNS = ["model", "step", "loss", "accuracy"]

_SEED_DIR = re.compile(r"^seed(\d+)$")
_TOTAL = "__total__"  # the reason-count row holding a group's number of samples


def _run_files(base: Path, pattern: str):
    """Yield (model, algorithm, seed, path) for files matching ``<model>/<algo>/seed<k>/<pattern>``."""
    if not base.is_dir():
        return
    for path in sorted(base.glob(f"*/*/seed*/{pattern}")):
        m = _SEED_DIR.match(path.parent.name)
        if not m or not path.is_file():
            continue
        yield path.parent.parent.parent.name, path.parent.parent.name, int(m.group(1)), path


# ----------------------------------------------------------------------------- training


def load_training(results_dir) -> pd.DataFrame:
    """One row per (model, algorithm, seed, step) from every ``runs/*/*/seed*/metrics.jsonl``.

    Columns: model, algorithm, seed, step, then every metric logged (A3PO/POPO columns are
    NaN for other algorithms). ``model`` comes from the path; ``algorithm`` and ``seed`` in
    a row are kept and only filled in from the path where missing. A step logged twice in one
    file (a resumed run) keeps its last row.
    """
    frames = []
    for model, algo, seed, path in _run_files(Path(results_dir) / "runs", "metrics.jsonl"):
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
    return sort_rows(out[TRAINING_KEYS + rest], TRAINING_KEYS)


def training_long(frame: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """The named metrics of :func:`load_training` melted to ``LONG_COLUMNS``
    (model, algorithm, seed, step, metric, value).

    Metrics absent from ``frame`` are skipped; ``metric`` keeps the order asked for (an ordered
    categorical, so faceted plots show panels in that order). NaN values are dropped.
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
    return sort_rows(long, ["metric", *keys]).reindex(columns=LONG_COLUMNS)


def _warmup_records(results_dir):
    """(model, record) of every readable ``models/*/warmup.json``."""
    base = Path(results_dir) / "models"
    for path in sorted(base.glob("*/warmup.json")) if base.is_dir() else []:
        try:
            yield path.parent.name, json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue


def load_warmup(results_dir) -> pd.DataFrame:
    """The warm-up history of each locally made model: ``WARMUP_COLUMNS`` (model, step, loss,
    accuracy)."""
    frames = []
    for model, record in _warmup_records(results_dir):
        hist = pd.DataFrame(record.get("history") or [])
        if hist.empty:
            continue
        hist["model"] = model
        frames.append(hist)
    if not frames:
        return pd.DataFrame(columns=WARMUP_COLUMNS)
    out = pd.concat(frames, ignore_index=True).reindex(columns=WARMUP_COLUMNS)
    return out.sort_values(["model", "step"], kind="stable").reset_index(drop=True)


def load_warmup_summary(results_dir) -> pd.DataFrame:
    """One row per model with the scalar fields of ``warmup.json`` (history left out)."""
    rows = []
    for model, record in _warmup_records(results_dir):
        row = {"model": model}
        row.update({k: v for k, v in record.items() if not isinstance(v, (list, dict))})
        rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else ["model"])


# ----------------------------------------------------------------------------- evaluation


def _read_eval_file(path: Path, wanted: Sequence[str] | None, dictionary: Sequence[str] = ()
                    ) -> pd.DataFrame:
    """The asked-for columns of one sample file that it has (``dictionary`` ones as categoricals)."""
    import pyarrow.parquet as pq

    names = pq.ParquetFile(path).schema_arrow.names
    cols = names if wanted is None else [c for c in wanted if c in names]
    if not dictionary:
        return pd.read_parquet(path, columns=cols)
    table = pq.read_table(path, columns=cols, read_dictionary=[c for c in dictionary if c in cols])
    return table.to_pandas()


def load_samples(results_dir, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Every ``eval/*/*/seed*/<benchmark>.parquet`` stacked, with model, algorithm, seed, benchmark.

    ``columns`` restricts the parquet columns read (e.g. leave out ``response`` for speed); a
    column a file lacks is NaN for its rows. For a study at full scale prefer
    :func:`load_evaluation`, which aggregates every file to per-problem values as it reads it.
    """
    wanted = list(columns) if columns is not None else None
    frames = []
    for model, algo, seed, path in _run_files(Path(results_dir) / "eval", "*.parquet"):
        df = _read_eval_file(path, wanted)
        df.insert(0, "benchmark", path.stem)
        df.insert(0, "seed", seed)
        df.insert(0, "algorithm", algo)
        df.insert(0, "model", model)
        frames.append(df)
    cols = SAMPLE_KEYS + (wanted if wanted is not None else SAMPLE_COLUMNS)
    if not frames:
        return pd.DataFrame(columns=cols)
    out = pd.concat(frames, ignore_index=True)
    if wanted is not None:
        out = out.reindex(columns=cols)
    return sort_rows(out, [*SAMPLE_KEYS, "problem_id", "sample"])


def _is_sorted(frame: pd.DataFrame) -> bool:
    """True when ``(problem_id, sample)`` never decreases (a file as written: problem by problem,
    samples in order), so no sort is needed."""
    if len(frame) < 2:
        return True
    pid, sample = frame["problem_id"].to_numpy(), frame["sample"].to_numpy()
    try:
        step = (pid[1:] > pid[:-1]) | ((pid[1:] == pid[:-1]) & (sample[1:] >= sample[:-1]))
    except TypeError:
        return False
    return bool(step.all())


def _in_sample_order(df: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The samples of one evaluation sorted by (problem_id, sample) where needed, and their
    correctness as bools (``correct >= 0.5``; missing or non-numeric: wrong)."""
    ok = pd.to_numeric(df["correct"], errors="coerce").fillna(0.0).to_numpy() >= 0.5
    if "sample" in df.columns and not _is_sorted(df):
        order = np.lexsort((df["sample"].to_numpy(), df["problem_id"].to_numpy()))
        df, ok = df.iloc[order].reset_index(drop=True), ok[order]
    return df, ok


def _lenient_only(frame: pd.DataFrame) -> np.ndarray:
    """The monitor column as bools (False where a file predates it or left it empty)."""
    if "lenient_only" not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    values = frame["lenient_only"].astype(object)
    return values.where(values.notna(), False).astype(bool).to_numpy()


def _summarize(df: pd.DataFrame, key: tuple) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The samples of one (model, algorithm, seed, benchmark) ``key`` -> (its per-problem rows,
    its zero counts per reason plus a ``__total__`` row of all its samples)."""
    df, ok = _in_sample_order(df)
    model, algo, seed, bench = key
    counts = problem_counts(df["problem_id"], ok, df["answer"] if "answer" in df.columns else None)
    problems = pd.DataFrame({"model": model, "algorithm": algo, "seed": seed, "benchmark": bench,
                             **{c: counts[c] for c in counts.columns}})
    reasons = (df["reason"].astype(object) if "reason" in df.columns
               else pd.Series([None] * len(df), dtype=object))[~ok]
    zeros = pd.DataFrame({"reason": reasons.fillna("unknown").astype(str).to_numpy(),
                          "lenient_only": _lenient_only(df)[~ok].astype(int)})
    by_reason = zeros.groupby("reason", sort=False)["lenient_only"].agg(["size", "sum"])
    reasons = pd.DataFrame({"model": model, "algorithm": algo, "benchmark": bench,
                            "reason": [*by_reason.index, _TOTAL],
                            "count": [*by_reason["size"].to_numpy().astype(int), len(df)],
                            "lenient_only": [*by_reason["sum"].to_numpy().astype(int), 0]})
    return problems, reasons


def _zero_reason_frame(counts: pd.DataFrame) -> pd.DataFrame:
    """Reason counts of :func:`_summarize` (any grouping) summed to ``ZERO_REASON_COLUMNS``."""
    keys = ["model", "algorithm", "benchmark"]
    if counts.empty:
        return pd.DataFrame(columns=ZERO_REASON_COLUMNS)
    summed = counts.groupby([*keys, "reason"], sort=False)["count"].sum()
    lenient = counts.groupby([*keys, "reason"], sort=False)["lenient_only"].sum()
    is_total = counts["reason"] == _TOTAL
    extra = sorted(set(counts.loc[~is_total, "reason"]) - set(ZERO_REASONS))
    rows = []
    for key in dict.fromkeys(map(tuple, counts.loc[is_total, keys].to_numpy())):
        total = int(summed.get((*key, _TOTAL), 0))
        for reason in ZERO_REASONS + extra:
            count = int(summed.get((*key, reason), 0))
            rows.append((*key, reason, count, count / total if total else float("nan"), total,
                         int(lenient.get((*key, reason), 0))))
    return sort_rows(pd.DataFrame(rows, columns=ZERO_REASON_COLUMNS), keys)


def _summarize_groups(samples: pd.DataFrame) -> tuple[list, list]:
    """:func:`_summarize` of every (model, algorithm, seed, benchmark) of a samples frame."""
    parts = [_summarize(group, key) for key, group in samples.groupby(SAMPLE_KEYS, sort=False)]
    return [p for p, _ in parts], [r for _, r in parts]


def per_problem(samples: pd.DataFrame) -> pd.DataFrame:
    """Per (model, algorithm, seed, benchmark, problem_id): ``n`` samples, ``c`` correct and
    ``maj``, the majority-vote correctness (``metrics.problem_counts``, samples in ``sample``
    order; NaN without an ``answer`` column). Columns: ``PER_PROBLEM_COLUMNS``.
    """
    if samples.empty:
        return pd.DataFrame(columns=PER_PROBLEM_COLUMNS)
    problems, _ = _summarize_groups(samples)
    out = pd.concat(problems, ignore_index=True)[PER_PROBLEM_COLUMNS]
    return sort_rows(out, [*SAMPLE_KEYS, "problem_id"])


def zero_reasons(samples: pd.DataFrame) -> pd.DataFrame:
    """Why samples scored zero: count and fraction (of all samples) per reason, summed over seeds.

    One row per (model, algorithm, benchmark, reason) for every reason of a zero
    (wrong, no_answer, parse_failure, timeout, then any other reason seen; ``unknown`` where a
    file has none), zeros included; ``samples`` is the number of samples of that (model,
    algorithm, benchmark), all seeds, and ``lenient_only`` how many of the ``count`` zeros
    math-verify's lenient extraction would credit (a reward hack shows up as lenient-only
    ``no_answer``). Columns: ``ZERO_REASON_COLUMNS``.
    """
    if samples.empty:
        return pd.DataFrame(columns=ZERO_REASON_COLUMNS)
    _, counts = _summarize_groups(samples)
    return _zero_reason_frame(pd.concat(counts, ignore_index=True))


class Evaluation(NamedTuple):
    """What :func:`load_evaluation` returns."""

    per_problem: pd.DataFrame  #: ``PER_PROBLEM_COLUMNS``
    zero_reasons: pd.DataFrame  #: ``ZERO_REASON_COLUMNS``


def load_evaluation(results_dir) -> Evaluation:
    """:func:`per_problem` and :func:`zero_reasons` of every sample file, aggregated file by file.

    Reads only ``problem_id, sample, correct, answer, reason, lenient_only`` of each parquet file
    (never the responses; ``answer`` and ``reason`` dictionary-encoded), so a study of many
    policies x benchmarks x thousands of problems x 256 samples never sits in memory as samples.
    Empty frames when there is nothing.
    """
    problems, counts = [], []
    for model, algo, seed, path in _run_files(Path(results_dir) / "eval", "*.parquet"):
        df = _read_eval_file(path, ["problem_id", "sample", "correct", "answer", "reason",
                                    "lenient_only"], dictionary=("answer", "reason"))
        if df.empty:
            continue
        pp, rc = _summarize(df, (model, algo, seed, path.stem))
        problems.append(pp)
        counts.append(rc)
    if not problems:
        return Evaluation(pd.DataFrame(columns=PER_PROBLEM_COLUMNS),
                          pd.DataFrame(columns=ZERO_REASON_COLUMNS))
    pp = pd.concat(problems, ignore_index=True)
    return Evaluation(sort_rows(pp, [*SAMPLE_KEYS, "problem_id"]),
                      _zero_reason_frame(pd.concat(counts, ignore_index=True)))
