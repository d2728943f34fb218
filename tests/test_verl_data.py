"""Tests for polarity.backends.verl.data: verl's RLHFDataset over our parquet, length checks.

verl 0.9's ``RLHFDataset`` items hold the chat messages (``raw_prompt``), not token ids: the
agent loop tokenizes them at rollout time with a Continuous Token builder and left-pads to
``rollout.prompt_length``. The tests tokenize the dataset items with verl's own builder and pad
them the way ``AgentLoopWorker._pad_token_ids`` does (that module needs uvicorn/Ray to import),
then compare with ``prompt_lengths``.
"""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import torch

from polarity.backends.verl import data as data_mod
from .helpers import make_data, make_untrained_model

MAX_PROMPT = 48  # the synthetic prompts are ~26 tokens with the tiny tokenizer


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    """Synthetic parquet splits + the tiny Qwen2 (max_positions 128) and its tokenizer."""
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("verl-data")
    data = make_data(folder)
    model_dir = make_untrained_model(folder, data)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    return data, model_dir, tokenizer


@pytest.fixture(scope="module")
def dataset(fixtures):
    data, _, tokenizer = fixtures
    return data_mod.load_rlhf_dataset(data["train"], tokenizer, max_prompt_tokens=MAX_PROMPT)


def _rollout_prompt(tokenizer, model_dir, messages, max_length):
    """(input_ids, attention_mask, position_ids) of one prompt as verl's agent loop builds them."""
    from verl.utils.model import compute_position_id_with_mask
    from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

    model_type = json.loads((model_dir / "config.json").read_text())["model_type"]
    builder = create_continuous_token_builder(tokenizer, hf_model_type=model_type, chat_template_kwargs={})
    ids = builder.build_initial_tokens(list(messages))
    tokenizer.padding_side = "left"  # as AgentLoopWorker._pad_token_ids for prompts
    padded = tokenizer.pad(
        {"input_ids": ids}, padding="max_length", max_length=max_length,
        return_tensors="pt", return_attention_mask=True,
    )
    input_ids = padded["input_ids"].reshape(1, -1)
    attention_mask = padded["attention_mask"].reshape(1, -1)
    return input_ids, attention_mask, compute_position_id_with_mask(attention_mask)


def test_dataset_has_every_row_with_ground_truth(fixtures, dataset):
    data, _, _ = fixtures
    frame = pd.read_parquet(data["train"])
    assert len(dataset) == len(frame)
    for i in (0, len(frame) - 1):
        item, row = dataset[i], frame.iloc[i]
        assert item["data_source"] == row["data_source"]
        assert item["reward_model"]["ground_truth"] == row["reward_model"]["ground_truth"]
        assert item["reward_model"]["ground_truth"] == row["extra_info"]["answer"]
        assert item["index"] == row["extra_info"]["index"]  # verl copies extra_info.index
        assert item["raw_prompt"] == [dict(m) for m in row["prompt"]]
        assert "input_ids" not in item  # tokenization happens in verl's agent loop


def test_rollout_tokenization_matches_prompt_lengths(fixtures, dataset):
    data, model_dir, tokenizer = fixtures
    lengths = data_mod.prompt_lengths(data["train"], tokenizer)
    assert len(lengths) == len(dataset)
    assert len(set(lengths)) > 1  # the check is not vacuous
    for i in range(len(dataset)):
        item = dataset[i]
        input_ids, attention_mask, position_ids = _rollout_prompt(
            tokenizer, model_dir, item["raw_prompt"], MAX_PROMPT
        )
        assert input_ids.shape == attention_mask.shape == position_ids.shape == (1, MAX_PROMPT)
        assert int(attention_mask.sum()) == lengths[i]
        assert int(position_ids.max()) == lengths[i] - 1
        if i == 0:
            text = tokenizer.decode(input_ids[0][attention_mask[0].bool()])
            question = item["extra_info"]["question"]
            assert question in text
            assert text.endswith("<|im_start|>assistant\n")
            pad = tokenizer.pad_token_id
            assert torch.all(input_ids[0, : MAX_PROMPT - lengths[i]] == pad)  # left padded


def test_verl_filter_agrees_with_prompt_lengths(fixtures):
    """RLHFDataset's filter_overlong_prompts keeps exactly the rows prompt_lengths says fit."""
    data, _, tokenizer = fixtures
    lengths = data_mod.prompt_lengths(data["train"], tokenizer)
    limit = sorted(lengths)[len(lengths) // 2]
    kept = data_mod.load_rlhf_dataset(data["train"], tokenizer, max_prompt_tokens=limit)
    assert len(kept) == sum(n <= limit for n in lengths) < len(lengths)


def test_check_lengths_passes_and_summarizes(fixtures):
    data, _, tokenizer = fixtures
    lengths = data_mod.prompt_lengths(data["train"], tokenizer)
    summary = data_mod.check_lengths(data["train"], tokenizer, max_prompt_tokens=MAX_PROMPT,
                                     max_response_tokens=128 - MAX_PROMPT)
    assert summary["n_rows"] == len(lengths) == 64
    assert summary["max"] == max(lengths)
    assert min(lengths) <= summary["p50"] <= summary["p99"] <= summary["max"]
    assert summary["max_model_len"] == 128  # from the tiny model's config.json


def test_check_lengths_rejects_long_prompts(fixtures):
    data, _, tokenizer = fixtures
    lengths = data_mod.prompt_lengths(data["train"], tokenizer)
    limit = max(lengths) - 1
    n_over = sum(n > limit for n in lengths)
    worst = lengths.index(max(lengths))
    expected = (
        f"{n_over} of {len(lengths)} prompts in {data['train']} are longer than "
        f"data.max_prompt_length={limit} tokens (longest {max(lengths)}, row {worst}); "
        "verl would truncate or drop them: raise max_prompt_tokens or filter the data"
    )
    with pytest.raises(ValueError, match=re.escape(expected)):
        data_mod.check_lengths(data["train"], tokenizer, max_prompt_tokens=limit, max_response_tokens=16)


def test_check_lengths_rejects_context_overflow(fixtures):
    data, _, tokenizer = fixtures
    # 48 + 81 = 129 > max_position_embeddings 128 of the tiny model (read from config.json)
    with pytest.raises(ValueError, match=r"= 129 tokens exceeds the model's context of 128 tokens"):
        data_mod.check_lengths(data["train"], tokenizer, max_prompt_tokens=MAX_PROMPT,
                               max_response_tokens=128 - MAX_PROMPT + 1)
    # an explicit max_model_len wins over the config
    with pytest.raises(ValueError, match=r"exceeds the model's context of 64 tokens \(max_model_len\)"):
        data_mod.check_lengths(data["train"], tokenizer, max_prompt_tokens=MAX_PROMPT,
                               max_response_tokens=32, max_model_len=64)
    summary = data_mod.check_lengths(data["train"], tokenizer, max_prompt_tokens=MAX_PROMPT,
                                     max_response_tokens=1000, max_model_len=4096)
    assert summary["max_model_len"] == 4096


def test_chat_template_kwargs_reach_the_template(fixtures, tmp_path):
    """data.apply_chat_template_kwargs are passed on, as verl does (here: a template variable)."""
    data, _, tokenizer = fixtures
    base = data_mod.prompt_lengths(data["train"], tokenizer)
    tok = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    tok.chat_template = "{% if extra %}{{ extra }}{% endif %}" + tok.chat_template
    longer = data_mod.prompt_lengths(data["train"], tok, apply_chat_template_kwargs={"extra": "1 2 3"})
    assert all(b < n for b, n in zip(base, longer))
    assert data_mod.prompt_lengths(data["train"], tok) == base
