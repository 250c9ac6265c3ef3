"""Verdicts on the paper's claims C1-C7 (docs/science.md section 7), computed from this pipeline's runs over
several seeds.

Each check takes the runs table (one row per run: summary.csv columns, the per-run statistics of run_stats.py,
and the resolved-config columns `parametrization` and `v_bias_correction`), builds the claim's units of evidence
per seed (whywarmup.evidence) and returns a ClaimResult: the pooled verdict (a sign test or confidence bounds over
all seeds), the verdict each seed alone gives, the statistic in words, the numbers behind it, the figure that shows
it and, when inconclusive, what to add to params.yaml. The rules are in evidence.py and README ("How each verdict
is decided"); nothing here is fixed in advance: change the runs and the verdict changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .evidence import (
    CONTRADICTED,
    INCONCLUSIVE,
    MIN_SEEDS,
    SUPPORTED,
    BoundPart,
    PartResult,
    SignPart,
    combine,
    seed_spread,
)
from .run_stats import FOLLOW_BAND

__all__ = ["SUPPORTED", "CONTRADICTED", "INCONCLUSIVE", "ClaimResult", "check_claims", "catapult_init_vs_linear"]

Axes = tuple[str, ...]  # columns of the grid / override axes: runs that differ in one are never paired or pooled
ACCURACY_POINT = 0.01  # the robust eta_trgt range of the analysis: within one accuracy point of the best
MORE_SEEDS = f"add seeds: grid seed: [0, 1, 2, 3, 4] (a pooled verdict needs at least {MIN_SEEDS})"


@dataclass
class ClaimResult:
    claim: str
    statement: str
    verdict: str  # pooled over seeds
    numbers: dict[str, Any] = field(default_factory=dict)
    figure: str = ""
    to_decide: str = ""
    finding: str = ""  # a one-line reading of the evidence, when the numbers alone do not tell the story
    statistic: str = ""  # the statistic behind the pooled verdict, in words
    per_seed: dict[int, str] = field(default_factory=dict)  # seed -> the verdict of that seed's runs alone


def _decide(res: ClaimResult, parts: list[SignPart | BoundPart], hint: str = "") -> ClaimResult:
    """Pooled verdict of all parts, per-seed verdicts, the statistic in words and the parts' numbers."""
    decided: list[PartResult] = [p.decide() for p in parts]
    res.verdict = combine([d.verdict for d in decided])
    seeds = sorted({s for d in decided for s in d.per_seed})
    res.per_seed = {s: combine([d.per_seed.get(s, INCONCLUSIVE) for d in decided]) for s in seeds}
    res.statistic = "; ".join(d.words for d in decided)
    res.numbers["seeds"] = len(seeds)
    for d in decided:
        res.numbers.update(d.numbers)
    if res.verdict == INCONCLUSIVE and not res.to_decide:
        res.to_decide = hint or (
            f"Only {len(seeds)} seed(s): {MORE_SEEDS}." if len(seeds) < MIN_SEEDS else f"Mixed evidence: {MORE_SEEDS}."
        )
    return res


def _units(rows: list[dict]) -> pd.DataFrame:
    """Units of evidence: a `seed` and a `sign` (SignPart) or a `value` (BoundPart); empty when there are none."""
    return pd.DataFrame(rows, columns=["seed", "sign", "value"])


def _not_worse(seeds: pd.Series, differences: pd.Series, what: str, spread: float) -> BoundPart:
    """Non-inferiority in accuracy: the mean paired difference is above minus one seed-to-seed sd."""
    units = _units([{"seed": s, "value": v} for s, v in zip(seeds, differences)])
    return BoundPart("accuracy", units, what, -spread, scale=100, unit=" points", bound_name="-1 seed-to-seed sd")


def _ok(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["failed"] == 0]


def _sgd_warmup_family(runs: pd.DataFrame, parametrization: str | None = "sp") -> pd.DataFrame:
    """Plain SGD/GD runs of kind none or linear (the paper's SGD phase diagrams), in one parametrization."""
    fam = runs[runs["kind"].isin(["none", "linear"]) & (runs["optimizer"] == "sgd")]
    return fam if parametrization is None else fam[fam["parametrization"] == parametrization]


def largest_trainable(runs: pd.DataFrame) -> float:
    """The largest eta_trgt setting among trained runs (0 when none trained)."""
    ok = runs.loc[runs["failed"] == 0, "eta_trgt_setting"]
    return float(ok.max()) if len(ok) else 0.0


def check_c1(runs: pd.DataFrame, axes: Axes = ()) -> ClaimResult:
    statement = "The largest trainable eta_trgt (no divergence, no failure to learn) grows with T_wrm."
    res = ClaimResult("C1", statement, INCONCLUSIVE, figure="max_trainable_lr.png")
    fam = _sgd_warmup_family(runs)
    grid_max = fam["eta_trgt_setting"].max() if len(fam) else math.nan
    # (other axes..., seed, T_wrm) -> the largest eta_trgt that trained there
    largest = {k: largest_trainable(g) for k, g in fam.groupby([*axes, "seed", "T_wrm"])}
    twrms = sorted({k[-1] for k in largest})
    # one unit per seed (and value of the other axes) and consecutive pair of warmup lengths: did it grow?
    units = []
    for *cell, seed in sorted({k[:-1] for k in largest}):
        mine = [largest[(*cell, seed, t)] for t in twrms if (*cell, seed, t) in largest]
        units += [{"seed": seed, "sign": int(np.sign(b - a))} for a, b in zip(mine, mine[1:])]
    res.numbers = {
        "largest_trainable_by_T_wrm_median": {
            int(t): float(np.median([v for k, v in largest.items() if k[-1] == t])) for t in twrms
        },
        "largest_trainable_by_T_wrm_min": {int(t): min(v for k, v in largest.items() if k[-1] == t) for t in twrms},
        "largest_grid_value": grid_max,
    }
    if len(twrms) < 2:
        res.to_decide = (
            "Add SGD runs at two or more warmup lengths: a `none` method and a `linear` method with "
            "grid warmup_steps: [16, 64, 256] over the same eta_trgt grid."
        )
        return res
    hint = ""
    if largest and all(v >= grid_max for v in largest.values()):
        hint = "Every T_wrm trains the largest eta_trgt of the grid: extend the eta_trgt grid upwards."
    return _decide(res, [SignPart("growth", _units(units), "(seed, next T_wrm) steps")], hint)


def check_c2(runs: pd.DataFrame, axes: Axes = ()) -> ClaimResult:
    statement = (
        "Two regimes set by the initialization: with muP (small init) the sharpness rises during warmup until it meets "
        "2/eta_t and then follows it (progressive sharpening, edge of stability); with SP (large init) it falls from "
        "lambda_0 early without meeting the threshold first (natural sharpness reduction)."
    )
    res = ClaimResult("C2", statement, INCONCLUSIVE, figure="trajectories.png")
    warm = _ok(runs[(runs["kind"] == "linear") & (runs["optimizer"] == "sgd") & (runs["T_wrm"] > 1)])
    low, high = FOLLOW_BAND
    follows = warm["lr_times_sharpness_after_reaching_over_c"].between(low, high)
    sharpening = (warm["sharpness_regime"] == "sharpening") & follows
    reduction = warm["sharpness_regime"] == "reduction"
    counts, medians = {}, {}
    for p in ("sp", "mup"):
        mine = warm["parametrization"] == p
        counts[p] = {
            "runs": int(mine.sum()),
            "sharpening": int((mine & (warm["sharpness_regime"] == "sharpening")).sum()),
            "reduction": int((mine & reduction).sum()),
            "sharpening_and_following_threshold": int((mine & sharpening).sum()),
        }
        medians[f"{p}_median_max_sharpness_during_warmup_over_lambda_0"] = _median(
            warm.loc[mine, "max_sharpness_during_warmup_over_lambda_0"]
        )
    res.numbers = {**{f"{p}_{k}": v for p, c in counts.items() for k, v in c.items()}, **medians}
    sp, mup = counts["sp"], counts["mup"]
    res.finding = (
        f"SP: {sp['reduction']} of {sp['runs']} runs reduce the sharpness during warmup, {sp['sharpening']} sharpen; "
        f"muP: {mup['sharpening']} of {mup['runs']} sharpen ({mup['sharpening_and_following_threshold']} then follow "
        f"the threshold), {mup['reduction']} reduce."
    )
    if not sp["runs"] or not mup["runs"]:
        res.to_decide = (
            "Needs trained linear-warmup SGD runs in both parametrizations: add a method `linear_mup` (kind: linear, "
            "eta_relative_to: lambda_0) with overrides: {model.parametrization: mup}."
        )
        return res
    # one unit per run: does it show its parametrization's regime?
    sp_units = _units(
        [
            {"seed": r.seed, "sign": 1 if ok else -1}
            for r, ok in zip(warm.itertuples(), reduction)
            if r.parametrization == "sp"
        ]
    )
    mup_units = _units(
        [
            {"seed": r.seed, "sign": 1 if ok else -1}
            for r, ok in zip(warm.itertuples(), sharpening)
            if r.parametrization == "mup"
        ]
    )
    parts = [
        SignPart("sp_reduction", sp_units, "SP runs reducing the sharpness"),
        SignPart("mup_sharpening", mup_units, "muP runs sharpening to the threshold and following it"),
    ]
    return _decide(res, parts, "")


def check_c3(runs: pd.DataFrame, axes: Axes = ()) -> ClaimResult:
    statement = "Warmup reduces sharpness: lambda at the end of warmup < lambda_0 for runs with eta_trgt > 2/lambda_0."
    res = ClaimResult("C3", statement, INCONCLUSIVE, figure="trajectories.png")
    sel = _ok(runs[(runs["T_wrm"] > 1) & (runs["eta_trgt_times_lambda_0"] > 2) & (runs["optimizer"] == "sgd")])
    sel = sel.dropna(subset=["sharpness_end_of_warmup_over_lambda_0"])
    ratio = sel["sharpness_end_of_warmup_over_lambda_0"]
    res.numbers = {"median_ratio": _median(ratio)}
    if not len(sel):
        res.to_decide = "Add trained SGD runs with a warmup (T_wrm > 1) and eta_trgt > 2/lambda_0."
        return res
    units = _units([{"seed": s, "sign": 1 if r < 1 else -1} for s, r in zip(sel["seed"], ratio)])
    return _decide(res, [SignPart("below_lambda_0", units, "runs ending warmup below lambda_0")])


def check_c4(runs: pd.DataFrame, axes: Axes = ()) -> ClaimResult:
    statement = (
        "At a fixed trainable eta_trgt warmup changes final accuracy only a little; the best accuracy over the grid "
        "improves because larger eta_trgt become usable."
    )
    res = ClaimResult("C4", statement, INCONCLUSIVE, figure="phase_diagrams.png")
    fam = _ok(_sgd_warmup_family(runs))
    cell = [*axes, "seed", "eta_trgt_setting"]
    without = fam[fam["T_wrm"] == 1][[*cell, "final_test_accuracy"]]
    # (a) one unit per (seed, eta_trgt, T_wrm) trained with and without warmup: the accuracy difference
    paired = fam[fam["T_wrm"] > 1].merge(without, on=cell, suffixes=("", "_without"))
    diffs = _units(
        [
            {"seed": s, "value": v}
            for s, v in zip(paired["seed"], paired["final_test_accuracy"] - paired["final_test_accuracy_without"])
        ]
    )
    spread = seed_spread(
        pd.concat([paired, fam[fam["T_wrm"] == 1]]), [*axes, "T_wrm", "eta_trgt_setting"], "final_test_accuracy"
    )
    warm = fam[fam["T_wrm"] > 1]
    # (b) one unit per seed: the best accuracy among the eta_trgt that only train with warmup, minus the best
    # accuracy without warmup
    best = []
    for (*_, seed), mine in fam.groupby([*axes, "seed"]):
        without = mine[mine["T_wrm"] == 1]
        if not len(without):
            continue
        boundary = without["eta_trgt_setting"].max()
        beyond = mine[(mine["T_wrm"] > 1) & (mine["eta_trgt_setting"] > boundary)]
        gain = beyond["final_test_accuracy"].max() - without["final_test_accuracy"].max() if len(beyond) else math.nan
        best.append({"seed": seed, "value": gain})
    res.numbers = {
        "paired_cells": int(paired.groupby(["eta_trgt_setting", "T_wrm"]).ngroups),
        "seed_spread_accuracy": spread,
        "median_abs_difference": _median(np.abs(diffs["value"])) if len(diffs) else math.nan,
        "best_accuracy_without_warmup": _cell_best(fam[fam["T_wrm"] == 1]),
        "best_accuracy_with_warmup": _cell_best(warm),
    }
    if not len(diffs):
        res.to_decide = "Add a `none` method and a `linear` method over the same eta_trgt grid."
        return res
    parts = [
        BoundPart(
            "fixed_eta",
            diffs,
            "accuracy change from warmup at a fixed eta_trgt",
            -spread,
            spread,
            scale=100,
            unit=" points",
            bound_name="+-1 seed-to-seed sd",
        ),
        BoundPart(
            "best_gain",
            _units(best),
            "gain of the best accuracy at eta_trgt usable only with warmup",
            0.0,
            scale=100,
            unit=" points",
        ),
    ]
    return _decide(res, parts)


def catapult_init_vs_linear(runs: pd.DataFrame, axes: Axes = ()) -> pd.DataFrame:
    """catapult_init against linear at each (eta_trgt, T_wrm, seed) they share (same optimizer, parametrization and
    value of every other axis): warmup steps each used, steps saved, and final test accuracy of both."""
    cat = runs[runs["kind"] == "catapult_init"]
    lin = runs[runs["kind"] == "linear"]
    keys = ["optimizer", "parametrization", *axes, "eta_trgt_setting", "T_wrm", "seed"]
    cols = keys + ["method", "run_key", "warmup_steps_used", "final_test_accuracy", "failed"]
    extra = [c for c in ["critical_lr_times_lambda_0"] if c in runs]  # catapult_init's eta_c, when searched
    pairs = cat[cols + extra].merge(lin[cols], on=keys, suffixes=("_catapult_init", "_linear"))
    pairs["steps_saved"] = pairs["warmup_steps_used_linear"] - pairs["warmup_steps_used_catapult_init"]
    pairs["accuracy_difference"] = pairs["final_test_accuracy_catapult_init"] - pairs["final_test_accuracy_linear"]
    return pairs.sort_values(keys).reset_index(drop=True)


def check_c5(runs: pd.DataFrame, axes: Axes = ()) -> ClaimResult:
    statement = "catapult_init reaches eta_trgt in fewer steps than linear with the same T_wrm, at comparable accuracy."
    res = ClaimResult("C5", statement, INCONCLUSIVE, figure="catapult_init_steps.png")
    pairs = catapult_init_vs_linear(runs, axes)
    only_cat_failed = int(((pairs["failed_catapult_init"] > 0) & (pairs["failed_linear"] == 0)).sum())
    pairs = pairs[(pairs["failed_catapult_init"] == 0) & (pairs["failed_linear"] == 0)]
    both = runs[runs["kind"].isin(["catapult_init", "linear"])]
    cells = pairs[[*axes, "eta_trgt_setting", "T_wrm"]].drop_duplicates()
    both = _ok(both.merge(cells, on=[*axes, "eta_trgt_setting", "T_wrm"]))
    spread = seed_spread(both, ["method", *axes, "eta_trgt_setting", "T_wrm"])
    res.numbers = {
        "pairs": len(pairs),
        "pairs_where_only_catapult_init_failed": only_cat_failed,
        "median_steps_saved": _median(pairs["steps_saved"]),
        "median_accuracy_difference": _median(pairs["accuracy_difference"]),
        "seed_spread_accuracy": spread,
    }
    if not len(pairs):
        res.to_decide = (
            "Add a catapult_init method with the same optimizer, eta_trgt grid and warmup_steps as a linear method."
        )
        return res
    steps = _units([{"seed": s, "sign": int(np.sign(v))} for s, v in zip(pairs["seed"], pairs["steps_saved"])])
    parts = [
        SignPart("fewer_steps", steps, "(seed, eta_trgt, T_wrm) pairs with fewer warmup steps"),
        _not_worse(pairs["seed"], pairs["accuracy_difference"], "accuracy of catapult_init minus linear", spread),
    ]
    return _decide(res, parts)


def check_c6(runs: pd.DataFrame, axes: Axes = ()) -> ClaimResult:
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
    # pair on the axes both optimizers have (beta2, a model width, ...), not on one only GI-Adam has (v correction)
    shared = [a for a in axes if not (adam[a] == "None").all() and not (gi[a] == "None").all()] + ["seed"]
    # (a) one unit per seed: log2 of Adam's over GI-Adam's initial preconditioned sharpness ("much": > 2x)
    p_adam = adam.groupby(shared)["initial_preconditioned_sharpness"].median()
    p_gi = gi.groupby(shared)["initial_preconditioned_sharpness"].median()
    both = p_adam.index.intersection(p_gi.index)
    ratio = [
        {"seed": k[-1] if isinstance(k, tuple) else k, "value": math.log2(p_adam[k] / p_gi[k])}
        for k in both
        if p_adam[k] > 0 and p_gi[k] > 0
    ]
    # (b) one unit per (seed, eta_trgt) where exactly one of the two trains: +1 when it is GI-Adam
    a_ok = adam.groupby([*shared, "eta_trgt_setting"])["failed"].max() == 0
    g_ok = gi.groupby([*shared, "eta_trgt_setting"])["failed"].max() == 0
    common = a_ok.index.intersection(g_ok.index)
    cells = _units([{"seed": k[-2], "sign": int(g_ok[k]) - int(a_ok[k])} for k in common])
    top_adam = {k: largest_trainable(g) for k, g in adam.groupby(shared)}
    top_gi = {k: largest_trainable(g) for k, g in gi.groupby(shared)}
    keys = [k if isinstance(k, tuple) else (k,) for k in both]  # groupby iterates tuples even for one key
    largest_adam, largest_gi = [top_adam[k] for k in keys], [top_gi[k] for k in keys]
    res.numbers.update(
        adam_over_gi_initial_preconditioned_sharpness=2 ** _median([r["value"] for r in ratio]) if ratio else math.nan,
        largest_trainable_adam_median=_median(largest_adam),
        largest_trainable_gi_adam_median=_median(largest_gi),
        doublings_gained_median=_median(
            [math.log2(g / a) if a > 0 and g > 0 else math.nan for a, g in zip(largest_adam, largest_gi)]
        ),
    )
    other = gi_all[gi_all["v_bias_correction"] == False]  # noqa: E712
    if len(other):
        res.numbers["largest_trainable_gi_adam_without_v_correction_median"] = _median(
            [largest_trainable(g) for _, g in other.groupby(shared)]
        )
    hint = ""
    if len(cells) and (cells["sign"] == 0).all() and adam["failed"].eq(0).all():
        hint = "Adam trains at every eta_trgt of the grid: extend the grid upwards."
    parts = [
        BoundPart("sharpness_ratio", _units(ratio), "log2(Adam / GI-Adam initial preconditioned sharpness)", 1.0),
        SignPart("larger_eta", cells, "(seed, eta_trgt) cells where only one of them trains"),
    ]
    return _decide(res, parts, hint)


def check_c7(runs: pd.DataFrame, axes: Axes = ()) -> ClaimResult:
    statement = "persistent_catapult reaches eta_trgt without a T_wrm and matches the best linear T_wrm in accuracy."
    res = ClaimResult("C7", statement, INCONCLUSIVE, figure="persistent_vs_linear.png")
    pc = _ok(runs[runs["kind"] == "persistent_catapult"])
    lin = _ok(runs[(runs["kind"] == "linear") & runs["optimizer"].isin(pc["optimizer"].unique())])
    cell = ["optimizer", "parametrization", *axes, "eta_trgt_setting"]
    # the best linear T_wrm of each eta_trgt: highest mean accuracy over its seeds
    means = lin.groupby([*cell, "T_wrm"])["final_test_accuracy"].mean().reset_index()
    best = means.loc[means.groupby(cell)["final_test_accuracy"].idxmax()] if len(means) else means
    best_runs = lin.merge(best[[*cell, "T_wrm"]], on=[*cell, "T_wrm"])
    paired = pc.merge(best_runs[[*cell, "seed", "final_test_accuracy"]], on=[*cell, "seed"], suffixes=("", "_linear"))
    paired["difference"] = paired["final_test_accuracy"] - paired["final_test_accuracy_linear"]
    matched = pc.merge(best[cell], on=cell)
    spread = seed_spread(pd.concat([matched.assign(T_wrm=0), best_runs]), ["method", "eta_trgt_setting", "T_wrm"])
    res.numbers = {
        "trained_runs": len(pc),
        "runs_reaching_eta_trgt": int(pc["warmup_steps_used"].notna().sum()),
        "median_steps_to_eta_trgt": _median(pc["warmup_steps_used"]),
        "median_accuracy_difference": _median(paired["difference"]),
        "seed_spread_accuracy": spread,
    }
    if not len(paired):
        res.to_decide = "Add a persistent_catapult method over the eta_trgt grid of a linear method (same optimizer)."
        return res
    reached = _units(
        [{"seed": s, "sign": 1 if pd.notna(u) else -1} for s, u in zip(pc["seed"], pc["warmup_steps_used"])]
    )
    parts = [
        SignPart("reaches_eta_trgt", reached, "trained runs reaching eta_trgt"),
        _not_worse(paired["seed"], paired["difference"], "accuracy minus the best linear T_wrm", spread),
    ]
    return _decide(res, parts, f"Mixed evidence: {MORE_SEEDS}, or more training steps.")


CHECKS: tuple[Callable[[pd.DataFrame, Axes], ClaimResult], ...] = (
    check_c1,
    check_c2,
    check_c3,
    check_c4,
    check_c5,
    check_c6,
    check_c7,
)


def check_claims(runs: pd.DataFrame, axes: Axes = ()) -> list[ClaimResult]:
    """Every claim; `axes` are the columns of the grid / override axes (analysis.add_axes): runs are compared only
    with runs that have the same value on each of them."""
    return [check(runs, axes) for check in CHECKS]


def _median(values) -> float:
    arr = np.asarray(values, dtype=float)
    arr = arr[~np.isnan(arr)]
    return float(np.median(arr)) if len(arr) else math.nan


def _cell_best(runs: pd.DataFrame) -> float:
    """The best mean-over-seeds final test accuracy of any grid cell."""
    if not len(runs):
        return math.nan
    return float(runs.groupby(["method", "eta_trgt_setting", "T_wrm"])["final_test_accuracy"].mean().max())
