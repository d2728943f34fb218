"""The dataset registry: every dataset the workflow prepares, training set or benchmark.

One entry type (``Dataset``) and one registry (``DATASETS``, name -> entry); ``TRAIN_SETS``,
``BENCHMARKS`` and ``HUB_BENCHMARKS`` are views of it by role. This module imports only the
standard library: the config checks and Snakemake (when it builds the DAG) import it. The
loaders that read an entry's hub id or a local copy are in ``polarity.data.hub`` (which reads
the sources through ``polarity.data.sources`` and makes ground truths with
``polarity.data.answers``).

Every dataset is prepared once into ``results/<study>/data/`` in verl's row format
(``polarity.data.rows``): a training set ``<name>`` into ``<name>-train.parquet``
(``load_train_dataset``; the synthetic task's ``synthetic-arith`` is not a registry entry, the
synthetic data stage makes it), a benchmark into ``<name>.parquet`` (``load_benchmark``; the
synthetic stage makes ``synthetic-arith-test``). ``data_source`` is the entry's name.

Training sets (``role="train"``; the presets' datasets, ``../shared/presets.md``):

======================  =============================================  ========================
name                    source (hub id, split)                         question -> ground truth
======================  =============================================  ========================
``math``                DigitalLearningGmbH/MATH-lighteval, train      ``problem`` -> last
                                                                       ``\\boxed{}`` of
                                                                       ``solution``
``math-stratified-25``  the same, a stratified 25% subset              the same
``dapo-math-17k``       BytedTsinghua-SIA/DAPO-Math-17k, train         ``prompt[0].content``
                        (deduplicated on the prompt text)              -> ``reward_model.
                                                                       ground_truth``
``deepscaler``          agentica-org/DeepScaleR-Preview-Dataset, train ``problem`` ->
                                                                       ``answer``
======================  =============================================  ========================

Benchmarks (``role="benchmark"``), prompted with ``"qwen-boxed"`` unless ``template=`` says
otherwise:

========================  ==========================================  ============  ============
name                      hub id / config / split (problems)          question      ground truth
========================  ==========================================  ============  ============
``synthetic-arith-test``  the synthetic data stage (held-out split)
``math-test``             DigitalLearningGmbH/MATH-lighteval / test   ``problem``   last
                          (5,000)                                                   ``\\boxed{}``
                                                                                    of
                                                                                    ``solution``
``math500``               HuggingFaceH4/MATH-500 / test (500)         ``problem``   ``answer``
``aime24``                HuggingFaceH4/aime_2024 / train (30)        ``problem``   ``answer``
``aime25``                opencompass/AIME2025 / AIME2025-I then      ``question``  ``answer``
                          AIME2025-II / test (15 + 15)
``amc23``                 math-ai/amc23 / test (40)                   ``question``  ``answer``
``minerva``               math-ai/minervamath / test (272)            ``question``  ``answer``
``olympiadbench``         Hothan/OlympiadBench / OE_TO_maths_en_COMP  ``question``  ``final_
                          / train (674)                                             answer``
                                                                                    (a list,
                                                                                    joined)
========================  ==========================================  ============  ============

Field paths (``question_field``, ``answer_field``, the extra fields) name a column, a struct
field (``a.b``) or a list element (``a[0]``), e.g. ``prompt[0].content``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ANSWER_RULES",
    "BENCHMARKS",
    "DATASETS",
    "HUB_BENCHMARKS",
    "ROLES",
    "SOURCES",
    "TRAIN_SETS",
    "Dataset",
    "get_benchmark",
    "get_dataset",
    "get_train_set",
]

# What a dataset is for: RL training data, or a benchmark the policies are evaluated on.
ROLES = ("train", "benchmark")
# Where its rows come from: a hub dataset (or a local copy of one), or the synthetic data stage.
SOURCES = ("hub", "synthetic")
# How the ground truth is made from ``answer_field`` (``polarity.data.answers``):
# "field" (the field as it is, numbers as text), "last_boxed" (the content of the solution's
# last ``\boxed{}``), "answer_list" (a list of answers joined with ", ").
ANSWER_RULES = ("field", "last_boxed", "answer_list")

_HUB_NEEDS = ("hub_id", "split", "question_field", "answer_field", "answer_rule", "template")


@dataclass(frozen=True)
class Dataset:
    """One dataset: what it is for (``role``), where it comes from and how its rows map onto
    verl's format.

    ``source="synthetic"`` entries (made by the synthetic data stage) leave the hub fields
    unset. A hub entry reads ``configs`` in order and concatenates them (``(None,)``: the
    default config; several must all be named); ``answer_rule`` is one of ``ANSWER_RULES``;
    ``expected_rows`` is the number of rows in the full hub split, summed over the configs (a
    hub load of another size warns; required for a hub benchmark, where it is the number of
    problems); ``extra_fields`` / ``optional_extra_fields`` are ``(extra_info key, source
    field)`` pairs copied into ``extra_info`` (required in the source / when the source has
    them). ``dedup_on_question`` keeps the first row per exact question text;
    ``subset_fraction`` with ``strata`` keeps a stratified subset (``polarity.data.hub``).
    """

    name: str
    role: str
    description: str
    source: str = "hub"
    hub_id: str | None = None
    configs: tuple[str | None, ...] = (None,)
    split: str | None = None
    question_field: str | None = None
    answer_field: str | None = None
    answer_rule: str | None = "field"
    template: str | None = None
    expected_rows: int | None = None
    extra_fields: tuple[tuple[str, str], ...] = ()
    optional_extra_fields: tuple[tuple[str, str], ...] = ()
    dedup_on_question: bool = False
    subset_fraction: float | None = None
    strata: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(
                f"dataset {self.name!r}: role must be one of {ROLES}, got {self.role!r}"
            )
        if self.source not in SOURCES:
            raise ValueError(
                f"{self.kind} {self.name!r}: source must be one of {SOURCES}, got {self.source!r}"
            )
        if not self.is_hub:
            return
        missing = [f for f in _HUB_NEEDS if getattr(self, f) is None]
        if self.role == "benchmark" and self.expected_rows is None:
            missing.append("expected_rows")
        if not self.configs:
            missing.append("configs")
        if missing:
            raise ValueError(f"{self.kind} {self.name!r}: a hub {self.kind} needs "
                             f"{', '.join(missing)}")
        if self.answer_rule not in ANSWER_RULES:
            raise ValueError(
                f"{self.kind} {self.name!r}: answer_rule must be one of {ANSWER_RULES}, "
                f"got {self.answer_rule!r}"
            )
        if len(self.configs) > 1 and None in self.configs:
            raise ValueError(f"{self.kind} {self.name!r}: several configs must all be named")
        if len(set(self.configs)) != len(self.configs):
            raise ValueError(f"{self.kind} {self.name!r}: configs repeat: {self.configs}")

    @property
    def is_hub(self) -> bool:
        return self.source == "hub"

    @property
    def kind(self) -> str:
        """What messages call it: "dataset 'math'", "benchmark 'aime25'"."""
        return "benchmark" if self.role == "benchmark" else "dataset"

    @property
    def data_source(self) -> str:
        """The rows' ``data_source`` (verl picks the reward function by it): the name."""
        return self.name

    @property
    def required_fields(self) -> tuple[str, ...]:
        """The source fields a load needs (question, answer, required extras, strata)."""
        fields = [self.question_field, self.answer_field]
        fields += [f for _, f in self.extra_fields]
        fields += list(self.strata)
        return tuple(f for f in dict.fromkeys(fields) if f is not None)


_MATH_ID = "DigitalLearningGmbH/MATH-lighteval"
_MATH_FIELDS = dict(
    hub_id=_MATH_ID,
    question_field="problem",
    answer_field="solution",
    answer_rule="last_boxed",
    extra_fields=(("level", "level"), ("type", "type")),
)


def _train(**fields) -> Dataset:
    return Dataset(role="train", **fields)


def _bench(**fields) -> Dataset:
    """A hub benchmark; by default one unnamed config, the answer field as it is, and the Qwen
    boxed prompt."""
    return Dataset(**{"role": "benchmark", "template": "qwen-boxed", **fields})


_ENTRIES = (
    # ---------------------------------------------------------------- training sets
    _train(
        name="math",
        description="MATH train (7,500); answer = last \\boxed{} of the solution.",
        split="train",
        # verl's MATH preprocessing; Zhu et al. used "qwen-boxed" (pass template=...).
        template="verl-math",
        **_MATH_FIELDS,
    ),
    _train(
        name="math-stratified-25",
        description=(
            "MATH train, stratified 25% by (type, level): max(1, round(0.25 * size)) per "
            "stratum, chosen by a seeded hash of the problem."
        ),
        split="train",
        template="verl-math",
        subset_fraction=0.25,
        strata=("type", "level"),
        **_MATH_FIELDS,
    ),
    _train(
        name="dapo-math-17k",
        description="DAPO-Math-17k, deduplicated on the prompt text (~1.79M -> ~17.4k).",
        hub_id="BytedTsinghua-SIA/DAPO-Math-17k",
        split="train",
        question_field="prompt[0].content",
        answer_field="reward_model.ground_truth",
        # The prompt already carries its instructions (a last line "Answer: $Answer").
        template="plain",
        optional_extra_fields=(
            ("source_index", "extra_info.index"),
            ("source_data_source", "data_source"),
        ),
        dedup_on_question=True,
    ),
    _train(
        name="deepscaler",
        description="DeepScaleR-Preview (~40k problems).",
        hub_id="agentica-org/DeepScaleR-Preview-Dataset",
        split="train",
        question_field="problem",
        answer_field="answer",
        template="qwen-boxed",
    ),
    # ---------------------------------------------------------------- benchmarks
    Dataset(
        name="synthetic-arith-test",
        role="benchmark",
        description="held-out split of the synthetic arithmetic task",
        source="synthetic",
        configs=(),
        answer_rule=None,
    ),
    _bench(
        name="math-test",
        description="MATH test, all 5,000 problems; answer = last \\boxed{} of the solution.",
        split="test",
        expected_rows=5000,
        **_MATH_FIELDS,
    ),
    _bench(
        name="math500",
        description="MATH-500, the 500-problem MATH test subset of Lightman et al.",
        hub_id="HuggingFaceH4/MATH-500",
        split="test",
        question_field="problem",
        answer_field="answer",
        expected_rows=500,
        optional_extra_fields=(
            ("subject", "subject"),
            ("level", "level"),
            ("unique_id", "unique_id"),
        ),
    ),
    _bench(
        name="aime24",
        description="AIME 2024 I and II, 30 problems; integer answers.",
        hub_id="HuggingFaceH4/aime_2024",
        split="train",
        question_field="problem",
        answer_field="answer",
        expected_rows=30,
        optional_extra_fields=(("id", "id"), ("url", "url")),
    ),
    _bench(
        name="aime25",
        description="AIME 2025 I then II (two hub configs, concatenated), 30 problems.",
        hub_id="opencompass/AIME2025",
        configs=("AIME2025-I", "AIME2025-II"),
        split="test",
        question_field="question",
        answer_field="answer",
        expected_rows=30,
    ),
    _bench(
        name="amc23",
        description="AMC 2023, 40 problems.",
        hub_id="math-ai/amc23",
        split="test",
        question_field="question",
        answer_field="answer",
        expected_rows=40,
        optional_extra_fields=(("id", "id"), ("url", "url")),
    ),
    _bench(
        name="minerva",
        description="Minerva Math (OCWCourses), 272 problems.",
        hub_id="math-ai/minervamath",
        split="test",
        question_field="question",
        answer_field="answer",
        expected_rows=272,
    ),
    _bench(
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
        expected_rows=674,
        extra_fields=(("id", "id"), ("final_answer", "final_answer")),
        optional_extra_fields=(
            ("answer_type", "answer_type"),
            ("is_multiple_answer", "is_multiple_answer"),
            ("unit", "unit"),
            ("subfield", "subfield"),
        ),
    ),
)

# Every dataset by name, training sets first, then benchmarks, each in the order above.
DATASETS: dict[str, Dataset] = {d.name: d for d in _ENTRIES}
if len(DATASETS) != len(_ENTRIES):  # pragma: no cover - a registry typo
    raise ValueError("polarity.data.registry: two entries share a name")

# Views by role (the config's train_data names, less synthetic-arith; its benchmark names).
TRAIN_SETS: dict[str, Dataset] = {n: d for n, d in DATASETS.items() if d.role == "train"}
BENCHMARKS: dict[str, Dataset] = {n: d for n, d in DATASETS.items() if d.role == "benchmark"}
# The benchmarks ``load_benchmark``/``prepare_benchmark`` load (the rest the synthetic stage
# makes), in registry order: data.smk's wildcard constraint.
HUB_BENCHMARKS: tuple[str, ...] = tuple(n for n, b in BENCHMARKS.items() if b.is_hub)


def get_dataset(name: str, role: str | None = None) -> Dataset:
    """The entry ``name`` (of ``role``, when given); ``KeyError`` naming the known ones."""
    if role is not None and role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    if role == "train":
        return get_train_set(name)
    if role == "benchmark":
        return get_benchmark(name)
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


def get_train_set(name: str) -> Dataset:
    """The training set ``name``; ``KeyError`` naming every known training set otherwise."""
    try:
        return TRAIN_SETS[name]
    except KeyError:
        raise KeyError(
            f"unknown training dataset {name!r}; known: {', '.join(sorted(TRAIN_SETS))}"
        ) from None


def get_benchmark(name: str) -> Dataset:
    """The benchmark ``name``; ``KeyError`` naming every known benchmark otherwise."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise KeyError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}") from None
