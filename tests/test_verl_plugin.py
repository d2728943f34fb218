"""Our estimator and loss inside verl, called the way verl 0.9.1 calls them, on CPU tensors.

The estimator runs through verl's ``compute_advantage`` (the driver's call site) and the loss
through ``verl.workers.utils.losses.ppo_loss`` (the actor worker's call site), both with verl
configs composed from our overrides. Each must return what ``polarity.algorithms`` returns.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch


from verl import DataProto  # noqa: E402
from verl.trainer.ppo.ray_trainer import compute_advantage  # noqa: E402
from verl.utils import tensordict_utils as tu  # noqa: E402
from verl.utils.config import omega_conf_to_dataclass  # noqa: E402
from verl.workers.utils.losses import ppo_loss  # noqa: E402

from polarity.algorithms import (  # noqa: E402
    ppo_clip_loss,
    resolve,
    sequence_advantages,
    sequence_rewards,
    token_advantages,
)
from polarity.backends.verl import overrides as ov  # noqa: E402
from polarity.backends.verl import plugin  # noqa: E402
from polarity.backends.verl import worker  # noqa: E402

from .verl_helpers import study_config  # noqa: E402

T = 8  # max response tokens in these tests
ALGOS = ["grpo", "dr_grpo", "dapo", "psr", "nsr", "w_reinforce", "a3po"]
PARAMS = {"dapo": {"overlong_cache": 2}, "a3po": {"overlong_cache": 2}}


def _config(algorithm, tmp_path, params=None):
    study = study_config(backend="verl", train={"max_response_tokens": T})
    study["algorithm_params"] = {algorithm: params if params is not None else PARAMS.get(algorithm, {})}
    run_dir = tmp_path / "run"
    o = ov.verl_overrides(study, model="m", algorithm=algorithm, seed=0, model_path="/m",
                          train_file="/t.parquet", val_file="/v.parquet", run_dir=run_dir)
    return study, ov.compose(o), ov.run_env(o)


@pytest.fixture
def use_run(monkeypatch):
    """Install the run's environment as verl's workers would see it; fresh driver clocks."""

    def install(env):
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        plugin.reset_clocks()
        return plugin.current_run()

    yield install
    plugin.reset_clocks()


def _batch(seed=0, groups=4, n=4):
    g = torch.Generator().manual_seed(seed)
    B = groups * n
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = (torch.arange(T)[None, :] < lengths[:, None]).float()
    correct = torch.rand(B, generator=g) < 0.5
    correct[0], correct[1] = True, False  # group 0 is mixed
    rewards = torch.zeros(B, T)
    rewards[torch.arange(B), lengths - 1] = correct.float()
    uids = np.array([f"p{i // n}" for i in range(B)], dtype=object)
    old_lp = -torch.rand(B, T, generator=g) * 3
    new_lp = old_lp + 0.3 * torch.randn(B, T, generator=g)
    return dict(mask=mask, correct=correct, rewards=rewards, uids=uids, lengths=lengths,
                old_lp=old_lp, new_lp=new_lp)


def _value(metric) -> float:
    """A verl ``Metric`` (or a plain number) as a float."""
    return float(metric.aggregate() if hasattr(metric, "aggregate") else metric)


def _verl_advantages(cfg, b):
    data = DataProto.from_dict(
        tensors={"token_level_rewards": b["rewards"], "response_mask": b["mask"]},
        non_tensors={"uid": b["uids"]},
    )
    out = compute_advantage(data, adv_estimator=cfg.algorithm.adv_estimator, config=cfg.algorithm)
    return out.batch["advantages"]


def _jagged(rows: torch.Tensor, lengths) -> torch.Tensor:
    """[B, T] -> verl's row layout: a jagged nested tensor of each row's first lengths[i] values."""
    return torch.nested.nested_tensor([rows[i, : int(n)] for i, n in enumerate(lengths)],
                                      layout=torch.jagged)


def _actor_rows(b, advantages):
    """One mini-batch as verl's v1 actor worker receives it from TransferQueue: jagged rows
    (prompt of 2 tokens, then the response), the reward function's verdict on each last token
    (``rm_scores``), verl's constant ``global_batch_size`` (the mini-batch's rows)."""
    B, P = b["mask"].shape[0], 2
    lengths = b["lengths"]
    scores = torch.zeros(B, T)
    scores[torch.arange(B), lengths - 1] = b["correct"].float()
    mask = _jagged(b["mask"], lengths)
    return tu.get_tensordict(
        {"prompts": _jagged(torch.ones(B, P, dtype=torch.long), [P] * B),
         "responses": _jagged(torch.ones(B, T, dtype=torch.long), lengths),
         "response_mask": mask, "loss_mask": mask.clone(),
         "rm_scores": _jagged(scores, lengths),
         "old_log_probs": _jagged(b["old_lp"], lengths),
         "advantages": _jagged(advantages, lengths)},
        {"dp_size": 1, "global_batch_size": B},
    )


def _verl_loss(cfg, b, advantages):
    """verl's actor path on one mini-batch: our worker's row filter, verl's token count from
    ``loss_mask`` (``forward_backward_batch``), then verl's ``ppo_loss`` wrapped by our worker."""
    actor = omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)
    data = _actor_rows(b, advantages)
    polarity = plugin.current_run().recipe.polarity
    if polarity != "both":
        worker.drop_filtered_rows(data, polarity)
    tu.assign_non_tensor(data, batch_num_tokens=int(data["loss_mask"].values().sum()))
    # the model's flat (no padding) log-probs: response token j of a sequence sits at position
    # prompt_len - 1 + j of it (verl left-shifts model outputs by one)
    P = 2
    flat = []
    for i in range(b["mask"].shape[0]):
        seq = torch.zeros(P + int(b["lengths"][i]))
        seq[P - 1: P - 1 + int(b["lengths"][i])] = b["new_lp"][i, : int(b["lengths"][i])]
        flat.append(seq)
    return worker.with_correctness(ppo_loss)(actor, {"log_probs": torch.cat(flat)}, data)


@pytest.mark.parametrize("algorithm", ALGOS)
def test_estimator_matches_the_registry(algorithm, tmp_path, use_run):
    study, cfg, env = _config(algorithm, tmp_path)
    run = use_run(env)
    assert cfg.algorithm.adv_estimator == plugin.ESTIMATOR
    b = _batch()
    got = _verl_advantages(cfg, b)
    recipe = resolve(algorithm, PARAMS.get(algorithm, {}))
    rewards = sequence_rewards(recipe, b["correct"], b["lengths"], T)
    adv, _ = sequence_advantages(recipe, rewards, b["correct"], list(b["uids"]))
    torch.testing.assert_close(got, adv[:, None] * b["mask"])
    assert run.recipe == recipe


def test_grpo_estimator_hand_computed(tmp_path, use_run):
    _, cfg, env = _config("grpo", tmp_path)
    use_run(env)
    b = _batch(groups=1)
    b["correct"] = torch.tensor([True, False, False, False])
    b["rewards"] = torch.zeros(4, T)
    b["rewards"][torch.arange(4), b["lengths"] - 1] = b["correct"].float()
    got = _verl_advantages(cfg, b)
    # mean 0.25, unbiased std 0.5: A = (1 - .25) / .5 = 1.5 and (0 - .25) / .5 = -0.5
    want = torch.tensor([1.5, -0.5, -0.5, -0.5])
    torch.testing.assert_close((got * b["mask"]).sum(1) / b["mask"].sum(1), want, atol=1e-5, rtol=0)


def _local_loss(algorithm, params, b, step=0):
    """The local backend's loss on the same batch: its advantages and loss mask
    (``token_advantages``), then ``ppo_clip_loss`` with the recipe's aggregation."""
    recipe = resolve(algorithm, params)
    rewards = sequence_rewards(recipe, b["correct"], b["lengths"], T)
    adv, loss_mask, _ = token_advantages(recipe, rewards, b["correct"], list(b["uids"]),
                                         b["old_lp"], b["mask"], step)
    return ppo_clip_loss(b["new_lp"], b["old_lp"], adv, loss_mask, eps_low=recipe.eps_low,
                         eps_high=recipe.eps_high, clip_ratio_c=recipe.clip_ratio_c,
                         log_ratio_clamp=recipe.log_ratio_clamp, agg_mode=recipe.loss_agg_mode,
                         norm_len=T)


@pytest.mark.parametrize("algorithm", ["grpo", "dr_grpo", "dapo", "psr", "nsr", "w_reinforce"])
def test_loss_matches_the_local_backend(algorithm, tmp_path, use_run):
    study, cfg, env = _config(algorithm, tmp_path)
    use_run(env)
    assert cfg.actor_rollout_ref.actor.policy_loss.loss_mode == plugin.LOSS
    b = _batch(seed=1)
    loss, metrics = _verl_loss(cfg, b, _verl_advantages(cfg, b))
    want, stats = _local_loss(algorithm, PARAMS.get(algorithm, {}), b)
    torch.testing.assert_close(loss, want, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
@pytest.mark.parametrize("algorithm", ["psr", "nsr", "w_reinforce"])
def test_polarity_filter_same_loss_on_both_backends(algorithm, mode, tmp_path, use_run):
    """Filtered responses leave verl's numerator and denominator (the worker's row filter,
    verl's token count, ppo_loss and agg_loss) exactly as the local backend's loss mask does."""
    params = {"loss_agg_mode": mode}
    _, cfg, env = _config(algorithm, tmp_path, params)
    use_run(env)
    for seed in (1, 5):
        b = _batch(seed=seed)
        loss, metrics = _verl_loss(cfg, b, _verl_advantages(cfg, b))
        torch.testing.assert_close(loss, _local_loss(algorithm, params, b)[0], atol=1e-6, rtol=0)
        pos = _value(metrics["polarity/loss_tokens_pos"])
        neg = _value(metrics["polarity/loss_tokens_neg"])
        lengths = b["lengths"].float()
        assert pos == (float(lengths[b["correct"]].sum()) if algorithm != "nsr" else 0.0)
        assert neg == (float(lengths[~b["correct"]].sum()) if algorithm != "psr" else 0.0)


def test_psr_token_mean_hand_computed(tmp_path, use_run):
    """On-policy (ratio 1) the token loss is -A: PSR's token-mean is -sum_pos A_i |y_i| / sum_pos |y_i|
    (REINFORCE: A = 1 on a correct response), the negatives in neither sum."""
    _, cfg, env = _config("psr", tmp_path, {"loss_agg_mode": "token-mean"})
    use_run(env)
    b = _batch(seed=1)
    b["new_lp"] = b["old_lp"].clone()
    loss, _ = _verl_loss(cfg, b, _verl_advantages(cfg, b))
    assert float(loss) == pytest.approx(-1.0, abs=1e-6)
    # and not the kept-token fraction of it, as when the negatives stayed in the denominator
    frac = float(b["lengths"][b["correct"]].sum() / b["lengths"].sum())
    assert frac < 0.9


def test_a_minibatch_with_nothing_to_train_has_zero_loss(tmp_path, use_run):
    """PSR with no correct response: all loss terms masked, verl's token count kept (no 0/0)."""
    _, cfg, env = _config("psr", tmp_path)
    use_run(env)
    b = _batch(seed=1)
    b["correct"][:] = False
    data = _actor_rows(b, torch.zeros(len(b["correct"]), T))
    assert worker.drop_filtered_rows(data, "positive") == 0
    assert int(data["loss_mask"].values().sum()) == int(b["lengths"].sum())
    assert int(data["response_mask"].values().sum()) == 0
    loss, _ = _verl_loss(cfg, b, _verl_advantages(cfg, b))
    assert float(loss) == 0.0 and torch.isfinite(loss)


@pytest.mark.parametrize("algorithm, params, want", [
    ("dapo", {}, 3.0),  # dual clip: both tokens capped at -A * c = 3
    ("grpo", {}, 3.0),
    ("nsr", {}, (math.exp(5) + math.exp(25)) / 2),  # RLVR-Decomposed: neither
    ("dapo", {"clip_ratio_c": 0.0}, (math.exp(5) + math.exp(20)) / 2),  # the clamp alone
])
def test_dual_clip_and_clamp_through_verls_ppo_loss(algorithm, params, want, tmp_path, use_run):
    """Off-policy ratios (e^5, e^25) through verl's ppo_loss: the loss the recipe's authors use,
    hand-computed. One response of 2 tokens, A = -1 on both (REINFORCE's negative, or a group)."""
    _, cfg, env = _config(algorithm, tmp_path,
                          {**params, **({"overlong_cache": 2} if algorithm == "dapo" else {})})
    use_run(env)
    b = {"lengths": torch.tensor([2]), "mask": torch.tensor([[1.0, 1.0] + [0.0] * (T - 2)]),
         "correct": torch.tensor([False])}
    b["old_lp"] = torch.full((1, T), -30.0)
    b["new_lp"] = b["old_lp"].clone()
    b["new_lp"][0, 0] += 5.0  # ratio e^5 ~ 148
    b["new_lp"][0, 1] += 25.0  # ratio e^25, clamped to e^20 when the clamp is on
    adv = -torch.ones(1, T) * b["mask"]
    loss, metrics = _verl_loss(cfg, b, adv)
    # token-mean over 2 tokens; -A * ratio = ratio (max with the clipped 1.2 / 1.28)
    assert float(loss) == pytest.approx(want, rel=1e-5)
    assert _value(metrics["actor/pg_clipfrac_lower"]) == (1.0 if want == 3.0 else 0.0)


def test_dapo_signed_rewards_through_verls_compute_advantage(tmp_path, use_run):
    """verl's compute_advantage with our estimator: DAPO's +1/-1 scale plus the overlong
    penalty (L_max 8, L_cache 4: L_exp 4), hand-computed."""
    _, cfg, env = _config("dapo", tmp_path, {"overlong_cache": 4})
    use_run(env)
    b = _batch(groups=1)
    b["lengths"] = torch.tensor([4, 6, 3, 2])  # correct ok, correct 2 over L_exp, wrong, wrong
    b["mask"] = (torch.arange(T)[None, :] < b["lengths"][:, None]).float()
    b["correct"] = torch.tensor([True, True, False, False])
    b["rewards"] = torch.zeros(4, T)
    b["rewards"][torch.arange(4), b["lengths"] - 1] = b["correct"].float()
    got = _verl_advantages(cfg, b)
    # rewards 1, 1 - 2/4 = 0.5, -1, -1: mean -0.125, unbiased std sqrt(1.0625)
    want = torch.tensor([1.125, 0.625, -0.875, -0.875]) / (math.sqrt(1.0625) + 1e-6)
    torch.testing.assert_close((got * b["mask"]).sum(1) / b["mask"].sum(1), want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("step", [0, 1, 50, 150, 199, 250])
def test_a3po_loss_matches_the_registry_at_each_step(step, tmp_path, use_run):
    params = {"overlong_cache": 0}  # no length shaping: sign(advantage) == polarity exactly
    _, cfg, env = _config("a3po", tmp_path, params)
    run = use_run(env)
    b = _batch(seed=2)
    adv = _verl_advantages(cfg, b)  # the driver publishes step 0 ...
    plugin.write_step(run.step_file, step)  # ... here we jump to `step`
    loss, metrics = _verl_loss(cfg, b, adv)
    torch.testing.assert_close(loss, _local_loss("a3po", params, b, step)[0], atol=1e-6, rtol=1e-5)
    # s(step) = max(2 - 0.005 step, 1), as logged by the loss
    assert _value(metrics["polarity/a3po/s_pos"]) == pytest.approx(max(2.0 - 0.005 * step, 1.0))


def test_a3po_shaping_changes_the_loss_until_it_fades(tmp_path, use_run):
    _, cfg, env = _config("a3po", tmp_path, {"overlong_cache": 0})
    run = use_run(env)
    b = _batch(seed=3)
    adv = _verl_advantages(cfg, b)
    losses = {}
    for step in (0, 200, 300):
        plugin.write_step(run.step_file, step)
        losses[step] = float(_verl_loss(cfg, b, adv)[0])
    _, dapo_cfg, dapo_env = _config("dapo", tmp_path, {"overlong_cache": 0})
    use_run(dapo_env)
    dapo = float(_verl_loss(dapo_cfg, b, _verl_advantages(dapo_cfg, b))[0])
    assert losses[0] != pytest.approx(dapo)  # shaped at step 0
    assert losses[200] == pytest.approx(dapo) and losses[300] == pytest.approx(dapo)  # = DAPO


def test_a3po_step_continues_after_a_resume(tmp_path, use_run):
    """Steps 0..3 uninterrupted; a restart from verl's checkpoint of global step 2 goes on at 2."""
    _, cfg, env = _config("a3po", tmp_path, {"overlong_cache": 0})
    run = use_run(env)
    b = _batch(seed=4)
    uninterrupted = []
    for _ in range(4):
        _verl_advantages(cfg, b)
        uninterrupted.append(plugin.read_step(run.step_file))
    assert uninterrupted == [0, 1, 2, 3]
    # verl saved global_step_2 (two finished steps) and the job died; a new driver process
    ckpt = tmp_path / "run" / "state" / "verl_checkpoints"
    (ckpt / "global_step_2" / "actor").mkdir(parents=True)
    (ckpt / "latest_checkpointed_iteration.txt").write_text("2")
    plugin.reset_clocks()
    resumed = []
    for _ in range(2):
        adv = _verl_advantages(cfg, b)  # the driver's estimator publishes the step ...
        resumed.append(plugin.read_step(run.step_file))
        loss, _ = _verl_loss(cfg, b, adv)  # ... that the actor's loss then uses
        torch.testing.assert_close(loss, _local_loss("a3po", {"overlong_cache": 0}, b, resumed[-1])[0],
                                   atol=1e-6, rtol=1e-5)
    assert resumed == [2, 3]


def test_overlong_correct_response_is_a_positive_on_both_backends(tmp_path, use_run):
    """DAPO's overlong penalty pushes a correct response below its group mean (A < 0); A3PO
    still shapes it as a positive, on verl (correctness from rm_scores) as on local."""
    params = {"overlong_cache": 4}
    _, cfg, env = _config("a3po", tmp_path, params)
    use_run(env)
    b = _batch(groups=1)
    b["lengths"] = torch.tensor([8, 2, 2, 2])  # the correct one is long: -1 penalty at L_max
    b["mask"] = (torch.arange(T)[None, :] < b["lengths"][:, None]).float()
    b["correct"] = torch.tensor([True, True, True, False])
    b["rewards"] = torch.zeros(4, T)
    b["rewards"][torch.arange(4), b["lengths"] - 1] = b["correct"].float()
    adv = _verl_advantages(cfg, b)
    assert float(adv[0].sum()) < 0  # correct, negative advantage
    loss, metrics = _verl_loss(cfg, b, adv)
    torch.testing.assert_close(loss, _local_loss("a3po", params, b)[0], atol=1e-6, rtol=1e-5)
    by_sign = dict(b, correct=adv.sum(-1) > 0)  # polarity read from the advantage's sign
    assert float(loss) != pytest.approx(float(_local_loss("a3po", params, by_sign)[0]), abs=1e-4)


def test_a3po_loss_needs_the_rows_correctness(tmp_path, use_run):
    _, cfg, env = _config("a3po", tmp_path, {"overlong_cache": 0})
    use_run(env)
    b = _batch(seed=2)
    adv = _verl_advantages(cfg, b)
    actor = omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)
    with pytest.raises(RuntimeError, match="correctness"):
        plugin.polarity_policy_loss(b["old_lp"], b["new_lp"], adv, b["mask"], config=actor)


def test_loss_without_run_settings_fails_clearly(monkeypatch):
    monkeypatch.delenv(plugin.RUN_ENV, raising=False)
    with pytest.raises(RuntimeError, match=plugin.RUN_ENV):
        plugin.current_run()
