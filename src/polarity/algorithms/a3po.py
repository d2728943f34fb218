"""A3PO: adaptive and asymmetric token-level advantage shaping (arXiv 2512.21625).

After the GRPO advantage is broadcast to tokens, each positive response amplifies its
k_i = max(1, floor(p_pos * L_i)) lowest-probability tokens by s_pos(step) and each negative
response its k_i highest-probability tokens by s_neg(step), with the linear decay
s(step) = max(rho - alpha * step, 1) (step = 0 for the first training step). A scale below 1
(the authors' ablation with 0.5) damps those tokens instead and moves up to 1 at the same rate. Probabilities
are the old policy's, fixed for the whole rollout batch; padding never ranks.

The generalization of the official code is exposed too: all four (polarity x low/high)
selections with their own fraction and scale, and ranking by entropy instead of probability
(``rank_by="entropy"``: the "low" selection takes the highest-entropy tokens, the uncertain
ones that low probability stands for, and "high" the lowest-entropy ones).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor


def decayed_scale(rho: float, alpha: float, step: int) -> float:
    """s(step) = max(rho - alpha * step, 1) for rho >= 1 (amplify, decaying to 1), and
    min(rho + alpha * step, 1) for rho < 1 (the authors' damping ablation, recovering to 1)."""
    if rho < 1.0:
        return min(rho + alpha * step, 1.0)
    return max(rho - alpha * step, 1.0)


@dataclass(frozen=True)
class Selection:
    """One (polarity, low/high) token selection: fraction of tokens, scale start, decay rate."""

    positive: bool
    low: bool
    p: float
    rho: float
    alpha: float


def selection_size(p: float, lengths: Tensor) -> Tensor:
    """k_i = max(1, floor(p * L_i)), exact for decimal p (0.29 * 100 is 28.999... in floats)."""
    k = torch.floor(p * lengths.double() + 1e-9).long()
    return torch.clamp(k, min=1)


def _selected_columns(
    old_log_prob: Tensor,
    response_mask: Tensor,
    correct: Tensor,
    selections: list[Selection],
    entropy: Tensor | None,
) -> list[Tensor | None]:
    """Per selection, the [B, K] token columns it picks; T (a spare column) where it picks none.

    One stable sort per row of the ranking key (padding pushed to the end with +inf, ties in
    token order); selection i then takes the first (low) or last (high) k_i = max(1,
    floor(p * L_i)) valid positions of that order. Only the K = max_i k_i candidates per row
    are touched after the sort, so the cost beyond it is small.
    """
    active = [i for i, sel in enumerate(selections) if sel.p > 0]
    columns: list[Tensor | None] = [None] * len(selections)
    if not active:
        return columns
    valid = response_mask > 0
    key = old_log_prob if entropy is None else -entropy  # ascending: "low" end first
    key = torch.where(valid, key.float(), math.inf)
    order = torch.sort(key, dim=-1, stable=True).indices  # [B, T]
    lengths = valid.sum(dim=-1, dtype=torch.int32)  # [B] (an int64 bool-sum is 15x slower)
    T = order.shape[-1]
    correct = correct.bool()
    for i in active:
        sel = selections[i]
        rows = (correct if sel.positive else ~correct) & (lengths > 0)
        k = torch.where(rows, selection_size(sel.p, lengths), 0)  # [B]
        j = torch.arange(int(k.max()) if k.numel() else 0, device=order.device)  # [K]
        pick = j < k.unsqueeze(-1)  # [B, K]
        take = j.expand_as(pick) if sel.low else (lengths.unsqueeze(-1) - 1 - j).clamp(min=0)
        columns[i] = torch.where(pick, order.gather(-1, take), T)
    return columns


def _columns_to_mask(columns: Tensor | None, shape) -> Tensor:
    mask = torch.zeros(shape[0], shape[1] + 1, dtype=torch.bool)
    if columns is not None:
        mask = mask.to(columns.device)
        mask.scatter_(-1, columns, True)
    return mask[:, : shape[1]]


def a3po_select(
    old_log_prob: Tensor,
    response_mask: Tensor,
    correct: Tensor,
    selections: list[Selection],
    entropy: Tensor | None = None,
) -> list[Tensor]:
    """Boolean [B, T] masks, one per selection, of the tokens that selection amplifies.

    k_i = max(1, floor(p * L_i)) per response of the selection's polarity; the lowest-ranked
    (``low``) or highest-ranked tokens by old-policy probability (or entropy); a selection
    with p <= 0 selects nothing.
    """
    cols = _selected_columns(old_log_prob, response_mask, correct, selections, entropy)
    return [_columns_to_mask(c, response_mask.shape).to(response_mask.device) for c in cols]


def default_selections(
    p_pos: float = 0.2,
    p_neg: float = 0.2,
    rho_pos: float = 2.0,
    rho_neg: float = 2.0,
    alpha_pos: float = 0.005,
    alpha_neg: float = 0.005,
    *,
    p_pos_high: float = 0.0,
    rho_pos_high: float = 1.0,
    alpha_pos_high: float = 0.0,
    p_neg_low: float = 0.0,
    rho_neg_low: float = 1.0,
    alpha_neg_low: float = 0.0,
) -> list[Selection]:
    """The paper's two selections (positive-low, negative-high) plus the two optional ones."""
    return [
        Selection(positive=True, low=True, p=p_pos, rho=rho_pos, alpha=alpha_pos),
        Selection(positive=False, low=False, p=p_neg, rho=rho_neg, alpha=alpha_neg),
        Selection(positive=True, low=False, p=p_pos_high, rho=rho_pos_high, alpha=alpha_pos_high),
        Selection(positive=False, low=True, p=p_neg_low, rho=rho_neg_low, alpha=alpha_neg_low),
    ]


def shape_with_selections(
    advantages: Tensor,
    old_log_prob: Tensor,
    response_mask: Tensor,
    correct: Tensor,
    step: int,
    selections: list[Selection],
    entropy: Tensor | None = None,
    return_masks: bool = True,
) -> tuple[Tensor, list[Tensor]]:
    """Multiply each selection's tokens by its decayed scale; returns (advantages, masks of the
    tokens actually amplified: empty once a selection's scale has decayed to 1)."""
    # a selection whose scale has decayed to 1 changes nothing: it is not ranked at all
    live = [replace(sel, p=0.0) if decayed_scale(sel.rho, sel.alpha, step) == 1.0 else sel
            for sel in selections]
    cols = _selected_columns(old_log_prob, response_mask, correct, live, entropy)
    B, T = advantages.shape
    shaped = torch.empty(B, T + 1, dtype=advantages.dtype, device=advantages.device)
    shaped[:, :T] = advantages  # column T is scratch space for unpicked candidates
    for sel, c in zip(live, cols):
        if c is not None:
            s = decayed_scale(sel.rho, sel.alpha, step)
            shaped.scatter_(-1, c, shaped.gather(-1, c) * s)
    masks = [_columns_to_mask(c, (B, T)).to(advantages.device) for c in cols] if return_masks else []
    return shaped[:, :T], masks


def a3po_shape(
    advantages: Tensor,
    old_log_prob: Tensor,
    response_mask: Tensor,
    correct: Tensor,
    step: int,
    *,
    p_pos: float = 0.2,
    p_neg: float = 0.2,
    rho_pos: float = 2.0,
    rho_neg: float = 2.0,
    alpha_pos: float = 0.005,
    alpha_neg: float = 0.005,
) -> Tensor:
    """A3PO token-level advantages [B, T] (the public API; see the module docstring)."""
    selections = default_selections(p_pos, p_neg, rho_pos, rho_neg, alpha_pos, alpha_neg)[:2]
    shaped, _ = shape_with_selections(
        advantages, old_log_prob, response_mask, correct, step, selections, return_masks=False
    )
    return shaped


def a3po_metrics(
    selections: list[Selection],
    masks: list[Tensor],
    old_log_prob: Tensor,
    response_mask: Tensor,
    correct: Tensor,
    step: int,
) -> dict[str, float]:
    """Current scales, fraction of tokens amplified and their mean probability, per polarity
    (with a scale below 1 the "amplified" tokens are the damped ones)."""
    valid = response_mask > 0
    correct = correct.bool().unsqueeze(-1)
    out: dict[str, float] = {}
    for name, positive in (("pos", True), ("neg", False)):
        pol_valid = valid & (correct if positive else ~correct)
        amplified = torch.zeros_like(valid)
        for sel, mask in zip(selections, masks):
            if sel.positive == positive:
                amplified |= mask
        n_valid = int(pol_valid.sum())
        n_amp = int(amplified.sum())
        main = next(s for s in selections if s.positive == positive)
        out[f"a3po/s_{name}"] = decayed_scale(main.rho, main.alpha, step)
        out[f"a3po/amplified_frac_{name}"] = n_amp / n_valid if n_valid else 0.0
        out[f"a3po/amplified_prob_{name}"] = (
            float(old_log_prob[amplified].exp().mean()) if n_amp else float("nan")
        )
    return out
