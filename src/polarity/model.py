"""The embedded study's base model, made locally: tokenizer, tiny Qwen2 policy, warm-up.

No weights are downloaded. A byte-level BPE tokenizer (digits split one per token, as Qwen's
are) is trained on the task text, a small Qwen2-architecture ``transformers`` model is
initialised from a seed, and a short supervised warm-up on reference solutions brings its
sampled accuracy into the range where RL has signal. The result is a normal Hugging Face
model directory that ``AutoModelForCausalLM`` / ``AutoTokenizer`` load.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


@dataclass(frozen=True)
class TinyModelSpec:
    """Architecture and warm-up knobs of the locally made base model."""

    vocab_size: int = 384
    hidden_size: int = 128
    intermediate_size: int = 384
    layers: int = 3
    heads: int = 4
    kv_heads: int = 2
    max_positions: int = 256
    warmup_batch: int = 64
    warmup_lr: float = 2e-3
    warmup_max_steps: int = 1500
    warmup_max_seconds: float = 1800.0  # a fail-safe: exceeding it is an error, never a stop
    target_accuracy: float = 0.35  # stop once sampled accuracy (T = 1) reaches this
    eval_every: int = 50
    eval_problems: int = 128


def train_tokenizer(texts: list[str], vocab_size: int):
    """Byte-level BPE with one token per digit and ChatML special tokens, as a HF fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True),
         pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(tokenizer, spec: TinyModelSpec, seed: int):
    """A freshly initialised Qwen2 causal LM sized by ``spec`` (tied embeddings)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size, num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads, num_key_value_heads=spec.kv_heads,
        max_position_embeddings=spec.max_positions, tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def supervised_batch(tokenizer, prompts: list[list[dict]], solutions: list[str]):
    """Prompt + solution + eos, with labels only on the solution tokens (-100 elsewhere)."""
    from .evaluation.generate import render_prompts

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
    from .evaluation.generate import sample
    from .reward import score_batch

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


def save_pretrained_atomic(model, tokenizer, out_dir, extra: dict | None = None) -> None:
    """Save model + tokenizer (+ JSON files) under a temporary name, then rename into place."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    for name, payload in (extra or {}).items():
        (tmp / name).write_text(json.dumps(payload, indent=2))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)


def load_policy(path: str | Path, device: str = "cpu", dtype=None):
    """(model, tokenizer) from a local HF directory or a hub id, ready for sampling."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype or torch.float32)
    return model.to(device), tokenizer
