"""Hand-computed cases for polarity.algorithms (see /work/shared/algorithms.md).

Every expected number below is written out from the formula in the specification (the
arithmetic is spelled out in comments or as a Python expression of plain numbers), never
obtained by calling the code under test.
"""

from __future__ import annotations

import math

import pytest
import torch

from polarity.algorithms import (
    AGG_MODES,
    aggregate,
    group_advantages,
    informative_groups,
    overlong_penalty,
    polarity_keep,
    polarity_weights,
    ppo_clip_loss,
    reinforce_advantages,
    resolve,
    sequence_advantages,
    sequence_rewards,
)

from .tensor_helpers import SQRT_THIRD, T_, close




# ---------------------------------------------------------------------------------------------
# group_advantages


def test_grpo_advantage_uses_unbiased_std_plus_1e6():
    rewards = T_([1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    groups = [0, 0, 0, 0, 1, 1, 1]
    a = 0.5 / (SQRT_THIRD + 1e-6)  # group 0: mean 1/2
    b = (2 / 3) / (SQRT_THIRD + 1e-6)  # group 1: mean 1/3
    c = (1 / 3) / (SQRT_THIRD + 1e-6)
    expected = [a, -a, -a, a, b, -c, -c]
    assert close(group_advantages(rewards, groups), expected)
    # sanity of the hand numbers: a ~ 0.8660, b ~ 1.1547
    assert abs(a - 0.866024) < 1e-5 and abs(b - 1.154699) < 1e-5


def test_grpo_advantage_non_binary_rewards():
    # group {3, 1, 2}: mean 2, deviations 1, -1, 0, unbiased var (1 + 1 + 0) / 2 = 1, std 1
    rewards = T_([3.0, 1.0, 2.0])
    expected = [1 / (1 + 1e-6), -1 / (1 + 1e-6), 0.0]
    assert close(group_advantages(rewards, ["q", "q", "q"]), expected)


def test_dr_grpo_advantage_has_no_std():
    rewards = T_([1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    groups = [0, 0, 0, 0, 1, 1, 1]
    expected = [0.5, -0.5, -0.5, 0.5, 2 / 3, -1 / 3, -1 / 3]
    assert close(group_advantages(rewards, groups, normalize_std=False), expected)


def test_singleton_group_and_uniform_group_get_zero_advantage():
    rewards = T_([1.0, 1.0, 1.0, 0.0, 0.0])
    groups = [7, 3, 3, 9, 9]  # 7 is alone; 3 all correct; 9 all wrong
    for normalize in (True, False):
        adv = group_advantages(rewards, groups, normalize_std=normalize)
        assert torch.equal(adv, torch.zeros(5))


def test_group_ids_may_be_strings_and_interleaved():
    rewards = T_([1.0, 0.0, 0.0, 1.0, 1.0])
    groups = ["uuid-b", "uuid-a", "uuid-b", "uuid-a", "lonely"]
    # group b: {1, 0} mean 1/2, unbiased std sqrt((1/4 + 1/4) / 1) = sqrt(1/2)
    s = 0.5 / (math.sqrt(0.5) + 1e-6)
    expected = [s, -s, -s, s, 0.0]
    assert close(group_advantages(rewards, groups), expected)
    # same result with integer tensor ids
    assert close(group_advantages(rewards, T_([2, 1, 2, 1, 5])), expected)


# ---------------------------------------------------------------------------------------------
# REINFORCE, polarity weights, keep


def test_reinforce_advantages_plus_minus_one():
    assert torch.equal(reinforce_advantages(T_([True, False, True])), T_([1.0, -1.0, 1.0]))
    assert torch.equal(reinforce_advantages(T_([1, 0])), T_([1.0, -1.0]))


def test_polarity_weights_and_keep():
    correct = T_([True, False, False, True])
    assert torch.equal(polarity_weights(correct, 0.5, 2.0), T_([0.5, 2.0, 2.0, 0.5]))
    assert torch.equal(polarity_keep(correct, "both"), T_([True, True, True, True]))
    assert torch.equal(polarity_keep(correct, "positive"), T_([True, False, False, True]))
    assert torch.equal(polarity_keep(correct, "negative"), T_([False, True, True, False]))
    with pytest.raises(ValueError):
        polarity_keep(correct, "sideways")


# ---------------------------------------------------------------------------------------------
# DAPO overlong penalty and dynamic sampling


def test_overlong_penalty_three_regimes():
    # L_max = 20, L_cache = 8 -> L_exp = 12
    lengths = T_([0, 5, 12, 13, 16, 20, 21, 100])
    expected = [0, 0, 0, -1 / 8, -4 / 8, -8 / 8, -1, -1]
    assert close(overlong_penalty(lengths, max_len=20, cache_len=8), expected)


def test_overlong_penalty_paper_numbers():
    # L_max = 20480, L_cache = 4096 -> L_exp = 16384
    lengths = T_([16384, 16385, 18432, 20480, 20481])
    expected = [0.0, -1 / 4096, -2048 / 4096, -1.0, -1.0]
    assert close(overlong_penalty(lengths, 20480, 4096), expected)


def test_overlong_penalty_off_without_cache():
    assert torch.equal(overlong_penalty(T_([5, 50]), max_len=10, cache_len=0), torch.zeros(2))


def test_informative_groups_drops_all_correct_and_all_wrong():
    correct = T_([1, 1, 0, 0, 1, 0, 1, 1])
    groups = ["a", "a", "b", "b", "c", "c", "d", "d"]
    expected = T_([False, False, False, False, True, True, False, False])
    assert torch.equal(informative_groups(correct, groups), expected)


# ---------------------------------------------------------------------------------------------
# aggregate


LOSS = T_([[1.0, 2.0, 3.0, 7.0], [4.0, 5.0, 9.0, 9.0], [8.0, 8.0, 8.0, 8.0]])
MASK = T_([[1, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]])  # third row: no tokens at all


def test_aggregate_token_mean():
    # (1 + 2 + 3 + 4 + 5) / 5
    assert close(aggregate(LOSS, MASK, "token-mean"), 3.0)


def test_aggregate_seq_mean_token_mean_skips_empty_rows():
    # row means 6/3 = 2 and 9/2 = 4.5; the empty row is not a response: (2 + 4.5) / 2
    assert close(aggregate(LOSS, MASK, "seq-mean-token-mean"), 3.25)


def test_aggregate_seq_mean_token_sum_norm():
    # sum 15 over 2 responses times the constant length
    assert close(aggregate(LOSS, MASK, "seq-mean-token-sum-norm"), 15 / (2 * 4))  # T = 4
    assert close(aggregate(LOSS, MASK, "seq-mean-token-sum-norm", norm_len=10), 15 / (2 * 10))


def test_aggregate_ignores_inf_and_nan_under_mask():
    loss = LOSS.clone()
    loss[0, 3] = math.inf
    loss[1, 2] = math.nan
    loss[2, :] = -math.inf
    for mode, value in zip(AGG_MODES, (3.0, 3.25, 15 / 8)):
        assert close(aggregate(loss, MASK, mode), value)


def test_aggregate_all_empty_is_zero_and_unknown_mode_raises():
    for mode in AGG_MODES:
        assert float(aggregate(LOSS, torch.zeros_like(MASK), mode)) == 0.0
    with pytest.raises(ValueError):
        aggregate(LOSS, MASK, "seq-sum")


# ---------------------------------------------------------------------------------------------
# ppo_clip_loss

# Six tokens, one response, eps_low = 0.2, eps_high = 0.28 (DAPO's clip-higher):
#   A=+1, ratio 1.1 : inside            -> loss -1.1  , d/dlogp = -1.1
#   A=+1, ratio 1.5 : above 1.28, clipped -> loss -1.28, d/dlogp = 0
#   A=+1, ratio 0.5 : min(0.5, 0.8)=0.5 -> loss -0.5  , d/dlogp = -0.5 (not clipped)
#   A=-1, ratio 0.5 : min(-0.5, -0.8)   -> loss +0.8  , d/dlogp = 0   (clipped)
#   A=-1, ratio 1.5 : min(-1.5, -1.28)  -> loss +1.5  , d/dlogp = +1.5 (not clipped)
#   A=-1, ratio 0.9 : inside            -> loss +0.9  , d/dlogp = +0.9
RATIOS = [1.1, 1.5, 0.5, 0.5, 1.5, 0.9]
ADVS = [1.0, 1.0, 1.0, -1.0, -1.0, -1.0]
TOKEN_LOSS = [-1.1, -1.28, -0.5, 0.8, 1.5, 0.9]
TOKEN_GRAD = [-1.1, 0.0, -0.5, 0.0, 1.5, 0.9]


def _ppo_inputs():
    old = torch.log(T_([[0.5, 0.4, 0.6, 0.3, 0.2, 0.7]]))
    new = (old + torch.log(T_([RATIOS]))).requires_grad_(True)
    return new, old, T_([ADVS]), torch.ones(1, 6)


def test_ppo_clip_loss_clip_higher_hand_case():
    new, old, adv, mask = _ppo_inputs()
    loss, stats = ppo_clip_loss(new, old, adv, mask, eps_low=0.2, eps_high=0.28)
    assert close(loss, sum(TOKEN_LOSS) / 6, 1e-5)  # 0.32 / 6
    assert close(stats["clip_frac"], 2 / 6)
    kl = -sum(math.log(r) for r in RATIOS) / 6  # mean of old - new
    assert close(stats["approx_kl"], kl, 1e-5)
    loss.backward()
    assert close(new.grad, [[g / 6 for g in TOKEN_GRAD]], 1e-5)


def test_ppo_clip_loss_symmetric_clip_changes_the_upper_case():
    # with eps_high = 0.2, the A=+1, ratio=1.5 token is clipped at 1.2 instead of 1.28
    new, old, adv, mask = _ppo_inputs()
    loss, stats = ppo_clip_loss(new, old, adv, mask, eps_low=0.2, eps_high=0.2)
    expected = [-1.1, -1.2, -0.5, 0.8, 1.5, 0.9]
    assert close(loss, sum(expected) / 6, 1e-5)
    assert close(stats["clip_frac"], 2 / 6)


def test_ppo_clip_loss_per_token_values():
    for r, a, l in zip(RATIOS, ADVS, TOKEN_LOSS):
        old = torch.log(T_([[0.5]]))
        new = old + math.log(r)
        loss, _ = ppo_clip_loss(new, old, T_([[a]]), torch.ones(1, 1), eps_low=0.2, eps_high=0.28)
        assert close(loss, l, 1e-5), (r, a)


def test_ppo_clip_loss_masks_padding_and_aggregates_by_mode():
    # row 0: tokens A=+1 ratio 1 -> -1, -1 ; row 1: one token A=-2 ratio 1 -> +2 ; padding garbage
    old = T_([[-1.0, -2.0, -3.0], [-1.0, -50.0, 0.0]])
    new = T_([[-1.0, -2.0, 80.0], [-1.0, 40.0, -90.0]])
    adv = T_([[1.0, 1.0, 1e30], [-2.0, math.nan, math.inf]])
    mask = T_([[1, 1, 0], [1, 0, 0]])
    expect = {
        "token-mean": (-1 - 1 + 2) / 3,
        "seq-mean-token-mean": (-1 + 2) / 2,
        "seq-mean-token-sum-norm": (-2 + 2) / (2 * 5),
    }
    for mode, value in expect.items():
        loss, stats = ppo_clip_loss(new, old, adv, mask, agg_mode=mode, norm_len=5)
        assert close(loss, value), mode
        assert stats["clip_frac"] == 0.0 and stats["approx_kl"] == 0.0


def test_ppo_clip_loss_seq_mean_token_mean_hand():
    # row 0: A=+1, ratios 1, 1 -> -1, -1 (mean -1); row 1: A=+1 ratio 1.1 -> -1.1 (mean -1.1)
    old = torch.zeros(2, 2)
    new = T_([[0.0, 0.0], [math.log(1.1), 0.0]])
    adv = torch.ones(2, 2)
    mask = T_([[1, 1], [1, 0]])
    loss, _ = ppo_clip_loss(new, old, adv, mask, agg_mode="seq-mean-token-mean")
    assert close(loss, (-1 - 1.1) / 2, 1e-5)


# Dual clip (c = 3, applied where A < 0) and the log-ratio clamp (|log ratio| <= 20), hand cases
# with eps = 0.2:
#   A=-1, ratio 5   : max(5, 1.2) = 5 > 3 -> loss 3 (dual clip), d/dlogp = 0; without it 5, grad 5
#   A=-1, ratio 2   : max(2, 1.2) = 2 < 3 -> loss 2, d/dlogp = 2 (dual clip inactive)
#   A=+1, ratio 5   : max(-5, -1.2) = -1.2 -> loss -1.2 (A > 0: never dual-clipped), grad 0
#   A=-2, ratio 4   : max(8, 2.4) = 8 > 6 -> loss 6 = -A * c, grad 0
DUAL = [  # (ratio, A, loss with c=3, grad with c=3, loss without, grad without)
    (5.0, -1.0, 3.0, 0.0, 5.0, 5.0),
    (2.0, -1.0, 2.0, 2.0, 2.0, 2.0),
    (5.0, 1.0, -1.2, 0.0, -1.2, 0.0),
    (4.0, -2.0, 6.0, 0.0, 8.0, 8.0),
]


@pytest.mark.parametrize("ratio, a, loss_c, grad_c, loss_off, grad_off", DUAL)
def test_dual_clip_hand_cases(ratio, a, loss_c, grad_c, loss_off, grad_off):
    for c, want_loss, want_grad in ((3.0, loss_c, grad_c), (0.0, loss_off, grad_off)):
        old = torch.log(T_([[0.1]]))
        new = (old + math.log(ratio)).requires_grad_(True)
        loss, stats = ppo_clip_loss(new, old, T_([[a]]), torch.ones(1, 1), eps_low=0.2,
                                    eps_high=0.2, clip_ratio_c=c)
        assert close(loss, want_loss, 1e-5), (ratio, a, c)
        loss.backward()
        assert close(new.grad, [[want_grad]], 1e-5), (ratio, a, c)
        assert stats["dual_clip_frac"] == (1.0 if c and want_loss != loss_off else 0.0)


def test_log_ratio_clamp_bounds_the_ratio_at_exp_20():
    # A = -1, log ratio 30: clamped to 20 -> loss e^20 without dual clip, 3 with it; unclamped e^30
    old, new, adv, mask = T_([[-31.0]]), T_([[-1.0]]), T_([[-1.0]]), torch.ones(1, 1)
    kw = dict(eps_low=0.2, eps_high=0.2)
    assert close(ppo_clip_loss(new, old, adv, mask, clip_ratio_c=0.0, **kw)[0], math.exp(20), 1e-6)
    assert close(ppo_clip_loss(new, old, adv, mask, clip_ratio_c=3.0, **kw)[0], 3.0)
    unclamped, _ = ppo_clip_loss(new, old, adv, mask, clip_ratio_c=0.0, log_ratio_clamp=0.0, **kw)
    assert close(unclamped, math.exp(30), 1e-6)
    # the clamp is symmetric: log ratio -30 -> ratio e^-20; A = +1 -> min(e^-20, 0.8) = e^-20
    low, _ = ppo_clip_loss(old, new, -adv, mask, clip_ratio_c=0.0, **kw)
    assert math.isclose(float(low), -math.exp(-20), rel_tol=1e-5)
    low_off, _ = ppo_clip_loss(old, new, -adv, mask, clip_ratio_c=0.0, log_ratio_clamp=0.0, **kw)
    assert math.isclose(float(low_off), -math.exp(-30), rel_tol=1e-5)


def test_ppo_clip_token_loss_matches_verls_vanilla_loss_with_off_policy_ratios():
    """verl's own compute_policy_loss_vanilla (dual clip 3, clamp 20) on ratios up to e^25."""
    from verl.trainer.ppo.core_algos import compute_policy_loss_vanilla
    from verl.workers.config import ActorConfig

    g = torch.Generator().manual_seed(0)
    old = -torch.rand(6, 7, generator=g) * 3
    new = old + torch.randn(6, 7, generator=g) * 4
    new[0, 0], new[1, 1] = old[0, 0] + 25, old[1, 1] - 25  # beyond the clamp both ways
    adv = torch.randn(6, 1, generator=g).expand(6, 7).contiguous()
    mask = (torch.arange(7)[None, :] < T_([7, 5, 3, 7, 1, 6])[:, None]).float()
    cfg = ActorConfig(strategy="fsdp", ppo_micro_batch_size_per_gpu=1, clip_ratio=0.2,
                      clip_ratio_low=0.2, clip_ratio_high=0.28, clip_ratio_c=3.0, rollout_n=1)
    new_verl = new.clone().requires_grad_(True)
    want, verl_metrics = compute_policy_loss_vanilla(old, new_verl, adv, mask, "token-mean", cfg)
    new_ours = new.clone().requires_grad_(True)
    got, stats = ppo_clip_loss(new_ours, old, adv, mask, eps_low=0.2, eps_high=0.28,
                               clip_ratio_c=3.0, log_ratio_clamp=20.0)
    assert torch.allclose(got, want, rtol=1e-6, atol=1e-6)
    assert stats["clip_frac"] == pytest.approx(float(verl_metrics["actor/pg_clipfrac"]), abs=1e-6)
    assert stats["dual_clip_frac"] == pytest.approx(float(verl_metrics["actor/pg_clipfrac_lower"]),
                                                    abs=1e-6)
    assert stats["approx_kl"] == pytest.approx(float(verl_metrics["actor/ppo_kl"]), abs=1e-6)
    want.backward()
    got.backward()
    torch.testing.assert_close(new_ours.grad * mask, new_verl.grad * mask)


def test_recipes_follow_their_authors_dual_clip():
    for name in ("grpo", "dr_grpo", "dapo", "a3po", "ppo"):
        assert resolve(name).clip_ratio_c == 3.0 and resolve(name).log_ratio_clamp == 20.0, name
    for name in ("psr", "nsr", "w_reinforce"):  # RLVR-Decomposed's compute_policy_loss
        assert resolve(name).clip_ratio_c == 0.0 and resolve(name).log_ratio_clamp == 0.0, name
    assert resolve("psr", {"clip_ratio_c": 3.0}).clip_ratio_c == 3.0  # settable per study


# ---------------------------------------------------------------------------------------------
# DAPO's +1 / -1 reward scale


def test_dapo_overlong_advantages_on_the_signed_scale_hand_computed():
    # one group, L_max 10, L_cache 4 (L_exp 6): correct len 6 -> 1; correct len 8 -> 1 - 2/4 = 0.5;
    # wrong len 3 -> -1; wrong len 5 -> -1. mean -0.125, deviations 1.125, 0.625, -0.875, -0.875,
    # unbiased var (1.265625 + 0.390625 + 2 * 0.765625) / 3 = 1.0625
    correct, lengths = T_([1, 1, 0, 0]).bool(), T_([6, 8, 3, 5])
    recipe = resolve("dapo", {"overlong_cache": 4})
    rewards = sequence_rewards(recipe, correct, lengths, max_len=10)
    assert close(rewards, [1.0, 0.5, -1.0, -1.0])
    adv, _ = sequence_advantages(recipe, rewards, correct, [0, 0, 0, 0])
    std = math.sqrt(1.0625)
    assert close(adv, [d / (std + 1e-6) for d in (1.125, 0.625, -0.875, -0.875)], 1e-6)
    # on the 0/1 scale: rewards 1, 0.5, 0, 0; mean 0.375; var (0.390625+0.015625+2*0.140625)/3
    binary = resolve("dapo", {"overlong_cache": 4, "incorrect_reward": 0.0})
    adv01, _ = sequence_advantages(binary, sequence_rewards(binary, correct, lengths, 10), correct,
                                   [0, 0, 0, 0])
    std01 = math.sqrt(0.6875 / 3)
    assert close(adv01, [d / (std01 + 1e-6) for d in (0.625, 0.125, -0.375, -0.375)], 1e-6)
    assert float((adv - adv01).abs().max()) > 0.2  # the penalty weighs half as much on +1/-1


@pytest.mark.parametrize("name", ["dapo", "a3po"])
def test_signed_rewards_leave_advantages_unchanged_without_overlong_shaping(name):
    correct = T_([1, 0, 0, 1, 1, 1, 0, 0]).bool()
    lengths = T_([3, 9, 9, 2, 5, 5, 5, 5])
    signed = resolve(name, {"overlong_cache": 0})
    binary = resolve(name, {"overlong_cache": 0, "incorrect_reward": 0.0})
    assert signed.incorrect_reward == -1.0
    groups = [0, 0, 0, 0, 1, 1, 1, 1]
    a, _ = sequence_advantages(signed, sequence_rewards(signed, correct, lengths, 10), correct, groups)
    b, _ = sequence_advantages(binary, sequence_rewards(binary, correct, lengths, 10), correct, groups)
    assert torch.allclose(a, b, atol=1e-5)
