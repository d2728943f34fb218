"""Property tests (hypothesis) for polarity.algorithms: the invariants of algorithms.md.

- padding invariance: extra padded columns holding garbage (NaN, inf, huge log-prob gaps) never
  change advantages on valid tokens, losses, gradients or A3PO selections;
- polarity: PSR gets no gradient from incorrect samples, NSR none from correct ones;
- A3PO: rho = 1, or step >= (rho - 1) / alpha, is exactly DAPO; exactly max(1, floor(p L_i))
  tokens are selected per non-empty response, the lowest/highest ones; only selected tokens
  change; no advantage changes sign;
- group advantages: invariant to permuting the batch and to shifting rewards (GRPO also to
  positive scaling); POPO weights are a distribution over each group's positives.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from polarity.algorithms import (
    AGG_MODES,
    ALGORITHMS,
    a3po_select,
    a3po_shape,
    aggregate,
    default_selections,
    group_advantages,
    popo_weights,
    ppo_clip_loss,
    resolve,
    token_advantages,
)

SETTINGS = settings(max_examples=50, deadline=None)

PG_ALGOS = sorted(n for n, a in ALGORITHMS.items() if a.defaults.objective == "ppo_clip")

GARBAGE = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 1e30, -1e30, 0.0, 1e4, -1e4, 88.0, -88.0]),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
)
# log-probs with frequent ties
LOGP = st.one_of(st.sampled_from([0.0, -0.5, -1.0, -2.0]), st.floats(-20.0, 0.0, width=32))


@st.composite
def batches(draw, max_b=6, max_t=10, min_len=0):
    """A ragged batch: mask (arbitrary, not only right-padded), old log-probs, correctness, groups."""
    b = draw(st.integers(1, max_b))
    t = draw(st.integers(1, max_t))
    mask = draw(arrays(np.bool_, (b, t)))
    if min_len > 0:
        mask[:, 0] = True
    old = draw(arrays(np.float32, (b, t), elements=LOGP))
    correct = draw(arrays(np.bool_, (b,)))
    groups = draw(arrays(np.int64, (b,), elements=st.integers(0, 2)))
    return (torch.from_numpy(mask), torch.from_numpy(old), torch.from_numpy(correct),
            groups.tolist())


def pad(x: torch.Tensor, garbage: np.ndarray) -> torch.Tensor:
    """Append the columns ``garbage`` [B, K] to x [B, T] (with x's dtype)."""
    return torch.cat([x, torch.from_numpy(garbage).to(x.dtype)], dim=-1)


def garbage_like(draw, b, k):
    return draw(arrays(np.float32, (b, k), elements=GARBAGE))


def tensors_close(a, b):
    return torch.allclose(a, b, rtol=1e-5, atol=1e-6, equal_nan=True)


# ---------------------------------------------------------------------------------------------
# padding invariance


@SETTINGS
@given(data=st.data(), mode=st.sampled_from(AGG_MODES))
def test_aggregate_ignores_padded_columns(data, mode):
    mask, _, _, _ = data.draw(batches())
    b, t = mask.shape
    loss = torch.from_numpy(data.draw(arrays(np.float32, (b, t), elements=st.floats(-10, 10, width=32))))
    k = data.draw(st.integers(1, 5))
    padded_loss = pad(loss, garbage_like(data.draw, b, k))
    padded_mask = pad(mask.float(), np.zeros((b, k), np.float32))
    ref = aggregate(loss, mask.float(), mode, norm_len=16)
    out = aggregate(padded_loss, padded_mask, mode, norm_len=16)
    assert torch.isfinite(out)
    assert tensors_close(out, ref)


@SETTINGS
@given(data=st.data(), mode=st.sampled_from(AGG_MODES),
       eps=st.tuples(st.sampled_from([0.1, 0.2]), st.sampled_from([0.2, 0.28])))
def test_ppo_clip_loss_ignores_padded_columns(data, mode, eps):
    mask, old, _, _ = data.draw(batches())
    b, t = mask.shape
    noise = data.draw(arrays(np.float32, (b, t), elements=st.floats(-0.5, 0.5, width=32)))
    adv = torch.from_numpy(data.draw(arrays(np.float32, (b, t), elements=st.floats(-3, 3, width=32))))
    new = old + torch.from_numpy(noise)
    k = data.draw(st.integers(1, 5))
    # garbage, and a huge log-prob gap on padding (exp would overflow if it were not masked)
    p_new = pad(new, garbage_like(data.draw, b, k)).requires_grad_(True)
    p_old = pad(old, garbage_like(data.draw, b, k))
    p_adv = pad(adv, garbage_like(data.draw, b, k))
    p_mask = pad(mask.float(), np.zeros((b, k), np.float32))
    new = new.clone().requires_grad_(True)
    kw = dict(eps_low=eps[0], eps_high=eps[1], agg_mode=mode, norm_len=16)
    ref, ref_stats = ppo_clip_loss(new, old, adv, mask.float(), **kw)
    out, out_stats = ppo_clip_loss(p_new, p_old, p_adv, p_mask, **kw)
    assert torch.isfinite(out) and tensors_close(out, ref)
    for key in ref_stats:
        assert math.isclose(out_stats[key], ref_stats[key], rel_tol=1e-5, abs_tol=1e-6), key
    ref.backward()
    out.backward()
    assert torch.isfinite(p_new.grad).all()
    assert tensors_close(p_new.grad[:, :t], new.grad)
    assert torch.equal(p_new.grad[:, t:], torch.zeros(b, k))


@SETTINGS
@given(data=st.data(), step=st.integers(0, 250), by_entropy=st.booleans(),
       p=st.tuples(st.sampled_from([0.1, 0.2, 0.5, 1.0]), st.sampled_from([0.1, 0.2, 0.5, 1.0])))
def test_a3po_ignores_padded_columns(data, step, by_entropy, p):
    mask, old, correct, _ = data.draw(batches())
    b, t = mask.shape
    adv = torch.from_numpy(data.draw(arrays(np.float32, (b, t), elements=st.floats(-3, 3, width=32))))
    k = data.draw(st.integers(1, 5))
    p_old = pad(old, garbage_like(data.draw, b, k))
    p_adv = pad(adv, garbage_like(data.draw, b, k))
    p_mask = pad(mask, np.zeros((b, k), np.float32))
    ref = a3po_shape(adv, old, mask, correct, step, p_pos=p[0], p_neg=p[1])
    out = a3po_shape(p_adv, p_old, p_mask, correct, step, p_pos=p[0], p_neg=p[1])
    assert torch.equal(out[:, :t][mask], ref[mask])

    sels = default_selections(p[0], p[1], p_pos_high=0.3, rho_pos_high=1.5, p_neg_low=0.3,
                              rho_neg_low=1.5)
    entropy = p_entropy = None
    if by_entropy:
        entropy = torch.from_numpy(data.draw(arrays(np.float32, (b, t), elements=st.floats(0, 5, width=32))))
        p_entropy = pad(entropy, garbage_like(data.draw, b, k))
    ref_masks = a3po_select(old, mask, correct, sels, entropy)
    out_masks = a3po_select(p_old, p_mask, correct, sels, p_entropy)
    for r, o in zip(ref_masks, out_masks):
        assert torch.equal(o[:, :t], r)
        assert not o[:, t:].any()


@SETTINGS
@given(data=st.data(), name=st.one_of(st.just("a3po"), st.sampled_from(PG_ALGOS)),
       step=st.integers(0, 250))
def test_token_advantages_ignore_padded_columns(data, name, step):
    mask, old, correct, groups = data.draw(batches())
    b, t = mask.shape
    recipe = resolve(name, {"rank_by": "entropy"} if name == "a3po" and data.draw(st.booleans()) else None)
    entropy = torch.from_numpy(data.draw(arrays(np.float32, (b, t), elements=st.floats(0, 5, width=32))))
    rewards = correct.float() + torch.from_numpy(
        data.draw(arrays(np.float32, (b,), elements=st.sampled_from([0.0, -0.25, -1.0]))))
    k = data.draw(st.integers(1, 5))
    p_old = pad(old, garbage_like(data.draw, b, k))
    p_entropy = pad(entropy, garbage_like(data.draw, b, k))
    p_mask = pad(mask.float(), np.zeros((b, k), np.float32))
    ref, ref_lm, ref_m = token_advantages(recipe, rewards, correct, groups, old, mask.float(), step, entropy)
    out, out_lm, out_m = token_advantages(recipe, rewards, correct, groups, p_old, p_mask, step, p_entropy)
    assert torch.equal(out[:, :t], ref) and torch.equal(out_lm[:, :t], ref_lm)
    assert torch.equal(out[:, t:], torch.zeros(b, k)) and torch.equal(out_lm[:, t:], torch.zeros(b, k))
    assert ref_m.keys() == out_m.keys()
    for key in ref_m:
        assert math.isclose(out_m[key], ref_m[key], rel_tol=1e-6) or (
            math.isnan(out_m[key]) and math.isnan(ref_m[key])), key


# ---------------------------------------------------------------------------------------------
# polarity: PSR / NSR gradients


@SETTINGS
@given(data=st.data(), name=st.sampled_from(["psr", "nsr"]), mode=st.sampled_from(AGG_MODES),
       same_policy=st.booleans())
def test_single_polarity_gets_no_gradient_from_the_other_polarity(data, name, mode, same_policy):
    mask, old, correct, groups = data.draw(batches())
    b, t = mask.shape
    recipe = resolve(name, {"loss_agg_mode": mode})
    noise = 0.0 if same_policy else torch.from_numpy(
        data.draw(arrays(np.float32, (b, t), elements=st.floats(-1, 1, width=32))))
    log_prob = (old + noise).requires_grad_(True)
    adv, loss_mask, _ = token_advantages(recipe, correct.float(), correct, groups, old, mask.float(), 0)
    loss, _ = ppo_clip_loss(log_prob, old, adv, loss_mask, eps_low=recipe.eps_low,
                            eps_high=recipe.eps_high, agg_mode=recipe.loss_agg_mode)
    loss.backward()
    grad = log_prob.grad
    other = ~correct if name == "psr" else correct
    assert torch.equal(grad[other], torch.zeros_like(grad[other]))
    assert torch.equal(grad[~mask], torch.zeros_like(grad[~mask]))
    if same_policy:  # ratio 1: every trained token is inside the clip and gets pushed
        trained = (~other).unsqueeze(-1) & mask
        sign = -1.0 if name == "psr" else 1.0  # d loss / d log_prob = -A / N
        assert (torch.sign(grad[trained]) == sign).all()


# ---------------------------------------------------------------------------------------------
# A3PO invariants


@st.composite
def faded_schedules(draw):
    """(rho, alpha, step) with s(step) = 1: rho = 1, or step >= (rho - 1) / alpha."""
    if draw(st.booleans()):
        return 1.0, draw(st.floats(0.0, 0.1)), draw(st.integers(0, 500))
    rho = draw(st.floats(1.0, 4.0))
    alpha = draw(st.floats(1e-3, 0.5))
    return rho, alpha, math.ceil((rho - 1.0) / alpha) + draw(st.integers(0, 50))


@SETTINGS
@given(data=st.data(), pos=faded_schedules(), neg=faded_schedules())
def test_a3po_with_faded_scale_is_exactly_dapo(data, pos, neg):
    mask, old, correct, groups = data.draw(batches())
    step = max(pos[2], neg[2])
    params = {"rho_pos": pos[0], "alpha_pos": pos[1], "rho_neg": neg[0], "alpha_neg": neg[1]}
    rewards = correct.float()
    dapo = token_advantages(resolve("dapo"), rewards, correct, groups, old, mask.float(), step)
    a3po = token_advantages(resolve("a3po", params), rewards, correct, groups, old, mask.float(), step)
    assert torch.equal(a3po[0], dapo[0]) and torch.equal(a3po[1], dapo[1])
    assert a3po[2]["a3po/s_pos"] == 1.0 and a3po[2]["a3po/s_neg"] == 1.0
    adv = dapo[0]
    assert torch.equal(a3po_shape(adv, old, mask, correct, step, **params), adv)


def _floor_k(p: float, length: int) -> int:
    return max(1, math.floor(Fraction(p) * length))


FRACTIONS = st.integers(1, 64).map(lambda i: i / 64)  # exact in binary: floor(p L) is unambiguous


@SETTINGS
@given(data=st.data(), p_pos=FRACTIONS, p_neg=FRACTIONS)
def test_a3po_selects_exactly_k_extreme_tokens_per_response(data, p_pos, p_neg):
    mask, old, correct, _ = data.draw(batches(max_t=24))
    sel_pos, sel_neg = a3po_select(old, mask, correct, default_selections(p_pos, p_neg)[:2])
    for i in range(mask.shape[0]):
        valid = mask[i]
        length = int(valid.sum())
        mine, theirs = (sel_pos[i], sel_neg[i]) if correct[i] else (sel_neg[i], sel_pos[i])
        assert not theirs.any()
        assert not (mine & ~valid).any()
        k = _floor_k(p_pos if correct[i] else p_neg, length) if length else 0
        assert int(mine.sum()) == k
        if 0 < k < length:
            chosen, rest = old[i][mine], old[i][valid & ~mine]
            if correct[i]:  # the lowest old-policy probabilities
                assert chosen.max() <= rest.min()
            else:  # the highest
                assert chosen.min() >= rest.max()


@SETTINGS
@given(data=st.data(), step=st.integers(0, 99), p=st.sampled_from([0.1, 0.2, 0.5, 1.0]),
       rho=st.sampled_from([1.5, 2.0, 3.0]))
def test_a3po_changes_only_selected_tokens_and_never_a_sign(data, step, p, rho):
    mask, old, correct, _ = data.draw(batches(max_t=16))
    b, t = mask.shape
    # advantages of either sign on any token, zeros included, padding too (no subnormals: x * s
    # rounds back to x below 1e-38)
    finite = st.floats(-5, 5, width=32, allow_subnormal=False)
    adv = torch.from_numpy(data.draw(arrays(
        np.float32, (b, t), elements=st.one_of(st.just(0.0), finite))))
    kw = dict(p_pos=p, p_neg=p, rho_pos=rho, rho_neg=rho, alpha_pos=0.005, alpha_neg=0.005)
    out = a3po_shape(adv, old, mask, correct, step, **kw)
    sel_pos, sel_neg = a3po_select(old, mask, correct, default_selections(p, p)[:2])
    selected = sel_pos | sel_neg
    s = max(rho - 0.005 * step, 1.0)
    assert s > 1.0  # rho >= 1.5 and step < 100: the scale has not faded yet
    changed = out != adv
    assert torch.equal(changed, selected & (adv != 0))
    assert torch.allclose(out[selected], adv[selected] * s, rtol=1e-6, atol=0)
    assert torch.equal(torch.sign(out), torch.sign(adv))
    assert (out.abs() >= adv.abs()).all()


# ---------------------------------------------------------------------------------------------
# group advantages

DYADIC = st.integers(-32, 32).map(lambda i: i / 8)  # exact sums and means in float32


@SETTINGS
@given(data=st.data(), normalize=st.booleans())
def test_group_advantages_permutation_invariant(data, normalize):
    n = data.draw(st.integers(1, 12))
    rewards = torch.tensor(data.draw(st.lists(DYADIC, min_size=n, max_size=n)))
    groups = data.draw(st.lists(st.sampled_from(["a", "b", "c", 7]), min_size=n, max_size=n))
    perm = data.draw(st.permutations(range(n)))
    adv = group_advantages(rewards, groups, normalize_std=normalize)
    p_adv = group_advantages(rewards[perm], [groups[i] for i in perm], normalize_std=normalize)
    assert torch.allclose(p_adv, adv[perm], rtol=1e-5, atol=1e-6)


@SETTINGS
@given(data=st.data(), normalize=st.booleans(), shift=DYADIC,
       scale=st.sampled_from([0.5, 2.0, 4.0, 3.0, 0.75]))
def test_group_advantages_shift_and_scale_invariant(data, normalize, shift, scale):
    n = data.draw(st.integers(1, 12))
    rewards = torch.tensor(data.draw(st.lists(DYADIC, min_size=n, max_size=n)))
    groups = torch.tensor(data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)))
    adv = group_advantages(rewards, groups, normalize_std=normalize)
    assert torch.allclose(group_advantages(rewards + shift, groups, normalize), adv,
                          rtol=1e-5, atol=1e-5)
    if normalize:  # GRPO only; the 1e-6 in the denominator is negligible next to std >= 1/16
        assert torch.allclose(group_advantages(rewards * scale, groups, True), adv,
                              rtol=1e-4, atol=1e-4)
    else:  # Dr.GRPO scales with the rewards
        assert torch.allclose(group_advantages(rewards * scale, groups, False), adv * scale,
                              rtol=1e-5, atol=1e-5)


@SETTINGS
@given(data=st.data(), uniform=st.booleans())
def test_popo_weights_are_a_distribution_over_positives(data, uniform):
    mask, old, correct, groups = data.draw(batches())
    seq_mean = old.mean(dim=-1)
    w = popo_weights(seq_mean, groups, correct, uniform=uniform)
    assert torch.equal(w[~correct], torch.zeros_like(w[~correct]))
    assert ((w >= 0) & (w <= 1)).all()
    for g in set(groups):
        members = torch.tensor([x == g for x in groups])
        n_pos = int((members & correct).sum())
        total = float(w[members].sum())
        assert math.isclose(total, 1.0 if n_pos else 0.0, abs_tol=1e-5)
        if uniform and n_pos:
            assert torch.allclose(w[members & correct], torch.full((n_pos,), 1.0 / n_pos))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(pytest.main([__file__, "-q"]))
