"""The benchmark registry: name -> where its prepared parquet comes from.

Every benchmark is evaluated from ``results/<study>/data/<name>.parquet`` in the verl row
format. ``synthetic-arith-test`` is written by the synthetic data stage; hub benchmarks are
added by the evaluation-at-scale work (MATH-500, AIME, AMC, Minerva, OlympiadBench).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Benchmark:
    name: str
    description: str
    source: str  # "synthetic" (made by the data stage) or a hub id


BENCHMARKS: dict[str, Benchmark] = {
    "synthetic-arith-test": Benchmark(
        "synthetic-arith-test", "held-out split of the synthetic arithmetic task", "synthetic"
    ),
}
