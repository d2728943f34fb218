"""The shared pipeline from rewards to token advantages, run by both backends for every
algorithm in the registry except POPO and PPO (which have their own objectives)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from . import a3po as _a3po
from .advantages import (
    group_advantages,
    overlong_penalty,
    polarity_keep,
    polarity_weights,
    reinforce_advantages,
)
from .registry import Recipe


def a3po_selections(recipe: Recipe) -> list[_a3po.Selection]:
    """The recipe's A3PO token selections (the paper's two, plus the optional ablation pair)."""
    return _a3po.default_selections(
        recipe.p_pos, recipe.p_neg, recipe.rho_pos, recipe.rho_neg, recipe.alpha_pos,
        recipe.alpha_neg, p_pos_high=recipe.p_pos_high, rho_pos_high=recipe.rho_pos_high,
        alpha_pos_high=recipe.alpha_pos_high, p_neg_low=recipe.p_neg_low,
        rho_neg_low=recipe.rho_neg_low, alpha_neg_low=recipe.alpha_neg_low,
    )


def sequence_rewards(recipe: Recipe, correct: Tensor, lengths: Tensor, max_len: int) -> Tensor:
    """r_i = 1 if correct else ``incorrect_reward`` (0, or DAPO's -1), plus DAPO's overlong
    penalty when the recipe asks for it."""
    reward = torch.where(correct.bool(), 1.0, float(recipe.incorrect_reward))
    if recipe.overlong_cache > 0:
        reward = reward + overlong_penalty(lengths, max_len, recipe.overlong_cache)
    return reward


def sequence_advantages(
    recipe: Recipe, rewards: Tensor, correct: Tensor, group_ids: Sequence | Tensor
) -> tuple[Tensor, Tensor]:
    """Per-response advantage [B] after polarity weights, and which responses train [B] bool."""
    if recipe.advantage == "reinforce":
        adv = reinforce_advantages(correct)
    else:
        adv = group_advantages(rewards, group_ids, normalize_std=recipe.advantage == "grpo")
    adv = adv * polarity_weights(correct, recipe.w_pos, recipe.w_neg)
    keep = polarity_keep(correct, recipe.polarity)
    return torch.where(keep, adv, torch.zeros_like(adv)), keep


def token_advantages(
    recipe: Recipe,
    rewards: Tensor,
    correct: Tensor,
    group_ids: Sequence | Tensor,
    old_log_prob: Tensor,
    response_mask: Tensor,
    step: int,
    entropy: Tensor | None = None,
) -> tuple[Tensor, Tensor, dict[str, float]]:
    """Token advantages [B, T], the loss mask [B, T] and shaping metrics, for one rollout batch.

    Runs once per rollout batch with the old policy's log-probs (fixed across mini-batches).
    """
    adv, keep = sequence_advantages(recipe, rewards, correct, group_ids)
    token_adv = adv.unsqueeze(-1) * response_mask.float()
    loss_mask = response_mask.float() * keep.unsqueeze(-1).float()
    metrics: dict[str, float] = {}
    if recipe.token_shaping == "a3po":
        if recipe.rank_by == "entropy" and entropy is None:
            raise ValueError("A3PO with rank_by='entropy' needs the old policy's token entropy")
        selections = a3po_selections(recipe)
        token_adv, masks = _a3po.shape_with_selections(
            token_adv, old_log_prob, response_mask, correct, step, selections,
            entropy=entropy if recipe.rank_by == "entropy" else None,
        )
        metrics = _a3po.a3po_metrics(selections, masks, old_log_prob, response_mask, correct, step)
    return token_adv, loss_mask, metrics
