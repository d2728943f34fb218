"""Benchmark contamination: planted overlaps are found at their level and nothing else is."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from polarity.data.contamination import COLUMNS, contamination, jaccard, normalize, shingles
from polarity.data.rows import make_row, rows_to_frame, write_parquet

BENCHMARK = [
    "Find the value of $x$ such that $2x + 3 = 11$.",                       # 0: exact copy
    "What is the remainder when $7^{100}$ is divided by $5$?",              # 1: normalized copy
    r"Compute $\dfrac{1}{2} + \dfrac{1}{3}$.",                               # 2: normalized (LaTeX)
    "Let $a$ and $b$ be positive reals with $a + b = 10$. Find the maximum value of $ab$ "
    "over all such pairs of positive real numbers.",                        # 3: near duplicate
    "How many positive divisors does $3600$ have?",                         # 4: clean
    "A circle has radius $4$. What is its area?",                           # 5: clean
]
TRAINING = [
    "Find the value of $x$ such that $2x + 3 = 11$.",
    "what is the remainder when 7^{100} is divided by 5",
    r"Compute $\frac{1}{2}+\frac{1}{3}$ .",
    "Let $a$ and $b$ be positive reals with $a + b = 10$. Determine the maximum value of $ab$ "
    "over all such pairs of positive real numbers.",  # one word reworded
    "How many positive divisors does $3601$ have?",  # close but short: 1 of 5 shingles differs
    "Solve $y^2 = 9$.",
]


def test_normalize_and_shingles():
    assert normalize(r"Compute $\dfrac{1}{2} \, + \left( 3 \right)$ .") == r"compute\frac{1}{2}+(3)"
    assert normalize("What is 7+3?") == normalize("what is 7 + 3")
    assert jaccard(shingles("a b c d e f"), shingles("a b c d e f")) == 1.0
    # d -> x changes the three 3-grams that hold it; only (a, b, c) is shared: 1 of 7
    assert jaccard(shingles("a b c d e f"), shingles("a b c x e f")) == pytest.approx(1 / 7)
    assert len(shingles("What is 3+5-2+7?")) == 8  # what is 3 + 5 - 2 + 7 ?: 10 tokens
    assert shingles("one two") == frozenset([("one", "two")])  # shorter than a shingle


def test_planted_overlaps_are_counted_at_their_level():
    summary, matches = contamination({"train": TRAINING}, {"bench": BENCHMARK})
    (row,) = summary
    assert set(row) == set(COLUMNS)
    assert (row["problems"], row["exact"], row["normalized"]) == (6, 1, 3)
    by_index = {m["index"]: m for m in matches}
    assert by_index[0]["level"] == "exact"
    assert by_index[1]["level"] == by_index[2]["level"] == "normalized"
    assert by_index[3]["level"] == "near" and 0.7 <= by_index[3]["similarity"] < 1.0
    # a short question with one number changed shares 3 of its 6 shingles: not a near duplicate
    assert 4 not in by_index and 5 not in by_index
    assert row["near"] == 4 and row["frac_near"] == pytest.approx(4 / 6)


def test_disjoint_sets_have_no_matches():
    summary, matches = contamination({"t": ["What is 1+2?", "What is 3+4?"]},
                                     {"b": ["What is 5+6?", "What is 7+8?"]})
    assert (summary[0]["exact"], summary[0]["normalized"], summary[0]["near"]) == (0, 0, 0)
    assert matches == []


def test_cli_writes_summary_and_matches(tmp_path):
    def parquet(name, questions):
        rows = [make_row(data_source="x", question=q, answer="1", split="s", index=i)
                for i, q in enumerate(questions)]
        path = tmp_path / f"{name}.parquet"
        write_parquet(rows_to_frame(rows), path)
        return path

    train, bench = parquet("train", TRAINING), parquet("bench", BENCHMARK)
    out, matches = tmp_path / "c" / "summary.tsv", tmp_path / "c" / "matches.jsonl"
    subprocess.run([sys.executable, "-m", "polarity", "contamination", "--train", f"mine={train}",
                    "--benchmark", f"b={bench}", "--out", str(out), "--matches", str(matches)],
                   check=True, capture_output=True)
    table = pd.read_csv(out, sep="\t")
    assert table[["train_set", "benchmark", "exact", "normalized", "near"]].values.tolist() == [
        ["mine", "b", 1, 3, 4]]
    lines = [json.loads(x) for x in matches.read_text().splitlines()]
    assert [m["index"] for m in lines] == [0, 1, 2, 3]
