"""The hf sampler: exact nucleus sampling by Gumbel-max, and a response's randomness that is
its own (the same text whatever the batch size or the other prompts in the call)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from polarity.generation.sampling import choose_tokens, gumbel_noise, mix64, row_streams, sample
from polarity.model import load_policy

from .helpers import make_data, make_untrained_model


def test_gumbel_noise_is_standard_gumbel_and_deterministic():
    streams = row_streams(0, list(range(400)), 5)
    noise = gumbel_noise(streams, step=3, vocab=64)
    assert noise.shape == (2000, 64)
    assert torch.equal(noise, gumbel_noise(streams, step=3, vocab=64))
    assert not torch.equal(noise, gumbel_noise(streams, step=4, vocab=64))
    assert float(noise.mean()) == pytest.approx(0.5772, abs=0.01)  # Euler-Mascheroni
    assert float(noise.var()) == pytest.approx(np.pi ** 2 / 6, abs=0.03)
    assert len(set(mix64(torch.arange(10_000)).tolist())) == 10_000


def test_nucleus_sampling_frequencies():
    """p = (0.5, 0.3, 0.15, 0.05), top_p 0.8: the nucleus is {0, 1} (the mass before token 2 is
    already 0.8), sampled as 0.5/0.8 and 0.3/0.8; temperature 1."""
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64)
    logits = probs.log().float().expand(40_000, 4)
    noise = gumbel_noise(row_streams(7, list(range(40_000)), 1), step=0, vocab=4)
    chosen = choose_tokens(logits, noise, temperature=1.0, top_p=0.8)
    freq = torch.bincount(chosen, minlength=4).double() / len(chosen)
    assert freq[2] == 0 and freq[3] == 0
    assert float(freq[0]) == pytest.approx(0.625, abs=0.01)
    full = choose_tokens(logits, noise, temperature=1.0, top_p=1.0)
    freq = torch.bincount(full, minlength=4).double() / len(full)
    assert torch.allclose(freq, probs, atol=0.01)
    assert torch.equal(choose_tokens(logits[:3], None, 1.0, 1.0), torch.zeros(3, dtype=torch.long))


def test_responses_do_not_depend_on_batch_size_or_neighbours(tmp_path):
    data = make_data(tmp_path / "data")
    model, tokenizer = load_policy(make_untrained_model(tmp_path, data))
    prompts = [list(p) for p in pd.read_parquet(data["test"])["prompt"]][:10]
    kwargs = dict(temperature=1.0, top_p=0.95, max_new_tokens=12, seed=5)
    whole = sample(model, tokenizer, prompts, 3, batch_size=512, **kwargs)
    small = sample(model, tokenizer, prompts, 3, batch_size=4, **kwargs)
    tail = sample(model, tokenizer, prompts[6:], 3, keys=[6, 7, 8, 9], **kwargs)
    assert whole.texts == small.texts
    assert whole.texts[18:] == tail.texts
    assert torch.equal(whole.response_ids, small.response_ids)
    other = sample(model, tokenizer, prompts, 3, batch_size=512, **{**kwargs, "seed": 6})
    assert other.texts != whole.texts  # the seed matters
    assert len(set(whole.texts[:3])) > 1  # repeats of one prompt differ
