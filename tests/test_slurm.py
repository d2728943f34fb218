"""The SLURM path against a real SLURM: a one-node cluster started on this machine.

``scripts/slurm-test-cluster.sh`` installs Debian's slurm-wlm and munge when they are absent and
starts munged, slurmctld and slurmd (root needed; without root these tests skip and say so).
A small study then runs through ``snakemake --profile`` with a profile derived from
``profiles/slurm`` (only the cluster's specifics changed: its partition, no account, status by
squeue since this cluster keeps no accounting database), so that every job goes through sbatch.
The GPU rules' sbatch options are checked against the real plugin with the real profile,
through a recording ``sbatch`` (there are no GPUs here).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from .conftest import REPO

pytestmark = pytest.mark.slow

SCRIPT = REPO / "scripts" / "slurm-test-cluster.sh"


@pytest.fixture(scope="module")
def partition():
    if os.geteuid() != 0:
        pytest.skip(reason="SLURM tests need root: scripts/slurm-test-cluster.sh installs and "
                           "starts slurm-wlm and munge")
    running_before = subprocess.run(["pgrep", "-x", "slurmctld"], capture_output=True).returncode == 0
    proc = subprocess.run([str(SCRIPT), "start"], capture_output=True, text=True, timeout=900)
    if proc.returncode == 77:
        pytest.skip(reason=proc.stderr.strip())
    assert proc.returncode == 0, f"could not start the test cluster:\n{proc.stdout}\n{proc.stderr}"
    yield proc.stdout.strip().splitlines()[-1]
    if not running_before:  # leave the machine as it was
        subprocess.run([str(SCRIPT), "stop"], capture_output=True, timeout=120)
        # no stale slurm.conf: SLURM's clients (and so every snakemake start) fail fast
        assert not Path("/etc/slurm/slurm.conf").exists()


def derived_profile(folder: Path, partition: str, **overrides) -> Path:
    """profiles/slurm with this cluster's specifics; everything else as users get it."""
    config = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    config.update({
        "slurm-status-command": "squeue",  # no accounting database on the test cluster
        "slurm-no-account": True,
        "slurm-init-seconds-before-status-checks": 1,
        "slurm-keep-successful-logs": True,
        "latency-wait": 5,
        "jobs": 4,
        "retries": 0,
        "default-resources": {**config["default-resources"], "slurm_partition": partition},
        **overrides,
    })
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


def study(tmp_path: Path, name: str, **train) -> Path:
    config = yaml.safe_load((REPO / "tests" / "configs" / "e2e.yaml").read_text())
    config["study"] = name
    config["algorithms"] = ["grpo"]
    # execution mechanics, not learning: a 1-layer model and 20 warm-up steps keep it fast
    config["tiny_model"] = {"hidden_size": 32, "intermediate_size": 64, "layers": 1, "heads": 2,
                            "kv_heads": 1, "vocab_size": 300, "warmup_max_steps": 20,
                            "eval_every": 10, "eval_problems": 16}
    config["train"].update(max_response_tokens=12, **train)
    config["evaluate"].update(shards=2, max_response_tokens=12)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def snakemake(workdir: Path, *args: str, env: dict | None = None, check=True, **kw):
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(workdir), *args]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           **(env or {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def submitted_jobs(output: str) -> dict[str, str]:
    """SLURM job id per Snakemake job, from the plugin's submission lines."""
    return dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", output))


def deterministic(row: dict) -> dict:
    return {k: v for k, v in row.items() if "second" not in k and "time" not in k}


def test_a_study_runs_through_sbatch_and_matches_a_local_run(partition, tmp_path):
    config = study(tmp_path, "onslurm")
    profile = derived_profile(tmp_path / "profile", partition)
    on_slurm, local = tmp_path / "slurm", tmp_path / "local"
    # Everything but the report notebooks (the local end-to-end test renders those).
    R = Path("results", "onslurm")
    targets = [str(R / "runs" / "tiny" / "grpo" / "seed0" / "metrics.jsonl")] + [
        str(R / "eval" / "tiny" / p / "seed0" / "synthetic-arith-test.parquet") for p in ("base", "grpo")]
    run = snakemake(on_slurm, *targets, "--profile", str(profile), "--configfile", str(config))
    snakemake(local, *targets, "--cores", "2", "--configfile", str(config))

    log = run.stdout + run.stderr
    ids = submitted_jobs(log)
    jobs = re.findall(r"\n(?:local)?rule (\w+):", log)
    assert len(ids) == len(jobs) >= 8  # every job went through sbatch
    assert all(int(i) > 0 for i in ids.values())
    slurm_logs = list((on_slurm / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert {p.stem for p in slurm_logs} >= set(ids.values())  # one SLURM log per job id

    read = lambda root: [deterministic(json.loads(x)) for x in  # noqa: E731
                         (root / "results" / "onslurm" / "runs" / "tiny" / "grpo" / "seed0" /
                          "metrics.jsonl").read_text().splitlines()]
    assert read(on_slurm) == read(local)
    for policy in ("base", "grpo"):
        rel = Path("results", "onslurm", "eval", "tiny", policy, "seed0", "synthetic-arith-test.parquet")
        a, b = pd.read_parquet(on_slurm / rel), pd.read_parquet(local / rel)
        cols = ["problem_id", "sample", "response", "correct", "reason"]
        pd.testing.assert_frame_equal(a[cols], b[cols])


def test_a_cancelled_training_job_resumes_from_its_checkpoint(partition, tmp_path):
    steps = 8
    config = study(tmp_path, "fault", steps=steps, save_every=2)
    profile = derived_profile(tmp_path / "profile", partition)
    workdir = tmp_path / "run"
    run_dir = workdir / "results" / "fault" / "runs" / "tiny" / "grpo" / "seed0"
    target = str((run_dir / "metrics.jsonl").relative_to(workdir))
    first = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
         str(workdir), target, "--profile", str(profile), "--configfile", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"},
    )
    try:
        deadline = time.monotonic() + 600
        while not list((run_dir / "state" / "checkpoints").glob("*.pt")):
            assert first.poll() is None, first.stdout.read()
            assert time.monotonic() < deadline, "no checkpoint within 10 minutes"
            time.sleep(0.5)
        queue = subprocess.run(["squeue", "-h", "-o", "%i|%k"], capture_output=True, text=True).stdout
        train_ids = [line.split("|")[0] for line in queue.splitlines() if "rule_train_local" in line]
        assert len(train_ids) == 1, queue
        subprocess.run(["scancel", train_ids[0]], check=True)
        out, _ = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode != 0, out  # the cancelled job failed the run
    assert not (run_dir / "metrics.jsonl").exists()
    done_before = sorted((run_dir / "state" / "checkpoints").glob("*.pt"))
    assert done_before

    again = snakemake(workdir, target, "--profile", str(profile), "--configfile", str(config))
    assert submitted_jobs(again.stdout + again.stderr)  # the rerun went through sbatch too
    train_log = (workdir / "results" / "fault" / "logs" / "train" / "tiny" / "grpo" / "seed0").glob("*.log")
    assert any("resuming grpo seed 0 from" in p.read_text() for p in train_log)
    steps_logged = [json.loads(x)["step"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps_logged == list(range(steps))  # every step exactly once


def test_gpu_rules_ask_sbatch_for_nodes_gpus_and_partition(tmp_path):
    """The real profile and plugin, with a recording sbatch: the options of GPU jobs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "sbatch.calls"
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {record}\necho 4242\n')
    (bin_dir / "sacctmgr").write_text("#!/bin/sh\necho polarity-lab\n")  # the account exists
    for tool in ("squeue", "sacct", "scancel", "sinfo", "scontrol", "sshare"):
        (bin_dir / tool).write_text("#!/bin/sh\nexit 0\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = {**os.environ,
           "PATH": f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "POLARITY_SLURM_GPU_PARTITION": "gpu-h200", "POLARITY_SLURM_CPU_PARTITION": "cpu",
           "POLARITY_SLURM_ACCOUNT": "polarity-lab"}
    for preset, rule, want in [
        ("a3po", "train_verl", ["--nodes=2", "--gres=gpu:h200:8", "-p gpu-h200", "-A polarity-lab",
                                "--mem 512000", "-t 2880", "--cpus-per-task=16"]),
        ("negative-reinforcement", "evaluate_shard", ["--nodes=1", "--gres=gpu:h200:1",
                                                      "-p gpu-h200", "-A polarity-lab"]),
    ]:
        workdir = tmp_path / preset
        args = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
                "--directory", str(workdir), "--profile", str(REPO / "profiles" / "slurm")]
        config = ["--configfile", str(REPO / "presets" / f"{preset}.yaml")]  # last: nargs="+"
        plan = subprocess.run([*args, "-n", "--until", rule, *config], capture_output=True,
                              text=True, env=env, check=True).stdout
        block = plan[plan.index(f"rule {rule}:"):]
        inputs = re.search(r"\n\s+input: ([^\n]+)", block).group(1).split(", ")
        target = re.search(r"\n\s+output: ([^,\n]+)", block).group(1)
        for inp in inputs:  # the GPU job's inputs, made up: only that job is left to run
            path = workdir / inp
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        record.unlink(missing_ok=True)
        proc = subprocess.Popen([*args, target, *config], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=env, start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            while not (record.exists() and record.read_text().strip()):
                assert proc.poll() is None, proc.stdout.read()
                assert time.monotonic() < deadline, "no sbatch call within 2 minutes"
                time.sleep(0.2)
        finally:
            os.killpg(proc.pid, 9)
            proc.wait()
        call = record.read_text().splitlines()[0]
        for option in want:
            assert option in call, call
        assert f"rule_{rule}" in call, call
