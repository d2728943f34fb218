"""verl custom reward function backed by :mod:`polarity.reward` (math-verify, never hangs).

verl loads this file by path::

    reward.custom_reward_function.path=<this file>
    reward.custom_reward_function.name=compute_score

(``verl.trainer.ppo.reward.get_custom_reward_fn`` -> ``load_extern_object``, i.e.
``importlib.util.spec_from_file_location``), so this module imports only absolute ``polarity``
names: it is not imported as part of the package. verl's reward loop managers call
``compute_score`` once per response inside ``loop.run_in_executor``, i.e. from threads of a Ray
``RewardLoopWorker`` actor; :mod:`polarity.reward` scores in killable worker processes and never
uses signals in the caller, so that is safe. Calls within one actor are serialized by
:mod:`polarity.reward`'s pool lock, so parallelism comes from ``reward.num_workers`` actors.

The score is the plain 0/1 verdict on the response's final answer under the study's
``train.extraction`` policy (``reward_kwargs.extraction``, default the last ``\\boxed{}``), as on
the local backend. Overlong shaping is NOT done here: our advantage estimator applies DAPO's
overlong penalty from the response token lengths.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from pathlib import Path

from polarity.reward import DEFAULT_EXTRACTION, DEFAULT_TIMEOUT, REASONS, score_batch_detailed

__all__ = ["compute_score", "MONITOR_ENV"]

logger = logging.getLogger("polarity.backends.verl.reward_fn")

# verl 0.9.1's v1 trainer dumps rollouts without the reward function's extra keys
# (trainer/ppo/v1/trainer_base.py:1331), so the reward-hacking monitor is kept here: every
# response flagged lenient-only is appended to <dir>/<host>-<pid>.jsonl as {"output", "gts"};
# the flag is a function of those two, so the logs look each dumped rollout up in that set.
MONITOR_ENV = "POLARITY_MONITOR_DIR"
_MONITOR_LOCK = threading.Lock()


def record_lenient_only(solution_str: str, ground_truth: str) -> None:
    folder = os.environ.get(MONITOR_ENV)
    if not folder:
        return
    path = Path(folder) / f"{socket.gethostname()}-{os.getpid()}.jsonl"
    line = json.dumps({"output": solution_str, "gts": str(ground_truth)}) + "\n"
    with _MONITOR_LOCK:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.write(line)


def _result(value: float, reason: str, lenient_only: bool | None = None) -> dict[str, float]:
    """verl's result dict: score, acc, one 0/1 flag per reason in ``REASONS``, and
    ``lenient_only`` (the reward-hacking monitor: 1.0 when math-verify's lenient extraction would
    credit a response the policy does not).

    Every call returns the same keys with float values: verl stacks each key of the per-item
    dicts into one array (keys taken from the first item) and averages them into metrics.
    """
    out = {"score": value, "acc": value}
    out.update({name: float(name == reason) for name in REASONS})
    out["lenient_only"] = float(bool(lenient_only))
    return out


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: str,
    extra_info: dict | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    extraction: str = DEFAULT_EXTRACTION,
    **kwargs,
) -> dict[str, float]:
    """Score one response: ``polarity.reward.score_batch_detailed([solution_str], [ground_truth],
    extraction=extraction, monitor=True)[0]``.

    ``data_source`` and ``extra_info`` are accepted for verl's calling convention and unused.
    ``timeout`` (seconds per item) can be set with
    ``reward.custom_reward_function.reward_kwargs.timeout``. Never raises: any error scores
    0.0 with the ``parse_failure`` flag.
    """
    try:
        verdict = score_batch_detailed([solution_str], [ground_truth], timeout=timeout,
                                       extraction=extraction, monitor=True)[0]
        if verdict.lenient_only:
            record_lenient_only(solution_str, ground_truth)
        return _result(verdict.score, verdict.reason, verdict.lenient_only)
    except Exception:
        logger.exception("compute_score failed; scoring 0.0")
        return _result(0.0, "parse_failure")
