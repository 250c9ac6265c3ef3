"""Where the default pipeline's training time goes: per method, the runs, their wall time and the sharpness work.

Reads a finished pipeline's outputs (runs/<method>/summary.csv, the trajectories and each run's wall time in
.whywarmup/mlflow_runs/<method>.csv), so run it after `dvc repro`:

    python benchmarks/default_cost.py [--root .]

Wall time is each run's own (`wall_time_s`, one torch thread); the stage runs `executor.workers` of them
at once, so the train stages take about the sum divided by the worker count.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, default=Path("."))
    args = parser.parse_args()
    rows = []
    for summary in sorted((args.root / "runs").glob("*/summary.csv")):
        runs = pd.read_csv(summary)
        volatile = args.root / ".whywarmup" / "mlflow_runs" / f"{summary.parent.name}.csv"
        if "wall_time_s" not in runs:  # since the DVC outputs hold only what the params determine
            runs = runs.merge(pd.read_csv(volatile), on="run_key")
        hvps, measurements, steps = 0, 0, 0
        for key in runs["run_key"]:
            traj = pd.read_parquet(summary.parent / f"{key}.parquet", columns=["step", "sharpness_matvecs"])
            hvps += traj["sharpness_matvecs"].sum()
            measurements += traj["sharpness_matvecs"].notna().sum()
            steps += traj["step"].max()
        rows.append(
            {
                "method": summary.parent.name,
                "runs": len(runs),
                "seeds": runs["seed"].nunique(),
                "run-s": runs["wall_time_s"].sum(),
                "s/run": runs["wall_time_s"].mean(),
                "steps/run": steps / len(runs),
                "meas/run": measurements / len(runs),
                "HVPs/run": hvps / len(runs),
            }
        )
    table = pd.DataFrame(rows)
    total = table[["runs", "run-s"]].sum()
    print(table.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    print(f"total: {int(total['runs'])} runs, {total['run-s']:.0f} run-seconds")


if __name__ == "__main__":
    main()
