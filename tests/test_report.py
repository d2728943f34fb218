"""The report's loaders: results folders read into tidy frames (training, warm-up, samples,
per-problem counts, zero reasons), in report order. Tables: test_report_tables.py; notebooks:
test_report_notebooks.py."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from polarity.algorithms.registry import ALGORITHMS
from polarity.data.rows import SAMPLE_COLUMNS
from polarity.report import load, ordering, tables

from .report_fixtures import (
    ALGOS,
    BENCHMARKS,
    PROBLEMS,
    SEEDS,
    STEPS,
    N,
    make_demo_results,
    make_fake_results,
    samples_by_hand,
)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return make_demo_results(tmp_path_factory)


@pytest.fixture(scope="module")
def samples(results) -> pd.DataFrame:
    return load.load_samples(results)


# ----------------------------------------------------------------------------- training frames


def test_load_training_one_row_per_step(results):
    df = load.load_training(results)
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
    df = load.load_training(tmp_path)
    assert df[["model", "algorithm", "seed", "step"]].values.tolist() == [
        ["m", "nsr", 3, 0], ["m", "nsr", 3, 1], ["m", "w_reinforce", 7, 0]]
    assert df["accuracy"].tolist()[:2] == [0.1, 0.25] and np.isnan(df["accuracy"].iloc[2])


def test_empty_results_give_empty_frames(tmp_path):
    assert load.load_training(tmp_path).empty
    samples = load.load_samples(tmp_path)
    assert samples.empty and {"model", "algorithm", "seed", "benchmark", "correct"} <= set(samples.columns)
    for fn, cols in [(load.per_problem, load.PER_PROBLEM_COLUMNS),
                     (tables.passk_curves, tables.PASSK_COLUMNS),
                     (tables.passk_summary, tables.PASSK_SUMMARY_COLUMNS),
                     (tables.final_table, tables.FINAL_COLUMNS),
                     (tables.paired_comparisons, tables.PAIRED_COLUMNS),
                     (load.zero_reasons, load.ZERO_REASON_COLUMNS)]:
        out = fn(samples)
        assert out.empty and list(out.columns) == cols
    evaluation = load.load_evaluation(tmp_path)
    assert evaluation.per_problem.empty and list(evaluation.per_problem.columns) == load.PER_PROBLEM_COLUMNS
    assert evaluation.zero_reasons.empty
    assert list(evaluation.zero_reasons.columns) == load.ZERO_REASON_COLUMNS
    for fn, cols in [(tables.passk_summary, tables.PASSK_SUMMARY_COLUMNS),
                     (tables.final_table, tables.FINAL_COLUMNS),
                     (tables.paired_comparisons, tables.PAIRED_COLUMNS)]:
        out = fn(evaluation.per_problem)
        assert out.empty and list(out.columns) == cols
    assert load.load_warmup(tmp_path).empty
    assert load.training_long(load.load_training(tmp_path), ["accuracy"]).empty


def test_training_long_keeps_metric_order(results):
    df = load.load_training(results)
    long = load.training_long(df, ["entropy", "missing", "accuracy"])
    assert list(long.columns) == load.LONG_COLUMNS
    assert list(long["metric"].cat.categories) == ["entropy", "accuracy"]
    assert len(long) == 2 * len(df)
    a3po = load.training_long(df, ["a3po/s_pos"])  # NaN rows of other algorithms dropped
    assert set(a3po["algorithm"]) == {"a3po"} and len(a3po) == len(SEEDS) * STEPS


def test_warmup_history(results):
    warm = load.load_warmup(results)
    assert list(warm.columns) == load.WARMUP_COLUMNS and len(warm) == 6
    summary = load.load_warmup_summary(results)
    assert summary.loc[0, "validation_accuracy"] == pytest.approx(0.42)


def test_algorithm_order_base_first():
    assert ordering.algorithm_order(["popo", "zzz", "grpo", "base"]) == ["base", "grpo", "popo", "zzz"]
    assert ordering.algorithm_order() == ["base", *ALGORITHMS]  # the registry's names, no copy


# ----------------------------------------------------------------------------- evaluation frames


def test_load_samples_and_per_problem(samples):
    assert list(samples.columns[:4]) == ["model", "algorithm", "seed", "benchmark"]
    assert set(SAMPLE_COLUMNS) <= set(samples.columns)
    runs = 1 + len(ALGOS) * len(SEEDS)  # base is evaluated once, as seed0
    assert len(samples) == runs * len(BENCHMARKS) * PROBLEMS * N
    assert samples["algorithm"].iloc[0] == "base"
    assert set(samples.loc[samples["algorithm"] == "base", "seed"]) == {0}
    pp = load.per_problem(samples)
    assert list(pp.columns) == load.PER_PROBLEM_COLUMNS
    assert len(pp) == runs * len(BENCHMARKS) * PROBLEMS
    assert (pp["n"] == N).all()
    assert pp["c"].sum() == int(samples["correct"].sum())


def test_per_problem_majority_by_hand():
    rows = []
    # problem 0: answers 3, 4, 4, None -> "4" (sample 1, correct); problem 1: 7, 8 tie -> "7"
    # (sample 0, wrong); rows given out of sample order must not change the vote
    for pid, sample, answer, ok in [(0, 2, "4", 1), (0, 0, "3", 0), (0, 1, "4", 1), (0, 3, None, 0),
                                    (1, 1, "8", 1), (1, 0, "7", 0)]:
        rows.append({"model": "m", "algorithm": "grpo", "seed": 0, "benchmark": "b",
                     "problem_id": pid, "sample": sample, "answer": answer, "correct": float(ok),
                     "reason": "correct" if ok else "wrong"})
    pp = load.per_problem(pd.DataFrame(rows))
    assert list(pp.columns) == load.PER_PROBLEM_COLUMNS
    assert pp[["problem_id", "n", "c", "maj"]].values.tolist() == [[0, 4, 2, 1.0], [1, 2, 1, 0.0]]
    row = tables.final_table(pd.DataFrame(rows)).iloc[0]
    assert row["maj_at_n"] == pytest.approx(0.5)
    assert row["maj_ci_low"] == 0.0 and row["maj_ci_high"] == 1.0


def test_load_evaluation_matches_the_samples_path(results, samples):
    evaluation = load.load_evaluation(results)
    pd.testing.assert_frame_equal(evaluation.per_problem, load.per_problem(samples))
    pd.testing.assert_frame_equal(evaluation.zero_reasons, load.zero_reasons(samples))
    # every frame accepts the per-problem frame in place of the samples
    pd.testing.assert_frame_equal(tables.final_table(evaluation.per_problem), tables.final_table(samples))
    pd.testing.assert_frame_equal(tables.passk_curves(evaluation.per_problem), tables.passk_curves(samples))


def test_load_evaluation_sorts_samples_and_handles_files_without_answers(tmp_path):
    root = make_fake_results(tmp_path / "demo", algorithms=("grpo",), seeds=(0,), n=6, problems=5,
                             benchmarks=("b",), warmup=False)
    path = root / "eval" / "tiny" / "grpo" / "seed0" / "b.parquet"
    original = pd.read_parquet(path)
    original.sample(frac=1.0, random_state=1).to_parquet(path, index=False)  # rows shuffled
    base_path = root / "eval" / "tiny" / "base" / "seed0" / "b.parquet"
    pd.read_parquet(base_path).drop(columns=["answer", "reason"]).to_parquet(base_path, index=False)
    pp = load.load_evaluation(root).per_problem
    grpo = pp[pp["algorithm"] == "grpo"].reset_index(drop=True)
    expected = load.per_problem(original.assign(model="tiny", algorithm="grpo", seed=0, benchmark="b"))
    pd.testing.assert_frame_equal(grpo, expected)
    assert pp.loc[pp["algorithm"] == "base", "maj"].isna().all()
    table = tables.final_table(pp)
    assert table.set_index("algorithm")["maj_at_n"].isna().to_dict() == {"base": True, "grpo": False}
    reasons = load.load_evaluation(root).zero_reasons
    base_reasons = reasons[reasons["algorithm"] == "base"].set_index("reason")["count"]
    assert base_reasons.get("unknown", 0) == 30 - pp.loc[pp["algorithm"] == "base", "c"].sum()


def test_zero_reasons_by_hand():
    reasons = load.zero_reasons(samples_by_hand({0: [0, 1], 1: [4, 2]}, 4))
    assert list(reasons.columns) == load.ZERO_REASON_COLUMNS
    got = dict(zip(reasons["reason"], reasons["count"]))
    # zeros: seed0 p0 j=0..3 (no_answer, wrong, no_answer, wrong), p1 j=1..3; seed1 p1 j=2,3
    assert got == {"wrong": 5, "no_answer": 4, "parse_failure": 0, "timeout": 0}
    assert reasons["frac"].sum() == pytest.approx(9 / 16)
    assert reasons["lenient_only"].sum() == 0  # no monitor column: nothing flagged


def test_zero_reasons_split_strict_and_lenient_by_hand(tmp_path):
    """The lenient-only zeros of each reason, from the samples and from the files alike."""
    samples = samples_by_hand({0: [0, 1], 1: [4, 2]}, 4)
    # zeros (seed, problem, sample): no_answer at (0,0,0) (0,0,2) (0,1,2) (1,1,2); flag two of
    # them and one wrong zero, (0,0,1); a flag on a correct sample, (1,0,0), is not a zero
    flagged = {(0, 0, 0), (1, 1, 2), (0, 0, 1), (1, 0, 0)}
    samples["lenient_only"] = [(s, p, j) in flagged for s, p, j in
                               samples[["seed", "problem_id", "sample"]].itertuples(index=False)]
    reasons = load.zero_reasons(samples).set_index("reason")
    assert reasons["lenient_only"].to_dict() == {"wrong": 1, "no_answer": 2, "parse_failure": 0,
                                                 "timeout": 0}
    for seed, part in samples.groupby("seed"):
        folder = tmp_path / "eval" / "m" / "grpo" / f"seed{seed}"
        folder.mkdir(parents=True)
        part.drop(columns=["model", "algorithm", "seed", "benchmark"]).to_parquet(folder / "b.parquet")
    pd.testing.assert_frame_equal(load.load_evaluation(tmp_path).zero_reasons,
                                  load.zero_reasons(samples))


def test_training_frame_carries_the_monitor(results):
    training = load.load_training(results)
    by_algo = training.groupby("algorithm")["lenient_only_frac"].max()
    assert by_algo["a3po"] > 0 and (by_algo.drop("a3po") == 0).all()
    long = load.training_long(training, ["lenient_only_frac"])
    assert set(long["metric"]) == {"lenient_only_frac"} and len(long) == len(training)
