"""The study config: schema and registry agree, and bad configs fail naming the key."""

import copy

import pytest
import yaml

from polarity.algorithms import ALGORITHMS, params_schema
from polarity.config import check_config, check_study
from polarity.settings import SCHEMA_PATH, ConfigError, TrainSettings, load_schema

from .conftest import REPO


def default_config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_schema_algorithms_match_registry():
    schema = load_schema()
    assert schema["properties"]["algorithms"]["items"]["enum"] == list(ALGORITHMS)
    generated = params_schema()
    stored = dict(schema["properties"]["algorithm_params"])
    stored.pop("description")
    assert stored == generated, "run scripts/write_schema.py after changing the registry"


def test_default_config_is_valid():
    config = default_config()
    check_config(config)
    check_study(config)


@pytest.mark.parametrize(
    "patch, key",
    [
        ({"train": {"stpes": 3}}, "train.stpes"),
        ({"train": {"steps": "ten"}}, "train.steps"),
        ({"train": {"steps": 0}}, "train.steps"),
        ({"algorithms": ["grpo", "reinforce++"]}, "algorithms[1]"),
        ({"evaluate": {"benchmarks": ["aime2099"]}}, "evaluate.benchmarks[0]"),
        ({"algorithm_params": {"a3po": {"rho_pos": 0.0}}}, "algorithm_params.a3po.rho_pos"),
        ({"algorithm_params": {"dapo": {"clip_ratio_c": 0.5}}}, "algorithm_params.dapo.clip_ratio_c"),
        ({"algorithm_params": {"psr": {"lambda": 0.5}}}, "algorithm_params.psr.lambda"),
        ({"models": {"tiny": {"make": "huge"}}}, "models.tiny.make"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_schema_errors_name_the_key(patch, key):
    config = default_config()
    for section, value in patch.items():
        if isinstance(value, dict) and isinstance(config.get(section), dict):
            config[section] = {**config[section], **value}
        else:
            config[section] = value
    with pytest.raises(ConfigError) as err:
        check_config(config)
    assert key in str(err.value)


def test_an_overlong_buffer_not_below_the_response_cap_is_refused():
    config = default_config()
    config["algorithm_params"] = {k: v for k, v in config["algorithm_params"].items() if k != "a3po"}
    with pytest.raises(ConfigError, match=r"algorithm_params\.a3po\.overlong_cache: .*4096.*\(32\)"):
        check_study(config)  # a3po would inherit DAPO's 4096-token buffer with 32-token responses
    config["algorithm_params"]["a3po"] = {"overlong_cache": 32}
    with pytest.raises(ConfigError, match=r"algorithm_params\.a3po\.overlong_cache"):
        check_study(config)
    config["algorithm_params"]["a3po"] = {"overlong_cache": 31}
    check_study(config)
    config["algorithms"] = ["grpo"]  # a buffer of an algorithm the study does not run is moot
    config["algorithm_params"]["a3po"] = {"overlong_cache": 64}
    check_study(config)


def test_cross_field_checks_name_the_key():
    config = default_config()
    config["train"] = {**config["train"], "prompts_per_step": 8, "mini_batch_prompts": 16}
    with pytest.raises(ConfigError, match="train.mini_batch_prompts"):
        check_study(config)
    config = default_config()
    config["train"] = {**config["train"], "extraction": "answer_line"}  # the task is boxed
    with pytest.raises(ConfigError, match="train.extraction: the synthetic task"):
        check_study(config)
    config = default_config()
    config["algorithms"] = ["ppo"]  # verl only
    with pytest.raises(ConfigError, match=r"algorithms\[0\]: ppo runs only on backend"):
        check_study(config)


def test_train_settings_reject_unknown_keys():
    with pytest.raises(ConfigError, match="train.stpes"):
        TrainSettings.from_dict({"stpes": 1})
    assert TrainSettings.from_dict({"steps": 3}).steps == 3


def test_schema_defaults_match_settings_dataclass():
    """The schema's train defaults are the trainer's defaults (one source of truth each way)."""
    props = load_schema()["properties"]["train"]["properties"]
    defaults = TrainSettings()
    for name, spec in props.items():
        assert getattr(defaults, name) == spec["default"], name
    assert SCHEMA_PATH.exists()


def test_schema_benchmarks_and_templates_match_the_registries():
    from polarity.data.rows import PROMPT_TEMPLATES
    from polarity.data.registry import BENCHMARKS

    evaluate = load_schema()["properties"]["evaluate"]["properties"]
    assert evaluate["benchmarks"]["items"]["enum"] == list(BENCHMARKS)
    assert evaluate["template"]["enum"] == [*PROMPT_TEMPLATES, None]


def test_schema_evaluate_defaults_match_settings_dataclass():
    from dataclasses import fields

    from polarity.settings import EvalSettings

    props = load_schema()["properties"]["evaluate"]["properties"]
    defaults = EvalSettings()
    for f in fields(EvalSettings):
        assert props[f.name]["default"] == getattr(defaults, f.name), f.name


def test_schema_extraction_policies_match_the_reward_module():
    from polarity.reward import DEFAULT_EXTRACTION, EXTRACTIONS

    props = load_schema()["properties"]
    for section in ("train", "evaluate"):
        entry = props[section]["properties"]["extraction"]
        assert entry["enum"] == list(EXTRACTIONS), section
        assert entry["default"] == DEFAULT_EXTRACTION, section


def test_unknown_extraction_policy_fails_naming_the_key():
    config = default_config()
    config["train"]["extraction"] = "anywhere"
    with pytest.raises(ConfigError, match="train.extraction"):
        check_config(config)
