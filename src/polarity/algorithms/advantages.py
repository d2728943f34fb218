"""Sequence-level advantages and reward shaping: tensors in, tensors out.

Polarity always comes from correctness (c_i = 1 positive, c_i = 0 negative), never from the
sign of an advantage.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def group_index(group_ids: Sequence | Tensor) -> tuple[Tensor, int]:
    """Map arbitrary group ids (ints, strings, uuids) to 0..G-1 in order of first appearance."""
    if isinstance(group_ids, Tensor):
        _, inverse = torch.unique(group_ids, return_inverse=True)
        return inverse.long(), int(inverse.max().item()) + 1 if inverse.numel() else 0
    seen: dict = {}
    index = [seen.setdefault(g, len(seen)) for g in group_ids]
    return torch.tensor(index, dtype=torch.long), len(seen)


def group_advantages(
    rewards: Tensor, group_ids: Sequence | Tensor, normalize_std: bool = True
) -> Tensor:
    """GRPO (normalize_std=True) or Dr.GRPO (False) advantage, one value per response.

    A_i = (r_i - mean_g r) / (std_g r + 1e-6) with the unbiased (n - 1) std of the group, or
    A_i = r_i - mean_g r without std. A group of one response has no baseline: A = 0.
    """
    rewards = rewards.float()
    index, n_groups = group_index(group_ids)
    index = index.to(rewards.device)
    count = torch.zeros(n_groups, device=rewards.device).index_add_(0, index, torch.ones_like(rewards))
    total = torch.zeros(n_groups, device=rewards.device).index_add_(0, index, rewards)
    mean = (total / count)[index]
    centered = rewards - mean
    if normalize_std:
        sq = torch.zeros(n_groups, device=rewards.device).index_add_(0, index, centered**2)
        std = torch.sqrt(sq / (count - 1).clamp(min=1))[index]
        centered = centered / (std + 1e-6)
    return torch.where(count[index] > 1, centered, torch.zeros_like(centered))


def reinforce_advantages(correct: Tensor) -> Tensor:
    """REINFORCE on correctness without a baseline (Zhu et al.): +1 if correct, -1 if not."""
    return torch.where(correct.bool(), 1.0, -1.0).float()


def polarity_weights(correct: Tensor, w_pos: float, w_neg: float) -> Tensor:
    """Per-response multiplier: w_pos for positive samples, w_neg for negative ones."""
    return torch.where(correct.bool(), float(w_pos), float(w_neg)).float()


def polarity_keep(correct: Tensor, polarity: str) -> Tensor:
    """Which responses train: ``both``, only ``positive`` (PSR) or only ``negative`` (NSR)."""
    correct = correct.bool()
    if polarity == "both":
        return torch.ones_like(correct)
    if polarity == "positive":
        return correct
    if polarity == "negative":
        return ~correct
    raise ValueError(f"polarity must be both, positive or negative, got {polarity!r}")


def overlong_penalty(lengths: Tensor, max_len: int, cache_len: int) -> Tensor:
    """DAPO's soft overlong punishment R_len, added to the correctness reward.

    With L_exp = max_len - cache_len: 0 if |y| <= L_exp; (L_exp - |y|) / cache_len if
    L_exp < |y| <= max_len; -1 beyond max_len.
    """
    lengths = lengths.float()
    if cache_len <= 0:
        return torch.zeros_like(lengths)
    expected = max_len - cache_len
    soft = (expected - lengths) / cache_len
    penalty = torch.where(lengths <= expected, torch.zeros_like(lengths), soft)
    return torch.where(lengths > max_len, torch.full_like(lengths, -1.0), penalty)


def informative_groups(correct: Tensor, group_ids: Sequence | Tensor) -> Tensor:
    """DAPO dynamic sampling: True for responses whose group is neither all correct nor all wrong."""
    index, n_groups = group_index(group_ids)
    c = correct.float()
    index = index.to(c.device)
    count = torch.zeros(n_groups, device=c.device).index_add_(0, index, torch.ones_like(c))
    hits = torch.zeros(n_groups, device=c.device).index_add_(0, index, c)
    mixed = (hits > 0) & (hits < count)
    return mixed[index]
