"""The paper presets: each dry-runs to the expected jobs, and the verl command line of every
(preset, algorithm) composes and passes verl's own validation. Command lines are snapshotted
in tests/snapshots/verl/<preset>.txt (regenerate with POLARITY_UPDATE_SNAPSHOTS=1)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


from hydra.errors import ConfigCompositionException  # noqa: E402

from polarity.algorithms import get_algorithm  # noqa: E402
from polarity.backends.verl import overrides as ov  # noqa: E402
from polarity.settings import ConfigError  # noqa: E402

from .conftest import REPO  # noqa: E402
from .helpers import make_data, make_untrained_model  # noqa: E402
from .test_workflow import snakemake  # noqa: E402
from .verl_helpers import load_study, study_config  # noqa: E402

PRESETS = {
    # 18 runs + 3 base models = 21 policies x 3 benchmarks, one shard each
    "a3po": {"link_model": 3, "prepare_hub_train": 1, "train_verl": 18, "merge_verl": 18,
             "prepare_benchmark": 3, "evaluate_shard": 63, "gather_evaluation": 63,
             "report_training": 1, "report_evaluation": 1, "check_contamination": 1},
    # 10 runs + 2 base models = 12 policies x 5 benchmarks x 8 shards (n = 256, pass@k to 256)
    "negative-reinforcement": {"link_model": 2, "prepare_hub_train": 1, "train_verl": 10,
                               "merge_verl": 10, "prepare_benchmark": 5, "evaluate_shard": 480,
                               "gather_evaluation": 60, "report_training": 1,
                               "report_evaluation": 1, "check_contamination": 1},
    "model-size": {"link_model": 3, "prepare_hub_train": 1, "train_verl": 9, "merge_verl": 9,
                   "prepare_benchmark": 1, "evaluate_shard": 12, "gather_evaluation": 12,
                   "report_training": 1, "report_evaluation": 1, "check_contamination": 1},
    "popo": {"link_model": 1, "prepare_hub_train": 1, "train_verl": 2, "merge_verl": 2,
             "prepare_benchmark": 1, "evaluate_shard": 3, "gather_evaluation": 3,
             "report_training": 1, "report_evaluation": 1, "check_contamination": 1},
}
SNAPSHOTS = REPO / "tests" / "snapshots" / "verl"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny")
    return make_untrained_model(folder, make_data(folder, n_warmup=64, n_train=8, n_test=4))


def _runs(study: dict):
    for model, spec in study["models"].items():
        for algorithm in study["algorithms"]:
            yield model, spec["path"], algorithm


def _overrides(study, model, model_path, algorithm):
    name = study["study"]
    run = f"results/{name}/runs/{model}/{algorithm}/seed0"
    return ov.verl_overrides(study, model=model, algorithm=algorithm, seed=0, model_path=model_path,
                             train_file=f"results/{name}/data/{study['train_data']['name']}-train.parquet",
                             val_file=f"results/{name}/data/{study['train_data']['name']}-train.parquet",
                             run_dir=run)


def _snapshot_text(study) -> str:
    blocks = []
    for model, path, algorithm in _runs(study):
        command = ov.command_line(_overrides(study, model, path, algorithm), python="python")
        blocks.append(f"# {model} / {algorithm}\n{ov.render(command)}\n")
    return "\n".join(blocks).replace(str(REPO), "<repo>")


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_dry_runs_to_the_expected_jobs(preset, tmp_path):
    out = snakemake(tmp_path, "-n", "--quiet", "rules", configfile=REPO / "presets" / f"{preset}.yaml").stdout
    counts = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    counts.pop("all", None)
    counts.pop("total", None)
    assert counts == PRESETS[preset]


def test_negative_reinforcement_evaluation_is_sharded_at_n_256(tmp_path):
    """n = 256 samples, pass@k up to k = 256: 8 shard jobs per (policy, benchmark)."""
    text = snakemake(tmp_path, "-n", "-p",
                     configfile=REPO / "presets" / "negative-reinforcement.yaml").stdout
    for policy in ("qwen25-math-7b/base/seed0", "qwen3-4b/nsr/seed0"):
        for bench in ("math500", "aime24", "amc23", "minerva", "olympiadbench"):
            for i in range(8):
                assert f"eval/{policy}/{bench}/shard{i}-of-8.parquet" in text
    assert "shard8-of-8" not in text
    assert '"samples": 256' in text
    assert "--shards 8" in text
    from polarity.metrics import k_values

    assert k_values(256) == [1, 2, 4, 8, 16, 32, 64, 128, 256]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_command_composes_and_validates(preset, tiny_model):
    study = load_study(REPO / "presets" / f"{preset}.yaml")
    assert study["backend"] == "verl"
    for model, _path, algorithm in _runs(study):
        # the hub id is swapped for a local model: PPO's critic config reads the model's config
        cfg = ov.compose(_overrides(study, model, str(tiny_model), algorithm))
        ov.validate(cfg)
        recipe = get_algorithm(algorithm).resolve(study["algorithm_params"].get(algorithm))
        assert cfg.data.train_batch_size == study["train"]["prompts_per_step"]
        assert cfg.actor_rollout_ref.rollout.n == study["train"]["rollouts_per_prompt"]
        assert cfg.actor_rollout_ref.actor.ppo_mini_batch_size == study["train"]["mini_batch_prompts"]
        assert cfg.actor_rollout_ref.actor.optim.lr == study["train"]["lr"]
        assert cfg.trainer.total_training_steps == study["train"]["steps"]
        assert cfg.trainer.nnodes * cfg.trainer.n_gpus_per_node == (
            study["verl"]["nnodes"] * study["verl"]["gpus_per_node"])
        assert cfg.actor_rollout_ref.actor.clip_ratio_high == recipe.eps_high
        assert cfg.actor_rollout_ref.actor.use_kl_loss is False
        assert cfg.actor_rollout_ref.actor.entropy_coeff == 0
        assert cfg.algorithm.filter_groups.enable == recipe.dynamic_sampling
        if algorithm == "ppo":
            assert cfg.algorithm.adv_estimator == "gae"
            assert cfg.actor_rollout_ref.actor.policy_loss.loss_mode == "vanilla"
        else:
            env = cfg.ray_kwargs.ray_init.runtime_env.env_vars
            assert env.VERL_USE_EXTERNAL_MODULES == "polarity.backends.verl.plugin"
            run = ov.VerlRun.from_env(env.POLARITY_VERL_RUN)
            assert run.algorithm == algorithm and run.recipe == recipe and run.seed == 0
            # POPO's entropy term needs verl's entropy; no other loss computes it
            assert cfg.actor_rollout_ref.actor.calculate_entropy is (recipe.objective == "popo")


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_command_lines_match_the_snapshot(preset):
    study = load_study(REPO / "presets" / f"{preset}.yaml")
    text = _snapshot_text(study)
    path = SNAPSHOTS / f"{preset}.txt"
    if os.environ.get("POLARITY_UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no snapshot {path}: run with POLARITY_UPDATE_SNAPSHOTS=1"
    assert text == path.read_text()


def test_a3po_preset_has_the_paper_settings():
    study = load_study(REPO / "presets" / "a3po.yaml")
    train = study["train"]
    assert (train["steps"], train["prompts_per_step"], train["rollouts_per_prompt"],
            train["mini_batch_prompts"], train["lr"], train["temperature"]) == (300, 512, 8, 32, 1e-6, 1.0)
    assert (study["verl"]["nnodes"], study["verl"]["gpus_per_node"]) == (2, 8)
    recipe = get_algorithm("a3po").resolve(study["algorithm_params"]["a3po"])
    assert (recipe.p_pos, recipe.rho_pos, recipe.alpha_pos) == (0.2, 2.0, 0.005)


def test_popo_preset_has_the_paper_settings():
    study = load_study(REPO / "presets" / "popo.yaml")
    train, ev = study["train"], study["evaluate"]
    assert study["backend"] == "verl" and study["algorithms"] == ["popo", "grpo"]
    assert study["models"] == {"qwen25-math-7b": {"path": "Qwen/Qwen2.5-Math-7B"}}
    assert study["train_data"]["name"] == "deepscaler"
    assert (train["steps"], train["rollouts_per_prompt"], train["lr"],
            train["max_response_tokens"], train["kl_coef"]) == (1500, 8, 1e-7, 1024, 0.0)
    assert (ev["benchmarks"], ev["samples"], ev["temperature"]) == (["aime25"], 128, 0.7)
    recipe = get_algorithm("popo").resolve(study["algorithm_params"]["popo"])
    assert (recipe.popo_alpha, recipe.popo_beta, recipe.popo_tau, recipe.popo_noise) == (
        0.1, 0.01, 0.995, 0.02)


def test_a_misspelt_verl_key_fails_composition():
    study = study_config(backend="verl", verl={"gpus_per_node": 8,
                                               "extra_overrides": ["actor_rollout_ref.actor.clip_ratio_hgh=0.3"]})
    o = ov.verl_overrides(study, model="m", algorithm="grpo", seed=0, model_path="/m",
                          train_file="t.parquet", val_file="v.parquet", run_dir="r")
    with pytest.raises(ConfigCompositionException, match="clip_ratio_hgh"):
        ov.compose(o)


def test_verl_validation_rejects_a_bad_batch_split():
    study = study_config(backend="verl")
    study["verl"]["gpus_per_node"] = 3  # 32 prompts x 8 rollouts do not split over 3 GPUs
    o = ov.verl_overrides(study, model="m", algorithm="grpo", seed=0, model_path="/m",
                          train_file="t.parquet", val_file="v.parquet", run_dir="r")
    with pytest.raises(AssertionError, match="divisible"):
        ov.validate(ov.compose(o))


@pytest.mark.parametrize(
    "extra, key",
    [
        ({"algorithms": ["popo"], "train": {"kl_coef": 0.01}}, "train.kl_coef"),
        ({"algorithms": ["popo"], "train": {"entropy_coef": 0.01}}, "train.entropy_coef"),
        ({"algorithm_params": {"a3po": {"rank_by": "entropy"}}}, "rank_by"),
        ({"verl": {"nnodes": 3, "gpus_per_node": 8}}, "train.prompts_per_step"),
    ],
)
def test_verl_study_errors_name_the_key(extra, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        study_config(backend="verl", **extra)


def test_hydra_quoting_round_trips_the_run_json():
    study = study_config(backend="verl")
    o = ov.verl_overrides(study, model="m", algorithm="grpo", seed=0, model_path="/m",
                          train_file="/data dir/it's.parquet", val_file="v.parquet", run_dir="/r d")
    cfg = ov.compose(o)
    assert list(cfg.data.train_files) == ["/data dir/it's.parquet"]
    assert ov.VerlRun.from_env(cfg.ray_kwargs.ray_init.runtime_env.env_vars.POLARITY_VERL_RUN) == \
        ov.VerlRun.from_env(ov.run_env(o)["POLARITY_VERL_RUN"])


@pytest.mark.parametrize("extraction, dump", [("answer_line", True), ("lenient", False)])
def test_reward_policy_and_rollout_dumps_reach_verl(extraction, dump):
    """train.extraction becomes the reward function's kwarg, train.dump_rollouts verl's
    rollout_data_dir (the monitor's source), as composed by verl's own config."""
    study = study_config(backend="verl")
    study["train"].update(extraction=extraction, dump_rollouts=dump)
    cfg = ov.compose(ov.verl_overrides(study, model="m", algorithm="grpo", seed=0,
                                       model_path="/m", train_file="t.parquet",
                                       val_file="v.parquet", run_dir="/r"))
    assert cfg.reward.custom_reward_function.reward_kwargs.extraction == extraction
    want = "/r/state/rollouts" if dump else None
    assert cfg.trainer.rollout_data_dir == want
