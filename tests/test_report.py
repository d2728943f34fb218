"""The report stage: tidy frames, hand-checked pass@k and final table, notebooks rendered to HTML."""

from __future__ import annotations

import json
from math import comb
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from polarity.algorithms import ALGORITHMS
from polarity.metrics import k_values
from polarity.report import frames
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


def _samples(counts: dict[int, list[int]], n: int, *, algorithm="grpo", benchmark="b") -> pd.DataFrame:
    """A samples frame by hand: counts[seed][problem] correct answers out of n."""
    rows = []
    for seed, cs in counts.items():
        for pid, c in enumerate(cs):
            for j in range(n):
                ok = j < c
                rows.append({"model": "m", "algorithm": algorithm, "seed": seed, "benchmark": benchmark,
                             "problem_id": pid, "sample": j, "correct": float(ok),
                             "reason": "correct" if ok else ("wrong" if j % 2 else "no_answer")})
    return pd.DataFrame(rows)


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
                     (frames.final_table, frames.FINAL_COLUMNS),
                     (frames.zero_reasons, frames.ZERO_REASON_COLUMNS)]:
        out = fn(samples)
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
    assert len(table) == (1 + len(ALGOS)) * len(BENCHMARKS)
    assert table["algorithm"].iloc[0] == "base"
    grpo = table[(table["algorithm"] == "grpo") & (table["benchmark"] == "math500")].iloc[0]
    sub = samples[(samples["algorithm"] == "grpo") & (samples["benchmark"] == "math500")]
    assert grpo["avg_at_n"] == pytest.approx(sub["correct"].mean())
    per_seed_pass = sub.groupby(["seed", "problem_id"])["correct"].max().groupby("seed").mean()
    assert grpo["pass_at_n"] == pytest.approx(per_seed_pass.mean())
    assert grpo["seeds"] == len(SEEDS) and grpo["n"] == N and grpo["problems"] == PROBLEMS


def test_zero_reasons_by_hand():
    reasons = frames.zero_reasons(_samples({0: [0, 1], 1: [4, 2]}, 4))
    assert list(reasons.columns) == frames.ZERO_REASON_COLUMNS
    got = dict(zip(reasons["reason"], reasons["count"]))
    # zeros: seed0 p0 j=0..3 (no_answer, wrong, no_answer, wrong), p1 j=1..3; seed1 p1 j=2,3
    assert got == {"wrong": 5, "no_answer": 4, "parse_failure": 0, "timeout": 0}
    assert reasons["frac"].sum() == pytest.approx(9 / 16)


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
                        {"results_dir": results.name, "study": "demo"}, cwd=results.parent)
        paths[name] = (nb, html)
    return paths


@pytest.mark.parametrize("name, figures", [("training", 8), ("evaluation", 3)])
def test_notebooks_render(rendered, name, figures):
    nb, html = rendered[name]
    assert nb.is_file() and html.is_file()
    assert notebook_errors(nb) == []
    # training: accuracy/reward, entropy, length, n_pos/n_neg, groups, A3PO, POPO, warm-up;
    # evaluation: pass@k curves, avg@n/pass@n bars, zero reasons
    assert count_figures(nb) == figures
    text = html.read_text()
    assert text.count("data:image/png;base64") >= figures
    assert "Traceback" not in text
    assert not list(nb.parent.glob(".*tmp*"))


def test_training_without_a3po_popo_or_warmup(tmp_path, monkeypatch):
    make_fake_results(tmp_path / "r" / "small", algorithms=("grpo", "nsr"), steps=3, n=4,
                      problems=4, benchmarks=("b",), warmup=False)
    monkeypatch.chdir(tmp_path)  # relative outputs, a relative kernel cwd and results_dir
    render_notebook(NOTEBOOKS / "training.ipynb", Path("out/t.ipynb"), Path("out/t.html"),
                    {"results_dir": "small", "study": "x"}, cwd="r")
    nb = tmp_path / "out" / "t.ipynb"
    assert nb.is_file() and (tmp_path / "out" / "t.html").is_file()
    assert count_figures(nb) == 5  # no A3PO, POPO or warm-up panel
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
