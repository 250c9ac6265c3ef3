"""How much MLflow logging adds to a run's wall time on the default configuration.

Trains grid points of the default params.yaml (in-process, no MLflow), then times exactly what the sweep
logs for each of them into a fresh SQLite store and prints a table: "start" is the child run's creation
(its readable name, source tags, params and the three dataset inputs: sweep.ChildRuns), "log" the per-step
metrics in batches, the summary and the trajectory artifact. The budget: logging adds at most 5% to a run.

    python benchmarks/tracking_overhead.py [--params params.yaml] [--runs 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from whywarmup.config import load_config
from whywarmup.data import DATASETS, build_dataset, prepared_path, save_prepared
from whywarmup.provenance import source_tags
from whywarmup.run_names import run_names
from whywarmup.sweep import ChildRuns
from whywarmup.tracked_data import dataset_inputs
from whywarmup.tracking import Tracker
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
        root = Path(tmp)
        data_path = root / prepared_path(cfg.data)
        save_prepared(data, data_path)
        tracker = Tracker(f"sqlite:///{tmp}/mlflow.db", "bench", root)
        parent = tracker.start_parent(args.method, "bench", {})
        inputs = dataset_inputs(data, data_path, DATASETS[cfg.data.dataset].origin)
        names = run_names(cfg.methods[args.method], cfg.runs(args.method))
        children = ChildRuns(tracker, parent, names, source_tags(Path.cwd().resolve(), ""), inputs)
        for run in runs:
            t0 = time.perf_counter()
            result = train_run(run, data, progress=False)
            t_train = time.perf_counter() - t0
            if result.status != "finished":
                continue
            path = root / f"{run.key}.parquet"
            result.trajectory.to_parquet(path)
            t1 = time.perf_counter()
            child = children.start(run)
            t_start = time.perf_counter() - t1
            tracker.log_trajectory(child, result.trajectory, cfg.tracking.log_every)
            tracker.log_summary(child, result.summary, result.status)
            tracker.log_artifact(child, path, "trajectory")
            tracker.end(child)
            t_log = time.perf_counter() - t1 - t_start
            n_points = sum(len(tracker.client.get_metric_history(child, m)) for m in ("loss", "lr", "sharpness"))
            rows.append((names[run.key], t_train, t_start, t_log, n_points))
            if len(rows) == args.runs:
                break
    width = max(len(r[0]) for r in rows) + 2
    print(f"{'run':<{width}}{'train s':>9}{'start s':>9}{'log s':>8}{'overhead':>10}{'loss+lr+sharp pts':>19}")
    for name, t_train, t_start, t_log, n in rows:
        share = 100 * (t_start + t_log) / t_train
        print(f"{name:<{width}}{t_train:>9.2f}{t_start:>9.3f}{t_log:>8.3f}{share:>9.2f}%{n:>19}")
    total_train, total_start, total_log = (sum(r[i] for r in rows) for i in (1, 2, 3))
    share = 100 * (total_start + total_log) / total_train
    print(f"{'total':<{width}}{total_train:>9.2f}{total_start:>9.3f}{total_log:>8.3f}{share:>9.2f}%")


if __name__ == "__main__":
    main()
