"""The algorithm registry (names, paper defaults, parameters and their schema) and the shared
pipeline from rewards to token advantages.

Every expected number is written out from the formula in the specification, never obtained
by calling the code under test (see test_algorithms.py)."""

from __future__ import annotations

import math

import jsonschema
import pytest
import torch

from polarity.algorithms import (
    ALGORITHMS,
    get_algorithm,
    params_schema,
    resolve,
    sequence_advantages,
    sequence_rewards,
    token_advantages,
)

from .tensor_helpers import T_, close, mask_from_lengths, lp, SQRT_THIRD


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
