"""A study's training run as the command line of verl's trainer (``verl.trainer.main_ppo``).

:func:`verl_overrides` is pure: study config + one (model, algorithm, seed) run -> Hydra
overrides of verl 0.9.1's ``ppo_trainer`` config. :func:`compose` and :func:`validate` run
verl's own Hydra composition and ``validate_config`` on them offline (no GPU, no Ray), which is
what the tests and ``polarity train-verl --check`` do before any GPU hour is spent.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from polarity.algorithms import check_popo_on_verl, get_algorithm
from polarity.algorithms.registry import Recipe

from .plugin import ESTIMATOR, LOSS, PLUGIN_MODULE, RUN_ENV, VerlRun
from .reward_fn import MONITOR_ENV

CONFIG_NAME = "ppo_trainer"
REWARD_FN = Path(__file__).with_name("reward_fn.py")
ENV = "+ray_kwargs.ray_init.runtime_env.env_vars"


def run_paths(run_dir: str | Path) -> dict[str, Path]:
    """Where a verl run keeps its undeclared state (checkpoints survive failed/re-run jobs)."""
    state = Path(run_dir) / "state"
    return {
        "state": state,
        "checkpoints": state / "verl_checkpoints",
        "step_file": state / "a3po_step.json",
        "batch_stats": state / "batch_stats",
        "lenient_only": state / "lenient_only",
        "logs": state / "verl_logs",
        "rollouts": state / "rollouts",
        "script": state / "launch.sh",
        "hydra": state / "hydra",
    }


def _value(v: Any) -> str:
    """A Python value in Hydra's override grammar."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{_value(x)}" for k, x in v.items()) + "}"
    text = str(v)
    if text and all(c.isalnum() or c in "_-./~" for c in text) and text not in ("true", "false", "null"):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def verl_run(config: dict, algorithm: str, run_dir: str | Path, seed: int = 0) -> VerlRun:
    """The plugin's view of the run (travels to every Ray worker in the environment)."""
    paths = run_paths(run_dir)
    return VerlRun(
        algorithm=algorithm,
        params=dict((config.get("algorithm_params") or {}).get(algorithm) or {}),
        max_response_tokens=int(config["train"]["max_response_tokens"]),
        step_file=str(paths["step_file"]),
        stats_dir=str(paths["batch_stats"]),
        checkpoint_dir=str(paths["checkpoints"]),
        seed=int(seed),
    )


def verl_overrides(
    config: dict,
    *,
    model: str,
    algorithm: str,
    seed: int,
    model_path: str,
    train_file: str | Path,
    val_file: str | Path,
    run_dir: str | Path,
) -> list[str]:
    """Hydra overrides of ``ppo_trainer`` for one run of a validated study config.

    Train settings map one to one (steps, prompts per step, rollouts, mini-batch in prompts, lr,
    temperature, lengths, KL and entropy coefficients); the algorithm maps to our estimator and
    loss (PPO: verl's own GAE + critic); DAPO's dynamic sampling to verl's group filter on the
    0/1 verdict (``acc``); the cluster shape and logger from the study's ``verl`` section.
    """
    train, verl = config["train"], config["verl"]
    algo = get_algorithm(algorithm)
    recipe: Recipe = algo.resolve((config.get("algorithm_params") or {}).get(algorithm))
    paths = run_paths(run_dir)
    ppo = recipe.objective == "ppo_gae"
    popo = recipe.objective == "popo"
    if recipe.objective not in ("ppo_clip", "ppo_gae", "popo"):
        raise ValueError(f"{algorithm}: objective {recipe.objective!r} has no verl implementation")
    check_popo_on_verl(algorithm, recipe, train)  # also checked before any job (config.py)
    use_kl = train["kl_coef"] > 0
    o: dict[str, Any] = {
        # data
        "data.train_files": [str(train_file)],
        "data.val_files": [str(val_file)],
        "data.train_batch_size": train["prompts_per_step"],
        "data.max_prompt_length": train["max_prompt_tokens"],
        "data.max_response_length": train["max_response_tokens"],
        "data.filter_overlong_prompts": False,  # checked before launch instead (clear error)
        "data.truncation": "error",
        "data.seed": seed,
        # policy
        "actor_rollout_ref.model.path": model_path,
        "actor_rollout_ref.model.use_remove_padding": True,
        "actor_rollout_ref.model.enable_gradient_checkpointing": True,
        # FSDP2 on GPUs and CPUs alike (FSDP1 needs GPU parameters: sync_module_states)
        "actor_rollout_ref.actor.strategy": "fsdp2",
        "actor_rollout_ref.ref.strategy": "fsdp2",
        "actor_rollout_ref.actor.optim.lr": train["lr"],
        "actor_rollout_ref.actor.optim.weight_decay": train["weight_decay"],
        "actor_rollout_ref.actor.grad_clip": train["grad_clip"],
        "actor_rollout_ref.actor.ppo_mini_batch_size": train["mini_batch_prompts"],
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu": verl["micro_batch_per_gpu"],
        "actor_rollout_ref.actor.ppo_epochs": 1,
        "actor_rollout_ref.actor.use_kl_loss": use_kl,
        "actor_rollout_ref.actor.kl_loss_coef": train["kl_coef"],
        "actor_rollout_ref.actor.kl_loss_type": "low_var_kl",  # k3, as the local backend
        "actor_rollout_ref.actor.entropy_coeff": train["entropy_coef"],
        "actor_rollout_ref.actor.clip_ratio_low": recipe.eps_low,
        "actor_rollout_ref.actor.clip_ratio_high": recipe.eps_high,
        "actor_rollout_ref.actor.loss_agg_mode": recipe.loss_agg_mode,
        "actor_rollout_ref.actor.policy_loss.loss_mode": "vanilla" if ppo else LOSS,
        # rollouts (vLLM)
        "actor_rollout_ref.rollout.name": "vllm",
        "actor_rollout_ref.rollout.n": train["rollouts_per_prompt"],
        "actor_rollout_ref.rollout.temperature": train["temperature"],
        "actor_rollout_ref.rollout.top_p": train["top_p"],
        "actor_rollout_ref.rollout.tensor_model_parallel_size": verl["rollout_tp"],
        "actor_rollout_ref.rollout.gpu_memory_utilization": verl["gpu_memory_utilization"],
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu": verl["micro_batch_per_gpu"],
        "actor_rollout_ref.rollout.seed": seed,
        # algorithm
        "algorithm.adv_estimator": "gae" if ppo else ESTIMATOR,
        "algorithm.use_kl_in_reward": False,
        "algorithm.filter_groups.enable": recipe.dynamic_sampling,
        # reward: our math-verify verdicts
        "reward.custom_reward_function.path": str(REWARD_FN),
        "reward.custom_reward_function.name": "compute_score",
        # what the reward credits (polarity.reward.EXTRACTIONS); not in verl's defaults: "+"
        "+reward.custom_reward_function.reward_kwargs.extraction": train.get("extraction", "boxed"),
        # trainer
        "trainer.total_training_steps": train["steps"],
        "trainer.total_epochs": verl["max_epochs"],
        "trainer.save_freq": train["save_every"],
        "trainer.test_freq": train["test_every"] if train["test_every"] > 0 else -1,
        "trainer.val_before_train": verl["val_before_train"],
        "trainer.nnodes": verl["nnodes"],
        "trainer.n_gpus_per_node": verl["gpus_per_node"],
        "trainer.logger": list(verl["logger"]),
        "trainer.project_name": f"polarity-{config['study']}",
        "trainer.experiment_name": f"{model}-{algorithm}-seed{seed}",
        "trainer.default_local_dir": str(paths["checkpoints"]),
        "trainer.resume_mode": "auto",
        "trainer.max_actor_ckpt_to_keep": train["keep_checkpoints"],
        "trainer.max_critic_ckpt_to_keep": train["keep_checkpoints"],
    }
    if popo:  # POPO's entropy term needs the policy's token entropy in training
        o["actor_rollout_ref.actor.calculate_entropy"] = True
    if recipe.clip_ratio_c:  # verl's own loss (PPO) reads it; ours reads the recipe (0 = off)
        o["actor_rollout_ref.actor.clip_ratio_c"] = recipe.clip_ratio_c
    if recipe.loss_agg_mode == "seq-mean-token-sum-norm":
        o["actor_rollout_ref.actor.loss_scale_factor"] = train["max_response_tokens"]
    if train.get("dump_rollouts", True):  # every step's responses and verdicts: <step>.jsonl
        o["trainer.rollout_data_dir"] = str(paths["rollouts"])
    if recipe.dynamic_sampling:
        o["algorithm.filter_groups.metric"] = "acc"
        o["algorithm.filter_groups.max_num_gen_batches"] = recipe.max_gen_rounds
    if use_kl:
        o["actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu"] = verl["micro_batch_per_gpu"]
    if ppo:
        o["critic.strategy"] = "fsdp2"
        o["critic.model.path"] = model_path
        o["critic.optim.lr"] = verl["critic_lr"]
        o["critic.ppo_micro_batch_size_per_gpu"] = verl["micro_batch_per_gpu"]
    env = {"VERL_USE_EXTERNAL_MODULES": PLUGIN_MODULE, "TOKENIZERS_PARALLELISM": "false",
           MONITOR_ENV: str(paths["lenient_only"])}
    if verl.get("device", "cuda") == "cpu":
        o.update(cpu_overrides(verl, use_kl=use_kl, ppo=ppo))
        env["VERL_PLATFORM"] = "cpu"
    if not ppo:
        env[RUN_ENV] = verl_run(config, algorithm, run_dir, seed).to_env()
    out = [f"{key}={_value(value)}" for key, value in o.items()]
    out += [f"{ENV}.{key}={_value(value)}" for key, value in env.items()]
    return out + list(verl.get("extra_overrides") or [])


# Ray's CPUs are logical too: verl asks 3 per worker bundle (its max_colocate_count) plus one
# per helper actor (task runner, agent loop, reward loop), more than a 2-core machine reports.
CPU_RAY_CPUS_PER_WORKER = 8
# float32 throughout on CPUs (bf16 there is slow and would blur the rollout-vs-actor check)
FP32 = {"param_dtype": "fp32", "reduce_dtype": "fp32", "buffer_dtype": "fp32"}


def cpu_overrides(verl: dict, *, use_kl: bool, ppo: bool) -> dict[str, Any]:
    """What ``verl.device: cpu`` changes (the cpu platform itself is ``cpu.py``).

    Ray counts each worker process as one logical GPU; attention is SDPA (no flash-attn); the
    rollout is the transformers-backed ``hf`` replica; weights, compute and rollout are float32
    and nothing is compiled (torch.compile only costs start-up here); the agent loop, reward loop
    and data loader run one worker each and TransferQueue one storage unit (their defaults of 8
    each take a CPU, and start-up on a small machine stalls). The reference policy, when KL needs
    it, is a full FSDP engine: verl's forward-only engine pins CPU-offloaded memory, which needs a
    GPU (not run in CI: the CI study has no KL term).
    """
    o: dict[str, Any] = {
        "trainer.device": "cpu",
        "+actor_rollout_ref.model.override_config.attn_implementation": "sdpa",
        "actor_rollout_ref.rollout.name": "hf",
        "actor_rollout_ref.rollout.dtype": "float32",
        "+actor_rollout_ref.actor.fsdp_config.mixed_precision": FP32,
        "+actor_rollout_ref.ref.fsdp_config.mixed_precision": FP32,
        "actor_rollout_ref.actor.fsdp_config.use_torch_compile": False,
        "actor_rollout_ref.ref.fsdp_config.use_torch_compile": False,
        "actor_rollout_ref.rollout.agent.num_workers": 1,
        "reward.num_workers": 1,
        "data.dataloader_num_workers": 0,
        "transfer_queue.backend.SimpleStorage.num_data_storage_units": 1,
    }
    if verl["nnodes"] == 1:  # verl starts Ray itself; several nodes: the launch's `ray start`
        o["+ray_kwargs.ray_init.num_gpus"] = verl["gpus_per_node"]
        o["ray_kwargs.ray_init.num_cpus"] = CPU_RAY_CPUS_PER_WORKER * verl["gpus_per_node"]
        o["+ray_kwargs.ray_init.include_dashboard"] = False  # two fewer processes to start
    if use_kl:
        o["actor_rollout_ref.ref.fsdp_config.forward_only"] = False
        o["+optim@actor_rollout_ref.ref.optim"] = "fsdp"
    if ppo:
        o["+critic.model.override_config.attn_implementation"] = "sdpa"
        o["+critic.fsdp.mixed_precision"] = FP32
        o["critic.fsdp.use_torch_compile"] = False
    return o


def command_line(overrides: list[str], python: str = "python",
                 hydra_dir: str | Path | None = None) -> list[str]:
    """verl's trainer with ``overrides``; ``hydra_dir``: where Hydra writes its run log (else
    ``outputs/<date>/<time>/`` under the working directory)."""
    extra = [f"hydra.run.dir={_value(str(hydra_dir))}"] if hydra_dir else []
    return [python, "-m", "verl.trainer.main_ppo", *overrides, *extra]


def render(command: list[str]) -> str:
    """One shell-quoted command, one override per line (for logs and snapshots)."""
    head = " ".join(shlex.quote(a) for a in command[:3])
    return " \\\n    ".join([head, *(shlex.quote(a) for a in command[3:])])


def config_dir() -> Path:
    import verl.trainer

    return Path(verl.trainer.__file__).parent / "config"


def compose(overrides: list[str]):
    """verl's ``ppo_trainer`` config with ``overrides`` applied by Hydra (as main_ppo does)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        return hydra_compose(config_name=CONFIG_NAME, overrides=list(overrides))


def validate(cfg) -> None:
    """verl's own pre-flight checks (``validate_config``), as ``main_ppo`` runs them."""
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    validate_config(cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))


def run_env(overrides: list[str]) -> dict[str, str]:
    """The environment variables the overrides give every Ray worker (for the launch script)."""
    prefix = ENV + "."
    env = {}
    for item in overrides:
        if item.startswith(prefix):
            key, value = item[len(prefix):].split("=", 1)
            if value.startswith("'") and value.endswith("'"):
                value = value[1:-1].replace("\\'", "'").replace("\\\\", "\\")
            env[key] = value
    return env
