"""How a claim's verdict is decided from several initialization seeds.

A claim is checked on *units* of evidence, each tagged with the seed it came from: a run, a pair of runs that
differ only in the method (same grid cell, same seed), or one number per seed. A part of a claim is one of two
kinds, and each is decided twice:

- `SignPart`: each unit agrees (+1), disagrees (-1) or is a tie (0). Pooled over seeds: an exact one-sided sign
  test on the non-tied units (binomial, p = 1/2): SUPPORTED when agreement is significant (p < ALPHA),
  CONTRADICTED when disagreement is, INCONCLUSIVE otherwise.
- `BoundPart`: each unit is a number (an accuracy difference, a log-ratio); the claim says its mean lies above
  `low` and/or below `high`. Pooled: the one-sided 95% confidence bounds of the mean (Student t over the units):
  SUPPORTED when the bounds lie inside (low, high) (for two bounds this is the two one-sided tests, TOST, of an
  equivalence), CONTRADICTED when they lie wholly outside, INCONCLUSIVE otherwise.

Per seed, each part is decided descriptively on that seed's units alone, as a one-seed run would be read: at least
80% of the units agree (or lie inside the bounds): SUPPORTED; under 50%: CONTRADICTED; else INCONCLUSIVE. A pooled
verdict needs units from at least MIN_SEEDS seeds. The rules are fixed here, not tuned to any outcome; README's
"How each verdict is decided" states them per claim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "SUPPORTED", "CONTRADICTED", "INCONCLUSIVE"
ALPHA = 0.05  # significance of a pooled test (one-sided)
MIN_SEEDS = 3  # a pooled verdict rests on at least this many initialization seeds
MAJORITY, MINORITY = 0.8, 0.5  # per-seed reading: >= 80% of the units agree: supported; < 50%: contradicted


def combine(verdicts: list[str]) -> str:
    """Several parts of one claim: contradicted if any part is, supported if all are, else inconclusive."""
    if CONTRADICTED in verdicts:
        return CONTRADICTED
    return SUPPORTED if verdicts and set(verdicts) == {SUPPORTED} else INCONCLUSIVE


def share_verdict(hits: int, cases: int) -> str:
    if cases == 0:
        return INCONCLUSIVE
    share = hits / cases
    return SUPPORTED if share >= MAJORITY else CONTRADICTED if share < MINORITY else INCONCLUSIVE


def sign_test(agree: int, disagree: int) -> tuple[float, float]:
    """One-sided exact sign-test p-values (for agreement, for disagreement) on the non-tied units."""
    n = agree + disagree
    if n == 0:
        return 1.0, 1.0
    return (
        float(stats.binomtest(agree, n, 0.5, alternative="greater").pvalue),
        float(stats.binomtest(disagree, n, 0.5, alternative="greater").pvalue),
    )


def mean_bounds(values) -> tuple[float, float, float]:
    """(mean, lower, upper): the one-sided 95% confidence bounds of the mean (Student t); NaN bounds for < 2 values."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(1 - ALPHA, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, mean - half, mean + half


def _p(p: float) -> str:
    return f"p = {p:.2g}" if p >= 0.001 else "p < 0.001"


@dataclass
class PartResult:
    verdict: str
    words: str  # the statistic in words, e.g. "9 of 9 comparisons agree, 3 seeds, sign test p = 0.002"
    numbers: dict = field(default_factory=dict)
    per_seed: dict = field(default_factory=dict)  # seed -> verdict


@dataclass
class SignPart:
    """Units with a `seed` and a `sign` (+1 agrees, -1 disagrees, 0 tie); `what` names a unit in words."""

    name: str
    units: pd.DataFrame
    what: str

    def decide(self) -> PartResult:
        u = self.units
        agree, disagree = int((u["sign"] > 0).sum()), int((u["sign"] < 0).sum())
        seeds = sorted(u["seed"].unique()) if len(u) else []
        p_agree, p_disagree = sign_test(agree, disagree)
        per_seed = {
            int(s): share_verdict(int((g["sign"] > 0).sum()), int((g["sign"] != 0).sum()))
            for s, g in u.groupby("seed", sort=True)
        }
        if len(seeds) < MIN_SEEDS or agree + disagree == 0:
            verdict = INCONCLUSIVE
        else:
            verdict = SUPPORTED if p_agree < ALPHA else CONTRADICTED if p_disagree < ALPHA else INCONCLUSIVE
        ties = len(u) - agree - disagree
        words = (
            f"{agree} of {agree + disagree} {self.what} agree"
            + (f" ({ties} ties)" if ties else "")
            + f", {len(seeds)} seeds, sign test {_p(p_agree if agree >= disagree else p_disagree)}"
        )
        numbers = {
            f"{self.name}_units": len(u),
            f"{self.name}_agree": agree,
            f"{self.name}_disagree": disagree,
            f"{self.name}_p_agree": p_agree,
            f"{self.name}_p_disagree": p_disagree,
            f"{self.name}_seeds": len(seeds),
        }
        return PartResult(verdict, words, numbers, per_seed)


@dataclass
class BoundPart:
    """Units with a `seed` and a `value`; the claim: the mean value lies above `low` and/or below `high`.
    `unit` formats a value in words (e.g. accuracy points)."""

    name: str
    units: pd.DataFrame
    what: str
    low: float | None = None
    high: float | None = None
    scale: float = 1.0  # values are shown multiplied by this (100: accuracy points)
    unit: str = ""
    bound_name: str = ""  # what the bounds are, e.g. "+-1 seed-to-seed sd"

    def _inside(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        ok = np.isfinite(x)
        if self.low is not None:
            ok &= x > self.low
        if self.high is not None:
            ok &= x < self.high
        return ok

    def decide(self) -> PartResult:
        u = self.units[np.isfinite(self.units["value"].astype(float))] if len(self.units) else self.units
        seeds = sorted(u["seed"].unique()) if len(u) else []
        mean, lower, upper = mean_bounds(u["value"] if len(u) else [])
        per_seed = {
            int(s): share_verdict(int(self._inside(g["value"]).sum()), len(g)) for s, g in u.groupby("seed", sort=True)
        }
        lo = -math.inf if self.low is None else self.low
        hi = math.inf if self.high is None else self.high
        if len(seeds) < MIN_SEEDS or math.isnan(lower):
            verdict = INCONCLUSIVE
        elif lower > lo and upper < hi:
            verdict = SUPPORTED
        elif upper <= lo or lower >= hi:
            verdict = CONTRADICTED
        else:
            verdict = INCONCLUSIVE
        k = self.scale

        def f(v: float) -> str:
            return "-" if v is None or not math.isfinite(v) else f"{k * v:+.2f}"

        target = (
            f"within ({f(self.low)}, {f(self.high)})"
            if self.low is not None and self.high is not None
            else f"above {f(self.low)}"
            if self.low is not None
            else f"below {f(self.high)}"
        )
        if self.bound_name:
            target += f" ({self.bound_name})"
        words = (
            f"mean {self.what} {f(mean)}{self.unit}, 95% bounds [{f(lower)}, {f(upper)}] {target}; "
            f"{len(u)} units, {len(seeds)} seeds"
        )
        numbers = {
            f"{self.name}_units": len(u),
            f"{self.name}_mean": mean,
            f"{self.name}_lower": lower,
            f"{self.name}_upper": upper,
            f"{self.name}_low": self.low,
            f"{self.name}_high": self.high,
            f"{self.name}_seeds": len(seeds),
        }
        return PartResult(verdict, words, numbers, per_seed)


def seed_spread(runs: pd.DataFrame, cell: list[str], column: str = "final_test_accuracy") -> float:
    """The seed-to-seed spread of `column` within a cell: the root mean square over the cells (grouped by `cell`)
    of the sample standard deviation across seeds; cells with fewer than 2 values are left out (NaN if none)."""
    if not len(runs):
        return math.nan
    var = runs.groupby(cell)[column].var(ddof=1).dropna()
    return float(math.sqrt(var.mean())) if len(var) else math.nan
