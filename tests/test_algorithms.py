"""Hand-computed cases for polarity.algorithms (see /work/shared/algorithms.md).

Every expected number below is written out from the formula in the specification (the
arithmetic is spelled out in comments or as a Python expression of plain numbers), never
obtained by calling the code under test.
"""

from __future__ import annotations

import math

import jsonschema
import pytest
import torch

from polarity.algorithms import (
    ALGORITHMS,
    AGG_MODES,
    a3po_select,
    a3po_shape,
    aggregate,
    decayed_scale,
    default_selections,
    ema_update,
    get_algorithm,
    group_advantages,
    informative_groups,
    mean_pool,
    overlong_penalty,
    params_schema,
    polarity_keep,
    polarity_weights,
    popo_nll_loss,
    popo_similarity_loss,
    popo_weights,
    ppo_clip_loss,
    reinforce_advantages,
    resolve,
    sequence_advantages,
    sequence_rewards,
    shape_with_selections,
    token_advantages,
    token_entropy,
)

T_ = torch.tensor


def close(actual, expected, tol=1e-6):
    expected = torch.as_tensor(expected, dtype=torch.float64)
    return torch.allclose(torch.as_tensor(actual).double(), expected, atol=tol, rtol=tol)


def mask_from_lengths(lengths, width):
    return (torch.arange(width)[None, :] < T_(lengths)[:, None]).float()


def lp(probs):
    """log-probabilities from a nested list of probabilities."""
    return torch.log(T_(probs, dtype=torch.float32))


# sqrt(1/3): the unbiased std of a 4-group {1, 1, 0, 0} (deviations +-1/2: 4 * 1/4 / 3 = 1/3)
# and of a 3-group {1, 0, 0} (deviations 2/3, -1/3, -1/3: (4/9 + 1/9 + 1/9) / 2 = 1/3).
SQRT_THIRD = math.sqrt(1.0 / 3.0)


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


# ---------------------------------------------------------------------------------------------
# A3PO shaping


def test_decayed_scale_steps():
    assert decayed_scale(2.0, 0.005, 0) == 2.0
    assert decayed_scale(2.0, 0.005, 100) == 1.5
    assert abs(decayed_scale(2.0, 0.005, 199) - 1.005) < 1e-12
    assert decayed_scale(2.0, 0.005, 200) == 1.0
    assert decayed_scale(2.0, 0.005, 300) == 1.0
    assert decayed_scale(3.0, 0.0, 10_000) == 3.0  # constant scale


# one positive and one negative response, five tokens each
PROBS = [[0.9, 0.1, 0.5, 0.05, 0.7], [0.9, 0.1, 0.5, 0.05, 0.7]]


def test_a3po_positive_amplifies_lowest_prob_tokens():
    adv = T_([[1.0] * 5, [-0.5] * 5])
    out = a3po_shape(adv, lp(PROBS), torch.ones(2, 5), T_([True, False]), 0, p_pos=0.4, p_neg=0.4)
    # positive: k = floor(0.4 * 5) = 2 lowest probabilities: 0.05 (t=3) and 0.1 (t=1), x2
    # negative: k = 2 highest probabilities: 0.9 (t=0) and 0.7 (t=4), x2
    expected = [[1.0, 2.0, 1.0, 2.0, 1.0], [-1.0, -0.5, -0.5, -0.5, -1.0]]
    assert close(out, expected)


def test_a3po_default_fraction_k_is_max_1_floor():
    # defaults p = 0.2: L = 5 -> k = 1; L = 3 -> floor(0.6) = 0 -> k = 1; L = 10 -> k = 2
    probs = [
        [0.9, 0.1, 0.5, 0.05, 0.7, 1, 1, 1, 1, 1],
        [0.3, 0.2, 0.4, 1, 1, 1, 1, 1, 1, 1],
        [0.11, 0.12, 0.13, 0.14, 0.15, 0.16, 0.17, 0.18, 0.19, 0.10],
    ]
    mask = mask_from_lengths([5, 3, 10], 10)
    adv = mask.clone()
    out = a3po_shape(adv, lp(probs), mask, T_([True, True, True]), 0)
    expected = mask.clone()
    expected[0, 3] = 2.0  # 0.05
    expected[1, 1] = 2.0  # 0.2
    expected[2, 9] = 2.0  # 0.10
    expected[2, 0] = 2.0  # 0.11
    assert torch.equal(out, expected)


def test_a3po_padding_never_selected():
    # padding has the lowest (positive) and the highest (negative) probabilities
    old = T_([[-1.0, -2.0, -0.5, -100.0, -100.0, -math.inf],
              [-1.0, -2.0, -0.5, 0.0, 0.0, 0.0]])
    mask = mask_from_lengths([3, 3], 6)
    adv = T_([[1.0, 1.0, 1.0, 0.0, 0.0, 0.0], [-1.0, -1.0, -1.0, 0.0, 0.0, 0.0]])
    out = a3po_shape(adv, old, mask, T_([True, False]), 0, p_pos=0.5, p_neg=0.5)
    # L = 3, k = floor(1.5) = 1: positive -> t=1 (log-prob -2), negative -> t=2 (log-prob -0.5)
    expected = [[1.0, 2.0, 1.0, 0.0, 0.0, 0.0], [-1.0, -1.0, -2.0, 0.0, 0.0, 0.0]]
    assert torch.equal(out, T_(expected))
    (sel_pos, sel_neg) = a3po_select(old, mask, T_([True, False]), default_selections(0.5, 0.5)[:2])
    assert not sel_pos[:, 3:].any() and not sel_neg[:, 3:].any()


def test_a3po_empty_response_selects_nothing():
    mask = torch.zeros(1, 4)
    masks = a3po_select(torch.zeros(1, 4), mask, T_([True]), default_selections()[:2])
    assert not masks[0].any() and not masks[1].any()


@pytest.mark.parametrize(
    "step, s_pos, s_neg",
    [
        # rho_pos = 3, alpha_pos = 0.01; rho_neg = 1.5, alpha_neg = 0.005
        (0, 3.0, 1.5),
        (50, 2.5, 1.25),
        (100, 2.0, 1.0),  # 1.5 - 0.5 = 1
        (150, 1.5, 1.0),
        (200, 1.0, 1.0),
        (1000, 1.0, 1.0),
    ],
)
def test_a3po_decay_schedule(step, s_pos, s_neg):
    adv = T_([[1.0] * 5, [-1.0] * 5])
    out = a3po_shape(adv, lp(PROBS), torch.ones(2, 5), T_([True, False]), step,
                     rho_pos=3.0, alpha_pos=0.01, rho_neg=1.5, alpha_neg=0.005)
    expected = [[1.0, 1.0, 1.0, s_pos, 1.0], [-s_neg, -1.0, -1.0, -1.0, -1.0]]
    assert close(out, expected, 1e-6)


def test_a3po_polarity_from_correctness_not_advantage_sign():
    # a correct response with a negative advantage (e.g. after an overlong penalty) is still a
    # positive sample: its LOWEST-probability token is amplified.
    adv = T_([[-0.3] * 5])
    out = a3po_shape(adv, lp(PROBS[:1]), torch.ones(1, 5), T_([True]), 0)
    assert close(out, [[-0.3, -0.3, -0.3, -0.6, -0.3]])


@pytest.mark.parametrize(
    "p, length, k",
    [
        (0.53, 100, 53),
        (0.21, 300, 63),
        (0.42, 150, 63),
        (0.29, 100, 29),  # 0.29 * 100 == 28.999999999999996 in float64
        (0.2, 1000, 200),
    ],
)
def test_a3po_k_is_floor_of_decimal_fraction(p, length, k):
    # k = max(1, floor(p * L)) with the fraction as the user writes it in the config:
    # floor(0.53 * 100) = 53, floor(0.21 * 300) = 63, floor(0.42 * 150) = 63, ...
    old = torch.log(torch.linspace(0.01, 0.99, length))[None, :]
    mask = torch.ones(1, length)
    (sel,) = a3po_select(old, mask, T_([True]), default_selections(p_pos=p)[:1])
    selected = int(sel.sum())
    assert selected == k, f"p={p}, L={length}: selected {selected} tokens, expected floor(p*L)={k}"


def test_a3po_entropy_ranking():
    # probabilities would pick t=3 (positive, lowest) and t=0, t=4 (negative, highest);
    # ranking by entropy instead: positives take the HIGHEST-entropy tokens, negatives the LOWEST
    entropy = T_([[0.1, 2.0, 0.5, 1.5, 0.3], [0.1, 2.0, 0.5, 1.5, 0.3]])
    adv = T_([[1.0] * 5, [-1.0] * 5])
    sels = default_selections(p_pos=0.4, p_neg=0.4)
    out, masks = shape_with_selections(adv, lp(PROBS), torch.ones(2, 5), T_([True, False]), 0,
                                       sels, entropy=entropy)
    expected = [[1.0, 2.0, 1.0, 2.0, 1.0], [-2.0, -1.0, -1.0, -1.0, -2.0]]
    assert torch.equal(out, T_(expected))


def test_a3po_entropy_ranking_through_registry():
    recipe = resolve("a3po", {"rank_by": "entropy", "p_pos": 0.4, "p_neg": 0.4})
    entropy = T_([[0.1, 2.0, 0.5, 1.5, 0.3], [0.1, 2.0, 0.5, 1.5, 0.3]])
    correct = T_([True, False])
    rewards = correct.float()
    adv, _, _ = token_advantages(recipe, rewards, correct, [0, 0], lp(PROBS), torch.ones(2, 5),
                                 step=0, entropy=entropy)
    a = 0.5 / (math.sqrt(0.5) + 1e-6)  # GRPO advantage of a {1, 0} group
    expected = [[a, 2 * a, a, 2 * a, a], [-2 * a, -a, -a, -a, -2 * a]]
    assert close(adv, expected, 1e-6)


def test_a3po_optional_selections_positive_high_and_negative_low():
    sels = default_selections(p_pos=0.2, p_neg=0.2, p_pos_high=0.2, rho_pos_high=1.5,
                              p_neg_low=0.2, rho_neg_low=3.0, alpha_neg_low=0.01)
    adv = T_([[1.0] * 5, [-1.0] * 5])
    out, _ = shape_with_selections(adv, lp(PROBS), torch.ones(2, 5), T_([True, False]), 100, sels)
    # step 100: s_pos = s_neg = 2 - 0.5 = 1.5, pos-high 1.5 (no decay), neg-low 3 - 1 = 2
    # positive: low t=3 (0.05) x1.5, high t=0 (0.9) x1.5; negative: high t=0 x1.5, low t=3 x2
    expected = [[1.5, 1.0, 1.0, 1.5, 1.0], [-1.5, -1.0, -1.0, -2.0, -1.0]]
    assert close(out, expected)


# ---------------------------------------------------------------------------------------------
# registry

EXPECTED_DEFAULTS = {
    "grpo": dict(advantage="grpo", eps_low=0.2, eps_high=0.2, loss_agg_mode="seq-mean-token-mean",
                 polarity="both", token_shaping="none"),
    "dr_grpo": dict(advantage="drgrpo", loss_agg_mode="seq-mean-token-sum-norm"),
    "dapo": dict(advantage="grpo", eps_low=0.2, eps_high=0.28, loss_agg_mode="token-mean",
                 dynamic_sampling=True),
    "psr": dict(advantage="reinforce", polarity="positive", eps_low=0.2, eps_high=0.2,
                loss_agg_mode="token-mean", dynamic_sampling=False),
    "nsr": dict(advantage="reinforce", polarity="negative", eps_low=0.2, eps_high=0.2,
                loss_agg_mode="token-mean"),
    "w_reinforce": dict(advantage="reinforce", polarity="both", w_pos=0.1, w_neg=1.0,
                        loss_agg_mode="token-mean"),
    "a3po": dict(advantage="grpo", eps_low=0.2, eps_high=0.28, loss_agg_mode="token-mean",
                 dynamic_sampling=True, token_shaping="a3po", rank_by="prob", p_pos=0.2,
                 p_neg=0.2, rho_pos=2.0, rho_neg=2.0, alpha_pos=0.005, alpha_neg=0.005),
    "popo": dict(objective="popo", popo_alpha=0.1, popo_beta=0.01, popo_tau=0.995,
                 popo_noise=0.02, popo_uniform=False),
    "ppo": dict(objective="ppo_gae"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_DEFAULTS))
def test_every_algorithm_resolves_to_its_paper_defaults(name):
    recipe = resolve(name)
    assert get_algorithm(name).resolve() == recipe
    for key, value in EXPECTED_DEFAULTS[name].items():
        assert getattr(recipe, key) == value, (name, key)


def test_registry_names():
    assert set(ALGORITHMS) == set(EXPECTED_DEFAULTS)
    with pytest.raises(KeyError):
        get_algorithm("grpoo")


def test_w_reinforce_lambda_alias_maps_to_w_pos():
    assert resolve("w_reinforce", {"lambda": 0.5}).w_pos == 0.5
    assert "lambda" in get_algorithm("w_reinforce").param_names()
    assert "w_pos" not in get_algorithm("w_reinforce").param_names()
    with pytest.raises(ValueError, match=r"algorithm_params\.w_reinforce\.w_pos"):
        resolve("w_reinforce", {"w_pos": 0.5})


def test_overrides_apply():
    r = resolve("a3po", {"rho_pos": 3, "alpha_pos": 0.0, "rank_by": "entropy", "max_gen_rounds": 5})
    assert (r.rho_pos, r.alpha_pos, r.rank_by, r.max_gen_rounds) == (3.0, 0.0, "entropy", 5)
    assert isinstance(r.rho_pos, float) and isinstance(r.max_gen_rounds, int)


BAD_PARAMS = [
    ("grpo", "bogus", 1),
    ("grpo", "p_pos", 0.3),  # an A3PO knob is unknown to GRPO
    ("popo", "eps_high", 0.3),
    ("ppo", "polarity", "positive"),
    ("w_reinforce", "w_pos", 0.3),  # only reachable through its alias
    ("w_reinforce", "lambda", -0.1),
    ("w_reinforce", "lambda", "0.1"),
    ("w_reinforce", "lambda", True),
    ("grpo", "polarity", "sideways"),
    ("grpo", "loss_agg_mode", "token-sum"),
    ("grpo", "eps_low", 1.5),
    ("grpo", "eps_low", -0.1),
    ("dapo", "dynamic_sampling", "yes"),
    ("dapo", "dynamic_sampling", 1),
    ("dapo", "max_gen_rounds", 0),
    ("dapo", "max_gen_rounds", 2.5),
    ("dapo", "overlong_cache", -1),
    ("a3po", "p_pos", 1.5),
    ("a3po", "rho_pos", 0.0),
    ("a3po", "rho_neg", -0.5),
    ("dapo", "clip_ratio_c", 0.5),
    ("dapo", "log_ratio_clamp", 0.5),
    ("dapo", "incorrect_reward", 1.0),
    ("popo", "popo_predictor_width", 0),
    ("a3po", "alpha_neg", -0.001),
    ("a3po", "rank_by", "logit"),
    ("popo", "popo_tau", 1.5),
    ("popo", "popo_uniform", "false"),
    ("psr", "advantage", "gae"),
]


@pytest.mark.parametrize("algo, key, value", BAD_PARAMS)
def test_bad_params_raise_value_error_naming_the_key(algo, key, value):
    with pytest.raises(ValueError, match=rf"algorithm_params\.{algo}\.{key}\b"):
        resolve(algo, {key: value})


def _validator():
    schema = params_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_params_schema_has_every_algorithm_and_its_names():
    schema = params_schema()
    assert set(schema["properties"]) == set(ALGORITHMS)
    for name, algo in ALGORITHMS.items():
        assert set(schema["properties"][name]["properties"]) == set(algo.param_names())
    v = _validator()
    assert v.is_valid({})
    assert v.is_valid({"w_reinforce": {"lambda": 0.1}, "a3po": {"rho_pos": 2.0, "alpha_pos": 0.005}})
    assert not v.is_valid({"nope": {}})


@pytest.mark.parametrize("algo, key, value", BAD_PARAMS)
def test_params_schema_rejects_what_resolve_rejects(algo, key, value):
    assert not _validator().is_valid({algo: {key: value}})


CANDIDATE_VALUES = [True, False, None, -1, 0, 1, 2, 3.0, 0.5, 1.5, 2.5, -0.5, 1e9, "x", "0.1",
                    "both", "positive", "negative", "grpo", "drgrpo", "reinforce", "token-mean",
                    "seq-mean-token-mean", "seq-mean-token-sum-norm", "prob", "entropy", "a3po",
                    "none", "popo", "ppo_clip", [], {}]


def test_params_schema_agrees_with_resolve_on_a_value_sweep():
    # the schema rejects everything resolve rejects (and, on this sweep, nothing more)
    v = _validator()
    disagreements = []
    for name, algo in ALGORITHMS.items():
        for key in algo.param_names():
            for value in CANDIDATE_VALUES:
                try:
                    resolve(name, {key: value})
                    ok = True
                except ValueError:
                    ok = False
                if ok != v.is_valid({name: {key: value}}):
                    disagreements.append((name, key, value, "resolve accepts" if ok else "resolve rejects"))
    assert disagreements == []


@pytest.mark.parametrize("algo, key", [("a3po", "p_pos"), ("a3po", "rho_neg"), ("grpo", "eps_low"),
                                       ("w_reinforce", "lambda"), ("popo", "popo_tau")])
def test_nan_param_is_rejected(algo, key):
    # YAML's .nan parses to float("nan"); every "must be >= / <=" comparison is False for NaN,
    # so a bound check written as `value < minimum` lets it through.
    with pytest.raises(ValueError, match=rf"algorithm_params\.{algo}\.{key}\b"):
        resolve(algo, {key: float("nan")})


# ---------------------------------------------------------------------------------------------
# the shared pipeline: rewards -> token advantages

CORRECT = T_([True, False, True, False])
LENGTHS = [2, 3, 1, 2]
MASK4 = mask_from_lengths(LENGTHS, 3)
OLD4 = lp([[0.5, 0.2, 1.0], [0.3, 0.6, 0.9], [0.4, 1.0, 1.0], [0.7, 0.1, 1.0]])


def _token_adv(name, params=None, step=0, rewards=None):
    recipe = resolve(name, params)
    rewards = CORRECT.float() if rewards is None else rewards
    return token_advantages(recipe, rewards, CORRECT, [0, 0, 0, 0], OLD4, MASK4, step)


def test_sequence_rewards_adds_overlong_penalty_for_dapo():
    recipe = resolve("dapo", {"overlong_cache": 4})
    # max_len 10 -> L_exp 6: lengths 6, 8, 10, 11 -> 0, -2/4, -1, -1
    # DAPO's scale: +1 correct, -1 incorrect (verl's math_dapo), then the penalty
    rewards = sequence_rewards(recipe, T_([1, 1, 0, 1]), T_([6, 8, 10, 11]), max_len=10)
    assert close(rewards, [1.0, 0.5, -2.0, 0.0])
    binary = resolve("dapo", {"overlong_cache": 4, "incorrect_reward": 0.0})  # still expressible
    rewards = sequence_rewards(binary, T_([1, 1, 0, 1]), T_([6, 8, 10, 11]), max_len=10)
    assert close(rewards, [1.0, 0.5, -1.0, 0.0])
    assert torch.equal(sequence_rewards(resolve("grpo"), T_([1, 0]), T_([99, 99]), 10), T_([1.0, 0.0]))


def test_psr_token_advantages():
    adv, loss_mask, metrics = _token_adv("psr")
    assert torch.equal(adv, T_([[1, 1, 0], [0, 0, 0], [1, 0, 0], [0, 0, 0]]).float())
    assert torch.equal(loss_mask, T_([[1, 1, 0], [0, 0, 0], [1, 0, 0], [0, 0, 0]]).float())
    assert metrics == {}


def test_nsr_token_advantages():
    adv, loss_mask, _ = _token_adv("nsr")
    assert torch.equal(adv, T_([[0, 0, 0], [-1, -1, -1], [0, 0, 0], [-1, -1, 0]]).float())
    assert torch.equal(loss_mask, T_([[0, 0, 0], [1, 1, 1], [0, 0, 0], [1, 1, 0]]).float())


def test_w_reinforce_token_advantages():
    adv, loss_mask, _ = _token_adv("w_reinforce")
    assert close(adv, [[0.1, 0.1, 0], [-1, -1, -1], [0.1, 0, 0], [-1, -1, 0]])
    assert torch.equal(loss_mask, MASK4)
    adv, _, _ = _token_adv("w_reinforce", {"lambda": 0.5})
    assert close(adv, [[0.5, 0.5, 0], [-1, -1, -1], [0.5, 0, 0], [-1, -1, 0]])


def test_grpo_and_dr_grpo_token_advantages():
    a = 0.5 / (SQRT_THIRD + 1e-6)  # group {1, 0, 1, 0}
    adv, loss_mask, _ = _token_adv("grpo")
    assert close(adv, [[a, a, 0], [-a, -a, -a], [a, 0, 0], [-a, -a, 0]])
    assert torch.equal(loss_mask, MASK4)
    adv, _, _ = _token_adv("dr_grpo")
    assert close(adv, [[0.5, 0.5, 0], [-0.5, -0.5, -0.5], [0.5, 0, 0], [-0.5, -0.5, 0]])


def test_grpo_single_polarity_with_weights():
    # the A3PO paper's variant: GRPO advantages, positives only / weighted 0.5 : 1
    a = 0.5 / (SQRT_THIRD + 1e-6)
    adv, loss_mask, _ = _token_adv("grpo", {"polarity": "positive"})
    assert close(adv, [[a, a, 0], [0, 0, 0], [a, 0, 0], [0, 0, 0]])
    assert torch.equal(loss_mask[1], torch.zeros(3))
    adv, _, _ = _token_adv("grpo", {"w_pos": 0.5})
    assert close(adv, [[a / 2, a / 2, 0], [-a, -a, -a], [a / 2, 0, 0], [-a, -a, 0]])


def test_positive_polarity_keeps_a_correct_sample_with_negative_advantage():
    # rewards after an overlong penalty: correct-but-long sample 0 has reward 0.5 < mean
    rewards = T_([0.5, 0.0, 1.0, 1.0])
    recipe = resolve("grpo", {"polarity": "positive"})
    adv, loss_mask, _ = token_advantages(recipe, rewards, CORRECT, [0] * 4, OLD4, MASK4, 0)
    seq, keep = sequence_advantages(recipe, rewards, CORRECT, [0] * 4)
    assert torch.equal(keep, CORRECT)
    # mean 0.625; deviations -0.125, -0.625, 0.375, 0.375; var (1/64 + 25/64 + 9/64 + 9/64) / 3
    std = math.sqrt((0.015625 + 0.390625 + 0.140625 + 0.140625) / 3)
    assert close(seq, [-0.125 / (std + 1e-6), 0.0, 0.375 / (std + 1e-6), 0.0])
    assert float(adv[0, 0]) < 0 and bool(loss_mask[0, 0] == 1)


def test_a3po_token_advantages_and_metrics():
    a = 0.5 / (SQRT_THIRD + 1e-6)
    adv, loss_mask, metrics = _token_adv("a3po", step=100)
    # k = 1 everywhere (L <= 3). positive rows: lowest prob (row 0: 0.2 at t=1; row 2: t=0);
    # negative rows: highest prob (row 1: 0.9 at t=2; row 3: 0.7 at t=0); s = 2 - 0.5 = 1.5
    s = 1.5
    expected = [[a, s * a, 0], [-a, -a, -s * a], [s * a, 0, 0], [-s * a, -a, 0]]
    assert close(adv, expected)
    assert torch.equal(loss_mask, MASK4)
    assert set(metrics) == {"a3po/s_pos", "a3po/s_neg", "a3po/amplified_frac_pos",
                            "a3po/amplified_frac_neg", "a3po/amplified_prob_pos",
                            "a3po/amplified_prob_neg"}
    assert metrics["a3po/s_pos"] == 1.5 and metrics["a3po/s_neg"] == 1.5
    assert close(metrics["a3po/amplified_frac_pos"], 2 / 3)  # 2 of 3 positive tokens
    assert close(metrics["a3po/amplified_frac_neg"], 2 / 5)  # 2 of 5 negative tokens
    assert close(metrics["a3po/amplified_prob_pos"], (0.2 + 0.4) / 2)
    assert close(metrics["a3po/amplified_prob_neg"], (0.9 + 0.7) / 2)


def test_a3po_past_the_decay_equals_dapo():
    dapo, dapo_mask, _ = _token_adv("dapo")
    a3po, a3po_mask, metrics = _token_adv("a3po", step=200)
    assert torch.equal(a3po, dapo) and torch.equal(a3po_mask, dapo_mask)
    assert metrics["a3po/s_pos"] == 1.0


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
