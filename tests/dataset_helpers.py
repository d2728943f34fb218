"""What the dataset tests share (hub training sets and benchmarks): fixture paths, the offline
switch, row helpers."""

from __future__ import annotations

import json
import os
from pathlib import Path

# Before anything imports `datasets` (it reads these at import time): never the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

import pandas as pd
import pyarrow.parquet as pq
import pytest

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures" / "benchmarks"
FIXTURE = {
    "math-test": FIXTURES / "math_test.parquet",
    "math500": FIXTURES / "math500.jsonl",
    "aime24": FIXTURES / "aime24.parquet",
    "aime25": FIXTURES / "aime25",
    "amc23": FIXTURES / "amc23.parquet",
    "minerva": FIXTURES / "minerva.jsonl",
    "olympiadbench": FIXTURES / "olympiadbench.parquet",
}
MATH_TRAIN = HERE / "fixtures" / "hub" / "math_train.parquet"

QWEN_SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
QWEN_SUFFIX = "\nPlease reason step by step, and put your final answer within \\boxed{}."


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def truths(frame: pd.DataFrame) -> list[str]:
    return [r["ground_truth"] for r in frame["reward_model"]]


def qwen(question: str) -> list[dict]:
    return [QWEN_SYSTEM, {"role": "user", "content": question + QWEN_SUFFIX}]


def source_rows(name: str) -> list[dict]:
    """The fixture's raw rows (all configs, in order), in the source's own schema."""
    path = FIXTURE[name]
    if path.is_dir():
        files = [path / "aime2025-I.jsonl", path / "aime2025-II.jsonl"]
    else:
        files = [path]
    rows = []
    for f in files:
        if f.suffix == ".parquet":
            rows += pq.read_table(f).to_pylist()
        else:
            rows += [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
    return rows


EXPECTED_REGISTRY = {
    # name: (hub id, configs, split, question, answer, rule, expected rows = problems)
    "math-test": ("DigitalLearningGmbH/MATH-lighteval", (None,), "test", "problem", "solution",
                  "last_boxed", 5000),
    "math500": ("HuggingFaceH4/MATH-500", (None,), "test", "problem", "answer", "field", 500),
    "aime24": ("HuggingFaceH4/aime_2024", (None,), "train", "problem", "answer", "field", 30),
    "aime25": ("opencompass/AIME2025", ("AIME2025-I", "AIME2025-II"), "test", "question",
               "answer", "field", 30),
    "amc23": ("math-ai/amc23", (None,), "test", "question", "answer", "field", 40),
    "minerva": ("math-ai/minervamath", (None,), "test", "question", "answer", "field", 272),
    "olympiadbench": ("Hothan/OlympiadBench", ("OE_TO_maths_en_COMP",), "train", "question",
                      "final_answer", "answer_list", 674),
}
