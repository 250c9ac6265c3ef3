"""What every-step critical sharpness costs and how it compares with the Lanczos sharpness, on the default runs.

For grid points of each method of params.yaml (seed 0, `--per-method` of them spread over the grid; `--all` for
every point) it trains each point three times, in this process, one torch thread:
  bare      no measurement after lambda_0 but the run's last step (sharpness.every 0, no dense steps, critical off);
  critical  bare + the critical sharpness at every step (sharpness.critical_every 1);
  both      critical + Lanczos at every step (sharpness.every 1; for the Adam family plain and preconditioned).
It checks that `critical` trained exactly as `bare` (the measurement must not change the run) and prints per method:
forward passes per critical-sharpness step (median, mean, 90th percentile; target median <= 6), the ratio
lambda_c / lambda (lambda = the Lanczos sharpness the run's threshold applies to: lambda_max for SGD, the
preconditioned one for the Adam family) during warmup and at the edge of stability (steps with lr x lambda / c within
10% of 1), the wall-time overhead of every-step critical sharpness over `bare` (target <= 25%) and of every-step
Lanczos (both - critical, over bare), and the HVPs per Lanczos eigenproblem at every-step cadence (warm-started from
the previous step's vector; tol sharpness.tol; the Adam family solves two per step, plain and preconditioned).

    python benchmarks/critical_sharpness.py [--params params.yaml] [--per-method 2] [--all] [--methods linear adam]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from whywarmup.config import RunConfig, load_config
from whywarmup.data import build_dataset
from whywarmup.run_stats import EOS_BAND
from whywarmup.train import train_run

TRAINING = ["loss", "accuracy", "lr"]


def variant(run: RunConfig, **sharpness) -> RunConfig:
    bare = {"every": 0, "dense_until": 0, "every_after_warmup": None, "critical_every": 0}
    return run.model_copy(update={"sharpness": run.sharpness.model_copy(update={**bare, **sharpness})})


def timed(run: RunConfig, data) -> tuple[pd.DataFrame, float, dict]:
    t = time.perf_counter()
    res = train_run(run, data, progress=False)
    return res.trajectory, time.perf_counter() - t, res.summary


def chosen_runs(cfg, method: str, per_method: int, every: bool) -> list[RunConfig]:
    runs = cfg.runs(method)
    if every:
        return runs
    seed0 = [r for r in runs if r.method.seed == min(x.method.seed for x in runs)]
    picks = np.unique(np.linspace(0, len(seed0) - 1, per_method).round().astype(int))
    return [seed0[i] for i in picks]


def ratios(traj: pd.DataFrame, run: RunConfig, summary: dict) -> tuple[pd.Series, pd.Series]:
    """lambda_c / lambda during warmup and at the edge of stability, at the steps where both were measured."""
    column = "preconditioned_sharpness" if traj["preconditioned_sharpness"].notna().any() else "sharpness"
    both = traj.dropna(subset=[column, "critical_sharpness"])
    both = both[(both[column] > 0) & np.isfinite(both["critical_sharpness"])]
    ratio = both["critical_sharpness"] / both[column]
    schedule_end = summary["warmup_steps_used"]
    end = schedule_end if np.isfinite(schedule_end) else np.inf
    constant = (traj["lr"] * traj["stability_threshold"]).median()
    at_edge = (both["lr"] * both[column] / constant - 1).abs() <= EOS_BAND
    return ratio[both["step"] < end], ratio[at_edge]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--per-method", type=int, default=2)
    parser.add_argument("--all", action="store_true", help="every grid point of every method")
    parser.add_argument("--methods", nargs="+", default=None)
    args = parser.parse_args()
    cfg = load_config(args.params)
    data = build_dataset(cfg.data)
    rows, family_rows = [], []
    for method in args.methods or list(cfg.methods):
        passes, warm, edge, hvps, t_bare, t_crit, t_both = [], [], [], [], [], [], []
        for run in chosen_runs(cfg, method, args.per_method, args.all):
            bare, tb, _ = timed(variant(run), data)
            crit, tc, _ = timed(variant(run, critical_every=1), data)
            both, tx, summary = timed(variant(run, critical_every=1, every=1), data)
            pd.testing.assert_frame_equal(bare[TRAINING], crit[TRAINING])  # measuring must not change training
            passes += crit["critical_sharpness_passes"].dropna().tolist()
            w, e = ratios(both, run, summary)
            warm += w.tolist()
            edge += e.tolist()
            # HVPs per eigenproblem of the every-step measurements (the Adam family solves two per step)
            inner = both.iloc[1:-1].dropna(subset=["sharpness_matvecs"])
            problems = 1 + inner["preconditioned_sharpness"].notna()
            hvps += (inner["sharpness_matvecs"] / problems).tolist()
            t_bare.append(tb)
            t_crit.append(tc)
            t_both.append(tx)
        family = "adam family" if cfg.methods[method].optimizer.name != "sgd" else "sgd"
        row = {
            "method": method,
            "points": len(t_bare),
            "passes median": np.median(passes),
            "passes mean": np.mean(passes),
            "passes p90": np.percentile(passes, 90),
            "lc/l warmup (n)": f"{np.median(warm):.3f} ({len(warm)})" if warm else "-",
            "lc/l at edge (n)": f"{np.median(edge):.3f} ({len(edge)})" if edge else "-",
            "critical overhead %": 100 * (sum(t_crit) / sum(t_bare) - 1),
            "lanczos overhead %": 100 * (sum(t_both) - sum(t_crit)) / sum(t_bare),
            "HVPs/measurement": np.median(hvps),
            "bare s/run": np.mean(t_bare),
        }
        rows.append(row)
        family_rows.append(
            {
                "family": family,
                "passes": passes,
                "warm": warm,
                "edge": edge,
                "hvps": hvps,
                "bare": sum(t_bare),
                "crit": sum(t_crit),
                "both": sum(t_both),
            }
        )
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print()
    pooled = pd.DataFrame(family_rows)
    for family, group in [*pooled.groupby("family"), ("all", pooled)]:
        passes = sum(group["passes"], [])
        warm, edge, hvps = sum(group["warm"], []), sum(group["edge"], []), sum(group["hvps"], [])
        bare, crit, both = group["bare"].sum(), group["crit"].sum(), group["both"].sum()
        print(
            f"{family:>12}: forward passes per step median {np.median(passes):.0f} (mean {np.mean(passes):.2f}); "
            f"lambda_c / lambda median {np.median(warm) if warm else float('nan'):.3f} during warmup, "
            f"{np.median(edge) if edge else float('nan'):.3f} at the edge of stability; overhead over bare: "
            f"critical {100 * (crit / bare - 1):.0f}%, Lanczos {100 * (both - crit) / bare:.0f}%; "
            f"HVPs per every-step Lanczos measurement median {np.median(hvps):.0f}"
        )


if __name__ == "__main__":
    main()
