"""Analysis stage: per-method phase diagrams, largest trainable eta_trgt per T_wrm, and metrics.json.

A grid cell (eta_trgt, T_wrm) is *trainable* when none of its seeds failed; whether a run failed, the largest
trainable value and the best setting are whywarmup.derived's, by the rules of docs/science.md section 7.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .claims import ClaimResult, check_claims
from .config import Config, axis_value, config_axes, method_axes
from .derived import (
    UNIT_COLUMNS,
    apply_failure_rule,
    best_cell,
    critical_start_pairs,
    eta_unit,
    format_largest,
    is_language_model,
    largest_trainable,
    robust_range,
    score_of,
    with_role,
)
from .errors import WhywarmupError
from .files import atomic_write_text
from .layout import ANALYSIS_DIR, METRICS_FILE, PLOTS_DIR, RUNS_DIR
from .methods import FIXED_WARMUP, NO_WARMUP
from .run_stats import detect_catapults, run_statistics


def load_summaries(cfg: Config, root: Path) -> pd.DataFrame:
    frames = []
    for method in cfg.methods:
        path = root / RUNS_DIR / method / "summary.csv"
        if not path.exists():
            raise WhywarmupError(
                f"{path} is missing: the training stage of method '{method}' has not run. "
                f"Run `dvc repro` (or `dvc repro train@{method}`) first."
            )
        frames.append(pd.read_csv(path))
    return pd.concat(frames, ignore_index=True)


def phase_diagram(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, variant, eta_trgt setting, T_wrm), the variant naming the values of the method's other
    grid axes (add_axes): the mean and sd of the test accuracy (and test loss) over the seeds that trained, the mean
    validation and training accuracy (what a best cell is chosen on; for language models the validation loss), the
    seed count and how many seeds diverged or failed; `cell`
    is trained (every seed), diverged / failed (no seed trained; diverged when any did) or partial."""
    ok = runs["failed"] == 0
    trained = runs.assign(
        _acc=runs["final_test_accuracy"].where(ok),
        _val=runs["final_val_accuracy"].where(ok),
        _train=runs["final_train_accuracy"].where(ok),
        _loss=runs.get("final_test_loss", pd.Series(math.nan, index=runs.index)).where(ok),
        _val_loss=runs.get("final_val_loss", pd.Series(math.nan, index=runs.index)).where(ok),
        _lm=is_language_model(runs),
    )
    g = trained.groupby(["method", "variant", "eta_trgt_setting", "T_wrm"], sort=True)
    out = g.agg(
        eta_unit=("eta_unit", "first"),
        final_test_accuracy=("_acc", "mean"),
        final_test_accuracy_sd=("_acc", "std"),
        final_val_accuracy=("_val", "mean"),
        final_train_accuracy=("_train", "mean"),
        final_train_loss=("final_train_loss", "mean"),
        final_test_loss=("_loss", "mean"),
        final_test_loss_sd=("_loss", "std"),
        final_val_loss=("_val_loss", "mean"),
        language_model=("_lm", "all"),
        eta_trgt=("eta_trgt", "median"),
        seeds=("seed", "count"),
        diverged=("diverged", "sum"),
        failed=("failed", "sum"),
    ).reset_index()
    out["trainable"] = out["failed"] == 0
    none_trained = out["failed"] == out["seeds"]
    out["cell"] = np.where(
        out["trainable"],
        "trained",
        np.where(none_trained, np.where(out["diverged"] > 0, "diverged", "failed"), "partial"),
    )
    return out


def _in_unit(unit: str, name: str, value: Any) -> dict[str, Any]:
    """A value of eta_trgt in its own column: `<name>_c` for c, `<name>_eta_trgt` for absolute, the other NaN."""
    return {f"{name}_{suffix}": (value if u == unit else math.nan) for u, suffix in UNIT_COLUMNS.items()}


def _summarize(cells: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per group of grid cells: the largest trainable eta_trgt (with its lower-bound flag), the best cell (chosen on
    validation; its test accuracy and sd) and the robust range, each eta value in its unit's column."""
    largest = largest_trainable(cells, by)
    rows = []
    for (key, group), top in zip(cells.groupby(by, sort=True), largest.itertuples()):
        unit = group["eta_unit"].iloc[0]
        best = best_cell(group)
        ok = group[group["trainable"]]
        score = score_of(group)  # accuracy; for language models the test loss (signed: higher is better)
        better = (score.sign * ok[score.test]).groupby(ok["eta_trgt_setting"]).max()
        low, high = robust_range(better, score.robust_within)
        rows.append(
            {
                **dict(zip(by, key if isinstance(key, tuple) else (key,))),
                "eta_unit": unit,
                "max_trainable": format_largest(top.max_trainable, top.max_trainable_is_lower_bound),
                **_in_unit(unit, "max_trainable", top.max_trainable),
                "max_trainable_is_lower_bound": top.max_trainable_is_lower_bound,
                **_in_unit(unit, "best", best["eta_trgt_setting"] if best is not None else math.nan),
                "best_T_wrm": int(best["T_wrm"]) if best is not None else math.nan,
                "best_final_test_accuracy": best["final_test_accuracy"] if best is not None else math.nan,
                "best_final_test_accuracy_sd": best["final_test_accuracy_sd"] if best is not None else math.nan,
                "best_final_val_accuracy": best["final_val_accuracy"] if best is not None else math.nan,
                "best_final_test_loss": best["final_test_loss"] if best is not None else math.nan,
                "best_final_test_loss_sd": best["final_test_loss_sd"] if best is not None else math.nan,
                "best_final_val_loss": best["final_val_loss"] if best is not None else math.nan,
                **_in_unit(unit, "robust_min", low),
                **_in_unit(unit, "robust_max", high),
            }
        )
    return pd.DataFrame(rows)


def max_trainable(phase: pd.DataFrame) -> pd.DataFrame:
    """Per (method, variant, T_wrm): the largest trainable eta_trgt (">= top" at the top of the grid), the best
    cell (on validation) and the robust range."""
    return _summarize(phase, ["method", "variant", "T_wrm"]).drop(columns=["best_T_wrm"])


def method_table(runs: pd.DataFrame, phase: pd.DataFrame) -> pd.DataFrame:
    """Per method and variant: its optimizer and parametrization, the largest trainable eta_trgt over all its T_wrm,
    the best cell (on validation, scored on test), the robust range, and the median warmup steps used and saved
    (docs/science.md C5-C7)."""
    summary = _summarize(phase, ["method", "variant"]).set_index(["method", "variant"])
    rows = []
    for (method, variant), r in runs.groupby(["method", "variant"], sort=False):
        ok = r[r["failed"] == 0]
        rows.append(
            {
                "method": method,
                "variant": variant,
                "kind": r["kind"].iloc[0],
                "optimizer": r["optimizer"].iloc[0],
                "parametrization": r["parametrization"].iloc[0],
                "runs": len(r),
                "seeds": r["seed"].nunique(),
                "failed": int(r["failed"].sum()),
                **summary.loc[(method, variant)].to_dict(),
                "median_warmup_steps_used": ok["warmup_steps_used"].median(),
                "median_warmup_steps_saved": ok["warmup_steps_saved"].median(),
            }
        )
    return pd.DataFrame(rows)


def critical_lr_table(runs: pd.DataFrame) -> pd.DataFrame:
    """eta_c per method across its grid, against the optimizer's own stability limit at initialization: eta_c x
    lambda / constant, with lambda the initial sharpness the optimizer sees (lambda_0 for SGD, the preconditioned
    sharpness for the Adam family) and the constant of docs/science.md section 3 (2 for GD, 38 for Adam with beta1
    0.9). The search runs at initialization, so within a method it varies only with what changes the initialization
    or the optimizer (seed, model, optimizer hyperparameters)."""
    if "critical_lr" not in runs:
        return pd.DataFrame()
    found = runs.dropna(subset=["critical_lr"])
    seen = found["initial_preconditioned_sharpness"].where(
        found["initial_preconditioned_sharpness"].notna(), found["lambda_0"]
    )
    found = found.assign(
        initial_sharpness_seen=seen,
        critical_lr_over_threshold=found["critical_lr"] * seen / found["threshold_constant"],
    )
    g = found.groupby(["method", "variant"], sort=False)
    return g.agg(
        optimizer=("optimizer", "first"),
        runs=("run_key", "count"),
        threshold_constant=("threshold_constant", "median"),
        initial_sharpness_seen_median=("initial_sharpness_seen", "median"),
        critical_lr_median=("critical_lr", "median"),
        critical_lr_over_threshold_min=("critical_lr_over_threshold", "min"),
        critical_lr_over_threshold_median=("critical_lr_over_threshold", "median"),
        critical_lr_over_threshold_max=("critical_lr_over_threshold", "max"),
        critical_lr_forward_passes_median=("critical_lr_forward_passes", "median"),
    ).reset_index()


def trajectory_runs(cfg: Config, runs: pd.DataFrame, phase: pd.DataFrame) -> pd.DataFrame:
    """The runs of the Fig.-1-style figure, one panel per parametrization: a fixed-warmup method's runs at one
    eta_trgt across its T_wrm values, beside the no-warmup runs at that eta_trgt (column `panel`: the method). The
    first panel is `report.trajectory_method` (default: the first fixed-warmup method); each other parametrization
    of a fixed-warmup SGD method adds the first such method, as the paper's Fig. 1 shows SP beside muP. The eta_trgt
    is one where warmup makes the difference (panel_eta)."""
    method = cfg.report.trajectory_method
    kinds = set(with_role(runs, FIXED_WARMUP)["kind"])
    warm = [m for m, e in cfg.methods.items() if e.kind in kinds]
    if method is None:
        method = warm[0] if warm else next(iter(cfg.methods))
    panels = [method]
    seen = set(runs.loc[runs["method"] == method, "parametrization"])
    for m in warm:
        r = runs[(runs["method"] == m) & (runs["optimizer"] == "sgd")]
        if len(r) and not set(r["parametrization"]) <= seen:
            panels.append(m)
            seen |= set(r["parametrization"])
    return pd.concat([_panel_runs(cfg, runs, phase, m).assign(panel=m) for m in panels], ignore_index=True)


def panel_eta(cells: pd.DataFrame, controls: pd.DataFrame) -> float:
    """The eta_trgt a trajectory panel shows: the smallest one at which the no-warmup control fails (some seed)
    while some warmup length of the method trains every seed, i.e. where warmup makes the difference; without
    such a value (no control, or it never fails), the largest one the longest warmup trains."""
    trained = cells[cells["trainable"] & (cells["T_wrm"] > 1)]
    failing = set(controls.loc[controls["failed"] > 0, "eta_trgt_setting"])
    differs = sorted(set(trained["eta_trgt_setting"]) & failing)
    if differs:
        return differs[0]
    longest = trained[trained["T_wrm"] == trained["T_wrm"].max()]
    return longest["eta_trgt_setting"].max() if len(longest) else cells["eta_trgt_setting"].min()


def _panel_runs(cfg: Config, runs: pd.DataFrame, phase: pd.DataFrame, method: str) -> pd.DataFrame:
    mine = runs[runs["method"] == method]
    variant = sorted(mine["variant"].unique())[0]  # one variant of the method's other grid axes per panel
    mine = mine[mine["variant"] == variant]
    # the no-warmup runs of the same optimizer and parametrization, as in Fig. 1
    controls = with_role(runs, NO_WARMUP)
    controls = controls[
        controls["parametrization"].isin(set(mine["parametrization"]))
        & (controls["optimizer"] == mine["optimizer"].iloc[0])
        & (controls["eta_relative_to"] == mine["eta_relative_to"].iloc[0])
    ]
    controls = controls[controls["method"] == controls["method"].iloc[0]] if len(controls) else controls
    cells = phase[(phase["method"] == method) & (phase["variant"] == variant)]
    eta = panel_eta(cells, controls)
    chosen = mine[mine["eta_trgt_setting"] == eta]  # every seed: overlaid
    both = pd.concat([controls[controls["eta_trgt_setting"] == eta], chosen]).drop_duplicates("run_key")
    both = both.sort_values(["T_wrm", "seed"])  # (a no-warmup method shown is its own control: once)
    shown = sorted(both["T_wrm"].unique())[-cfg.report.max_trajectories :]  # the longest warmups, every seed
    return both[both["T_wrm"].isin(shown)]


def catapult_table(runs: pd.DataFrame, root: Path) -> pd.DataFrame:
    """Every catapult of every run (run_stats.detect_catapults): start, peak and end step, the loss ratio at the
    peak and the last measured sharpness before / first after (Lanczos, and the critical sharpness, every step by
    default: the step before the spike and the step it ended), so the sharpness drop of each catapult shows."""
    rows = []
    for row in runs.itertuples():
        traj = read_trajectory(root, row.method, row.run_key)
        for e in detect_catapults(
            traj["step"], traj["loss"], traj.get("sharpness"), critical=traj.get("critical_sharpness")
        ):
            rows.append(
                {
                    "method": row.method,
                    "variant": row.variant,
                    "run_key": row.run_key,
                    "eta_trgt_setting": row.eta_trgt_setting,
                    "T_wrm": row.T_wrm,
                    "start": e.start,
                    "peak": e.peak,
                    "end": e.end,
                    "loss_peak_over_min": e.peak_ratio,
                    "sharpness_before": e.sharpness_before,
                    "sharpness_after": e.sharpness_after,
                    "sharpness_after_over_before": e.sharpness_ratio,
                    "critical_sharpness_before": e.critical_before,
                    "critical_sharpness_after": e.critical_after,
                    "critical_sharpness_after_over_before": e.critical_ratio,
                }
            )
    columns = ["method", "variant", "run_key", "eta_trgt_setting", "T_wrm", "start", "peak", "end"]
    columns += ["loss_peak_over_min", "sharpness_before", "sharpness_after", "sharpness_after_over_before"]
    columns += ["critical_sharpness_before", "critical_sharpness_after", "critical_sharpness_after_over_before"]
    return pd.DataFrame(rows, columns=columns)


def read_trajectory(root: Path, method: str, run_key: str) -> pd.DataFrame:
    return pd.read_parquet(root / RUNS_DIR / method / f"{run_key}.parquet")


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    atomic_write_text(path, df.to_csv(index=False))


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def headline_metrics(
    cfg: Config, runs: pd.DataFrame, phase: pd.DataFrame, trainable: pd.DataFrame, summary: pd.DataFrame
) -> dict:
    """metrics.json: per method (`summary`: method_table's rows) and per optimizer x parametrization."""
    methods: dict[str, Any] = {}
    for method in cfg.methods:
        r = runs[runs["method"] == method]
        t = trainable[trainable["method"] == method]
        m = summary[summary["method"] == method]
        lm = bool(is_language_model(r).all())
        chosen_on = m["best_final_val_loss"] if lm else -m["best_final_val_accuracy"]  # the lower the better
        best = m.loc[chosen_on.idxmin()] if chosen_on.notna().any() else None
        unit = UNIT_COLUMNS[r["eta_unit"].iloc[0]]
        label = [(f"{row.variant} " if row.variant else "") + f"T_wrm={int(row.T_wrm)}" for row in t.itertuples()]
        methods[method] = {
            "optimizer": r["optimizer"].iloc[0],
            "parametrization": r["parametrization"].iloc[0],
            "eta_unit": r["eta_unit"].iloc[0],
            "runs": len(r),
            "seeds": int(r["seed"].nunique()),
            "diverged": int(r["diverged"].sum()),
            "failed": int(r["failed"].sum()),
            # the best grid cell, chosen on mean validation accuracy among cells where every seed trained
            "best_final_test_accuracy": best["best_final_test_accuracy"] if best is not None else None,
            "best_final_test_accuracy_sd": best["best_final_test_accuracy_sd"] if best is not None else None,
            # a language model's best cell is chosen on mean validation loss and scored by its test loss
            **(
                {
                    "best_final_test_loss": best["best_final_test_loss"] if best is not None else None,
                    "best_final_test_loss_sd": best["best_final_test_loss_sd"] if best is not None else None,
                }
                if lm
                else {}
            ),
            f"best_{unit}": best[f"best_{unit}"] if best is not None else None,
            "best_T_wrm": int(best["best_T_wrm"]) if best is not None else None,
            **({"best_variant": best["variant"]} if best is not None and best["variant"] else {}),
            f"max_trainable_{unit}": dict(zip(label, t[f"max_trainable_{unit}"])),
            "max_trainable_is_lower_bound": dict(zip(label, t["max_trainable_is_lower_bound"].astype(bool))),
            "lambda_0_mean": r["lambda_0"].mean(),
        }
    setups = {}
    cells_of = phase.merge(runs[["method", "optimizer", "parametrization"]].drop_duplicates("method"), on="method")
    units = cells_of.groupby(["optimizer", "parametrization"])["eta_unit"].nunique()
    for (optimizer, parametrization, unit), cells in cells_of.groupby(
        ["optimizer", "parametrization", "eta_unit"], sort=True
    ):
        entry: dict[str, Any] = {"eta_unit": unit}
        # T_wrm = 1: no warmup; any other (0: persistent_catapult, a warmup without a fixed length): with warmup
        for name, part in (("without_warmup", cells[cells["T_wrm"] == 1]), ("with_warmup", cells[cells["T_wrm"] != 1])):
            if not len(part):
                continue
            top = largest_trainable(part.assign(group=0), ["group"]).iloc[0]
            best = best_cell(part)
            entry[f"largest_trainable_{UNIT_COLUMNS[unit]}_{name}"] = top["max_trainable"]
            entry[f"largest_trainable_{name}_is_lower_bound"] = bool(top["max_trainable_is_lower_bound"])
            if best is not None:
                entry[f"best_test_accuracy_{name}"] = best["final_test_accuracy"]
                if best["language_model"]:
                    entry[f"best_test_loss_{name}"] = best["final_test_loss"]
                entry[f"best_{name}"] = f"{best['method']} {unit}={best['eta_trgt_setting']:g} T_wrm={best['T_wrm']}"
        # an optimizer and parametrization with grids in both units gets one block per unit, never one mixed
        both = units[(optimizer, parametrization)] > 1
        setups[f"{optimizer}_{parametrization}" + (f"_{unit}" if both else "")] = entry
    headline = {"seeds": int(runs["seed"].nunique()), "runs": len(runs), **setups}
    return _clean({"headline": headline, "methods": methods})


def add_axes(cfg: Config, runs: pd.DataFrame) -> pd.DataFrame:
    """Every grid / override axis of the configuration (config_axes) as a column with each run's resolved value, as
    text, for every run (a key a method does not set has the value of the global section), and `variant`: the
    axes that vary within the run's method, e.g. "model.width=32" ("" when none does). Runs that differ in an
    axis are never pooled: phase diagrams and tables group by variant, claims pair runs on every axis."""
    configs = {r.key: r for method in cfg.methods for r in cfg.runs(method)}
    missing = sorted(set(runs["run_key"]) - set(configs))
    if missing:
        raise WhywarmupError(
            f"The training outputs hold {len(missing)} run(s) that params.yaml does not define (e.g. {missing[0]}): "
            "runs/ was made with other parameters or code. Run `dvc repro` to retrain what changed."
        )
    runs = runs.copy()
    for key in config_axes(cfg):
        runs[key] = [str(axis_value(configs[k], key)) for k in runs["run_key"]]
    variant = pd.Series("", index=runs.index)
    for method, entry in cfg.methods.items():
        mine = runs["method"] == method
        varying = [k for k in method_axes(entry) if runs.loc[mine, k].nunique() > 1]
        if varying:
            variant[mine] = runs.loc[mine, varying].apply(lambda r: ", ".join(f"{k}={v}" for k, v in r.items()), axis=1)
    runs["variant"] = variant
    runs["eta_unit"] = eta_unit(runs)
    return runs


def add_run_statistics(cfg: Config, runs: pd.DataFrame, root: Path) -> pd.DataFrame:
    """Append the per-run trajectory statistics (run_stats.py) to the summaries."""
    extra = [
        run_statistics(read_trajectory(root, row.method, row.run_key), row.warmup_steps_used)
        for row in runs.itertuples()
    ]
    return pd.concat([runs.reset_index(drop=True), pd.DataFrame(extra)], axis=1)


def claims_metrics(results: list[ClaimResult]) -> dict[str, Any]:
    """Per claim: the pooled verdict, the verdict of each seed alone, the statistic in words and its numbers."""
    return {
        r.claim: {
            "verdict": r.verdict,
            "per_seed": {f"seed_{s}": v for s, v in r.per_seed.items()},
            "statistic": r.statistic,
            **r.numbers,
        }
        for r in results
    }


def claims_table(results: list[ClaimResult]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "claim": r.claim,
                "verdict": r.verdict,
                "per_seed": json.dumps({str(s): v for s, v in r.per_seed.items()}),
                "statistic": r.statistic,
                "statement": r.statement,
                "numbers": json.dumps(_clean(r.numbers), sort_keys=False),
                "figure": r.figure,
                "to_decide": r.to_decide,
                "finding": r.finding,
            }
            for r in results
        ]
    )


def analyze(cfg: Config, root: Path) -> dict:
    """Write analysis/*.csv, analysis/plots/*.csv (DVC plots) and metrics.json; returns the metrics."""
    runs = add_run_statistics(cfg, apply_failure_rule(add_axes(cfg, load_summaries(cfg, root))), root)
    phase = phase_diagram(runs)
    trainable = max_trainable(phase)
    out = root / ANALYSIS_DIR
    _write_csv(runs, out / "runs.csv")
    _write_csv(phase, out / "phase_diagram.csv")
    _write_csv(trainable, out / "max_trainable_lr.csv")
    _write_csv(critical_lr_table(runs), out / "critical_lr.csv")
    methods = method_table(runs, phase)
    _write_csv(methods, out / "methods.csv")
    _write_csv(catapult_table(runs, root), out / "catapults.csv")
    _write_csv(critical_start_pairs(runs, tuple(config_axes(cfg))), out / "catapult_init_vs_linear.csv")
    chosen = trajectory_runs(cfg, runs, phase)
    _write_csv(chosen, out / "trajectory_runs.csv")
    # DVC plot data: the trajectory of the longest-warmup run of the first panel of the Fig.-1 set.
    last = chosen[chosen["panel"] == chosen["panel"].iloc[0]].iloc[-1]
    traj = read_trajectory(root, last["method"], last["run_key"])
    measured = traj.dropna(subset=["sharpness", "stability_threshold"])
    _write_csv(measured[["step", "sharpness", "stability_threshold"]], root / PLOTS_DIR / "sharpness.csv")
    _write_csv(traj.dropna(subset=["lr"])[["step", "lr", "loss"]], root / PLOTS_DIR / "lr_loss.csv")
    claims = check_claims(runs, tuple(config_axes(cfg)))
    _write_csv(claims_table(claims), out / "claims.csv")
    metrics = headline_metrics(cfg, runs, phase, trainable, methods)
    metrics["claims"] = _clean(claims_metrics(claims))
    atomic_write_text(root / METRICS_FILE, json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    return metrics
