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

from .derived import (
    ACCURACY,
    TEST_LOSS,
    Score,
    best_run,
    compare_largest,
    critical_start_pairs,
    largest_trainable,
    score_of,
    with_role,
)
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
from .methods import ADAPTIVE_WARMUP, FIXED_WARMUP, GRADIENT_INIT, NO_WARMUP
from .run_stats import EOS_BAND, FOLLOW_BAND

__all__ = ["SUPPORTED", "CONTRADICTED", "INCONCLUSIVE", "ClaimResult", "check_claims"]

Axes = tuple[str, ...]  # columns of the grid / override axes: runs that differ in one are never paired or pooled
FAILURE_RATE_MARGIN = 0.1  # C5 (a): catapult_init may fail in at most 1 pair in 10 more than linear
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


def _not_worse(
    seeds: pd.Series, differences: pd.Series, what: str, spread: float, score: Score = ACCURACY
) -> BoundPart:
    """Non-inferiority in the score (accuracy; a language model's test loss): the mean paired difference, signed so
    that positive is better, is above minus one seed-to-seed sd."""
    units = _units([{"seed": s, "value": v} for s, v in zip(seeds, differences)])
    name = "accuracy" if score is ACCURACY else score.better
    return BoundPart(name, units, what, -spread, scale=score.scale, unit=score.unit, bound_name="-1 seed-to-seed sd")


def _ok(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["failed"] == 0]


def _sgd_warmup_family(runs: pd.DataFrame, parametrization: str | None = "sp") -> pd.DataFrame:
    """Plain SGD/GD runs without warmup or with a fixed-length warmup (the paper's SGD phase diagrams), in one
    parametrization."""
    fam = with_role(runs, NO_WARMUP, FIXED_WARMUP)
    fam = fam[fam["optimizer"] == "sgd"]
    return fam if parametrization is None else fam[fam["parametrization"] == parametrization]


def _largest(runs: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """derived.largest_trainable per group of runs (one run per eta_trgt setting in each group)."""
    return largest_trainable(runs.assign(trainable=runs["failed"] == 0), by)


def check_c1(runs: pd.DataFrame, axes: Axes = ()) -> ClaimResult:
    statement = "The largest trainable eta_trgt (no divergence, no failure to learn) grows with T_wrm."
    res = ClaimResult("C1", statement, INCONCLUSIVE, figure="max_trainable_lr.png")
    fam = _sgd_warmup_family(runs)
    # (other axes..., seed, T_wrm) -> the largest eta_trgt that trained there (a lower bound at the top of the grid)
    table = _largest(fam, [*axes, "seed", "T_wrm"]) if len(fam) else pd.DataFrame()
    largest = {tuple(r[:-3]): r[-3] for r in table.itertuples(index=False)} if len(table) else {}
    twrms = sorted({k[-1] for k in largest})
    # one unit per seed (and value of the other axes) and consecutive pair of warmup lengths: did it grow?
    units = []
    for *cell, seed in sorted({k[:-1] for k in largest}):
        mine = [largest[(*cell, seed, t)] for t in twrms if (*cell, seed, t) in largest]
        units += [{"seed": seed, "sign": compare_largest(a, b)} for a, b in zip(mine, mine[1:])]
    res.numbers = {
        "largest_trainable_by_T_wrm_median": {
            int(t): float(np.median([v for k, v in largest.items() if k[-1] == t])) for t in twrms
        },
        "largest_trainable_by_T_wrm_min": {int(t): min(v for k, v in largest.items() if k[-1] == t) for t in twrms},
        "lower_bounds_by_T_wrm": (
            {int(t): int(g["max_trainable_is_lower_bound"].sum()) for t, g in table.groupby("T_wrm")}
            if len(table)
            else {}
        ),
        "largest_grid_value": fam["eta_trgt_setting"].max() if len(fam) else math.nan,
    }
    if len(twrms) < 2:
        res.to_decide = (
            "Add SGD runs at two or more warmup lengths: a `none` method and a `linear` method with "
            "grid warmup_steps: [16, 64, 256] over the same eta_trgt grid."
        )
        return res
    hint = ""
    if len(table) and table["max_trainable_is_lower_bound"].all():
        hint = (
            "Every T_wrm trains the largest eta_trgt of the grid (lower bounds tie): extend the eta_trgt grid upwards."
        )
    return _decide(res, [SignPart("growth", _units(units), "(seed, next T_wrm) steps")], hint)


def check_c2(runs: pd.DataFrame, axes: Axes = ()) -> ClaimResult:
    statement = (
        "Two regimes set by the initialization: with muP (small init) the sharpness rises during warmup until it meets "
        "2/eta_t and then follows it (progressive sharpening, edge of stability); with SP (large init) it falls from "
        "lambda_0 early without meeting the threshold first (natural sharpness reduction)."
    )
    res = ClaimResult("C2", statement, INCONCLUSIVE, figure="trajectories.png")
    warm = with_role(runs, FIXED_WARMUP)
    warm = _ok(warm[(warm["optimizer"] == "sgd") & (warm["T_wrm"] > 1)])
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
    if "curvature_every_step" in warm:  # docs/science.md section 7: following read from lambda_c where every step
        every = int((warm["curvature_every_step"] > 0).sum())
        res.numbers["runs_following_read_from_critical_sharpness"] = every
        res.finding += f" Threshold following read from lr x critical sharpness / 2 at every step in {every} of "
        res.finding += f"{len(warm)} runs, from the Lanczos steps in the rest."
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
    statement = (
        "Warmup reduces sharpness: for eta_trgt > 2/lambda_0, the warmup itself brings lambda under the threshold "
        "2/eta_trgt by the end of warmup (so below lambda_0), where the same run without warmup diverges."
    )
    res = ClaimResult("C3", statement, INCONCLUSIVE, figure="trajectories.png")
    warm = with_role(runs, FIXED_WARMUP)
    sel = _ok(warm[(warm["T_wrm"] > 1) & (warm["eta_trgt_times_lambda_0"] > 2) & (warm["optimizer"] == "sgd")])
    sel = sel.dropna(subset=["sharpness_end_of_warmup_over_threshold"])
    # (a) at the end of warmup eta_trgt lambda / constant within the edge-of-stability band's top (1.1)
    limit = 1 + EOS_BAND
    ratio = sel["sharpness_end_of_warmup_over_threshold"]
    under = _units([{"seed": s, "sign": 1 if r <= limit else -1} for s, r in zip(sel["seed"], ratio)])
    # (b) the control: the no-warmup twin (same seed, c, parametrization, other axes) diverged; the warmed-up run
    # ends warmup at a smaller sharpness than the twin's last one before diverging
    twins = with_role(runs, NO_WARMUP)
    keys = ["optimizer", "parametrization", "eta_relative_to", *axes, "eta_trgt_setting", "seed"]
    twins = twins[twins["diverged"] > 0][[*keys, "sharpness_last"]].rename(columns={"sharpness_last": "twin_last"})
    pairs = sel.merge(twins, on=keys)
    lower = _units(
        [
            {"seed": s, "sign": 1 if a < b else -1}
            for s, a, b in zip(pairs["seed"], pairs["sharpness_end_of_warmup"], pairs["twin_last"])
        ]
    )
    res.numbers = {
        "runs": len(sel),
        "median_end_of_warmup_over_threshold": _median(ratio),
        "runs_over_threshold": int((ratio > limit).sum()),
        "median_ratio_to_lambda_0": _median(sel["sharpness_end_of_warmup_over_lambda_0"]),
        "control_pairs": len(pairs),
        "median_end_of_warmup_over_control_last": _median(pairs["sharpness_end_of_warmup"] / pairs["twin_last"]),
    }
    if not len(sel):
        res.to_decide = "Add trained SGD runs with a warmup (T_wrm > 1) and eta_trgt > 2/lambda_0."
        return res
    over = sel.assign(over=ratio > limit).groupby("T_wrm")["over"].agg(["sum", "count"])
    res.finding = "Ending warmup above the threshold (eta_trgt lambda / constant > 1.1), by T_wrm: " + ", ".join(
        f"{int(t)}: {int(r['sum'])} of {int(r['count'])}" for t, r in over.iterrows()
    )
    if not len(pairs):
        res.to_decide = (
            "Add a no-warmup method (kind: none) over the same eta_trgt grid, reaching values where it diverges."
        )
        return res
    parts = [
        SignPart("under_threshold", under, f"runs ending warmup with eta_trgt lambda / constant <= {limit:g}"),
        SignPart("below_control", lower, "runs ending warmup below the no-warmup twin's sharpness before diverging"),
    ]
    return _decide(res, parts)


def check_c4(runs: pd.DataFrame, axes: Axes = ()) -> ClaimResult:
    statement = (
        "At a fixed trainable eta_trgt warmup changes final accuracy only a little; the best accuracy over the grid "
        "improves because larger eta_trgt become usable."
    )
    res = ClaimResult("C4", statement, INCONCLUSIVE, figure="phase_diagrams.png")
    fam = _ok(_sgd_warmup_family(runs))
    score = score_of(fam)  # accuracy; a language model's test loss (lower is better)
    cell = [*axes, "seed", "eta_trgt_setting"]
    without = fam[fam["T_wrm"] == 1][[*cell, score.test]]
    # (a) one unit per (seed, eta_trgt, T_wrm) trained with and without warmup: the score difference
    paired = fam[fam["T_wrm"] > 1].merge(without, on=cell, suffixes=("", "_without"))
    better = score.better_by(paired[score.test], paired[f"{score.test}_without"])
    diffs = _units([{"seed": s, "value": v} for s, v in zip(paired["seed"], better)])
    spread = seed_spread(pd.concat([paired, fam[fam["T_wrm"] == 1]]), [*axes, "T_wrm", "eta_trgt_setting"], score.test)
    warm = fam[fam["T_wrm"] > 1]
    # (b) one unit per seed: the test accuracy of the best run (chosen on validation) among the eta_trgt that only
    # train with warmup, minus that of the best run (chosen on validation) without warmup
    best = []
    for (*_, seed), mine in fam.groupby([*axes, "seed"]):
        without = mine[mine["T_wrm"] == 1]
        if not len(without):
            continue
        boundary = without["eta_trgt_setting"].max()
        b_with = best_run(mine[(mine["T_wrm"] > 1) & (mine["eta_trgt_setting"] > boundary)])
        b_without = best_run(without)
        gain = (
            score.better_by(b_with[score.test], b_without[score.test])
            if b_with is not None and b_without is not None
            else math.nan
        )
        best.append({"seed": seed, "value": gain})
    res.numbers = {
        "paired_cells": int(paired.groupby(["eta_trgt_setting", "T_wrm"]).ngroups),
        f"seed_spread_{score.spread}": spread,
        "median_abs_difference": _median(np.abs(diffs["value"])) if len(diffs) else math.nan,
        f"best_{score.spread}_without_warmup": _cell_best(fam[fam["T_wrm"] == 1], score),
        f"best_{score.spread}_with_warmup": _cell_best(warm, score),
    }
    if not len(diffs):
        res.to_decide = "Add a `none` method and a `linear` method over the same eta_trgt grid."
        return res
    parts = [
        BoundPart(
            "fixed_eta",
            diffs,
            f"{score.name} change from warmup at a fixed eta_trgt"
            + (" (positive: lower)" if score is TEST_LOSS else ""),
            -spread,
            spread,
            scale=score.scale,
            unit=score.unit,
            bound_name="+-1 seed-to-seed sd",
        ),
        BoundPart(
            "best_gain",
            _units(best),
            f"gain of the best {score.name} at eta_trgt usable only with warmup",
            0.0,
            scale=score.scale,
            unit=score.unit,
        ),
    ]
    return _decide(res, parts)


def check_c5(runs: pd.DataFrame, axes: Axes = ()) -> ClaimResult:
    statement = (
        "catapult_init reaches eta_trgt in fewer steps than linear with the same T_wrm (by construction: measured), "
        "failing no more often and at comparable accuracy."
    )
    res = ClaimResult("C5", statement, INCONCLUSIVE, figure="catapult_init_steps.png")
    pairs = critical_start_pairs(runs, axes)
    score = TEST_LOSS if "loss_reduction" in pairs else ACCURACY  # language models: judged on their test loss
    both = pairs[(pairs["failed_subject"] == 0) & (pairs["failed_control"] == 0)]
    # (a) one unit per seed: the fraction of its pairs where catapult_init failed minus where linear failed
    rates = [
        {"seed": seed, "value": float(g["failed_subject"].mean() - g["failed_control"].mean())}
        for seed, g in pairs.groupby("seed")
    ]
    cells = both[[*axes, "eta_trgt_setting", "T_wrm"]].drop_duplicates()
    compared = runs[runs["run_key"].isin(set(both["run_key_subject"]) | set(both["run_key_control"]))]
    spread = seed_spread(
        compared.merge(cells, on=[*axes, "eta_trgt_setting", "T_wrm"]),
        ["method", *axes, "eta_trgt_setting", "T_wrm"],
        score.test,
    )
    saved = both["steps_saved"]
    res.numbers = {
        "pairs": len(pairs),
        "pairs_both_trained": len(both),
        "pairs_only_catapult_init_failed": int(((pairs["failed_subject"] > 0) & (pairs["failed_control"] == 0)).sum()),
        "pairs_only_linear_failed": int(((pairs["failed_subject"] == 0) & (pairs["failed_control"] > 0)).sum()),
        # the steps saved are a measurement: fewer steps holds by construction
        "median_steps_saved": _median(saved),
        "min_steps_saved": float(saved.min()) if len(saved) else math.nan,
        "max_steps_saved": float(saved.max()) if len(saved) else math.nan,
        "pairs_without_warmup_needed": int((both["warmup_steps_used_subject"] <= 1).sum()),
        f"median_{score.better}": _median(both[score.better]),
        f"seed_spread_{score.spread}": spread,
    }
    if not len(pairs):
        res.to_decide = (
            "Add a catapult_init method with the same optimizer, eta_trgt grid and warmup_steps as a linear method."
        )
        return res
    res.finding = (
        f"Steps saved (measured, not tested: catapult_init starts at eta_c with linear's slope): median "
        f"{res.numbers['median_steps_saved']:g}, range {res.numbers['min_steps_saved']:g}-"
        f"{res.numbers['max_steps_saved']:g} over {len(both)} pairs; {res.numbers['pairs_without_warmup_needed']} "
        "started at or above eta_trgt (no warmup needed)."
        if len(both)
        else ""
    )
    parts = [
        BoundPart(
            "failure_rate",
            _units(rates),
            "failure rate of catapult_init minus linear (per seed)",
            high=FAILURE_RATE_MARGIN,
            bound_name="0.1",
        ),
        _not_worse(
            both["seed"],
            both[score.better],
            "accuracy of catapult_init minus linear"
            if score is ACCURACY
            else "test loss of linear minus catapult_init (nats per token)",
            spread,
            score,
        ),
    ]
    return _decide(res, parts)


def check_c6(runs: pd.DataFrame, axes: Axes = ()) -> ClaimResult:
    statement = (
        "GI-Adam has a much smaller initial preconditioned sharpness than Adam and trains at larger eta_trgt without "
        "warmup."
    )
    res = ClaimResult("C6", statement, INCONCLUSIVE, figure="gi_adam_vs_adam.png")
    adam = with_role(runs, NO_WARMUP, FIXED_WARMUP)
    adam = adam[(adam["optimizer"] == "adam") & (adam["T_wrm"] == 1)]
    gi_all = with_role(runs, GRADIENT_INIT)
    gi_all = gi_all[gi_all["T_wrm"] == 1]
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
    top_adam, top_gi = (_largest(r, shared).set_index(shared) for r in (adam, gi))
    keys = [k for k in both if k in top_adam.index and k in top_gi.index]
    largest_adam = [top_adam.loc[k, "max_trainable"] for k in keys]
    largest_gi = [top_gi.loc[k, "max_trainable"] for k in keys]
    gi_bounds = int(sum(bool(top_gi.loc[k, "max_trainable_is_lower_bound"]) for k in keys))
    res.numbers.update(
        adam_over_gi_initial_preconditioned_sharpness=2 ** _median([r["value"] for r in ratio]) if ratio else math.nan,
        largest_trainable_adam_median=_median(largest_adam),
        largest_trainable_gi_adam_median=_median(largest_gi),
        # at the top of the grid GI-Adam's value is only a lower bound, and so are the doublings gained
        largest_trainable_gi_adam_lower_bounds=gi_bounds,
        doublings_gained_median=_median(
            [math.log2(g / a) if a > 0 and g > 0 else math.nan for a, g in zip(largest_adam, largest_gi)]
        ),
    )
    other = gi_all[gi_all["v_bias_correction"] == False]  # noqa: E712
    if len(other):
        res.numbers["largest_trainable_gi_adam_without_v_correction_median"] = _median(
            _largest(other, shared)["max_trainable"]
        )
    if gi_bounds:
        res.finding = (
            f"GI-Adam trains at the top of the eta_trgt grid for {gi_bounds} of {len(keys)} seeds: its largest "
            "trainable value and the doublings gained are lower bounds."
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
    pc = _ok(with_role(runs, ADAPTIVE_WARMUP))
    lin = with_role(runs, FIXED_WARMUP)
    lin = _ok(lin[lin["optimizer"].isin(pc["optimizer"].unique())])
    cell = ["optimizer", "parametrization", *axes, "eta_trgt_setting"]
    score = score_of(pd.concat([pc, lin]))  # accuracy; a language model's test loss (lower is better)
    # the best linear T_wrm of each eta_trgt: best mean validation score over its seeds (scored on test)
    means = lin.groupby([*cell, "T_wrm"])[score.val].mean().reset_index()
    means["_better"] = score.sign * means[score.val]
    best = means.loc[means.groupby(cell)["_better"].idxmax()] if means["_better"].notna().any() else means.iloc[0:0]
    best_runs = lin.merge(best[[*cell, "T_wrm"]], on=[*cell, "T_wrm"])
    paired = pc.merge(best_runs[[*cell, "seed", score.test]], on=[*cell, "seed"], suffixes=("", "_linear"))
    paired["difference"] = score.better_by(paired[score.test], paired[f"{score.test}_linear"])
    matched = pc.merge(best[cell], on=cell)
    spread = seed_spread(
        pd.concat([matched.assign(T_wrm=0), best_runs]), ["method", "eta_trgt_setting", "T_wrm"], score.test
    )
    res.numbers = {
        "trained_runs": len(pc),
        "runs_reaching_eta_trgt": int(pc["warmup_steps_used"].notna().sum()),
        "median_steps_to_eta_trgt": _median(pc["warmup_steps_used"]),
        f"median_{score.better}": _median(paired["difference"]),
        f"seed_spread_{score.spread}": spread,
    }
    if not len(paired):
        res.to_decide = "Add a persistent_catapult method over the eta_trgt grid of a linear method (same optimizer)."
        return res
    reached = _units(
        [{"seed": s, "sign": 1 if pd.notna(u) else -1} for s, u in zip(pc["seed"], pc["warmup_steps_used"])]
    )
    parts = [
        SignPart("reaches_eta_trgt", reached, "trained runs reaching eta_trgt"),
        _not_worse(
            paired["seed"],
            paired["difference"],
            "accuracy minus the best linear T_wrm"
            if score is ACCURACY
            else "test loss of the best linear T_wrm minus persistent_catapult's",
            spread,
            score,
        ),
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


def _cell_best(runs: pd.DataFrame, score: Score = ACCURACY) -> float:
    """The mean-over-seeds test score of the grid cell with the best mean validation score (accuracy: highest;
    test loss: lowest)."""
    if not len(runs):
        return math.nan
    means = runs.groupby(["method", "eta_trgt_setting", "T_wrm"])[[score.val, score.test]].mean()
    better = score.sign * means[score.val]
    return float(means.loc[better.idxmax(), score.test]) if better.notna().any() else math.nan
