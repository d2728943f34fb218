"""Fake study results in exactly the layout the report reads (deterministic, numpy RNG), and
the samples frames the report tests build by hand.

``make_fake_results(root)`` writes under ``root`` (a ``results/<study>`` folder)::

    runs/<model>/<algorithm>/seed<k>/metrics.jsonl
    eval/<model>/<algorithm>/seed<k>/<benchmark>.parquet   (base: eval/<model>/base/seed0/...)
    models/<model>/warmup.json                             (when ``warmup``)
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

DEFAULT_ALGORITHMS = ("grpo", "dapo", "psr", "nsr", "a3po", "popo")
DEFAULT_BENCHMARKS = ("synthetic-arith-test", "math500")

# how much each algorithm shifts accuracy (logit) and entropy per step: PSR sharpens
# (entropy falls fast), NSR keeps exploring (entropy stays up), the rest in between
_SKILL = {"base": 0.0, "grpo": 0.6, "dr_grpo": 0.6, "dapo": 0.7, "psr": 0.8, "nsr": 0.3,
          "w_reinforce": 0.6, "a3po": 0.75, "popo": 0.65}
_ENTROPY_DECAY = {"psr": 0.25, "nsr": 0.02, "w_reinforce": 0.06, "a3po": 0.08}


def _rng(*parts) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32("/".join(map(str, parts)).encode()))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def training_rows(algorithm: str, seed: int, steps: int, n: int = 8, groups: int = 4) -> list[dict]:
    """Plausible per-step metrics of one run (A3PO and POPO add their own keys)."""
    rng = _rng("train", algorithm, seed)
    skill = _SKILL.get(algorithm, 0.5)
    rows = []
    for step in range(steps):
        acc = float(_sigmoid(-0.4 + skill * step / max(steps - 1, 1) * 2 + rng.normal(0, 0.1)))
        batch = groups * n
        n_pos = int(rng.binomial(batch, acc))
        all_c = float(rng.uniform(0, acc / 2))
        all_w = float(rng.uniform(0, (1 - acc) / 2))
        dropped = all_c + all_w if algorithm in ("dapo", "a3po") else 0.0
        length = float(20 + 5 * step * (1 if algorithm != "psr" else -0.5) + rng.normal(0, 1))
        row = {
            "step": step, "algorithm": algorithm, "seed": seed,
            "gen_rounds": 1 + int(dropped > 0.3), "groups_sampled": groups,
            "frac_groups_all_correct": all_c, "frac_groups_all_wrong": all_w,
            "frac_groups_dropped": dropped, "accuracy": acc,
            "response_length_mean": length, "response_length_max": float(int(length * 1.6)),
            "response_clip_frac": float(rng.uniform(0, 0.1)),
            "n_positive": n_pos, "n_negative": batch - n_pos,
            "frac_positive": n_pos / batch, "frac_negative": 1 - n_pos / batch,
            "reward_mean": n_pos / batch,
            "lenient_only_frac": 0.02 * step if algorithm == "a3po" else 0.0,
            "entropy": float(1.2 * np.exp(-_ENTROPY_DECAY.get(algorithm, 0.1) * step)
                             + rng.normal(0, 0.02)),
            "batch_responses": batch, "pg_loss": float(rng.normal(0, 0.05)),
            "clip_frac": float(rng.uniform(0, 0.05)), "grad_norm": float(rng.gamma(2.0, 0.5)),
            "optimizer_steps": 1, "lr": 1e-5,
        }
        if step == 0:
            row["grad_norm"] = float("nan")  # the logs may hold NaN
        if algorithm == "a3po":
            s = 2.0 * (1 - 0.005) ** step
            row.update({
                "a3po/s_pos": s, "a3po/s_neg": s,
                "a3po/amplified_frac_pos": float(rng.uniform(0.15, 0.25)),
                "a3po/amplified_frac_neg": float(rng.uniform(0.15, 0.25)),
                "a3po/amplified_prob_pos": float(rng.uniform(0.05, 0.3)),
                "a3po/amplified_prob_neg": float(rng.uniform(0.6, 0.95)),
            })
        if algorithm == "popo":
            row.update({
                "popo/weight_entropy": float(np.log(max(n_pos, 1)) + rng.normal(0, 0.05)),
                "popo/sim_loss": float(-0.5 - 0.05 * step + rng.normal(0, 0.02)),
                "popo/ema_tau": 0.995,
            })
        rows.append(row)
    return rows


def eval_frame(algorithm: str, seed: int, benchmark: str, n: int, problems: int) -> pd.DataFrame:
    """n samples per problem; problem difficulty fixed per benchmark, skill per algorithm."""
    difficulty = _rng("difficulty", benchmark).normal(0.0, 1.5, problems)
    rng = _rng("eval", algorithm, seed, benchmark)
    p = _sigmoid(_SKILL.get(algorithm, 0.5) - difficulty)
    rows = []
    for pid in range(problems):
        truth = str(pid * 7 % 50)
        for j in range(n):
            correct = bool(rng.random() < p[pid])
            length = int(rng.integers(5, 40))
            truncated = bool(length >= 38)
            if correct:
                reason, answer = "correct", truth
            else:
                reason = str(rng.choice(["wrong", "wrong", "wrong", "no_answer", "parse_failure",
                                         "timeout"]))
                answer = {"wrong": str(int(truth) + 1), "parse_failure": "\\frac{", "timeout": "x"}.get(reason)
            response = f"The answer is \\boxed{{{answer}}}" if answer is not None else "I am not sure"
            # every other no_answer is a planted reward hack: only the lenient policy credits it
            hack = reason == "no_answer" and (pid + j) % 2 == 0
            if hack:
                response = f"It is {truth}+0. \\boxed{{"
            rows.append({
                "problem_id": pid, "sample": j, "response": response, "ground_truth": truth,
                "answer": answer, "correct": float(correct), "reason": reason, "lenient_only": hack,
                "response_length": length, "truncated": truncated,
            })
    return pd.DataFrame(rows)


def warmup_record(steps: int = 6) -> dict:
    return {
        "parameters": 123456, "validation_accuracy": 0.42, "warmup_steps": steps,
        "history": [{"step": s, "loss": 2.0 * 0.8 ** s, "accuracy": min(0.9, 0.1 + 0.06 * s)}
                    for s in range(steps)],
        "vocab_size": 64,
    }


def make_fake_results(
    root: Path,
    algorithms=DEFAULT_ALGORITHMS,
    seeds=(0,),
    steps: int = 5,
    n: int = 8,
    problems: int = 12,
    benchmarks=DEFAULT_BENCHMARKS,
    model: str = "tiny",
    warmup: bool = True,
    base: bool = True,
    answers: bool = True,
) -> Path:
    """Write a fake results directory (training logs, eval samples incl. base, warm-up).

    ``base=False`` leaves the base model's evaluation out; ``answers=False`` writes sample files
    without the ``answer`` column (as older evaluations did), so maj@n cannot be computed.
    """
    root = Path(root)
    for algo in algorithms:
        for seed in seeds:
            run = root / "runs" / model / algo / f"seed{seed}"
            run.mkdir(parents=True, exist_ok=True)
            (run / "metrics.jsonl").write_text(
                "".join(json.dumps(r) + "\n" for r in training_rows(algo, seed, steps, n)))
    evaluated = [("base", (0,))] if base else []
    for algo, algo_seeds in [*evaluated, *((a, seeds) for a in algorithms)]:
        for seed in algo_seeds:
            folder = root / "eval" / model / algo / f"seed{seed}"
            folder.mkdir(parents=True, exist_ok=True)
            for bench in benchmarks:
                frame = eval_frame(algo, seed, bench, n, problems)
                if not answers:
                    frame = frame.drop(columns="answer")
                frame.to_parquet(folder / f"{bench}.parquet", index=False)
    if warmup:
        folder = root / "models" / model
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "warmup.json").write_text(json.dumps(warmup_record(), indent=1))
    return root


# ----------------------------------------------------------------------------- the report tests'

# the demo study of tests/test_report*.py (base is evaluated once, as seed0)
ALGOS = ("grpo", "psr", "nsr", "a3po", "popo")
SEEDS = (0, 1)
STEPS, N, PROBLEMS = 5, 8, 12
BENCHMARKS = ("synthetic-arith-test", "math500")


def make_demo_results(tmp_path_factory) -> Path:
    """The demo study under a fresh ``.../results/demo`` folder."""
    root = tmp_path_factory.mktemp("results") / "demo"
    return make_fake_results(root, algorithms=ALGOS, seeds=SEEDS, steps=STEPS, n=N,
                             problems=PROBLEMS, benchmarks=BENCHMARKS)


def samples_by_hand(counts: dict[int, list[int]], n: int, *, algorithm="grpo", benchmark="b",
                    model="m", problem_ids=None) -> pd.DataFrame:
    """A samples frame by hand: counts[seed][problem] correct answers out of n (the first c)."""
    rows = []
    for seed, cs in counts.items():
        for i, c in enumerate(cs):
            pid = i if problem_ids is None else problem_ids[i]
            for j in range(n):
                ok = j < c
                rows.append({"model": model, "algorithm": algorithm, "seed": seed, "benchmark": benchmark,
                             "problem_id": pid, "sample": j, "correct": float(ok),
                             "reason": "correct" if ok else ("wrong" if j % 2 else "no_answer")})
    return pd.DataFrame(rows)


def stack(*parts: pd.DataFrame) -> pd.DataFrame:
    return pd.concat(parts, ignore_index=True)
