"""The supervised warm-up that turns the freshly made tiny model into the embedded study's base
policy: fine-tuning on the warm-up split's solutions until its sampled accuracy reaches the
range where RL has signal (neither near 0 nor near 1).
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict
from pathlib import Path

import torch

from ...generation.sampling import render_prompts, sample
from ...model import build_model, save_pretrained_atomic, train_tokenizer
from ...reward import score_batch
from ...settings import TinyModelSpec


def supervised_batch(tokenizer, prompts: list[list[dict]], solutions: list[str]):
    """Prompt + solution + eos, with labels only on the solution tokens (-100 elsewhere)."""
    prompt_texts = render_prompts(tokenizer, prompts)
    ids, labels = [], []
    for p, s in zip(prompt_texts, solutions):
        p_ids = tokenizer(p, add_special_tokens=False)["input_ids"]
        s_ids = tokenizer(s, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids.append(p_ids + s_ids)
        labels.append([-100] * len(p_ids) + s_ids)
    width = max(len(x) for x in ids)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in ids])
    label_ids = torch.tensor([y + [-100] * (width - len(y)) for y in labels])
    attention = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
    return input_ids, attention, label_ids


def sampled_accuracy(model, tokenizer, prompts, answers, *, seed: int, max_new_tokens: int) -> float:
    """Fraction of prompts whose one sampled response (T = 1) math-verify accepts."""
    model.eval()
    rollouts = sample(model, tokenizer, prompts, 1, temperature=1.0,
                      max_new_tokens=max_new_tokens, seed=seed)
    model.train()
    scores = score_batch(rollouts.texts, list(answers))
    return sum(scores) / max(len(scores), 1)


def make_tiny_model(
    warmup_rows, out_dir: str | Path, *, spec: TinyModelSpec = TinyModelSpec(), seed: int = 0,
    max_new_tokens: int = 32, log=print,
) -> dict:
    """Train tokenizer, build and warm up the model on ``warmup_rows`` (verl rows with
    ``extra_info.solution``, and ``teacher_solutions`` when a noisy teacher wrote the split:
    each example then shows one of them at random); save to ``out_dir`` in HF format.

    The warm-up stops at the first evaluation (every ``eval_every`` steps, fixed seeds) whose
    sampled accuracy reaches ``target_accuracy``, else after ``warmup_max_steps``: the model
    depends on the data, the spec and the seed only. Returns the warm-up record (no timings:
    the saved files are the same on a fast or a busy machine; ``timing`` in the returned dict
    only)."""
    prompts = [list(p) for p in warmup_rows["prompt"]]
    infos = list(warmup_rows["extra_info"])
    solutions = [info["solution"] for info in infos]
    demonstrations = [
        [info["solution"]] if info.get("teacher_solutions") is None else list(info["teacher_solutions"])
        for info in infos
    ]
    answers = [info["answer"] for info in infos]
    n_eval = min(spec.eval_problems, len(prompts) // 4)
    train_idx = list(range(n_eval, len(prompts)))
    eval_prompts, eval_answers = prompts[:n_eval], answers[:n_eval]

    corpus = [m["content"] for p in prompts for m in p] + solutions
    tokenizer = train_tokenizer(corpus, spec.vocab_size)
    model = build_model(tokenizer, spec, seed)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"tiny model: {n_params} parameters, vocabulary {len(tokenizer)}")

    optim = torch.optim.AdamW(model.parameters(), lr=spec.warmup_lr, weight_decay=0.0)
    rng = random.Random(seed)
    history, accuracy, start, step = [], 0.0, time.time(), 0
    model.train()
    for step in range(1, spec.warmup_max_steps + 1):
        batch = rng.sample(train_idx, min(spec.warmup_batch, len(train_idx)))
        ids, attn, labels = supervised_batch(
            tokenizer, [prompts[i] for i in batch], [rng.choice(demonstrations[i]) for i in batch]
        )
        loss = model(input_ids=ids, attention_mask=attn, labels=labels).loss
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        elapsed = time.time() - start
        if elapsed > spec.warmup_max_seconds:
            # A time budget may stop the job, never change the model it makes: stopping here
            # early would save a different (weaker) base model on a busier machine.
            raise TimeoutError(
                f"tiny_model.warmup_max_seconds: the warm-up used {elapsed:.0f} s by step {step} "
                f"(of at most {spec.warmup_max_steps}) without reaching target_accuracy "
                f"{spec.target_accuracy}; raise the budget (the model does not depend on it)")
        if step % spec.eval_every == 0 or step == spec.warmup_max_steps:
            accuracy = sampled_accuracy(model, tokenizer, eval_prompts, eval_answers,
                                        seed=seed + step, max_new_tokens=max_new_tokens)
            history.append({"step": step, "loss": loss.item(), "accuracy": accuracy})
            log(f"warm-up step {step}: loss {loss.item():.3f}, sampled accuracy {accuracy:.3f}")
            if accuracy >= spec.target_accuracy:
                break
    record = {
        "parameters": n_params, "vocab_size": len(tokenizer), "warmup_steps": step,
        "validation_accuracy": accuracy, "validation_problems": n_eval,
        "target_accuracy": spec.target_accuracy, "history": history,
        "spec": {k: v for k, v in asdict(spec).items() if k != "warmup_max_seconds"},  # a fail-safe
        "seed": seed,
    }
    save_pretrained_atomic(model, tokenizer, out_dir, extra={"warmup.json": record})
    log(f"warm-up: {step} steps in {time.time() - start:.0f} s")
    return {**record, "warmup_seconds": round(time.time() - start, 1)}


