"""The ``hf`` rollout server of verl's CPU mode: sampling with ``transformers`` forward passes.

Kept apart from ``cpu.py`` on purpose: Ray re-imports this module to start the server actor,
and it must not import verl at the top (verl imports the plugin, which imports ``cpu.py``).

Sampling is deterministic: each request draws from its own ``torch.Generator`` seeded by the
run's seed, the trainer's global step, the prompt's tokens and how many times that prompt was
already asked for in the step (the ``n`` rollouts of a prompt), and runs alone (batch of one),
so the same config and seed give the same rollouts whatever order requests arrive in (with one
replica per run, as on one CPU node; with several, which replica serves a request can vary).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter

import torch


def request_seed(seed: int, step: int, prompt_ids: list[int], occurrence: int,
                 replica: int = 0) -> int:
    """A 63-bit seed for one request: run seed, global step, prompt tokens, repeat index and
    the replica (two replicas must not draw the same sample for one prompt)."""
    text = f"{seed}|{step}|{occurrence}|{replica}|" + ",".join(map(str, prompt_ids))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Keep the ``top_k`` most likely tokens (k <= 0: all), then the smallest set whose
    probability reaches ``top_p``; the rest get -inf. ``logits`` is one row [V]."""
    if top_k and 0 < top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        order = torch.argsort(logits, descending=True)
        probs = torch.softmax(logits[order], dim=-1)
        before = torch.cumsum(probs, dim=-1) - probs  # mass of the tokens ranked above
        drop = order[before >= top_p]
        logits = logits.clone()
        logits[drop] = float("-inf")
    return logits


@torch.no_grad()
def sample(model, prompt_ids: list[int], *, max_tokens: int, temperature: float, top_p: float,
           top_k: int, eos_ids: set[int], generator: torch.Generator | None
           ) -> tuple[list[int], list[float], bool]:
    """Sample one response token by token with the KV cache.

    Returns (token ids, their log-probs under the temperature-scaled distribution (vLLM's
    ``processed_logprobs``), whether it ended with an EOS). ``temperature`` 0 is greedy.
    """
    ids = torch.tensor([prompt_ids], dtype=torch.long)
    past, tokens, logps = None, [], []
    for _ in range(max_tokens):
        out = model(input_ids=ids, past_key_values=past, use_cache=True)
        past = out.past_key_values
        logits = out.logits[0, -1].float()
        if temperature > 0:
            scaled = logits / temperature
            logp = torch.log_softmax(scaled, dim=-1)
            probs = torch.softmax(filter_logits(scaled, top_k, top_p), dim=-1)
            token = int(torch.multinomial(probs, 1, generator=generator))
        else:
            logp = torch.log_softmax(logits, dim=-1)
            token = int(torch.argmax(logits))
        tokens.append(token)
        logps.append(float(logp[token]))
        if token in eos_ids:
            return tokens, logps, True
        ids = torch.tensor([[token]], dtype=torch.long)
    return tokens, logps, False


class HFRolloutServer:
    """A rollout server (a Ray actor) backed by ``transformers``: verl's token-in-token-out
    ``generate`` plus the control calls its trainer makes on a replica."""

    def __init__(self, config, model_config, replica_rank: int = 0, seed: int = 0):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(1)
        self.config, self.replica_rank, self.seed = config, replica_rank, int(seed)
        # verl hands over a DictConfig (hybrid mode) or an HFModelConfig: both have .get
        path = model_config.get("local_path") or model_config.get("path")
        dtype = getattr(torch, str(config.get("dtype") or "float32").replace("torch.", ""))
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval()
        eos = self.model.generation_config.eos_token_id
        eos = AutoTokenizer.from_pretrained(path).eos_token_id if eos is None else eos
        self.eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos])
        self.global_steps: int | None = None
        self.weight_version = 0
        self.asked: Counter = Counter()  # requests per prompt in this step
        self.lock = asyncio.Lock()

    async def generate(self, prompt_ids, sampling_params: dict, request_id: str, **_):
        from verl.workers.rollout.replica import TokenOutput

        prompt_ids = [int(t) for t in prompt_ids]
        params = dict(sampling_params)
        config = self.config
        context = config.max_model_len or config.prompt_length + config.response_length
        max_tokens = params.pop("max_tokens", params.pop("max_new_tokens", None))
        max_tokens = self.config.response_length if max_tokens is None else int(max_tokens)
        max_tokens = max(1, min(max_tokens, context - len(prompt_ids)))
        temperature = float(params.get("temperature", 1.0))
        key = tuple(prompt_ids)
        async with self.lock:  # one request at a time: the numbers never depend on batching
            occurrence = self.asked[key]
            self.asked[key] += 1
            generator = torch.Generator().manual_seed(request_seed(
                self.seed, self.global_steps or 0, prompt_ids, occurrence, self.replica_rank))
            tokens, logps, _ = await asyncio.to_thread(
                sample, self.model, prompt_ids, max_tokens=max_tokens, temperature=temperature,
                top_p=float(params.get("top_p", 1.0)), top_k=int(params.get("top_k", -1) or -1),
                eos_ids=self.eos_ids, generator=generator)
        return TokenOutput(token_ids=tokens, log_probs=logps if params.get("logprobs") else None,
                           stop_reason="completed",
                           extra_fields={"global_steps": self.global_steps})

    def update_weights(self, state: dict[str, torch.Tensor]) -> int:
        """Load the actor's weights (full tensors, Hugging Face names); returns the version."""
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        tied = set(getattr(self.model, "_tied_weights_keys", None) or [])
        if unexpected or set(missing) - tied:
            raise RuntimeError(f"weights do not fit the rollout model: missing {missing}, "
                               f"unexpected {unexpected}")
        self.weight_version += 1
        return self.weight_version

    def weights_checksum(self) -> float:
        """Sum of every parameter: tests compare it between steps."""
        return float(sum(p.double().sum() for p in self.model.parameters()))

    def set_global_steps(self, global_steps: int) -> None:
        self.global_steps = global_steps
        self.asked.clear()

    def clear_kv_cache(self) -> None:  # no cache outlives a request
        self.asked.clear()

    def wake_up(self, tags=None) -> None:
        pass

    def sleep(self) -> None:
        pass

    def release_kv_cache(self) -> None:
        pass

    def resume_kv_cache(self) -> None:
        pass

    def abort_all_requests(self, reject_request: bool = False) -> dict:
        return {"aborted_count": 0, "request_ids": []}

    def resume_generation(self) -> None:
        pass

    def start_profile(self, **kwargs) -> None:
        pass

    def stop_profile(self) -> None:
        pass
