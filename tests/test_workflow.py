"""The Snakemake workflow itself: lint, DAG, config errors before any job, a real end-to-end run."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

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
    assert counts["train_local"] == 8  # every algorithm in config.yaml, one seed
    assert counts["evaluate"] == 9  # the eight policies and the base model
    assert counts["make_tiny_model"] == 1
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
    """Every stage for real on a small config: data, tiny model, 3 algorithms, eval, reports."""
    snakemake(tmp_path, "--cores", "2", configfile=E2E_CONFIG)
    R = tmp_path / "results" / "e2e"
    warmup = json.loads((R / "models" / "tiny" / "warmup.json").read_text())
    assert warmup["warmup_steps"] >= 1 and 0.0 <= warmup["validation_accuracy"] <= 1.0
    for algorithm in ("grpo", "a3po", "popo"):
        rows = [json.loads(x) for x in (R / "runs" / "tiny" / algorithm / "seed0" / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == [0, 1, 2]
        assert (R / "runs" / "tiny" / algorithm / "seed0" / "final" / "config.json").exists()
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

    # nothing left to do: a second run is a no-op
    again = snakemake(tmp_path, "-n", "--cores", "2", configfile=E2E_CONFIG)
    assert "Nothing to be done" in again.stdout + again.stderr
