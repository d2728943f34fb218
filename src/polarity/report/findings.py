"""The papers' polarity claims, measured on a study: one row per claim with its 95% interval
and a verdict computed from that interval, never written by hand.

A claim says that a measured difference lies above (``">"``) or below (``"<"``) a threshold:
0 for "raises" / "lowers" / "beats", ``-NEAR`` for "near or above". The verdict is
**supported** when the whole 95% interval is on the claimed side of the threshold,
**contradicted** when the whole interval is on the other side, and **inconclusive** otherwise
(the interval contains the threshold). Evaluation claims use the report's paired bootstrap
(problems resampled jointly for the two policies, seeds per side); the entropy claims use a
bootstrap over seeds of each run's entropy change (the run is the unit).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import metrics
from . import tables

NEAR = 0.02  # "near the base model": at most 2 points of pass@k below it
ENTROPY_TAIL = 0.25  # the entropy at the end of a run: the mean over its last quarter of steps

FINDINGS_COLUMNS = ["claim", "source", "model", "benchmark", "measure", "estimate", "ci_low",
                    "ci_high", "side", "threshold", "verdict"]
VERDICTS = ("supported", "contradicted", "inconclusive", "not measured")


@dataclass(frozen=True)
class Claim:
    """``metric`` of ``algorithm`` minus ``reference`` lies on ``side`` of ``threshold``."""

    text: str
    source: str
    algorithm: str
    reference: str
    metric: str  # "avg@n" (= pass@1), "pass@n" (pass@k at the largest k), or "entropy change"
    side: str  # ">" or "<"
    threshold: float = 0.0


ZHU = "Zhu et al. 2025 (PSR/NSR)"
A3PO = "A3PO (Sample-Polarity-of-RLVR)"
POPO = "POPO"
CLAIMS: tuple[Claim, ...] = (
    Claim("RL (GRPO) improves the base model's pass@1", "RLVR", "grpo", "base", "avg@n", ">"),
    Claim("PSR raises pass@1", ZHU, "psr", "base", "avg@n", ">"),
    Claim("PSR lowers pass@k at the largest k", ZHU, "psr", "base", "pass@n", "<"),
    Claim("NSR keeps pass@k at the largest k near or above the base model", ZHU, "nsr", "base",
          "pass@n", ">", -NEAR),
    Claim("W-REINFORCE raises pass@1 (balance, part 1)", ZHU, "w_reinforce", "base", "avg@n", ">"),
    Claim("W-REINFORCE keeps pass@k at the largest k near or above the base model (balance, "
          "part 2)", ZHU, "w_reinforce", "base", "pass@n", ">", -NEAR),
    Claim("A3PO beats DAPO (pass@1)", A3PO, "a3po", "dapo", "avg@n", ">"),
    Claim("POPO is comparable to or better than GRPO (pass@1)", POPO, "popo", "grpo", "avg@n", ">",
          -NEAR),
    Claim("Positive samples lower entropy (PSR's entropy falls)", ZHU + "; " + A3PO, "psr",
          "start", "entropy change", "<"),
    Claim("Negative samples raise entropy (NSR's entropy rises)", ZHU + "; " + A3PO, "nsr",
          "start", "entropy change", ">"),
)


def verdict(ci_low: float, ci_high: float, side: str, threshold: float = 0.0) -> str:
    """supported / contradicted / inconclusive from a 95% interval (see the module docstring)."""
    if not (np.isfinite(ci_low) and np.isfinite(ci_high)):
        return "not measured"
    if side not in (">", "<"):
        raise ValueError(f"side must be '>' or '<', not {side!r}")
    above, below = ci_low > threshold, ci_high < threshold
    if side == ">":
        return "supported" if above else "contradicted" if below else "inconclusive"
    return "supported" if below else "contradicted" if above else "inconclusive"


def entropy_changes(training: pd.DataFrame, tail: float = ENTROPY_TAIL) -> pd.DataFrame:
    """Per run: the policy entropy at the end (mean over the last ``tail`` of its steps) minus
    at step 0 (the base model's own samples). Columns: model, algorithm, seed, change."""
    rows = []
    if training.empty or "entropy" not in training.columns:
        return pd.DataFrame(columns=["model", "algorithm", "seed", "change"])
    for (model, algo, seed), run in training.groupby(["model", "algorithm", "seed"], sort=False):
        run = run.sort_values("step")
        values = run["entropy"].to_numpy(dtype=float)
        if len(values) < 2 or not np.isfinite(values[0]):
            continue
        last = max(1, int(round(len(values) * tail)))
        rows.append((model, algo, int(seed), float(np.nanmean(values[-last:]) - values[0])))
    return pd.DataFrame(rows, columns=["model", "algorithm", "seed", "change"])


def _benchmark_rows(paired: pd.DataFrame) -> pd.DataFrame:
    """The paired rows a finding reads: the average over benchmarks where there is one, else
    each benchmark's."""
    if paired.empty:
        return paired
    keep = []
    for _, by_model in paired.groupby("model", sort=False):
        avg = by_model[by_model["benchmark"] == tables.AVERAGE]
        keep.append(avg if not avg.empty else by_model)
    return pd.concat(keep, ignore_index=True)


def findings(samples: pd.DataFrame, training: pd.DataFrame,
             claims: tuple[Claim, ...] = CLAIMS) -> pd.DataFrame:
    """One row per (claim, model, benchmark): the measured difference, its 95% interval and the
    verdict. A claim whose algorithms the study did not run is one row, ``not measured``."""
    references = {c.reference for c in claims if c.metric != "entropy change"}
    paired = {ref: _benchmark_rows(tables.paired_comparisons(samples, reference=ref))
              for ref in sorted(references)} if not samples.empty else {}
    changes = entropy_changes(training)
    rows = []
    for claim in claims:
        measure = (f"{claim.algorithm}: entropy at the end - at step 0" if claim.metric == "entropy change"
                   else f"{claim.metric}: {claim.algorithm} - {claim.reference}")
        found = []
        if claim.metric == "entropy change":
            for model, runs in changes[changes["algorithm"] == claim.algorithm].groupby("model", sort=False):
                values = runs["change"].to_numpy(dtype=float)
                lo, hi = metrics.bootstrap_ci(values, n_boot=tables.N_BOOT, seed=tables.BOOT_SEED,
                                              level=tables.CI_LEVEL)
                found.append((model, "training", float(values.mean()), lo, hi))
        else:
            table = paired.get(claim.reference, pd.DataFrame())
            if not table.empty:
                hits = table[(table["algorithm"] == claim.algorithm) & (table["metric"] == claim.metric)]
                for r in hits.itertuples():
                    found.append((r.model, r.benchmark, r.diff, r.ci_low, r.ci_high))
        if not found:
            found = [(None, None, np.nan, np.nan, np.nan)]
        for model, bench, estimate, lo, hi in found:
            rows.append((claim.text, claim.source, model, bench, measure, estimate, lo, hi,
                         claim.side, claim.threshold, verdict(lo, hi, claim.side, claim.threshold)))
    return pd.DataFrame(rows, columns=FINDINGS_COLUMNS)
