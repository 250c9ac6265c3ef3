"""A method's sweep: every grid point trained, saved and tracked (parent run per method, child per point)."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from .config import Config, RunConfig
from .data import PreparedData, load_prepared, prepared_path
from .files import atomic_write_bytes
from .tracking import Tracker, flatten, resolve_tracking_uri
from .train import summary_row, train_run


def open_tracker(cfg: Config, root: Path) -> Tracker:
    """Connect to the tracking store (raises TrackingError before any training when it is unusable)."""
    return Tracker(resolve_tracking_uri(cfg.tracking.uri, root), cfg.tracking.experiment, root)


def _run_one(
    tracker: Tracker,
    parent_id: str,
    run: RunConfig,
    data: PreparedData,
    out_dir: Path,
    log_every: int,
    progress: bool,
) -> dict:
    child = tracker.start_child(parent_id, run.name, run.method.kind, run.key, f"{run.name}-{run.key}")
    with tracker.closing(child):
        tracker.log_params(child, {**flatten(run.model_dump(mode="json", exclude={"name"})), "run_key": run.key})
        result = train_run(run, data, progress=progress, position=1)
        path = out_dir / f"{run.key}.parquet"
        atomic_write_bytes(path, result.trajectory.to_parquet(index=False))
        tracker.log_trajectory(child, result.trajectory, log_every)
        tracker.log_summary(child, result.summary, result.status)
        tracker.log_artifact(child, path, "trajectory")
    return {**summary_row(run, result), "mlflow_run_id": child}


def run_method(cfg: Config, method: str, root: Path, *, progress: bool = True) -> pd.DataFrame:
    """Train every grid point of `method`; write runs/<method>/{<run_key>.parquet, summary.csv} atomically."""
    runs = cfg.runs(method)
    tracker = open_tracker(cfg, root)
    data = load_prepared(root / prepared_path(cfg.data))
    final_dir = root / "runs" / method
    work_dir = root / ".whywarmup" / "partial" / method  # outside DVC's outputs until complete
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    entry = cfg.methods[method]
    parent = tracker.start_parent(method, entry.kind, entry.model_dump(mode="json"))
    # SIGTERM (e.g. from a job scheduler) unwinds like Ctrl-C so that MLflow runs are closed as KILLED.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    rows = []
    try:
        with tracker.closing(parent):
            for run in tqdm(runs, desc=f"sweep {method}", position=0, disable=not progress, unit="run"):
                rows.append(_run_one(tracker, parent, run, data, work_dir, cfg.tracking.log_every, progress))
            summary = pd.DataFrame(rows)
            summary.to_csv(work_dir / "summary.csv", index=False)
            counts = {
                "runs": float(len(summary)),
                "diverged_runs": float(summary["diverged"].sum()),
                "failed_runs": float(summary["failed"].sum()),
                "best_final_test_accuracy": float(summary["final_test_accuracy"].max()),
            }
            tracker.log_summary(parent, counts, "finished")
            tracker.log_artifact(parent, work_dir / "summary.csv")
    finally:
        signal.signal(signal.SIGTERM, previous)
    shutil.rmtree(final_dir, ignore_errors=True)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    os.replace(work_dir, final_dir)
    return summary
