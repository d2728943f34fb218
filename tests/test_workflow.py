"""The Snakemake workflow itself: lint, DAG, config errors before any job, a real end-to-end run."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from polarity.report.figures import FIGURES
from polarity.report.render import count_figures, notebook_errors

from .conftest import REPO

E2E_CONFIG = REPO / "tests" / "configs" / "e2e.yaml"


def snakemake(workdir: Path, *args: str, configfile: Path | None = None, check=True):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(workdir), "--configfile", str(configfile or REPO / "config.yaml"),
           *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_lint_is_clean(tmp_path):
    proc = snakemake(tmp_path, "--lint", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Lints for" not in out, out


def test_default_study_dag(tmp_path):
    out = snakemake(tmp_path, "-n", "--quiet", "rules").stdout
    counts = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    assert counts["train_local"] == 21  # 7 algorithms x 3 seeds
    assert counts["evaluate_shard"] == counts["gather_evaluation"] == 22  # 21 policies + base
    assert counts["make_tiny_model"] == counts["check_contamination"] == 1
    assert counts["report_training"] == counts["report_evaluation"] == 1


@pytest.mark.parametrize(
    "bad, key",
    [
        ("train: {stpes: 3}", "train.stpes"),
        ("algorithms: [grpo, gpro]", "algorithms[1]"),
        ("train: {prompts_per_step: 8, mini_batch_prompts: 16}", "train.mini_batch_prompts"),
        ("evaluate: {benchmarks: [aime2099]}", "evaluate.benchmarks[0]"),
    ],
)
def test_invalid_config_fails_before_any_job(tmp_path, bad, key):
    config = tmp_path / "bad.yaml"
    config.write_text((REPO / "config.yaml").read_text() + "\n" + bad + "\n")
    proc = snakemake(tmp_path, "--cores", "1", configfile=config, check=False)
    assert proc.returncode != 0
    assert key in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()  # nothing ran


@pytest.mark.slow
def test_end_to_end_small_study(tmp_path):
    """Every stage for real on a small config: data, tiny model, 3 algorithms, eval, reports.

    The evaluation also runs a hub benchmark (MATH-500, from its local fixture) in 2 shards;
    one shard is made first, as if the workflow had been killed after it, and is not redone.
    """
    import yaml

    config = yaml.safe_load(E2E_CONFIG.read_text())
    config["evaluate"].update(
        benchmarks=["synthetic-arith-test", "math500"], shards=2,
        sources={"math500": str(REPO / "tests" / "fixtures" / "benchmarks" / "math500.jsonl")},
    )
    config_path = tmp_path / "e2e.yaml"
    config_path.write_text(yaml.safe_dump(config))
    R = tmp_path / "results" / "e2e"
    first_shard = R / "eval" / "tiny" / "base" / "seed0" / "math500" / "shard0-of-2.parquet"
    snakemake(tmp_path, "--cores", "2", str(first_shard.relative_to(tmp_path)), configfile=config_path)
    assert first_shard.exists()
    snakemake(tmp_path, "--cores", "2", configfile=config_path)
    shard_log = R / "logs" / "evaluate" / "tiny" / "base" / "seed0" / "math500" / "shard0.log"
    assert shard_log.read_text().count("shard 1/2") == 1  # ran once, never redone
    assert not first_shard.exists()  # a temp() file, removed once gathered
    math500 = pd.read_parquet(R / "eval" / "tiny" / "grpo" / "seed0" / "math500.parquet")
    fixture_rows = len(pd.read_parquet(R / "data" / "math500.parquet"))
    assert math500["problem_id"].tolist() == [p for p in range(fixture_rows) for _ in range(4)]
    warmup = json.loads((R / "models" / "tiny" / "warmup.json").read_text())
    # the base policy solves some held-out problems: RL has something to learn from
    assert warmup["warmup_steps"] >= 1 and 0.0 < warmup["validation_accuracy"] <= 1.0
    for algorithm in ("grpo", "a3po", "popo"):
        rows = [json.loads(x) for x in (R / "runs" / "tiny" / algorithm / "seed0" / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == [0, 1, 2]
        assert (R / "runs" / "tiny" / algorithm / "seed0" / "final" / "config.json").exists()
        assert sum(r["accuracy"] for r in rows) > 0
        assert sum(r["optimizer_steps"] for r in rows) > 0, f"{algorithm} took no optimizer step"
    for algorithm in ("base", "grpo", "a3po", "popo"):
        samples = pd.read_parquet(R / "eval" / "tiny" / algorithm / "seed0" / "synthetic-arith-test.parquet")
        assert len(samples) == 12 * 4
        assert set(samples["reason"]) <= {"correct", "wrong", "no_answer", "parse_failure", "timeout"}
    for name, figures in (("training", 5), ("evaluation", 2)):
        nb = R / "report" / f"{name}.ipynb"
        assert notebook_errors(nb) == []
        assert count_figures(nb) >= figures
        html = (R / "report" / f"{name}.html").read_text()
        assert "data:image/png;base64" in html
        assert {p.stem for p in (R / "report" / "figures" / name).glob("*.png")} == set(FIGURES[name])
    contamination = pd.read_csv(R / "contamination" / "summary.tsv", sep="\t")
    assert set(contamination["train_set"]) == {"synthetic-arith", "synthetic-arith-warmup"}
    assert set(contamination["benchmark"]) == {"synthetic-arith-test", "math500"}
    # the synthetic splits never share a question
    synthetic = contamination[contamination["benchmark"] == "synthetic-arith-test"]
    assert (synthetic["exact"] == 0).all() and (synthetic["normalized"] == 0).all()

    # snakemake --report: every figure is its own item with its caption
    snakemake(tmp_path, "--report", str(tmp_path / "report.zip"), configfile=config_path)
    import zipfile

    archive = zipfile.ZipFile(tmp_path / "report.zip")
    pngs = sorted(Path(n).name for n in archive.namelist() if n.endswith(".png"))
    assert pngs == sorted(f"{f}.png" for figures in FIGURES.values() for f in figures)
    page = archive.read("report/report.html").decode()
    for notebook, figures in FIGURES.items():  # each caption, by its first line
        for figure in figures:
            caption = (REPO / "workflow" / "report" / "figures" / notebook / f"{figure}.rst").read_text()
            assert caption.splitlines()[0].strip() in page, (notebook, figure)

    # nothing left to do: a second run is a no-op
    again = snakemake(tmp_path, "-n", "--cores", "2", configfile=config_path)
    assert "Nothing to be done" in again.stdout + again.stderr

    # speed settings are not params: changing them reruns nothing ...
    speed = yaml.safe_load(config_path.read_text())
    speed["train"].update(threads=2, device="cpu:0", save_every=1, keep_checkpoints=5,
                          dump_rollouts=False)
    speed["evaluate"].update(threads=2, device="cpu:0", batch_size=7, score_workers=1)
    speed["tiny_model"]["warmup_max_seconds"] = 99999
    (tmp_path / "speed.yaml").write_text(yaml.safe_dump(speed))
    again = snakemake(tmp_path, "-n", "--cores", "2", configfile=tmp_path / "speed.yaml")
    assert "Nothing to be done" in again.stdout + again.stderr, again.stdout
    # ... and a setting that changes results reruns the jobs that use it, and what follows
    result = yaml.safe_load(config_path.read_text())
    result["train"]["lr"] = 2e-4
    (tmp_path / "result.yaml").write_text(yaml.safe_dump(result))
    again = snakemake(tmp_path, "-n", "--quiet", "rules", "--cores", "2",
                      configfile=tmp_path / "result.yaml").stdout
    counts = {p[0]: int(p[1]) for p in (x.split() for x in again.splitlines())
              if len(p) == 2 and p[1].isdigit()}
    assert counts["train_local"] == 3 and "make_tiny_model" not in counts, again
