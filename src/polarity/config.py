"""Typed views of the validated study config, and the checks JSON schema cannot express.

The Snakefile validates ``config.yaml`` against ``workflow/schemas/config.schema.yaml`` (which
fills defaults) and then calls ``check_study``; rules hand each CLI stage its section as JSON,
which the stage turns into one of the dataclasses below.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A study config that cannot run; the message names the offending key."""


# Settings that change how a job runs, not what it computes: rules hand them over as a
# resource (``speed``), not as params, so changing one re-runs nothing (Snakemake reruns a job
# when its params change). Threads and batch sizes may change float rounding, not the method.
SPEED_SETTINGS: dict[str, tuple[str, ...]] = {
    "tiny_model": ("warmup_max_seconds",),  # a fail-safe: it can only fail the job
    "train": ("device", "threads", "save_every", "keep_checkpoints", "dump_rollouts"),
    "evaluate": ("device", "threads", "batch_size", "score_workers", "tensor_parallel_size",
                 "gpu_memory_utilization"),
}


def split_speed(section: str, values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``values`` -> (settings that change results, speed settings), by ``SPEED_SETTINGS``."""
    speed = SPEED_SETTINGS.get(section, ())
    return ({k: v for k, v in values.items() if k not in speed},
            {k: v for k, v in values.items() if k in speed})


@dataclass(frozen=True)
class TrainSettings:
    """The ``train`` section: one on-policy RL run."""

    steps: int = 30
    prompts_per_step: int = 32
    rollouts_per_prompt: int = 8
    mini_batch_prompts: int = 16
    lr: float = 1e-4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    temperature: float = 1.0
    top_p: float = 1.0
    max_prompt_tokens: int = 256
    max_response_tokens: int = 32
    kl_coef: float = 0.0
    entropy_coef: float = 0.0
    save_every: int = 10
    test_every: int = 0
    keep_checkpoints: int = 2
    device: str = "cpu"
    threads: int = 1
    backend: str = "local"
    extraction: str = "boxed"  # polarity.reward.EXTRACTIONS: what the reward credits
    dump_rollouts: bool = True  # every step's responses and verdicts in state/rollouts/

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainSettings":
        return _from_dict(cls, values, "train")


@dataclass(frozen=True)
class EvalSettings:
    """The ``evaluate`` section: sampling settings for every benchmark."""

    samples: int = 16
    temperature: float = 0.6
    top_p: float = 0.95
    max_response_tokens: int = 32
    engine: str = "hf"
    batch_size: int = 512
    device: str = "cpu"
    threads: int = 1
    seed: int = 0
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    score_workers: int = 0  # reward worker processes; 0 = one per core of the job
    score_timeout: float = 5.0  # hard per-item scoring limit, seconds
    extraction: str = "boxed"  # polarity.reward.EXTRACTIONS: what evaluation credits

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "EvalSettings":
        return _from_dict(cls, values, "evaluate")


def _from_dict(cls, values: dict[str, Any], section: str):
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{section}.{unknown[0]}: unknown key; known: {', '.join(sorted(known))}")
    return cls(**values)


def parse_json_arg(text: str) -> dict[str, Any]:
    """A CLI ``--settings`` argument: inline JSON or ``@file.json``/``.yaml``."""
    if text.startswith("@"):
        raw = Path(text[1:]).read_text()
        return yaml.safe_load(raw) if text.endswith((".yaml", ".yml")) else json.loads(raw)
    return json.loads(text)


def check_study(config: dict[str, Any]) -> None:
    """Cross-field checks after schema validation; raises ConfigError naming the key."""
    from .algorithms import ALGORITHMS, check_overlong_buffer, check_popo_on_verl, get_algorithm

    backend = config.get("backend", "local")
    for i, name in enumerate(config.get("algorithms", [])):
        if name not in ALGORITHMS:
            raise ConfigError(
                f"algorithms[{i}]: unknown algorithm {name!r}; known: {', '.join(ALGORITHMS)}"
            )
        algo = get_algorithm(name)
        if backend not in algo.backends:
            raise ConfigError(
                f"algorithms[{i}]: {name} runs only on backend(s) {', '.join(algo.backends)}, "
                f"not {backend!r}"
            )
    params = config.get("algorithm_params", {}) or {}
    for name, values in params.items():
        if name not in ALGORITHMS:
            raise ConfigError(f"algorithm_params.{name}: unknown algorithm; known: {', '.join(ALGORITHMS)}")
        try:
            recipe = get_algorithm(name).resolve(values)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if backend == "verl" and recipe.rank_by != "prob":
            raise ConfigError(
                f"algorithm_params.{name}.rank_by: verl's policy loss gets no old-policy entropy; "
                "A3PO on verl ranks by 'prob' only"
            )
    max_len = config.get("train", {}).get("max_response_tokens")
    for name in config.get("algorithms", []):
        recipe = get_algorithm(name).resolve(params.get(name))
        if backend == "verl":
            try:
                check_popo_on_verl(name, recipe, config.get("train", {}))
            except ValueError as err:
                raise ConfigError(str(err)) from None
        if max_len is not None:
            try:
                check_overlong_buffer(name, recipe, max_len,
                                      explicit="overlong_cache" in (params.get(name) or {}))
            except ValueError as err:
                raise ConfigError(str(err)) from None
    if backend == "verl":
        verl = config.get("verl", {})
        train = config.get("train", {})
        gpus = verl.get("nnodes", 1) * verl.get("gpus_per_node", 8)
        rollouts = train.get("prompts_per_step", 1) * train.get("rollouts_per_prompt", 1)
        if rollouts % gpus:
            raise ConfigError(
                f"train.prompts_per_step: {train.get('prompts_per_step')} prompts x "
                f"{train.get('rollouts_per_prompt')} rollouts must split evenly over "
                f"verl.nnodes x verl.gpus_per_node = {gpus} GPUs"
            )
    train = config.get("train", {})
    if train.get("mini_batch_prompts", 1) > train.get("prompts_per_step", 1):
        raise ConfigError(
            f"train.mini_batch_prompts: {train['mini_batch_prompts']} is larger than "
            f"train.prompts_per_step ({train['prompts_per_step']})"
        )
    if train.get("prompts_per_step", 1) % train.get("mini_batch_prompts", 1):
        raise ConfigError(
            "train.mini_batch_prompts: must divide train.prompts_per_step "
            f"({train['prompts_per_step']} % {train['mini_batch_prompts']} != 0)"
        )
    synthetic = config.get("train_data", {}).get("name", "synthetic-arith") == "synthetic-arith"
    if synthetic and train.get("extraction") == "answer_line":
        raise ConfigError(
            "train.extraction: the synthetic task's answers are boxed (its prompts ask for no "
            "'Answer:' line), so answer_line would credit no response; use boxed"
        )
    from .evaluation.benchmarks import BENCHMARKS

    for i, bench in enumerate(config.get("evaluate", {}).get("benchmarks", [])):
        if bench not in BENCHMARKS:
            raise ConfigError(
                f"evaluate.benchmarks[{i}]: unknown benchmark {bench!r}; known: {', '.join(BENCHMARKS)}"
            )
    for name, model in config.get("models", {}).items():
        if name == "base" or "/" in name:
            raise ConfigError(f"models.{name}: model names may not be 'base' or contain '/'")


def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    return yaml.safe_load(Path(path).read_text())


def schema_errors(config: dict[str, Any], schema: dict | None = None) -> list[str]:
    """Every schema violation as ``key.path: message``, unknown keys named one by one."""
    import jsonschema

    schema = schema or load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    messages = []
    for err in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path))):
        where = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in err.absolute_path)
        where = where.replace(".[", "[") or "(top level)"
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            known = set(err.schema.get("properties", {}))
            for key in sorted(set(err.instance) - known):
                prefix = f"{where}." if where != "(top level)" else ""
                messages.append(f"{prefix}{key}: unknown key; known: {', '.join(sorted(known))}")
        else:
            messages.append(f"{where}: {err.message}")
    return messages


def check_config(config: dict[str, Any], schema_path: str | Path = SCHEMA_PATH) -> None:
    """Fail before any job runs with every schema violation, each naming its key."""
    errors = schema_errors(config, load_schema(schema_path))
    if errors:
        raise ConfigError("invalid study config:\n  " + "\n  ".join(errors))
