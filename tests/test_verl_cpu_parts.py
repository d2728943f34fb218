"""The parts of verl's CPU mode that need no Ray: sampling, the platform, the workarounds' scope,
the overrides, and the metrics the estimator and the logs add (hand-computed cases)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from polarity.backends.verl import logs
from polarity.backends.verl.hf_rollout import filter_logits, request_seed, sample

from .conftest import REPO
from .verl_helpers import load_study

CPU_CONFIG = REPO / "tests" / "configs" / "verl-cpu.yaml"


def test_filter_logits_top_k_and_top_p():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    assert torch.isinf(filter_logits(logits, 2, 1.0)[2:]).all()
    assert torch.isfinite(filter_logits(logits, 2, 1.0)[:2]).all()
    # top-p 0.7: 0.5 alone is below it, 0.5 + 0.3 reaches it -> keep two
    kept = torch.isfinite(filter_logits(logits, -1, 0.7))
    assert kept.tolist() == [True, True, False, False]
    assert torch.isfinite(filter_logits(logits, -1, 1.0)).all()


def test_request_seeds_differ_by_every_part():
    base = request_seed(0, 3, [1, 2, 3], 0)
    assert base == request_seed(0, 3, [1, 2, 3], 0)
    others = {request_seed(1, 3, [1, 2, 3], 0), request_seed(0, 4, [1, 2, 3], 0),
              request_seed(0, 3, [1, 2, 4], 0), request_seed(0, 3, [1, 2, 3], 1),
              request_seed(0, 3, [1, 2, 3], 0, replica=1)}
    assert base not in others and len(others) == 5
    assert 0 <= base < 2**63


class _Bigram(torch.nn.Module):
    """A model with the transformers call signature: next-token logits from the last token."""

    def __init__(self, vocab=7):
        super().__init__()
        torch.manual_seed(0)
        self.table = torch.nn.Parameter(torch.randn(vocab, vocab))

    def forward(self, input_ids, past_key_values=None, use_cache=True):
        from types import SimpleNamespace

        return SimpleNamespace(logits=self.table[input_ids], past_key_values=(past_key_values or 0) + 1)


def test_sample_is_seeded_stops_at_eos_and_returns_scaled_logprobs():
    model = _Bigram()
    kw = dict(max_tokens=12, temperature=0.7, top_p=1.0, top_k=-1, eos_ids={6})
    a = sample(model, [1, 2], generator=torch.Generator().manual_seed(5), **kw)
    b = sample(model, [1, 2], generator=torch.Generator().manual_seed(5), **kw)
    assert a == b
    tokens, logps, ended = a
    assert len(tokens) == len(logps) <= 12
    assert ended == (tokens[-1] == 6) and 6 not in tokens[:-1]
    prev = [2, *tokens[:-1]]
    want = [float(torch.log_softmax(model.table[p] / 0.7, -1)[t]) for p, t in zip(prev, tokens)]
    assert logps == pytest.approx(want, abs=1e-6)
    greedy = sample(model, [1, 2], generator=None, **{**kw, "temperature": 0})[0]
    assert greedy[0] == int(torch.argmax(model.table[2]))


def _probe(env_extra: dict) -> dict:
    """In a fresh process, import verl with the plugin and report what the CPU mode changed."""
    code = (
        "import json, sys, verl, verl.utils.model as m\n"
        "from verl.workers.rollout import base\n"
        "print(json.dumps({'cpu': 'polarity.backends.verl.cpu' in sys.modules,\n"
        "  'loader': m.load_valuehead_model.__module__,\n"
        "  'hf': ('hf', 'async') in base._ROLLOUT_REGISTRY}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("VERL_PLATFORM", "RANK")}
    env.update(VERL_USE_EXTERNAL_MODULES="polarity.backends.verl.plugin", **env_extra)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_cpu_mode_and_its_workarounds_only_with_verl_platform_cpu():
    assert _probe({}) == {"cpu": False, "loader": "verl.utils.model", "hf": False}
    on = _probe({"VERL_PLATFORM": "cpu"})
    assert on == {"cpu": True, "loader": "polarity.backends.verl.cpu", "hf": True}


def test_cpu_platform_reports_a_cpu_device():
    from polarity.backends.verl.cpu import CpuPlatform

    p = CpuPlatform()
    assert p.device_name == "cpu" and p.current_device() == "cpu"
    assert p.communication_backend_name() == "gloo" and p.ray_resource_name() == "GPU"
    dev = p.device_module
    assert dev.current_device() == "cpu" and dev.memory_allocated() == 0
    state = dev.get_rng_state()
    assert torch.equal(state, torch.get_rng_state())
    with pytest.raises(AttributeError):
        dev.no_such_call  # noqa: B018


def test_gloo_group_is_left_to_verl_outside_a_worker(monkeypatch):
    from polarity.backends.verl.cpu import init_gloo_process_group

    monkeypatch.delenv("RANK", raising=False)
    assert init_gloo_process_group() is False


def _overrides(config, algorithm="grpo"):
    from polarity.backends.verl.overrides import verl_overrides

    return dict(item.split("=", 1) for item in verl_overrides(
        config, model="tiny", algorithm=algorithm, seed=0, model_path="m", train_file="t",
        val_file="v", run_dir="/r"))


def test_cpu_overrides_only_for_a_cpu_study():
    cpu = _overrides(load_study(CPU_CONFIG))
    gpu = _overrides(load_study(CPU_CONFIG, verl={"device": "cuda", "gpus_per_node": 1}))
    assert cpu["actor_rollout_ref.rollout.name"] == "hf" and gpu["actor_rollout_ref.rollout.name"] == "vllm"
    assert cpu["+ray_kwargs.ray_init.num_gpus"] == "1" and "+ray_kwargs.ray_init.num_gpus" not in gpu
    env = "+ray_kwargs.ray_init.runtime_env.env_vars.VERL_PLATFORM"
    assert cpu[env] == "cpu" and env not in gpu
    assert cpu["actor_rollout_ref.actor.strategy"] == gpu["actor_rollout_ref.actor.strategy"] == "fsdp2"
    two = _overrides(load_study(CPU_CONFIG, verl={"device": "cpu", "nnodes": 2, "gpus_per_node": 1}))
    assert "+ray_kwargs.ray_init.num_gpus" not in two  # `ray start --num-gpus` on each node
    ppo = _overrides(load_study(CPU_CONFIG), "ppo")
    assert ppo["critic.strategy"] == "fsdp2" and ppo["+critic.model.override_config.attn_implementation"] == "sdpa"


def test_batch_stats_hand_computed():
    from polarity.backends.verl.plugin import batch_stats

    correct = torch.tensor([True, True, True, False, False, False])
    rewards = torch.tensor([1.0, 1.0, 1.0, -1.0, -1.0, -1.0])
    trained = correct.clone()  # PSR: positives only
    stats = batch_stats(correct, rewards, trained, ["a", "a", "b", "b", "c", "c"])
    assert stats == {"batch_responses": 6, "n_positive": 3, "n_negative": 0,
                     "frac_positive": 1.0, "frac_negative": 0.0, "trained_reward_mean": 0.0,
                     "reward_mean": 0.0, "frac_groups_all_correct": pytest.approx(1 / 3),
                     "frac_groups_all_wrong": pytest.approx(1 / 3)}


def test_shape_columns_from_verl_filter_counts():
    shape = {"prompts_per_step": 8, "rollouts_per_prompt": 4, "mini_batch_prompts": 2}
    plain = logs.shape_columns({}, shape)
    assert plain == {"groups_sampled": 8, "gen_rounds": 1, "frac_groups_dropped": 0.0,
                     "optimizer_steps": 4}
    # DAPO: 13 samples evicted and 3 surplus discarded -> 48 drawn = 12 groups, 4 not trained
    dapo = logs.shape_columns({"training/filter_groups/evicted_samples": 13.0,
                               "training/filter_groups/discarded_surplus_samples": 3.0}, shape)
    assert dapo == {"groups_sampled": 12, "gen_rounds": 2, "frac_groups_dropped": pytest.approx(1 / 3),
                    "optimizer_steps": 4}


def test_metrics_rows_take_the_estimators_stats_by_our_step(tmp_path):
    (tmp_path / "0.json").write_text(json.dumps({"n_positive": 5, "reward_mean": -0.5}))
    (tmp_path / "junk.json").write_text("{")
    stats = logs.read_batch_stats(tmp_path)
    assert stats == {0: {"n_positive": 5, "reward_mean": -0.5}}
    merged = {1: {"training/global_step": 1, "critic/rewards/mean": 0.25}}
    rows = logs.to_metrics_rows(merged, algorithm="dapo", seed=0, stats=stats,
                                shape={"prompts_per_step": 2, "rollouts_per_prompt": 2,
                                       "mini_batch_prompts": 1})
    assert rows[0]["step"] == 0 and rows[0]["n_positive"] == 5
    assert rows[0]["reward_mean"] == -0.5  # the shaped reward, not verl's verdict mean
    assert rows[0]["optimizer_steps"] == 2


def test_monitor_from_the_reward_functions_records(tmp_path, monkeypatch):
    """verl's v1 dumps carry no extra keys: the share comes from what compute_score recorded."""
    from polarity.backends.verl import reward_fn

    flagged = tmp_path / "lenient_only"
    monkeypatch.setenv(reward_fn.MONITOR_ENV, str(flagged))
    reward_fn.record_lenient_only("the answer is 4", "4")
    dumps = tmp_path / "rollouts"
    dumps.mkdir()
    rows = [{"output": "the answer is 4", "gts": "4", "score": 0.0},
            {"output": "\\boxed{4}", "gts": "4", "score": 1.0},
            {"output": "the answer is 4", "gts": "5", "score": 0.0},
            {"output": "x", "gts": "4", "score": 0.0}]
    (dumps / "1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert logs.rollout_monitor(dumps, flagged) == {1: 0.25}
    empty = tmp_path / "none_flagged"
    empty.mkdir()
    assert logs.rollout_monitor(dumps, empty) == {1: 0.0}
    assert logs.rollout_monitor(dumps, tmp_path / "absent") == {}  # a run from before: unknown


def test_compute_score_records_only_lenient_only_responses(tmp_path, monkeypatch):
    from polarity.backends.verl import reward_fn

    monkeypatch.setenv(reward_fn.MONITOR_ENV, str(tmp_path))
    right = reward_fn.compute_score("synthetic", "so \\boxed{4}", "4")
    unboxed = reward_fn.compute_score("synthetic", "The answer is 4", "4")
    assert right["score"] == 1.0 and right["lenient_only"] == 0.0
    assert unboxed["score"] == 0.0 and unboxed["lenient_only"] == 1.0  # no box: not credited
    records = [json.loads(line) for p in tmp_path.glob("*.jsonl") for line in p.read_text().splitlines()]
    assert records == [{"output": "The answer is 4", "gts": "4"}]


def test_batch_stats_of_a_run_with_verls_own_estimator_come_from_its_dump(tmp_path):
    """PPO (verl's GAE) writes no estimator stats: they come from verl's rollout dump."""
    rows = [{"uid": "p1_0_0", "score": 1.0}, {"uid": "p1_1_0", "score": 1.0},
            {"uid": "p2_0_0", "score": 0.0}, {"uid": "p2_1_0", "score": 1.0},
            {"uid": "p3_0_0", "score": 0.0}, {"uid": "p3_1_0", "score": 0.0}]
    (tmp_path / "3.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    stats = logs.dump_batch_stats(tmp_path)
    assert stats == {3: {"batch_responses": 6, "n_positive": 3, "n_negative": 3,
                         "frac_positive": 0.5, "frac_negative": 0.5, "trained_reward_mean": 0.5,
                         "frac_groups_all_correct": pytest.approx(1 / 3),
                         "frac_groups_all_wrong": pytest.approx(1 / 3)}}
    rows = logs.to_metrics_rows({3: {"training/global_step": 3}}, algorithm="ppo", seed=0,
                                dumped=stats)
    assert rows[0]["step"] == 2 and rows[0]["n_positive"] == 3
