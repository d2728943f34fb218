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
) -> Rollouts:
    """Sample n responses per prompt (each prompt repeated n times), seeded and batched."""
    device = next(model.parameters()).device
    texts = render_prompts(tokenizer, prompts)
    repeated = [t for t in texts for _ in range(n)]
    enc = tokenizer(repeated, return_tensors="pt", padding=True, padding_side="left",
                    add_special_tokens=False)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    chunks = []
    for start in range(0, len(repeated), batch_size):
        ids = enc["input_ids"][start:start + batch_size].to(device)
        mask = enc["attention_mask"][start:start + batch_size].to(device)
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen)))
        out = model.generate(
            input_ids=ids, attention_mask=mask, do_sample=temperature > 0,
            temperature=temperature if temperature > 0 else None,
            top_p=top_p if temperature > 0 else None, top_k=0 if temperature > 0 else None,
            max_new_tokens=max_new_tokens, eos_token_id=eos, pad_token_id=pad,
        )
        chunks.append(out[:, ids.shape[1]:].cpu())
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
