"""Writing and reading the files stages hand each other, declared once.

Every output is written atomically: to a temporary name beside the target, then
``os.replace``, so a killed job leaves the old file or the new one, never half of one. JSON
lines are read up to the first line that does not parse (the last line of a file cut short by
a kill).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` to fill a temporary file beside ``path``, then rename it to ``path``.

    The temporary file is removed if ``write`` fails; parent folders are made.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # processes may share a target
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_dir(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` to fill a temporary folder beside ``path``, then put it in place of
    ``path`` (a model directory: whole or absent, never half-saved)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write(tmp)
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """``text`` to ``path``, atomically and flushed to disk."""

    def write(tmp: Path) -> None:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    return atomic_write(path, write)


def write_json(path: str | Path, data: Any, **dump_kwargs) -> Path:
    """One JSON document, atomically (``dump_kwargs`` go to ``json.dumps``)."""
    return write_text(path, json.dumps(data, **dump_kwargs))


def write_jsonl(rows: Iterable[dict], path: str | Path) -> Path:
    """One JSON object a line (keys in their own order; NaN written as JSON NaN), atomically."""
    return write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


def iter_jsonl(path: str | Path) -> Iterator[Any]:
    """Every non-blank line of ``path`` parsed as JSON, or ``None`` where it does not parse."""
    with open(path, "rb") as f:
        for raw in f:
            line = raw.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except ValueError:  # JSONDecodeError and UnicodeDecodeError
                yield None


def read_jsonl(path: str | Path, missing_ok: bool = False) -> list[dict]:
    """The rows of a JSON-lines file, up to the first line that does not parse (a last line cut
    short by a kill). Blank lines are skipped; a missing file is ``[]`` if ``missing_ok``."""
    path = Path(path)
    if missing_ok and not path.exists():
        return []
    rows = []
    for row in iter_jsonl(path):
        if row is None:
            break
        rows.append(row)
    return rows
