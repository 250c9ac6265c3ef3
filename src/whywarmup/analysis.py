"""Analysis stage: per-method phase diagrams, largest trainable eta_trgt per T_wrm, and metrics.json.

A grid cell (eta_trgt, T_wrm) is *trainable* when none of its seeds failed; a failure is divergence (NaN/Inf
or exploding loss) or a final train accuracy below 1.5 / num_classes (docs/science.md section 7).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .claims import ACCURACY_POINT, ClaimResult, catapult_init_vs_linear, check_claims
from .config import Config, axis_value, config_axes, method_axes
from .errors import WhywarmupError
from .files import atomic_write_text
from .run_stats import detect_catapults, run_statistics


def load_summaries(cfg: Config, root: Path) -> pd.DataFrame:
    frames = []
    for method in cfg.methods:
        path = root / "runs" / method / "summary.csv"
        if not path.exists():
            raise WhywarmupError(
                f"{path} is missing: the training stage of method '{method}' has not run. "
                f"Run `dvc repro` (or `dvc repro train@{method}`) first."
            )
        frames.append(pd.read_csv(path))
    return pd.concat(frames, ignore_index=True)


def phase_diagram(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, variant, eta_trgt setting, T_wrm), the variant naming the values of the method's other
    grid axes (add_axes): the mean and sd of the test accuracy over the seeds that trained, the seed count and how
    many seeds diverged or failed; `cell` is trained (every seed), diverged / failed (no seed trained; diverged when
    any did) or partial."""
    trained = runs.assign(_acc=runs["final_test_accuracy"].where(runs["failed"] == 0))
    g = trained.groupby(["method", "variant", "eta_trgt_setting", "T_wrm"], sort=True)
    out = g.agg(
        final_test_accuracy=("_acc", "mean"),
        final_test_accuracy_sd=("_acc", "std"),
        final_train_loss=("final_train_loss", "mean"),
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


def max_trainable(phase: pd.DataFrame) -> pd.DataFrame:
    """Largest trainable eta_trgt setting for each (method, variant, T_wrm); NaN when none trains."""
    rows = []
    for (method, variant, t_wrm), cells in phase.groupby(["method", "variant", "T_wrm"], sort=True):
        ok = cells[cells["trainable"]]
        # the best cell among those where every seed trained (a partial cell's mean is over its survivors only)
        best = ok.loc[ok["final_test_accuracy"].idxmax()] if ok["final_test_accuracy"].notna().any() else None
        low, high = robust_range(ok.groupby("eta_trgt_setting")["final_test_accuracy"].max())
        rows.append(
            {
                "method": method,
                "variant": variant,
                "T_wrm": int(t_wrm),
                "max_trainable_eta_trgt_setting": ok["eta_trgt_setting"].max() if len(ok) else math.nan,
                "max_trainable_eta_trgt": ok["eta_trgt"].max() if len(ok) else math.nan,
                "best_final_test_accuracy": best["final_test_accuracy"] if best is not None else math.nan,
                "best_eta_trgt_setting": best["eta_trgt_setting"] if best is not None else math.nan,
                "robust_eta_trgt_min": low,
                "robust_eta_trgt_max": high,
            }
        )
    return pd.DataFrame(rows)


def robust_range(accuracy_by_eta: pd.Series, within: float = ACCURACY_POINT) -> tuple[float, float]:
    """The paper's robustness: the smallest and largest eta_trgt setting whose accuracy is within `within` of the
    best one (NaN, NaN when nothing trained). Settings in between that fall short do not split the range."""
    acc = accuracy_by_eta.dropna()
    if not len(acc):
        return math.nan, math.nan
    good = acc[acc >= acc.max() - within].index
    return float(min(good)), float(max(good))


def method_table(runs: pd.DataFrame, phase: pd.DataFrame) -> pd.DataFrame:
    """Per method and variant: the largest trainable eta_trgt over all its T_wrm, the best final test accuracy, the
    mean final test accuracy over trainable cells, and the median warmup steps used and saved (docs/science.md
    C5-C7)."""
    rows = []
    for (method, variant), r in runs.groupby(["method", "variant"], sort=False):
        cells = phase[(phase["method"] == method) & (phase["variant"] == variant) & phase["trainable"]]
        ok = r[r["failed"] == 0]
        low, high = robust_range(cells.groupby("eta_trgt_setting")["final_test_accuracy"].max())
        rows.append(
            {
                "method": method,
                "variant": variant,
                "kind": r["kind"].iloc[0],
                "optimizer": r["optimizer"].iloc[0],
                "runs": len(r),
                "failed": int(r["failed"].sum()),
                "max_trainable_eta_trgt_setting": cells["eta_trgt_setting"].max() if len(cells) else math.nan,
                "seeds": r["seed"].nunique(),
                "best_final_test_accuracy": cells["final_test_accuracy"].max(),  # best cell mean over seeds
                "mean_trainable_test_accuracy": ok["final_test_accuracy"].mean(),
                # eta_trgt settings (any T_wrm) within one accuracy point of the method's best
                "robust_eta_trgt_min": low,
                "robust_eta_trgt_max": high,
                "median_warmup_steps_used": ok["warmup_steps_used"].median(),
                "median_warmup_steps_saved": ok["warmup_steps_saved"].median()
                if "warmup_steps_saved" in ok
                else math.nan,
            }
        )
    return pd.DataFrame(rows)


def critical_lr_table(runs: pd.DataFrame) -> pd.DataFrame:
    """eta_c lambda_0 per method across its grid (docs/science.md section 5: 2 for a quadratic along the gradient,
    2.5-3 measured on the digits FCN). The search runs at initialization, so within a method it varies only
    with what changes the initialization or the optimizer (seed, model, optimizer hyperparameters)."""
    if "critical_lr_times_lambda_0" not in runs:
        return pd.DataFrame()
    g = runs.dropna(subset=["critical_lr_times_lambda_0"]).groupby(["method", "variant"], sort=False)
    return g.agg(
        runs=("run_key", "count"),
        lambda_0_median=("lambda_0", "median"),
        critical_lr_times_lambda_0_min=("critical_lr_times_lambda_0", "min"),
        critical_lr_times_lambda_0_median=("critical_lr_times_lambda_0", "median"),
        critical_lr_times_lambda_0_max=("critical_lr_times_lambda_0", "max"),
        critical_lr_forward_passes_median=("critical_lr_forward_passes", "median"),
    ).reset_index()


def trajectory_runs(cfg: Config, runs: pd.DataFrame, phase: pd.DataFrame) -> pd.DataFrame:
    """The runs of the Fig.-1-style figure, one panel per parametrization: a method's runs at one eta_trgt across its
    T_wrm values (column `panel`: the method). The first panel is `report.trajectory_method` (default: the first
    linear method); each other parametrization of a linear SGD method adds the first such method, as the paper's
    Fig. 1 shows SP beside muP. The eta_trgt is the largest one trainable at the longest warmup."""
    method = cfg.report.trajectory_method
    linear = [m for m, e in cfg.methods.items() if e.kind == "linear"]
    if method is None:
        method = linear[0] if linear else next(iter(cfg.methods))
    panels = [method]
    seen = set(runs.loc[runs["method"] == method, "parametrization"])
    for m in linear:
        r = runs[(runs["method"] == m) & (runs["optimizer"] == "sgd")]
        if len(r) and not set(r["parametrization"]) <= seen:
            panels.append(m)
            seen |= set(r["parametrization"])
    return pd.concat([_panel_runs(cfg, runs, phase, m).assign(panel=m) for m in panels], ignore_index=True)


def _panel_runs(cfg: Config, runs: pd.DataFrame, phase: pd.DataFrame, method: str) -> pd.DataFrame:
    mine = runs[runs["method"] == method]
    variant = sorted(mine["variant"].unique())[0]  # one variant of the method's other grid axes per panel
    mine = mine[mine["variant"] == variant]
    cells = phase[(phase["method"] == method) & (phase["variant"] == variant) & phase["trainable"]]
    if cells.empty:
        eta = mine["eta_trgt_setting"].min()
    else:
        eta = cells[cells["T_wrm"] == cells["T_wrm"].max()]["eta_trgt_setting"].max()
    chosen = mine[mine["eta_trgt_setting"] == eta].sort_values(["T_wrm", "seed"])  # every seed: overlaid
    # the same eta_trgt without warmup (a `none` method in the same parametrization), as in Fig. 1
    param = set(mine["parametrization"])
    others = runs[
        (runs["method"] != method)
        & (runs["eta_trgt_setting"] == eta)
        & (runs["T_wrm"] == 1)
        & runs["parametrization"].isin(param)
        & (runs["optimizer"] == mine["optimizer"].iloc[0])
    ]
    others = others[others["method"] == others["method"].iloc[0]] if len(others) else others
    both = pd.concat([others, chosen]).sort_values(["T_wrm", "seed"], kind="stable")
    shown = sorted(both["T_wrm"].unique())[-cfg.report.max_trajectories :]  # the longest warmups, every seed
    return both[both["T_wrm"].isin(shown)]


def catapult_table(runs: pd.DataFrame, root: Path) -> pd.DataFrame:
    """Every catapult of every run (run_stats.detect_catapults): start, peak and end step, the loss ratio at the
    peak and the last measured sharpness before / first after, so the sharpness drop of each catapult shows."""
    rows = []
    for row in runs.itertuples():
        traj = read_trajectory(root, row.method, row.run_key)
        for e in detect_catapults(traj["step"], traj["loss"], traj.get("sharpness")):
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
                    "sharpness_after_over_before": e.sharpness_after / e.sharpness_before,
                }
            )
    columns = ["method", "variant", "run_key", "eta_trgt_setting", "T_wrm", "start", "peak", "end"]
    columns += ["loss_peak_over_min", "sharpness_before", "sharpness_after", "sharpness_after_over_before"]
    return pd.DataFrame(rows, columns=columns)


def read_trajectory(root: Path, method: str, run_key: str) -> pd.DataFrame:
    return pd.read_parquet(root / "runs" / method / f"{run_key}.parquet")


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


def headline_metrics(cfg: Config, runs: pd.DataFrame, phase: pd.DataFrame, trainable: pd.DataFrame) -> dict:
    methods: dict[str, Any] = {}
    for method in cfg.methods:
        r = runs[runs["method"] == method]
        t = trainable[trainable["method"] == method]
        # the best grid cell by its mean over seeds, among the cells where every seed trained
        cells = phase[(phase["method"] == method) & phase["trainable"]]
        best = cells.loc[cells["final_test_accuracy"].idxmax()] if cells["final_test_accuracy"].notna().any() else None
        methods[method] = {
            "runs": len(r),
            "seeds": int(r["seed"].nunique()),
            "diverged": int(r["diverged"].sum()),
            "failed": int(r["failed"].sum()),
            "best_final_test_accuracy": best["final_test_accuracy"] if best is not None else None,
            "best_final_test_accuracy_sd": best["final_test_accuracy_sd"] if best is not None else None,
            "best_eta_trgt_setting": best["eta_trgt_setting"] if best is not None else None,
            "best_T_wrm": int(best["T_wrm"]) if best is not None else None,
            **({"best_variant": best["variant"]} if best is not None and best["variant"] else {}),
            "max_trainable_eta_trgt_setting": {
                (f"{row.variant} " if row.variant else "")
                + f"T_wrm={int(row.T_wrm)}": row.max_trainable_eta_trgt_setting
                for row in t.itertuples()
            },
            "lambda_0_mean": r["lambda_0"].mean(),
            # eta_c lambda_0: 2 for a quadratic along the gradient (docs/science.md section 5)
            "critical_lr_times_lambda_0_mean": (
                r["critical_lr_times_lambda_0"].mean() if "critical_lr_times_lambda_0" in r else None
            ),
        }
    # T_wrm = 1: no warmup; T_wrm = 0: persistent_catapult (a warmup without a fixed length)
    no_warmup = trainable[trainable["T_wrm"] == 1]
    warmup = trainable[trainable["T_wrm"] != 1]
    headline = {
        "largest_trainable_eta_setting_without_warmup": no_warmup["max_trainable_eta_trgt_setting"].max(),
        "largest_trainable_eta_setting_with_warmup": warmup["max_trainable_eta_trgt_setting"].max(),
        # best cell means over seeds (cells where every seed trained)
        "best_test_accuracy_without_warmup": phase[phase["trainable"] & (phase["T_wrm"] == 1)][
            "final_test_accuracy"
        ].max(),
        "best_test_accuracy_with_warmup": phase[phase["trainable"] & (phase["T_wrm"] != 1)][
            "final_test_accuracy"
        ].max(),
        "seeds": int(runs["seed"].nunique()),
        "runs": len(runs),
        "largest_trainable_by_optimizer_family": _largest_by_family(runs, trainable),
    }
    return _clean({"headline": headline, "methods": methods})


def _largest_by_family(runs: pd.DataFrame, trainable: pd.DataFrame) -> dict[str, Any]:
    """Which methods train at the largest eta_trgt setting, separately for SGD and Adam-family optimizers
    (their eta grids are on different scales)."""
    family = (
        runs.drop_duplicates("method").set_index("method")["optimizer"].map(lambda o: "sgd" if o == "sgd" else "adam")
    )
    out: dict[str, Any] = {}
    best = trainable.groupby("method")["max_trainable_eta_trgt_setting"].max()
    for fam in sorted(set(family)):
        values = best[best.index.isin(family[family == fam].index)].dropna()
        if len(values):
            top = values.max()
            out[fam] = {"eta_trgt_setting": top, "methods": sorted(values[values == top].index)}
    return out


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
    runs = add_run_statistics(cfg, add_axes(cfg, load_summaries(cfg, root)), root)
    phase = phase_diagram(runs)
    trainable = max_trainable(phase)
    out = root / "analysis"
    _write_csv(runs, out / "runs.csv")
    _write_csv(phase, out / "phase_diagram.csv")
    _write_csv(trainable, out / "max_trainable_lr.csv")
    _write_csv(critical_lr_table(runs), out / "critical_lr.csv")
    _write_csv(method_table(runs, phase), out / "methods.csv")
    _write_csv(catapult_table(runs, root), out / "catapults.csv")
    _write_csv(catapult_init_vs_linear(runs, tuple(config_axes(cfg))), out / "catapult_init_vs_linear.csv")
    chosen = trajectory_runs(cfg, runs, phase)
    _write_csv(chosen, out / "trajectory_runs.csv")
    # DVC plot data: the trajectory of the longest-warmup run of the first panel of the Fig.-1 set.
    last = chosen[chosen["panel"] == chosen["panel"].iloc[0]].iloc[-1]
    traj = read_trajectory(root, last["method"], last["run_key"])
    measured = traj.dropna(subset=["sharpness", "stability_threshold"])
    _write_csv(measured[["step", "sharpness", "stability_threshold"]], out / "plots" / "sharpness.csv")
    _write_csv(traj.dropna(subset=["lr"])[["step", "lr", "loss"]], out / "plots" / "lr_loss.csv")
    claims = check_claims(runs, tuple(config_axes(cfg)))
    _write_csv(claims_table(claims), out / "claims.csv")
    metrics = headline_metrics(cfg, runs, phase, trainable)
    metrics["claims"] = _clean(claims_metrics(claims))
    atomic_write_text(root / "metrics.json", json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    return metrics
