"""Our algorithms inside verl: one advantage estimator and one policy loss, both calling
``polarity.algorithms`` (no second implementation).

verl imports this module in every process that imports verl (driver, TaskRunner, Ray workers)
because the launch exports ``VERL_USE_EXTERNAL_MODULES=polarity.backends.verl.plugin`` and the
generated overrides put the same variable into Ray's ``runtime_env``.

What verl gives each function (verl 0.9.1 call sites):

* the estimator (``algorithm.adv_estimator=polarity``, run by the driver in
  ``verl.trainer.ppo.ray_trainer.compute_advantage``) gets ``token_level_rewards``,
  ``response_mask``, ``index`` (group uid) and the algorithm config: rewards and groups, no
  log-probs and no step;
* the policy loss (``actor.policy_loss.loss_mode=polarity``, run in the actor workers by
  ``verl.workers.utils.losses.ppo_loss``) gets ``old_log_prob``, ``log_prob``, ``advantages``,
  ``response_mask``, ``loss_agg_mode``, the actor config and ``rollout_is_weights``: no rewards
  and no step.

So the work is split where the inputs are:

* the estimator computes the sequence advantage of the recipe (GRPO / Dr.GRPO / REINFORCE, the
  polarity filter and weights, DAPO's overlong shaping from token lengths) from the 0/1
  math-verify verdicts of our reward function, exactly as the local backend does;
* the loss applies A3PO's token shaping (it needs the old policy's per-token probabilities,
  fixed for the rollout batch: verl's ``old_log_prob``) and the PPO-clip surrogate, then
  aggregates with verl's ``agg_loss`` so that data-parallel and micro-batch scaling stay verl's.

Two facts reach the loss from outside its arguments:

* **polarity** (A3PO's positives and negatives, PSR/NSR's filter): from correctness, as on the
  local backend, read in the actor worker from verl's own batch data (``rm_scores``, our
  reward function's verdicts): ``worker.py`` drops filtered rows from the loss's masks and
  denominators and hands each micro-batch's verdicts to :func:`polarity_policy_loss`.
* **global step** (A3PO's decay): the estimator runs once per training step on the driver. A
  :class:`StepClock` there numbers the steps from verl's own resume point (the newest
  ``global_step_N`` folder under ``trainer.default_local_dir``, found with verl's
  ``find_latest_ckpt_path``), so after a resume from step N the next step is N, exactly as an
  uninterrupted run. It writes ``{"step": k}`` atomically to the run's step file (on the shared
  file system that holds the checkpoints) before the actor update of that step starts; the loss
  reads it. The driver calls the estimator before ``update_actor`` in every step, so the file is
  always current when the loss runs.

The run's settings travel in the environment variable ``POLARITY_VERL_RUN`` (JSON, see
:class:`VerlRun`), set by the overrides in Ray's ``runtime_env`` for every worker.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from verl.trainer.ppo.core_algos import agg_loss, register_adv_est, register_policy_loss

from polarity.algorithms import (
    a3po_selections,
    ppo_clip_token_loss,
    resolve,
    sequence_advantages,
    sequence_rewards,
    shape_with_selections,
)
from polarity.algorithms.a3po import a3po_metrics
from polarity.algorithms.registry import Recipe
from polarity.files import write_json

ESTIMATOR = "polarity"
LOSS = "polarity"
RUN_ENV = "POLARITY_VERL_RUN"
PLUGIN_MODULE = "polarity.backends.verl.plugin"


from . import worker  # noqa: E402

worker.install()  # the actor worker that reads polarity from verl's batch data

if os.environ.get("VERL_PLATFORM", "").strip().lower() == "cpu":  # a `verl.device: cpu` run
    from . import cpu

    cpu.install()


@dataclass(frozen=True)
class VerlRun:
    """What the plugin needs to know about the run, beyond what verl passes to it."""

    algorithm: str
    params: dict
    max_response_tokens: int
    step_file: str
    checkpoint_dir: str
    calls_per_step: int = 1  # estimator calls per global step (verl's parameter_sync_step)
    stats_dir: str = ""  # the estimator's per-step batch statistics: <stats_dir>/<step>.json
    seed: int = 0  # the run's seed (POPO's predictor and noise)

    @property
    def recipe(self) -> Recipe:
        return resolve(self.algorithm, self.params)

    def to_env(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_env(cls, text: str | None = None) -> VerlRun:
        text = os.environ.get(RUN_ENV) if text is None else text
        if not text:
            raise RuntimeError(
                f"{RUN_ENV} is not set: the polarity estimator/loss need the run's settings "
                "(the launch script and Ray runtime_env of `polarity train-verl` set it)"
            )
        return cls(**json.loads(text))


@lru_cache(maxsize=4)
def _run_from(text: str) -> VerlRun:
    return VerlRun.from_env(text)


def current_run() -> VerlRun:
    return _run_from(os.environ.get(RUN_ENV, ""))


# ---------------------------------------------------------------------------------------------
# The global step (driver side writes, worker side reads)


def resumed_step(checkpoint_dir: str | Path) -> int:
    """verl's global step of the checkpoint it will resume from (0 when starting fresh)."""
    from verl.utils.checkpoint.checkpoint_manager import find_latest_ckpt_path

    folder = find_latest_ckpt_path(str(checkpoint_dir)) if Path(checkpoint_dir).is_dir() else None
    return int(str(folder).rsplit("global_step_", 1)[-1]) if folder else 0




def write_step(step_file: str | Path, step: int, **extra) -> None:
    write_json(step_file, {"step": int(step), **extra})


def batch_stats(correct: Tensor, rewards: Tensor, trained: Tensor, group_ids: list) -> dict:
    """The trained batch's polarity and group statistics, named as the local backend's metrics.

    ``trained`` marks the responses the loss trains on (PSR/NSR drop one polarity).
    """
    n_pos, n_neg = int((trained & correct).sum()), int((trained & ~correct).sum())
    groups: dict = {}
    for gid, ok in zip(group_ids, correct.tolist()):
        groups.setdefault(gid, []).append(ok)
    n_groups = max(len(groups), 1)
    return {
        "batch_responses": len(correct),
        "n_positive": n_pos, "n_negative": n_neg,
        "frac_positive": n_pos / max(n_pos + n_neg, 1),
        "frac_negative": n_neg / max(n_pos + n_neg, 1),
        "trained_reward_mean": float(rewards.float().mean()),
        "reward_mean": float(rewards.float().mean()),  # shaped, as the local backend's
        "frac_groups_all_correct": sum(all(g) for g in groups.values()) / n_groups,
        "frac_groups_all_wrong": sum(not any(g) for g in groups.values()) / n_groups,
    }


def read_step(step_file: str | Path) -> int:
    """The step the driver published for the update now running (A3PO's ``step``)."""
    try:
        return int(json.loads(Path(step_file).read_text())["step"])
    except FileNotFoundError:
        raise RuntimeError(
            f"A3PO step file {step_file} is missing: the polarity estimator publishes it on the "
            "driver before each actor update (is algorithm.adv_estimator=polarity?)"
        ) from None


class StepClock:
    """A3PO's 0-based step on the driver: verl's resume point plus the steps run since."""

    def __init__(self, step_file: str, checkpoint_dir: str, calls_per_step: int = 1):
        self.step_file, self.checkpoint_dir = step_file, checkpoint_dir
        self.calls_per_step = max(1, int(calls_per_step))
        self.start: int | None = None
        self.calls = 0

    def advance(self, **extra) -> int:
        if self.start is None:  # first step of this process: where did verl resume?
            self.start = resumed_step(self.checkpoint_dir)
        step = self.start + self.calls // self.calls_per_step
        self.calls += 1
        write_step(self.step_file, step, **extra)
        return step


_CLOCKS: dict[str, StepClock] = {}


def clock_for(run: VerlRun) -> StepClock:
    if run.step_file not in _CLOCKS:
        _CLOCKS[run.step_file] = StepClock(run.step_file, run.checkpoint_dir, run.calls_per_step)
    return _CLOCKS[run.step_file]


def reset_clocks() -> None:
    """Forget the driver's clocks (a new process after a restart starts with none)."""
    _CLOCKS.clear()


# ---------------------------------------------------------------------------------------------
# The advantage estimator


def _group_ids(index, batch: int) -> list:
    if index is None:
        raise ValueError("the polarity estimator needs the group uid (verl's `index`)")
    ids = list(index.tolist() if isinstance(index, (np.ndarray, Tensor)) else index)
    if len(ids) != batch:
        raise ValueError(f"index has {len(ids)} entries for {batch} responses")
    return ids


@register_adv_est(ESTIMATOR)
def polarity_advantage(
    token_level_rewards: Tensor,
    response_mask: Tensor,
    index=None,
    config=None,
    **_: object,
) -> tuple[Tensor, Tensor]:
    """Token advantages [B, T] of the run's recipe from 0/1 verdicts (verl's estimator API).

    Correctness c_i = (sum_t reward_{i,t} > 0.5): our reward function scores 1.0 or 0.0 and verl
    puts it on the last response token. Rewards r_i = 1 if correct else the recipe's
    ``incorrect_reward`` (0, or DAPO's -1), plus DAPO's overlong penalty from the token length
    when the recipe asks for it; then ``sequence_advantages`` as on the local
    backend, broadcast over the response tokens. Returns (advantages, returns).
    """
    run = current_run()
    recipe = run.recipe
    mask = response_mask.float()
    correct = worker.correct_from_scores(token_level_rewards)
    lengths = mask.sum(dim=-1)
    rewards = sequence_rewards(recipe, correct, lengths, run.max_response_tokens)
    ids = _group_ids(index, len(correct))
    adv, keep = sequence_advantages(recipe, rewards, correct, ids)
    step = clock_for(run).advance(responses=len(correct))
    if run.stats_dir:
        trained = correct if recipe.objective == "popo" else keep  # POPO trains on positives
        write_json(Path(run.stats_dir) / f"{step}.json",
                   batch_stats(correct, rewards, trained & (lengths > 0), ids))
    token_adv = adv.to(mask.dtype).unsqueeze(-1) * mask
    return token_adv, token_adv


# ---------------------------------------------------------------------------------------------
# The policy loss


def loss_token_counts(correct: Tensor, response_mask: Tensor) -> dict[str, float]:
    """How many of the micro-batch's loss tokens come from correct and from wrong responses
    (PSR's must all be positive, NSR's all negative)."""
    per_row = response_mask.to(torch.float64).sum(dim=-1)
    correct = correct.to(per_row.device)
    return {"polarity/loss_tokens_pos": float(per_row[correct].sum()),
            "polarity/loss_tokens_neg": float(per_row[~correct].sum())}


@register_policy_loss(LOSS)
def polarity_policy_loss(
    old_log_prob: Tensor,
    log_prob: Tensor,
    advantages: Tensor,
    response_mask: Tensor,
    loss_agg_mode: str = "token-mean",
    config=None,
    rollout_is_weights: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """PPO-clip loss of the run's recipe, with A3PO's token shaping when it asks for it.

    Clip ranges come from verl's ``actor.clip_ratio_low/high`` (the overrides set them from the
    recipe); the dual clip and the log-ratio clamp from the recipe (``clip_ratio_c``,
    ``log_ratio_clamp``); aggregation is verl's ``agg_loss`` with its global batch info.
    """
    run = current_run()
    recipe = run.recipe
    metrics: dict[str, float] = {}
    correct = worker.current_correctness()
    if correct is not None:
        metrics.update(loss_token_counts(correct, response_mask))
    if recipe.token_shaping == "a3po":
        if recipe.rank_by != "prob":
            raise ValueError("A3PO on verl ranks tokens by old-policy probability only (rank_by=prob)")
        if correct is None:
            raise RuntimeError(
                "A3PO's loss needs each response's correctness: verl's actor worker must be "
                "polarity's (worker.install(); the batch needs rm_scores)")
        correct = correct.to(advantages.device)
        step = read_step(run.step_file)
        selections = a3po_selections(recipe)
        advantages, masks = shape_with_selections(
            advantages, old_log_prob, response_mask, correct, step, selections
        )
        shaped = a3po_metrics(selections, masks, old_log_prob, response_mask, correct, step)
        metrics.update({f"polarity/{k}": v for k, v in shaped.items()})
        metrics["polarity/a3po_step"] = float(step)
    eps_low = config.clip_ratio_low if config.clip_ratio_low is not None else config.clip_ratio
    eps_high = config.clip_ratio_high if config.clip_ratio_high is not None else config.clip_ratio
    token_loss, stats = ppo_clip_token_loss(
        log_prob, old_log_prob, advantages, response_mask, eps_low=eps_low, eps_high=eps_high,
        clip_ratio_c=recipe.clip_ratio_c, log_ratio_clamp=recipe.log_ratio_clamp,
    )
    if rollout_is_weights is not None:
        token_loss = token_loss * rollout_is_weights
    loss = agg_loss(
        loss_mat=token_loss, loss_mask=response_mask, loss_agg_mode=loss_agg_mode,
        **config.global_batch_info,
    )
    metrics["actor/pg_clipfrac"] = stats["clip_frac"]
    metrics["actor/pg_clipfrac_lower"] = stats["dual_clip_frac"]  # verl's name for the dual clip
    metrics["actor/ppo_kl"] = stats["approx_kl"]
    return loss, metrics
