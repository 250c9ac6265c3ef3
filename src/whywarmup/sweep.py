"""A method's sweep: every grid point trained, saved and tracked (parent run per method, child per point)."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from .config import Config, RunConfig
from .data import PreparedData, load_prepared, prepared_path
from .errors import WhywarmupError
from .files import atomic_write_bytes
from .tracking import Tracker, flatten, resolve_tracking_uri
from .train import RunResult, summary_row, train_run


def open_tracker(cfg: Config, root: Path) -> Tracker:
    """Connect to the tracking store (raises TrackingError before any training when it is unusable)."""
    return Tracker(resolve_tracking_uri(cfg.tracking.uri, root), cfg.tracking.experiment, root)


def _log_result(tracker: Tracker, child: str, result: RunResult, path: Path, log_every: int) -> None:
    tracker.log_trajectory(child, result.trajectory, log_every)
    tracker.log_summary(child, result.summary, result.status)
    tracker.log_artifact(child, path, "trajectory")


def _start_child(tracker: Tracker, parent_id: str, run: RunConfig) -> str:
    child = tracker.start_child(parent_id, run.name, run.method.kind, run.key, f"{run.name}-{run.key}")
    tracker.log_params(child, {**flatten(run.model_dump(mode="json", exclude={"name"})), "run_key": run.key})
    return child


def _train_and_save(run: RunConfig, data: PreparedData, out_dir: Path, progress: bool) -> RunResult:
    result = train_run(run, data, progress=progress, position=1)
    atomic_write_bytes(out_dir / f"{run.key}.parquet", result.trajectory.to_parquet(index=False))
    return result


_WORKER_DATA: dict[str, PreparedData] = {}


def _worker_init() -> None:
    # Ctrl-C reaches the whole process group; the parent decides what happens, workers are terminated by it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _worker_train(run: RunConfig, data_path: str, out_dir: str) -> RunResult:
    """One grid point in a worker process (the prepared data is loaded once per worker)."""
    if data_path not in _WORKER_DATA:
        _WORKER_DATA[data_path] = load_prepared(Path(data_path))
    return _train_and_save(run, _WORKER_DATA[data_path], Path(out_dir), progress=False)


def _sequential(tracker, parent, runs, data, work_dir, log_every, progress, bar) -> list[dict]:
    rows = []
    for run in runs:
        child = _start_child(tracker, parent, run)
        with tracker.closing(child):
            result = _train_and_save(run, data, work_dir, progress)
            _log_result(tracker, child, result, work_dir / f"{run.key}.parquet", log_every)
        rows.append({**summary_row(run, result), "mlflow_run_id": child})
        bar.update(1)
    return rows


def _dead_worker(pool: ProcessPoolExecutor) -> bool:
    return any(p.exitcode not in (None, 0) for p in list(getattr(pool, "_processes", {}).values()))


def _worker_died(run: RunConfig) -> WhywarmupError:
    return WhywarmupError(
        f"A worker process died while method '{run.name}' was training (killed by the operating system, most "
        "often for lack of memory). Finished runs are saved in MLflow and the runs in flight are marked FAILED. "
        "Lower executor.workers in params.yaml (1 trains in the stage's own process) and run `dvc repro` again."
    )


def _parallel(tracker, parent, runs, data_path, work_dir, log_every, workers, bar) -> list[dict]:
    """At most `workers` grid points in flight, each in a worker process; this process is the only MLflow writer
    (no SQLite lock contention). A run's MLflow child is created when it is handed to a worker, so an interrupt
    marks exactly the runs in flight KILLED."""
    ctx = multiprocessing.get_context("spawn")  # no fork after torch has started its thread pools
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init)
    pending = list(enumerate(runs))
    in_flight: dict[Future, tuple[int, RunConfig, str]] = {}
    rows: dict[int, dict] = {}
    try:
        while pending or in_flight:
            while pending and len(in_flight) < workers:
                index, run = pending.pop(0)
                child = _start_child(tracker, parent, run)
                in_flight[pool.submit(_worker_train, run, str(data_path), str(work_dir))] = (index, run, child)
            done, _ = wait(in_flight, timeout=1.0, return_when=FIRST_COMPLETED)
            if not done and _dead_worker(pool):  # a killed worker is not always reported by the pool
                index, run, child = next(iter(in_flight.values()))
                raise _worker_died(run)
            for future in done:
                index, run, child = in_flight.pop(future)
                with tracker.closing(child):
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        raise _worker_died(run) from None
                    _log_result(tracker, child, result, work_dir / f"{run.key}.parquet", log_every)
                rows[index] = {**summary_row(run, result), "mlflow_run_id": child}
                bar.update(1)
    except BaseException as err:
        status = "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED"
        for _, _, child in in_flight.values():
            tracker.end(child, status)
        for process in list(getattr(pool, "_processes", {}).values()):
            process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return [rows[i] for i in range(len(runs))]


def run_method(cfg: Config, method: str, root: Path, *, progress: bool = True) -> pd.DataFrame:
    """Train every grid point of `method`; write runs/<method>/{<run_key>.parquet, summary.csv} atomically.

    Grid points run in `executor.workers` processes; each run's result depends only on its own config, so the
    outputs are the same whatever the number of workers."""
    runs = cfg.runs(method)
    tracker = open_tracker(cfg, root)
    data_path = root / prepared_path(cfg.data)
    data = load_prepared(data_path)
    final_dir = root / "runs" / method
    work_dir = root / ".whywarmup" / "partial" / method  # outside DVC's outputs until complete
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    entry = cfg.methods[method]
    workers = min(cfg.executor.resolved_workers(), len(runs))
    parent = tracker.start_parent(method, entry.kind, entry.model_dump(mode="json"))
    # SIGTERM (e.g. from a job scheduler) unwinds like Ctrl-C so that MLflow runs are closed as KILLED.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    log_every = cfg.tracking.log_every
    try:
        with tracker.closing(parent):
            with tqdm(total=len(runs), desc=f"sweep {method}", position=0, disable=not progress, unit="run") as bar:
                if workers > 1:
                    rows = _parallel(tracker, parent, runs, data_path, work_dir, log_every, workers, bar)
                else:
                    rows = _sequential(tracker, parent, runs, data, work_dir, log_every, progress, bar)
            summary = pd.DataFrame(rows)
            summary.to_csv(work_dir / "summary.csv", index=False)
            counts = {
                "runs": float(len(summary)),
                "workers": float(workers),
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
