"""How much MLflow logging adds to a run's wall time on the default configuration.

Trains grid points of the default params.yaml (in-process, no MLflow), then times exactly what the sweep
logs for each of them (params, the per-step metrics in batches, summary, trajectory artifact) into a fresh
SQLite store, and prints a table. The issue's budget: logging adds at most 5% to a run's wall time.

    python benchmarks/tracking_overhead.py [--params params.yaml] [--runs 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from whywarmup.config import load_config
from whywarmup.data import build_dataset
from whywarmup.tracking import Tracker, flatten
from whywarmup.train import train_run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--method", default="linear")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    cfg = load_config(args.params)
    data = build_dataset(cfg.data)
    # The trainable runs of the method, the ones that log a full trajectory.
    runs = [r for r in cfg.runs(args.method)][: args.runs * 3]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tracker = Tracker(f"sqlite:///{tmp}/mlflow.db", "bench", Path(tmp))
        parent = tracker.start_parent(args.method, "bench", {})
        for run in runs:
            t0 = time.perf_counter()
            result = train_run(run, data, progress=False)
            t_train = time.perf_counter() - t0
            if result.status != "finished":
                continue
            path = Path(tmp) / f"{run.key}.parquet"
            result.trajectory.to_parquet(path)
            t1 = time.perf_counter()
            child = tracker.start_child(parent, run.name, run.method.kind, run.key, run.key)
            tracker.log_params(child, flatten(run.model_dump(mode="json")))
            tracker.log_trajectory(child, result.trajectory, cfg.tracking.log_every)
            tracker.log_summary(child, result.summary, result.status)
            tracker.log_artifact(child, path, "trajectory")
            tracker.end(child)
            t_log = time.perf_counter() - t1
            n_points = sum(len(tracker.client.get_metric_history(child, m)) for m in ("loss", "lr", "sharpness"))
            rows.append((run.key, t_train, t_log, n_points))
            if len(rows) == args.runs:
                break
    print(f"{'run_key':<14}{'train s':>10}{'log s':>10}{'overhead':>10}{'loss+lr+sharp pts':>20}")
    for key, t_train, t_log, n in rows:
        print(f"{key:<14}{t_train:>10.2f}{t_log:>10.3f}{100 * t_log / t_train:>9.2f}%{n:>20}")
    total_train = sum(r[1] for r in rows)
    total_log = sum(r[2] for r in rows)
    print(f"{'total':<14}{total_train:>10.2f}{total_log:>10.3f}{100 * total_log / total_train:>9.2f}%")


if __name__ == "__main__":
    main()
