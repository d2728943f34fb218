"""verl step time: the project's estimator and loss against verl's built-in GRPO (target <= 1.10x).

Both runs are verl's own trainer on this CPU (``verl.device: cpu``) with the same tiny model,
data, seed and settings (tests/configs/verl-cpu.yaml's study), one after the other in this
process: ``grpo`` through the project's plugin (``algorithm.adv_estimator=polarity``,
``policy_loss.loss_mode=polarity``), then the same run with verl's ``adv_estimator=grpo`` and
``loss_mode=vanilla``. The figure is the median of verl's ``timing_s/step`` over the steps after
the first (start-up and the first step's one-time costs excluded); the parts the plugin touches
(``timing_s/adv``, ``timing_s/update_actor``) are printed too.

Usage: python benchmarks/bench_verl_step.py [--steps 8] [--workdir DIR]
(makes the tiny model and data with Snakemake first when they are missing).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CONFIG = REPO / "tests" / "configs" / "verl-cpu.yaml"
TIMINGS = ("timing_s/step", "timing_s/gen", "timing_s/adv", "timing_s/update_actor")
BUILTIN = {"algorithm.adv_estimator": "grpo",
           "actor_rollout_ref.actor.policy_loss.loss_mode": "vanilla"}


def inputs(workdir: Path) -> dict[str, Path]:
    """The study's tiny model and data under ``workdir`` (made by Snakemake if missing)."""
    results = workdir / "results" / "verl-cpu"
    paths = {"model": results / "models" / "tiny",
             "train": results / "data" / "synthetic-arith-train.parquet",
             "val": results / "data" / "synthetic-arith-test.parquet"}
    if not all(p.exists() for p in paths.values()):
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        targets = [str(paths[k].relative_to(workdir)) for k in ("model", "train")]
        subprocess.run([sys.executable, "-m", "snakemake", *targets,
                        "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
                        "--configfile", str(CONFIG), "--cores", "2", "--quiet"],
                       check=True, env=env)
    return paths


def replace(overrides: list[str], new: dict[str, str]) -> list[str]:
    """``overrides`` with the values of ``new``'s keys replaced (each key must be there)."""
    out, seen = [], set()
    for item in overrides:
        key = item.split("=", 1)[0]
        if key in new:
            item, _ = f"{key}={new[key]}", seen.add(key)
        out.append(item)
    missing = set(new) - seen
    if missing:
        raise KeyError(f"not in the overrides: {sorted(missing)}")
    return out


def run_verl(study: dict, paths: dict, run_dir: Path, builtin: bool) -> list[dict]:
    """One verl training run; its metrics rows (verl's names under ``verl/``)."""
    from polarity.backends.verl import launch, logs
    from polarity.backends.verl.overrides import command_line, run_env, run_paths, verl_overrides

    overrides = verl_overrides(study, model="tiny", algorithm="grpo", seed=0,
                               model_path=str(paths["model"]), train_file=paths["train"],
                               val_file=paths["val"], run_dir=run_dir)
    if builtin:
        overrides = replace(overrides, BUILTIN)
    state = run_paths(run_dir)
    env = {**run_env(overrides), "VERL_FILE_LOGGER_PATH": str(logs.next_attempt_log(state["logs"]))}
    script = launch.write_launch_script(state["script"], launch.launch_script(
        command_line(overrides, python=sys.executable, hydra_dir=state["hydra"]), env=env, nnodes=1,
        gpus_per_node=study["verl"]["gpus_per_node"], python=sys.executable))
    log = run_dir / "verl.log"
    with open(log, "w") as f:
        proc = subprocess.run(["bash", str(script)], stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise SystemExit(f"verl failed ({proc.returncode}): see {log}")
    return logs.to_metrics_rows(logs.merge_attempts(logs.attempt_logs(state["logs"])),
                                algorithm="grpo", seed=0)


def main(argv=None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8, help="training steps per run (>= 4)")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="where the study's model and data are (default: a fresh temporary dir)")
    args = ap.parse_args(argv)
    if args.steps < 4:
        ap.error("--steps must be >= 4")
    from tests.verl_helpers import load_study

    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="bench-verl-"))).resolve()
    paths = inputs(workdir)
    study = load_study(CONFIG, train={"steps": args.steps, "save_every": args.steps})
    medians = {}
    for name, builtin in (("polarity", False), ("verl-grpo", True)):
        run_dir = workdir / "bench" / name
        rows = run_verl(study, paths, run_dir, builtin)
        if len(rows) != args.steps:
            raise SystemExit(f"{name}: {len(rows)} steps logged, expected {args.steps}")
        later = rows[1:]
        medians[name] = {t: statistics.median(r[f"verl/{t}"] for r in later) for t in TIMINGS}
        print(f"{name:10s} " + "  ".join(f"{t.split('/')[-1]} {medians[name][t]:.3f}s"
                                         for t in TIMINGS)
              + f"  (median of steps 2-{args.steps})")
    ratio = medians["polarity"]["timing_s/step"] / medians["verl-grpo"]["timing_s/step"]
    print(f"step time, polarity estimator+loss / verl built-in GRPO: {ratio:.3f}x (target <= 1.10x)")
    return ratio


if __name__ == "__main__":
    main()
