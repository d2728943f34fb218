"""Sampling responses from a causal LM: the ``hf`` engine (transformers, CPU or one GPU).

Both the local trainer's rollouts and the evaluation use ``sample``. The ``vllm`` engine lives
in ``vllm_engine.py`` and is imported only when a config asks for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Rollouts:
    """Responses for a list of prompts, n each, in prompt-major order (prompt i: rows i*n..)."""

    prompt_ids: torch.Tensor  # [B, P] left-padded
    prompt_mask: torch.Tensor  # [B, P]
    response_ids: torch.Tensor  # [B, T] right-padded with pad_token_id
    response_mask: torch.Tensor  # [B, T] 1 on response tokens (eos included)
    texts: list[str]  # decoded responses, special tokens removed
    truncated: torch.Tensor  # [B] bool: hit max_new_tokens without eos

    @property
    def lengths(self) -> torch.Tensor:
        return self.response_mask.sum(dim=-1)


def render_prompts(tokenizer, prompts: list[list[dict]]) -> list[str]:
    """Chat messages -> prompt strings with the tokenizer's chat template."""
    return [
        tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        for msgs in prompts
    ]


# splitmix64's constants as signed int64 (torch has no uint64 arithmetic)
_GOLDEN = 0x9E3779B97F4A7C15 - 2**64
_MIX1 = 0xBF58476D1CE4E5B9 - 2**64
_MIX2 = 0x94D049BB133111EB - 2**64


def _shr(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's ``>>`` is arithmetic)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def mix64(x: torch.Tensor) -> torch.Tensor:
    """splitmix64's finalizer on int64 tensors (wrap-around arithmetic): a counter-based hash."""
    x = x + _GOLDEN
    x = (x ^ _shr(x, 30)) * _MIX1
    x = (x ^ _shr(x, 27)) * _MIX2
    return x ^ _shr(x, 31)


def row_streams(seed: int, keys: list[int], n: int) -> torch.Tensor:
    """One random stream per response, ``[len(keys) * n]`` int64: a hash of (seed, the
    prompt's key, the repeat index), so a response's randomness is its own, not its batch's."""
    key = torch.tensor([int(k) for k in keys], dtype=torch.int64).repeat_interleave(n)
    repeat = torch.arange(n, dtype=torch.int64).repeat(len(keys))
    return mix64(mix64(mix64(torch.tensor(int(seed) % 2**63, dtype=torch.int64)) ^ key) ^ repeat)


def gumbel_noise(streams: torch.Tensor, step: int, vocab: int) -> torch.Tensor:
    """``[B, vocab]`` standard Gumbel noise for decoding step ``step`` of each stream."""
    counter = step * vocab + torch.arange(vocab, dtype=torch.int64)
    bits = _shr(mix64(streams[:, None] ^ mix64(counter)[None, :]), 11)  # 53 random bits
    uniform = (bits.double() + 0.5) * 2.0**-53  # in (0, 1)
    return -torch.log(-torch.log(uniform))


def choose_tokens(logits: torch.Tensor, noise: torch.Tensor | None, temperature: float,
                  top_p: float) -> torch.Tensor:
    """The next token of each row: argmax(logits / T + Gumbel) over the nucleus (the smallest
    set of tokens whose probability reaches ``top_p``), an exact sample from the nucleus's
    renormalized softmax; greedy when ``noise`` is None (temperature 0)."""
    if noise is None:
        return logits.argmax(dim=-1)
    scaled = logits.double() / temperature
    if top_p < 1.0:
        probs, order = torch.sort(scaled.softmax(dim=-1), dim=-1, descending=True)
        outside = (probs.cumsum(dim=-1) - probs) >= top_p  # the mass before it already >= p
        outside[:, 0] = False
        scaled = scaled.masked_fill(
            torch.zeros_like(outside).scatter(-1, order, outside), float("-inf"))
    return (scaled + noise).argmax(dim=-1)


@torch.no_grad()
def decode(model, input_ids, attention_mask, streams, *, temperature: float, top_p: float,
           max_new_tokens: int, eos: int, pad: int) -> torch.Tensor:
    """Autoregressive sampling with the KV cache from left-padded prompts; ``[B, <=T]`` tokens,
    pad after each row's eos. Row r's tokens depend only on its prompt and ``streams[r]``."""
    device = input_ids.device
    mask = attention_mask
    positions = (mask.cumsum(dim=-1) - 1).clamp(min=0)
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True)
    past, logits = out.past_key_values, out.logits[:, -1, :]
    last = positions[:, -1]
    finished = torch.zeros(len(input_ids), dtype=torch.bool, device=device)
    tokens = []
    for step in range(max_new_tokens):
        noise = (gumbel_noise(streams, step, logits.shape[-1]).to(device)
                 if temperature > 0 else None)
        token = choose_tokens(logits.float(), noise, temperature, top_p)
        token = torch.where(finished, torch.full_like(token, pad), token)
        tokens.append(token)
        finished |= token == eos
        if bool(finished.all()) or step == max_new_tokens - 1:
            break
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
        last = last + 1
        out = model(input_ids=token[:, None], attention_mask=mask, position_ids=last[:, None],
                    past_key_values=past, use_cache=True)
        past, logits = out.past_key_values, out.logits[:, -1, :]
    return torch.stack(tokens, dim=1)


@torch.no_grad()
def sample(
    model,
    tokenizer,
    prompts: list[list[dict]],
    n: int,
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int = 32,
    seed: int = 0,
    batch_size: int = 512,
    keys: list[int] | None = None,
) -> Rollouts:
    """Sample n responses per prompt (each prompt repeated n times), in batches.

    Response j of prompt i draws its randomness from its own stream, a hash of (seed,
    ``keys[i]``, j) (keys: e.g. problem ids; default: the prompt's index), so a response does
    not depend on ``batch_size`` or on which other prompts share the call."""
    device = next(model.parameters()).device
    texts = render_prompts(tokenizer, prompts)
    repeated = [t for t in texts for _ in range(n)]
    enc = tokenizer(repeated, return_tensors="pt", padding=True, padding_side="left",
                    add_special_tokens=False)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    streams = row_streams(seed, list(range(len(prompts))) if keys is None else keys, n)
    chunks = []
    for start in range(0, len(repeated), batch_size):
        ids = enc["input_ids"][start:start + batch_size]
        mask = enc["attention_mask"][start:start + batch_size]
        trim = int((mask.sum(dim=0) == 0).sum())  # columns that are padding in every row
        chunks.append(decode(
            model, ids[:, trim:].to(device), mask[:, trim:].to(device),
            streams[start:start + batch_size], temperature=temperature, top_p=top_p,
            max_new_tokens=max_new_tokens, eos=eos, pad=pad,
        ).cpu())
    width = max(c.shape[1] for c in chunks)
    response = torch.cat(
        [torch.nn.functional.pad(c, (0, width - c.shape[1]), value=pad) for c in chunks]
    )
    # response tokens run up to and including the first eos
    is_eos = response == eos
    after_eos = (is_eos.cumsum(dim=1) - is_eos.long()) > 0
    response_mask = (~after_eos).long()
    response = torch.where(after_eos, torch.full_like(response, pad), response)
    truncated = ~is_eos.any(dim=1)
    decoded = tokenizer.batch_decode(response, skip_special_tokens=True)
    return Rollouts(enc["input_ids"], enc["attention_mask"], response, response_mask,
                    decoded, truncated)
