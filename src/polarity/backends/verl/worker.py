"""The actor's side of polarity in verl: which rows train, and each row's polarity, read from
verl's own batch data in the actor worker.

verl 0.9.1's actor trains on mini-batches of rows fetched from TransferQueue, each row with
every stored field: ``rm_scores`` (our reward function's 0/1 verdict on the last response
token), ``response_mask`` and ``loss_mask``, ``advantages``... Two things of the recipe need
more than the policy loss is given (old/new log-probs, advantages and the response mask):

* **polarity filters** (PSR trains on positives only, NSR on negatives only): the filtered rows
  must leave the loss's numerator *and* denominator, as in the authors' code (which drops them)
  and the local backend (which divides by the kept tokens). verl's engine counts the
  mini-batch's tokens from ``loss_mask`` before any loss runs
  (``workers/engine/fsdp/transformer_impl.py:730``) and the seq-mean modes divide by
  ``global_batch_size``, which verl sets to the constant mini-batch size
  (``trainer/ppo/v1/trainer_base.py:1851``). :class:`PolarityTrainingWorker` zeroes both masks
  of the filtered rows and sets ``global_batch_size`` to the kept rows of the mini-batch (summed
  over data-parallel ranks) before verl's ``train_batch`` runs.
* **A3PO's polarity** comes from correctness, as on the local backend (a correct but overlong
  response can have a negative advantage under DAPO's penalty and is still a positive):
  :func:`with_correctness` wraps verl's ``ppo_loss`` so that, for each micro-batch, the rows'
  verdicts (from ``rm_scores``) are what :func:`current_correctness` returns while our policy
  loss runs.

The worker class is verl's own extension point ``ActorRolloutRefWorker.actor_worker_cls``
(verl's Tinker worker overrides it the same way); :func:`install` points it here in every
process that loads the plugin. Without our run settings (a PPO run with verl's own loss) the
worker is verl's ``TrainingWorker`` unchanged.
"""

from __future__ import annotations

import contextvars
import os
from functools import wraps

import torch
from torch import Tensor
from verl.workers.engine_workers import ActorRolloutRefWorker, TrainingWorker

CORRECT_ABOVE = 0.5  # a row is correct when its scores sum above this (verdicts are 0 or 1)
SCORES = "rm_scores"

_CORRECTNESS: contextvars.ContextVar[Tensor | None] = contextvars.ContextVar(
    "polarity_correctness", default=None)


def row_sums(x: Tensor) -> Tensor:
    """Per-row sums [B] of a padded [B, T] tensor or a jagged nested tensor (verl's rows)."""
    if not x.is_nested:
        return x.sum(dim=-1)
    lengths = x.offsets().diff()
    rows = torch.repeat_interleave(torch.arange(len(lengths), device=lengths.device), lengths)
    values = x.values()
    return torch.zeros(len(lengths), dtype=values.dtype, device=values.device).index_add_(
        0, rows.to(values.device), values)


def correct_from_scores(scores: Tensor) -> Tensor:
    """Per-row correctness [B] bool from token-level verdicts (1.0 on the last token if correct)."""
    return row_sums(scores) > CORRECT_ABOVE


def mask_rows(mask: Tensor, keep: Tensor) -> Tensor:
    """``mask`` with every token of the rows where ``keep`` is False set to 0 (same layout:
    padded [B, T] or jagged nested, whose lengths the broadcast keeps)."""
    return mask * keep.to(device=mask.device, dtype=mask.dtype).unsqueeze(-1)


def drop_filtered_rows(data, polarity: str, sum_over_ranks=None) -> int:
    """Take the rows the polarity filter drops out of a mini-batch's loss; return the rows that
    train, summed over data-parallel ranks by ``sum_over_ranks`` (tensor -> tensor; None: one
    rank).

    Zeroes ``response_mask`` (the loss's mask) and ``loss_mask`` (verl's token count) of those
    rows and sets ``global_batch_size`` (the seq-mean modes' divisor) to the kept rows. When no
    row of the mini-batch trains (PSR and no correct response), verl's token count is left as it
    was (it divides by it): the loss terms are all masked and the gradient is exactly 0.
    """
    from verl.utils import tensordict_utils as tu

    from polarity.algorithms import polarity_keep

    counted = data["loss_mask"]
    keep = polarity_keep(correct_from_scores(data[SCORES]), polarity)
    for key in ("response_mask", "loss_mask"):
        data[key] = mask_rows(data[key], keep)
    kept = keep.sum()
    if sum_over_ranks is not None:
        kept = sum_over_ranks(kept)
    if int(kept) == 0:
        data["loss_mask"] = counted
    else:
        tu.assign_non_tensor(data, global_batch_size=int(kept))
    return int(kept)


def current_correctness() -> Tensor | None:
    """The rows' correctness [B] of the micro-batch whose loss is running (None outside)."""
    return _CORRECTNESS.get()


def with_correctness(loss_fn):
    """Wrap verl's actor loss ``loss_fn(config, model_output, data, ...)``: our policy loss sees
    the micro-batch's verdicts through :func:`current_correctness`."""

    @wraps(loss_fn)
    def loss(*args, **kwargs):
        data = kwargs["data"] if "data" in kwargs else args[2]
        token = _CORRECTNESS.set(correct_from_scores(data[SCORES]) if SCORES in data.keys() else None)
        try:
            return loss_fn(*args, **kwargs)
        finally:
            _CORRECTNESS.reset(token)

    return loss


def _run():
    """The run's settings (:class:`~polarity.backends.verl.plugin.VerlRun`), or None when this
    is not one of our runs (verl's PPO)."""
    from .plugin import RUN_ENV, current_run

    return current_run() if os.environ.get(RUN_ENV) else None


def _polarity_filter() -> str | None:
    """The run's polarity filter, or None when this is not one of our runs (verl's PPO)."""
    run = _run()
    return run.recipe.polarity if run is not None else None


class PolarityTrainingWorker(TrainingWorker):
    """verl's actor ``TrainingWorker`` with polarity-filtered rows out of the loss and the rows'
    verdicts handed to the policy loss; in a POPO run, POPO's engine, loss, weights and totals
    (``popo.py``)."""

    def __init__(self, config):
        super().__init__(config)
        run = _run()
        self.popo_recipe = None
        if run is not None and run.recipe.objective == "popo" and not self.engine_config.forward_only:
            from . import popo

            popo.install_engine(self.engine, run.recipe, run.seed)  # before reset() builds it
            self.popo_recipe = run.recipe

    def set_loss_fn(self, loss_fn):
        if self.popo_recipe is not None:
            from functools import partial

            from . import popo

            self.loss_fn = partial(popo.popo_loss, recipe=self.popo_recipe)
        else:
            self.loss_fn = with_correctness(loss_fn) if _polarity_filter() else loss_fn

    def _sum_over_ranks(self, x: Tensor) -> Tensor:
        from verl.utils.device import get_device_id

        x = x.to(get_device_id())
        torch.distributed.all_reduce(x, group=self.engine.get_data_parallel_group())
        return x

    def add_popo_weights(self, data) -> float:
        """POPO's weight of each response of the step (``popo.WEIGHTS``), over every rank's;
        returns the step's mean weight entropy per prompt."""
        from polarity.algorithms import sequence_logprob_mean

        from . import popo

        group = self.engine.get_data_parallel_group()

        def gather(mine):
            parts = [None] * torch.distributed.get_world_size(group)
            torch.distributed.all_gather_object(parts, mine, group=group)
            return parts

        if "uid" not in data.keys():
            raise RuntimeError("POPO on verl needs each response's prompt uid in the actor's batch")
        uids = data["uid"]
        uids = uids.tolist() if hasattr(uids, "tolist") else list(uids)
        seq = sequence_logprob_mean(popo.padded(data["old_log_probs"]).float(),
                                    popo.padded(data["response_mask"]).float())
        data[popo.WEIGHTS], entropy = popo.step_weights(
            uids, seq, correct_from_scores(data[SCORES]), self.popo_recipe, gather=gather,
            rank=self.engine.get_data_parallel_rank())
        return entropy

    def add_popo_totals(self, data) -> None:
        """A POPO mini-batch's denominators over every rank (``popo.TOTALS``), the flag that
        asks the engine for hidden states, and no optimizer step when no rank has a positive."""
        from verl.utils import tensordict_utils as tu

        from . import popo

        totals = self._sum_over_ranks(popo.minibatch_totals(data[popo.WEIGHTS],
                                                            data["response_mask"])).tolist()
        tu.assign_non_tensor(data, **dict(zip(popo.TOTALS, totals)), **{popo.TRAINING: True})
        self.engine.popo_skip_step = totals[0] == 0

    def train_mini_batch(self, data):
        if self.popo_recipe is None:
            return super().train_mini_batch(data)
        entropy = self.add_popo_weights(data)  # the step's weights, before verl splits it
        output = super().train_mini_batch(data)
        if output is not None:
            from verl.utils import tensordict_utils as tu

            metrics = tu.get(output, "metrics")
            metrics["polarity/popo/weight_entropy"] = [entropy]
            tu.assign_non_tensor(output, metrics=metrics)
        return output

    def train_batch(self, data):
        if self.popo_recipe is not None:
            self.add_popo_totals(data)
            return super().train_batch(data)
        polarity = _polarity_filter()
        if polarity not in (None, "both"):
            drop_filtered_rows(data, polarity, self._sum_over_ranks)
        return super().train_batch(data)


def install() -> None:
    """Make verl's actor worker a :class:`PolarityTrainingWorker` (idempotent; leaves any other
    customization alone)."""
    if ActorRolloutRefWorker.actor_worker_cls is TrainingWorker:
        ActorRolloutRefWorker.actor_worker_cls = PolarityTrainingWorker
