"""The findings table: verdicts computed from intervals, on hand-made per-problem results."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from polarity.report.findings import CLAIMS, Claim, entropy_changes, findings, verdict

N = 8  # samples per problem
PROBLEMS = 60


@pytest.mark.parametrize("lo, hi, side, threshold, expected", [
    (0.01, 0.05, ">", 0.0, "supported"),
    (-0.05, -0.01, ">", 0.0, "contradicted"),
    (-0.01, 0.05, ">", 0.0, "inconclusive"),
    (-0.05, -0.01, "<", 0.0, "supported"),
    (0.01, 0.05, "<", 0.0, "contradicted"),
    (-0.015, 0.01, ">", -0.02, "supported"),  # near or above: within 2 points below
    (-0.06, -0.03, ">", -0.02, "contradicted"),
    (0.0, 0.0, ">", 0.0, "inconclusive"),  # an interval touching the threshold decides nothing
    (np.nan, np.nan, ">", 0.0, "not measured"),
])
def test_verdict_from_the_interval(lo, hi, side, threshold, expected):
    assert verdict(lo, hi, side, threshold) == expected


def _policy(algorithm: str, c_of_problem, seeds=(0, 1, 2)) -> list[tuple]:
    return [("tiny", algorithm, s, "synthetic-arith-test", p, N, c_of_problem(p, s))
            for s in seeds for p in range(PROBLEMS)]


def _per_problem(policies: dict) -> pd.DataFrame:
    rows = []
    for algorithm, c in policies.items():
        rows += _policy(algorithm, c, seeds=(0,) if algorithm == "base" else (0, 1, 2))
    return pd.DataFrame(rows, columns=["model", "algorithm", "seed", "benchmark", "problem_id", "n", "c"])


def _training(changes: dict[str, list[float]]) -> pd.DataFrame:
    rows = []
    for algorithm, per_seed in changes.items():
        for seed, delta in enumerate(per_seed):
            for step in range(8):  # entropy 1.0 at step 0, 1 + delta over the last quarter
                rows.append(("tiny", algorithm, seed, step, 1.0 if step < 6 else 1.0 + delta))
    return pd.DataFrame(rows, columns=["model", "algorithm", "seed", "step", "entropy"])


def _row(table: pd.DataFrame, text_start: str) -> pd.Series:
    hits = table[table["claim"].str.startswith(text_start)]
    assert len(hits) == 1, hits
    return hits.iloc[0]


def test_findings_on_planted_effects():
    """base solves 4 of 8 samples of every problem; GRPO 6 of 8 (pass@1 +0.25); PSR all 8 on
    half the problems and none on the rest (pass@1 unchanged, pass@8 halved); NSR the base's
    counts; DAPO and A3PO tie. PSR's entropy falls in every seed, NSR's in one of three."""
    pp = _per_problem({
        "base": lambda p, s: 4,
        "grpo": lambda p, s: 6,
        "psr": lambda p, s: 8 if p % 2 == 0 else 0,  # pass@1 = 0.5 as base, pass@8 halves
        "nsr": lambda p, s: 4,
        "dapo": lambda p, s: 5,
        "a3po": lambda p, s: 5,
    })
    training = _training({"psr": [-0.3, -0.2, -0.25], "nsr": [0.1, -0.05, 0.2]})
    table = findings(pp, training)
    assert set(table["verdict"]) <= {"supported", "contradicted", "inconclusive", "not measured"}
    grpo = _row(table, "RL (GRPO)")
    assert grpo["estimate"] == pytest.approx(0.25) and grpo["verdict"] == "supported"
    psr1 = _row(table, "PSR raises pass@1")
    assert psr1["estimate"] == pytest.approx(0.0) and psr1["verdict"] == "inconclusive"
    psrk = _row(table, "PSR lowers pass@k")
    assert psrk["estimate"] == pytest.approx(-0.5) and psrk["verdict"] == "supported"
    nsrk = _row(table, "NSR keeps")
    assert nsrk["estimate"] == pytest.approx(0.0) and nsrk["verdict"] == "supported"  # 0 > -0.02
    tie = _row(table, "A3PO beats DAPO")
    assert tie["estimate"] == pytest.approx(0.0) and tie["verdict"] == "inconclusive"
    assert _row(table, "W-REINFORCE raises")["verdict"] == "not measured"  # not in this study
    assert _row(table, "POPO")["verdict"] == "not measured"
    falls = _row(table, "Positive samples lower entropy")
    assert falls["estimate"] == pytest.approx(-0.25) and falls["verdict"] == "supported"
    assert falls["ci_high"] == pytest.approx(-0.2)  # the bootstrap over 3 seeds: at most the max
    rises = _row(table, "Negative samples raise entropy")
    assert rises["estimate"] == pytest.approx(0.25 / 3) and rises["verdict"] == "inconclusive"
    assert len(table) == len(CLAIMS)


def test_a_contradicted_claim():
    pp = _per_problem({"base": lambda p, s: 6, "psr": lambda p, s: 2})
    table = findings(pp, pd.DataFrame(), claims=(Claim("x", "y", "psr", "base", "avg@n", ">"),))
    assert table.iloc[0]["estimate"] == pytest.approx(-0.5)
    assert table.iloc[0]["verdict"] == "contradicted"


def test_entropy_change_uses_the_last_quarter():
    training = _training({"psr": [-0.4]})
    changes = entropy_changes(training)
    assert changes["change"].tolist() == pytest.approx([-0.4])
