"""The benchmark loaders' hub code path, options and errors, and the parquet they write
(polarity.data.hub); the registry and exact rows are test_benchmarks.py."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

# Before anything imports `datasets` (it reads these at import time): never the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

import pandas as pd
import pytest

from polarity import reward
from polarity.data import hub, registry
from polarity.data.hub import load_benchmark, load_hub_rows, load_train_dataset, prepare_benchmark
from polarity.data.registry import BENCHMARKS, TRAIN_SETS, get_benchmark
from polarity.data.rows import ROW_COLUMNS

from .dataset_helpers import _offline  # noqa: F401  (an autouse fixture)
from .dataset_helpers import EXPECTED_REGISTRY, FIXTURE, MATH_TRAIN, truths, source_rows
from .rows_helpers import indices, records


# --------------------------------------------------------------------------------------------
# The hub code path (a stand-in for datasets.load_dataset)


def _fake_hub(monkeypatch, tables: dict):
    import datasets

    calls = []

    def fake_load_dataset(path, name=None, *, split=None, **kw):
        calls.append((path, name, split))
        return datasets.Dataset.from_list(tables[(path, name, split)])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    return calls


def test_hub_path_single_config(monkeypatch, caplog):
    calls = _fake_hub(monkeypatch, {
        ("Hothan/OlympiadBench", "OE_TO_maths_en_COMP", "train"): source_rows("olympiadbench"),
        ("DigitalLearningGmbH/MATH-lighteval", None, "test"): source_rows("math-test"),
    })
    with caplog.at_level(logging.WARNING, logger="polarity.data.hub"):
        f = load_benchmark("olympiadbench")
    assert calls == [("Hothan/OlympiadBench", "OE_TO_maths_en_COMP", "train")]
    assert records(f) == records(load_benchmark("olympiadbench", source=FIXTURE["olympiadbench"]))
    assert f.attrs["load_stats"]["source"] == "hub:Hothan/OlympiadBench"
    # 5 rows where the full split has 674: the loader says so.
    assert "gave 5 rows, expected 674" in caplog.text
    g = load_benchmark("math-test", limit=2)
    assert calls[-1] == ("DigitalLearningGmbH/MATH-lighteval", None, "test")
    assert truths(g) == [r"\frac{1}{2}", "6"]


def test_hub_path_two_configs(monkeypatch):
    def jsonl(name):
        return [json.loads(x) for x in (FIXTURE["aime25"] / name).read_text().splitlines()]

    calls = _fake_hub(monkeypatch, {
        ("opencompass/AIME2025", "AIME2025-I", "test"): jsonl("aime2025-I.jsonl"),
        ("opencompass/AIME2025", "AIME2025-II", "test"): jsonl("aime2025-II.jsonl"),
    })
    f = load_benchmark("aime25")
    assert calls == [
        ("opencompass/AIME2025", "AIME2025-I", "test"),
        ("opencompass/AIME2025", "AIME2025-II", "test"),
    ]
    assert records(f) == records(load_benchmark("aime25", source=FIXTURE["aime25"]))


# --------------------------------------------------------------------------------------------
# Options and errors


def test_template_override():
    plain_rows = records(load_benchmark("minerva", source=FIXTURE["minerva"], template="plain"))
    q = plain_rows[1]["extra_info"]["question"]
    assert plain_rows[1]["prompt"] == [{"role": "user", "content": q}]
    verl = records(load_benchmark("aime25", source=FIXTURE["aime25"], template="verl-math"))
    q = verl[0]["extra_info"]["question"]
    assert verl[0]["prompt"] == [
        {
            "role": "user",
            "content": q
            + " Let's think step by step and output the final answer within \\boxed{}.",
        }
    ]
    # Only the prompt changes.
    default = records(load_benchmark("aime25", source=FIXTURE["aime25"]))
    assert [{k: v for k, v in r.items() if k != "prompt"} for r in verl] == [
        {k: v for k, v in r.items() if k != "prompt"} for r in default
    ]
    with pytest.raises(KeyError, match="qwen-boxed"):
        load_benchmark("minerva", source=FIXTURE["minerva"], template="nope")


def test_limit():
    f = load_benchmark("olympiadbench", source=FIXTURE["olympiadbench"], limit=3)
    assert indices(f) == [0, 1, 2]
    assert f.attrs["load_stats"]["limit_dropped"] == 1
    assert len(load_benchmark("math500", source=FIXTURE["math500"], limit=10)) == 3
    empty = load_benchmark("amc23", source=FIXTURE["amc23"], limit=0)
    assert len(empty) == 0 and list(empty.columns) == ROW_COLUMNS
    with pytest.raises(ValueError, match="limit"):
        load_benchmark("amc23", source=FIXTURE["amc23"], limit=-1)


def test_unknown_benchmark_lists_known_names():
    with pytest.raises(KeyError) as err:
        load_benchmark("gsm8k", source=FIXTURE["minerva"])
    msg = str(err.value)
    assert "gsm8k" in msg
    for name in BENCHMARKS:
        assert name in msg
    with pytest.raises(KeyError, match="aime24"):
        get_benchmark("aime2024")
    with pytest.raises(KeyError, match="math500"):
        prepare_benchmark("nope", "/nonexistent/x.parquet")


def test_synthetic_benchmark_has_no_loader():
    with pytest.raises(ValueError, match=r"'synthetic-arith-test'.*synthetic data stage"):
        load_benchmark("synthetic-arith-test")


def _drop_field(name: str, field: str, tmp_path: Path) -> Path:
    rows = [{k: v for k, v in r.items() if k != field} for r in source_rows(name)]
    out = tmp_path / f"{name}.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


@pytest.mark.parametrize("name", [n for n in EXPECTED_REGISTRY if n != "aime25"])
@pytest.mark.parametrize("which", ["question", "answer"])
def test_missing_required_field(tmp_path, name, which):
    b = BENCHMARKS[name]
    field = b.question_field if which == "question" else b.answer_field
    src = _drop_field(name, field, tmp_path)
    with pytest.raises(ValueError, match=rf"benchmark '{name}'.*required field '{field}'"):
        load_benchmark(name, source=src)


def test_missing_required_extra_fields(tmp_path):
    with pytest.raises(ValueError, match=r"'math-test'.*'level'"):
        load_benchmark("math-test", source=_drop_field("math-test", "level", tmp_path))
    with pytest.raises(ValueError, match=r"'olympiadbench'.*'id'"):
        load_benchmark("olympiadbench", source=_drop_field("olympiadbench", "id", tmp_path))


def test_missing_field_in_one_config(tmp_path):
    d = tmp_path / "aime25"
    shutil.copytree(FIXTURE["aime25"], d)
    rows = [json.loads(x) for x in (d / "aime2025-II.jsonl").read_text().splitlines()]
    (d / "aime2025-II.jsonl").write_text(
        "".join(json.dumps({"problem": r["question"], "answer": r["answer"]}) + "\n" for r in rows)
    )
    with pytest.raises(
        ValueError, match=r"benchmark 'aime25'.*'question' \(config 'AIME2025-II'\)"
    ):
        load_benchmark("aime25", source=d)


# --------------------------------------------------------------------------------------------
# prepare_benchmark, and one loader core for training sets and benchmarks


def test_prepare_benchmark_writes_parquet(tmp_path):
    out = tmp_path / "data" / "olympiadbench.parquet"
    f = prepare_benchmark("olympiadbench", out, source=FIXTURE["olympiadbench"], limit=3)
    assert out.exists() and not (out.parent / (out.name + ".tmp")).exists()
    back = pd.read_parquet(out)
    assert list(back.columns) == ROW_COLUMNS
    assert records(back) == records(f)
    assert truths(back) == [r"\frac{1}{2}", "3, 5", "(2,3)"]
    g = prepare_benchmark("aime25", str(tmp_path / "aime25.parquet"), source=FIXTURE["aime25"],
                          template="plain")
    assert records(pd.read_parquet(tmp_path / "aime25.parquet")) == records(g)
    first = records(g)[0]
    assert first["prompt"] == [{"role": "user", "content": first["extra_info"]["question"]}]


@pytest.mark.parametrize("name", list(EXPECTED_REGISTRY))
def test_parquet_round_trip(tmp_path, name):
    f = load_benchmark(name, source=FIXTURE[name])
    out = tmp_path / f"{name}.parquet"
    prepare_benchmark(name, out, source=FIXTURE[name])
    assert records(pd.read_parquet(out)) == records(f)


def test_benchmarks_and_training_sets_share_the_loader():
    # MATH test and MATH train have one schema: the same file gives the same rows but for the
    # name and the split, through load_benchmark and load_train_dataset alike.
    bench = records(load_benchmark("math-test", source=MATH_TRAIN))
    train = records(load_train_dataset("math", source=MATH_TRAIN, template="qwen-boxed"))
    assert len(bench) == len(train) == 32
    for b, t in zip(bench, train):
        assert b["data_source"] == "math-test" and t["data_source"] == "math"
        assert b["extra_info"]["split"] == "test" and t["extra_info"]["split"] == "train"
        assert b["prompt"] == t["prompt"] and b["reward_model"] == t["reward_model"]
        assert {**b["extra_info"], "split": "train"} == t["extra_info"]
    spec = BENCHMARKS["minerva"]
    direct = load_hub_rows(spec, source=FIXTURE["minerva"])
    assert records(direct) == records(load_benchmark("minerva", source=FIXTURE["minerva"]))
    assert TRAIN_SETS["math"].kind == "dataset"
    with pytest.raises(ValueError, match=r"'synthetic-arith-test'.*synthetic data stage"):
        load_hub_rows(BENCHMARKS["synthetic-arith-test"])


# --------------------------------------------------------------------------------------------
# The ground truths are checkable by math-verify


def _all_fixture_truths() -> list[tuple[str, str]]:
    return [
        (name, gt)
        for name in EXPECTED_REGISTRY
        for gt in truths(load_benchmark(name, source=FIXTURE[name]))
    ]


@pytest.mark.parametrize("name, ground_truth", _all_fixture_truths())
def test_ground_truth_is_checkable(name, ground_truth):
    response = "Working through the problem carefully, the answer is \\boxed{" + ground_truth + "}."
    assert reward.score(response, ground_truth) == 1.0


def test_module_exports():
    for name in ("BENCHMARKS", "HUB_BENCHMARKS", "Dataset", "get_benchmark"):
        assert name in registry.__all__
    for name in ("load_benchmark", "prepare_benchmark"):
        assert name in hub.__all__
