"""The default study is reproducible to the bit: the model stage and a short training, run twice
(once artificially slowed), write the same files byte for byte; the warm-up's wall-time budget
can fail the job, never change the model."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pandas as pd
import pytest

import polarity.backends.local.warmup as warmup_module
from polarity.backends.local.trainer import train
from polarity.settings import TrainSettings
from polarity.backends.local.warmup import make_tiny_model

from .helpers import SMALL_SPEC, make_data


def _warm(tmp_path, name, **spec):
    data = make_data(tmp_path / "data")
    rows = pd.read_parquet(data["warmup"])
    knobs = {"warmup_max_steps": 4, "eval_every": 2, "eval_problems": 8, "warmup_batch": 8,
             "target_accuracy": 1.0, **spec}
    spec = dataclasses.replace(SMALL_SPEC, **knobs)
    return make_tiny_model(rows, tmp_path / name, spec=spec, seed=0, max_new_tokens=8,
                           log=lambda m: None)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_exceeding_the_budget_is_an_error_and_saves_nothing(tmp_path):
    with pytest.raises(TimeoutError, match="tiny_model.warmup_max_seconds"):
        _warm(tmp_path, "model", warmup_max_seconds=1e-6)
    assert not (tmp_path / "model").exists()


def test_model_stage_is_byte_identical_and_its_stop_ignores_machine_speed(tmp_path, monkeypatch):
    """Warm up twice, the second run slowed (every batch 250 ms late): every file of the two model
    directories is equal byte for byte, and both stop at the same evaluation step."""
    fast = _warm(tmp_path, "fast", target_accuracy=0.0, warmup_max_steps=40)
    real_batch, calls = warmup_module.supervised_batch, []

    def slow_batch(*args, **kwargs):
        calls.append(1)
        time.sleep(0.25)
        return real_batch(*args, **kwargs)

    monkeypatch.setattr(warmup_module, "supervised_batch", slow_batch)
    slow = _warm(tmp_path, "slow", target_accuracy=0.0, warmup_max_steps=40)
    assert calls and slow["warmup_seconds"] >= 0.25 * len(calls)  # the slow-down took effect
    assert fast["warmup_steps"] == slow["warmup_steps"] == 2  # target 0: the first evaluation
    a, b = _files(tmp_path / "fast"), _files(tmp_path / "slow")
    assert {"model.safetensors", "tokenizer.json", "warmup.json", "config.json"} <= set(a)
    assert a == b
    saved = json.loads((tmp_path / "fast" / "warmup.json").read_text())
    assert "warmup_seconds" not in saved and all(set(h) == {"step", "loss", "accuracy"}
                                                 for h in saved["history"])


def test_the_budget_does_not_change_the_model(tmp_path):
    """Two budgets that are both met: the same files."""
    a = _warm(tmp_path, "a", warmup_max_seconds=600.0)
    b = _warm(tmp_path, "b", warmup_max_seconds=3600.0)
    assert a["warmup_steps"] == b["warmup_steps"] == 4  # ran to warmup_max_steps (target 1.0)
    assert [r["step"] for r in a["history"]] == [2, 4]
    assert _files(tmp_path / "a") == _files(tmp_path / "b")


def test_training_twice_gives_the_same_files(tmp_path):
    """A short NSR run (it learns from wrong answers: the base model solves almost nothing),
    twice, with different speed settings (save cadence, rollout dumps): metrics.jsonl and the final policy are equal byte for byte, and the run trained."""
    _warm(tmp_path, "base", warmup_max_steps=2, eval_every=2)
    data = make_data(tmp_path / "data")
    runs = {}
    for name, speed in (("a", {"save_every": 1}), ("b", {"save_every": 3, "dump_rollouts": False})):
        settings = TrainSettings.from_dict({
            "steps": 3, "prompts_per_step": 4, "rollouts_per_prompt": 4, "mini_batch_prompts": 2,
            "lr": 1e-3, "max_response_tokens": 8, **speed})
        out = tmp_path / name
        rows = train(model_path=tmp_path / "base", data_path=data["train"], algorithm="nsr",
                     params=None, settings=settings, seed=0, final_dir=out / "final",
                     metrics_path=out / "metrics.jsonl", state_dir=out / "state", log=lambda m: None)
        assert sum(r["optimizer_steps"] for r in rows) > 0  # it trained
        runs[name] = out
    assert (runs["a"] / "metrics.jsonl").read_bytes() == (runs["b"] / "metrics.jsonl").read_bytes()
    assert _files(runs["a"] / "final") == _files(runs["b"] / "final")
    assert _files(runs["a"] / "final") != _files(tmp_path / "base")  # the weights moved
    row = json.loads((runs["a"] / "metrics.jsonl").read_text().splitlines()[0])
    assert not any("seconds" in key for key in row)  # wall time lives in state/timing.jsonl
    assert len((runs["a"] / "state" / "timing.jsonl").read_text().splitlines()) == 3
