"""The tiny model's warm-up: its wall-time budget can fail the job, never change the model."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from polarity.model import make_tiny_model

from .helpers import SMALL_SPEC, make_data


def _warm(tmp_path, name, **spec):
    data = make_data(tmp_path / "data")
    rows = pd.read_parquet(data["warmup"])
    spec = dataclasses.replace(SMALL_SPEC, warmup_max_steps=4, eval_every=2, eval_problems=8,
                               warmup_batch=8, target_accuracy=1.0, **spec)
    return make_tiny_model(rows, tmp_path / name, spec=spec, seed=0, max_new_tokens=8,
                           log=lambda m: None)


def test_exceeding_the_budget_is_an_error_and_saves_nothing(tmp_path):
    with pytest.raises(TimeoutError, match="tiny_model.warmup_max_seconds"):
        _warm(tmp_path, "model", warmup_max_seconds=1e-6)
    assert not (tmp_path / "model").exists()


def test_the_budget_does_not_change_the_model(tmp_path):
    """Two budgets that are both met: the same steps, history and weights."""
    a = _warm(tmp_path, "a", warmup_max_seconds=600.0)
    b = _warm(tmp_path, "b", warmup_max_seconds=3600.0)
    assert a["warmup_steps"] == b["warmup_steps"] == 4  # ran to warmup_max_steps (target 1.0)
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(a["history"]) == strip(b["history"]) and [r["step"] for r in a["history"]] == [2, 4]
    wa, wb = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert json.loads((tmp_path / "a" / "warmup.json").read_text())["warmup_steps"] == 4
