"""The report stage: tidy frames, hand-checked pass@k and final table, notebooks rendered to HTML."""

from __future__ import annotations

import json
from math import comb
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from polarity import metrics
from polarity.algorithms import ALGORITHMS
from polarity.metrics import k_values
from polarity.report import frames
from polarity.report.figures import FIGURES
from polarity.report.render import (
    NotebookExecutionError,
    count_figures,
    notebook_errors,
    render_notebook,
)

from .conftest import REPO
from .report_fixtures import make_fake_results

NOTEBOOKS = REPO / "notebooks"
ALGOS = ("grpo", "psr", "nsr", "a3po", "popo")
SEEDS = (0, 1)
STEPS, N, PROBLEMS = 5, 8, 12
BENCHMARKS = ("synthetic-arith-test", "math500")


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("results") / "demo"
    return make_fake_results(root, algorithms=ALGOS, seeds=SEEDS, steps=STEPS, n=N,
                             problems=PROBLEMS, benchmarks=BENCHMARKS)


@pytest.fixture(scope="module")
def samples(results) -> pd.DataFrame:
    return frames.load_samples(results)


def _samples(counts: dict[int, list[int]], n: int, *, algorithm="grpo", benchmark="b",
             model="m", problem_ids=None) -> pd.DataFrame:
    """A samples frame by hand: counts[seed][problem] correct answers out of n (the first c)."""
    rows = []
    for seed, cs in counts.items():
        for i, c in enumerate(cs):
            pid = i if problem_ids is None else problem_ids[i]
            for j in range(n):
                ok = j < c
                rows.append({"model": model, "algorithm": algorithm, "seed": seed, "benchmark": benchmark,
                             "problem_id": pid, "sample": j, "correct": float(ok),
                             "reason": "correct" if ok else ("wrong" if j % 2 else "no_answer")})
    return pd.DataFrame(rows)


def _stack(*parts: pd.DataFrame) -> pd.DataFrame:
    return pd.concat(parts, ignore_index=True)


# ----------------------------------------------------------------------------- training frames


def test_load_training_one_row_per_step(results):
    df = frames.load_training(results)
    assert list(df.columns[:4]) == ["model", "algorithm", "seed", "step"]
    for col in ["accuracy", "reward_mean", "entropy", "response_length_mean", "n_positive",
                "n_negative", "frac_groups_dropped", "a3po/s_pos", "popo/sim_loss"]:
        assert col in df.columns
    assert len(df) == len(ALGOS) * len(SEEDS) * STEPS
    assert not df.duplicated(["model", "algorithm", "seed", "step"]).any()
    counts = df.groupby(["model", "algorithm", "seed"]).size()
    assert (counts == STEPS).all() and len(counts) == len(ALGOS) * len(SEEDS)
    assert set(df["model"]) == {"tiny"}
    # registry order, and A3PO/POPO columns only filled for their runs
    assert list(dict.fromkeys(df["algorithm"])) == [a for a in ALGORITHMS if a in ALGOS]
    assert df.loc[df["algorithm"] != "a3po", "a3po/s_pos"].isna().all()
    assert df.loc[df["algorithm"] == "a3po", "a3po/s_pos"].notna().all()
    assert df["grad_norm"].isna().sum() == len(ALGOS) * len(SEEDS)  # JSON NaN at step 0


def test_load_training_fills_from_path_and_survives_resume(tmp_path):
    run = tmp_path / "runs" / "m" / "nsr" / "seed3"
    run.mkdir(parents=True)
    lines = [json.dumps({"step": 0, "accuracy": 0.1}), json.dumps({"step": 1, "accuracy": 0.2}),
             json.dumps({"step": 1, "accuracy": 0.25}),  # logged again by a resumed run
             '{"step": 2, "accu']  # cut short by a kill
    (run / "metrics.jsonl").write_text("\n".join(lines))
    variant = tmp_path / "runs" / "m" / "w_reinforce_l05" / "seed1"
    variant.mkdir(parents=True)
    (variant / "metrics.jsonl").write_text(
        json.dumps({"step": 0, "algorithm": "w_reinforce", "seed": 7, "accuracy": float("nan")}) + "\n")
    df = frames.load_training(tmp_path)
    assert df[["model", "algorithm", "seed", "step"]].values.tolist() == [
        ["m", "nsr", 3, 0], ["m", "nsr", 3, 1], ["m", "w_reinforce", 7, 0]]
    assert df["accuracy"].tolist()[:2] == [0.1, 0.25] and np.isnan(df["accuracy"].iloc[2])


def test_empty_results_give_empty_frames(tmp_path):
    assert frames.load_training(tmp_path).empty
    samples = frames.load_samples(tmp_path)
    assert samples.empty and {"model", "algorithm", "seed", "benchmark", "correct"} <= set(samples.columns)
    for fn, cols in [(frames.per_problem, frames.PER_PROBLEM_COLUMNS),
                     (frames.passk_curves, frames.PASSK_COLUMNS),
                     (frames.passk_summary, frames.PASSK_SUMMARY_COLUMNS),
                     (frames.final_table, frames.FINAL_COLUMNS),
                     (frames.paired_comparisons, frames.PAIRED_COLUMNS),
                     (frames.zero_reasons, frames.ZERO_REASON_COLUMNS)]:
        out = fn(samples)
        assert out.empty and list(out.columns) == cols
    evaluation = frames.load_evaluation(tmp_path)
    assert evaluation.per_problem.empty and list(evaluation.per_problem.columns) == frames.PER_PROBLEM_COLUMNS
    assert evaluation.zero_reasons.empty
    assert list(evaluation.zero_reasons.columns) == frames.ZERO_REASON_COLUMNS
    for fn, cols in [(frames.passk_summary, frames.PASSK_SUMMARY_COLUMNS),
                     (frames.final_table, frames.FINAL_COLUMNS),
                     (frames.paired_comparisons, frames.PAIRED_COLUMNS)]:
        out = fn(evaluation.per_problem)
        assert out.empty and list(out.columns) == cols
    assert frames.load_warmup(tmp_path).empty
    assert frames.training_long(frames.load_training(tmp_path), ["accuracy"]).empty


def test_training_long_keeps_metric_order(results):
    df = frames.load_training(results)
    long = frames.training_long(df, ["entropy", "missing", "accuracy"])
    assert list(long.columns) == frames.LONG_COLUMNS
    assert list(long["metric"].cat.categories) == ["entropy", "accuracy"]
    assert len(long) == 2 * len(df)
    a3po = frames.training_long(df, ["a3po/s_pos"])  # NaN rows of other algorithms dropped
    assert set(a3po["algorithm"]) == {"a3po"} and len(a3po) == len(SEEDS) * STEPS


def test_warmup_history(results):
    warm = frames.load_warmup(results)
    assert list(warm.columns) == frames.WARMUP_COLUMNS and len(warm) == 6
    summary = frames.load_warmup_summary(results)
    assert summary.loc[0, "validation_accuracy"] == pytest.approx(0.42)


def test_algorithm_order_base_first():
    assert frames.algorithm_order(["popo", "zzz", "grpo", "base"]) == ["base", "grpo", "popo", "zzz"]


# ----------------------------------------------------------------------------- evaluation frames


def test_load_samples_and_per_problem(samples):
    assert list(samples.columns[:4]) == ["model", "algorithm", "seed", "benchmark"]
    assert set(frames.SAMPLE_COLUMNS) <= set(samples.columns)
    runs = 1 + len(ALGOS) * len(SEEDS)  # base is evaluated once, as seed0
    assert len(samples) == runs * len(BENCHMARKS) * PROBLEMS * N
    assert samples["algorithm"].iloc[0] == "base"
    assert set(samples.loc[samples["algorithm"] == "base", "seed"]) == {0}
    pp = frames.per_problem(samples)
    assert list(pp.columns) == frames.PER_PROBLEM_COLUMNS
    assert len(pp) == runs * len(BENCHMARKS) * PROBLEMS
    assert (pp["n"] == N).all()
    assert pp["c"].sum() == int(samples["correct"].sum())


def test_passk_curves_by_hand():
    n, cs = 4, [0, 1, 2, 4]
    curves = frames.passk_curves(_samples({0: cs}, n))
    assert list(curves.columns) == frames.PASSK_COLUMNS
    assert curves["k"].tolist() == [int(k) for k in k_values(n)]
    for k, value in zip(curves["k"], curves["pass_at_k"]):
        by_hand = np.mean([1 - comb(n - c, k) / comb(n, k) for c in cs])
        assert value == pytest.approx(by_hand)
    expected = {1: (0 + 0.25 + 0.5 + 1) / 4, 2: (0 + 0.5 + 5 / 6 + 1) / 4, 4: 0.75}
    for k, value in expected.items():
        if k in set(curves["k"]):
            assert curves.loc[curves["k"] == k, "pass_at_k"].item() == pytest.approx(value)
    assert (curves["ci_low"] <= curves["pass_at_k"] + 1e-12).all()
    assert (curves["pass_at_k"] <= curves["ci_high"] + 1e-12).all()
    # fixed bootstrap seed: the same frame twice gives the same CIs
    pd.testing.assert_frame_equal(curves, frames.passk_curves(_samples({0: cs}, n)))


def test_passk_curves_on_fake_results(samples):
    curves = frames.passk_curves(samples)
    runs = 1 + len(ALGOS) * len(SEEDS)
    assert len(curves) == runs * len(BENCHMARKS) * len(list(k_values(N)))
    assert curves["pass_at_k"].between(0, 1).all()
    # pass@k never falls as k grows
    assert (curves.groupby(frames.SAMPLE_KEYS)["pass_at_k"].diff().dropna() >= -1e-12).all()


def test_final_table_by_hand():
    n = 4
    table = frames.final_table(_samples({0: [0, 1, 2, 4], 1: [1, 1, 0, 4]}, n))
    assert list(table.columns) == frames.FINAL_COLUMNS
    row = table.iloc[0]
    assert (row["seeds"], row["problems"], row["n"]) == (2, 4, 4)
    # per problem, seed-averaged: avg [.125, .25, .25, 1], pass [.5, 1, .5, 1]
    assert row["avg_at_n"] == pytest.approx((0.125 + 0.25 + 0.25 + 1) / 4)
    assert row["pass_at_n"] == pytest.approx(0.75)
    assert row["avg_ci_low"] <= row["avg_at_n"] <= row["avg_ci_high"]
    assert row["pass_ci_low"] <= row["pass_at_n"] <= row["pass_ci_high"]
    assert 0.125 <= row["avg_ci_low"] and row["avg_ci_high"] <= 1


def test_final_table_on_fake_results(samples):
    table = frames.final_table(samples)
    assert list(table.columns) == frames.FINAL_COLUMNS
    # one row per benchmark and one "average" row per (model, algorithm), the average last
    assert len(table) == (1 + len(ALGOS)) * (len(BENCHMARKS) + 1)
    assert table["algorithm"].iloc[0] == "base"
    assert table.groupby("algorithm", sort=False)["benchmark"].apply(list).map(
        lambda b: b[-1] == frames.AVERAGE).all()
    grpo = table[(table["algorithm"] == "grpo") & (table["benchmark"] == "math500")].iloc[0]
    sub = samples[(samples["algorithm"] == "grpo") & (samples["benchmark"] == "math500")]
    assert grpo["avg_at_n"] == pytest.approx(sub["correct"].mean())
    per_seed_pass = sub.groupby(["seed", "problem_id"])["correct"].max().groupby("seed").mean()
    assert grpo["pass_at_n"] == pytest.approx(per_seed_pass.mean())
    # maj@n: the reference implementation per seed, averaged over the seeds
    per_seed_maj = [metrics.maj_at_n([list(g["answer"]) for _, g in seed_rows.groupby("problem_id")],
                                     [list(g["correct"] > 0.5) for _, g in seed_rows.groupby("problem_id")])
                    for _, seed_rows in sub.sort_values(["problem_id", "sample"]).groupby("seed")]
    assert grpo["maj_at_n"] == pytest.approx(np.mean(per_seed_maj))
    assert grpo["seeds"] == len(SEEDS) and grpo["n"] == N and grpo["problems"] == PROBLEMS
    for prefix, col in (("avg", "avg_at_n"), ("pass", "pass_at_n"), ("maj", "maj_at_n")):
        assert (table[f"{prefix}_ci_low"] <= table[col] + 1e-12).all()
        assert (table[col] <= table[f"{prefix}_ci_high"] + 1e-12).all()
    # the average row is the unweighted mean of the benchmark rows
    for algo, rows in table.groupby("algorithm"):
        avg_row = rows[rows["benchmark"] == frames.AVERAGE].iloc[0]
        benches = rows[rows["benchmark"] != frames.AVERAGE]
        for col in ("avg_at_n", "pass_at_n", "maj_at_n"):
            assert avg_row[col] == pytest.approx(benches[col].mean())
        assert avg_row["problems"] == PROBLEMS * len(BENCHMARKS)


def test_final_table_multi_seed_interval_resamples_seeds():
    # two seeds that disagree a lot: the interval must reflect the seed variance, i.e. be the
    # 2-D bootstrap of the [problems, seeds] matrix, wider than the seed-mean's 1-D bootstrap
    n = 4
    low, high = [0, 1, 0, 1, 0, 1, 0, 1], [4, 3, 4, 3, 4, 3, 4, 3]
    table = frames.final_table(_samples({0: low, 1: high}, n))
    row = table.iloc[0]
    assert list(table["benchmark"]) == ["b"]  # one benchmark: no average row
    matrix = np.array([low, high], dtype=float).T / n  # [problems, seeds]
    lo2, hi2 = metrics.bootstrap_ci(matrix, n_boot=frames.N_BOOT, seed=frames.BOOT_SEED,
                                    level=frames.CI_LEVEL)
    assert (row["avg_ci_low"], row["avg_ci_high"]) == (pytest.approx(lo2, abs=1e-12),
                                                        pytest.approx(hi2, abs=1e-12))
    lo1, hi1 = metrics.bootstrap_ci(matrix.mean(axis=1), n_boot=frames.N_BOOT, seed=frames.BOOT_SEED)
    assert hi2 - lo2 > 3 * (hi1 - lo1)
    assert row["avg_at_n"] == pytest.approx(matrix.mean())


def test_final_table_seed_missing_a_problem_averages_what_is_there():
    n = 2
    frame = _stack(_samples({0: [2, 0, 1]}, n), _samples({1: [0, 2]}, n))  # seed 1 lacks problem 2
    row = frames.final_table(frame).iloc[0]
    per_problem_mean = np.array([(1 + 0) / 2, (0 + 1) / 2, 0.5])
    assert row["avg_at_n"] == pytest.approx(per_problem_mean.mean())
    assert row["pass_at_n"] == pytest.approx(np.mean([0.5, 0.5, 1.0]))
    lo, hi = metrics.bootstrap_ci(per_problem_mean, n_boot=frames.N_BOOT, seed=frames.BOOT_SEED)
    assert (row["avg_ci_low"], row["avg_ci_high"]) == (pytest.approx(lo), pytest.approx(hi))
    assert (row["seeds"], row["problems"]) == (2, 3)


def test_final_table_average_is_a_stratified_bootstrap():
    n = 4
    big = [0, 1, 2, 3, 4, 4, 0, 2, 1, 3]  # benchmark "a": 10 problems
    small = [4, 4, 0]  # benchmark "z": 3 problems
    frame = _stack(_samples({0: big, 1: big[::-1]}, n, benchmark="a"),
                   _samples({0: small, 1: [4, 0, 4]}, n, benchmark="z"))
    table = frames.final_table(frame)
    assert list(table["benchmark"]) == ["a", "z", frames.AVERAGE]
    avg = table.iloc[2]
    ma = np.array([big, big[::-1]], dtype=float).T / n
    mz = np.array([small, [4, 0, 4]], dtype=float).T / n
    # unweighted mean of the two benchmarks (not the pooled mean over 13 problems)
    assert avg["avg_at_n"] == pytest.approx((ma.mean() + mz.mean()) / 2)
    assert avg["avg_at_n"] != pytest.approx(np.concatenate([ma, mz]).mean())
    lo, hi = metrics.stratified_bootstrap_ci([ma, mz], n_boot=frames.N_BOOT, seed=frames.BOOT_SEED,
                                             level=frames.CI_LEVEL)
    assert (avg["avg_ci_low"], avg["avg_ci_high"]) == (pytest.approx(lo, abs=1e-12),
                                                        pytest.approx(hi, abs=1e-12))
    assert (avg["problems"], avg["seeds"], avg["n"]) == (13, 2, 4)
    assert np.isnan(avg["maj_at_n"])  # no answers in these samples
    assert not frames.final_table(frame, average=False)["benchmark"].eq(frames.AVERAGE).any()


def test_per_problem_majority_by_hand():
    rows = []
    # problem 0: answers 3, 4, 4, None -> "4" (sample 1, correct); problem 1: 7, 8 tie -> "7"
    # (sample 0, wrong); rows given out of sample order must not change the vote
    for pid, sample, answer, ok in [(0, 2, "4", 1), (0, 0, "3", 0), (0, 1, "4", 1), (0, 3, None, 0),
                                    (1, 1, "8", 1), (1, 0, "7", 0)]:
        rows.append({"model": "m", "algorithm": "grpo", "seed": 0, "benchmark": "b",
                     "problem_id": pid, "sample": sample, "answer": answer, "correct": float(ok),
                     "reason": "correct" if ok else "wrong"})
    pp = frames.per_problem(pd.DataFrame(rows))
    assert list(pp.columns) == frames.PER_PROBLEM_COLUMNS
    assert pp[["problem_id", "n", "c", "maj"]].values.tolist() == [[0, 4, 2, 1.0], [1, 2, 1, 0.0]]
    row = frames.final_table(pd.DataFrame(rows)).iloc[0]
    assert row["maj_at_n"] == pytest.approx(0.5)
    assert row["maj_ci_low"] == 0.0 and row["maj_ci_high"] == 1.0


def test_load_evaluation_matches_the_samples_path(results, samples):
    evaluation = frames.load_evaluation(results)
    pd.testing.assert_frame_equal(evaluation.per_problem, frames.per_problem(samples))
    pd.testing.assert_frame_equal(evaluation.zero_reasons, frames.zero_reasons(samples))
    # every frame accepts the per-problem frame in place of the samples
    pd.testing.assert_frame_equal(frames.final_table(evaluation.per_problem), frames.final_table(samples))
    pd.testing.assert_frame_equal(frames.passk_curves(evaluation.per_problem), frames.passk_curves(samples))


def test_load_evaluation_sorts_samples_and_handles_files_without_answers(tmp_path):
    root = make_fake_results(tmp_path / "demo", algorithms=("grpo",), seeds=(0,), n=6, problems=5,
                             benchmarks=("b",), warmup=False)
    path = root / "eval" / "tiny" / "grpo" / "seed0" / "b.parquet"
    original = pd.read_parquet(path)
    original.sample(frac=1.0, random_state=1).to_parquet(path, index=False)  # rows shuffled
    base_path = root / "eval" / "tiny" / "base" / "seed0" / "b.parquet"
    pd.read_parquet(base_path).drop(columns=["answer", "reason"]).to_parquet(base_path, index=False)
    pp = frames.load_evaluation(root).per_problem
    grpo = pp[pp["algorithm"] == "grpo"].reset_index(drop=True)
    expected = frames.per_problem(original.assign(model="tiny", algorithm="grpo", seed=0, benchmark="b"))
    pd.testing.assert_frame_equal(grpo, expected)
    assert pp.loc[pp["algorithm"] == "base", "maj"].isna().all()
    table = frames.final_table(pp)
    assert table.set_index("algorithm")["maj_at_n"].isna().to_dict() == {"base": True, "grpo": False}
    reasons = frames.load_evaluation(root).zero_reasons
    base_reasons = reasons[reasons["algorithm"] == "base"].set_index("reason")["count"]
    assert base_reasons.get("unknown", 0) == 30 - pp.loc[pp["algorithm"] == "base", "c"].sum()


def test_passk_summary_by_hand_and_consistent(samples):
    n = 4
    frame = _stack(_samples({0: [0, 1, 2, 4], 1: [1, 1, 0, 4]}, n, benchmark="a"),
                   _samples({0: [4, 0], 1: [2, 2]}, n, benchmark="z"))
    summary = frames.passk_summary(frame)
    assert list(summary.columns) == frames.PASSK_SUMMARY_COLUMNS
    a = summary[summary["benchmark"] == "a"].set_index("k")
    for k in (1, 2, 4):
        by_hand = np.mean([1 - comb(n - c, k) / comb(n, k) for c in [0, 1, 2, 4, 1, 1, 0, 4]])
        assert a.loc[k, "pass_at_k"] == pytest.approx(by_hand)
    avg = summary[summary["benchmark"] == frames.AVERAGE].set_index("k")
    z = summary[summary["benchmark"] == "z"].set_index("k")
    assert avg["pass_at_k"].to_numpy() == pytest.approx((a["pass_at_k"] + z["pass_at_k"]).to_numpy() / 2)
    assert (avg["problems"] == 6).all() and (avg["seeds"] == 2).all()
    # on the fake study: pass@1 = avg@n, pass@n = pass@n of the final table, bands contain values
    summary = frames.passk_summary(samples)
    table = frames.final_table(samples).set_index(["algorithm", "benchmark"])
    for (algo, bench), rows in summary.groupby(["algorithm", "benchmark"]):
        rows = rows.set_index("k")
        assert list(rows.index) == k_values(N)
        assert rows.loc[1, "pass_at_k"] == pytest.approx(table.loc[(algo, bench), "avg_at_n"])
        assert rows.loc[N, "pass_at_k"] == pytest.approx(table.loc[(algo, bench), "pass_at_n"])
        assert (rows["pass_at_k"].diff().dropna() >= -1e-12).all()
    assert (summary["ci_low"] <= summary["pass_at_k"] + 1e-12).all()
    assert (summary["pass_at_k"] <= summary["ci_high"] + 1e-12).all()
    assert set(summary["benchmark"]) == {*BENCHMARKS, frames.AVERAGE}


def test_paired_comparisons_by_hand():
    n = 4
    base = _stack(_samples({0: [1, 0, 2, 4, 3]}, n, algorithm="base", benchmark="a"),  # 5 problems
                  _samples({0: [0, 4]}, n, algorithm="base", benchmark="z"))
    grpo = _stack(_samples({0: [2, 0, 4, 4], 1: [3, 1, 4, 2]}, n, algorithm="grpo", benchmark="a"),
                  _samples({0: [4, 4], 1: [2, 4]}, n, algorithm="grpo", benchmark="z"))
    paired = frames.paired_comparisons(_stack(grpo, base))
    assert list(paired.columns) == frames.PAIRED_COLUMNS
    assert set(paired["reference"]) == {"base"} and set(paired["algorithm"]) == {"grpo"}
    assert list(dict.fromkeys(paired["benchmark"])) == ["a", "z", frames.AVERAGE]
    assert list(paired["metric"].unique()) == ["avg@n", "pass@n"]  # no answers: no maj@n
    got = paired.set_index(["benchmark", "metric"])
    # benchmark a: only the 4 problems grpo evaluated; base problem 4 is left out
    g = np.array([[2, 3], [0, 1], [4, 4], [4, 2]]) / n
    b = np.array([[1], [0], [2], [4]]) / n
    row = got.loc[("a", "avg@n")]
    assert (row["problems"], row["seeds"], row["reference_seeds"], row["n"]) == (4, 2, 1, 4)
    assert row["value"] == pytest.approx(g.mean()) and row["reference_value"] == pytest.approx(b.mean())
    assert row["diff"] == pytest.approx(g.mean() - b.mean())  # 0.59375 - 0.4375
    res = metrics.paired_difference(g, b, n_boot=frames.N_BOOT, seed=frames.BOOT_SEED)
    assert (row["ci_low"], row["ci_high"], row["p_value"]) == (
        pytest.approx(res.ci_low, abs=1e-12), pytest.approx(res.ci_high, abs=1e-12), res.p_value)
    # pass@n = [c > 0]: grpo misses problem 1 in seed 0 only (7/8), base misses problem 1 (3/4)
    row = got.loc[("a", "pass@n")]
    assert (row["value"], row["reference_value"]) == (pytest.approx(7 / 8), pytest.approx(3 / 4))
    assert row["diff"] == pytest.approx(1 / 8)
    res = metrics.paired_difference((g > 0).astype(float), (b > 0).astype(float),
                                    n_boot=frames.N_BOOT, seed=frames.BOOT_SEED)
    assert (row["ci_low"], row["ci_high"], row["p_value"]) == (
        pytest.approx(res.ci_low, abs=1e-12), pytest.approx(res.ci_high, abs=1e-12), res.p_value)
    # average: unweighted mean of the two benchmark differences
    assert got.loc[(frames.AVERAGE, "avg@n"), "diff"] == pytest.approx(
        (got.loc[("a", "avg@n"), "diff"] + got.loc[("z", "avg@n"), "diff"]) / 2)
    assert got.loc[(frames.AVERAGE, "avg@n"), "problems"] == 6
    for _, r in paired.iterrows():
        assert r["ci_low"] - 1e-12 <= r["diff"] <= r["ci_high"] + 1e-12
        assert 0.0 <= r["p_value"] <= 1.0


def test_paired_comparisons_reference_choice():
    n = 2
    frame = _stack(_samples({0: [2, 0, 1]}, n, algorithm="nsr"),
                   _samples({0: [1, 1, 1]}, n, algorithm="grpo"),
                   _samples({0: [0, 0, 2]}, n, algorithm="psr"))
    # no base: the first trained algorithm in registry order is the reference
    default = frames.paired_comparisons(frame)
    first = frames.algorithm_order(["nsr", "grpo", "psr"])[0]
    assert set(default["reference"]) == {first}
    assert first not in set(default["algorithm"])
    assert frames.default_reference(["psr", "base", "nsr"]) == "base"
    explicit = frames.paired_comparisons(frame, reference="psr")
    assert set(explicit["reference"]) == {"psr"} and set(explicit["algorithm"]) == {"nsr", "grpo"}
    nsr = explicit[(explicit["algorithm"] == "nsr") & (explicit["metric"] == "avg@n")].iloc[0]
    assert nsr["diff"] == pytest.approx((1 + 0 + 0.5) / 3 - (0 + 0 + 1) / 3)
    assert frames.paired_comparisons(frame, reference="ppo").empty  # no such algorithm
    # a single benchmark: no average row
    assert frames.AVERAGE not in set(default["benchmark"])


def test_paired_comparisons_on_fake_results(samples):
    paired = frames.paired_comparisons(samples)
    assert set(paired["reference"]) == {"base"}
    assert len(paired) == len(ALGOS) * (len(BENCHMARKS) + 1) * 3  # avg@n, pass@n, maj@n
    table = frames.final_table(samples).set_index(["algorithm", "benchmark"])
    for r in paired.itertuples(index=False):
        col = {"avg@n": "avg_at_n", "pass@n": "pass_at_n", "maj@n": "maj_at_n"}[r.metric]
        assert r.value == pytest.approx(table.loc[(r.algorithm, r.benchmark), col])
        assert r.reference_value == pytest.approx(table.loc[("base", r.benchmark), col])
        assert r.diff == pytest.approx(r.value - r.reference_value)
        assert r.ci_low - 1e-12 <= r.diff <= r.ci_high + 1e-12
        assert (r.seeds, r.reference_seeds, r.n) == (len(SEEDS), 1, N)


def test_zero_reasons_by_hand():
    reasons = frames.zero_reasons(_samples({0: [0, 1], 1: [4, 2]}, 4))
    assert list(reasons.columns) == frames.ZERO_REASON_COLUMNS
    got = dict(zip(reasons["reason"], reasons["count"]))
    # zeros: seed0 p0 j=0..3 (no_answer, wrong, no_answer, wrong), p1 j=1..3; seed1 p1 j=2,3
    assert got == {"wrong": 5, "no_answer": 4, "parse_failure": 0, "timeout": 0}
    assert reasons["frac"].sum() == pytest.approx(9 / 16)
    assert reasons["lenient_only"].sum() == 0  # no monitor column: nothing flagged


def test_zero_reasons_split_strict_and_lenient_by_hand(tmp_path):
    """The lenient-only zeros of each reason, from the samples and from the files alike."""
    samples = _samples({0: [0, 1], 1: [4, 2]}, 4)
    # zeros (seed, problem, sample): no_answer at (0,0,0) (0,0,2) (0,1,2) (1,1,2); flag two of
    # them and one wrong zero, (0,0,1); a flag on a correct sample, (1,0,0), is not a zero
    flagged = {(0, 0, 0), (1, 1, 2), (0, 0, 1), (1, 0, 0)}
    samples["lenient_only"] = [(s, p, j) in flagged for s, p, j in
                               samples[["seed", "problem_id", "sample"]].itertuples(index=False)]
    reasons = frames.zero_reasons(samples).set_index("reason")
    assert reasons["lenient_only"].to_dict() == {"wrong": 1, "no_answer": 2, "parse_failure": 0,
                                                 "timeout": 0}
    for seed, part in samples.groupby("seed"):
        folder = tmp_path / "eval" / "m" / "grpo" / f"seed{seed}"
        folder.mkdir(parents=True)
        part.drop(columns=["model", "algorithm", "seed", "benchmark"]).to_parquet(folder / "b.parquet")
    pd.testing.assert_frame_equal(frames.load_evaluation(tmp_path).zero_reasons,
                                  frames.zero_reasons(samples))


def test_training_frame_carries_the_monitor(results):
    training = frames.load_training(results)
    by_algo = training.groupby("algorithm")["lenient_only_frac"].max()
    assert by_algo["a3po"] > 0 and (by_algo.drop("a3po") == 0).all()
    long = frames.training_long(training, ["lenient_only_frac"])
    assert set(long["metric"]) == {"lenient_only_frac"} and len(long) == len(training)


# ----------------------------------------------------------------------------- notebooks


def test_notebook_templates_have_parameters():
    for name in ("training", "evaluation"):
        nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        nbformat.validate(nb)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1
        assert 'results_dir = "results/demo"' in tagged[0].source and 'study = "demo"' in tagged[0].source


@pytest.fixture(scope="module")
def rendered(results, tmp_path_factory):
    """Both notebooks executed once on the fake results (kernel cwd = the results' parent)."""
    out = tmp_path_factory.mktemp("report")
    paths = {}
    for name in ("training", "evaluation"):
        nb, html = out / f"{name}.ipynb", out / f"{name}.html"
        render_notebook(NOTEBOOKS / f"{name}.ipynb", nb, html,
                        {"results_dir": results.name, "study": "demo",
                         "figures_dir": str(out / "figures" / name)}, cwd=results.parent)
        paths[name] = (nb, html)
    return paths


@pytest.mark.parametrize("name, figures", [("training", 9), ("evaluation", 6)])
def test_notebooks_render(rendered, name, figures):
    nb, html = rendered[name]
    assert nb.is_file() and html.is_file()
    assert notebook_errors(nb) == []
    # training: accuracy/reward, reward-hacking monitor, entropy, length, n_pos/n_neg, groups,
    # A3PO, POPO, warm-up; evaluation: findings, pass@k curves, avg@n/pass@n/maj@n bars,
    # paired-difference forest plot, zero reasons, the lenient-only share
    assert count_figures(nb) == figures
    text = html.read_text()
    assert text.count("data:image/png;base64") >= figures
    assert "Traceback" not in text
    assert not list(nb.parent.glob(".*tmp*"))
    # the HTML is for readers: no code cells (the executed notebook keeps them)
    code = "from polarity.report import figures"
    assert code in "".join(c.source for c in nbformat.read(nb, as_version=4).cells)
    assert code not in text and "frames.load_" not in text and "figures.show(" not in text
    # every figure of the report is also its own file (snakemake --report items)
    saved = sorted(p.stem for p in (nb.parent / "figures" / name).glob("*.png"))
    assert saved == sorted(FIGURES[name])
    assert all((nb.parent / "figures" / name / f"{n}.png").stat().st_size > 1000 for n in saved)


def test_evaluation_notebook_sections(rendered):
    nb = nbformat.read(rendered["evaluation"][0], as_version=4)
    text = "".join(c.source for c in nb.cells)
    for heading in ("## Findings", "## Contamination", "## pass@k curves", "## Final table",
                    "## avg@n, pass@n and maj@n", "## Paired comparison", "## Why answers score zero"):
        assert heading in text
    assert text.index("## Findings") < text.index("## pass@k curves")  # findings come first
    shown = "".join(o.get("data", {}).get("text/html", "") for c in nb.cells if c.cell_type == "code"
                    for o in c.outputs)
    assert "difference [95% CI]" in shown and "maj@n [95% CI]" in shown and "average" in shown
    assert "estimate [95% CI]" in shown and "verdict" in shown


def test_evaluation_without_base_answers_or_second_benchmark(tmp_path):
    root = make_fake_results(tmp_path / "r" / "one", algorithms=("grpo", "nsr"), n=4, problems=6,
                             benchmarks=("b",), warmup=False, base=False, answers=False)
    pp = frames.load_evaluation(root).per_problem
    assert frames.final_table(pp)["maj_at_n"].isna().all()
    paired = frames.paired_comparisons(pp)
    assert set(paired["reference"]) == {"grpo"} and set(paired["metric"]) == {"avg@n", "pass@n"}
    nb = tmp_path / "out" / "e.ipynb"
    render_notebook(NOTEBOOKS / "evaluation.ipynb", nb, tmp_path / "out" / "e.html",
                    {"results_dir": "one", "study": "x"}, cwd=root.parent)
    assert notebook_errors(nb) == []
    # findings (NSR's entropy claim only: no base model), curves, bars (no maj@n row), forest,
    # zero reasons, monitor
    assert count_figures(nb) == 6


def test_training_without_a3po_popo_or_warmup(tmp_path, monkeypatch):
    make_fake_results(tmp_path / "r" / "small", algorithms=("grpo", "nsr"), steps=3, n=4,
                      problems=4, benchmarks=("b",), warmup=False)
    monkeypatch.chdir(tmp_path)  # relative outputs, a relative kernel cwd and results_dir
    render_notebook(NOTEBOOKS / "training.ipynb", Path("out/t.ipynb"), Path("out/t.html"),
                    {"results_dir": "small", "study": "x"}, cwd="r")
    nb = tmp_path / "out" / "t.ipynb"
    assert nb.is_file() and (tmp_path / "out" / "t.html").is_file()
    assert count_figures(nb) == 6  # no A3PO, POPO or warm-up panel
    text = nbformat.read(nb, as_version=4)
    printed = "".join(o.get("text", "") for c in text.cells if c.cell_type == "code" for o in c.outputs)
    assert "no A3PO run" in printed and "no POPO run" in printed and "no warm-up record" in printed


def test_evaluation_on_empty_results_prints_a_note(tmp_path):
    nb = tmp_path / "e.ipynb"
    render_notebook(NOTEBOOKS / "evaluation.ipynb", nb, tmp_path / "e.html",
                    {"results_dir": str(tmp_path / "nothing"), "study": "x"})
    assert count_figures(nb) == 0 and notebook_errors(nb) == []
    printed = "".join(o.get("text", "") for c in nbformat.read(nb, as_version=4).cells
                      if c.cell_type == "code" for o in c.outputs)
    assert "Note:" in printed


def test_failing_notebook_raises_with_cell_and_reason(tmp_path):
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                           "display_name": "Python 3"}})
    nb.cells = [nbformat.v4.new_code_cell("results_dir = 'x'", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("x = 1"),
                nbformat.v4.new_code_cell("raise ValueError(f'no results in {results_dir}')")]
    template = tmp_path / "bad.ipynb"
    nbformat.write(nb, template)
    out_nb, out_html = tmp_path / "out" / "bad.ipynb", tmp_path / "out" / "bad.html"
    with pytest.raises(NotebookExecutionError, match=r"(?s)bad\.ipynb.*ValueError: no results in y"):
        render_notebook(template, out_nb, out_html, {"results_dir": "y"})
    assert not out_nb.exists() and not out_html.exists()
    assert not list((tmp_path / "out").iterdir())  # no temporary files left behind
    with pytest.raises(FileNotFoundError):
        render_notebook(tmp_path / "missing.ipynb", out_nb, out_html, {})


def test_notebook_errors_and_count_figures(tmp_path):
    nb = nbformat.v4.new_notebook()
    png = {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}
    nb.cells = [
        nbformat.v4.new_code_cell("a", outputs=[nbformat.v4.new_output("display_data", data=png)]),
        nbformat.v4.new_code_cell("b", outputs=[
            nbformat.v4.new_output("stream", name="stdout", text="hi"),
            nbformat.v4.new_output("execute_result", data=png, execution_count=1)]),
        nbformat.v4.new_code_cell("c", outputs=[nbformat.v4.new_output(
            "error", ename="KeyError", evalue="'x'", traceback=["\x1b[31mKeyError\x1b[0m"])]),
    ]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    assert count_figures(path) == 2
    assert notebook_errors(path) == ["cell 2: KeyError: 'x'"]
