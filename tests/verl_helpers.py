"""Study configs for the verl tests: validated and filled with the schema's defaults."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml
from snakemake.utils import validate

from polarity.config import check_config, check_study
from polarity.settings import SCHEMA_PATH

from .conftest import REPO


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_study(path: str | Path, **extra) -> dict:
    """A config file (plus overrides) as the Snakefile sees it after its checks."""
    config = _merge(yaml.safe_load(Path(path).read_text()), extra)
    check_config(config, SCHEMA_PATH)
    validate(config, str(SCHEMA_PATH))
    check_study(config)
    return config


def study_config(**extra) -> dict:
    """The default study with overrides (e.g. backend="verl")."""
    return load_study(REPO / "config.yaml", **{"algorithms": ["grpo"], **extra})
