"""Math-verify scoring that never hangs and never raises, crediting only the final answer.

The verdict is exactly math-verify's on the text an extraction policy selects
(:data:`EXTRACTIONS`): by default the final answer, the content of the last ``\\boxed{}``,
``verify(parse(wrap(ground_truth)), parse(wrap(final_answer(response))))``; with ``lenient``,
math-verify's own default on the whole response, ``verify(parse(wrap(ground_truth)),
parse(response))``, whose fallback to the last expression in the text credits a response that
restates the question. ``monitor=True`` reports, per response, whether the lenient policy would
credit what the final-answer check does not: the reward-hacking monitor.

The package is split by job: :mod:`.extract` (answer extraction, pure Python), :mod:`.verify`
(math-verify with exact memos), :mod:`.pool` and :mod:`.worker` (killable worker processes with
a hard per-item timeout); this module is the public API. It imports only the standard library
(math_verify is imported inside the workers). ``benchmarks/bench_scoring.py`` measures it
against the naive per-item loop. Linux/POSIX only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from . import pool
from .extract import (
    DEFAULT_EXTRACTION,
    EXTRACTIONS,
    check_extraction,
    extract_answer,
    final_answer,
    last_boxed,
    wrap_ground_truth,
)
from .pool import shutdown

__all__ = [
    "DEFAULT_EXTRACTION",
    "DEFAULT_TIMEOUT",
    "EXTRACTIONS",
    "REASONS",
    "Verdict",
    "check_extraction",
    "extract_answer",
    "final_answer",
    "last_boxed",
    "score",
    "score_batch",
    "score_batch_detailed",
    "shutdown",
    "wrap_ground_truth",
]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0
"""Hard per-item limit in seconds on the worker's time for one (ground truth, response) pair."""

REASONS = ("correct", "wrong", "no_answer", "parse_failure", "timeout")


@dataclass(frozen=True)
class Verdict:
    """Outcome for one response under one extraction policy.

    ``answer``: under a strict policy the final answer it judged (:func:`final_answer`); under
    ``lenient`` math-verify's extracted answer string when it extracted one, else
    :func:`extract_answer`'s; None when there is none. Used for majority voting.
    ``lenient_only``: the reward-hacking monitor, True when math-verify's lenient extraction
    credits the response but the final-answer check does not (under ``lenient``: the ``boxed``
    check); None when not asked for (``monitor=False``) or when scoring timed out.
    """

    correct: bool
    reason: str
    answer: str | None
    lenient_only: bool | None = None

    @property
    def score(self) -> float:
        """1.0 if correct else 0.0."""
        return 1.0 if self.correct else 0.0


def _as_text(value: object) -> str:
    """Coerce an input to str (None -> "") so odd inputs score 0.0 instead of raising."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    try:
        return str(value)
    except Exception:
        return ""


def score_batch_detailed(
    responses: list[str],
    ground_truths: list[str],
    workers: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    extraction: str = DEFAULT_EXTRACTION,
    monitor: bool = False,
) -> list[Verdict]:
    """Verdicts for paired responses and ground truths under ``extraction`` (:data:`EXTRACTIONS`).

    Identical (ground_truth, response) pairs are verified once per call. ``workers=None`` uses
    ``min(cpus, unique items)`` processes; ``workers<=0`` means one worker (a killable process is
    always needed for the timeout). ``timeout`` is the hard limit per item in seconds. With
    ``monitor=True`` every verdict carries ``lenient_only`` (the reward-hacking monitor); it
    costs a second math-verify pass on the responses where the two policies can differ.
    An unknown ``extraction`` raises ValueError; nothing else does.
    """
    check_extraction(extraction)
    responses = list(responses)
    ground_truths = list(ground_truths)
    if len(responses) != len(ground_truths):
        raise ValueError(
            f"responses and ground_truths differ in length: {len(responses)} != {len(ground_truths)}"
        )
    pairs = [(_as_text(g), _as_text(r)) for g, r in zip(ground_truths, responses)]
    verdicts: dict[tuple[str, str], Verdict] = {}
    todo: list[tuple[str, str]] = []
    queued: set[tuple[str, str]] = set()
    for key in pairs:
        if key in verdicts or key in queued:
            continue
        if not key[1].strip():
            # Provably math-verify's verdict: every extraction pattern needs a non-space character.
            verdicts[key] = Verdict(False, "no_answer", None, False if monitor else None)
        else:
            todo.append(key)
            queued.add(key)
    if todo:
        n = pool.default_workers(len(todo)) if workers is None else max(1, int(workers))
        try:
            outcome = pool.run(todo, n, timeout, extraction, monitor)
        except Exception:  # never propagate: an infrastructure failure scores 0.0
            logger.exception("polarity.reward: scoring failed")
            outcome = [(False, "parse_failure", None, None)] * len(todo)
        for key, (correct, reason, answer, lenient_only) in zip(todo, outcome):
            verdicts[key] = Verdict(bool(correct), reason, answer,
                                    lenient_only if monitor else None)
    return [verdicts[key] for key in pairs]


def score_batch(
    responses: list[str],
    ground_truths: list[str],
    workers: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    extraction: str = DEFAULT_EXTRACTION,
) -> list[float]:
    """1.0/0.0 per (response, ground truth) pair; same verdicts as :func:`score` one by one."""
    return [v.score for v in score_batch_detailed(responses, ground_truths, workers, timeout,
                                                  extraction)]


def score(response: str, ground_truth: str, extraction: str = DEFAULT_EXTRACTION) -> float:
    """1.0 if ``response``'s answer under ``extraction`` is math-verify-equivalent to
    ``ground_truth`` else 0.0. Never raises on any response or ground truth (an unknown
    ``extraction`` is a ValueError)."""
    check_extraction(extraction)
    try:
        return score_batch_detailed([response], [ground_truth], workers=1,
                                    extraction=extraction)[0].score
    except Exception:
        logger.exception("polarity.reward: score failed")
        return 0.0
