"""Benchmark: building the default study's DAG (`snakemake -n`) without torch vs with it.

Building the DAG imports the package's registries and settings, none of which needs torch. The
anchor is the same dry run with torch imported first (a `sitecustomize` on PYTHONPATH that runs
`import torch`): what every `snakemake -n` paid while the registry imported torch. Runs are
interleaved so that machine load hits both sides alike; medians are compared.

    python benchmarks/bench_dryrun.py              # 5 pairs of runs
    python benchmarks/bench_dryrun.py --repeats 9
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def dry_run(workdir: Path, pythonpath: str | None) -> float:
    """Seconds of one `snakemake -n` of the default study (fails loudly if it fails)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath, env.get("PYTHONPATH")) if p)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
                    "--directory", str(workdir), "--configfile", str(REPO / "config.yaml"),
                    "-n", "--quiet", "rules"], check=True, env=env, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        anchor = tmp / "with_torch"
        anchor.mkdir()
        (anchor / "sitecustomize.py").write_text("import torch  # noqa: F401\n")
        dry_run(tmp / "warm", None)  # first runs fill the file cache: neither side pays it
        dry_run(tmp / "warm_torch", str(anchor))
        plain, with_torch = [], []
        for i in range(args.repeats):
            plain.append(dry_run(tmp / f"plain{i}", None))
            with_torch.append(dry_run(tmp / f"torch{i}", str(anchor)))
    p, t = statistics.median(plain), statistics.median(with_torch)
    print(f"snakemake -n, default study, {args.repeats} interleaved pairs")
    print(f"  without torch (this package): median {p:.2f} s  (runs {', '.join(f'{x:.2f}' for x in plain)})")
    print(f"  with torch imported first:     median {t:.2f} s  (runs {', '.join(f'{x:.2f}' for x in with_torch)})")
    print(f"  ratio: {p / t:.2f}x the time of the torch-importing build")


if __name__ == "__main__":
    main()
