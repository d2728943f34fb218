"""The row formats stages hand each other: prepared datasets (verl's RL parquet schema) and
evaluation samples (``SAMPLE_COLUMNS``).

verl's ``RLHFDataset`` reads these columns: ``data_source`` (selects the reward function),
``prompt`` (a list of chat messages), ``ability``, ``reward_model`` (``style`` and
``ground_truth``) and ``extra_info`` (free-form; we keep the split, index, raw question and
answer). The local backend and the evaluation read the same files.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..files import atomic_write

ROW_COLUMNS = ["data_source", "prompt", "ability", "reward_model", "extra_info"]

# One row per (problem, sample) of an evaluation, as ``polarity evaluate`` writes it and the
# report reads it; ``reason`` is one of ``polarity.reward.REASONS``.
SAMPLE_COLUMNS = ["problem_id", "sample", "response", "ground_truth", "answer", "correct",
                  "reason", "lenient_only", "response_length", "truncated"]
# What generation alone produces (a shard's responses, before scoring).
RESPONSE_COLUMNS = ["problem_id", "sample", "response", "response_length", "truncated"]


@dataclass(frozen=True)
class PromptTemplate:
    """How a raw question becomes chat messages. ``user`` contains ``{question}``."""

    user: str
    system: str | None = None

    def messages(self, question: str) -> list[dict[str, str]]:
        msgs = []
        if self.system:
            msgs.append({"role": "system", "content": self.system})
        msgs.append({"role": "user", "content": self.user.replace("{question}", question)})
        return msgs


# The templates the papers use (../shared/presets.md), by name.
PROMPT_TEMPLATES: dict[str, PromptTemplate] = {
    # Zhu et al. (negative reinforcement) and the Qwen2.5-Math evaluation.
    "qwen-boxed": PromptTemplate(
        system="You are a helpful assistant.",
        user="{question}\nPlease reason step by step, and put your final answer within \\boxed{}.",
    ),
    # verl's examples/data_preprocess/math_dataset.py.
    "verl-math": PromptTemplate(
        user="{question} Let's think step by step and output the final answer within \\boxed{}."
    ),
    # The question as it is (the synthetic task, and DAPO-Math whose prompt already asks for
    # a final "Answer: $Answer" line).
    "plain": PromptTemplate(user="{question}"),
}


def make_row(
    *,
    data_source: str,
    question: str,
    answer: str,
    split: str,
    index: int,
    template: str | PromptTemplate = "plain",
    ability: str = "math",
    extra: dict | None = None,
) -> dict:
    """One dataset row in verl's format; ``answer`` is the ground truth math-verify checks."""
    tpl = PROMPT_TEMPLATES[template] if isinstance(template, str) else template
    info = {"split": split, "index": int(index), "question": question, "answer": str(answer)}
    if extra:
        info.update(extra)
    return {
        "data_source": data_source,
        "prompt": tpl.messages(question),
        "ability": ability,
        "reward_model": {"style": "rule", "ground_truth": str(answer)},
        "extra_info": info,
    }


def rows_to_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows -> DataFrame with exactly ``ROW_COLUMNS`` (empty input keeps the columns)."""
    return pd.DataFrame(rows, columns=ROW_COLUMNS)


def write_parquet(frame: pd.DataFrame, path) -> None:
    """Write atomically (``polarity.files.atomic_write``): a killed job leaves no half file."""
    atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
