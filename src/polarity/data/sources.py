"""Reading a hub dataset's source split (the hub, or a local copy in the source's own schema).

``read_source_tables(spec, source)`` gives one arrow table per config of a registry entry
(``polarity.data.registry.Dataset``): from the hub (``source=None``) one
``datasets.load_dataset`` per config; locally a ``.parquet``/``.json``/``.jsonl`` file, a
``save_to_disk`` directory or a directory of parquet files. A local copy of an entry with
several configs (AIME 2025's ``AIME2025-I`` and ``AIME2025-II``) is a directory holding one
entry per config, a file ``<config>.parquet|.jsonl|.json`` or a sub-directory ``<config>/``
(any of the local kinds above), the name matched case-insensitively, so a download of the hub
repository (``aime2025-I.jsonl``, ``aime2025-II.jsonl``) works as it is.

``column(spec, parts, path, required=...)`` reads one field path (``a.b``, ``a[0]``) over those
tables as one ``Column``; a required field missing from the source is a ``ValueError`` naming
the dataset and the field.
"""

from __future__ import annotations

import bisect
import json
import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from polarity.data.registry import Dataset

__all__ = ["Column", "column", "label", "read_source_table", "read_source_tables"]


def _dataset_to_table(ds) -> pa.Table:
    """A ``datasets.Dataset`` as one arrow table (respecting any indices mapping)."""
    return ds.with_format("arrow")[:]


def _matches_split(rel: Path, split: str) -> bool:
    if split in rel.parts[:-1]:
        return True
    stem = rel.name.split(".")[0]
    return stem == split or stem.startswith(f"{split}-") or stem.startswith(f"{split}_")


def _read_json(path: Path) -> pa.Table:
    with path.open("rb") as fh:
        head = fh.read(4096).lstrip()
    if head.startswith(b"["):  # one JSON array of records
        with path.open(encoding="utf-8") as fh:
            return pa.Table.from_pylist(json.load(fh))
    try:
        import pyarrow.json as pajson

        return pajson.read_json(path)
    except pa.ArrowInvalid:  # types the reader cannot unify: let Python parse it
        with path.open(encoding="utf-8") as fh:
            return pa.Table.from_pylist([json.loads(line) for line in fh if line.strip()])


_DEFAULT = object()  # read_source_table's "the spec's only config"


def label(spec: Dataset) -> str:
    return f"{spec.kind} {spec.name!r}"


def read_source_table(
    spec: Dataset, source: str | os.PathLike | None, *, config=_DEFAULT
) -> pa.Table:
    """One config's raw source split as an arrow table, in the source's own schema.

    ``None``: ``datasets.load_dataset(hub_id, config, split=split)`` (network or HF cache);
    ``config`` defaults to the spec's only config (a multi-config spec must name one).
    A file: ``.parquet``, ``.jsonl`` (JSON lines) or ``.json`` (JSON lines or one array).
    A directory: a ``save_to_disk`` dataset (``state.json``; a ``DatasetDict`` directory gives
    its ``split``), else every ``*.parquet`` below it, in sorted path order; when some of them
    are named for the split (``train-00000-of-00002.parquet``, ``train/…``) only those are read.
    A local ``source`` is this one config's data (``read_source_tables`` finds each config's).
    """
    if source is None:
        if config is _DEFAULT:
            if len(spec.configs) > 1:
                raise ValueError(
                    f"{label(spec)} has several configs {spec.configs}: name one "
                    "(or use read_source_tables)"
                )
            config = spec.configs[0]
        import datasets

        return _dataset_to_table(datasets.load_dataset(spec.hub_id, config, split=spec.split))
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{label(spec)}: source {str(path)!r} does not exist")
    if path.is_dir():
        if (path / "state.json").exists() or (path / "dataset_dict.json").exists():
            import datasets

            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                if spec.split not in ds:
                    raise ValueError(
                        f"{label(spec)}: {str(path)!r} has no split {spec.split!r} "
                        f"(splits: {', '.join(ds)})"
                    )
                ds = ds[spec.split]
            return _dataset_to_table(ds)
        import pyarrow.parquet as pq

        files = sorted(p for p in path.rglob("*.parquet") if p.is_file())
        if not files:
            raise ValueError(
                f"{label(spec)}: {str(path)!r} is neither a saved dataset "
                "nor a directory of parquet files"
            )
        for_split = [f for f in files if _matches_split(f.relative_to(path), spec.split)]
        tables = [pq.read_table(f) for f in (for_split or files)]
        return pa.concat_tables(tables, promote_options="default")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path)
    if suffix in (".json", ".jsonl"):
        return _read_json(path)
    raise ValueError(
        f"{label(spec)}: unsupported source file {str(path)!r} "
        "(use .parquet, .json, .jsonl or a directory)"
    )


_LOCAL_SUFFIXES = (".parquet", ".jsonl", ".json")


def _config_entry(spec: Dataset, root: Path, config: str) -> Path:
    """The file ``<config>.parquet|.jsonl|.json`` or directory ``<config>/`` in ``root``."""
    want = config.casefold()
    found = []
    for child in sorted(root.iterdir()):
        name = child.name
        if child.is_file():
            suffix = next((x for x in _LOCAL_SUFFIXES if name.lower().endswith(x)), None)
            if suffix is None:
                continue
            name = name[: -len(suffix)]
        if name.casefold() == want:
            found.append(child)
    if len(found) != 1:
        what = (
            f"{len(found)} entries ({', '.join(f.name for f in found)})" if found else "no entry"
        )
        raise ValueError(
            f"{label(spec)}: {str(root)!r} has {what} for config {config!r}; a local copy of a "
            f"benchmark with several configs is a directory holding, for each of "
            f"{', '.join(repr(c) for c in spec.configs)}, one file <config>.parquet|.jsonl|.json "
            "or one sub-directory <config>/ (names matched case-insensitively)"
        )
    return found[0]


def read_source_tables(
    spec: Dataset, source: str | os.PathLike | None
) -> list[tuple[str | None, pa.Table]]:
    """``(config, table)`` for every config of ``spec``, in order (one pair for one config).

    A spec with several configs reads, from the hub, one ``load_dataset`` per config; locally,
    ``source`` must be a directory with one entry per config (``_config_entry``), each read by
    ``read_source_table``.
    """
    names = spec.configs
    if source is None:
        return [(c, read_source_table(spec, None, config=c)) for c in names]
    if len(names) == 1:
        return [(names[0], read_source_table(spec, source))]
    root = Path(source)
    if not root.exists():
        raise FileNotFoundError(f"{label(spec)}: source {str(root)!r} does not exist")
    if not root.is_dir():
        raise ValueError(
            f"{label(spec)}: {str(root)!r} is a file, but a local copy of a benchmark with "
            f"several configs ({', '.join(repr(c) for c in spec.configs)}) is a directory with "
            "one <config>.parquet|.jsonl|.json file or <config>/ sub-directory per config"
        )
    return [(c, read_source_table(spec, _config_entry(spec, root, c))) for c in names]


_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _parse_field(path: str) -> list[str | int]:
    parts: list[str | int] = []
    pos = 0
    for m in _PATH_PART.finditer(path):
        sep = path[pos : m.start()]
        if sep not in ("", "."):
            raise ValueError(f"bad field path {path!r}")
        parts.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    if pos != len(path) or not parts or not isinstance(parts[0], str):
        raise ValueError(f"bad field path {path!r}")
    return parts


def _field(table: pa.Table, path: str, what: str) -> pa.ChunkedArray | None:
    """The values of ``path`` for every row, or ``None`` when the source lacks the field."""
    parts = _parse_field(path)
    if parts[0] not in table.column_names:
        return None
    arr = table.column(parts[0])
    walked = str(parts[0])
    for part in parts[1:]:
        typ = arr.type
        if isinstance(part, int):
            if not (pa.types.is_list(typ) or pa.types.is_large_list(typ)):
                return None
            lengths = pc.list_value_length(arr)
            short = pc.sum(pc.less_equal(lengths, part)).as_py() or 0
            if short:
                raise ValueError(
                    f"{what}: field {walked!r} has fewer than {part + 1} "
                    f"element(s) in {short} row(s), so {path!r} is missing there"
                )
            arr = pc.list_element(arr, part)
            walked += f"[{part}]"
        else:
            if not pa.types.is_struct(typ) or typ.get_field_index(part) < 0:
                return None
            arr = pc.struct_field(arr, [typ.get_field_index(part)])
            walked += f".{part}"
    if isinstance(arr, pa.Array):
        arr = pa.chunked_array([arr])
    return arr


class Column:
    """One field over the source's parts (configs) as if they were one table.

    A part may lack the field (``None``, an optional field): its rows read as ``None``. Parts
    are kept apart rather than concatenated so that configs whose arrow types differ (a number
    in one file, a string in another) still load.
    """

    def __init__(self, parts: list[pa.ChunkedArray | None], lengths: list[int]):
        self.parts = parts
        self.lengths = lengths
        self.offsets = [0]
        for n in lengths:
            self.offsets.append(self.offsets[-1] + n)

    def __len__(self) -> int:
        return self.offsets[-1]

    def values(self, idx: list[int] | None = None) -> list:
        """Python values of rows ``idx`` (all rows when ``None``), in the order given."""
        if idx is None:
            out: list = []
            for arr, n in zip(self.parts, self.lengths):
                out.extend(arr.to_pylist() if arr is not None else [None] * n)
            return out
        out = [None] * len(idx)
        buckets: dict[int, tuple[list[int], list[int]]] = {}
        for pos, i in enumerate(idx):
            k = bisect.bisect_right(self.offsets, i) - 1
            positions, local = buckets.setdefault(k, ([], []))
            positions.append(pos)
            local.append(i - self.offsets[k])
        for k, (positions, local) in buckets.items():
            arr = self.parts[k]
            if arr is None:
                continue
            if local == list(range(len(arr))):
                vals = arr.to_pylist()
            else:
                vals = arr.take(pa.array(local, type=pa.int64())).to_pylist()
            for pos, v in zip(positions, vals):
                out[pos] = v
        return out


def column(
    spec: Dataset, parts: list[tuple[str | None, pa.Table]], path: str, *, required: bool
) -> Column | None:
    """``path`` over all parts; a required field missing from any part is a ``ValueError``."""
    arrs = []
    for config, table in parts:
        arr = _field(table, path, label(spec))
        if arr is None and required:
            where = f" (config {config!r})" if len(parts) > 1 else ""
            raise ValueError(
                f"{label(spec)}: the source lacks required field {path!r}{where} "
                f"(its columns: {', '.join(table.column_names) or 'none'})"
            )
        arrs.append(arr)
    if all(a is None for a in arrs):
        return None
    return Column(arrs, [t.num_rows for _, t in parts])
