"""Verdicts on the paper's claims C1-C7 (PAPER.md section 7), computed from this pipeline's runs.

Each check takes the runs table (one row per run: summary.csv columns, the per-run statistics of run_stats.py,
and the resolved-config columns `parametrization` and `v_bias_correction`) and returns a ClaimResult: SUPPORTED,
CONTRADICTED or INCONCLUSIVE, the numbers behind it, the figure that shows it and, when inconclusive, what to
add to params.yaml to decide it. Nothing here is fixed in advance: change the runs and the verdict changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .run_stats import FOLLOW_BAND

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "SUPPORTED", "CONTRADICTED", "INCONCLUSIVE"
ACCURACY_POINT = 0.01  # "a little" / "comparable" / "matches": within one accuracy point
MAJORITY, MINORITY = 0.8, 0.5  # >= 80% of the cases: supported; < 50%: contradicted; between: inconclusive


@dataclass
class ClaimResult:
    claim: str
    statement: str
    verdict: str
    numbers: dict[str, Any] = field(default_factory=dict)
    figure: str = ""
    to_decide: str = ""
    finding: str = ""  # a one-line reading of the evidence, when the numbers alone do not tell the story


def _all_of(res: ClaimResult, verdicts: list[str], hint: str) -> None:
    """A claim with several parts: contradicted if any part is, supported if all are, else inconclusive."""
    res.verdict = (
        CONTRADICTED if CONTRADICTED in verdicts else SUPPORTED if set(verdicts) == {SUPPORTED} else INCONCLUSIVE
    )
    if res.verdict == INCONCLUSIVE:
        res.to_decide = hint


def _share_verdict(hits: int, cases: int) -> str:
    if cases == 0:
        return INCONCLUSIVE
    share = hits / cases
    return SUPPORTED if share >= MAJORITY else CONTRADICTED if share < MINORITY else INCONCLUSIVE


def _ok(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["failed"] == 0]


def _sgd_warmup_family(runs: pd.DataFrame) -> pd.DataFrame:
    """Plain SGD/GD runs of kind none or linear with eta relative to lambda_0 (the paper's SGD phase diagrams)."""
    return runs[runs["kind"].isin(["none", "linear"]) & (runs["optimizer"] == "sgd")]


def check_c1(runs: pd.DataFrame) -> ClaimResult:
    statement = "The largest trainable eta_trgt (no divergence, no failure to learn) grows with T_wrm."
    fam = _sgd_warmup_family(runs)
    fam = fam[fam["parametrization"] != "mup"] if "parametrization" in fam else fam
    res = ClaimResult("C1", statement, INCONCLUSIVE, figure="max_trainable_lr.png")
    grid_max = fam["eta_trgt_setting"].max() if len(fam) else math.nan
    cells = fam.groupby(["T_wrm", "eta_trgt_setting"])["failed"].sum().reset_index()
    largest = {}
    for t_wrm, c in cells.groupby("T_wrm"):
        ok = c[c["failed"] == 0]["eta_trgt_setting"]
        largest[int(t_wrm)] = float(ok.max()) if len(ok) else 0.0
    res.numbers = {"largest_trainable_by_T_wrm": largest, "largest_grid_value": grid_max}
    if len(largest) < 2:
        res.to_decide = (
            "Add SGD runs at two or more warmup lengths: a `none` method and a `linear` method with "
            "grid warmup_steps: [16, 64, 256] over the same eta_trgt grid."
        )
        return res
    values = [largest[t] for t in sorted(largest)]
    if all(v >= grid_max for v in values):
        res.to_decide = "Every T_wrm trains the largest eta_trgt of the grid: extend the eta_trgt grid upwards."
        return res
    decreases = sum(b < a for a, b in zip(values, values[1:]))
    res.numbers["decreases"] = decreases
    res.verdict = CONTRADICTED if decreases else SUPPORTED if values[-1] > values[0] else INCONCLUSIVE
    if res.verdict == INCONCLUSIVE:
        res.to_decide = (
            "The largest trainable eta_trgt is flat in T_wrm: add longer warmups (warmup_steps) or a "
            "finer eta_trgt grid."
        )
    return res


def check_c2(runs: pd.DataFrame) -> ClaimResult:
    statement = (
        "With SP (progressive sharpening) the sharpness rises during warmup to meet 2/eta_t and follows it (edge of "
        "stability); with muP it starts below and decreases."
    )
    res = ClaimResult("C2", statement, INCONCLUSIVE, figure="trajectories.png")
    warm = _ok(runs[(runs["kind"] == "linear") & (runs["optimizer"] == "sgd") & (runs["T_wrm"] > 1)])
    low, high = FOLLOW_BAND
    follows = warm["lr_times_sharpness_after_reaching_over_c"].between(low, high)
    regimes, medians = {}, {}
    for p in ("sp", "mup"):
        mine = warm[warm["parametrization"] == p]
        sharpening = mine["sharpness_regime"] == "sharpening"
        regimes[p] = {
            "runs": len(mine),
            "sharpening": int(sharpening.sum()),
            "reduction": int((mine["sharpness_regime"] == "reduction").sum()),
            "sharpening_and_following_threshold": int((sharpening & follows[mine.index]).sum()),
        }
        medians[f"{p}_median_max_sharpness_during_warmup_over_lambda_0"] = _median(
            mine["max_sharpness_during_warmup_over_lambda_0"]
        )
    sp, mup = regimes["sp"], regimes["mup"]
    res.numbers = {**{f"{p}_{k}": v for p, r in regimes.items() for k, v in r.items()}, **medians}
    if not sp["runs"] or not mup["runs"]:
        res.to_decide = (
            "Needs trained linear-warmup SGD runs in both parametrizations: add a method `linear_mup` (kind: linear, "
            "eta_relative_to: lambda_0) with overrides: {model.parametrization: mup}."
        )
        return res
    _all_of(
        res,
        [
            _share_verdict(sp["sharpening_and_following_threshold"], sp["runs"]),
            _share_verdict(mup["reduction"], mup["runs"]),
        ],
        "Mixed evidence: measure sharpness more often (sharpness.every) or add seeds.",
    )
    swapped = sp["reduction"] >= MAJORITY * sp["runs"] and mup["sharpening"] >= MAJORITY * mup["runs"]
    res.finding = (
        f"SP: {sp['sharpening']} of {sp['runs']} runs sharpen during warmup, {sp['reduction']} reduce; muP: "
        f"{mup['sharpening']} of {mup['runs']} sharpen ({mup['sharpening_and_following_threshold']} then follow the "
        f"threshold), {mup['reduction']} reduce."
        + (" Both regimes occur, with the parametrizations the other way round." if swapped else "")
    )
    return res


def check_c3(runs: pd.DataFrame) -> ClaimResult:
    statement = "Warmup reduces sharpness: lambda at the end of warmup < lambda_0 for runs with eta_trgt > 2/lambda_0."
    res = ClaimResult("C3", statement, INCONCLUSIVE, figure="trajectories.png")
    sel = _ok(runs[(runs["T_wrm"] > 1) & (runs["eta_trgt_times_lambda_0"] > 2) & (runs["optimizer"] == "sgd")])
    ratio = sel["sharpness_end_of_warmup_over_lambda_0"].dropna()
    hits = int((ratio < 1).sum())
    res.numbers = {"runs": len(ratio), "runs_below_lambda_0": hits, "median_ratio": _median(ratio)}
    res.verdict = _share_verdict(hits, len(ratio))
    if not len(ratio):
        res.to_decide = "Add trained SGD runs with a warmup (T_wrm > 1) and eta_trgt > 2/lambda_0."
    elif res.verdict == INCONCLUSIVE:
        res.to_decide = "Between 50% and 80% of the runs: add seeds (grid seed: [0, 1, 2])."
    return res


def check_c4(runs: pd.DataFrame) -> ClaimResult:
    statement = (
        "At a fixed trainable eta_trgt warmup changes final accuracy only a little; the best accuracy over the grid "
        "improves because larger eta_trgt become usable."
    )
    res = ClaimResult("C4", statement, INCONCLUSIVE, figure="phase_diagrams.png")
    fam = _ok(_sgd_warmup_family(runs))
    # pairs within one parametrization: eta settings of SP and muP runs are not comparable
    base = fam[fam["T_wrm"] == 1].groupby(["parametrization", "eta_trgt_setting"])["final_test_accuracy"].mean()
    warm = fam[fam["T_wrm"] > 1]
    diffs = [
        row.final_test_accuracy - base[(row.parametrization, row.eta_trgt_setting)]
        for row in warm.itertuples()
        if (row.parametrization, row.eta_trgt_setting) in base.index
    ]
    best_without = base.max() if len(base) else math.nan
    best_with = warm["final_test_accuracy"].max() if len(warm) else math.nan
    small = int(sum(abs(d) <= ACCURACY_POINT for d in diffs))
    res.numbers = {
        "paired_cells": len(diffs),
        "cells_within_1_point": small,
        "median_abs_difference": _median(np.abs(diffs)) if diffs else math.nan,
        "best_accuracy_without_warmup": best_without,
        "best_accuracy_with_warmup": best_with,
    }
    if not diffs:
        res.to_decide = "Add a `none` method and a `linear` method over the same eta_trgt grid."
        return res
    at_fixed = _share_verdict(small, len(diffs))
    best_improves = best_with >= best_without - 1e-12
    if at_fixed == CONTRADICTED or not best_improves:
        res.verdict = CONTRADICTED
    else:
        res.verdict = SUPPORTED if at_fixed == SUPPORTED else INCONCLUSIVE
    if res.verdict == INCONCLUSIVE:
        res.to_decide = "Mixed accuracy differences at fixed eta_trgt: add seeds (grid seed: [0, 1, 2])."
    return res


def catapult_init_vs_linear(runs: pd.DataFrame) -> pd.DataFrame:
    """catapult_init against linear at each (eta_trgt, T_wrm, seed) they share (same optimizer and
    parametrization): warmup steps each used, steps saved, and final test accuracy of both."""
    cat = runs[runs["kind"] == "catapult_init"]
    lin = runs[runs["kind"] == "linear"]
    keys = ["optimizer", "parametrization", "eta_trgt_setting", "T_wrm", "seed"]
    cols = keys + ["method", "warmup_steps_used", "final_test_accuracy", "failed"]
    cols += [c for c in ["mlflow_run_id"] if c in runs]
    extra = [c for c in ["critical_lr_times_lambda_0"] if c in runs]  # catapult_init's eta_c, when searched
    pairs = cat[cols + extra].merge(lin[cols], on=keys, suffixes=("_catapult_init", "_linear"))
    pairs["steps_saved"] = pairs["warmup_steps_used_linear"] - pairs["warmup_steps_used_catapult_init"]
    pairs["accuracy_difference"] = pairs["final_test_accuracy_catapult_init"] - pairs["final_test_accuracy_linear"]
    return pairs.sort_values(keys).reset_index(drop=True)


def check_c5(runs: pd.DataFrame) -> ClaimResult:
    statement = "catapult_init reaches eta_trgt in fewer steps than linear with the same T_wrm, at comparable accuracy."
    res = ClaimResult("C5", statement, INCONCLUSIVE, figure="catapult_init_steps.png")
    pairs = catapult_init_vs_linear(runs)
    pairs = pairs[(pairs["failed_catapult_init"] == 0) & (pairs["failed_linear"] == 0)]
    fewer = int((pairs["steps_saved"] > 0).sum())
    comparable = int((pairs["accuracy_difference"] >= -ACCURACY_POINT).sum())
    res.numbers = {
        "pairs": len(pairs),
        "pairs_with_fewer_steps": fewer,
        "median_steps_saved": _median(pairs["steps_saved"]),
        "pairs_accuracy_within_1_point_or_better": comparable,
        "median_accuracy_difference": _median(pairs["accuracy_difference"]),
    }
    if not len(pairs):
        res.to_decide = (
            "Add a catapult_init method with the same optimizer, eta_trgt grid and warmup_steps as a linear method."
        )
        return res
    _all_of(
        res,
        [_share_verdict(fewer, len(pairs)), _share_verdict(comparable, len(pairs))],
        "Mixed evidence: add seeds (grid seed: [0, 1, 2]) to both methods.",
    )
    return res


def check_c6(runs: pd.DataFrame) -> ClaimResult:
    statement = (
        "GI-Adam has a much smaller initial preconditioned sharpness than Adam and trains at larger eta_trgt without "
        "warmup."
    )
    res = ClaimResult("C6", statement, INCONCLUSIVE, figure="gi_adam_vs_adam.png")
    adam = runs[(runs["optimizer"] == "adam") & (runs["T_wrm"] == 1)]
    gi_all = runs[(runs["optimizer"] == "gi_adam") & (runs["T_wrm"] == 1)]
    gi = gi_all[gi_all["v_bias_correction"] != False]  # noqa: E712 - the authors' released reading
    res.numbers = {"adam_runs": len(adam), "gi_adam_runs": len(gi)}
    if not len(adam) or not len(gi):
        res.to_decide = (
            "Add an Adam method without warmup (kind: none, optimizer: {name: adam}) and a gi_adam method "
            "over the same absolute eta_trgt grid, e.g. [0.002, 0.008, 0.032, 0.128]."
        )
        return res
    ratio = _median(adam["initial_preconditioned_sharpness"]) / _median(gi["initial_preconditioned_sharpness"])
    largest_adam = _largest_trainable(adam)
    largest_gi = _largest_trainable(gi)
    res.numbers.update(
        adam_over_gi_initial_preconditioned_sharpness=ratio,
        largest_trainable_adam=largest_adam,
        largest_trainable_gi_adam=largest_gi,
        doublings_gained=math.log2(largest_gi / largest_adam) if largest_adam > 0 and largest_gi > 0 else math.nan,
    )
    other = gi_all[gi_all["v_bias_correction"] == False]  # noqa: E712
    if len(other):
        res.numbers["largest_trainable_gi_adam_without_v_correction"] = _largest_trainable(other)
    grid_max = adam["eta_trgt_setting"].max()
    if ratio < 1 or largest_gi < largest_adam:
        res.verdict = CONTRADICTED
    elif ratio > 2 and largest_gi > largest_adam:
        res.verdict = SUPPORTED
    else:
        res.to_decide = (
            "Adam trains at the largest eta_trgt of the grid: extend the grid upwards."
            if largest_adam >= grid_max
            else "Equal largest trainable eta_trgt: use a finer eta_trgt grid."
        )
    return res


def check_c7(runs: pd.DataFrame) -> ClaimResult:
    statement = "persistent_catapult reaches eta_trgt without a T_wrm and matches the best linear T_wrm in accuracy."
    res = ClaimResult("C7", statement, INCONCLUSIVE, figure="persistent_vs_linear.png")
    pc = _ok(runs[runs["kind"] == "persistent_catapult"])
    lin = _ok(runs[(runs["kind"] == "linear") & runs["optimizer"].isin(pc["optimizer"].unique())])
    best_lin = lin.groupby(["optimizer", "parametrization", "eta_trgt_setting"])["final_test_accuracy"].max()
    diffs = [
        row.final_test_accuracy - best_lin[(row.optimizer, row.parametrization, row.eta_trgt_setting)]
        for row in pc.itertuples()
        if (row.optimizer, row.parametrization, row.eta_trgt_setting) in best_lin.index
    ]
    reached = int(pc["warmup_steps_used"].notna().sum())
    matches = int(sum(d >= -ACCURACY_POINT for d in diffs))
    res.numbers = {
        "trained_runs": len(pc),
        "runs_reaching_eta_trgt": reached,
        "median_steps_to_eta_trgt": _median(pc["warmup_steps_used"]),
        "paired_eta_trgt": len(diffs),
        "matching_best_linear_within_1_point": matches,
        "median_accuracy_difference": _median(diffs) if diffs else math.nan,
    }
    if not diffs:
        res.to_decide = "Add a persistent_catapult method over the eta_trgt grid of a linear method (same optimizer)."
        return res
    _all_of(
        res,
        [_share_verdict(reached, len(pc)), _share_verdict(matches, len(diffs))],
        "Mixed evidence: add seeds (grid seed: [0, 1, 2]) or more training steps.",
    )
    return res


CHECKS: tuple[Callable[[pd.DataFrame], ClaimResult], ...] = (
    check_c1,
    check_c2,
    check_c3,
    check_c4,
    check_c5,
    check_c6,
    check_c7,
)


def check_claims(runs: pd.DataFrame) -> list[ClaimResult]:
    return [check(runs) for check in CHECKS]


def _median(values) -> float:
    arr = np.asarray(values, dtype=float)
    arr = arr[~np.isnan(arr)]
    return float(np.median(arr)) if len(arr) else math.nan


def _largest_trainable(runs: pd.DataFrame) -> float:
    cells = runs.groupby("eta_trgt_setting")["failed"].sum()
    ok = cells[cells == 0]
    return float(ok.index.max()) if len(ok) else 0.0
