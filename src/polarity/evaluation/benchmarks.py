"""The benchmark registry and loaders: name -> where its prepared parquet comes from.

Every benchmark is evaluated from ``results/<study>/data/<name>.parquet`` in the verl row format
(``polarity.data.rows``). ``synthetic-arith-test`` is written by the synthetic data stage; the
hub benchmarks are loaded by ``load_benchmark`` / ``prepare_benchmark``, which share their loader
core (``polarity.data.hub.load_hub_rows``) with the training sets:

=================  ============================================  ===========  ==================
name               hub id / config / split (problems)            question     ground truth
=================  ============================================  ===========  ==================
``math-test``      DigitalLearningGmbH/MATH-lighteval / test     ``problem``  last ``\\boxed{}``
                   (5,000)                                                    of ``solution``
``math500``        HuggingFaceH4/MATH-500 / test (500)           ``problem``  ``answer``
``aime24``         HuggingFaceH4/aime_2024 / train (30)          ``problem``  ``answer``
``aime25``         opencompass/AIME2025 / AIME2025-I then        ``question`` ``answer``
                   AIME2025-II / test (15 + 15)
``amc23``          math-ai/amc23 / test (40)                     ``question`` ``answer``
``minerva``        math-ai/minervamath / test (272)              ``question`` ``answer``
``olympiadbench``  Hothan/OlympiadBench / OE_TO_maths_en_COMP /  ``question`` ``final_answer``
                   train (674)                                                (a list, joined)
=================  ============================================  ===========  ==================

Every hub benchmark is prompted with ``"qwen-boxed"`` unless ``template=`` says otherwise. Rows
have exactly ``rows.ROW_COLUMNS``, ``data_source`` = the benchmark name and ``extra_info`` with
``split``, ``index`` (the row position in the source split), ``question``, ``answer`` and the
fields the registry keeps (MATH's ``level``/``type``, MATH-500's ``subject``/``level``/
``unique_id``, OlympiadBench's ``id`` and raw ``final_answer``, ...).

Ground truths (``answer_rule``; ``polarity.data.hub``, rule 2): numbers become text (AIME's
integer answers ``"33"``, AMC's float answers ``27.0`` -> ``"27"``); OlympiadBench's
``final_answer`` list has each answer's ``$...$`` removed, one answer is itself and several are
joined with ``", "`` (``["$2$", "$3$"]`` -> ``"2, 3"``), which math-verify checks as a set. Rows
whose ground truth is empty are dropped and counted (``load_stats["no_answer_dropped"]``).

Local copies (``source=``) are in the source's own schema: a ``.parquet``/``.jsonl``/``.json``
file, a ``save_to_disk`` directory or a directory of parquet files. ``aime25`` has two configs:
its local copy is a directory with one entry per config, ``AIME2025-I.jsonl`` and
``AIME2025-II.jsonl`` (or ``.parquet``/``.json`` files, or ``AIME2025-I/`` and ``AIME2025-II/``
sub-directories; names matched case-insensitively, so a download of the hub repository, whose
files are ``aime2025-I.jsonl`` and ``aime2025-II.jsonl``, works as it is). Its rows are the two
configs concatenated in that order: ``extra_info["index"]`` continues across them (0-14 for I,
15-29 for II on the full data), ``extra_info["config"]`` names the config and
``extra_info["config_index"]`` is the position within it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the registry stays importable without pandas (config checks import it)
    import pandas as pd

    from polarity.data.hub import HubDataset
    from polarity.data.rows import PromptTemplate

__all__ = [
    "BENCHMARKS",
    "HUB_BENCHMARKS",
    "Benchmark",
    "get_benchmark",
    "load_benchmark",
    "prepare_benchmark",
]

log = logging.getLogger(__name__)

SOURCES = ("synthetic", "hub")


@dataclass(frozen=True)
class Benchmark:
    """One benchmark. ``source`` is ``"synthetic"`` (made by the data stage) or ``"hub"``.

    The other fields describe a hub benchmark (``None``/empty for a synthetic one):
    ``configs`` are read in order and concatenated (``(None,)``: the default config);
    ``answer_rule`` is one of ``polarity.data.hub.ANSWER_RULES``; ``problems`` is the number of
    rows in the full hub split, summed over the configs (a hub load of another size warns);
    ``extra_fields`` / ``optional_extra_fields`` are ``(extra_info key, source field)`` pairs
    copied into ``extra_info`` (required / when the source has them).
    """

    name: str
    description: str
    source: str
    hub_id: str | None = None
    configs: tuple[str | None, ...] = ()
    split: str | None = None
    question_field: str | None = None
    answer_field: str | None = None
    answer_rule: str | None = None
    template: str | None = None
    problems: int | None = None
    extra_fields: tuple[tuple[str, str], ...] = ()
    optional_extra_fields: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"benchmark {self.name!r}: source must be one of {SOURCES}")
        if self.source == "hub":
            needed = ("hub_id", "split", "question_field", "answer_field", "answer_rule",
                      "template", "problems")
            missing = [f for f in needed if getattr(self, f) is None]
            if missing or not self.configs:
                raise ValueError(
                    f"benchmark {self.name!r}: a hub benchmark needs "
                    f"{', '.join(missing + ([] if self.configs else ['configs']))}"
                )
            if len(self.configs) > 1 and None in self.configs:
                raise ValueError(f"benchmark {self.name!r}: several configs must all be named")

    @property
    def is_hub(self) -> bool:
        return self.source == "hub"

    def hub_spec(self) -> HubDataset:
        """The loader spec (``polarity.data.hub.HubDataset``) of a hub benchmark."""
        from polarity.data.hub import HubDataset

        if not self.is_hub:
            raise ValueError(
                f"benchmark {self.name!r} is made by the {self.source} data stage "
                "(rule prepare_synthetic), not loaded from the hub"
            )
        several = len(self.configs) > 1
        return HubDataset(
            name=self.name,
            hub_id=self.hub_id,
            config=None if several else self.configs[0],
            configs=tuple(self.configs) if several else (),
            split=self.split,
            question_field=self.question_field,
            answer_field=self.answer_field,
            answer_from=self.answer_rule,
            template=self.template,
            data_source=self.name,
            extra_fields=self.extra_fields,
            optional_extra_fields=self.optional_extra_fields,
            description=self.description,
            expected_rows=self.problems,
            kind="benchmark",
        )


_MATH_ID = "DigitalLearningGmbH/MATH-lighteval"


def _hub(**fields) -> Benchmark:
    """A hub benchmark; by default one unnamed config, the answer field as it is, and the
    Qwen boxed prompt."""
    defaults = dict(source="hub", configs=(None,), answer_rule="field", template="qwen-boxed")
    return Benchmark(**{**defaults, **fields})


BENCHMARKS: dict[str, Benchmark] = {
    "synthetic-arith-test": Benchmark(
        "synthetic-arith-test", "held-out split of the synthetic arithmetic task", "synthetic"
    ),
    "math-test": _hub(
        name="math-test",
        description="MATH test, all 5,000 problems; answer = last \\boxed{} of the solution.",
        hub_id=_MATH_ID,
        split="test",
        question_field="problem",
        answer_field="solution",
        answer_rule="last_boxed",
        problems=5000,
        extra_fields=(("level", "level"), ("type", "type")),
    ),
    "math500": _hub(
        name="math500",
        description="MATH-500, the 500-problem MATH test subset of Lightman et al.",
        hub_id="HuggingFaceH4/MATH-500",
        split="test",
        question_field="problem",
        answer_field="answer",
        problems=500,
        optional_extra_fields=(
            ("subject", "subject"),
            ("level", "level"),
            ("unique_id", "unique_id"),
        ),
    ),
    "aime24": _hub(
        name="aime24",
        description="AIME 2024 I and II, 30 problems; integer answers.",
        hub_id="HuggingFaceH4/aime_2024",
        split="train",
        question_field="problem",
        answer_field="answer",
        problems=30,
        optional_extra_fields=(("id", "id"), ("url", "url")),
    ),
    "aime25": _hub(
        name="aime25",
        description="AIME 2025 I then II (two hub configs, concatenated), 30 problems.",
        hub_id="opencompass/AIME2025",
        configs=("AIME2025-I", "AIME2025-II"),
        split="test",
        question_field="question",
        answer_field="answer",
        problems=30,
    ),
    "amc23": _hub(
        name="amc23",
        description="AMC 2023, 40 problems.",
        hub_id="math-ai/amc23",
        split="test",
        question_field="question",
        answer_field="answer",
        problems=40,
        optional_extra_fields=(("id", "id"), ("url", "url")),
    ),
    "minerva": _hub(
        name="minerva",
        description="Minerva Math (OCWCourses), 272 problems.",
        hub_id="math-ai/minervamath",
        split="test",
        question_field="question",
        answer_field="answer",
        problems=272,
    ),
    "olympiadbench": _hub(
        name="olympiadbench",
        description=(
            "OlympiadBench, open-ended text-only English competition maths, 674 problems; "
            "several final answers are joined with ', '."
        ),
        hub_id="Hothan/OlympiadBench",
        configs=("OE_TO_maths_en_COMP",),
        split="train",
        question_field="question",
        answer_field="final_answer",
        answer_rule="answer_list",
        problems=674,
        extra_fields=(("id", "id"), ("final_answer", "final_answer")),
        optional_extra_fields=(
            ("answer_type", "answer_type"),
            ("is_multiple_answer", "is_multiple_answer"),
            ("unit", "unit"),
            ("subfield", "subfield"),
        ),
    ),
}

# The benchmarks ``load_benchmark``/``prepare_benchmark`` load, in registry order.
HUB_BENCHMARKS: tuple[str, ...] = tuple(n for n, b in BENCHMARKS.items() if b.is_hub)


def get_benchmark(name: str) -> Benchmark:
    """The registry entry ``name``; ``KeyError`` naming every known benchmark otherwise."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise KeyError(
            f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}"
        ) from None


def load_benchmark(
    name: str,
    *,
    source: str | os.PathLike | None = None,
    template: str | PromptTemplate | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """Hub benchmark ``name`` as verl rows (see the module docstring).

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
    from polarity.data.hub import load_hub_rows

    bench = get_benchmark(name)
    return load_hub_rows(bench.hub_spec(), source=source, template=template, limit=limit)


def prepare_benchmark(
    name: str,
    out_path: str | os.PathLike,
    *,
    source: str | os.PathLike | None = None,
    template: str | PromptTemplate | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """``load_benchmark(name, ...)`` written atomically to ``out_path`` (parquet); the frame."""
    from polarity.data.rows import write_parquet

    frame = load_benchmark(name, source=source, template=template, limit=limit)
    write_parquet(frame, out_path)
    stats = frame.attrs.get("load_stats", {})
    log.info(
        "%s: %d problems (%d read, %d without an answer) -> %s",
        name, len(frame), stats.get("rows_in", 0), stats.get("no_answer_dropped", 0), out_path,
    )
    return frame
