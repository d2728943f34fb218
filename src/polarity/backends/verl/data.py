"""Prepared parquet -> verl's ``RLHFDataset``, and prompt-length checks before a launch.

Our prepared files are already in verl's row format (see :mod:`polarity.data.rows`). In verl
0.9 ``RLHFDataset`` items carry the raw chat messages (``raw_prompt``), not token ids: the
agent loop tokenizes at rollout time with ``tokenizer.apply_chat_template(messages,
add_generation_prompt=True, tokenize=True, **data.apply_chat_template_kwargs)``, left-truncates
prompts longer than ``rollout.prompt_length`` (with only a warning) and left-pads to that length.
``RLHFDataset`` with ``filter_overlong_prompts`` silently drops them instead (counting tokens the
same way). Checking lengths here, with the same tokenization, turns both silent outcomes into an
error before any GPU time is spent.

verl is imported inside the functions so importing this module stays cheap.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

__all__ = [
    "check_lengths",
    "load_rlhf_dataset",
    "model_context_length",
    "prompt_lengths",
    "rlhf_data_config",
]

# apply_chat_template kwargs that RLHFDataset's length filter drops to keep tokenization explicit.
_DROPPED_TEMPLATE_KWARGS = ("tokenize", "return_dict", "return_tensors")


def prompt_lengths(
    parquet: Path,
    tokenizer,
    *,
    prompt_key: str = "prompt",
    apply_chat_template_kwargs: dict | None = None,
) -> list[int]:
    """Token length of each row's prompt, tokenized exactly as verl does.

    Mirrors ``RLHFDataset.maybe_filter_out_long_prompts`` (text-only, no tools):
    ``apply_chat_template(messages, add_generation_prompt=True, tokenize=True, **kwargs)`` then
    ``verl.utils.tokenizer.normalize_token_ids`` (transformers 5 returns a ``BatchEncoding``).
    """
    import pyarrow.parquet as pq
    from verl.utils.tokenizer import normalize_token_ids

    kwargs = dict(apply_chat_template_kwargs or {})
    for key in _DROPPED_TEMPLATE_KWARGS:
        kwargs.pop(key, None)
    # pyarrow's to_pylist gives the same plain lists of dicts that `datasets` hands to verl.
    prompts = pq.read_table(parquet, columns=[prompt_key]).column(prompt_key).to_pylist()
    lengths = []
    for row, messages in enumerate(prompts):
        try:
            ids = tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=True, **kwargs
            )
        except Exception as exc:
            raise ValueError(
                f"{parquet}: row {row}: chat template failed on {prompt_key!r}: {exc}"
            ) from exc
        lengths.append(len(normalize_token_ids(ids)))
    return lengths


def model_context_length(tokenizer) -> tuple[int | None, str]:
    """(context length, where it came from) for the model the tokenizer was loaded with.

    ``max_position_embeddings`` from ``config.json`` in the tokenizer's folder
    (``tokenizer.name_or_path``) when there is one, else ``tokenizer.model_max_length`` unless it
    is transformers' "unset" sentinel (a huge number); ``(None, ...)`` if neither is known.
    """
    config = Path(str(getattr(tokenizer, "name_or_path", "") or "")) / "config.json"
    if config.is_file():
        try:
            value = json.loads(config.read_text()).get("max_position_embeddings")
        except (OSError, ValueError):
            value = None
        if isinstance(value, int) and value > 0:
            return value, f"max_position_embeddings in {config}"
    value = getattr(tokenizer, "model_max_length", None)
    if isinstance(value, int) and 0 < value < 10**7:
        return value, "tokenizer.model_max_length"
    return None, "unknown"


def _nearest_rank(sorted_values: list[int], q: float) -> int:
    """The q-quantile (0 < q <= 1) of sorted values by nearest rank; 0 for no values."""
    if not sorted_values:
        return 0
    rank = max(1, math.ceil(q * len(sorted_values) - 1e-9))
    return sorted_values[rank - 1]


def check_lengths(
    parquet: Path,
    tokenizer,
    *,
    max_prompt_tokens: int,
    max_response_tokens: int,
    max_model_len: int | None = None,
    prompt_key: str = "prompt",
    apply_chat_template_kwargs: dict | None = None,
) -> dict:
    """Fail before launch if verl would truncate/drop prompts or exceed the model's context.

    Raises ``ValueError`` when any prompt is longer than ``max_prompt_tokens``
    (``data.max_prompt_length``), or when ``max_prompt_tokens + max_response_tokens`` exceeds the
    context (``max_model_len`` if given, else :func:`model_context_length`). Returns
    ``{"n_rows", "max", "p50", "p99", "max_model_len"}`` (prompt lengths in tokens).
    """
    lengths = prompt_lengths(
        parquet, tokenizer, prompt_key=prompt_key,
        apply_chat_template_kwargs=apply_chat_template_kwargs,
    )
    too_long = [i for i, n in enumerate(lengths) if n > max_prompt_tokens]
    if too_long:
        worst = max(too_long, key=lambda i: lengths[i])
        raise ValueError(
            f"{len(too_long)} of {len(lengths)} prompts in {parquet} are longer than "
            f"data.max_prompt_length={max_prompt_tokens} tokens "
            f"(longest {lengths[worst]}, row {worst}); "
            "verl would truncate or drop them: raise max_prompt_tokens or filter the data"
        )
    source = "max_model_len"
    if max_model_len is None:
        max_model_len, source = model_context_length(tokenizer)
    total = max_prompt_tokens + max_response_tokens
    if max_model_len is not None and total > max_model_len:
        raise ValueError(
            f"data.max_prompt_length={max_prompt_tokens} + "
            f"data.max_response_length={max_response_tokens} "
            f"= {total} tokens exceeds the model's context of {max_model_len} tokens ({source}): "
            "lower max_prompt_tokens or max_response_tokens"
        )
    ordered = sorted(lengths)
    return {
        "n_rows": len(lengths),
        "max": ordered[-1] if ordered else 0,
        "p50": _nearest_rank(ordered, 0.5),
        "p99": _nearest_rank(ordered, 0.99),
        "max_model_len": max_model_len,
    }


def rlhf_data_config(
    max_prompt_tokens: int, *, filter_overlong_prompts: bool = True, **overrides
):
    """verl's own ``data`` defaults (``trainer/config/data/legacy_data.yaml``) with our overrides."""
    import verl
    from omegaconf import OmegaConf

    defaults = Path(verl.__file__).parent / "trainer" / "config" / "data" / "legacy_data.yaml"
    config = OmegaConf.load(defaults)
    config.max_prompt_length = int(max_prompt_tokens)
    config.filter_overlong_prompts = bool(filter_overlong_prompts)
    for key, value in overrides.items():
        OmegaConf.update(config, key, value, force_add=True)
    return config


def load_rlhf_dataset(
    parquet: Path,
    tokenizer,
    *,
    max_prompt_tokens: int,
    filter_overlong_prompts: bool = True,
    **overrides,
):
    """verl's ``RLHFDataset`` over one parquet file, configured from verl's defaults.

    ``overrides`` are extra ``data.*`` keys (e.g. ``apply_chat_template_kwargs``). With
    ``filter_overlong_prompts`` (default) verl drops prompts over ``max_prompt_tokens``, so a
    length below the file's row count means some were dropped.
    """
    from verl.utils.dataset.rl_dataset import RLHFDataset

    config = rlhf_data_config(
        max_prompt_tokens, filter_overlong_prompts=filter_overlong_prompts, **overrides
    )
    return RLHFDataset(data_files=[str(parquet)], tokenizer=tokenizer, config=config)
