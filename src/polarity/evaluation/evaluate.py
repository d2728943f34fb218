"""Evaluate one policy on one benchmark: n samples per problem, math-verify verdicts.

Writes one row per (problem, sample) with the response, the extracted answer, the verdict and
the reason for every zero (wrong, no_answer, parse_failure, timeout); pass@k and the rest are
computed from these rows by ``polarity.metrics`` and the report.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from ..config import EvalSettings
from ..data.rows import write_parquet
from ..reward import score_batch_detailed
from .generate import sample

SAMPLE_COLUMNS = ["problem_id", "sample", "response", "ground_truth", "answer", "correct",
                  "reason", "response_length", "truncated"]


def evaluate(policy_path, data_path, settings: EvalSettings, out_path, log=print) -> pd.DataFrame:
    """Sample ``settings.samples`` responses per problem with the hf engine and score them."""
    from ..model import load_policy

    if settings.engine != "hf":
        raise ValueError(f"evaluate.engine: {settings.engine!r} is not available in this stage; use 'hf'")
    torch.set_num_threads(max(1, settings.threads))
    frame = pd.read_parquet(data_path)
    prompts = [[dict(m) for m in p] for p in frame["prompt"]]
    truths = [str(rm["ground_truth"]) for rm in frame["reward_model"]]
    model, tokenizer = load_policy(policy_path, settings.device)
    model.eval()
    n = settings.samples
    rollouts = sample(model, tokenizer, prompts, n, temperature=settings.temperature,
                      top_p=settings.top_p, max_new_tokens=settings.max_response_tokens,
                      seed=settings.seed, batch_size=settings.batch_size)
    gts = [t for t in truths for _ in range(n)]
    verdicts = score_batch_detailed(rollouts.texts, gts)
    out = pd.DataFrame({
        "problem_id": [i for i in range(len(prompts)) for _ in range(n)],
        "sample": [j for _ in range(len(prompts)) for j in range(n)],
        "response": rollouts.texts,
        "ground_truth": gts,
        "answer": [v.answer for v in verdicts],
        "correct": [float(v.correct) for v in verdicts],
        "reason": [v.reason for v in verdicts],
        "response_length": rollouts.lengths.tolist(),
        "truncated": rollouts.truncated.tolist(),
    }, columns=SAMPLE_COLUMNS)
    write_parquet(out, Path(out_path))
    log(f"{data_path}: {len(prompts)} problems x {n} samples, avg@{n} = {out['correct'].mean():.3f}")
    return out
