"""Hand-computed cases for A3PO's token-level shaping (polarity.algorithms.a3po).

Every expected number is written out from the formula in the specification, never obtained
by calling the code under test (see test_algorithms.py)."""

from __future__ import annotations

import math

import pytest
import torch

from polarity.algorithms import (
    a3po_select,
    a3po_shape,
    decayed_scale,
    default_selections,
    resolve,
    shape_with_selections,
    token_advantages,
)

from .tensor_helpers import T_, close, mask_from_lengths, lp


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
