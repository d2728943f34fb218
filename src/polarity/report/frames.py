"""Tidy frames behind every report figure: pure loaders of a study's results directory.

Layout read (``R = results/<study>``)::

    R/runs/<model>/<algorithm>/seed<k>/metrics.jsonl        one JSON object per training step
    R/eval/<model>/<algorithm>/seed<k>/<benchmark>.parquet  one row per (problem, sample)
    R/models/<model>/warmup.json                            optional warm-up record

Every function returns a pandas DataFrame with documented columns, also when nothing is
there (an empty frame with those columns), so notebooks and tests share one code path.
Algorithms are ordered ``base`` first, then in registry order, then any unknown names sorted;
benchmarks by name, with the ``"average"`` pseudo-benchmark (unweighted mean over benchmarks) last.

Evaluation: :func:`load_evaluation` reduces every sample file to per-problem counts as it reads
it (``PER_PROBLEM_COLUMNS``: n, c and the majority-vote correctness ``maj``) plus zero-reason
counts; :func:`final_table` (avg@n, pass@n, maj@n), :func:`passk_summary` (pass@k curves over
seeds), :func:`passk_curves` (per seed) and :func:`paired_comparisons` (algorithm - reference)
take that per-problem frame or a samples frame. Intervals are 95% percentile bootstraps
(``N_BOOT`` resamples, fixed ``BOOT_SEED``) over problems and, with several seeds, seeds
(``polarity.metrics``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from .. import metrics as _metrics

N_BOOT = 1000  # bootstrap resamples (over problems, and seeds where there are several)
BOOT_SEED = 0  # fixed so that reports are reproducible
CI_LEVEL = 0.95

RUN_KEYS = ["model", "algorithm", "seed"]
TRAINING_KEYS = [*RUN_KEYS, "step"]
SAMPLE_KEYS = [*RUN_KEYS, "benchmark"]
SAMPLE_COLUMNS = ["problem_id", "sample", "response", "ground_truth", "answer", "correct",
                  "reason", "lenient_only", "response_length", "truncated"]
AVERAGE = "average"  # the pseudo-benchmark of the unweighted mean over benchmarks
PER_PROBLEM_COLUMNS = [*SAMPLE_KEYS, "problem_id", "n", "c", "maj"]
PASSK_COLUMNS = [*SAMPLE_KEYS, "k", "pass_at_k", "ci_low", "ci_high"]
PASSK_SUMMARY_COLUMNS = ["model", "algorithm", "benchmark", "seeds", "problems", "n",
                         "k", "pass_at_k", "ci_low", "ci_high"]
FINAL_COLUMNS = ["model", "algorithm", "benchmark", "seeds", "problems", "n",
                 "avg_at_n", "avg_ci_low", "avg_ci_high", "pass_at_n", "pass_ci_low", "pass_ci_high",
                 "maj_at_n", "maj_ci_low", "maj_ci_high"]
PAIRED_COLUMNS = ["model", "benchmark", "algorithm", "reference", "metric", "n", "problems",
                  "seeds", "reference_seeds", "value", "reference_value", "diff", "ci_low",
                  "ci_high", "p_value", "p_two_sided"]
REASONS = ["correct", "wrong", "no_answer", "parse_failure", "timeout"]
ZERO_REASONS = REASONS[1:]
ZERO_REASON_COLUMNS = ["model", "algorithm", "benchmark", "reason", "count", "frac", "samples",
                       "lenient_only"]
LONG_COLUMNS = [*TRAINING_KEYS, "metric", "value"]
WARMUP_COLUMNS = ["model", "step", "loss", "accuracy"]

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


def _benchmark_key(names: pd.Series) -> pd.Series:
    """Benchmarks sorted by name, the ``average`` pseudo-benchmark last."""
    rank = {name: i for i, name in enumerate(sorted(set(names) - {AVERAGE}, key=str))}
    return names.map(lambda b: rank.get(b, len(rank)))


def _sort(frame: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Sort with ``algorithm`` in report order (``average`` benchmark last); a fresh RangeIndex."""
    if frame.empty:
        return frame.reset_index(drop=True)
    by = [c for c in by if c in frame.columns]

    def key(col: pd.Series) -> pd.Series:
        if col.name == "algorithm":
            return _order_key(col)
        if col.name == "benchmark":
            return _benchmark_key(col)
        return col

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
    """The warm-up history of each locally made model: (model, step, loss, accuracy)."""
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
    for model, algo, seed, path in _run_dirs(Path(results_dir) / "eval", "*.parquet"):
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
    return _sort(out, [*SAMPLE_KEYS, "problem_id", "sample"])


def _correct(samples: pd.DataFrame) -> pd.Series:
    return pd.to_numeric(samples["correct"], errors="coerce").fillna(0.0) >= 0.5


def _is_sorted(frame: pd.DataFrame, by: list[str]) -> bool:
    """True when the leading ``by`` columns are constant and the last two never decrease together
    (a file as written: problem by problem, samples in order), so no sort is needed."""
    if len(frame) < 2:
        return True
    if any(frame[c].nunique() > 1 for c in by[:-2]):
        return False
    pid, sample = frame[by[-2]].to_numpy(), frame[by[-1]].to_numpy()
    try:
        step = (pid[1:] > pid[:-1]) | ((pid[1:] == pid[:-1]) & (sample[1:] >= sample[:-1]))
    except TypeError:
        return False
    return bool(step.all())


def per_problem(samples: pd.DataFrame) -> pd.DataFrame:
    """Per (model, algorithm, seed, benchmark, problem_id): n samples, c correct, maj.

    ``maj`` is the problem's majority-vote correctness (1.0/0.0, :func:`metrics.maj_per_problem`,
    samples taken in ``sample`` order) when ``samples`` has an ``answer`` column, else NaN.
    Columns: ``PER_PROBLEM_COLUMNS``.
    """
    if samples.empty:
        return pd.DataFrame(columns=PER_PROBLEM_COLUMNS)
    keys = [*SAMPLE_KEYS, "problem_id"]
    ok = _correct(samples)
    grouped = ok.groupby([samples[k] for k in keys], sort=False)
    out = pd.DataFrame({"n": grouped.size(), "c": grouped.sum()}).reset_index()
    out["n"] = out["n"].astype(int)
    out["c"] = out["c"].astype(int)
    out["maj"] = np.nan
    if "answer" in samples.columns:
        ordered = samples[[*keys, "answer"] + (["sample"] if "sample" in samples.columns else [])]
        ordered = ordered.assign(_ok=ok.to_numpy())
        if "sample" in ordered.columns and not _is_sorted(ordered, keys + ["sample"]):
            ordered = ordered.sort_values(keys + ["sample"], kind="stable")
        majs = []
        for key, group in ordered.groupby(SAMPLE_KEYS, sort=False):
            maj = _metrics.maj_per_problem(group["problem_id"], group["answer"], group["_ok"])
            majs.append(pd.DataFrame({**dict(zip(SAMPLE_KEYS, key)), "problem_id": maj.index,
                                      "maj": maj.to_numpy()}))
        majs = pd.concat(majs, ignore_index=True)
        out = out.drop(columns="maj").merge(majs, on=keys, how="left", validate="one_to_one")
    return _sort(out[PER_PROBLEM_COLUMNS], keys)


def _lenient_only(frame: pd.DataFrame) -> np.ndarray:
    """The monitor column as bools (False where a file predates it or left it empty)."""
    if "lenient_only" not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    values = frame["lenient_only"].astype(object)
    return values.where(values.notna(), False).astype(bool).to_numpy()


def _reason_counts(samples: pd.DataFrame) -> pd.DataFrame:
    """(model, algorithm, benchmark, reason, count, lenient_only) of the zeros, plus one
    ``__total__`` row each; ``lenient_only`` counts the zeros the lenient policy would credit."""
    keys = ["model", "algorithm", "benchmark"]
    ok = _correct(samples)
    zeros = samples.loc[~ok, keys].copy()
    zeros["reason"] = samples.loc[~ok, "reason"].astype(object).fillna("unknown").astype(str)
    zeros["lenient_only"] = _lenient_only(samples)[~ok.to_numpy()].astype(int)
    counts = zeros.groupby([*keys, "reason"], sort=False).agg(
        count=("lenient_only", "size"), lenient_only=("lenient_only", "sum")).reset_index()
    totals = samples.groupby(keys, sort=False).size().rename("count").reset_index()
    totals["reason"] = "__total__"
    totals["lenient_only"] = 0
    return pd.concat([counts, totals[[*keys, "reason", "count", "lenient_only"]]],
                     ignore_index=True)


def _zero_reason_frame(counts: pd.DataFrame) -> pd.DataFrame:
    keys = ["model", "algorithm", "benchmark"]
    if counts.empty:
        return pd.DataFrame(columns=ZERO_REASON_COLUMNS)
    summed = counts.groupby([*keys, "reason"], sort=False)["count"].sum()
    lenient = counts.groupby([*keys, "reason"], sort=False)["lenient_only"].sum()
    is_total = counts["reason"] == "__total__"
    extra = sorted(set(counts.loc[~is_total, "reason"]) - set(ZERO_REASONS))
    rows = []
    for key in dict.fromkeys(map(tuple, counts.loc[is_total, keys].to_numpy())):
        total = int(summed.get((*key, "__total__"), 0))
        for reason in ZERO_REASONS + extra:
            count = int(summed.get((*key, reason), 0))
            rows.append((*key, reason, count, count / total if total else math.nan, total,
                         int(lenient.get((*key, reason), 0))))
    out = pd.DataFrame(rows, columns=ZERO_REASON_COLUMNS)
    return _sort(out, keys)


def zero_reasons(samples: pd.DataFrame) -> pd.DataFrame:
    """Why samples scored zero: count and fraction (of all samples) per reason, summed over seeds.

    One row per (model, algorithm, benchmark, reason) for every reason of a zero
    (wrong, no_answer, parse_failure, timeout, then any other reason seen), zeros included;
    ``samples`` is the number of samples of that (model, algorithm, benchmark), all seeds, and
    ``lenient_only`` how many of the ``count`` zeros math-verify's lenient extraction would
    credit (the strict/lenient split: a reward hack shows up as lenient-only ``no_answer``).
    Columns: ``ZERO_REASON_COLUMNS``.
    """
    if samples.empty:
        return pd.DataFrame(columns=ZERO_REASON_COLUMNS)
    return _zero_reason_frame(_reason_counts(samples))


class Evaluation(NamedTuple):
    """What :func:`load_evaluation` returns."""

    per_problem: pd.DataFrame  #: ``PER_PROBLEM_COLUMNS``
    zero_reasons: pd.DataFrame  #: ``ZERO_REASON_COLUMNS``


def _summarize_file(df: pd.DataFrame, model: str, algo: str, seed: int, bench: str):
    """One sample file -> (its per-problem rows, its zero-reason counts), with numpy group-bys."""
    ok = pd.to_numeric(df["correct"], errors="coerce").fillna(0.0).to_numpy() >= 0.5
    if "sample" in df.columns and not _is_sorted(df, ["problem_id", "sample"]):
        order = np.lexsort((df["sample"].to_numpy(), df["problem_id"].to_numpy()))
        df, ok = df.iloc[order].reset_index(drop=True), ok[order]
    codes, problems = pd.factorize(df["problem_id"], sort=True)
    n = np.bincount(codes, minlength=len(problems))
    c = np.bincount(codes, weights=ok, minlength=len(problems)).round().astype(np.int64)
    maj = np.full(len(problems), np.nan)
    if "answer" in df.columns:
        by_problem = _metrics.maj_per_problem(codes, df["answer"], ok)
        maj[by_problem.index.to_numpy()] = by_problem.to_numpy()
    pp = pd.DataFrame({"model": model, "algorithm": algo, "seed": seed, "benchmark": bench,
                       "problem_id": np.asarray(problems), "n": n.astype(int), "c": c.astype(int),
                       "maj": maj})
    reasons = (df["reason"].astype(object) if "reason" in df.columns
               else pd.Series([None] * len(df), dtype=object))[~ok]
    zeros = pd.DataFrame({"reason": reasons.fillna("unknown").astype(str).to_numpy(),
                          "lenient_only": _lenient_only(df)[~ok].astype(int)})
    by_reason = zeros.groupby("reason", sort=False)["lenient_only"].agg(["size", "sum"])
    rc = pd.DataFrame({"model": model, "algorithm": algo, "benchmark": bench,
                       "reason": [*by_reason.index, "__total__"],
                       "count": [*by_reason["size"].to_numpy().astype(int), len(df)],
                       "lenient_only": [*by_reason["sum"].to_numpy().astype(int), 0]})
    return pp, rc


def load_evaluation(results_dir) -> Evaluation:
    """Per-problem values and zero reasons of every sample file, aggregated file by file.

    Reads only ``problem_id, sample, correct, answer, reason, lenient_only`` of each parquet file (never the
    responses; ``answer`` and ``reason`` dictionary-encoded) and reduces it at once to one row per
    problem (the frame of :func:`per_problem`) and a handful of reason counts (the frame of
    :func:`zero_reasons`), so a study of many policies x benchmarks x thousands of problems x
    256 samples never sits in memory as samples. Empty frames when there is nothing.
    """
    problems, counts = [], []
    for model, algo, seed, path in _run_dirs(Path(results_dir) / "eval", "*.parquet"):
        df = _read_eval_file(path, ["problem_id", "sample", "correct", "answer", "reason",
                                    "lenient_only"], dictionary=("answer", "reason"))
        if df.empty:
            continue
        pp, rc = _summarize_file(df, model, algo, seed, path.stem)
        problems.append(pp)
        counts.append(rc)
    if not problems:
        return Evaluation(pd.DataFrame(columns=PER_PROBLEM_COLUMNS),
                          pd.DataFrame(columns=ZERO_REASON_COLUMNS))
    pp = pd.concat(problems, ignore_index=True)
    return Evaluation(_sort(pp, [*SAMPLE_KEYS, "problem_id"]),
                      _zero_reason_frame(pd.concat(counts, ignore_index=True)))


def _as_per_problem(frame: pd.DataFrame) -> pd.DataFrame:
    """A per-problem frame as is (it has n and c), a samples frame through :func:`per_problem`."""
    if {"n", "c"} <= set(frame.columns) and "correct" not in frame.columns:
        out = frame if "maj" in frame.columns else frame.assign(maj=np.nan)
        return out
    return per_problem(frame)


# ------------------------------------------------------------ per-problem matrices and intervals
#
# A (model, algorithm, benchmark) "block" holds the per-problem values of all its seeds as
# matrices [problems, seeds]. When every seed evaluated every problem the bootstrap resamples
# problems and seeds (metrics.bootstrap_means); when some (problem, seed) is missing, a problem's
# value is the mean over the seeds that have it and only problems are resampled ([problems, 1]).


class _Block(NamedTuple):
    problems: np.ndarray  # [P] problem ids (sorted)
    seeds: tuple  # the seed columns
    n: np.ndarray  # [P, S] samples (NaN: that seed lacks the problem)
    c: np.ndarray  # [P, S] correct samples
    maj: np.ndarray | None  # [P, S] majority-vote correctness, None without answers

    @property
    def complete(self) -> bool:
        return not np.isnan(self.n).any()

    @property
    def n_min(self) -> int:
        return int(np.nanmin(self.n))

    def rows(self, ids: np.ndarray) -> "_Block":
        idx = np.searchsorted(self.problems, ids)
        return _Block(self.problems[idx], self.seeds, self.n[idx], self.c[idx],
                      None if self.maj is None else self.maj[idx])


def _blocks(pp: pd.DataFrame) -> dict[tuple, _Block]:
    """One _Block per (model, algorithm, benchmark) of a per-problem frame, in report order."""
    out = {}
    pp = _sort(pp, ["model", "algorithm", "benchmark", "problem_id", "seed"])
    for key, group in pp.groupby(["model", "algorithm", "benchmark"], sort=False):
        wide = group.pivot(index="problem_id", columns="seed", values=["n", "c", "maj"])
        seeds = tuple(wide["n"].columns)
        n = wide["n"].to_numpy(dtype=float)
        maj = wide["maj"].to_numpy(dtype=float)
        present = ~np.isnan(n)
        out[key] = _Block(wide.index.to_numpy(), seeds, n, wide["c"].to_numpy(dtype=float),
                          maj if not np.isnan(maj[present]).any() else None)
    return out


def _passk_matrix(block: _Block, ks: Sequence[int]) -> np.ndarray:
    """[P, S, K] per-problem pass@k (NaN where the seed lacks the problem)."""
    out = np.full((*block.n.shape, len(ks)), np.nan)
    present = ~np.isnan(block.n)
    n, c = block.n[present].astype(np.int64), block.c[present].astype(np.int64)
    values = np.empty((len(n), len(ks)))
    for n_value in np.unique(n):
        rows = n == n_value
        for j, k in enumerate(ks):
            values[rows, j] = _metrics.pass_at_k_array(int(n_value), c[rows], int(k))
    out[present] = values
    return out


def _collapse(values: np.ndarray) -> np.ndarray:
    """[P, S, T] -> itself when complete, else the per-problem mean over present seeds [P, 1, T]."""
    if not np.isnan(values).any():
        return values
    return np.nanmean(values, axis=1, keepdims=True)


def _final_values(block: _Block) -> np.ndarray:
    """[P, S, 3]: avg (c/n), pass@n ([c > 0]) and maj (NaN without answers) per problem and seed."""
    avg = block.c / block.n
    passed = np.where(np.isnan(block.n), np.nan, (block.c > 0).astype(float))
    maj = block.maj if block.maj is not None else np.zeros_like(avg)
    maj = np.where(np.isnan(block.n), np.nan, maj)
    return np.stack([avg, passed, maj], axis=-1)


def _align_seeds(strata: list[np.ndarray], seeds: list[tuple]) -> list[np.ndarray]:
    """Strata [P_j, S, T] whose seed columns are the same runs, for a joint seed resample.

    Each stratum is collapsed if incomplete; when the strata then differ in their seeds (other
    runs, or a collapsed one), every stratum's seeds are averaged away ([P_j, 1, T]).
    """
    collapsed = [_collapse(x) for x in strata]
    same = len(set(seeds)) == 1 and all(c.shape == x.shape for c, x in zip(collapsed, strata))
    if same or all(x.shape[1] == 1 for x in collapsed):
        return collapsed
    return [x.mean(axis=1, keepdims=True) for x in collapsed]


def _interval(strata: list[np.ndarray], seeds: list[tuple]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(value, ci_low, ci_high) over the statistic axis: mean of stratum means, bootstrap CI."""
    strata = _align_seeds(strata, seeds)
    value = np.mean([x.mean(axis=(0, 1)) for x in strata], axis=0)
    reps = _metrics.bootstrap_means(strata, n_boot=N_BOOT, seed=BOOT_SEED)
    low, high = _metrics.percentile_interval(reps, CI_LEVEL)
    return value, low, high


def _average_strata(blocks: dict[tuple, _Block], model, algo) -> list[tuple]:
    """The (benchmark, block) pairs of one (model, algorithm) entering its average row."""
    return [(key[2], b) for key, b in blocks.items() if key[:2] == (model, algo)]


def passk_curves(samples: pd.DataFrame) -> pd.DataFrame:
    """pass@k for k in ``k_values(n)`` per (model, algorithm, seed, benchmark), with 95% CIs.

    pass@k is the unbiased estimator averaged over problems; the CI bootstraps problems.
    ``n`` is the smallest number of samples of any problem of that run and benchmark.
    Accepts samples or a per-problem frame. Columns: ``PASSK_COLUMNS``. See
    :func:`passk_summary` for curves over seeds and the average over benchmarks.
    """
    pp = _as_per_problem(samples)
    rows = []
    for key, group in pp.groupby(SAMPLE_KEYS, sort=False):
        n = group["n"].to_numpy()
        c = group["c"].to_numpy()
        ks = _metrics.k_values(int(n.min()))
        block = _Block(group["problem_id"].to_numpy(), (key[2],), n[:, None].astype(float),
                       c[:, None].astype(float), None)
        value, low, high = _interval([_passk_matrix(block, ks)], [block.seeds])
        rows += [(*key, int(k), float(v), float(lo), float(hi))
                 for k, v, lo, hi in zip(ks, value, low, high)]
    out = pd.DataFrame(rows, columns=PASSK_COLUMNS)
    return _sort(out, [*SAMPLE_KEYS, "k"])


def _evaluations(blocks: dict, average: bool):
    """``(model, algorithm, benchmark, blocks)`` per benchmark, then (``average``) one
    ``AVERAGE`` pseudo-benchmark per (model, algorithm) evaluated on at least two."""
    for (model, algo, bench), block in blocks.items():
        yield model, algo, bench, [block]
    if average:
        for model, algo in dict.fromkeys(k[:2] for k in blocks):
            parts = [b for _, b in _average_strata(blocks, model, algo)]
            if len(parts) >= 2:
                yield model, algo, AVERAGE, parts


def passk_summary(samples: pd.DataFrame, average: bool = True) -> pd.DataFrame:
    """pass@k curves per (model, algorithm, benchmark) over all seeds, plus the benchmark average.

    For k in ``k_values(n)`` (n: fewest samples of any problem), pass@k is the per-problem
    unbiased estimate averaged over problems and seeds; the 95% CI bootstraps problems and
    seeds (all k under the same resamples, so a band is one curve's uncertainty). With
    ``average`` and at least two benchmarks, a pseudo-benchmark ``"average"`` row per
    (model, algorithm, k) holds the mean of the benchmark values, its CI from the stratified
    bootstrap of :func:`final_table` (k up to the smallest n of its benchmarks).
    Columns: ``PASSK_SUMMARY_COLUMNS`` (``problems`` summed over benchmarks in an average row).
    """
    pp = _as_per_problem(samples)
    if pp.empty:
        return pd.DataFrame(columns=PASSK_SUMMARY_COLUMNS)
    blocks = _blocks(pp)
    rows = []

    def emit(model, algo, bench, parts: list[_Block]):
        n_min = min(b.n_min for b in parts)
        ks = _metrics.k_values(n_min)
        value, low, high = _interval([_passk_matrix(b, ks) for b in parts], [b.seeds for b in parts])
        seeds = len(set().union(*(b.seeds for b in parts)))
        problems = sum(len(b.problems) for b in parts)
        rows.extend((model, algo, bench, seeds, problems, n_min, int(k), float(v), float(lo),
                     float(hi)) for k, v, lo, hi in zip(ks, value, low, high))

    for model, algo, bench, parts in _evaluations(blocks, average):
        emit(model, algo, bench, parts)
    out = pd.DataFrame(rows, columns=PASSK_SUMMARY_COLUMNS)
    return _sort(out, ["model", "algorithm", "benchmark", "k"])


def final_table(samples: pd.DataFrame, average: bool = True) -> pd.DataFrame:
    """avg@n, pass@n and maj@n per (model, algorithm, benchmark) over all seeds, with 95% CIs.

    Per problem and seed: avg@n = c/n, pass@n = [c > 0], maj@n = the majority-vote answer's
    correctness (NaN columns when the samples carry no ``answer``). A row's value is the mean
    over problems and seeds (a problem is the same in every seed). The CI is a percentile
    bootstrap that resamples problems and, when several seeds evaluated the same problems,
    seeds as well (``metrics.bootstrap_means`` of the [problems, seeds] matrices); if some seed
    lacks a problem, each problem's seed mean is bootstrapped over problems only.

    ``average``: with at least two benchmarks, one pseudo-benchmark row ``"average"`` per
    (model, algorithm) over the benchmarks it was evaluated on: the value is the unweighted mean
    of the benchmark values (each benchmark counts once, whatever its size); the CI is a
    stratified bootstrap: each replicate resamples problems within every benchmark (keeping its
    size) and seeds once for all benchmarks (a seed is one training run), then averages the
    benchmark means (``metrics.stratified_bootstrap_ci``; seeds averaged away first when the
    benchmarks do not share the same complete seeds). Its ``problems`` is the total and ``n``
    the smallest of its benchmarks.

    Accepts samples or a per-problem frame. Columns: ``FINAL_COLUMNS`` = model, algorithm,
    benchmark, seeds, problems, n (fewest samples of a problem), avg_at_n, avg_ci_low,
    avg_ci_high, pass_at_n, pass_ci_low, pass_ci_high, maj_at_n, maj_ci_low, maj_ci_high.
    """
    pp = _as_per_problem(samples)
    if pp.empty:
        return pd.DataFrame(columns=FINAL_COLUMNS)
    blocks = _blocks(pp)
    rows = []

    def emit(model, algo, bench, parts: list[_Block]):
        value, low, high = _interval([_final_values(b) for b in parts], [b.seeds for b in parts])
        if any(b.maj is None for b in parts):
            value[2] = low[2] = high[2] = np.nan
        stats = [float(x) for i in range(3) for x in (value[i], low[i], high[i])]
        seeds = len(set().union(*(b.seeds for b in parts)))
        rows.append((model, algo, bench, seeds, sum(len(b.problems) for b in parts),
                     min(b.n_min for b in parts), *stats))

    for model, algo, bench, parts in _evaluations(blocks, average):
        emit(model, algo, bench, parts)
    out = pd.DataFrame(rows, columns=FINAL_COLUMNS)
    return _sort(out, ["model", "algorithm", "benchmark"])


def default_reference(algorithms: Iterable[str]) -> str | None:
    """``base`` when present, else the first trained algorithm in report order (None if none)."""
    order = algorithm_order(algorithms)
    return order[0] if order else None


def paired_comparisons(samples: pd.DataFrame, reference: str | None = None,
                       average: bool = True) -> pd.DataFrame:
    """Every algorithm against a reference algorithm on the problems both evaluated.

    Per model, benchmark and algorithm (other than the reference): the difference
    algorithm - reference of avg@n, pass@n and (when both have answers) maj@n, restricted to the
    problems both evaluated, with ``metrics.stratified_paired_difference``: problems resampled
    jointly for the two (the pairing), seeds independently per side; ``ci_low``/``ci_high`` the
    95% percentile interval, ``p_value`` the fraction of bootstrap differences <= 0 (one-sided,
    small when the algorithm beats the reference) and ``p_two_sided``. pass@n is the unbiased
    pass@k at k = ``n``, the fewest samples of a problem in either policy (so a policy with more
    samples is not favoured). With ``average`` and at least two benchmarks both evaluated, an
    ``"average"`` row: the unweighted mean over those benchmarks, problems resampled within each.

    ``reference``: an algorithm name; default per model ``base`` when present, else the first
    trained algorithm in report order (:func:`default_reference`). A model without the reference
    has no rows. Accepts samples or a per-problem frame. Columns: ``PAIRED_COLUMNS``.
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
    return _sort(out, ["model", "benchmark", "algorithm"]) if not out.empty else out


def _paired_rows(model, algo, ref, bench, parts: list[tuple[_Block, _Block]]) -> list[tuple]:
    n_min = min(min(a.n_min, r.n_min) for a, r in parts)
    with_maj = all(a.maj is not None and r.maj is not None for a, r in parts)

    def values(block: _Block) -> np.ndarray:
        avg = block.c / block.n
        stats = [avg[..., None], _passk_matrix(block, [n_min])]
        if with_maj:
            stats.append(np.where(np.isnan(block.n), np.nan, block.maj)[..., None])
        return np.concatenate(stats, axis=-1)

    a_side = _align_seeds([values(a) for a, _ in parts], [a.seeds for a, _ in parts])
    r_side = _align_seeds([values(r) for _, r in parts], [r.seeds for _, r in parts])
    res = _metrics.stratified_paired_difference(a_side, r_side, n_boot=N_BOOT, seed=BOOT_SEED,
                                                level=CI_LEVEL)
    metric_names = ["avg@n", "pass@n", "maj@n"][: a_side[0].shape[2]]
    problems = sum(len(a.problems) for a, _ in parts)
    seeds = len(set().union(*(a.seeds for a, _ in parts)))
    ref_seeds = len(set().union(*(r.seeds for _, r in parts)))
    return [(model, bench, algo, ref, name, n_min, problems, seeds, ref_seeds,
             float(res.mean_a[i]), float(res.mean_b[i]), float(res.diff[i]), float(res.ci_low[i]),
             float(res.ci_high[i]), float(res.p_value[i]), float(res.p_two_sided[i]))
            for i, name in enumerate(metric_names)]
