"""`polarity train-verl --check`: compose, validate, check the data and write the launch script."""

from __future__ import annotations

import json

import pytest


from polarity.backends.verl.overrides import run_paths  # noqa: E402
from polarity.backends.verl.run import final_checkpoint, merger_config  # noqa: E402
from polarity.cli import main  # noqa: E402

from .helpers import make_data, make_untrained_model  # noqa: E402
from .verl_helpers import study_config  # noqa: E402


def _study(**train):
    study = study_config(backend="verl", algorithms=["a3po"], train=train)
    return {k: study[k] for k in ("study", "train", "verl", "algorithm_params")}


def test_check_writes_a_launch_script(tmp_path):
    data = make_data(tmp_path, n_warmup=64, n_train=16, n_test=4)
    model = make_untrained_model(tmp_path, data)
    run_dir = tmp_path / "runs" / "tiny" / "a3po" / "seed0"
    main(["train-verl", "--check", "--study", json.dumps(_study(max_prompt_tokens=64)),
          "--model-name", "tiny", "--model", str(model), "--data", str(data["train"]),
          "--val", str(data["test"]), "--algorithm", "a3po", "--seed", "0",
          "--run-dir", str(run_dir)])
    script = run_paths(run_dir)["script"].read_text()
    assert "verl.trainer.main_ppo" in script
    assert "export VERL_USE_EXTERNAL_MODULES=polarity.backends.verl.plugin" in script
    assert "POLARITY_VERL_RUN" in script and "VERL_FILE_LOGGER_PATH" in script
    assert "attempt-0001.jsonl" in script
    assert final_checkpoint(run_dir) == (0, None)


def test_check_refuses_prompts_that_verl_would_truncate(tmp_path):
    data = make_data(tmp_path, n_warmup=64, n_train=16, n_test=4)
    model = make_untrained_model(tmp_path, data)
    with pytest.raises(ValueError, match="max_prompt_length=4"):
        main(["train-verl", "--check", "--study", json.dumps(_study(max_prompt_tokens=4)),
              "--model-name", "tiny", "--model", str(model), "--data", str(data["train"]),
              "--algorithm", "a3po", "--seed", "0", "--run-dir", str(tmp_path / "run")])


def test_final_checkpoint_and_merger_config(tmp_path):
    ckpts = run_paths(tmp_path)["checkpoints"]
    (ckpts / "global_step_24" / "actor").mkdir(parents=True)
    (ckpts / "latest_checkpointed_iteration.txt").write_text("24")
    step, folder = final_checkpoint(tmp_path)
    assert step == 24 and folder.name == "global_step_24"
    config = merger_config(folder / "actor", tmp_path / "final")
    assert (config.operation, config.backend) == ("merge", "fsdp")
    assert config.local_dir == str(folder / "actor") and config.target_dir == str(tmp_path / "final")
    assert config.hf_model_config_path == str(folder / "actor" / "huggingface")  # verl's default
