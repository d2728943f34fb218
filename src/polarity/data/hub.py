"""Loaders for hub datasets (training sets and benchmarks), normalized to verl's row format.

One loader core, ``load_hub_rows(spec, ...)``, turns any ``HubDataset`` spec into rows
(``rows.py``); ``load_train_dataset`` (here) and ``polarity.evaluation.benchmarks.load_benchmark``
are thin lookups in front of it. The registry ``TRAIN_DATASETS`` describes every training set the
presets use (``../shared/presets.md``, "Datasets"); the benchmarks live in
``polarity.evaluation.benchmarks.BENCHMARKS``.

========================  =============================================  =========================
name                      source (hub id, split)                         question -> ground truth
========================  =============================================  =========================
``math``                  DigitalLearningGmbH/MATH-lighteval, train      ``problem`` -> last
                                                                         ``\\boxed{}`` of ``solution``
``math-stratified-25``    the same, a stratified 25% subset (below)      the same
``dapo-math-17k``         BytedTsinghua-SIA/DAPO-Math-17k, train         ``prompt[0].content`` ->
                          (deduplicated on the prompt text)              ``reward_model.ground_truth``
``deepscaler``            agentica-org/DeepScaleR-Preview-Dataset, train ``problem`` -> ``answer``
========================  =============================================  =========================

``load_train_dataset(name, source=...)`` reads the hub (``source=None``) or a local copy in the
same schema (a ``.parquet``/``.json``/``.jsonl`` file, a ``save_to_disk`` directory or a
directory of parquet files) and returns a DataFrame with exactly ``rows.ROW_COLUMNS``, one
``make_row`` per kept example, in source order. ``extra_info["index"]`` is the example's row
position in the source split (so it survives deduplication and subsetting); the output's
``data_source`` is the registry name.

Several configs (``HubDataset.configs``, e.g. AIME 2025's ``AIME2025-I`` and ``AIME2025-II``)
are read one after another and concatenated in the spec's order: from the hub, one
``load_dataset`` per config; locally, ``source`` must be a directory holding one entry per
config, a file ``<config>.parquet|.jsonl|.json`` or a sub-directory ``<config>/`` (any of the
local kinds above), the name matched case-insensitively, so a download of the hub repository
(``aime2025-I.jsonl``, ``aime2025-II.jsonl``) works as it is. ``extra_info["index"]`` is then
the position in the concatenation (0, 1, ... across configs), ``extra_info["config"]`` the
config and ``extra_info["config_index"]`` the row position within it.

Rules, in the order they are applied:

1. Deduplication (``dapo-math-17k``): the hub file repeats every prompt ~100 times (~1.79M rows);
   the first row per exact ``prompt[0].content`` is kept (~17.4k). Later copies are dropped even
   when their ground truth differs; such disagreements are counted
   (``dedup_conflicting_answers``).
2. Answers (``HubDataset.answer_from``): rows with a missing question or an empty/missing answer
   are dropped and counted (``no_answer_dropped``).

   - ``"field"``: the field as it is, stripped; numbers become text (an integral float such as
     ``27.0`` becomes ``"27"``).
   - ``"last_boxed"`` (MATH): ``last_boxed(solution)``, the content of the last complete
     ``\\boxed{...}`` or ``\\fbox{...}``; solutions without one are dropped.
   - ``"answer_list"`` (OlympiadBench's ``final_answer``): ``join_answers``, a list of answers
     each stripped of its ``$...$`` delimiters; one answer is itself, several are joined with
     ``", "``, which math-verify reads as a set (any order of the parts is accepted).
3. Stratified subset (``math-stratified-25``), over the rows kept by 1-2: rows are grouped by
   ``(type, level)``; a stratum of ``size`` rows keeps ``max(1, round(0.25 * size))`` of them
   (Python's ``round``, halves to even, the rule ``pandas.DataFrame.sample(frac=...)`` uses:
   size 1 -> 1, 2 -> 1, 4 -> 1, 6 -> 2, 10 -> 2, 14 -> 4). Within a stratum, rows are
   shuffled by a seeded hash: sorted by ``blake2b(f"{seed}\\x1f{problem}")`` (ties by row
   position) and the first ``k`` kept. The choice depends only on the seed and the stratum's
   own rows: not on library versions, on other strata or on the order of the source file.
   The kept rows are returned in source order.
4. ``limit`` keeps the first ``limit`` rows of the result.

The counts of every step are in ``frame.attrs["load_stats"]`` and logged at INFO.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import os
import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from polarity.data.rows import PROMPT_TEMPLATES, PromptTemplate, make_row, rows_to_frame

__all__ = [
    "ANSWER_RULES",
    "HubDataset",
    "TRAIN_DATASETS",
    "join_answers",
    "last_boxed",
    "load_hub_rows",
    "load_train_dataset",
    "read_source_table",
    "read_source_tables",
    "stratified_sample_indices",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# The registry


# How the ground truth is made from ``answer_field`` (module docstring, rule 2).
ANSWER_RULES = ("field", "last_boxed", "answer_list")


@dataclass(frozen=True)
class HubDataset:
    """One hub dataset (a training set or a benchmark) and how its rows map onto verl's format.

    Field paths name a column, a struct field (``a.b``) or a list element (``a[0]``), e.g.
    ``prompt[0].content``.
    """

    name: str
    hub_id: str
    config: str | None
    split: str
    question_field: str
    answer_field: str
    # One of ANSWER_RULES: "field" (the field as it is), "last_boxed" (``last_boxed`` of it),
    # "answer_list" (``join_answers`` of a list of answers).
    answer_from: str
    template: str
    data_source: str
    # (extra_info key, source field): copied into extra_info; required in the source.
    extra_fields: tuple[tuple[str, str], ...] = ()
    # (extra_info key, source field): copied when the source has the field.
    optional_extra_fields: tuple[tuple[str, str], ...] = ()
    dedup_on_question: bool = False
    subset_fraction: float | None = None
    strata: tuple[str, ...] = ()
    description: str = ""
    # Several hub configs, read one after another and concatenated in this order (``config``
    # is then None); see the module docstring for the local layout.
    configs: tuple[str, ...] = ()
    # Rows in the full source split (all configs); a hub load of another size logs a warning.
    expected_rows: int | None = None
    # What the messages call it: "dataset 'math'", "benchmark 'aime25'".
    kind: str = "dataset"

    def __post_init__(self) -> None:
        if self.answer_from not in ANSWER_RULES:
            raise ValueError(
                f"{self.kind} {self.name!r}: answer_from must be one of {ANSWER_RULES}, "
                f"got {self.answer_from!r}"
            )
        if self.configs and self.config is not None:
            raise ValueError(f"{self.kind} {self.name!r}: give config or configs, not both")
        if len(set(self.configs)) != len(self.configs):
            raise ValueError(f"{self.kind} {self.name!r}: configs repeat: {self.configs}")

    @property
    def config_names(self) -> tuple[str | None, ...]:
        """The configs read, in order: ``configs``, else ``(config,)``."""
        return self.configs or (self.config,)

    @property
    def required_fields(self) -> tuple[str, ...]:
        fields = [self.question_field, self.answer_field]
        fields += [f for _, f in self.extra_fields]
        fields += list(self.strata)
        return tuple(dict.fromkeys(fields))


_MATH_ID = "DigitalLearningGmbH/MATH-lighteval"

TRAIN_DATASETS: dict[str, HubDataset] = {
    "math": HubDataset(
        name="math",
        hub_id=_MATH_ID,
        config=None,
        split="train",
        question_field="problem",
        answer_field="solution",
        answer_from="last_boxed",
        # verl's MATH preprocessing; Zhu et al. used "qwen-boxed" (pass template=...).
        template="verl-math",
        data_source="math",
        extra_fields=(("level", "level"), ("type", "type")),
        description="MATH train (7,500); answer = last \\boxed{} of the solution.",
    ),
    "math-stratified-25": HubDataset(
        name="math-stratified-25",
        hub_id=_MATH_ID,
        config=None,
        split="train",
        question_field="problem",
        answer_field="solution",
        answer_from="last_boxed",
        template="verl-math",
        data_source="math-stratified-25",
        extra_fields=(("level", "level"), ("type", "type")),
        subset_fraction=0.25,
        strata=("type", "level"),
        description=(
            "MATH train, stratified 25% by (type, level): max(1, round(0.25 * size)) per "
            "stratum, chosen by a seeded hash of the problem."
        ),
    ),
    "dapo-math-17k": HubDataset(
        name="dapo-math-17k",
        hub_id="BytedTsinghua-SIA/DAPO-Math-17k",
        config=None,
        split="train",
        question_field="prompt[0].content",
        answer_field="reward_model.ground_truth",
        answer_from="field",
        # The prompt already carries its instructions (a last line "Answer: $Answer").
        template="plain",
        data_source="dapo-math-17k",
        optional_extra_fields=(
            ("source_index", "extra_info.index"),
            ("source_data_source", "data_source"),
        ),
        dedup_on_question=True,
        description="DAPO-Math-17k, deduplicated on the prompt text (~1.79M -> ~17.4k).",
    ),
    "deepscaler": HubDataset(
        name="deepscaler",
        hub_id="agentica-org/DeepScaleR-Preview-Dataset",
        config=None,
        split="train",
        question_field="problem",
        answer_field="answer",
        answer_from="field",
        template="qwen-boxed",
        data_source="deepscaler",
        description="DeepScaleR-Preview (~40k problems).",
    ),
}


# --------------------------------------------------------------------------------------------
# \boxed{} extraction

# A control word (\boxed), a control symbol (\{, \\, \ ) or a brace. Everything else is text.
_TEX_TOKEN = re.compile(r"\\(?:[A-Za-z]+|.)|[{}]", re.S)
_BOX_COMMANDS = frozenset({"\\boxed", "\\fbox"})


def last_boxed(text: str) -> str | None:
    """The content of the last complete ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``.

    Braces are matched by a single left-to-right scan (linear time), so nested groups such as
    ``\\boxed{\\frac{1}{2}}`` come back whole. Escaped braces (``\\{``, ``\\}``) are text, not
    grouping. "Last" is the box that opens last, so ``\\boxed{\\boxed{1}}`` gives ``1``, as the
    usual right-most-``\\boxed`` scan does. A box that is never closed (a truncated solution) is
    ignored. Whitespace between the command and its ``{`` is allowed; the content is stripped.
    Returns ``None`` when there is no complete box; ``\\boxed 5`` (no braces) does not count.
    """
    if not text:
        return None
    stack: list[int] = []  # per open brace: its content start if it opens a box, else -1
    best: tuple[int, int] | None = None
    box_end: int | None = None  # end of a \boxed command still waiting for its "{"
    for m in _TEX_TOKEN.finditer(text):
        tok = m.group()
        opens_box = (
            box_end is not None and tok == "{" and not text[box_end : m.start()].strip()
        )
        box_end = None
        if tok == "{":
            stack.append(m.end() if opens_box else -1)
        elif tok == "}":
            if stack:
                start = stack.pop()
                if start >= 0 and (best is None or start > best[0]):
                    best = (start, m.start())
        elif tok in _BOX_COMMANDS:
            box_end = m.end()
    if best is None:
        return None
    return text[best[0] : best[1]].strip()


# --------------------------------------------------------------------------------------------
# Ground truths from other answer fields

# One pair of math delimiters around a whole answer: $$...$$, $...$, \(...\) or \[...\].
_DELIMITED = re.compile(r"\$\$(.*)\$\$|\$(.*)\$|\\\((.*)\\\)|\\\[(.*)\\\]", re.S)


def _strip_math_delimiters(text: str) -> str:
    """``text`` stripped, without one pair of delimiters that encloses all of it.

    ``"$\\frac{1}{2}$"`` -> ``"\\frac{1}{2}"``. Text with a ``$`` inside the pair, such as
    ``"$x=1$ or $x=2$"``, is several math spans, not one: it is kept as it is.
    """
    text = text.strip()
    m = _DELIMITED.fullmatch(text)
    if m is None:
        return text
    inner = next(g for g in m.groups() if g is not None)
    if "$" in inner:
        return text
    return inner.strip()


def join_answers(values) -> str | None:
    """One ground-truth string from a list of answers (OlympiadBench's ``final_answer``).

    Each answer is made text and stripped of the math delimiters around it (``$...$``,
    ``$$...$$``, ``\\(...\\)``, ``\\[...\\]``); empty answers are skipped. One answer is the
    ground truth as it is; several are joined with ``", "`` (``["$2$", "$3$"]`` -> ``"2, 3"``),
    which math-verify parses as a set, so a response boxing ``3, 2`` is accepted too and a
    response with only some of the answers is not. A single string counts as a one-answer list.
    Returns ``None`` when no answer is left (the row is then dropped).
    """
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    parts = [_strip_math_delimiters(_answer_text(v) or "") for v in values]
    parts = [p for p in parts if p]
    return ", ".join(parts) or None


def _answer_text(value) -> str | None:
    """A scalar answer as stripped text; an integral float loses its ``.0`` (27.0 -> "27")."""
    if value is None:
        return None
    if isinstance(value, float):
        if value != value:  # NaN: a missing value
            return None
        if value.is_integer():
            return str(int(value))
        return repr(value)
    return str(value).strip()


# --------------------------------------------------------------------------------------------
# Stratified subsets


def _rank_key(seed: int, text: str) -> bytes:
    return hashlib.blake2b(f"{seed}\x1f{text}".encode(), digest_size=16).digest()


def stratified_sample_indices(
    strata: Sequence[Hashable],
    keys: Sequence[str],
    *,
    fraction: float,
    seed: int = 0,
) -> list[int]:
    """Positions of a deterministic stratified sample, in increasing order.

    ``strata[i]`` is row ``i``'s stratum and ``keys[i]`` its shuffle key (the problem text).
    A stratum of ``size`` rows keeps ``max(1, round(fraction * size))`` rows: those with the
    smallest ``blake2b(f"{seed}\\x1f{key}")``, ties broken by position.
    """
    if len(strata) != len(keys):
        raise ValueError("strata and keys must have the same length")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    groups: dict[Hashable, list[int]] = {}
    for i, stratum in enumerate(strata):
        groups.setdefault(stratum, []).append(i)
    chosen: list[int] = []
    for members in groups.values():
        k = max(1, round(fraction * len(members)))
        ranked = sorted(members, key=lambda i: (_rank_key(seed, str(keys[i])), i))
        chosen.extend(ranked[:k])
    return sorted(chosen)


# --------------------------------------------------------------------------------------------
# Reading a source


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


def _label(spec: HubDataset) -> str:
    return f"{spec.kind} {spec.name!r}"


def read_source_table(
    spec: HubDataset, source: str | os.PathLike | None, *, config=_DEFAULT
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
            if len(spec.config_names) > 1:
                raise ValueError(
                    f"{_label(spec)} has several configs {spec.configs}: name one "
                    "(or use read_source_tables)"
                )
            config = spec.config_names[0]
        import datasets

        return _dataset_to_table(datasets.load_dataset(spec.hub_id, config, split=spec.split))
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{_label(spec)}: source {str(path)!r} does not exist")
    if path.is_dir():
        if (path / "state.json").exists() or (path / "dataset_dict.json").exists():
            import datasets

            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                if spec.split not in ds:
                    raise ValueError(
                        f"{_label(spec)}: {str(path)!r} has no split {spec.split!r} "
                        f"(splits: {', '.join(ds)})"
                    )
                ds = ds[spec.split]
            return _dataset_to_table(ds)
        import pyarrow.parquet as pq

        files = sorted(p for p in path.rglob("*.parquet") if p.is_file())
        if not files:
            raise ValueError(
                f"{_label(spec)}: {str(path)!r} is neither a saved dataset "
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
        f"{_label(spec)}: unsupported source file {str(path)!r} "
        "(use .parquet, .json, .jsonl or a directory)"
    )


_LOCAL_SUFFIXES = (".parquet", ".jsonl", ".json")


def _config_entry(spec: HubDataset, root: Path, config: str) -> Path:
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
            f"{_label(spec)}: {str(root)!r} has {what} for config {config!r}; a local copy of a "
            f"benchmark with several configs is a directory holding, for each of "
            f"{', '.join(repr(c) for c in spec.configs)}, one file <config>.parquet|.jsonl|.json "
            "or one sub-directory <config>/ (names matched case-insensitively)"
        )
    return found[0]


def read_source_tables(
    spec: HubDataset, source: str | os.PathLike | None
) -> list[tuple[str | None, pa.Table]]:
    """``(config, table)`` for every config of ``spec``, in order (one pair for one config).

    A spec with several configs reads, from the hub, one ``load_dataset`` per config; locally,
    ``source`` must be a directory with one entry per config (``_config_entry``), each read by
    ``read_source_table``.
    """
    names = spec.config_names
    if source is None:
        return [(c, read_source_table(spec, None, config=c)) for c in names]
    if len(names) == 1:
        return [(names[0], read_source_table(spec, source))]
    root = Path(source)
    if not root.exists():
        raise FileNotFoundError(f"{_label(spec)}: source {str(root)!r} does not exist")
    if not root.is_dir():
        raise ValueError(
            f"{_label(spec)}: {str(root)!r} is a file, but a local copy of a benchmark with "
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


def _field(table: pa.Table, path: str, label: str) -> pa.ChunkedArray | None:
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
                    f"{label}: field {walked!r} has fewer than {part + 1} "
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


class _Column:
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


def _column(
    spec: HubDataset, parts: list[tuple[str | None, pa.Table]], path: str, *, required: bool
) -> _Column | None:
    """``path`` over all parts; a required field missing from any part is a ``ValueError``."""
    arrs = []
    for config, table in parts:
        arr = _field(table, path, _label(spec))
        if arr is None and required:
            where = f" (config {config!r})" if len(parts) > 1 else ""
            raise ValueError(
                f"{_label(spec)}: the source lacks required field {path!r}{where} "
                f"(its columns: {', '.join(table.column_names) or 'none'})"
            )
        arrs.append(arr)
    if all(a is None for a in arrs):
        return None
    return _Column(arrs, [t.num_rows for _, t in parts])


# --------------------------------------------------------------------------------------------
# The loader


def _resolve_template(template: str | PromptTemplate | None, spec: HubDataset):
    if template is None:
        return spec.template
    if isinstance(template, PromptTemplate):
        return template
    if template not in PROMPT_TEMPLATES:
        raise KeyError(
            f"unknown prompt template {template!r}; known: {', '.join(sorted(PROMPT_TEMPLATES))}"
        )
    return template


def _ground_truths(spec: HubDataset, raw: list) -> list[str | None]:
    if spec.answer_from == "last_boxed":
        return [last_boxed(a) if isinstance(a, str) else None for a in raw]
    if spec.answer_from == "answer_list":
        return [join_answers(a) for a in raw]
    return [_answer_text(a) for a in raw]


def load_hub_rows(
    spec: HubDataset,
    *,
    source: str | os.PathLike | None = None,
    template: str | PromptTemplate | None = None,
    seed: int = 0,
    limit: int | None = None,
) -> pd.DataFrame:
    """The rows of ``spec`` (a training set or a benchmark) in verl's format.

    The shared core of ``load_train_dataset`` and ``benchmarks.load_benchmark``: reads
    ``source`` (``None``: the hub; else a local copy, see ``read_source_tables``), applies the
    rules of the module docstring and returns a DataFrame with exactly ``rows.ROW_COLUMNS``, in
    source order, ``data_source`` = ``spec.data_source``. ``template`` overrides the spec's
    prompt template (a name in ``rows.PROMPT_TEMPLATES`` or a ``PromptTemplate``). ``seed``
    selects a stratified subset (ignored without one). ``limit`` keeps the first ``limit``
    rows. The counts of dropped rows are in ``frame.attrs["load_stats"]``.

    Raises ``KeyError`` for an unknown template, ``ValueError`` when the source lacks a
    required field (the message names the dataset and the field), ``FileNotFoundError`` for a
    missing local source.
    """
    name = spec.name
    tpl = _resolve_template(template, spec)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")

    parts = read_source_tables(spec, source)
    questions_col = _column(spec, parts, spec.question_field, required=True)
    answers_col = _column(spec, parts, spec.answer_field, required=True)
    extra_cols = {
        key: _column(spec, parts, field, required=True) for key, field in spec.extra_fields
    }
    for key, field in spec.optional_extra_fields:
        col = _column(spec, parts, field, required=False)
        if col is not None:
            extra_cols[key] = col
    strata_cols = [_column(spec, parts, field, required=True) for field in spec.strata]
    multi = len(parts) > 1

    rows_in = sum(t.num_rows for _, t in parts)
    stats: dict[str, object] = {
        "dataset": name,
        "source": "hub:" + spec.hub_id if source is None else str(source),
        "rows_in": rows_in,
    }
    if multi:
        stats["rows_in_by_config"] = {c: t.num_rows for c, t in parts}
    if spec.expected_rows is not None:
        stats["expected_rows"] = spec.expected_rows
        if source is None and rows_in != spec.expected_rows:
            log.warning(
                "%s: the hub gave %d rows, expected %d (has %s changed?)",
                _label(spec), rows_in, spec.expected_rows, spec.hub_id,
            )
    questions = questions_col.values()
    idx = [i for i, q in enumerate(questions) if q is not None and str(q).strip()]
    stats["missing_question_dropped"] = len(questions) - len(idx)

    # 1. Deduplicate on the exact question (prompt) text: first occurrence wins.
    if spec.dedup_on_question:
        first: dict[str, int] = {}
        for i in idx:
            first.setdefault(questions[i], i)
        kept = sorted(first.values())
        stats["duplicates_dropped"] = len(idx) - len(kept)
        answers_all = answers_col.values(idx)
        first_answer: dict[str, object] = {}
        conflicts: set[str] = set()
        for i, a in zip(idx, answers_all):
            q = questions[i]
            if q not in first_answer:
                first_answer[q] = a
            elif a != first_answer[q]:
                conflicts.add(q)
        stats["dedup_conflicting_answers"] = len(conflicts)
        idx = kept

    # 2. The ground truth.
    answers = _ground_truths(spec, answers_col.values(idx))
    keep = [j for j, a in enumerate(answers) if a]
    stats["no_answer_dropped"] = len(idx) - len(keep)
    idx = [idx[j] for j in keep]
    answers = [answers[j] for j in keep]

    # 3. Stratified subset.
    if spec.subset_fraction is not None:
        strata_vals = [col.values(idx) for col in strata_cols]
        strata = list(zip(*strata_vals)) if strata_vals else [() for _ in idx]
        chosen = stratified_sample_indices(
            strata,
            [questions[i] for i in idx],
            fraction=spec.subset_fraction,
            seed=seed,
        )
        stats["subset_dropped"] = len(idx) - len(chosen)
        stats["strata"] = len(set(strata))
        idx = [idx[j] for j in chosen]
        answers = [answers[j] for j in chosen]

    # 4. Limit.
    if limit is not None:
        stats["limit_dropped"] = max(0, len(idx) - limit)
        idx, answers = idx[:limit], answers[:limit]

    extras = {key: col.values(idx) for key, col in extra_cols.items()}
    if multi:
        offsets = questions_col.offsets
        where = [bisect.bisect_right(offsets, i) - 1 for i in idx]
        extras["config"] = [parts[k][0] for k in where]
        extras["config_index"] = [i - offsets[k] for i, k in zip(idx, where)]
    rows = [
        make_row(
            data_source=spec.data_source,
            question=questions[i],
            answer=answer,
            split=spec.split,
            index=i,
            template=tpl,
            ability="math",
            extra={key: vals[pos] for key, vals in extras.items()} or None,
        )
        for pos, (i, answer) in enumerate(zip(idx, answers))
    ]
    frame = rows_to_frame(rows)
    stats["rows_out"] = len(frame)
    frame.attrs["load_stats"] = stats
    log.info("loaded %s: %s", name, json.dumps(stats, default=str))
    return frame


def load_train_dataset(
    name: str,
    *,
    source: str | os.PathLike | None = None,
    template: str | None = None,
    seed: int = 0,
    limit: int | None = None,
) -> pd.DataFrame:
    """Load training set ``name`` (a key of ``TRAIN_DATASETS``) as verl rows.

    ``source=None`` loads the hub id; a path loads a local copy in the same schema (see
    ``read_source_table``). ``template`` overrides the registry's prompt template (a name in
    ``rows.PROMPT_TEMPLATES``). ``seed`` selects the stratified subset (``math-stratified-25``;
    ignored otherwise). ``limit`` keeps the first ``limit`` rows after deduplication and
    subsetting. Returns a DataFrame with exactly ``rows.ROW_COLUMNS``, in source order; the
    counts of dropped rows are in ``frame.attrs["load_stats"]``.

    Raises ``KeyError`` for an unknown name or template, ``ValueError`` when the source lacks a
    required field (the message names the dataset and the field).
    """
    if name not in TRAIN_DATASETS:
        raise KeyError(
            f"unknown training dataset {name!r}; known: {', '.join(sorted(TRAIN_DATASETS))}"
        )
    return load_hub_rows(
        TRAIN_DATASETS[name], source=source, template=template, seed=seed, limit=limit
    )
