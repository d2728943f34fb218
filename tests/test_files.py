"""polarity.files: atomic writes and the JSONL reader every stage uses."""

import json

import pytest

from polarity.files import atomic_dir, read_jsonl, write_jsonl, write_text


def test_write_is_atomic(tmp_path):
    out = tmp_path / "metrics.jsonl"
    write_jsonl([{"step": 0, "x": float("nan")}], out)
    before = out.read_text()
    with pytest.raises(TypeError):  # fails half way: the old file is untouched, no temp left
        write_jsonl([{"step": 0}, {"step": 1, "x": object()}], out)
    assert out.read_text() == before and list(tmp_path.iterdir()) == [out]


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    out = write_text(tmp_path / "a" / "x.txt", "old")

    def fail(tmp):
        tmp.write_text("half")
        raise RuntimeError("killed")

    from polarity.files import atomic_write

    with pytest.raises(RuntimeError):
        atomic_write(out, fail)
    assert out.read_text() == "old" and [p.name for p in out.parent.iterdir()] == ["x.txt"]


def test_read_jsonl_stops_at_a_line_cut_short(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"a": 1}) + "\n\n" + json.dumps({"a": NaN_TEXT}) + '\n{"a": 3')
    rows = read_jsonl(path)
    assert len(rows) == 2 and rows[0] == {"a": 1} and rows[1]["a"] != rows[1]["a"]  # NaN read
    assert read_jsonl(tmp_path / "missing.jsonl", missing_ok=True) == []
    with pytest.raises(FileNotFoundError):
        read_jsonl(tmp_path / "missing.jsonl")


NaN_TEXT = float("nan")


def test_atomic_dir_replaces_the_whole_folder(tmp_path):
    out = tmp_path / "model"
    atomic_dir(out, lambda tmp: (tmp.mkdir(), (tmp / "a").write_text("1")))
    atomic_dir(out, lambda tmp: (tmp.mkdir(), (tmp / "b").write_text("2")))
    assert sorted(p.name for p in out.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
