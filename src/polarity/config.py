"""Checks of a study config: every schema violation named by its key, then the cross-field
checks JSON schema cannot express (algorithm parameters against the registry, batch shapes).

The Snakefile calls ``check_config`` and ``check_study`` before any job runs; the typed
settings the stages read are in ``polarity.settings``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .algorithms.registry import ALGORITHMS, check_overlong_buffer, check_popo_on_verl, get_algorithm
from .settings import SCHEMA_PATH, ConfigError, load_schema
from .data.registry import BENCHMARKS

__all__ = ["ConfigError", "check_config", "check_study", "schema_errors"]


def check_study(config: dict[str, Any]) -> None:
    """Cross-field checks after schema validation; raises ConfigError naming the key."""

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
    for i, bench in enumerate(config.get("evaluate", {}).get("benchmarks", [])):
        if bench not in BENCHMARKS:
            raise ConfigError(
                f"evaluate.benchmarks[{i}]: unknown benchmark {bench!r}; known: {', '.join(BENCHMARKS)}"
            )
    for name, model in config.get("models", {}).items():
        if name == "base" or "/" in name:
            raise ConfigError(f"models.{name}: model names may not be 'base' or contain '/'")


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
