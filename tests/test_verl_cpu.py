"""verl's own trainer on this CPU: the whole verl-cpu study through Snakemake, kill and resume.

One module fixture runs it once (about ten minutes on two cores, mostly Ray and verl start-up):

1. the A3PO run alone, SIGKILLed (its whole process group, Ray included) once verl has saved
   the checkpoint of step 1, as a preempted job would be;
2. ``snakemake --unlock`` (the killed Snakemake left its lock), then the whole study,
   ``snakemake --cores 2 --configfile tests/configs/verl-cpu.yaml``:
   A3PO resumes from that checkpoint, every other algorithm trains from the start, verl's
   model merger makes each ``final/``, then evaluation and both reports.

The tests read what that left behind.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from polarity.report.render import count_figures, notebook_errors

from .conftest import REPO

CONFIG = REPO / "tests" / "configs" / "verl-cpu.yaml"
STUDY = yaml.safe_load(CONFIG.read_text())
ALGORITHMS = STUDY["algorithms"]
STEPS = STUDY["train"]["steps"]
# the local backend's per-step columns (metrics.jsonl): a verl run must have them all
LOCAL_COLUMNS = {
    "step", "algorithm", "seed", "accuracy", "reward_mean", "entropy", "pg_loss", "clip_frac",
    "dual_clip_frac", "grad_norm", "lr", "response_length_mean", "response_length_max",
    "response_clip_frac", "lenient_only_frac", "n_positive", "n_negative",
    "frac_positive", "frac_negative", "trained_reward_mean", "batch_responses",
    "optimizer_steps", "gen_rounds", "groups_sampled", "frac_groups_all_correct",
    "frac_groups_all_wrong", "frac_groups_dropped",
}


def _env() -> dict:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def _snakemake(workdir: Path, *targets: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", *targets, "--snakefile", str(REPO / "Snakefile"),
            "--directory", str(workdir), "--configfile", str(CONFIG), "--cores", "2"]


def run_dir(workdir: Path, algorithm: str) -> Path:
    return workdir / "results" / "verl-cpu" / "runs" / "tiny" / algorithm / "seed0"


def kill_after_first_checkpoint(workdir: Path, algorithm: str, timeout: float = 900) -> None:
    """Run one algorithm's training alone and SIGKILL every process of it after step 1's
    checkpoint is complete (verl writes its tracker file last)."""
    tracker = (run_dir(workdir, algorithm) / "state" / "verl_checkpoints"
               / "latest_checkpointed_iteration.txt")
    target = str(run_dir(workdir, algorithm).relative_to(workdir) / "verl_final.json")
    log = open(workdir / f"killed-{algorithm}.log", "w")
    proc = subprocess.Popen(_snakemake(workdir, target), stdout=log, stderr=subprocess.STDOUT,
                            env=_env(), start_new_session=True)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and proc.poll() is None:
            if tracker.exists() and tracker.read_text().strip() == "1":
                break
            time.sleep(0.5)
        assert proc.poll() is None, f"training ended before it could be killed: see {log.name}"
        assert tracker.exists(), f"no checkpoint after {timeout}s: see {log.name}"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the job, verl's driver and the Ray it started
        proc.wait()
        log.close()


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("verl-cpu")
    kill_after_first_checkpoint(workdir, "a3po")
    # a killed Snakemake leaves its lock behind: what a user runs after a crash
    subprocess.run(_snakemake(workdir, "--unlock"), capture_output=True, check=True, env=_env())
    proc = subprocess.run(_snakemake(workdir), capture_output=True, text=True, env=_env())
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    return workdir


def metrics(workdir: Path, algorithm: str) -> pd.DataFrame:
    return pd.read_json(run_dir(workdir, algorithm) / "metrics.jsonl", lines=True)


@pytest.mark.slow
def test_every_algorithm_trained_through_verl(study):
    for algorithm in ALGORITHMS:
        df = metrics(study, algorithm)
        assert list(df["step"]) == list(range(STEPS)), algorithm  # each step exactly once
        assert (df["algorithm"] == algorithm).all()
        assert df["optimizer_steps"].sum() > 0, algorithm
        assert (df["grad_norm"] > 0).any(), f"{algorithm}: no step had a gradient"
        assert LOCAL_COLUMNS <= set(df.columns), f"{algorithm}: {LOCAL_COLUMNS - set(df.columns)}"
        done = json.loads((run_dir(study, algorithm) / "verl_final.json").read_text())
        assert done["step"] == STEPS


@pytest.mark.slow
def test_rollouts_use_the_updated_weights(study):
    """verl compares the rollout's log-probs with the actor's: after the first update they
    still agree to float32 noise, so the rollout server received the new weights."""
    for algorithm in ALGORITHMS:
        df = metrics(study, algorithm)
        diffs = df["verl/training/rollout_probs_diff_max"]
        assert (diffs < 1e-4).all(), f"{algorithm}: {list(diffs)}"


@pytest.mark.slow
def test_each_algorithm_took_its_own_path(study):
    psr, nsr = metrics(study, "psr"), metrics(study, "nsr")
    assert (psr["n_negative"] == 0).all() and psr["n_positive"].sum() > 0
    assert (nsr["n_positive"] == 0).all() and nsr["n_negative"].sum() > 0
    # the actor's loss itself (our worker's row filter in verl): PSR's tokens are all from
    # correct responses, NSR's all from wrong ones
    assert (psr["loss_tokens_neg"] == 0).all() and psr["loss_tokens_pos"].sum() > 0
    assert (nsr["loss_tokens_pos"] == 0).all() and nsr["loss_tokens_neg"].sum() > 0
    for algorithm in ("grpo", "w_reinforce", "a3po"):  # both polarities, verdicts in the loss
        both = metrics(study, algorithm)
        assert (both["loss_tokens_pos"] > 0).any() and (both["loss_tokens_neg"] > 0).all(), algorithm
    dapo = metrics(study, "dapo")  # dynamic sampling: only mixed groups are trained on
    assert (dapo["frac_groups_all_correct"] == 0).all() and (dapo["frac_groups_all_wrong"] == 0).all()
    grpo = metrics(study, "grpo")
    assert (grpo["frac_groups_dropped"] == 0).all()
    a3po = metrics(study, "a3po")
    assert list(a3po["a3po_step"]) == list(range(STEPS))
    assert {"a3po/s_pos", "a3po/s_neg", "a3po/amplified_frac_pos"} <= set(a3po.columns)
    popo = metrics(study, "popo")  # positives only; after each optimizer step the EMA target
    # moved (1 - tau) of its distance to the policy: the distance shrank by tau
    from polarity.algorithms import resolve

    tau = resolve("popo", STUDY["algorithm_params"].get("popo")).popo_tau
    assert (popo["n_negative"] == 0).all() and popo["n_positive"].sum() > 0
    assert list(popo["popo/ema_gap_ratio"]) == pytest.approx([tau] * STEPS, rel=1e-5)
    assert (popo["popo/ema_gap_before"] > 0).all()
    assert popo["popo/sim_loss"].notna().all() and popo["popo/weight_entropy"].notna().all()
    assert "loss_tokens_pos" not in popo.columns  # POPO's own loss, not the PPO-clip one
    ppo = metrics(study, "ppo")  # verl's GAE with its critic
    assert "verl/critic/vf_loss" in ppo.columns and ppo["verl/critic/vf_loss"].notna().all()
    assert "a3po_step" not in grpo.columns


@pytest.mark.slow
def test_killed_run_resumed_from_its_checkpoint(study):
    """The A3PO run was killed after step 1's checkpoint: the re-run went on from there (its
    second attempt logged only verl step 2), and the metrics hold every step once."""
    state = run_dir(study, "a3po") / "state"
    attempts = sorted((state / "verl_logs").glob("attempt-*.jsonl"))
    assert len(attempts) == 2
    second = [json.loads(line) for line in attempts[1].read_text().splitlines() if line.strip()]
    trained = sorted({r["step"] for r in second if "training/global_step" in r["data"]})
    assert trained == [2]
    df = metrics(study, "a3po")
    assert list(df["step"]) == [0, 1]
    assert list(df["a3po_step"]) == [0, 1]  # A3PO's decay went on from the checkpoint's step
    from polarity.algorithms import a3po_selections, decayed_scale, resolve

    main = a3po_selections(resolve("a3po", STUDY["algorithm_params"]["a3po"]))[0]
    want = [decayed_scale(main.rho, main.alpha, step) for step in (0, 1)]
    assert list(df["a3po/s_pos"]) == pytest.approx(want)


@pytest.mark.slow
def test_popo_checkpoints_hold_a_moving_target_and_predictor(study):
    """verl's checkpoints of the POPO run hold the EMA target and the predictor, and both moved
    from step 1 to step 2."""
    import torch

    folder = run_dir(study, "popo") / "state" / "verl_checkpoints"
    saved = [torch.load(folder / f"global_step_{s}" / "actor" / "popo_rank0.pt", weights_only=False)
             for s in (1, 2)]
    assert len(saved[0]["target"]) == len(saved[1]["target"]) > 0
    assert any(not torch.equal(a, b) for a, b in zip(saved[0]["target"], saved[1]["target"]))
    assert any(not torch.equal(saved[0]["predictor"][k], saved[1]["predictor"][k])
               for k in saved[0]["predictor"])


@pytest.mark.slow
def test_merged_final_is_the_trained_policy(study):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_dir = study / "results" / "verl-cpu" / "models" / "tiny"
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    ids = tokenizer("Compute 3 + 4. Answer:", return_tensors="pt").input_ids

    def logprobs(path):
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        with torch.no_grad():
            return torch.log_softmax(model(ids).logits.float(), -1)

    base = logprobs(base_dir)
    for algorithm in ALGORITHMS:
        final = run_dir(study, algorithm) / "final"
        trained = logprobs(final)
        assert trained.shape == base.shape
        assert (trained - base).abs().max() > 1e-4, f"{algorithm}: final/ is the base model"


@pytest.mark.slow
def test_reports_render_the_verl_study(study):
    report = study / "results" / "verl-cpu" / "report"
    for name, figures in (("training", 5), ("evaluation", 2)):
        assert notebook_errors(report / f"{name}.ipynb") == []
        assert count_figures(report / f"{name}.ipynb") >= figures
    html = (report / "evaluation.html").read_text()
    for algorithm in ALGORITHMS:
        assert re.search(rf"\b{algorithm}\b", html), f"evaluation.html lacks {algorithm}"


# fake SLURM commands of the launch tests: two "nodes" on this machine
from .test_verl_launch import FAKE_SCONTROL, FAKE_SRUN  # noqa: E402


@pytest.mark.slow
def test_two_nodes_train_through_the_launch_script(study, tmp_path):
    """PSR with ``verl.nnodes: 2``: the launch script starts a Ray head and a worker node (fake
    ``srun``/``scontrol``, both on this machine) and verl trains with one worker on each, while
    a stale ``~/.ray/auth_token`` lies in the home directory. PSR: the actor workers sum their
    kept rows over both data-parallel ranks (our worker's all-reduce) and train on positives only;
    with a KL penalty, so verl's reference policy runs on CPUs too (a full FSDP engine there)."""
    import tempfile

    from .helpers import one_ray_head
    from .verl_helpers import load_study

    # two data-parallel ranks: each micro-batch holds half a mini-batch (2 prompts x 4 / 2)
    config = load_study(CONFIG, verl={**STUDY["verl"], "nnodes": 2, "micro_batch_per_gpu": 4},
                        algorithms=["psr"], train={"kl_coef": 0.001})  # KL: verl's ref policy
    settings = {k: config[k] for k in ("study", "train", "verl", "algorithm_params")}
    bin_dir, home = tmp_path / "bin", tmp_path / "home"
    bin_dir.mkdir()
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text("0" * 64)
    for name, text in (("scontrol", FAKE_SCONTROL), ("srun", FAKE_SRUN)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    ray_tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # Ray's socket paths must stay short
    env = {k: v for k, v in _env().items() if not k.startswith(("SLURM_", "RAY_"))}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", HOME=str(home), RAY_TMPDIR=ray_tmp,
               SLURM_JOB_NODELIST="node[1-2]", FAKE_NODES="node1 node2",
               FAKE_SRUN_LOG=str(tmp_path / "srun.log"))
    data = study / "results" / "verl-cpu" / "data"
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "polarity", "train-verl", "--study", json.dumps(settings),
           "--model-name", "tiny", "--model", str(study / "results" / "verl-cpu" / "models" / "tiny"),
           "--data", str(data / "synthetic-arith-train.parquet"),
           "--val", str(data / "synthetic-arith-test.parquet"), "--algorithm", "psr",
           "--seed", "0", "--run-dir", str(run), "--metrics", str(run / "metrics.jsonl"),
           "--done", str(run / "verl_final.json")]
    with one_ray_head():  # the launch script's `ray start --head`
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=study, timeout=900)
    out = proc.stdout[-4000:] + proc.stderr[-4000:]
    assert proc.returncode == 0, out
    calls = (tmp_path / "srun.log").read_text()
    assert "-w node1 ray start --head" in calls and "-w node2 ray start --address=" in calls
    assert "2/2 nodes, 2/2 GPUs" in proc.stderr
    df = pd.read_json(run / "metrics.jsonl", lines=True)
    assert list(df["step"]) == list(range(STEPS))
    assert (df["grad_norm"] > 0).any() and (df["verl/training/rollout_probs_diff_max"] < 1e-4).all()
    assert (df["loss_tokens_neg"] == 0).all() and (df["loss_tokens_pos"] > 0).any()
    kl = df["verl/actor/kl_loss"]  # k3 against the reference: 0 before the first update, then > 0
    assert kl.notna().all() and (kl >= 0).all() and (kl > 0).any()
