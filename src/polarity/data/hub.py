"""Loaders for the registry's hub datasets (training sets and benchmarks), as verl rows.

One loader core, ``load_hub_rows(spec, ...)``, turns any hub entry of the registry
(``polarity.data.registry.Dataset``) into rows (``rows.py``); ``load_train_dataset``,
``load_benchmark`` and ``prepare_benchmark`` are thin lookups in front of it. The registry
(``polarity.data.registry``) lists every dataset, its hub id and fields.

A load reads the hub (``source=None``) or a local copy in the source's own schema (a
``.parquet``/``.json``/``.jsonl`` file, a ``save_to_disk`` directory or a directory of parquet
files; ``polarity.data.sources``) and returns a DataFrame with exactly ``rows.ROW_COLUMNS``, one
``make_row`` per kept example, in source order. ``extra_info["index"]`` is the example's row
position in the source split (so it survives deduplication and subsetting); the output's
``data_source`` is the registry name; ``extra_info`` also has ``split``, ``question``,
``answer`` and the fields the entry keeps (MATH's ``level``/``type``, MATH-500's
``subject``/``level``/``unique_id``, OlympiadBench's ``id`` and raw ``final_answer``, ...).

Several configs (``Dataset.configs``, e.g. AIME 2025's ``AIME2025-I`` and ``AIME2025-II``) are
read one after another and concatenated in the entry's order: from the hub, one
``load_dataset`` per config; locally, ``source`` is a directory with one entry per config (see
``polarity.data.sources``). ``extra_info["index"]`` is then the position in the concatenation
(0-14 for I, 15-29 for II on the full data), ``extra_info["config"]`` the config and
``extra_info["config_index"]`` the row position within it.

Rules, in the order they are applied:

1. Deduplication (``dapo-math-17k``): the hub file repeats every prompt ~100 times (~1.79M rows);
   the first row per exact ``prompt[0].content`` is kept (~17.4k). Later copies are dropped even
   when their ground truth differs; such disagreements are counted
   (``dedup_conflicting_answers``).
2. Answers (``Dataset.answer_rule``; ``polarity.data.answers``): rows with a missing question or
   an empty/missing ground truth are dropped and counted (``no_answer_dropped``). ``"field"``:
   the field as text (AIME's integers ``"33"``, AMC's floats ``27.0`` -> ``"27"``);
   ``"last_boxed"`` (MATH): the content of the solution's last ``\\boxed{}``/``\\fbox{}`` by the
   scorer's rule (``polarity.reward``: the box that opens last; a solution whose last box is
   unclosed or empty is dropped); ``"answer_list"`` (OlympiadBench): the answers without their
   ``$...$``, joined with ``", "`` (``["$2$", "$3$"]`` -> ``"2, 3"``, checked as a set).
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
from collections.abc import Hashable, Sequence

import pandas as pd

from polarity.data.answers import ground_truths
from polarity.data.registry import Dataset, get_benchmark, get_train_set
from polarity.data.rows import (
    PROMPT_TEMPLATES,
    PromptTemplate,
    make_row,
    rows_to_frame,
    write_parquet,
)
from polarity.data.sources import column, label, read_source_tables

__all__ = [
    "load_benchmark",
    "load_hub_rows",
    "load_train_dataset",
    "prepare_benchmark",
    "stratified_sample_indices",
]

log = logging.getLogger(__name__)


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
# The loader


def _resolve_template(template: str | PromptTemplate | None, spec: Dataset):
    if template is None:
        return spec.template
    if isinstance(template, PromptTemplate):
        return template
    if template not in PROMPT_TEMPLATES:
        raise KeyError(
            f"unknown prompt template {template!r}; known: {', '.join(sorted(PROMPT_TEMPLATES))}"
        )
    return template


def load_hub_rows(
    spec: Dataset,
    *,
    source: str | os.PathLike | None = None,
    template: str | PromptTemplate | None = None,
    seed: int = 0,
    limit: int | None = None,
) -> pd.DataFrame:
    """The rows of ``spec`` (a training set or a benchmark) in verl's format.

    The shared core of ``load_train_dataset`` and ``load_benchmark``: reads ``source``
    (``None``: the hub; else a local copy, see ``sources.read_source_tables``), applies the
    rules of the module docstring and returns a DataFrame with exactly ``rows.ROW_COLUMNS``, in
    source order, ``data_source`` = ``spec.data_source``. ``template`` overrides the spec's
    prompt template (a name in ``rows.PROMPT_TEMPLATES`` or a ``PromptTemplate``). ``seed``
    selects a stratified subset (ignored without one). ``limit`` keeps the first ``limit``
    rows. The counts of dropped rows are in ``frame.attrs["load_stats"]``.

    Raises ``KeyError`` for an unknown template, ``ValueError`` for an entry the synthetic data
    stage makes and when the source lacks a required field (the message names the dataset and
    the field), ``FileNotFoundError`` for a missing local source.
    """
    if not spec.is_hub:
        raise ValueError(
            f"{label(spec)} is made by the {spec.source} data stage "
            "(rule prepare_synthetic), not loaded from the hub"
        )
    name = spec.name
    tpl = _resolve_template(template, spec)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")

    parts = read_source_tables(spec, source)
    questions_col = column(spec, parts, spec.question_field, required=True)
    answers_col = column(spec, parts, spec.answer_field, required=True)
    extra_cols = {
        key: column(spec, parts, field, required=True) for key, field in spec.extra_fields
    }
    for key, field in spec.optional_extra_fields:
        col = column(spec, parts, field, required=False)
        if col is not None:
            extra_cols[key] = col
    strata_cols = [column(spec, parts, field, required=True) for field in spec.strata]
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
                label(spec), rows_in, spec.expected_rows, spec.hub_id,
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
    answers = ground_truths(spec.answer_rule, answers_col.values(idx))
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
    template: str | PromptTemplate | None = None,
    seed: int = 0,
    limit: int | None = None,
) -> pd.DataFrame:
    """Load training set ``name`` (a key of ``registry.TRAIN_SETS``) as verl rows.

    ``source=None`` loads the hub id; a path loads a local copy in the same schema (see
    ``sources.read_source_table``). ``template`` overrides the registry's prompt template (a
    name in ``rows.PROMPT_TEMPLATES``). ``seed`` selects the stratified subset
    (``math-stratified-25``; ignored otherwise). ``limit`` keeps the first ``limit`` rows after
    deduplication and subsetting. Returns a DataFrame with exactly ``rows.ROW_COLUMNS``, in
    source order; the counts of dropped rows are in ``frame.attrs["load_stats"]``.

    Raises ``KeyError`` for an unknown name or template, ``ValueError`` when the source lacks a
    required field (the message names the dataset and the field).
    """
    spec = get_train_set(name)
    return load_hub_rows(spec, source=source, template=template, seed=seed, limit=limit)


def load_benchmark(
    name: str,
    *,
    source: str | os.PathLike | None = None,
    template: str | PromptTemplate | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """Hub benchmark ``name`` (a key of ``registry.BENCHMARKS``) as verl rows.

    ``source=None`` loads the hub (network or HF cache); a path loads a local copy in the
    source's own schema (for ``aime25``, a directory with one entry per config). ``template``
    overrides the prompt template (a name in ``rows.PROMPT_TEMPLATES``; default
    ``"qwen-boxed"``). ``limit`` keeps the first ``limit`` problems. Returns a DataFrame with
    exactly ``rows.ROW_COLUMNS`` in source order; ``frame.attrs["load_stats"]`` counts the rows
    read and dropped.

    Raises ``KeyError`` for an unknown benchmark or template, ``ValueError`` for
    ``synthetic-arith-test`` (made by the synthetic data stage) and when the source lacks a
    required field (the message names the benchmark and the field), ``FileNotFoundError`` for
    a missing local source.
    """
    return load_hub_rows(get_benchmark(name), source=source, template=template, limit=limit)


def prepare_benchmark(
    name: str,
    out_path: str | os.PathLike,
    *,
    source: str | os.PathLike | None = None,
    template: str | PromptTemplate | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """``load_benchmark(name, ...)`` written atomically to ``out_path`` (parquet); the frame."""
    frame = load_benchmark(name, source=source, template=template, limit=limit)
    write_parquet(frame, out_path)
    stats = frame.attrs.get("load_stats", {})
    log.info(
        "%s: %d problems (%d read, %d without an answer) -> %s",
        name, len(frame), stats.get("rows_in", 0), stats.get("no_answer_dropped", 0), out_path,
    )
    return frame
