"""Token-level policy-gradient losses and verl's loss aggregation modes."""

from __future__ import annotations

import torch
from torch import Tensor

from .registry import AGG_MODES


def aggregate(loss: Tensor, mask: Tensor, mode: str, norm_len: int | None = None) -> Tensor:
    """Reduce a [B, T] token loss to a scalar over the tokens where ``mask`` is 1.

    token-mean: sum / number of tokens; seq-mean-token-mean: mean over responses of each
    response's token mean; seq-mean-token-sum-norm: sum / (responses * norm_len) (Dr.GRPO's
    constant length; defaults to T). Responses without any masked-in token are not counted.
    """
    mask = mask.to(loss.dtype)
    loss = torch.where(mask > 0, loss, torch.zeros_like(loss))  # inf * 0 would be nan
    tokens_per_seq = mask.sum(dim=-1)
    n_seq = (tokens_per_seq > 0).sum().clamp(min=1)
    if mode == "token-mean":
        return loss.sum() / mask.sum().clamp(min=1)
    if mode == "seq-mean-token-mean":
        per_seq = loss.sum(dim=-1) / tokens_per_seq.clamp(min=1)
        return per_seq.sum() / n_seq
    if mode == "seq-mean-token-sum-norm":
        length = loss.shape[-1] if norm_len is None else norm_len
        return loss.sum() / (n_seq * length)
    raise ValueError(f"loss_agg_mode must be one of {AGG_MODES}, got {mode!r}")


def ppo_clip_token_loss(
    log_prob: Tensor,
    old_log_prob: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    clip_ratio_c: float = 3.0,
    log_ratio_clamp: float = 20.0,
) -> tuple[Tensor, dict[str, float]]:
    """Per-token PPO-clip surrogate [B, T] with separate clip ranges (DAPO's clip-higher),
    dual clip and verl's log-ratio clamp.

    l_t = -min(rho_t * A_t, clip(rho_t, 1 - eps_low, 1 + eps_high) * A_t),
    rho_t = exp(clamp(log pi_theta(y_t) - log pi_old(y_t), -c_log, c_log)); where A_t < 0 the
    dual clip bounds it: l_t = min(l_t, -c * A_t) (Ye et al. 2019, verl's ``clip_ratio_c``).
    ``clip_ratio_c=0`` turns the dual clip off, ``log_ratio_clamp=0`` the clamp (RLVR-Decomposed's
    loss has neither). Tokens outside ``mask`` have ratio 1 (never inf/nan). Returns the token
    losses and the clip fractions / approximate KL over ``mask``.
    """
    if clip_ratio_c and clip_ratio_c <= 1.0:
        raise ValueError(f"clip_ratio_c must be 0 (off) or > 1, got {clip_ratio_c}")
    valid = mask > 0
    log_ratio = torch.where(valid, log_prob - old_log_prob, torch.zeros_like(log_prob))
    if log_ratio_clamp:
        log_ratio = torch.clamp(log_ratio, -log_ratio_clamp, log_ratio_clamp)
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high)
    token_loss = torch.maximum(unclipped, clipped)
    dual = torch.zeros_like(valid)
    if clip_ratio_c:
        bound = -advantages * clip_ratio_c
        dual = (advantages < 0) & (token_loss > bound)
        token_loss = torch.where(advantages < 0, torch.minimum(token_loss, bound), token_loss)
    with torch.no_grad():
        n = valid.sum().clamp(min=1)
        clip_frac = ((clipped > unclipped) & valid).sum() / n
        dual_frac = (dual & valid).sum() / n
        approx_kl = torch.where(valid, -log_ratio, torch.zeros_like(log_ratio)).sum() / n
    return token_loss, {"clip_frac": float(clip_frac), "dual_clip_frac": float(dual_frac),
                        "approx_kl": float(approx_kl)}


def ppo_clip_loss(
    log_prob: Tensor,
    old_log_prob: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    clip_ratio_c: float = 3.0,
    log_ratio_clamp: float = 20.0,
    agg_mode: str = "token-mean",
    norm_len: int | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """PPO-clip loss: :func:`ppo_clip_token_loss` aggregated with ``agg_mode`` over ``mask``.

    All tensors are [B, T]. Returns the loss and its clip fractions / approximate KL.
    """
    token_loss, stats = ppo_clip_token_loss(
        log_prob, old_log_prob, advantages, mask, eps_low=eps_low, eps_high=eps_high,
        clip_ratio_c=clip_ratio_c, log_ratio_clamp=log_ratio_clamp,
    )
    return aggregate(token_loss, mask, agg_mode, norm_len), stats


def token_entropy(logits: Tensor) -> Tensor:
    """Entropy of the next-token distribution at every position: [..., V] -> [...]."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)
