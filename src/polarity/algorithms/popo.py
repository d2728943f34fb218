"""POPO: positive-only policy optimization (arXiv 2605.06650), as pure functions.

Per prompt, only the positive set S+ trains. Bounded importance weights w_i = softmax over
S+ of the length-normalized sequence log-prob (no gradient), so w is in [0, 1] and sums to 1
per prompt. L = L_NLL + alpha * L_sim + beta * L_ent with
L_NLL = sum_i w_i sum_t -log pi(y_it) / (positive tokens in the batch),
L_sim = -sum_i w_i cos(h_phi(f_theta_i), sg(f_xi_i + eps)) / sum_i w_i, L_ent = -mean entropy
over every completion token of the batch, negatives included (the paper's -E_s[H]).
f is the mean-pooled last hidden state over completion tokens; f_xi comes from an EMA copy of
the policy (xi <- tau xi + (1 - tau) theta) plus N(0, sigma^2) noise; h_phi is a 2-layer MLP
predictor with LayerNorm.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .advantages import group_index


def popo_weights(
    seq_logprob_mean: Tensor, group_ids: Sequence | Tensor, positive: Tensor, uniform: bool = False
) -> Tensor:
    """Bounded importance weights over each prompt's positives; 0 for negatives. [B] -> [B]."""
    positive = positive.bool()
    index, n_groups = group_index(group_ids)
    index = index.to(seq_logprob_mean.device)
    score = torch.zeros_like(seq_logprob_mean) if uniform else seq_logprob_mean.detach().float()
    score = torch.where(positive, score, torch.full_like(score, -torch.inf))
    group_max = torch.full((n_groups,), -torch.inf, device=score.device).scatter_reduce(
        0, index, score, reduce="amax", include_self=True
    )
    shifted = torch.where(positive, score - group_max[index], torch.full_like(score, -torch.inf))
    expo = torch.exp(shifted)  # exp(-inf) = 0 for negatives
    denom = torch.zeros(n_groups, device=score.device).index_add_(0, index, expo)
    return torch.where(positive, expo / denom[index].clamp(min=1e-30), torch.zeros_like(expo))


def sequence_logprob_mean(log_prob: Tensor, mask: Tensor) -> Tensor:
    """Length-normalized sequence log-prob [B]: sum_t log pi(y_it) / |y_i| (the weights' score)."""
    mask = mask.to(log_prob.dtype)
    return (log_prob * mask).sum(-1) / mask.sum(-1).clamp(min=1)


def popo_nll_loss(log_prob: Tensor, mask: Tensor, weights: Tensor,
                  positive_tokens: Tensor | float | None = None) -> Tensor:
    """sum_i w_i sum_t -log pi(y_it) / (number of positive tokens in the batch).

    ``positive_tokens``: the denominator when this is one shard of a larger batch (verl's
    micro-batches and data-parallel ranks); None counts the positive tokens of this batch."""
    mask = mask.to(log_prob.dtype)
    if positive_tokens is None:
        positive_tokens = (mask * (weights > 0).unsqueeze(-1)).sum()
    nll = torch.where(mask > 0, -log_prob, torch.zeros_like(log_prob)).sum(dim=-1)
    return (weights * nll).sum() / torch.as_tensor(positive_tokens, dtype=nll.dtype).clamp(min=1)


def mean_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """Mean of [B, T, H] hidden states over the tokens where mask [B, T] is 1."""
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)


def popo_similarity_loss(online: Tensor, target: Tensor, weights: Tensor,
                         weight_sum: Tensor | float | None = None) -> Tensor:
    """-sum_i w_i cos(online_i, sg(target_i)) / sum_i w_i (0 when no weight).

    ``weight_sum``: the denominator when this is one shard of a larger batch; None sums this
    batch's weights."""
    cos = nn.functional.cosine_similarity(online, target.detach(), dim=-1)
    total = weights.sum() if weight_sum is None else torch.as_tensor(weight_sum, dtype=cos.dtype)
    if total <= 0:
        return online.sum() * 0.0
    return -(weights * cos).sum() / total


def popo_entropy(entropy: Tensor, mask: Tensor, tokens: Tensor | float | None = None) -> Tensor:
    """Mean token entropy over every completion token of the batch (negatives included).

    ``tokens``: the denominator when this is one shard of a larger batch; None counts this
    batch's tokens."""
    mask = mask.to(entropy.dtype)
    total = torch.where(mask > 0, entropy, torch.zeros_like(entropy)).sum()
    if tokens is None:
        tokens = mask.sum()
    return total / torch.as_tensor(tokens, dtype=total.dtype).clamp(min=1)


def popo_objective(nll: Tensor, similarity: Tensor, entropy: Tensor, alpha: float,
                   beta: float) -> Tensor:
    """L = L_NLL + alpha * L_sim - beta * H (the entropy bonus enters with a minus sign)."""
    return nll + alpha * similarity - beta * entropy


def weight_entropy(weights: Tensor, group_ids: Sequence | Tensor) -> float:
    """Mean over prompts with positives of the entropy of their weight distribution."""
    index, n_groups = group_index(group_ids)
    w = weights.detach().float()
    ent = torch.where(w > 0, -w * torch.log(w.clamp(min=1e-30)), torch.zeros_like(w))
    per_group = torch.zeros(n_groups).index_add_(0, index, ent.cpu())
    has_pos = torch.zeros(n_groups).index_add_(0, index, (w > 0).float().cpu()) > 0
    return float(per_group[has_pos].mean()) if has_pos.any() else 0.0


class Predictor(nn.Module):
    """h_phi: Linear -> LayerNorm -> ReLU -> Linear, the online branch's predictor.

    As the authors' ``PredictorMLP``: inner width 1024 by default, Xavier-uniform weights and
    zero biases (LayerNorm keeps torch's ones/zeros)."""

    def __init__(self, hidden: int, inner: int = 1024):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(hidden, inner), nn.LayerNorm(inner), nn.ReLU(), nn.Linear(inner, hidden)
        )
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """xi <- tau * xi + (1 - tau) * theta, parameter by parameter."""
    for t, o in zip(target.parameters(), online.parameters()):
        t.mul_(tau).add_(o.detach(), alpha=1.0 - tau)
