"""Per-run statistics of a trajectory: catapults, the edge of stability, sharpness at the end of warmup.

A trajectory is the per-step table of train.py (row s = parameters after s updates; `lr` at row s is the lr of
update s + 1; `sharpness` only where measured; `stability_threshold` = c / lr; `critical_sharpness` lambda_c where
measured, every step by default).

Where a run has the critical sharpness at every step, the edge-of-stability statistics read it (lr x lambda_c / 2, the
update raising the loss on its batch beyond 1) instead of the sparser Lanczos steps (lr x lambda_max / c); the
Lanczos-based values stay beside them with a `_lanczos` suffix (docs/science.md section 10).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .optim import CRITICAL_CONSTANT

EOS_BAND = 0.10  # "at the edge of stability": lr * sharpness within 10% of the threshold constant c
CATAPULT_RISE = 0.10  # a catapult: the loss rises more than 10% above its running minimum ...
SHARPENING_RISE = 1.10  # progressive-sharpening regime: sharpness during warmup rises above 1.1 x lambda_0
FOLLOW_BAND = (0.8, 1.6)  # "follows the threshold": median lr * sharpness / c after reaching it lies in this band


@dataclass
class Catapult:
    start: int  # first step above (1 + rise) x the running minimum
    peak: int
    end: int  # first later step back at or below (1 + rise) x that running minimum
    peak_ratio: float  # loss at the peak / running minimum before the start
    sharpness_before: float  # last measured sharpness at or before `start - 1` (NaN if none)
    sharpness_after: float  # first measured sharpness at or after `end` (NaN if none)
    critical_before: float = math.nan  # the same for the critical sharpness (every step: at start - 1 and at end)
    critical_after: float = math.nan

    @property
    def sharpness_ratio(self) -> float:
        """sharpness after / before; NaN when either is missing or the sharpness before is not positive (a network
        whose units all died has a zero Hessian)."""
        return self.sharpness_after / self.sharpness_before if self.sharpness_before > 0 else math.nan

    @property
    def critical_ratio(self) -> float:
        """critical sharpness after / before; NaN when either is missing or the one before is not in (0, inf)."""
        return self.critical_after / self.critical_before if 0 < self.critical_before < math.inf else math.nan


def _around(series: np.ndarray, start: int, end: int) -> tuple[float, float]:
    """The last measured value before index `start` and the first at or after index `end` (NaN where none)."""
    before = series[:start][~np.isnan(series[:start])]
    after = series[end:][~np.isnan(series[end:])]
    return float(before[-1]) if len(before) else math.nan, float(after[0]) if len(after) else math.nan


def detect_catapults(steps, loss, sharpness=None, rise: float = CATAPULT_RISE, critical=None) -> list[Catapult]:
    """Loss spikes that come back: the loss exceeds (1 + rise) x its running minimum, then returns to at most
    (1 + rise) x that minimum. A spike that never comes back (divergence, or the end of the run) is not a
    catapult. `sharpness` and `critical` (the critical sharpness) are series aligned with `steps`, NaN where not
    measured."""
    steps = np.asarray(steps)
    loss = np.asarray(loss, dtype=float)
    sharp = np.full(len(loss), np.nan) if sharpness is None else np.asarray(sharpness, dtype=float)
    crit = np.full(len(loss), np.nan) if critical is None else np.asarray(critical, dtype=float)
    events: list[Catapult] = []
    running_min, i = math.inf, 0
    while i < len(loss):
        if not math.isfinite(loss[i]):
            break
        if running_min < math.inf and loss[i] > (1 + rise) * running_min:
            floor = running_min
            j = i
            while j < len(loss) and math.isfinite(loss[j]) and loss[j] > (1 + rise) * floor:
                j += 1
            if j >= len(loss) or not math.isfinite(loss[j]):
                break  # never came back
            peak = i + int(np.argmax(loss[i:j]))
            events.append(
                Catapult(
                    int(steps[i]),
                    int(steps[peak]),
                    int(steps[j]),
                    float(loss[peak] / floor),
                    *_around(sharp, i, j),
                    *_around(crit, i, j),
                )
            )
            running_min = min(running_min, float(loss[j]))
            i = j + 1
            continue
        running_min = min(running_min, float(loss[i]))
        i += 1
    return events


def edge_of_stability_fraction(lr_times_sharpness, constant: float, band: float = EOS_BAND) -> float:
    """Fraction of the measured steps with |lr * sharpness / c - 1| <= band (NaN when none was measured)."""
    x = np.asarray(lr_times_sharpness, dtype=float)
    x = x[~np.isnan(x)]
    if not len(x):
        return math.nan
    return float(np.mean(np.abs(x / constant - 1) <= band))


def sharpness_regime(max_during_warmup_over_lambda_0: float, end_of_warmup_over_lambda_0: float) -> str:
    """The paper's two warmup regimes: `sharpening` when the sharpness rises during warmup (natural
    progressive sharpening), `reduction` when it never rises above lambda_0 by 10% and ends warmup below lambda_0
    (natural sharpness reduction); `unclear` otherwise or without measurements."""
    if math.isnan(max_during_warmup_over_lambda_0):
        return "unclear"
    if max_during_warmup_over_lambda_0 >= SHARPENING_RISE:
        return "sharpening"
    return "reduction" if end_of_warmup_over_lambda_0 < 1 else "unclear"


def threshold_following(lr_times_sharpness, constant: float, band: float = EOS_BAND) -> tuple[float, float]:
    """(first index where lr * sharpness reaches (1 - band) c, median of lr * sharpness / c from there on), over
    the measured steps in order; (NaN, NaN) when the threshold is never reached."""
    x = np.asarray(lr_times_sharpness, dtype=float)
    x = x[~np.isnan(x)] / constant
    reached = np.flatnonzero(x >= 1 - band)
    if not len(reached):
        return math.nan, math.nan
    return float(reached[0]), float(np.median(x[reached[0] :]))


def has_every_step_critical(traj: pd.DataFrame) -> bool:
    """Whether the run measured the critical sharpness at every step before its last (sharpness.critical_every: 1)."""
    return "critical_sharpness" in traj and len(traj) > 1 and bool(traj["critical_sharpness"].iloc[:-1].notna().all())


def run_statistics(traj: pd.DataFrame, warmup_steps_used: float) -> dict[str, Any]:
    """The per-run numbers of the claims (docs/science.md section 7). The edge-of-stability numbers (eos fraction,
    threshold following) come from the critical sharpness where it was measured at every step,
    else from the Lanczos steps (`curvature_every_step` says which); the Lanczos ones are also kept as `*_lanczos`."""
    measured = traj.dropna(subset=["sharpness"])
    lambda_0 = float(measured["sharpness"].iloc[0]) if len(measured) else math.nan
    rows = traj.dropna(subset=["lr"])
    constant = float((rows["lr"] * rows["stability_threshold"]).median()) if len(rows) else math.nan
    used = warmup_steps_used if math.isfinite(warmup_steps_used) else math.inf
    during = traj[traj["step"] < used]  # rows whose next update is still a warmup update
    after = measured[measured["step"] >= used] if math.isfinite(used) else measured.iloc[0:0]
    events = detect_catapults(
        traj["step"], traj["loss"], traj.get("sharpness"), critical=traj.get("critical_sharpness")
    )
    lts = traj["lr_times_sharpness"] if "lr_times_sharpness" in traj else pd.Series(dtype=float)
    every_step = has_every_step_critical(traj)
    end_ratio = float(after["sharpness"].iloc[0]) / lambda_0 if len(after) and lambda_0 > 0 else math.nan
    max_ratio = (
        float(during["sharpness"].max()) / lambda_0 if during["sharpness"].notna().any() and lambda_0 > 0 else math.nan
    )
    _, follow_lanczos = threshold_following(lts, constant)
    eos_lanczos = edge_of_stability_fraction(during.get("lr_times_sharpness", []), constant)
    if every_step:  # the update's own stability: lr x lambda_c against 2, at every step
        critical = traj["lr_times_critical_sharpness"]
        _, follow = threshold_following(critical, CRITICAL_CONSTANT)
        eos = edge_of_stability_fraction(during["lr_times_critical_sharpness"], CRITICAL_CONSTANT)
    else:
        follow, eos = follow_lanczos, eos_lanczos
    # eta_trgt lambda / constant at the end of warmup: <= 1 when the warmup brought the sharpness under the threshold
    end_over_threshold = (
        float(after["sharpness"].iloc[0] * after["lr"].iloc[0]) / constant if len(after) and constant > 0 else math.nan
    )
    return {
        "threshold_constant": constant,
        "sharpness_end_of_warmup": float(after["sharpness"].iloc[0]) if len(after) else math.nan,
        "sharpness_end_of_warmup_over_lambda_0": end_ratio,
        "sharpness_end_of_warmup_over_threshold": end_over_threshold,
        "sharpness_last": float(measured["sharpness"].iloc[-1]) if len(measured) else math.nan,
        "max_sharpness_during_warmup_over_lambda_0": max_ratio,
        "sharpness_regime": sharpness_regime(max_ratio, end_ratio),
        "curvature_every_step": float(every_step),
        "lr_times_sharpness_after_reaching_over_c": follow,
        "lr_times_sharpness_after_reaching_over_c_lanczos": follow_lanczos,
        "eos_fraction_during_warmup": eos,
        "eos_fraction_during_warmup_lanczos": eos_lanczos,
        "max_lr_times_sharpness": float(lts.max()) if lts.notna().any() else math.nan,
        "initial_preconditioned_sharpness": (
            float(traj["preconditioned_sharpness"].iloc[0])
            if "preconditioned_sharpness" in traj and len(traj)
            else math.nan
        ),
        "catapult_events": float(len(events)),
        "catapult_sharpness_drop_median": _nan_median([e.sharpness_ratio for e in events]),
        "catapult_critical_sharpness_drop_median": _nan_median([e.critical_ratio for e in events]),
    }


def _nan_median(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.median(finite)) if finite else math.nan
