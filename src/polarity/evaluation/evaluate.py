"""Evaluate one policy on one shard of one benchmark: n samples per problem, math-verify verdicts.

A benchmark of N problems is split into ``shards`` contiguous blocks (shard i holds problems
``i*N//shards`` to ``(i+1)*N//shards - 1``); every shard is its own job, so a killed job
costs one shard and finished shards are never redone. Within a shard, the sampled responses are
saved to a state file (not a declared output) before scoring, so a job killed while scoring
restarts from the responses instead of sampling again; the state file is used only when its
recorded settings, policy and problems match the current ones.

Each shard writes one row per (problem, sample) with the response, the final answer, the
verdict under ``evaluate.extraction`` (default: the last ``\\boxed{}`` only), the reason for
every zero (wrong, no_answer, parse_failure, timeout) and ``lenient_only``, the reward-hacking
monitor: math-verify's lenient extraction would credit the sample but the policy does not;
``gather_shards`` concatenates them into the benchmark's file. pass@k and the rest are computed
from these rows by ``polarity.metrics`` and the report.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from ..data.rows import RESPONSE_COLUMNS, SAMPLE_COLUMNS, write_parquet
from ..files import write_text
from ..reward import score_batch_detailed
from ..settings import EvalSettings

# Settings that change what is sampled (not how it is scored or how fast).
_SAMPLING_KEYS = ("samples", "temperature", "top_p", "max_response_tokens", "engine", "seed")


def shard_bounds(n_problems: int, shard: int, shards: int) -> tuple[int, int]:
    """``[lo, hi)`` problem indices of ``shard`` (0-based) of ``shards`` contiguous blocks."""
    if shards < 1 or not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is not in 0..{shards - 1}")
    return shard * n_problems // shards, (shard + 1) * n_problems // shards


def _fingerprint(policy_path, frame: pd.DataFrame, settings: EvalSettings) -> str:
    """What the saved responses depend on: the policy, the prompts and the sampling settings."""
    sampling = {k: v for k, v in asdict(settings).items() if k in _SAMPLING_KEYS}
    payload = json.dumps({
        "policy": str(Path(policy_path).resolve()) if Path(policy_path).exists() else str(policy_path),
        "prompts": [[dict(m) for m in p] for p in frame["prompt"]],
        "problem_ids": frame.index.tolist(),
        "sampling": sampling,
    }, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def generate_responses(policy_path, prompts: list[list[dict]], settings: EvalSettings,
                       problem_ids: list[int] | None = None):
    """``(texts, lengths, truncated)`` for ``settings.samples`` responses per prompt,
    prompt-major, from the configured engine. vLLM is imported only here, when asked for."""
    n = settings.samples
    if settings.engine == "vllm":
        from ..generation.vllm_engine import sample_vllm

        return sample_vllm(policy_path, prompts, n, settings, problem_ids)
    if settings.engine != "hf":
        raise ValueError(f"evaluate.engine: unknown engine {settings.engine!r}; use 'hf' or 'vllm'")
    import torch

    from ..model import load_policy
    from ..generation.sampling import sample

    torch.set_num_threads(max(1, settings.threads))
    model, tokenizer = load_policy(policy_path, settings.device)
    model.eval()
    rollouts = sample(model, tokenizer, prompts, n, temperature=settings.temperature,
                      top_p=settings.top_p, max_new_tokens=settings.max_response_tokens,
                      seed=settings.seed, batch_size=settings.batch_size, keys=problem_ids)
    return rollouts.texts, rollouts.lengths.tolist(), rollouts.truncated.tolist()


def _responses(policy_path, block: pd.DataFrame, settings: EvalSettings, state: Path | None, log):
    """The shard's responses: from the state file when it matches, else sampled and saved."""
    key = _fingerprint(policy_path, block, settings)
    if state is not None and state.exists():
        if _stored_key(state) == key:
            saved = pd.read_parquet(state)
            log(f"resuming from {state}: {len(saved)} saved responses, no sampling")
            return saved
        log(f"{state} was made with other settings or problems: sampling again")
    n = settings.samples
    prompts = [[dict(m) for m in p] for p in block["prompt"]]
    texts, lengths, truncated = generate_responses(policy_path, prompts, settings,
                                                   list(block.index))
    if len(texts) != n * len(prompts):
        raise RuntimeError(f"engine returned {len(texts)} responses for {len(prompts)} x {n}")
    saved = pd.DataFrame({
        "problem_id": [int(pid) for pid in block.index for _ in range(n)],
        "sample": [j for _ in range(len(prompts)) for j in range(n)],
        "response": list(texts),
        "response_length": [int(x) for x in lengths],
        "truncated": [bool(x) for x in truncated],
    }, columns=RESPONSE_COLUMNS)
    if state is not None:
        write_parquet(saved, state)
        write_text(state.with_name(state.name + ".key"), key)
    return saved


def _stored_key(state: Path) -> str | None:
    path = state.with_name(state.name + ".key")
    return path.read_text().strip() if path.exists() else None


def evaluate(policy_path, data_path, settings: EvalSettings, out_path, *, shard: int = 0,
             shards: int = 1, state_path=None, log=print) -> pd.DataFrame:
    """Sample and score one shard of a benchmark; write one row per (problem, sample).

    ``problem_id`` is the problem's row position in the benchmark file, so the shards of a
    benchmark concatenate to the same table a single job would write.
    """
    frame = pd.read_parquet(data_path)
    lo, hi = shard_bounds(len(frame), shard, shards)
    block = frame.iloc[lo:hi]
    block.index = range(lo, hi)
    state = Path(state_path) if state_path else None
    if len(block):
        saved = _responses(policy_path, block, settings, state, log)
    else:
        saved = pd.DataFrame({c: [] for c in RESPONSE_COLUMNS})
    truths = {pid: str(rm["ground_truth"]) for pid, rm in zip(block.index, block["reward_model"])}
    gts = [truths[int(pid)] for pid in saved["problem_id"]]
    verdicts = score_batch_detailed(saved["response"].tolist(), gts,
                                    workers=settings.score_workers or None,
                                    timeout=settings.score_timeout,
                                    extraction=settings.extraction, monitor=True)
    out = pd.DataFrame({
        "problem_id": saved["problem_id"].astype("int64").to_numpy(),
        "sample": saved["sample"].astype("int64").to_numpy(),
        "response": saved["response"].to_numpy(),
        "ground_truth": gts,
        "answer": [v.answer for v in verdicts],
        "correct": [float(v.correct) for v in verdicts],
        "reason": [v.reason for v in verdicts],
        "lenient_only": [bool(v.lenient_only) for v in verdicts],
        "response_length": saved["response_length"].astype("int64").to_numpy(),
        "truncated": saved["truncated"].astype(bool).to_numpy(),
    }, columns=SAMPLE_COLUMNS)
    write_parquet(out, Path(out_path))
    if state is not None:  # scored: the responses live on in the output
        state.unlink(missing_ok=True)
        state.with_name(state.name + ".key").unlink(missing_ok=True)
    n = settings.samples
    mean = out["correct"].mean() if len(out) else float("nan")
    log(f"{data_path} shard {shard + 1}/{shards}: problems {lo}..{hi - 1} x {n} samples, "
        f"avg@{n} = {mean:.3f} ({settings.extraction}); reasons "
        f"{out['reason'].value_counts().to_dict()}; lenient-only {int(out['lenient_only'].sum())}")
    return out


def gather_shards(shard_paths, out_path) -> pd.DataFrame:
    """Concatenate a benchmark's shard files (in shard order) into one file."""
    frames = [pd.read_parquet(p) for p in shard_paths]
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SAMPLE_COLUMNS)
    out = out[SAMPLE_COLUMNS]
    if out.duplicated(["problem_id", "sample"]).any():
        raise ValueError(f"{out_path}: shards overlap (a (problem_id, sample) pair repeats)")
    write_parquet(out, Path(out_path))
    return out
