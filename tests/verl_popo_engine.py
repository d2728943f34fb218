"""verl's actor worker and FSDP engine in one process on a CPU, in a POPO run: a test helper.

Run as ``python -m tests.verl_popo_engine OUT_DIR [--resume] [--world=N]`` from the repository
root (a fresh
process: verl's platform is fixed at its first import, and ``VERL_PLATFORM=cpu`` must come
first). It builds the tiny model of ``OUT_DIR/model`` (made by the caller), the actor worker
exactly as verl's ``ActorRolloutRefWorker.init_model`` does (one rank, gloo), then trains the
recorded batch ``OUT_DIR/batch.pt`` mini-batch by mini-batch with verl's ``train_mini_batch``,
and writes what the tests compare:

* ``OUT_DIR/first.pt``: the first micro-batch's loss and the gradients of actor and predictor,
  before any optimizer step (the POPO loss of verl against the local backend's);
* ``OUT_DIR/steps.pt``: after each training step, the actor's, the target's and the predictor's
  parameters and the step's metrics.

With ``--kill-after-checkpoint``: one step, verl's checkpoint, then SIGKILL; ``--resume`` then
starts a fresh process whose worker loads that checkpoint and trains the rest
(``OUT_DIR/resumed.pt``). With ``--world=N``: N processes, one rank each (one
gloo group), row i of every step on rank i % N, so each prompt's rollouts sit on several ranks
(files ``first-Nranks.pt``, ``steps-Nranks.pt``, written by rank 0).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from functools import partial
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup_env(out: Path) -> list[str]:
    from polarity.backends.verl import overrides as ov

    from .verl_helpers import study_config

    study = study_config(backend="verl", algorithms=["popo"],
                         train={"max_response_tokens": 8, "mini_batch_prompts": 2,
                                "prompts_per_step": 4, "rollouts_per_prompt": 2, "lr": 1e-2},
                         verl={"device": "cpu", "micro_batch_per_gpu": 2},
                         algorithm_params={"popo": json.loads((out / "params.json").read_text())})
    o = ov.verl_overrides(study, model="tiny", algorithm="popo", seed=0,
                          model_path=str(out / "model"), train_file="/t.parquet",
                          val_file="/v.parquet", run_dir=out / "run")
    os.environ.update(ov.run_env(o))
    if "RANK" not in os.environ:  # one rank; several: the launching process set these
        os.environ.update(RANK="0", WORLD_SIZE="1", MASTER_PORT=str(_free_port()))
    os.environ.update(LOCAL_RANK="0", MASTER_ADDR="127.0.0.1")
    return o


def build_worker(o: list[str]):
    from omegaconf import open_dict
    from verl.utils.config import omega_conf_to_dataclass
    from verl.workers.config import TrainingWorkerConfig
    from verl.workers.utils.losses import ppo_loss

    from polarity.backends.verl import overrides as ov
    from polarity.backends.verl.worker import PolarityTrainingWorker

    cfg = ov.compose(o)
    with open_dict(cfg):
        cfg.actor_rollout_ref.actor.optim.total_training_steps = 10
    model_config = omega_conf_to_dataclass(cfg.actor_rollout_ref.model)
    actor = omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)
    actor.model_config = model_config
    config = TrainingWorkerConfig(model_type="language_model", model_config=model_config,
                                  engine_config=actor.engine, optimizer_config=actor.optim,
                                  checkpoint_config=actor.checkpoint)
    config.engine_config.use_dynamic_bsz = False
    config.engine_config.micro_batch_size_per_gpu = cfg.actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu
    config.engine_config.infer_micro_batch_size_per_gpu = config.engine_config.micro_batch_size_per_gpu
    config.engine_config.use_remove_padding = True
    worker = PolarityTrainingWorker(config=config)
    worker.reset()
    worker.set_loss_fn(partial(ppo_loss, config=actor))
    return worker, cfg


def actor_batch(rows: dict, step: int):
    """One step's rows as verl's v1 actor receives them: jagged prompt + response tokens,
    positions, masks, the old policy's log-probs, the verdicts and the group uids."""
    import torch
    from tensordict.tensorclass import NonTensorStack
    from verl.utils import tensordict_utils as tu

    b = dict(rows[step])
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    for key in ("prompts", "responses", "correct", "old_log_probs", "uids"):  # row i: rank i % world
        b[key] = [x for i, x in enumerate(b[key]) if i % world == rank]

    def jag(xs, dtype):
        return torch.nested.nested_tensor([torch.as_tensor(x, dtype=dtype) for x in xs],
                                          layout=torch.jagged)

    seqs = [list(p) + list(r) for p, r in zip(b["prompts"], b["responses"])]
    scores = [[0.0] * (len(r) - 1) + [float(c)] for r, c in zip(b["responses"], b["correct"])]
    data = tu.get_tensordict(
        {"input_ids": jag(seqs, torch.long),
         "position_ids": jag([list(range(len(s))) for s in seqs], torch.long),
         "prompts": jag(b["prompts"], torch.long), "responses": jag(b["responses"], torch.long),
         "response_mask": jag([[1] * len(r) for r in b["responses"]], torch.long),
         "loss_mask": jag([[1] * len(r) for r in b["responses"]], torch.long),
         "old_log_probs": jag(b["old_log_probs"], torch.float32),
         "advantages": jag([[0.0] * len(r) for r in b["responses"]], torch.float32),
         "rm_scores": jag(scores, torch.float32)},
        {"temperature": 1.0, "global_batch_size": b["mini_batch"],
         "mini_batch_size": b["mini_batch"], "epochs": 1, "seed": 0,
         "dataloader_kwargs": {"shuffle": False}, "calculate_entropy": True},
    )
    data["uid"] = NonTensorStack(*b["uids"])
    return data


def params(worker) -> dict:
    from torch.distributed.tensor import DTensor

    def full(p):
        return (p.full_tensor() if isinstance(p, DTensor) else p).detach().clone()

    engine = worker.engine
    return {"actor": {n: full(p) for n, p in engine.module.named_parameters()},
            "target": {n: full(p) for n, p in engine.popo_target.named_parameters()},
            "predictor": {n: p.detach().clone() for n, p in engine.popo_predictor.named_parameters()}}


def first_gradients(worker, data) -> dict:
    """The first step's loss and gradients (no optimizer step), through the engine's own
    micro-batch loop, forward and loss, without the target's noise (the local backend draws its
    noise per mini-batch, verl per micro-batch: the draws cannot match)."""
    from dataclasses import replace

    import torch
    from verl.utils import tensordict_utils as tu

    from polarity.backends.verl import popo

    engine = worker.engine
    mini = data  # the step is one mini-batch (mini_batch_size: every row)
    worker.add_popo_totals(mini)
    tu.assign_non_tensor(mini, use_remove_padding=True, micro_batch_size_per_gpu=2,
                         use_dynamic_bsz=False, use_fused_kernels=False)
    recipe, noise = engine.popo_recipe, engine.popo_noise.get_state()
    engine.popo_recipe = replace(recipe, popo_noise=0.0)
    losses = []

    def loss_fn(**kw):
        loss, metrics = worker.loss_fn(**kw)
        losses.append(loss.detach().clone())
        return loss, metrics

    try:
        with engine.train_mode():
            engine.optimizer_zero_grad()
            engine.forward_backward_batch(mini, loss_fn)  # FSDP averages the actor's gradient
            engine.popo_average_predictor_grads()  # what optimizer_step does first

            def grad(p):
                return (p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad).clone()

            grads = {"actor": {n: grad(p) for n, p in engine.module.named_parameters()},
                     "predictor": {n: grad(p) for n, p in engine.popo_predictor.named_parameters()}}
            engine.optimizer_zero_grad()
    finally:
        engine.popo_recipe = recipe
        engine.popo_noise.set_state(noise)
    loss = torch.stack(losses).sum() / tu.get_non_tensor_data(mini, "dp_size", 1)
    torch.distributed.all_reduce(loss)  # the ranks' shares add up to the mini-batch's loss
    return {"loss": loss, "micro_batches": len(losses), "grads": grads,
            "weights": mini[popo.WEIGHTS].clone()}


def launch_ranks(world: int) -> int:
    """Run this script once per rank (``RANK``/``WORLD_SIZE`` set, one gloo group)."""
    import subprocess

    port = str(_free_port())
    args = [a for a in sys.argv[1:] if not a.startswith("--world")]
    procs = [subprocess.Popen([sys.executable, "-m", "tests.verl_popo_engine", *args],
                              env={**os.environ, "RANK": str(r), "WORLD_SIZE": str(world),
                                   "MASTER_PORT": port}) for r in range(world)]
    return max(p.wait() for p in procs)


def main() -> None:
    out = Path(sys.argv[1])
    kill, resume = "--kill-after-checkpoint" in sys.argv, "--resume" in sys.argv
    world = next((int(a.split("=")[1]) for a in sys.argv if a.startswith("--world=")), 1)
    if world > 1 and "RANK" not in os.environ:
        sys.exit(launch_ranks(world))
    o = setup_env(out)
    suffix = "" if int(os.environ["WORLD_SIZE"]) == 1 else f"-{os.environ['WORLD_SIZE']}ranks"
    rank0 = os.environ["RANK"] == "0"
    import torch

    from polarity.backends.verl import cpu

    cpu.install()  # the plugin was imported (by the overrides) before VERL_PLATFORM was set
    rows = torch.load(out / "batch.pt", weights_only=False)
    worker, _ = build_worker(o)
    ckpt = str(out / f"ckpt{suffix}")
    if not (kill or resume):
        data = actor_batch(rows, 0)
        worker.add_popo_weights(data)
        first = {**first_gradients(worker, data), "initial": params(worker)}
        if rank0:
            torch.save(first, out / f"first{suffix}.pt")
    start = 0
    if resume:  # a restarted job: verl's worker loads the checkpoint, then trains on
        worker.load_checkpoint(ckpt)
        start = 1
    steps = [None] * start
    for step in range(start, len(rows)):
        output = worker.train_mini_batch(actor_batch(rows, step))
        metrics = {k: v for k, v in output["metrics"].items()} if output is not None else {}
        steps.append({"params": params(worker), "metrics": metrics})
        if kill:  # verl's worker saves step 1's checkpoint, then the job is killed
            worker.save_checkpoint(ckpt, global_step=1)
            os.kill(os.getpid(), signal.SIGKILL)
    if rank0:
        torch.save(steps, out / f"{'resumed' if resume else 'steps'}{suffix}.pt")
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
