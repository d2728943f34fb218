"""One verl training run, end to end: check, launch, collect metrics, merge to Hugging Face.

The train rule calls :func:`train`; it composes and validates the verl command line with verl's
own config (a misspelt key fails here, not after the job has waited for 16 GPUs), checks prompt
lengths against the tokenizer, writes the launch script (single node, or Ray across the SLURM
allocation), runs it, and converts verl's file log into our ``metrics.jsonl``. Checkpoints stay
in ``state/`` (not a Snakemake output) and verl resumes from the newest (``resume_mode=auto``).
The merge rule turns the final FSDP checkpoint into the declared ``final/`` Hugging Face model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from ...files import atomic_dir, write_json
from . import launch, logs
from .overrides import (
    CPU_RAY_CPUS_PER_WORKER,
    command_line,
    compose,
    render,
    run_env,
    run_paths,
    validate,
    verl_overrides,
)


def prepare(
    study: dict,
    *,
    python: str = sys.executable,
    check_data: bool = True,
    log: Callable[[str], None] = print,
    **run,
) -> tuple[list[str], Path]:
    """Compose + validate the overrides, check the data, write the launch script; returns both.

    ``run`` names the run as :func:`~.overrides.verl_overrides` takes it (model, algorithm,
    seed, model_path, train_file, val_file, run_dir).
    """
    overrides = verl_overrides(study, **run)
    validate(compose(overrides))
    if check_data:
        from transformers import AutoTokenizer

        from .data import check_lengths

        tokenizer = AutoTokenizer.from_pretrained(run["model_path"])
        summary = check_lengths(Path(run["train_file"]), tokenizer,
                                max_prompt_tokens=study["train"]["max_prompt_tokens"],
                                max_response_tokens=study["train"]["max_response_tokens"])
        log(f"prompt lengths: {summary}")
    paths = run_paths(run["run_dir"])
    paths["lenient_only"].mkdir(parents=True, exist_ok=True)  # empty: nothing flagged yet
    env = {**run_env(overrides),
           "VERL_FILE_LOGGER_PATH": str(logs.next_attempt_log(paths["logs"]))}
    verl = study["verl"]
    cpus = (CPU_RAY_CPUS_PER_WORKER * verl["gpus_per_node"]
            if verl.get("device", "cuda") == "cpu" else None)
    command = command_line(overrides, python=python, hydra_dir=paths["hydra"])
    text = launch.launch_script(command, env=env,
                                nnodes=verl["nnodes"], gpus_per_node=verl["gpus_per_node"],
                                python=python, cpus_per_node=cpus)
    script = launch.write_launch_script(paths["script"], text)
    log("verl command:\n" + render(command))
    return overrides, script


def final_checkpoint(run_dir: str | Path) -> tuple[int, Path | None]:
    """verl's newest global step folder under the run's checkpoint dir (0, None if none)."""
    from verl.utils.checkpoint.checkpoint_manager import find_latest_ckpt_path

    ckpts = run_paths(run_dir)["checkpoints"]
    folder = find_latest_ckpt_path(str(ckpts)) if ckpts.is_dir() else None
    if not folder:
        return 0, None
    return int(str(folder).rsplit("global_step_", 1)[-1]), Path(folder)


def train(
    study: dict,
    *,
    metrics_out: str | Path,
    done_out: str | Path,
    log: Callable[[str], None] = print,
    **run,
) -> dict:
    """Run (or resume) one verl training run to ``train.steps``; write metrics and a manifest.

    ``run`` is as for :func:`prepare`.
    """
    _, script = prepare(study, log=log, **run)
    algorithm, seed, run_dir = run["algorithm"], run["seed"], run["run_dir"]
    step, _ = final_checkpoint(run_dir)
    log(f"launching {script} (newest checkpoint: step {step})")
    proc = subprocess.run(["bash", str(script)], stdout=sys.stdout, stderr=sys.stderr,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    paths = run_paths(run_dir)
    shape = {k: int(study["train"][k]) for k in
             ("prompts_per_step", "rollouts_per_prompt", "mini_batch_prompts")}
    rows = logs.collect_metrics(paths["logs"], Path(metrics_out), algorithm=algorithm, seed=seed,
                                rollouts=paths["rollouts"], batch_stats=paths["batch_stats"],
                                shape=shape, lenient_only=paths["lenient_only"])
    if proc.returncode != 0:
        raise SystemExit(f"verl exited with {proc.returncode}; checkpoints and logs are kept in "
                         f"{run_paths(run_dir)['state']}: re-run the workflow to resume")
    step, folder = final_checkpoint(run_dir)
    want = int(study["train"]["steps"])
    if step != want or folder is None:
        raise SystemExit(f"verl finished but its newest checkpoint is step {step}, not {want} "
                         "(train.steps): is trainer.save_freq saving the last step?")
    manifest = {"algorithm": algorithm, "seed": seed, "model": run["model"], "step": step,
                "checkpoint": str(folder / "actor"), "metrics_rows": len(rows)}
    write_json(done_out, manifest, indent=1)
    return manifest


def merger_config(checkpoint: str | Path, target: str | Path):
    """verl's merger config for ``python -m verl.model_merger merge --backend fsdp --local_dir
    <checkpoint> --target_dir <target>`` (its own CLI's defaults for every other option)."""
    from argparse import Namespace

    from verl.model_merger.base_model_merger import generate_config_from_args

    return generate_config_from_args(Namespace(
        operation="merge", backend="fsdp", local_dir=str(checkpoint), target_dir=str(target),
        tie_word_embedding=False, trust_remote_code=False, is_value_model=False,
        use_cpu_initialization=False, hf_upload_path=None, private=False))


def merge(done_json: str | Path, out: str | Path, log: Callable[[str], None] = print) -> Path:
    """verl's model merger: the final FSDP checkpoint -> a Hugging Face model in ``out``.

    Runs verl's ``FSDPModelMerger`` in this process (what ``python -m verl.model_merger merge``
    runs), not in a second Python that would import torch and verl again."""
    from verl.model_merger.fsdp_model_merger import FSDPModelMerger

    manifest = json.loads(Path(done_json).read_text())

    def write(tmp: Path) -> None:
        config = merger_config(manifest["checkpoint"], tmp)
        log(f"merging {config.local_dir} -> {out} with verl's FSDPModelMerger")
        merger = FSDPModelMerger(config)
        merger.merge_and_save()
        merger.cleanup()

    return atomic_dir(out, write)
