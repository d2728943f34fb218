"""Tests for polarity.backends.verl.reward_fn, loaded and called the way verl does.

The function is loaded by file path with verl's own ``get_custom_reward_fn`` (as
``reward.custom_reward_function.path``/``name`` configure it), called directly, from a thread
pool (verl calls it inside ``loop.run_in_executor``), and through verl's ``naive`` reward loop
manager, built by verl's ``load_reward_manager`` and run on a one-item ``DataProto`` in asyncio:
that is what each Ray ``RewardLoopWorker`` does, minus Ray.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from polarity.reward import REASONS, score_batch_detailed

from .helpers import lenient_reference, strict_reference

REWARD_FN = Path(__file__).resolve().parents[1] / "src/polarity/backends/verl/reward_fn.py"
KEYS = {"score", "acc", *REASONS, "lenient_only"}
HACK = "48+28. \\boxed{. \\boxed{}"  # restates "What is 48+28?" in a malformed box
TOWER = "The answer is \\boxed{9^{9^{9^{9}}}}"  # sympy never finishes; must time out
TOWER_TIMEOUT = 2.0

# (response, ground truth, verdict a human expects under the lenient policy, or None where it
# is debatable); the default (boxed) policy is checked against its own reference
CASES = [
    ("\\boxed{\\frac{1}{2}}", "0.5", True),
    ("\\boxed{1/2}", "\\frac12", True),
    ("Answer: 42", "42", True),
    ("Let me think.\nStep 1 ...\nAnswer: 1000", "1000", True),  # DAPO-Math's last-line form
    ("Answer: $\\frac{7}{2}$", "3.5", True),
    ("The answer is \\boxed{x=3}", "3", True),
    ("\\boxed{\\{1, 2, 3\\}}", "\\{3,2,1\\}", True),
    ("\\boxed{(0, 1]}", "(0,1]", True),
    ("\\boxed{[0, 1)}", "(0,1]", False),
    ("\\boxed{2\\sqrt{2}}", "\\sqrt{8}", True),
    ("\\boxed{x^2+2x+1}", "(x+1)^2", True),
    ("\\boxed{-\\frac{3}{4}}", "-0.75", True),
    ("\\boxed{1,000}", "1000", None),
    ("\\boxed{\\text{(B)}}", "B", None),
    ("\\boxed{}", "1", False),
    ("I have no idea.", "7", False),
    ("", "7", False),
    ("\\boxed{41}", "42", False),
    # math-verify reads several boxes as one set {2, 3}: 0 against "3" (a human may say 1)
    ("\\boxed{2} and later \\boxed{3}", "3", None),
    ("\\boxed{2} and later \\boxed{3}", "\\{2, 3\\}", None),
]


def _config(**reward_kwargs):
    """The part of verl's trainer config that its reward loaders read."""
    return OmegaConf.create({"reward": {
        "custom_reward_function": {"path": str(REWARD_FN), "name": "compute_score",
                                   "reward_kwargs": reward_kwargs},
        "reward_manager": {"source": "register", "name": "naive"},
    }})


@pytest.fixture(scope="module")
def verl_fn():
    from verl.trainer.ppo.reward import get_custom_reward_fn

    return get_custom_reward_fn(_config())


@pytest.fixture(scope="module")
def lenient_fn():
    from verl.trainer.ppo.reward import get_custom_reward_fn

    return get_custom_reward_fn(_config(extraction="lenient"))  # as the overrides pass it


def _math_verify(response: str, gold: str) -> bool:
    """math-verify's own verdict, gold wrapped as polarity.reward wraps it."""
    return lenient_reference(response, gold)


def _math_verify_final(response: str, gold: str) -> bool:
    """math-verify's verdict on the last box alone (the default policy's reference)."""
    return strict_reference(response, gold)


def _call(fn, response, gold):
    return fn(data_source="math", solution_str=response, ground_truth=gold, extra_info={"index": 0})


def _check_shape(result: dict) -> str:
    """Numbers only, score == acc, exactly one reason flag; returns the reason."""
    assert set(result) == KEYS
    assert all(type(v) is float and v in (0.0, 1.0) for v in result.values())
    assert result["score"] == result["acc"] == result["correct"]
    reasons = [r for r in REASONS if result[r] == 1.0]
    assert len(reasons) == 1
    return reasons[0]


def test_loaded_by_verl_from_a_path(verl_fn):
    assert callable(verl_fn)
    raw_fn = verl_fn.args[0]  # verl wraps it in partial(_call_with_kwargs, raw_fn, reward_kwargs)
    assert raw_fn.__name__ == "compute_score"
    assert raw_fn.__module__.startswith("custom_module_")  # not imported as part of the package


@pytest.mark.parametrize("response, gold, human", CASES, ids=[f"{i}" for i in range(len(CASES))])
def test_verdicts_match_math_verify(verl_fn, lenient_fn, response, gold, human):
    result = _call(lenient_fn, response, gold)
    reason = _check_shape(result)
    assert result["score"] == float(_math_verify(response, gold))
    if human is not None:
        assert result["score"] == float(human)
    assert reason == score_batch_detailed([response], [gold], extraction="lenient")[0].reason
    # under the lenient policy the monitor flags what it credits and the last box does not
    assert result["lenient_only"] == float(result["score"] and not _math_verify_final(response, gold))
    strict = _call(verl_fn, response, gold)
    reason = _check_shape(strict)
    assert strict["score"] == float(_math_verify_final(response, gold))
    assert reason == score_batch_detailed([response], [gold])[0].reason
    assert strict["lenient_only"] == float(_math_verify(response, gold) and not strict["score"])


def test_a_restated_question_is_flagged_not_rewarded(verl_fn, lenient_fn):
    strict = _call(verl_fn, HACK, "76")
    assert (strict["score"], strict["lenient_only"], _check_shape(strict)) == (0.0, 1.0, "no_answer")
    lenient = _call(lenient_fn, HACK, "76")
    assert (lenient["score"], lenient["lenient_only"]) == (1.0, 1.0)  # rewarded, and flagged
    assert _call(verl_fn, "48+28=76. \\boxed{76}", "76")["score"] == 1.0


def test_reasons_are_flagged(verl_fn):
    assert _check_shape(_call(verl_fn, "no answer here", "7")) == "no_answer"
    assert _check_shape(_call(verl_fn, "\\boxed{}", "7")) == "no_answer"
    assert _check_shape(_call(verl_fn, "\\boxed{8}", "7")) == "wrong"
    assert _check_shape(_call(verl_fn, "\\boxed{7}", "7")) == "correct"


def test_tower_times_out_and_never_hangs():
    from verl.trainer.ppo.reward import get_custom_reward_fn

    fn = get_custom_reward_fn(_config(timeout=TOWER_TIMEOUT))  # reward_kwargs reach compute_score
    start = time.monotonic()
    result = _call(fn, TOWER, "9")
    assert time.monotonic() - start < TOWER_TIMEOUT + 3.0
    assert result["score"] == 0.0
    assert _check_shape(result) in ("timeout", "wrong")


def test_never_raises(verl_fn, lenient_fn, monkeypatch):
    for response, gold in [(None, "1"), ("\\boxed{1}", None), (12, 12), ("\\boxed{" * 10_000, "1")]:
        result = verl_fn(data_source=None, solution_str=response, ground_truth=gold)
        _check_shape(result)
    assert _call(lenient_fn, 12, 12)["score"] == 1.0  # coerced to text, as polarity.reward does
    assert _call(verl_fn, 12, 12)["score"] == 0.0  # a bare number is no final answer

    def boom(*args, **kwargs):
        raise RuntimeError("scoring infrastructure broke")

    monkeypatch.setitem(verl_fn.args[0].__globals__, "score_batch_detailed", boom)
    result = _call(verl_fn, "\\boxed{1}", "1")
    assert result["score"] == 0.0 and _check_shape(result) == "parse_failure"


def test_threads_give_the_sequential_verdicts():
    from verl.trainer.ppo.reward import get_custom_reward_fn

    fn = get_custom_reward_fn(_config(timeout=TOWER_TIMEOUT))
    items = [(r, g) for r, g, _ in CASES] * 2 + [(TOWER, "9")]
    sequential = [_call(fn, r, g) for r, g in items]
    with ThreadPoolExecutor(max_workers=8) as pool:
        threaded = list(pool.map(lambda item: _call(fn, *item), items))
    assert threaded == sequential
    assert sequential[-1]["score"] == 0.0


def _one_item_batch(tokenizer, response: str, gold: str, prompt_len=8, response_len=48):
    """A rollout-shaped DataProto: left-padded prompt, right-padded response, as verl's agent loop."""
    from verl import DataProto

    pad = tokenizer.pad_token_id
    prompt_ids = tokenizer("What is 3+27?")["input_ids"][-prompt_len:]
    resp_ids = tokenizer(response)["input_ids"] + [tokenizer.eos_token_id]
    assert len(resp_ids) <= response_len
    prompts = torch.full((1, prompt_len), pad)
    prompts[0, prompt_len - len(prompt_ids):] = torch.tensor(prompt_ids)
    responses = torch.full((1, response_len), pad)
    responses[0, : len(resp_ids)] = torch.tensor(resp_ids)
    mask = torch.cat([prompts != pad, responses != pad], dim=1).long()
    return DataProto.from_dict(
        tensors={"prompts": prompts, "responses": responses, "attention_mask": mask,
                 "input_ids": torch.cat([prompts, responses], dim=1)},
        non_tensors={
            "data_source": np.array(["synthetic-arith"], dtype=object),
            "reward_model": np.array([{"style": "rule", "ground_truth": gold}], dtype=object),
            "extra_info": np.array([{"index": 0}], dtype=object),
        },
    )


@pytest.mark.filterwarnings("ignore:Ray state API:DeprecationWarning")
def test_verl_naive_reward_manager_run_single(verl_fn):
    from verl.trainer.ppo.reward import load_reward_manager

    from polarity.model import train_tokenizer

    tokenizer = train_tokenizer(["What is 3+27?", "3+27=30. \\boxed{30}", "Answer: 31"], 300)
    cases = [("3+27=30. \\boxed{30}", "30"), ("Answer: 31", "30"), ("", "30")]

    async def run():
        # built inside the running loop: RewardManagerBase captures asyncio's current loop
        manager = load_reward_manager(_config(), tokenizer)
        assert type(manager).__name__ == "NaiveRewardManager"
        return await asyncio.gather(*(manager.run_single(_one_item_batch(tokenizer, r, g)) for r, g in cases))

    outputs = asyncio.run(run())
    for (response, gold), out in zip(cases, outputs):
        expected = _call(verl_fn, response, gold)
        assert out["reward_score"] == expected["score"]
        assert out["reward_extra_info"] == expected
    assert [o["reward_score"] for o in outputs] == [1.0, 0.0, 0.0]
    assert outputs[2]["reward_extra_info"]["no_answer"] == 1.0
    # RewardLoopManager stacks every key of the first item's dict: all items must share them
    assert all(set(o["reward_extra_info"]) == KEYS for o in outputs)
