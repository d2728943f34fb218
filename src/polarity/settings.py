"""Typed settings of a study, made from the one declaration of the config: its JSON schema.

``workflow/schemas/config.schema.yaml`` declares every key once, with its type, default and
constraints; Snakemake validates studies against it. The frozen dataclasses below are built
from that schema (a section's keys become fields with the schema's defaults), so a key is never
restated in Python. The algorithms' own knobs are declared in the registry
(``polarity.algorithms.registry.Recipe``), which writes their part of the schema.
"""

from __future__ import annotations

import copy
import json
from dataclasses import field, fields, make_dataclass
from pathlib import Path
from typing import Any

import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A study config that cannot run; the message names the offending key."""


def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    return yaml.safe_load(Path(path).read_text())


SCHEMA = load_schema()
_PY_TYPES = {"integer": int, "number": float, "string": str, "boolean": bool}


def section_schema(section: str) -> dict:
    """The schema of a (dotted) section, e.g. ``"train"`` or ``"synthetic.spec"``."""
    node = SCHEMA
    for key in section.split("."):
        node = node["properties"][key]
    return node


def settings_class(name: str, section: str, doc: str, *, exclude: tuple[str, ...] = (),
                   top_level: tuple[str, ...] = ()):
    """A frozen dataclass of ``section``'s keys (less ``exclude``; plus the ``top_level``
    keys of the study), typed and defaulted by the schema; ``from_dict`` names unknown keys."""
    specs = {k: v for k, v in section_schema(section)["properties"].items() if k not in exclude}
    specs.update({k: SCHEMA["properties"][k] for k in top_level})
    columns = []
    for key, spec in specs.items():
        kind = _PY_TYPES[spec["type"]]
        columns.append((key, kind, field(default=kind(spec["default"]),
                                         metadata={"help": spec.get("description", "")})))

    def from_dict(cls, values: dict[str, Any]):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{section}.{unknown[0]}: unknown key; known: {', '.join(sorted(known))}")
        return cls(**values)

    cls = make_dataclass(name, columns, frozen=True,
                         namespace={"__doc__": doc, "from_dict": classmethod(from_dict)})
    cls.__module__ = __name__
    return cls


TrainSettings = settings_class(
    "TrainSettings", "train", "The ``train`` section (and the study's ``backend``): one RL run.",
    top_level=("backend",))
# What the evaluator reads; the other keys plan jobs (which benchmarks, shards, sources).
EvalSettings = settings_class(
    "EvalSettings", "evaluate", "The ``evaluate`` section: sampling and scoring settings.",
    exclude=("benchmarks", "shards", "sources", "template", "limit", "include_base"))
TinyModelSpec = settings_class(
    "TinyModelSpec", "tiny_model",
    "Architecture and warm-up knobs of the locally made base model (``tiny_model``).",
    exclude=("seed",))


def fill_defaults(section: str, values: dict[str, Any] | None) -> dict[str, Any]:
    """``values`` with the schema's defaults filled in, nested objects too (as Snakemake's
    ``validate`` fills a study), so a stage run by hand gets the same settings."""

    def fill(schema: dict, value):
        if not isinstance(value, dict) or "properties" not in schema:
            return value
        out = dict(value)
        for key, spec in schema["properties"].items():
            if key not in out and "default" in spec:
                out[key] = copy.deepcopy(spec["default"])
            if key in out:
                out[key] = fill(spec, out[key])
        return out

    return fill(section_schema(section), dict(values or {}))


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


def parse_json_arg(text: str) -> dict[str, Any]:
    """A CLI ``--settings`` argument: inline JSON or ``@file.json``/``.yaml``."""
    if text.startswith("@"):
        raw = Path(text[1:]).read_text()
        return yaml.safe_load(raw) if text.endswith((".yaml", ".yml")) else json.loads(raw)
    return json.loads(text)
