"""The report's tables by hand: pass@k curves, the final table (avg@n, pass@n, maj@n) and the
paired comparisons, with their bootstrap intervals checked against ``polarity.metrics``."""

from __future__ import annotations

from math import comb

import numpy as np
import pandas as pd
import pytest

from polarity import metrics
from polarity.metrics import k_values
from polarity.report import load, ordering, tables

from .report_fixtures import (
    ALGOS,
    BENCHMARKS,
    PROBLEMS,
    SEEDS,
    N,
    make_demo_results,
    samples_by_hand,
    stack,
)


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> pd.DataFrame:
    return load.load_samples(make_demo_results(tmp_path_factory))


# ----------------------------------------------------------------------------- pass@k curves


def test_passk_curves_by_hand():
    n, cs = 4, [0, 1, 2, 4]
    curves = tables.passk_curves(samples_by_hand({0: cs}, n))
    assert list(curves.columns) == tables.PASSK_COLUMNS
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
    pd.testing.assert_frame_equal(curves, tables.passk_curves(samples_by_hand({0: cs}, n)))


def test_passk_curves_on_fake_results(samples):
    curves = tables.passk_curves(samples)
    runs = 1 + len(ALGOS) * len(SEEDS)
    assert len(curves) == runs * len(BENCHMARKS) * len(list(k_values(N)))
    assert curves["pass_at_k"].between(0, 1).all()
    # pass@k never falls as k grows
    assert (curves.groupby(load.SAMPLE_KEYS)["pass_at_k"].diff().dropna() >= -1e-12).all()


# ----------------------------------------------------------------------------- final table


def test_final_table_by_hand():
    n = 4
    table = tables.final_table(samples_by_hand({0: [0, 1, 2, 4], 1: [1, 1, 0, 4]}, n))
    assert list(table.columns) == tables.FINAL_COLUMNS
    row = table.iloc[0]
    assert (row["seeds"], row["problems"], row["n"]) == (2, 4, 4)
    # per problem, seed-averaged: avg [.125, .25, .25, 1], pass [.5, 1, .5, 1]
    assert row["avg_at_n"] == pytest.approx((0.125 + 0.25 + 0.25 + 1) / 4)
    assert row["pass_at_n"] == pytest.approx(0.75)
    assert row["avg_ci_low"] <= row["avg_at_n"] <= row["avg_ci_high"]
    assert row["pass_ci_low"] <= row["pass_at_n"] <= row["pass_ci_high"]
    assert 0.125 <= row["avg_ci_low"] and row["avg_ci_high"] <= 1


def test_final_table_on_fake_results(samples):
    table = tables.final_table(samples)
    assert list(table.columns) == tables.FINAL_COLUMNS
    # one row per benchmark and one "average" row per (model, algorithm), the average last
    assert len(table) == (1 + len(ALGOS)) * (len(BENCHMARKS) + 1)
    assert table["algorithm"].iloc[0] == "base"
    assert table.groupby("algorithm", sort=False)["benchmark"].apply(list).map(
        lambda b: b[-1] == tables.AVERAGE).all()
    grpo = table[(table["algorithm"] == "grpo") & (table["benchmark"] == "math500")].iloc[0]
    sub = samples[(samples["algorithm"] == "grpo") & (samples["benchmark"] == "math500")]
    assert grpo["avg_at_n"] == pytest.approx(sub["correct"].mean())
    per_seed_pass = sub.groupby(["seed", "problem_id"])["correct"].max().groupby("seed").mean()
    assert grpo["pass_at_n"] == pytest.approx(per_seed_pass.mean())
    # maj@n: the reference implementation per seed, averaged over the seeds
    per_seed_maj = [metrics.maj_per_problem(seed_rows["problem_id"], seed_rows["answer"],
                                            seed_rows["correct"]).mean()
                    for _, seed_rows in sub.sort_values(["problem_id", "sample"]).groupby("seed")]
    assert grpo["maj_at_n"] == pytest.approx(np.mean(per_seed_maj))
    assert grpo["seeds"] == len(SEEDS) and grpo["n"] == N and grpo["problems"] == PROBLEMS
    for prefix, col in (("avg", "avg_at_n"), ("pass", "pass_at_n"), ("maj", "maj_at_n")):
        assert (table[f"{prefix}_ci_low"] <= table[col] + 1e-12).all()
        assert (table[col] <= table[f"{prefix}_ci_high"] + 1e-12).all()
    # the average row is the unweighted mean of the benchmark rows
    for algo, rows in table.groupby("algorithm"):
        avg_row = rows[rows["benchmark"] == tables.AVERAGE].iloc[0]
        benches = rows[rows["benchmark"] != tables.AVERAGE]
        for col in ("avg_at_n", "pass_at_n", "maj_at_n"):
            assert avg_row[col] == pytest.approx(benches[col].mean())
        assert avg_row["problems"] == PROBLEMS * len(BENCHMARKS)


def test_final_table_multi_seed_interval_resamples_seeds():
    # two seeds that disagree a lot: the interval must reflect the seed variance, i.e. be the
    # 2-D bootstrap of the [problems, seeds] matrix, wider than the seed-mean's 1-D bootstrap
    n = 4
    low, high = [0, 1, 0, 1, 0, 1, 0, 1], [4, 3, 4, 3, 4, 3, 4, 3]
    table = tables.final_table(samples_by_hand({0: low, 1: high}, n))
    row = table.iloc[0]
    assert list(table["benchmark"]) == ["b"]  # one benchmark: no average row
    matrix = np.array([low, high], dtype=float).T / n  # [problems, seeds]
    lo2, hi2 = metrics.bootstrap_ci(matrix, n_boot=tables.N_BOOT, seed=tables.BOOT_SEED,
                                    level=tables.CI_LEVEL)
    assert (row["avg_ci_low"], row["avg_ci_high"]) == (pytest.approx(lo2, abs=1e-12),
                                                        pytest.approx(hi2, abs=1e-12))
    lo1, hi1 = metrics.bootstrap_ci(matrix.mean(axis=1), n_boot=tables.N_BOOT, seed=tables.BOOT_SEED)
    assert hi2 - lo2 > 3 * (hi1 - lo1)
    assert row["avg_at_n"] == pytest.approx(matrix.mean())


def test_final_table_seed_missing_a_problem_averages_what_is_there():
    n = 2
    # seed 1 lacks problem 2
    frame = stack(samples_by_hand({0: [2, 0, 1]}, n), samples_by_hand({1: [0, 2]}, n))
    row = tables.final_table(frame).iloc[0]
    per_problem_mean = np.array([(1 + 0) / 2, (0 + 1) / 2, 0.5])
    assert row["avg_at_n"] == pytest.approx(per_problem_mean.mean())
    assert row["pass_at_n"] == pytest.approx(np.mean([0.5, 0.5, 1.0]))
    lo, hi = metrics.bootstrap_ci(per_problem_mean, n_boot=tables.N_BOOT, seed=tables.BOOT_SEED)
    assert (row["avg_ci_low"], row["avg_ci_high"]) == (pytest.approx(lo), pytest.approx(hi))
    assert (row["seeds"], row["problems"]) == (2, 3)


def test_final_table_average_is_a_stratified_bootstrap():
    n = 4
    big = [0, 1, 2, 3, 4, 4, 0, 2, 1, 3]  # benchmark "a": 10 problems
    small = [4, 4, 0]  # benchmark "z": 3 problems
    frame = stack(samples_by_hand({0: big, 1: big[::-1]}, n, benchmark="a"),
                   samples_by_hand({0: small, 1: [4, 0, 4]}, n, benchmark="z"))
    table = tables.final_table(frame)
    assert list(table["benchmark"]) == ["a", "z", tables.AVERAGE]
    avg = table.iloc[2]
    ma = np.array([big, big[::-1]], dtype=float).T / n
    mz = np.array([small, [4, 0, 4]], dtype=float).T / n
    # unweighted mean of the two benchmarks (not the pooled mean over 13 problems)
    assert avg["avg_at_n"] == pytest.approx((ma.mean() + mz.mean()) / 2)
    assert avg["avg_at_n"] != pytest.approx(np.concatenate([ma, mz]).mean())
    _, lo, hi = metrics.mean_ci([ma, mz], n_boot=tables.N_BOOT, seed=tables.BOOT_SEED,
                                level=tables.CI_LEVEL)
    assert (avg["avg_ci_low"], avg["avg_ci_high"]) == (pytest.approx(lo, abs=1e-12),
                                                        pytest.approx(hi, abs=1e-12))
    assert (avg["problems"], avg["seeds"], avg["n"]) == (13, 2, 4)
    assert np.isnan(avg["maj_at_n"])  # no answers in these samples
    assert not tables.final_table(frame, average=False)["benchmark"].eq(tables.AVERAGE).any()


def test_passk_summary_by_hand_and_consistent(samples):
    n = 4
    frame = stack(samples_by_hand({0: [0, 1, 2, 4], 1: [1, 1, 0, 4]}, n, benchmark="a"),
                   samples_by_hand({0: [4, 0], 1: [2, 2]}, n, benchmark="z"))
    summary = tables.passk_summary(frame)
    assert list(summary.columns) == tables.PASSK_SUMMARY_COLUMNS
    a = summary[summary["benchmark"] == "a"].set_index("k")
    for k in (1, 2, 4):
        by_hand = np.mean([1 - comb(n - c, k) / comb(n, k) for c in [0, 1, 2, 4, 1, 1, 0, 4]])
        assert a.loc[k, "pass_at_k"] == pytest.approx(by_hand)
    avg = summary[summary["benchmark"] == tables.AVERAGE].set_index("k")
    z = summary[summary["benchmark"] == "z"].set_index("k")
    assert avg["pass_at_k"].to_numpy() == pytest.approx((a["pass_at_k"] + z["pass_at_k"]).to_numpy() / 2)
    assert (avg["problems"] == 6).all() and (avg["seeds"] == 2).all()
    # on the fake study: pass@1 = avg@n, pass@n = pass@n of the final table, bands contain values
    summary = tables.passk_summary(samples)
    table = tables.final_table(samples).set_index(["algorithm", "benchmark"])
    for (algo, bench), rows in summary.groupby(["algorithm", "benchmark"]):
        rows = rows.set_index("k")
        assert list(rows.index) == k_values(N)
        assert rows.loc[1, "pass_at_k"] == pytest.approx(table.loc[(algo, bench), "avg_at_n"])
        assert rows.loc[N, "pass_at_k"] == pytest.approx(table.loc[(algo, bench), "pass_at_n"])
        assert (rows["pass_at_k"].diff().dropna() >= -1e-12).all()
    assert (summary["ci_low"] <= summary["pass_at_k"] + 1e-12).all()
    assert (summary["pass_at_k"] <= summary["ci_high"] + 1e-12).all()
    assert set(summary["benchmark"]) == {*BENCHMARKS, tables.AVERAGE}


# ----------------------------------------------------------------------------- paired comparisons


def test_paired_comparisons_by_hand():
    n = 4
    base = stack(samples_by_hand({0: [1, 0, 2, 4, 3]}, n, algorithm="base", benchmark="a"),  # 5 problems
                  samples_by_hand({0: [0, 4]}, n, algorithm="base", benchmark="z"))
    grpo = stack(samples_by_hand({0: [2, 0, 4, 4], 1: [3, 1, 4, 2]}, n, algorithm="grpo", benchmark="a"),
                  samples_by_hand({0: [4, 4], 1: [2, 4]}, n, algorithm="grpo", benchmark="z"))
    paired = tables.paired_comparisons(stack(grpo, base))
    assert list(paired.columns) == tables.PAIRED_COLUMNS
    assert set(paired["reference"]) == {"base"} and set(paired["algorithm"]) == {"grpo"}
    assert list(dict.fromkeys(paired["benchmark"])) == ["a", "z", tables.AVERAGE]
    assert list(paired["metric"].unique()) == ["avg@n", "pass@n"]  # no answers: no maj@n
    got = paired.set_index(["benchmark", "metric"])
    # benchmark a: only the 4 problems grpo evaluated; base problem 4 is left out
    g = np.array([[2, 3], [0, 1], [4, 4], [4, 2]]) / n
    b = np.array([[1], [0], [2], [4]]) / n
    row = got.loc[("a", "avg@n")]
    assert (row["problems"], row["seeds"], row["reference_seeds"], row["n"]) == (4, 2, 1, 4)
    assert row["value"] == pytest.approx(g.mean()) and row["reference_value"] == pytest.approx(b.mean())
    assert row["diff"] == pytest.approx(g.mean() - b.mean())  # 0.59375 - 0.4375
    res = metrics.stratified_paired_difference([g], [b], n_boot=tables.N_BOOT, seed=tables.BOOT_SEED)
    assert (row["ci_low"], row["ci_high"], row["p_value"]) == (
        pytest.approx(res.ci_low, abs=1e-12), pytest.approx(res.ci_high, abs=1e-12), res.p_value)
    # pass@n = [c > 0]: grpo misses problem 1 in seed 0 only (7/8), base misses problem 1 (3/4)
    row = got.loc[("a", "pass@n")]
    assert (row["value"], row["reference_value"]) == (pytest.approx(7 / 8), pytest.approx(3 / 4))
    assert row["diff"] == pytest.approx(1 / 8)
    res = metrics.stratified_paired_difference([(g > 0).astype(float)], [(b > 0).astype(float)],
                                               n_boot=tables.N_BOOT, seed=tables.BOOT_SEED)
    assert (row["ci_low"], row["ci_high"], row["p_value"]) == (
        pytest.approx(res.ci_low, abs=1e-12), pytest.approx(res.ci_high, abs=1e-12), res.p_value)
    # average: unweighted mean of the two benchmark differences
    assert got.loc[(tables.AVERAGE, "avg@n"), "diff"] == pytest.approx(
        (got.loc[("a", "avg@n"), "diff"] + got.loc[("z", "avg@n"), "diff"]) / 2)
    assert got.loc[(tables.AVERAGE, "avg@n"), "problems"] == 6
    for _, r in paired.iterrows():
        assert r["ci_low"] - 1e-12 <= r["diff"] <= r["ci_high"] + 1e-12
        assert 0.0 <= r["p_value"] <= 1.0


def test_paired_comparisons_reference_choice():
    n = 2
    frame = stack(samples_by_hand({0: [2, 0, 1]}, n, algorithm="nsr"),
                   samples_by_hand({0: [1, 1, 1]}, n, algorithm="grpo"),
                   samples_by_hand({0: [0, 0, 2]}, n, algorithm="psr"))
    # no base: the first trained algorithm in registry order is the reference
    default = tables.paired_comparisons(frame)
    first = ordering.algorithm_order(["nsr", "grpo", "psr"])[0]
    assert set(default["reference"]) == {first}
    assert first not in set(default["algorithm"])
    assert tables.default_reference(["psr", "base", "nsr"]) == "base"
    explicit = tables.paired_comparisons(frame, reference="psr")
    assert set(explicit["reference"]) == {"psr"} and set(explicit["algorithm"]) == {"nsr", "grpo"}
    nsr = explicit[(explicit["algorithm"] == "nsr") & (explicit["metric"] == "avg@n")].iloc[0]
    assert nsr["diff"] == pytest.approx((1 + 0 + 0.5) / 3 - (0 + 0 + 1) / 3)
    assert tables.paired_comparisons(frame, reference="ppo").empty  # no such algorithm
    # a single benchmark: no average row
    assert tables.AVERAGE not in set(default["benchmark"])


def test_paired_comparisons_on_fake_results(samples):
    paired = tables.paired_comparisons(samples)
    assert set(paired["reference"]) == {"base"}
    assert len(paired) == len(ALGOS) * (len(BENCHMARKS) + 1) * 3  # avg@n, pass@n, maj@n
    table = tables.final_table(samples).set_index(["algorithm", "benchmark"])
    for r in paired.itertuples(index=False):
        col = {"avg@n": "avg_at_n", "pass@n": "pass_at_n", "maj@n": "maj_at_n"}[r.metric]
        assert r.value == pytest.approx(table.loc[(r.algorithm, r.benchmark), col])
        assert r.reference_value == pytest.approx(table.loc[("base", r.benchmark), col])
        assert r.diff == pytest.approx(r.value - r.reference_value)
        assert r.ci_low - 1e-12 <= r.diff <= r.ci_high + 1e-12
        assert (r.seeds, r.reference_seeds, r.n) == (len(SEEDS), 1, N)


# --------------------------------------------------- one evaluation by hand (was summarize_samples)


def _one_evaluation(**columns) -> pd.DataFrame:
    return pd.DataFrame(columns).assign(model="m", algorithm="grpo", seed=0, benchmark="b")


def test_tables_of_one_evaluation_by_hand():
    frame = _one_evaluation(problem_id=["p1"] * 4 + ["p2"] * 4, correct=[1, 0, 0, 1, 0, 0, 0, 0],
                            answer=["4", "5", "5", "4", "7", None, "8", "8"])
    table, curves = tables.final_table(frame), tables.passk_curves(frame)
    assert list(table.columns) == tables.FINAL_COLUMNS and list(curves.columns) == tables.PASSK_COLUMNS
    assert (table["n"] == 4).all()
    avg = table["avg_at_n"].item()
    assert avg == pytest.approx(0.25)
    passk = curves.set_index("k")["pass_at_k"]
    assert list(passk.index) == [1, 2, 4]
    assert passk[1] == pytest.approx((0.5 + 0) / 2)
    assert passk[2] == pytest.approx((1 - 1 / 6 + 0) / 2)
    assert passk[4] == pytest.approx(0.5)
    assert table["pass_at_n"].item() == pytest.approx(0.5)
    # p1: tie "4"/"5" -> "4" first -> correct; p2: "8" wins -> wrong
    assert table["maj_at_n"].item() == pytest.approx(0.5)


def test_tables_of_one_evaluation_without_answers_and_bool_correct():
    frame = _one_evaluation(problem_id=[1, 1, 2, 2, 3, 3],
                            correct=[True, True, False, True, False, False])
    row = tables.final_table(frame).iloc[0]
    assert np.isnan(row["maj_at_n"])  # no answers: no maj@n
    assert row["avg_at_n"] == pytest.approx(0.5)
    curves = tables.passk_curves(frame)
    assert curves.loc[curves["k"] == 2, "pass_at_k"].item() == pytest.approx(2 / 3)


def test_tables_of_one_evaluation_bad_input():
    with pytest.raises(KeyError):  # no correct column
        tables.final_table(_one_evaluation(problem_id=[1]))
    assert tables.final_table(pd.DataFrame({"problem_id": [], "correct": []})).empty
    assert tables.passk_curves(pd.DataFrame({"problem_id": [], "correct": []})).empty
