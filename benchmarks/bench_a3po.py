"""Benchmark: A3PO token shaping on a full rollout batch vs. one torch.sort of the same tensor.

A3PO ranks every response's tokens by old-policy probability once per rollout batch. The anchor
is the cost of that ranking done naively: one ``torch.sort(old_log_prob, dim=-1)`` of the
[responses, tokens] tensor. ``a3po_shape`` (ranking, both polarities' selections, decayed scales,
the multiply) should cost at most 1.5x that sort.

    python benchmarks/bench_a3po.py                      # 4096 x 1024, torch's default threads
    python benchmarks/bench_a3po.py --threads 1 --repeats 9
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from polarity.algorithms import a3po_shape

TARGET = 1.5


def rollout_batch(responses: int, tokens: int, seed: int = 0):
    """Ragged lengths in [1, tokens], float32 log-probs, half of the responses correct."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, tokens + 1, (responses,), generator=g)
    mask = torch.arange(tokens)[None, :] < lengths[:, None]  # [B, T] bool, right-padded
    # token probabilities in (0, 1]: most near 1, a tail of unlikely tokens, as in real rollouts
    old_log_prob = -torch.empty(responses, tokens).exponential_(4.0, generator=g)
    old_log_prob = torch.where(mask, old_log_prob, torch.zeros_like(old_log_prob))
    correct = torch.zeros(responses, dtype=torch.bool)
    correct[torch.randperm(responses, generator=g)[: responses // 2]] = True
    seq_adv = torch.where(correct, 0.8, -0.8)  # a GRPO-like advantage, broadcast to tokens
    advantages = seq_adv[:, None] * mask.float()
    return advantages, old_log_prob, mask.float(), correct


def interleaved_times(fns: dict, repeats: int, warmup: int) -> dict[str, list[float]]:
    """Warm every function up, then time them round-robin so that both see the same load."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def main(argv=None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--responses", type=int, default=4096)
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--repeats", type=int, default=7, help="timed repetitions (>= 5)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--step", type=int, default=0, help="training step (0: full scale 2.0)")
    args = ap.parse_args(argv)
    if args.repeats < 5:
        ap.error("--repeats must be >= 5")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    adv, old, mask, correct = rollout_batch(args.responses, args.tokens)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"batch {args.responses} x {args.tokens} float32, "
          f"{int(mask.sum())} valid tokens ({mask.mean().item():.1%}), "
          f"{int(correct.sum())} correct, step {args.step}")

    def run_sort():
        torch.sort(old, dim=-1)

    def run_a3po():
        a3po_shape(adv, old, mask, correct, args.step)

    times = interleaved_times({"sort": run_sort, "a3po": run_a3po}, args.repeats, args.warmup)
    t_sort, t_a3po = statistics.median(times["sort"]), statistics.median(times["a3po"])
    for label, name in (("torch.sort(dim=-1)", "sort"), ("a3po_shape", "a3po")):
        ts = times[name]
        print(f"{label:19s}: median {statistics.median(ts) * 1e3:8.1f} ms  "
              f"(min {min(ts) * 1e3:.1f}, max {max(ts) * 1e3:.1f}, n={len(ts)})")
    ratio = t_a3po / t_sort
    verdict = "ok" if ratio <= TARGET else "OVER TARGET"
    print(f"a3po_shape / torch.sort = {ratio:.2f}x (target <= {TARGET}x) {verdict}")
    return ratio


if __name__ == "__main__":
    main()
