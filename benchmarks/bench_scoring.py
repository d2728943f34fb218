"""Benchmark: ``polarity.reward.score_batch`` vs the naive per-item math-verify loop.

Both score the same synthetic-but-realistic evaluation (``scoring_pairs.make_pairs``: 256 samples
per problem, answers repeating within a problem, a mix of LaTeX forms, some garbage and some
pathological inputs) under one extraction policy (``--extraction``, default the default policy
``boxed``), in one run, and the script prints both wall times, their ratio and the number of
disagreeing verdicts (items the naive loop timed out on are left out of the count).

The naive loop is the policy's reference written as one writes it with math-verify's README,
run per item in one process with math-verify's own 5 s SIGALRM timeouts. For the strict
policies (``boxed``, ``answer_line``) it judges the final answer alone::

    for response, truth in pairs:
        answer = final_answer(response, extraction)          # None: no final answer, 0.0
        verdict = answer is not None and verify(parse(wrap(truth)), parse(wrap(answer)))

and for ``--extraction lenient`` math-verify's default on the whole response::

    for response, truth in pairs:
        verdict = verify(parse(wrap(truth)), parse(response))

A power tower can block it inside C code where SIGALRM is never handled, so the loop runs in a
child that a watchdog restarts after ``--naive-kill`` seconds without progress (such items count
as naive timeouts, as do items that took >= 0.9 x the timeout).

    python benchmarks/bench_scoring.py                          # 200,000 pairs, boxed (recorded)
    python benchmarks/bench_scoring.py --extraction lenient     # math-verify's default
    python benchmarks/bench_scoring.py --pairs 20000            # a quicker look
    python benchmarks/bench_scoring.py --pairs 20000 --pathological 0   # throughput only
    python benchmarks/bench_scoring.py --monitor                # + the monitor's cost
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scoring_pairs import make_pairs  # noqa: E402

TARGET = 20.0
MATH_VERIFY_TIMEOUT = 5.0  # math-verify's default parse and verify timeouts (seconds)
EXTRACTIONS = ("boxed", "answer_line", "lenient")  # == polarity.reward.EXTRACTIONS (checked in main)


def naive_verdict(response: str, truth: str, extraction: str) -> bool:
    """The reference verdict of ``extraction`` for one pair, with math-verify's own timeouts."""
    from math_verify import parse, verify

    from polarity.reward import final_answer, wrap_ground_truth

    if extraction == "lenient":
        return bool(verify(parse(wrap_ground_truth(truth)), parse(response)))
    answer = final_answer(response, extraction)
    if answer is None:
        return False
    return bool(verify(parse(wrap_ground_truth(truth)), parse(wrap_ground_truth(answer))))


def _naive_child(conn, start: int, responses, truths, extraction: str) -> None:
    """The naive loop from ``start``; sends ``(index, verdict, seconds)`` per item."""
    import logging

    import math_verify  # noqa: F401  (imported before the clock starts)

    logging.disable(logging.WARNING)  # math-verify logs every timeout
    for i in range(start, len(responses)):
        t0 = time.perf_counter()
        try:
            verdict = naive_verdict(responses[i], truths[i], extraction)
        except Exception:
            verdict = False
        conn.send((i, verdict, time.perf_counter() - t0))
    conn.send(None)


def naive_loop(responses, truths, kill_after: float, extraction: str):
    """Verdicts (None where the naive loop timed out) and the loop's wall time."""
    ctx = mp.get_context("fork")  # the child inherits the pairs; no pickling of 200k strings
    verdicts: list[bool | None] = [None] * len(responses)
    start_at = 0
    t0 = time.perf_counter()
    while start_at < len(responses):
        rx, tx = ctx.Pipe(duplex=False)
        child = ctx.Process(target=_naive_child, args=(tx, start_at, responses, truths, extraction))
        child.start()
        tx.close()
        last = start_at - 1
        finished = False
        while True:
            if not rx.poll(kill_after):
                child.kill()  # stuck in C code: the item counts as a naive timeout
                break
            msg = rx.recv()
            if msg is None:
                finished = True
                break
            i, verdict, seconds = msg
            last = i
            verdicts[i] = None if seconds >= 0.9 * MATH_VERIFY_TIMEOUT else verdict
        child.join()
        rx.close()
        if finished:
            break
        start_at = last + 2  # skip the item that hung
    return verdicts, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=200_000)
    ap.add_argument("--samples", type=int, default=256, help="samples per problem")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None, help="score_batch workers (default: cores)")
    ap.add_argument("--extraction", choices=EXTRACTIONS, default="boxed",
                    help="extraction policy of both sides (default: boxed, the default policy)")
    ap.add_argument("--pathological", type=int, default=12,
                    help="pathological responses planted (power towers etc.; each costs a timeout)")
    ap.add_argument("--monitor", action="store_true",
                    help="also time score_batch with the reward-hacking monitor (monitor=True)")
    ap.add_argument("--naive-kill", type=float, default=30.0,
                    help="seconds without progress before the naive loop's child is killed")
    args = ap.parse_args()

    from polarity import reward

    assert reward.EXTRACTIONS == EXTRACTIONS and reward.DEFAULT_EXTRACTION == "boxed"
    t = time.perf_counter()
    responses, truths = make_pairs(args.pairs, samples=args.samples, seed=args.seed,
                                   pathological=args.pathological)
    problems = len(dict.fromkeys((i // args.samples for i in range(len(responses)))))
    print(f"{len(responses):,} pairs, {problems} problems x {args.samples} samples, "
          f"{sum(map(len, responses)) / 2**20:.0f} MiB of responses (made in "
          f"{time.perf_counter() - t:.1f} s); {os.cpu_count()} cores", flush=True)
    reference = ("verify(parse(wrap(truth)), parse(response))" if args.extraction == "lenient"
                 else f"verify(parse(wrap(truth)), parse(wrap(final_answer(response, "
                      f"{args.extraction!r}))))")
    print(f"extraction: {args.extraction}; naive reference: {reference}", flush=True)

    reward.score_batch(["\\boxed{1}"], ["1"], workers=args.workers)  # start the workers
    t = time.perf_counter()
    fast = reward.score_batch_detailed(responses, truths, workers=args.workers,
                                       extraction=args.extraction)
    fast_s = time.perf_counter() - t
    reward.shutdown()
    print(f"score_batch: {fast_s:.1f} s ({fast_s / len(responses) * 1e6:.0f} us/pair)", flush=True)

    naive, naive_s = naive_loop(responses, truths, args.naive_kill, args.extraction)
    print(f"naive loop:  {naive_s:.1f} s ({naive_s / len(responses) * 1e6:.0f} us/pair)", flush=True)

    timed_out = [i for i, v in enumerate(naive) if v is None]
    disagree = [i for i, v in enumerate(naive) if v is not None and v != fast[i].correct]
    reasons = collections.Counter(v.reason for v in fast)
    print(f"reasons (score_batch): {dict(reasons)}")
    print(f"naive timeouts: {len(timed_out)}; score_batch timeouts: {reasons.get('timeout', 0)}")
    print(f"disagreements outside naive timeouts: {len(disagree)}")
    for i in disagree[:10]:
        print(f"  #{i}: naive={naive[i]} score_batch={fast[i]} truth={truths[i]!r} "
              f"response tail={responses[i][-120:]!r}")
    ratio = naive_s / fast_s
    print(f"speed-up: {ratio:.1f}x (target >= {TARGET:.0f}x) -> "
          f"{'met' if ratio >= TARGET and not disagree else 'NOT met'}")
    if args.monitor:  # what evaluation pays: the lenient second opinion where verdicts can differ
        reward.score_batch(["\\boxed{1}"], ["1"], workers=args.workers)
        t = time.perf_counter()
        watched = reward.score_batch_detailed(responses, truths, workers=args.workers,
                                              extraction=args.extraction, monitor=True)
        watched_s = time.perf_counter() - t
        reward.shutdown()
        changed = sum(a.correct != b.correct for a, b in zip(fast, watched))
        flagged = sum(bool(v.lenient_only) for v in watched)
        print(f"score_batch with the monitor: {watched_s:.1f} s ({watched_s / fast_s:.2f}x of "
              f"without); lenient_only {flagged:,}; verdicts changed by it: {changed}")


if __name__ == "__main__":
    main()
