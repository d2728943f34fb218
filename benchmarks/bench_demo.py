"""Wall time of the embedded default study (3 seeds), end to end, against its 15-minute budget.

Runs `snakemake --cores N` on config.yaml in a fresh temporary working directory (so nothing
is reused from an earlier run) and prints the wall time of the whole DAG as a fraction of the
budget, the base model's warm-up accuracy, each run's summed step time (state/timing.jsonl)
and each policy's avg@n and pass@n on the synthetic test split (all seeds).

With ``--results DIR`` (e.g. results/demo) it runs nothing and summarizes that finished study:
the same figures plus each policy's paired avg@n / pass@n difference against the base model with
its 95% bootstrap interval (the report's `paired_comparisons`, problems and seeds resampled),
each run's mean training reward and dual-clip share, and the findings table with its verdicts:
the figures the README quotes.

Usage: python benchmarks/bench_demo.py [--cores 2] [--keep DIR] [--results DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
BUDGET_S = 15 * 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None, help="run here and keep the results")
    parser.add_argument("--results", type=Path, default=None,
                        help="summarize this finished study (results/<study>) instead of running")
    args = parser.parse_args()
    if args.results is not None:
        summarize(args.results, paired=True)
        return
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="polarity-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "config.yaml", workdir / "config.yaml")
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"),
           "--cores", str(args.cores), "--quiet", "rules"]
    start = time.time()
    subprocess.run(cmd, check=True)
    wall = time.time() - start

    print(f"default study: {wall / 60:.1f} min wall on {args.cores} cores "
          f"(budget {BUDGET_S / 60:.0f} min): {wall / BUDGET_S:.2f}x of budget")
    summarize(workdir / "results" / "demo")
    if args.keep is None:
        shutil.rmtree(workdir)


def summarize(results: Path, paired: bool = False) -> None:
    """Warm-up, per-policy avg@n / pass@n and per-run training figures of a finished study."""
    warmup = json.loads((results / "models" / "tiny" / "warmup.json").read_text())
    print(f"tiny model: {warmup['parameters']} parameters, warm-up {warmup['warmup_steps']} steps, "
          f"validation accuracy {warmup['validation_accuracy']:.3f}")
    rows = []
    for path in sorted((results / "eval").rglob("*.parquet")):
        frame = pd.read_parquet(path)
        rows.append((path.parent.parent.name, path.parent.name, frame["correct"].mean(),
                     frame.groupby("problem_id")["correct"].max().mean()))
    for algorithm, seed, avg, pass_n in rows:
        print(f"  {algorithm:12s} {seed:6s} avg@n {avg:.3f}  pass@n {pass_n:.3f}")
    # the samples behind the numbers: a correct final answer reached through a wrong step
    for algorithm in sorted({r[0] for r in rows}):
        frame = pd.concat([pd.read_parquet(p) for p in sorted((results / "eval").glob(f"*/{algorithm}/seed*/*.parquet"))])
        steps_right = frame["response"].map(chain_is_right)
        correct = frame["correct"] == 1
        print(f"  {algorithm:12s} correct {correct.mean():.3f}, of which with a wrong step "
              f"{((steps_right == False) & correct).sum() / max(correct.sum(), 1):.3f}")  # noqa: E712
    for path in sorted((results / "runs").glob("*/*/seed*/metrics.jsonl")):
        steps = [json.loads(x) for x in path.read_text().splitlines()]
        timing = path.parent / "state" / "timing.jsonl"
        secs = sum(json.loads(x)["step_seconds"] for x in timing.read_text().splitlines()) \
            if timing.exists() else float("nan")
        mean = lambda key: sum(s.get(key) or 0.0 for s in steps) / len(steps)  # noqa: E731
        print(f"  train {path.parts[-3]:12s} {path.parts[-2]} {len(steps)} steps, {secs:.0f} s of steps, "
              f"accuracy {steps[0]['accuracy']:.2f} -> {steps[-1]['accuracy']:.2f}, "
              f"entropy {steps[0]['entropy']:.3f} -> {steps[-1]['entropy']:.3f}, "
              f"mean reward {mean('reward_mean'):+.3f}, dual-clip share {mean('dual_clip_frac'):.5f}")
    if paired:
        from polarity.report import load, tables

        comparisons = tables.paired_comparisons(load.load_samples(results))
        for row in comparisons[comparisons["metric"].isin(["avg@n", "pass@n"])].itertuples():
            print(f"  {row.algorithm:12s} {row.metric:6s} {row.value:.3f} vs base "
                  f"{row.reference_value:.3f}: {row.diff:+.3f} [{row.ci_low:+.3f}, {row.ci_high:+.3f}]")
        from polarity.report.findings import findings

        table = findings(load.load_samples(results), load.load_training(results))
        for row in table.itertuples():
            print(f"  {row.verdict:12s} {row.claim}: {row.estimate:+.3f} "
                  f"[{row.ci_low:+.3f}, {row.ci_high:+.3f}] ({row.measure})")


def chain_is_right(response: str) -> bool | None:
    """Whether every ``a+b=c`` / ``a-b=c`` step of a synthetic-task response is right (None: no step)."""
    import re

    steps = re.findall(r"(\d+)([+-])(\d+)=(\d+)", response)
    if not steps:
        return None
    return all((int(a) + int(b) if op == "+" else int(a) - int(b)) == int(c) for a, op, b, c in steps)


if __name__ == "__main__":
    main()
