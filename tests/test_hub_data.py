"""Tests for polarity.data.hub: hub training sets -> verl rows, on tiny local fixtures.

(Benchmarks: tests/test_benchmarks.py; the registry against the schema and the rules:
tests/test_dataset_registry.py.)

The fixtures (tests/fixtures/hub/, written by tests/fixtures/make_hub_fixtures.py) are in each
source's own schema. No test touches the network: the hub code path is exercised with
``datasets.load_dataset`` replaced by a local stand-in.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

# Before anything imports `datasets` (it reads these at import time): never the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from polarity.data import answers as answers_module
from polarity.data import hub
from polarity.data.answers import last_boxed
from polarity.data.hub import load_train_dataset, stratified_sample_indices
from polarity.data.registry import TRAIN_SETS
from polarity.data.rows import PROMPT_TEMPLATES, ROW_COLUMNS, write_parquet

from .dataset_helpers import _offline  # noqa: F401  (an autouse fixture)
from .dataset_helpers import truths as answers
from .rows_helpers import indices, records

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hub"
MATH = FIXTURES / "math_train.parquet"
DAPO = FIXTURES / "dapo_math_17k.jsonl"
DEEPSCALER = FIXTURES / "deepscaler.jsonl"

DAPO_PREFIX = (
    "Solve the following math problem step by step. The last line of your response should be "
    "of the form Answer: $Answer (without quotes) where $Answer is the answer to the problem."
    "\n\n"
)
DAPO_SUFFIX = '\n\nRemember to put your answer on its own line after "Answer:".'



# --------------------------------------------------------------------------------------------
# last_boxed: MATH's ground truths use the scorer's extractor (polarity.reward), verl's
# right-most-box rule: the box that opens last, None when it is unclosed or empty.


@pytest.mark.parametrize(
    "text, expected",
    [
        (r"so $\boxed{\frac{1}{2}}$.", r"\frac{1}{2}"),
        (r"$x \cdot x = \boxed{x^{2}}$", "x^{2}"),
        (r"guess $\boxed{3}$, then $\boxed{4}$", "4"),
        (r"$\fbox{9}$", "9"),
        (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),
        (r"\boxed{\text{(C)}}", r"\text{(C)}"),
        (r"\boxed {5}", "5"),
        (r"\boxed{ 7 }", "7"),
        (r"\boxed{\boxed{1}}", "1"),
        # The last box is unclosed: no answer (an earlier complete box does not stand in).
        (r"\boxed{2} and a truncated \boxed{5", None),
        (r"\\{\boxed{6}}", "6"),
        (r"\boxed{a}\fbox{b}", "b"),
        ("no box here", None),
        ("", None),
        (r"\boxed{5", None),
        (r"\boxed 5", None),
        (r"\boxeds{3}", None),
        (r"\boxed{}", None),  # empty: no answer
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


def test_last_boxed_is_the_scorers():
    from polarity import reward

    assert last_boxed is reward.last_boxed


def test_last_boxed_is_linear_enough():
    # Many unclosed boxes and deep nesting: a quadratic scan would take far longer.
    text = r"\boxed{" * 20000 + "x" + "}" * 5 + r" \boxed{\frac{a}{b}}" * 20000
    assert last_boxed(text) == r"\frac{a}{b}"


# --------------------------------------------------------------------------------------------
# The registry


def test_registry_entries():
    assert set(TRAIN_SETS) == {"math", "math-stratified-25", "dapo-math-17k", "deepscaler"}
    m = TRAIN_SETS["math"]
    assert (m.hub_id, m.configs, m.split, m.question_field) == (
        "DigitalLearningGmbH/MATH-lighteval",
        (None,),
        "train",
        "problem",
    )
    assert m.answer_rule == "last_boxed" and m.template == "verl-math"
    assert TRAIN_SETS["math-stratified-25"].hub_id == m.hub_id
    d = TRAIN_SETS["dapo-math-17k"]
    assert d.hub_id == "BytedTsinghua-SIA/DAPO-Math-17k" and d.template == "plain"
    assert d.answer_field == "reward_model.ground_truth" and d.dedup_on_question
    s = TRAIN_SETS["deepscaler"]
    assert (s.hub_id, s.answer_field, s.template) == (
        "agentica-org/DeepScaleR-Preview-Dataset",
        "answer",
        "qwen-boxed",
    )
    for name, spec in TRAIN_SETS.items():
        assert spec.name == name and spec.data_source == name
        assert spec.role == "train" and spec.is_hub and spec.kind == "dataset"
        assert spec.template in PROMPT_TEMPLATES
    with pytest.raises(AttributeError):
        m.split = "test"  # frozen


# --------------------------------------------------------------------------------------------
# MATH


def test_math_fields_and_answers():
    f = load_train_dataset("math", source=MATH)
    assert list(f.columns) == ROW_COLUMNS
    # 35 rows; rows 3 (no box), 7 (unclosed box) and 8 (empty box) are dropped.
    assert len(f) == 32
    assert indices(f)[:7] == [0, 1, 2, 4, 5, 6, 9]
    assert indices(f) == [0, 1, 2, 4, 5, 6] + list(range(9, 35))
    assert answers(f)[:6] == [r"\frac{1}{2}", "x^{2}", "4", "9", r"\{1, 2\}", r"\text{(C)}"]
    # Filler k at row 9 + k: "What is a + b" with a = 3 + 2k, b = 11 + 5k.
    assert answers(f)[6:9] == ["14", "21", "28"]
    stats = f.attrs["load_stats"]
    assert stats["rows_in"] == 35 and stats["no_answer_dropped"] == 3 and stats["rows_out"] == 32

    row = records(f)[0]
    q = "Compute $\\frac{2}{4}$ in lowest terms."
    assert row["data_source"] == "math" and row["ability"] == "math"
    assert row["prompt"] == [
        {
            "role": "user",
            "content": q
            + " Let's think step by step and output the final answer within \\boxed{}.",
        }
    ]
    assert row["reward_model"] == {"style": "rule", "ground_truth": r"\frac{1}{2}"}
    assert row["extra_info"] == {
        "split": "train",
        "index": 0,
        "question": q,
        "answer": r"\frac{1}{2}",
        "level": "Level 1",
        "type": "Algebra",
    }
    assert records(f)[3]["extra_info"]["type"] == "Precalculus"


def test_math_template_parameter_qwen_boxed():
    f = load_train_dataset("math", source=MATH, template="qwen-boxed", limit=1)
    assert records(f)[0]["prompt"] == [
        {"role": "system", "content": "You are a helpful assistant."},
        {
            "role": "user",
            "content": "Compute $\\frac{2}{4}$ in lowest terms.\n"
            "Please reason step by step, and put your final answer within \\boxed{}.",
        },
    ]


def test_limit_keeps_first_rows():
    assert indices(load_train_dataset("math", source=MATH, limit=5)) == [0, 1, 2, 4, 5]
    assert indices(load_train_dataset("dapo-math-17k", source=DAPO, limit=2)) == [0, 1]
    empty = load_train_dataset("math", source=MATH, limit=0)
    assert len(empty) == 0 and list(empty.columns) == ROW_COLUMNS
    with pytest.raises(ValueError, match="limit"):
        load_train_dataset("math", source=MATH, limit=-1)


# --------------------------------------------------------------------------------------------
# The stratified subset

# Strata sizes after the drop (hand-counted in make_hub_fixtures.py) -> max(1, round(size/4)).
EXPECTED_STRATA = {
    ("Algebra", "Level 1"): 2,  # 8 -> 2
    ("Algebra", "Level 2"): 2,  # 6 -> round(1.5) = 2
    ("Geometry", "Level 3"): 2,  # 10 -> round(2.5) = 2 (halves to even)
    ("Number Theory", "Level 5"): 1,  # 2 -> round(0.5) = 0 -> at least 1
    ("Precalculus", "Level 4"): 1,  # 1 -> round(0.25) = 0 -> at least 1
    ("Counting & Probability", "Level 5"): 1,  # 5 -> round(1.25) = 1
}


def strata_counts(frame):
    counts: dict = {}
    for e in frame["extra_info"]:
        key = (e["type"], e["level"])
        counts[key] = counts.get(key, 0) + 1
    return counts


def test_stratified_sizes_per_stratum():
    full = load_train_dataset("math", source=MATH)
    assert strata_counts(full) == {
        ("Algebra", "Level 1"): 8,
        ("Algebra", "Level 2"): 6,
        ("Geometry", "Level 3"): 10,
        ("Number Theory", "Level 5"): 2,
        ("Precalculus", "Level 4"): 1,
        ("Counting & Probability", "Level 5"): 5,
    }
    for seed in range(5):
        sub = load_train_dataset("math-stratified-25", source=MATH, seed=seed)
        assert list(sub.columns) == ROW_COLUMNS
        assert strata_counts(sub) == EXPECTED_STRATA
        assert len(sub) == 9
        idx = indices(sub)
        assert idx == sorted(idx) and set(idx) <= set(indices(full))
        assert set(sub["data_source"]) == {"math-stratified-25"}
        assert sub.attrs["load_stats"]["subset_dropped"] == 23


def test_stratified_deterministic_and_seeded():
    a = load_train_dataset("math-stratified-25", source=MATH, seed=0)
    b = load_train_dataset("math-stratified-25", source=MATH, seed=0)
    c = load_train_dataset("math-stratified-25", source=MATH, seed=1)
    assert records(a) == records(b)
    assert indices(a) != indices(c)
    # A regression pin of the documented rule (blake2b of "seed\x1fproblem" per stratum).
    assert indices(a) == [2, 4, 5, 9, 10, 11, 17, 18, 30]
    # The rows themselves are those of "math" (same answers), only the data_source differs.
    full = {r["extra_info"]["index"]: r for r in records(load_train_dataset("math", source=MATH))}
    for r in records(a):
        assert r["reward_model"] == full[r["extra_info"]["index"]]["reward_model"]


def test_stratified_independent_of_row_order(tmp_path):
    table = pq.read_table(MATH)
    reversed_ = table.take(pa.array(list(range(table.num_rows - 1, -1, -1))))
    pq.write_table(reversed_, tmp_path / "rev.parquet")
    a = load_train_dataset("math-stratified-25", source=MATH, seed=3)
    b = load_train_dataset("math-stratified-25", source=tmp_path / "rev.parquet", seed=3)
    n = table.num_rows
    assert sorted(indices(a)) == sorted(n - 1 - i for i in indices(b))


def test_stratified_sample_indices_rule():
    strata, keys = [], []
    for size in (1, 2, 4, 6, 10, 14):
        strata += [size] * size
        keys += [f"s{size}-{i}" for i in range(size)]
    chosen = stratified_sample_indices(strata, keys, fraction=0.25, seed=0)
    got: dict = {}
    for j in chosen:
        got[strata[j]] = got.get(strata[j], 0) + 1
    assert got == {1: 1, 2: 1, 4: 1, 6: 2, 10: 2, 14: 4}  # round(3.5) = 4
    assert chosen == sorted(chosen)
    assert chosen == stratified_sample_indices(strata, keys, fraction=0.25, seed=0)
    with pytest.raises(ValueError):
        stratified_sample_indices(strata, keys, fraction=0.0)


# --------------------------------------------------------------------------------------------
# DAPO-Math-17k


def test_dapo_dedup_first_occurrence():
    f = load_train_dataset("dapo-math-17k", source=DAPO)
    assert list(f.columns) == ROW_COLUMNS
    assert len(f) == 6
    assert indices(f) == [0, 1, 3, 6, 8, 11]
    # Row 20 repeats problem 2 with ground truth "3": the first occurrence's "2" wins.
    assert answers(f) == ["9", "55", "2", "12", "23", "10"]
    stats = f.attrs["load_stats"]
    assert stats["rows_in"] == 30
    assert stats["duplicates_dropped"] == 24
    assert stats["dedup_conflicting_answers"] == 1

    rows = records(f)
    first = rows[0]
    content = DAPO_PREFIX + "Find the number of positive divisors of 36." + DAPO_SUFFIX
    assert first["prompt"] == [{"role": "user", "content": content}]  # kept as given
    assert first["data_source"] == "dapo-math-17k" and first["ability"] == "math"
    assert first["reward_model"] == {"style": "rule", "ground_truth": "9"}
    assert first["extra_info"]["question"] == content
    assert [r["extra_info"]["source_index"] for r in rows] == [
        "dapo-0000-0",
        "dapo-0001-1",
        "dapo-0003-2",
        "dapo-0006-3",
        "dapo-0008-4",
        "dapo-0011-5",
    ]
    assert {r["extra_info"]["source_data_source"] for r in rows} == {"math_dapo"}
    assert len({r["prompt"][0]["content"] for r in rows}) == 6


def test_dapo_from_parquet_matches_jsonl(tmp_path):
    lines = [json.loads(x) for x in DAPO.read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist(lines), tmp_path / "train.parquet")
    a = load_train_dataset("dapo-math-17k", source=DAPO)
    b = load_train_dataset("dapo-math-17k", source=tmp_path / "train.parquet")
    assert records(a) == records(b)


# --------------------------------------------------------------------------------------------
# DeepScaleR


def test_deepscaler_fields_and_template():
    f = load_train_dataset("deepscaler", source=DEEPSCALER)
    assert list(f.columns) == ROW_COLUMNS
    assert indices(f) == [0, 1, 2, 3, 5]  # row 4 has an empty answer
    assert answers(f) == [r"\frac{\sqrt{3}}{2}", "6", "-2, 2", "10", "1"]
    assert f.attrs["load_stats"]["no_answer_dropped"] == 1
    row = records(f)[0]
    assert row["prompt"] == [
        {"role": "system", "content": "You are a helpful assistant."},
        {
            "role": "user",
            "content": "Compute $\\sin 60^\\circ$.\n"
            "Please reason step by step, and put your final answer within \\boxed{}.",
        },
    ]
    assert row["data_source"] == "deepscaler"
    assert row["extra_info"] == {
        "split": "train",
        "index": 0,
        "question": "Compute $\\sin 60^\\circ$.",
        "answer": r"\frac{\sqrt{3}}{2}",
    }
    plain_tpl = load_train_dataset("deepscaler", source=DEEPSCALER, template="plain", limit=1)
    assert records(plain_tpl)[0]["prompt"] == [
        {"role": "user", "content": "Compute $\\sin 60^\\circ$."}
    ]


# --------------------------------------------------------------------------------------------
# Round trip, sources, hub path


@pytest.mark.parametrize(
    "name, source",
    [
        ("math", MATH),
        ("math-stratified-25", MATH),
        ("dapo-math-17k", DAPO),
        ("deepscaler", DEEPSCALER),
    ],
)
def test_parquet_round_trip(tmp_path, name, source):
    f = load_train_dataset(name, source=source)
    path = tmp_path / "out" / f"{name}.parquet"
    write_parquet(f, path)
    back = pd.read_parquet(path)
    assert list(back.columns) == ROW_COLUMNS
    assert records(back) == records(f)


def _math_rows() -> list[dict]:
    return pq.read_table(MATH).to_pylist()


def test_local_source_kinds_agree(tmp_path):
    import datasets

    expected = records(load_train_dataset("math", source=MATH))
    rows = _math_rows()

    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "b.json").write_text(json.dumps(rows))
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(rows), "test": datasets.Dataset.from_list(rows[:3])}
    ).save_to_disk(str(tmp_path / "saved_dict"))
    pdir = tmp_path / "pq" / "data"
    pdir.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows[:20]), pdir / "train-00000-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(rows[20:]), pdir / "train-00001-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(rows[:4]), pdir / "test-00000-of-00001.parquet")

    for src in ["a.jsonl", "b.json", "saved", "saved_dict", "pq"]:
        got = records(load_train_dataset("math", source=tmp_path / src))
        assert got == expected, src
    assert len(load_train_dataset("math", source=str(tmp_path / "pq"))) == 32  # str paths too


def test_hub_path_calls_load_dataset(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(path, name=None, *, split=None, **kw):
        calls.append((path, name, split))
        return datasets.Dataset.from_list(_math_rows())

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    f = load_train_dataset("math", limit=3)
    assert calls == [("DigitalLearningGmbH/MATH-lighteval", None, "train")]
    assert indices(f) == [0, 1, 2]
    assert f.attrs["load_stats"]["source"] == "hub:DigitalLearningGmbH/MATH-lighteval"


# --------------------------------------------------------------------------------------------
# Errors


def test_unknown_dataset_lists_known_names():
    with pytest.raises(KeyError) as err:
        load_train_dataset("gsm8k", source=MATH)
    msg = str(err.value)
    assert "gsm8k" in msg
    for name in TRAIN_SETS:
        assert name in msg


def test_unknown_template():
    with pytest.raises(KeyError, match="qwen-boxed"):
        load_train_dataset("math", source=MATH, template="nope")


def test_missing_top_level_field(tmp_path):
    table = pq.read_table(MATH).drop_columns(["solution"])
    pq.write_table(table, tmp_path / "m.parquet")
    with pytest.raises(ValueError, match=r"'math'.*'solution'"):
        load_train_dataset("math", source=tmp_path / "m.parquet")
    table = pq.read_table(MATH).drop_columns(["level"])
    pq.write_table(table, tmp_path / "n.parquet")
    with pytest.raises(ValueError, match=r"'math-stratified-25'.*'level'"):
        load_train_dataset("math-stratified-25", source=tmp_path / "n.parquet")
    (tmp_path / "d.jsonl").write_text(json.dumps({"problem": "1+1?", "solution": "2"}) + "\n")
    with pytest.raises(ValueError, match=r"'deepscaler'.*'answer'"):
        load_train_dataset("deepscaler", source=tmp_path / "d.jsonl")


def test_missing_nested_field(tmp_path):
    lines = [json.loads(x) for x in DAPO.read_text().splitlines()]
    for r in lines:
        r["reward_model"] = {"style": "rule"}
    (tmp_path / "gt.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    with pytest.raises(ValueError, match=r"'dapo-math-17k'.*'reward_model\.ground_truth'"):
        load_train_dataset("dapo-math-17k", source=tmp_path / "gt.jsonl")

    lines = [json.loads(x) for x in DAPO.read_text().splitlines()]
    for r in lines:
        del r["prompt"]
    (tmp_path / "np.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    with pytest.raises(ValueError, match=r"'dapo-math-17k'.*'prompt\[0\]\.content'"):
        load_train_dataset("dapo-math-17k", source=tmp_path / "np.jsonl")

    lines = [json.loads(x) for x in DAPO.read_text().splitlines()]
    lines[5]["prompt"] = []
    (tmp_path / "empty.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    with pytest.raises(ValueError, match=r"'dapo-math-17k'.*'prompt'"):
        load_train_dataset("dapo-math-17k", source=tmp_path / "empty.jsonl")


def test_bad_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="math"):
        load_train_dataset("math", source=tmp_path / "missing.parquet")
    (tmp_path / "x.csv").write_text("problem,solution\n")
    with pytest.raises(ValueError, match="unsupported"):
        load_train_dataset("math", source=tmp_path / "x.csv")
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(ValueError, match="parquet"):
        load_train_dataset("math", source=tmp_path / "emptydir")


def test_module_exports():
    assert callable(answers_module.last_boxed) and "last_boxed" in answers_module.__all__
    assert not hasattr(hub, "last_boxed")  # one extractor: the scorer's
    for name in ("load_train_dataset", "load_benchmark", "prepare_benchmark", "load_hub_rows"):
        assert name in hub.__all__
