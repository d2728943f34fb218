"""The ``vllm`` generation engine (GPU): n samples per prompt with vLLM's offline ``LLM``.

Imported only when ``evaluate.engine`` is ``vllm``, so the CPU install never needs vLLM. Prompts
are rendered with the policy's chat template, exactly as the ``hf`` engine does. Each prompt gets
its own sampling seed, ``evaluate.seed + problem_id``, so a problem's samples do not depend on
which shard or batch it was generated in.
"""

from __future__ import annotations

from ..settings import EvalSettings
from .sampling import render_prompts


def sampling_params(settings: EvalSettings, seed: int):
    """vLLM ``SamplingParams`` for one prompt: n samples, temperature, top_p, max tokens, seed."""
    from vllm import SamplingParams

    return SamplingParams(n=settings.samples, temperature=settings.temperature,
                          top_p=settings.top_p, max_tokens=settings.max_response_tokens,
                          seed=seed)


def load_llm(policy_path, settings: EvalSettings):
    """vLLM's offline engine on ``tensor_parallel_size`` GPUs of this node."""
    from vllm import LLM

    return LLM(model=str(policy_path), tensor_parallel_size=settings.tensor_parallel_size,
               gpu_memory_utilization=settings.gpu_memory_utilization, seed=settings.seed,
               trust_remote_code=False)


def sample_vllm(policy_path, prompts: list[list[dict]], n: int, settings: EvalSettings,
                problem_ids: list[int] | None = None):
    """``(texts, lengths, truncated)``, ``n`` per prompt in prompt-major order.

    ``lengths`` counts response tokens; ``truncated`` is vLLM's ``finish_reason == "length"``.
    """
    if n != settings.samples:
        raise ValueError(f"n={n} differs from evaluate.samples={settings.samples}")
    ids = list(range(len(prompts))) if problem_ids is None else [int(i) for i in problem_ids]
    llm = load_llm(policy_path, settings)
    texts = render_prompts(llm.get_tokenizer(), prompts)
    params = [sampling_params(settings, settings.seed + pid) for pid in ids]
    outputs = llm.generate(texts, params)
    out_texts, lengths, truncated = [], [], []
    for request in outputs:
        if len(request.outputs) != n:
            raise RuntimeError(f"vLLM returned {len(request.outputs)} samples, expected {n}")
        for completion in request.outputs:
            out_texts.append(completion.text)
            lengths.append(len(completion.token_ids))
            truncated.append(completion.finish_reason == "length")
    return out_texts, lengths, truncated
