"""Hand-computed cases for POPO (polarity.algorithms.popo).

Every expected number is written out from the formula in the specification, never obtained
by calling the code under test (see test_algorithms.py)."""

from __future__ import annotations

import math

import pytest
import torch

from polarity.algorithms import (
    decayed_scale,
    ema_update,
    mean_pool,
    popo_nll_loss,
    popo_similarity_loss,
    popo_weights,
    resolve,
    sequence_advantages,
    sequence_rewards,
    token_advantages,
    token_entropy,
)

from .tensor_helpers import T_, close, mask_from_lengths, lp


# ---------------------------------------------------------------------------------------------
# POPO


def test_popo_predictor_has_the_authors_width_and_init():
    from polarity.algorithms import Predictor

    torch.manual_seed(0)
    pred = Predictor(48)
    first, norm, _, last = pred.net
    assert first.weight.shape == (1024, 48) and last.weight.shape == (48, 1024)
    assert resolve("popo").popo_predictor_width == 1024
    for layer in (first, last):
        assert torch.count_nonzero(layer.bias) == 0
        bound = math.sqrt(6.0 / (layer.in_features + layer.out_features))  # Xavier uniform
        assert float(layer.weight.abs().max()) <= bound
        # a uniform on [-b, b] has std b / sqrt(3); torch's default (kaiming, a = sqrt 5) differs
        assert float(layer.weight.std()) == pytest.approx(bound / math.sqrt(3), rel=0.05)
    assert torch.equal(norm.weight, torch.ones(1024)) and torch.count_nonzero(norm.bias) == 0
    assert Predictor(48, 16).net[0].weight.shape == (16, 48)


def test_popo_entropy_bonus_averages_over_every_completion_token():
    """L_ent = -mean entropy over all completion tokens of the batch, negatives included."""
    from types import SimpleNamespace

    from polarity.backends.local.trainer import PopoParts

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = SimpleNamespace(hidden_size=4)
            self.w = torch.nn.Parameter(torch.zeros(1))

    recipe = resolve("popo", {"popo_alpha": 0.0, "popo_beta": 0.5})
    parts = PopoParts(Tiny(), recipe, seed=0)
    log_prob = T_([[-1.0, -1.0], [-2.0, -2.0]])
    entropy = T_([[1.0, 3.0], [5.0, 0.0]])  # response 1 (negative) has one token
    response_mask = T_([[1.0, 1.0], [1.0, 0.0]])
    loss_mask = T_([[1.0, 1.0], [0.0, 0.0]])  # only response 0 is positive
    weights = T_([1.0, 0.0])
    hidden = torch.randn(2, 2, 4)
    parts.target = lambda *a, **k: None  # the similarity term has weight 0 here
    import polarity.backends.local.trainer as tr

    orig = tr.policy_forward
    tr.policy_forward = lambda *a, **k: (None, None, torch.zeros(2, 2, 4))
    try:
        total, _ = parts.loss(log_prob, entropy, hidden, None, loss_mask, response_mask, weights,
                              SimpleNamespace(temperature=1.0))
    finally:
        tr.policy_forward = orig
    nll = (1.0 + 1.0) / 2  # weight 1 x (1 + 1) over 2 positive tokens
    mean_entropy = (1.0 + 3.0 + 5.0) / 3  # all three completion tokens; positives alone: 2.0
    assert close(total, nll - 0.5 * mean_entropy, 1e-6)


def test_a3po_shapes_an_overlong_correct_response_as_a_positive():
    """Polarity is correctness, not the advantage's sign: a correct response pushed below its
    group mean by DAPO's overlong penalty still has its lowest-probability tokens amplified."""
    recipe = resolve("a3po", {"overlong_cache": 4, "p_pos": 0.5, "p_neg": 0.5})
    # L_max 10, L_cache 4: two short correct responses (1), one correct that ran past L_max
    # (1 - 1 = 0) and a short wrong one (-1): mean 0.25, so the overlong correct one is below it
    correct = T_([1, 1, 1, 0]).bool()
    rewards = sequence_rewards(recipe, correct, T_([2, 2, 11, 2]), max_len=10)
    assert close(rewards, [1.0, 1.0, 0.0, -1.0])
    adv, _ = sequence_advantages(recipe, rewards, correct, [0] * 4)
    assert float(adv[2]) < 0
    old = lp([[0.9, 0.1]] * 4)  # token probabilities 0.9 and 0.1 in every response
    token_adv, _, metrics = token_advantages(recipe, rewards, correct, [0] * 4, old,
                                             torch.ones(4, 2), step=0)
    # a positive's low-probability token (0.1) is scaled by s_pos = 2, whatever its sign;
    # a negative's high-probability token (0.9) by s_neg = 2
    assert close(token_adv[2], [float(adv[2]), 2 * float(adv[2])], 1e-6)
    assert close(token_adv[3], [2 * float(adv[3]), float(adv[3])], 1e-6)
    assert metrics["a3po/amplified_frac_pos"] == 0.5 and metrics["a3po/amplified_frac_neg"] == 0.5


def test_a3po_scales_below_one_damp_and_recover_to_one():
    # the authors' ablation with a scale of 0.5: s(step) = min(0.5 + alpha * step, 1)
    assert decayed_scale(0.5, 0.0, 100) == 0.5
    assert decayed_scale(0.5, 0.1, 2) == pytest.approx(0.7)
    assert decayed_scale(0.5, 0.1, 5) == 1.0 and decayed_scale(0.5, 0.1, 50) == 1.0
    recipe = resolve("a3po", {"rho_pos": 0.5, "alpha_pos": 0.0, "p_pos": 0.5, "p_neg": 0.0})
    # one positive response of 2 tokens with A = 1, probs 0.9 and 0.2: the low one is damped
    adv, _, _ = token_advantages(recipe, T_([1.0, 0.0]), T_([1, 0]).bool(), [0, 0],
                                 lp([[0.9, 0.2], [0.5, 0.5]]), torch.ones(2, 2), step=3)
    a = 0.5 / (math.sqrt(0.5) + 1e-6)  # GRPO: mean 0.5, unbiased std sqrt(0.5)
    assert close(adv[0], [a, 0.5 * a], 1e-5)


def test_popo_weights_softmax_over_positives_per_group():
    seq_mean = T_([-1.0, -2.0, -0.5, -3.0, -3.0, -0.7, -5.0])
    groups = ["a", "a", "a", "b", "b", "c", "c"]
    positive = T_([True, True, False, False, False, True, False])
    w = popo_weights(seq_mean, groups, positive)
    # group a: softmax(-1, -2) = (1, e^-1) / (1 + e^-1); the negative (-0.5, higher!) gets 0
    e = math.exp(-1.0)
    expected = [1 / (1 + e), e / (1 + e), 0.0, 0.0, 0.0, 1.0, 0.0]
    assert close(w, expected)  # ~ (0.7311, 0.2689)
    assert close(w[:3].sum(), 1.0) and close(w[5:].sum(), 1.0)
    assert float(w[3:5].sum()) == 0.0  # group b has no positive: contributes nothing


def test_popo_weights_uniform_ablation_and_no_gradient():
    seq_mean = T_([-1.0, -2.0, -0.1, -9.0], requires_grad=True)
    w = popo_weights(seq_mean, [0, 0, 0, 0], T_([True, True, True, False]), uniform=True)
    assert close(w, [1 / 3, 1 / 3, 1 / 3, 0.0])
    assert not w.requires_grad


def test_popo_nll_loss_hand_case():
    log_prob = T_([[-1.0, -2.0, -77.0], [-3.0, 55.0, 0.0], [-4.0, -5.0, -6.0]], requires_grad=True)
    mask = mask_from_lengths([2, 1, 3], 3)
    weights = T_([0.5, 0.5, 0.0])
    loss = popo_nll_loss(log_prob, mask, weights)
    # nll per row: 3, 3, 15; positive tokens 2 + 1 = 3: (0.5 * 3 + 0.5 * 3 + 0 * 15) / 3
    assert close(loss, 1.0)
    loss.backward()
    assert close(log_prob.grad, [[-0.5 / 3, -0.5 / 3, 0], [-0.5 / 3, 0, 0], [0, 0, 0]])


def test_popo_similarity_loss():
    online = T_([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]], requires_grad=True)
    target = T_([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]], requires_grad=True)
    w = T_([0.3, 0.7])
    assert close(popo_similarity_loss(online, target, w), -1.0)
    assert close(popo_similarity_loss(online, 2 * target, w), -1.0)  # scale-free
    assert close(popo_similarity_loss(online, -target, w), 1.0)
    # orthogonal (row 0) and identical (row 1): -(0.3 * 0 + 0.7 * 1) / 1.0
    ortho = T_([[2.0, -1.0, 0.0], [0.5, -1.0, 2.0]])
    assert close(popo_similarity_loss(online, ortho, w), -0.7)
    # stop-gradient on the target branch
    popo_similarity_loss(online, target * 1.5 + 0.1, w).backward()
    assert target.grad is None and online.grad is not None
    # no weight at all: zero, and still differentiable
    zero = popo_similarity_loss(online, target, torch.zeros(2))
    assert float(zero.detach()) == 0.0 and zero.requires_grad


def test_ema_update():
    target, online = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    with torch.no_grad():
        target.weight.fill_(1.0), target.bias.fill_(-1.0)
        online.weight.fill_(3.0), online.bias.fill_(1.0)
    ema_update(target, online, tau=0.9)
    # 0.9 * 1 + 0.1 * 3 = 1.2 ; 0.9 * -1 + 0.1 * 1 = -0.8
    assert close(target.weight, [[1.2, 1.2]]) and close(target.bias, [-0.8])
    assert close(online.weight, [[3.0, 3.0]])  # the online branch is untouched


def test_mean_pool():
    hidden = T_([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, 6.0], [0.0, 0.0], [-9.0, 9.0]]])
    mask = T_([[1, 1, 0], [0, 0, 0]])
    assert close(mean_pool(hidden, mask), [[2.0, 3.0], [0.0, 0.0]])


def test_token_entropy():
    logits = T_([[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]])
    assert close(token_entropy(logits), [math.log(4), 0.0], 1e-5)
