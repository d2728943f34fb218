"""Small real artifacts the tests share: synthetic data, an untrained tiny Qwen2 policy and one
warmed up until it solves some of the training prompts (so that RL has something to learn)."""

from __future__ import annotations

import dataclasses
import fcntl
import tempfile
from contextlib import contextmanager
from pathlib import Path

from polarity.data.rows import write_parquet
from polarity.data.synthetic import ArithSpec, make_splits, to_frame
from polarity.model import build_model, save_pretrained_atomic, train_tokenizer
from polarity.settings import TinyModelSpec

SMALL_SPEC = TinyModelSpec(vocab_size=300, hidden_size=32, intermediate_size=64, layers=1,
                           heads=2, kv_heads=1, max_positions=128)


def make_data(folder: Path, n_warmup=200, n_train=64, n_test=16, seed=0) -> dict[str, Path]:
    warm_train, test = make_splits(n_warmup + n_train, n_test, seed=seed, spec=ArithSpec(max_digits=2))
    paths = {s: folder / f"synthetic-arith-{s}.parquet" for s in ("warmup", "train", "test")}
    write_parquet(to_frame(warm_train[:n_warmup], "warmup"), paths["warmup"])
    write_parquet(to_frame(warm_train[n_warmup:], "train"), paths["train"])
    write_parquet(to_frame(test, "test"), paths["test"])
    return paths


def make_untrained_model(folder: Path, data: dict[str, Path], seed=0) -> Path:
    """Tokenizer trained on the task text + a randomly initialised 1-layer Qwen2, saved as HF."""
    import pandas as pd

    frame = pd.read_parquet(data["warmup"])
    corpus = [m["content"] for p in frame["prompt"] for m in p]
    corpus += [info["solution"] for info in frame["extra_info"]]
    tokenizer = train_tokenizer(corpus, SMALL_SPEC.vocab_size)
    model = build_model(tokenizer, SMALL_SPEC, seed)
    out = folder / "tiny"
    save_pretrained_atomic(model, tokenizer, out)
    return out


# a 2-layer model that memorises 64 problems in ~200 steps (~20 s on one CPU thread)
PARTLY_TRAINED_SPEC = dataclasses.replace(
    SMALL_SPEC, hidden_size=64, intermediate_size=128, layers=2, warmup_lr=3e-3,
    warmup_max_steps=600, eval_every=20, eval_problems=64, warmup_batch=32, target_accuracy=0.4)


def make_partly_trained_model(folder: Path, data: dict[str, Path], seed=0,
                              max_new_tokens: int = 20) -> tuple[Path, dict]:
    """A tiny policy warmed up on the training split itself until its sampled accuracy (T = 1)
    on those prompts reaches 40%: groups of rollouts then mix correct and wrong responses, as RL
    needs. Returns the model folder and the warm-up record (``validation_accuracy`` is measured
    on the 64 training prompts)."""
    import pandas as pd

    from polarity.backends.local.warmup import make_tiny_model

    train = pd.read_parquet(data["train"])
    rows = pd.concat([train] * 4, ignore_index=True)  # first 64 rows: the evaluation set
    out = folder / "partly-trained"
    record = make_tiny_model(rows, out, spec=PARTLY_TRAINED_SPEC, seed=seed,
                             max_new_tokens=max_new_tokens, log=lambda m: None)
    return out, record


def lenient_reference(response: str, gold: str, timeouts: bool = True) -> bool:
    """math-verify's own default verdict, in this process: verify(parse(wrap(gold)), parse(response)).

    ``timeouts=False`` switches math-verify's SIGALRM timeouts off (threads, speed)."""
    import math_verify

    from polarity.reward import wrap_ground_truth

    off = {} if timeouts else {"parsing_timeout": None}
    gold_parsed = math_verify.parse(wrap_ground_truth(gold), **off)
    return bool(math_verify.verify(gold_parsed, math_verify.parse(response, **off),
                                   **({} if timeouts else {"timeout_seconds": None})))


def strict_reference(response: str, gold: str, extraction: str = "boxed",
                     timeouts: bool = True) -> bool:
    """The final-answer verdict: math-verify on the wrapped final answer alone, False without one."""
    from polarity.reward import final_answer, wrap_ground_truth

    answer = final_answer(response, extraction)
    return answer is not None and lenient_reference(wrap_ground_truth(answer), gold, timeouts)


@contextmanager
def one_ray_head():
    """Held by every test that starts a Ray head with ``ray start``: two heads on one machine
    would share Ray's fixed default ports (the dashboard's 8265: the second head fails)."""
    with open(Path(tempfile.gettempdir()) / "polarity-tests-ray-head.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
