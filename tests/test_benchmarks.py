"""Tests for the benchmarks: their registry entries (polarity.data.registry) and loaders
(polarity.data.hub).

The fixtures (tests/fixtures/benchmarks/, written by tests/fixtures/make_benchmark_fixtures.py)
are in each source's own schema. No test touches the network: the hub code path is exercised
with ``datasets.load_dataset`` replaced by a local stand-in.
"""

from __future__ import annotations

import json
import os
import shutil

# Before anything imports `datasets` (it reads these at import time): never the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from polarity import reward
from polarity.data.answers import join_answers
from polarity.data.hub import load_benchmark
from polarity.data.registry import ANSWER_RULES, BENCHMARKS, HUB_BENCHMARKS, Dataset
from polarity.data.rows import PROMPT_TEMPLATES, ROW_COLUMNS

from .dataset_helpers import _offline  # noqa: F401  (an autouse fixture)
from .dataset_helpers import EXPECTED_REGISTRY, FIXTURE, truths, qwen, source_rows
from .rows_helpers import indices, records


# --------------------------------------------------------------------------------------------
# The registry



def test_registry_entries():
    assert list(BENCHMARKS) == ["synthetic-arith-test", *EXPECTED_REGISTRY]
    assert HUB_BENCHMARKS == tuple(EXPECTED_REGISTRY)
    syn = BENCHMARKS["synthetic-arith-test"]
    assert (syn.name, syn.source, syn.hub_id, syn.is_hub, syn.role) == (
        "synthetic-arith-test", "synthetic", None, False, "benchmark"
    )
    for name, expected in EXPECTED_REGISTRY.items():
        b = BENCHMARKS[name]
        assert b.name == name and b.source == "hub" and b.is_hub and b.description
        got = (b.hub_id, b.configs, b.split, b.question_field, b.answer_field, b.answer_rule,
               b.expected_rows)
        assert got == expected, name
        assert b.template == "qwen-boxed" and b.template in PROMPT_TEMPLATES
        assert b.answer_rule in ANSWER_RULES
        assert b.role == "benchmark" and b.data_source == name and b.kind == "benchmark"
    with pytest.raises(AttributeError):
        BENCHMARKS["math500"].split = "train"  # frozen


def test_registry_rejects_incomplete_hub_entries():
    with pytest.raises(ValueError, match="hub_id"):
        Dataset("x", "benchmark", "d", "hub", configs=(None,), split="test", question_field="q",
                answer_field="a", answer_rule="field", template="plain", expected_rows=1)
    with pytest.raises(ValueError, match="source"):
        Dataset("x", "benchmark", "d", "somewhere")
    with pytest.raises(ValueError, match="answer_rule"):
        Dataset("x", "benchmark", "d", "hub", hub_id="h", configs=(None,), split="test",
                question_field="q", answer_field="a", answer_rule="first_boxed",
                template="plain", expected_rows=1)


def test_every_hub_benchmark_has_a_fixture_and_loads():
    assert set(FIXTURE) == set(HUB_BENCHMARKS)
    for name in HUB_BENCHMARKS:
        f = load_benchmark(name, source=FIXTURE[name])
        spec = BENCHMARKS[name]
        assert list(f.columns) == ROW_COLUMNS, name
        assert len(f) >= 3, name
        assert set(f["data_source"]) == {name}
        assert set(f["ability"]) == {"math"}
        assert all(isinstance(t, str) and t.strip() for t in truths(f)), name
        idx = indices(f)
        assert idx == sorted(idx) and len(set(idx)) == len(idx)
        for row in records(f):
            info = row["extra_info"]
            assert info["split"] == spec.split
            assert info["answer"] == row["reward_model"]["ground_truth"]
            assert row["reward_model"]["style"] == "rule"
            assert row["prompt"] == qwen(info["question"])
        stats = f.attrs["load_stats"]
        assert stats["dataset"] == name and stats["rows_out"] == len(f)
        assert stats["expected_rows"] == spec.expected_rows
        assert stats["rows_in"] == len(source_rows(name))


# --------------------------------------------------------------------------------------------
# Exact rows, per benchmark (hand-checked against make_benchmark_fixtures.py)


def test_math_test_rows():
    f = load_benchmark("math-test", source=FIXTURE["math-test"])
    # Row 2 has no \boxed{}; row 3 boxes a wrong guess first, the last box wins.
    assert indices(f) == [0, 1, 3, 4]
    assert truths(f) == [r"\frac{1}{2}", "6", "(3, -2)", r"5\sqrt{2}"]
    assert f.attrs["load_stats"]["no_answer_dropped"] == 1
    row = records(f)[0]
    q = "If $x = 2$ and $y = 4$, what is the value of $\\frac{x}{y}$?"
    assert row == {
        "data_source": "math-test",
        "prompt": qwen(q),
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": r"\frac{1}{2}"},
        "extra_info": {
            "split": "test",
            "index": 0,
            "question": q,
            "answer": r"\frac{1}{2}",
            "level": "Level 1",
            "type": "Algebra",
        },
    }
    assert [r["extra_info"]["type"] for r in records(f)] == [
        "Algebra", "Number Theory", "Algebra", "Prealgebra"
    ]


def test_math500_rows():
    f = load_benchmark("math500", source=FIXTURE["math500"])
    assert indices(f) == [0, 1, 3]  # row 2's answer is empty
    assert truths(f) == [r"\left( 5, \frac{\pi}{2} \right)", "7", r"\text{Sunday}"]
    assert f.attrs["load_stats"]["no_answer_dropped"] == 1
    info = records(f)[2]["extra_info"]
    assert info == {
        "split": "test",
        "index": 3,
        "question": "What day of the week is it $40$ days after a Tuesday?",
        "answer": r"\text{Sunday}",
        "subject": "Number Theory",
        "level": 2,
        "unique_id": "test/number_theory/404.json",
    }


def test_math500_without_optional_fields(tmp_path):
    rows = [{"problem": r["problem"], "answer": r["answer"]} for r in source_rows("math500")]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    f = load_benchmark("math500", source=tmp_path / "m.jsonl")
    assert truths(f) == truths(load_benchmark("math500", source=FIXTURE["math500"]))
    assert set(records(f)[0]["extra_info"]) == {"split", "index", "question", "answer"}


def test_aime24_integer_answers_become_text(tmp_path):
    assert pq.read_table(FIXTURE["aime24"]).schema.field("answer").type == pa.int64()
    f = load_benchmark("aime24", source=FIXTURE["aime24"])
    assert truths(f) == ["16", "33", "376"]
    rows = records(f)
    assert [r["extra_info"]["id"] for r in rows] == [60, 61, 75]
    assert rows[1]["extra_info"]["split"] == "train" and rows[1]["extra_info"]["index"] == 1
    assert rows[1]["extra_info"]["url"].endswith("2024_AIME_I_Problems/Problem_2")
    # The same rows with string answers (as a newer hub revision stores them) load the same.
    as_text = [{**r, "answer": str(r["answer"])} for r in source_rows("aime24")]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in as_text))
    assert records(load_benchmark("aime24", source=tmp_path / "a.jsonl")) == rows


def test_amc23_float_answers(tmp_path):
    assert pq.read_table(FIXTURE["amc23"]).schema.field("answer").type == pa.float64()
    f = load_benchmark("amc23", source=FIXTURE["amc23"])
    assert truths(f) == ["27", "36", "45", "8"]  # 27.0 -> "27"
    assert [r["extra_info"]["id"] for r in records(f)] == [0, 1, 2, 3]
    rows = source_rows("amc23")
    rows[0]["answer"], rows[1]["answer"], rows[2]["answer"] = 2.5, float("nan"), None
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "amc.parquet")
    g = load_benchmark("amc23", source=tmp_path / "amc.parquet")
    assert truths(g) == ["2.5", "8"]
    assert g.attrs["load_stats"]["no_answer_dropped"] == 2


def test_minerva_rows():
    f = load_benchmark("minerva", source=FIXTURE["minerva"])
    assert truths(f) == ["1.6", "315", "4.0e-19", "3 e^{-2 t}"]
    assert indices(f) == [0, 1, 2, 3]
    assert set(records(f)[0]["extra_info"]) == {"split", "index", "question", "answer"}


def test_olympiadbench_rows_and_multi_answer():
    f = load_benchmark("olympiadbench", source=FIXTURE["olympiadbench"])
    assert indices(f) == [0, 1, 2, 4]  # row 3's final_answer is an empty list
    assert truths(f) == [r"\frac{1}{2}", "3, 5", "(2,3)", r"\sqrt{10}"]
    assert f.attrs["load_stats"]["no_answer_dropped"] == 1
    row = records(f)[1]
    q = "Find all positive integers $n$ such that $n^2 - 8n + 15 = 0$."
    assert row["prompt"] == qwen(q)
    assert row["extra_info"] == {
        "split": "train",
        "index": 1,
        "question": q,
        "answer": "3, 5",
        "id": 1611,
        "final_answer": ["$3$", "$5$"],
        "answer_type": "Numerical",
        "is_multiple_answer": True,
        "unit": None,
        "subfield": "Number Theory",
    }
    assert [r["extra_info"]["id"] for r in records(f)] == [1606, 1611, 1620, 2750]


@pytest.mark.parametrize(
    "values, expected",
    [
        (["$\\frac{1}{2}$"], r"\frac{1}{2}"),
        (["$3$", "$5$"], "3, 5"),
        ([" $(2,3)$ ", "$(3,2)$"], "(2,3), (3,2)"),
        (["$$x^2$$"], "x^2"),
        ([r"\(n-1\)"], "n-1"),
        ([r"\[2^{n}\]"], "2^{n}"),
        (["7"], "7"),
        (["$x=1$ or $x=2$"], "$x=1$ or $x=2$"),  # several math spans: kept whole
        (["", "$4$", "$ $"], "4"),
        ("$5$", "5"),  # a bare string is a one-answer list
        ([], None),
        (["", "$$"], None),
        (None, None),
    ],
)
def test_join_answers(values, expected):
    assert join_answers(values) == expected


def test_multi_answer_ground_truth_is_checked_as_a_set():
    # The joined ground truth accepts every order of all the answers, not a part of them.
    assert reward.score("So $n \\in \\{3, 5\\}$: \\boxed{3, 5}", "3, 5") == 1.0
    assert reward.score("\\boxed{5, 3}", "3, 5") == 1.0
    assert reward.score("\\boxed{3}", "3, 5") == 0.0
    assert reward.score("\\boxed{3, 5, 7}", "3, 5") == 0.0


# --------------------------------------------------------------------------------------------
# AIME 2025: two configs


def test_aime25_concatenates_configs_in_order():
    f = load_benchmark("aime25", source=FIXTURE["aime25"])
    assert truths(f) == ["49", "15", "7", "120", "587", "023"]
    assert indices(f) == [0, 1, 2, 3, 4, 5]  # continues across the configs
    infos = [r["extra_info"] for r in records(f)]
    assert [(e["config"], e["config_index"]) for e in infos] == [
        ("AIME2025-I", 0), ("AIME2025-I", 1), ("AIME2025-I", 2),
        ("AIME2025-II", 0), ("AIME2025-II", 1), ("AIME2025-II", 2),
    ]
    assert infos[3]["question"].startswith("Find the number of subsets")
    stats = f.attrs["load_stats"]
    assert stats["rows_in_by_config"] == {"AIME2025-I": 3, "AIME2025-II": 3}
    # limit counts across the concatenation
    g = load_benchmark("aime25", source=FIXTURE["aime25"], limit=4)
    assert [e["config"] for e in g["extra_info"]] == ["AIME2025-I"] * 3 + ["AIME2025-II"]


def test_aime25_local_layouts_agree(tmp_path):
    expected = records(load_benchmark("aime25", source=FIXTURE["aime25"]))
    # Sub-directories named for the configs, parquet files named for the split inside.
    sub = tmp_path / "sub"
    for config, fname in (("AIME2025-I", "aime2025-I.jsonl"), ("AIME2025-II", "aime2025-II.jsonl")):
        rows = [json.loads(x) for x in (FIXTURE["aime25"] / fname).read_text().splitlines()]
        (sub / config).mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows), sub / config / "test-00000-of-00001.parquet")
    assert records(load_benchmark("aime25", source=sub)) == expected
    # Files named exactly for the configs, other files beside them ignored; string path.
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copy(FIXTURE["aime25"] / "aime2025-I.jsonl", flat / "AIME2025-I.jsonl")
    shutil.copy(FIXTURE["aime25"] / "aime2025-II.jsonl", flat / "AIME2025-II.jsonl")
    (flat / "README.md").write_text("AIME 2025\n")
    assert records(load_benchmark("aime25", source=str(flat))) == expected


def test_aime25_configs_with_different_answer_types(tmp_path):
    # One config's answers as integers, the other's as strings: still one benchmark.
    d = tmp_path / "mixed"
    d.mkdir()
    first = FIXTURE["aime25"] / "aime2025-I.jsonl"
    rows = [json.loads(x) for x in first.read_text().splitlines()]
    pq.write_table(
        pa.Table.from_pylist([{**r, "answer": int(r["answer"])} for r in rows]),
        d / "AIME2025-I.parquet",
    )
    shutil.copy(FIXTURE["aime25"] / "aime2025-II.jsonl", d / "aime2025-II.jsonl")
    assert truths(load_benchmark("aime25", source=d)) == ["49", "15", "7", "120", "587", "023"]


def test_aime25_bad_local_layouts(tmp_path):
    with pytest.raises(ValueError, match=r"'aime25'.*directory"):
        load_benchmark("aime25", source=FIXTURE["aime25"] / "aime2025-I.jsonl")
    half = tmp_path / "half"
    half.mkdir()
    shutil.copy(FIXTURE["aime25"] / "aime2025-I.jsonl", half / "aime2025-I.jsonl")
    with pytest.raises(ValueError, match=r"'aime25'.*no entry for config 'AIME2025-II'"):
        load_benchmark("aime25", source=half)
    twice = tmp_path / "twice"
    shutil.copytree(FIXTURE["aime25"], twice)
    shutil.copy(twice / "aime2025-I.jsonl", twice / "AIME2025-I.parquet.jsonl")  # not a match
    pq.write_table(pa.Table.from_pylist([{"question": "q", "answer": "1"}]),
                   twice / "AIME2025-I.parquet")
    with pytest.raises(ValueError, match=r"2 entries .* for config 'AIME2025-I'"):
        load_benchmark("aime25", source=twice)
    with pytest.raises(FileNotFoundError, match="aime25"):
        load_benchmark("aime25", source=tmp_path / "missing")
