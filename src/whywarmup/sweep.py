"""A method's sweep: every grid point trained, saved and tracked (parent run per method, child per point)."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import signal
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from .config import Config, RunConfig, axis_value, method_axes
from .data import DATASETS, PreparedData, load_prepared, prepared_path, tokenizer_path
from .errors import WhywarmupError
from .files import atomic_write_bytes, atomic_write_text
from .layout import RUNS_DIR, STATE_DIR
from .provenance import PARAMS_FILE, source_tags
from .run_names import method_description, run_names, seed_group
from .tracked_data import dataset_inputs
from .tracking import TAG_DRIVER, TAG_RUN_KEY, TAG_SEED_GROUP, Tracker, driver_id, flatten, open_tracker
from .train import RunResult, summary_row, train_run


def _log_result(tracker: Tracker, child: str, result: RunResult, path: Path, log_every: int) -> None:
    tracker.log_trajectory(child, result.trajectory, log_every)
    tracker.log_summary(child, result.summary, result.status)
    tracker.log_artifact(child, path, "trajectory")


class ChildRuns:
    """How a method's grid points become MLflow child runs of its parent: a readable name each (run_names), the
    source tags (git commit, params file), the params, and the prepared dataset's splits as MLflow dataset inputs."""

    def __init__(self, tracker: Tracker, parent: str, names: dict[str, str], tags: dict[str, str], inputs: list):
        self.tracker, self.parent, self.names, self.tags, self.inputs = tracker, parent, names, tags, inputs

    def start(self, run: RunConfig) -> str:
        name = self.names[run.key]
        tags = {**self.tags, TAG_SEED_GROUP: seed_group(name)}
        child = self.tracker.start_child(self.parent, run.name, run.method.kind, run.key, name, tags)
        self.tracker.log_params(child, {**flatten(run.model_dump(mode="json", exclude={"name"})), "run_key": run.key})
        self.tracker.log_inputs(child, self.inputs)
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


VOLATILE = ("mlflow_run_id", "wall_time_s")  # per-run values that differ between two runs of the same params


def volatile_path(root: Path, method: str) -> Path:
    """Where a method's MLflow run ids and wall times are kept, outside DVC's outputs."""
    return root / STATE_DIR / "mlflow_runs" / f"{method}.csv"


class ResumeState:
    """What an interrupted attempt at a method's sweep leaves for the next one, in .whywarmup/resume/<method>/:
    the parent MLflow run (parent.json, reused when the method's config is unchanged) and one <run_key>.json
    summary row per grid point whose MLflow run ended FINISHED; its trajectory stays in the partial folder. The
    next attempt trains only the other grid points and creates no second MLflow run for a finished one."""

    def __init__(self, root: Path, method: str, params: dict):
        self.dir = root / STATE_DIR / "resume" / method
        self.fingerprint = hashlib.sha256(json.dumps([params, code_version()], sort_keys=True).encode()).hexdigest()

    def parent(self, tracker: Tracker) -> str | None:
        """The previous attempt's parent run, if it is still in this experiment and for the same config."""
        try:
            saved = json.loads((self.dir / "parent.json").read_text())
            run = tracker.client.get_run(saved["run_id"])
        except Exception:  # noqa: BLE001 - no usable state: start afresh
            return None
        same = saved.get("fingerprint") == self.fingerprint and run.info.experiment_id == tracker.experiment_id
        return run.info.run_id if same and run.info.lifecycle_stage == "active" else None

    def finished(self, tracker: Tracker, parent: str, runs: list[RunConfig], work_dir: Path) -> dict[str, dict]:
        """Summary rows of the grid points already done under `parent` (trajectory on disk, MLflow FINISHED)."""
        rows = {}
        for run in runs:
            try:
                row = json.loads((self.dir / f"{run.key}.json").read_text())
                mlflow_run = tracker.client.get_run(row["mlflow_run_id"])
            except Exception:  # noqa: BLE001 - not finished (or its record is gone): train it again
                continue
            tags = mlflow_run.data.tags
            if (
                mlflow_run.info.status == "FINISHED"
                and tags.get(TAG_RUN_KEY) == run.key
                and tags.get("mlflow.parentRunId") == parent
                and (work_dir / f"{run.key}.parquet").exists()
            ):
                rows[run.key] = row
        return rows

    def start(self, parent: str) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        atomic_write_text(self.dir / "parent.json", json.dumps({"run_id": parent, "fingerprint": self.fingerprint}))

    def record(self, row: dict) -> None:
        atomic_write_text(self.dir / f"{row['run_key']}.json", json.dumps(row, default=_plain))

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def code_version() -> str:
    """Hash of this package's source and torch's version: a finished grid point is taken over only by the same
    code that trained it (a fix between an interruption and the rerun retrains everything)."""
    digest = hashlib.sha256(torch.__version__.encode())
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def _plain(value):
    """numpy scalars as the Python numbers they hold (so a resumed summary.csv is the same as a fresh one)."""
    return value.item()


def _sequential(tracker, children, runs, data, work_dir, log_every, progress, bar, record) -> list[dict]:
    rows = []
    for run in runs:
        child = children.start(run)
        with tracker.closing(child):
            result = _train_and_save(run, data, work_dir, progress)
            _log_result(tracker, child, result, work_dir / f"{run.key}.parquet", log_every)
        rows.append({**summary_row(run, result), "mlflow_run_id": child})
        record(rows[-1])
        bar.update(1)
    return rows


class ProcessBackend:
    """Grid points in `workers` spawned local processes; each worker writes its run's trajectory file."""

    def __init__(self, workers: int, data_path: Path, work_dir: Path):
        ctx = multiprocessing.get_context("spawn")  # no fork after torch has started its thread pools
        self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init)
        self.capacity = workers
        self.args = (str(data_path), str(work_dir))

    def submit(self, run: RunConfig) -> Future:
        return self.pool.submit(_worker_train, run, *self.args)

    def wait(self, handles: list[Future], timeout: float) -> list[Future]:
        return list(wait(handles, timeout=timeout, return_when=FIRST_COMPLETED)[0])

    def result(self, handle: Future, run: RunConfig) -> RunResult:
        try:
            return handle.result()
        except BrokenProcessPool:
            raise _worker_died(run) from None

    def run_tags(self, run: RunConfig) -> dict[str, str]:
        return {}  # local processes: nothing to add about where it ran

    def check_alive(self, run: RunConfig) -> None:
        """A worker killed by the OS is not always reported by the pool: look at the exit codes."""
        if any(p.exitcode not in (None, 0) for p in list(getattr(self.pool, "_processes", {}).values())):
            raise _worker_died(run)

    def stop(self, cancel: bool) -> None:
        if cancel:
            for process in list(getattr(self.pool, "_processes", {}).values()):
                process.terminate()
        self.pool.shutdown(wait=not cancel, cancel_futures=cancel)


def _worker_died(run: RunConfig) -> WhywarmupError:
    return WhywarmupError(
        f"A worker process died while method '{run.name}' was training (killed by the operating system, most "
        "often for lack of memory). Finished runs are saved in MLflow and the runs in flight are marked FAILED. "
        "Lower executor.workers in params.yaml (1 trains in the stage's own process) and run `dvc repro` again."
    )


def _dispatch(tracker, children, runs, backend, work_dir, log_every, bar, record) -> list[dict]:
    """At most `backend.capacity` grid points in flight; this process is the only MLflow writer (no SQLite lock
    contention, whatever the number of workers). A run's MLflow child is created when it is handed out, so an
    interrupt marks exactly the runs in flight KILLED (FAILED on an error)."""
    pending = list(enumerate(runs))
    in_flight: dict[Any, tuple[int, RunConfig, str]] = {}
    rows: dict[int, dict] = {}
    try:
        while pending or in_flight:
            while pending and len(in_flight) < backend.capacity:
                index, run = pending.pop(0)
                child = children.start(run)
                in_flight[backend.submit(run)] = (index, run, child)
            done = backend.wait(list(in_flight), timeout=1.0)
            if not done:
                backend.check_alive(next(iter(in_flight.values()))[1])
            for handle in done:
                index, run, child = in_flight.pop(handle)
                with tracker.closing(child):
                    result = backend.result(handle, run)
                    _log_result(tracker, child, result, work_dir / f"{run.key}.parquet", log_every)
                    if tags := backend.run_tags(run):
                        tracker.set_tags(child, tags)
                rows[index] = {**summary_row(run, result), "mlflow_run_id": child}
                record(rows[index])
                bar.update(1)
    except BaseException as err:
        status = "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED"
        for _, _, child in in_flight.values():
            tracker.end(child, status)
        backend.stop(cancel=True)
        raise
    backend.stop(cancel=False)
    return [rows[i] for i in range(len(runs))]


def run_method(
    cfg: Config, method: str, root: Path, *, progress: bool = True, params_file: Path | None = None
) -> pd.DataFrame:
    """Train every grid point of `method`; write runs/<method>/{<run_key>.parquet, summary.csv} atomically.

    Grid points run in `executor.workers` processes; each run's result depends only on its own config, so the
    outputs are the same whatever the number of workers. After an interruption the next call resumes: grid
    points that finished are taken from the previous attempt (same MLflow runs), the others are trained.
    `params_file` (by default the project's params.yaml) is recorded with the method's parent run."""
    runs = cfg.runs(method)
    tracker = open_tracker(cfg, root)
    data_path = root / prepared_path(cfg.data)
    data = load_prepared(data_path)
    final_dir = root / RUNS_DIR / method
    work_dir = root / STATE_DIR / "partial" / method  # outside DVC's outputs until complete
    entry = cfg.methods[method]
    params = entry.model_dump(mode="json")
    state = ResumeState(root, method, params)
    tracker.close_orphans(method)  # runs a killed attempt left RUNNING: KILLED, before anything is resumed
    parent = state.parent(tracker)
    done = state.finished(tracker, parent, runs, work_dir) if parent else {}
    params_file = (params_file or root / PARAMS_FILE).resolve()
    tags = source_tags(root.resolve(), code_version(), params_file)
    inputs = dataset_inputs(data, data_path, DATASETS[cfg.data.dataset].origin)
    if parent is None:
        shutil.rmtree(work_dir, ignore_errors=True)
        parent_tags = {**tags, TAG_DRIVER: driver_id()}
        parent = tracker.start_parent(method, entry.kind, params, method_description(method, entry), parent_tags)
        tracker.log_inputs(parent, inputs)
        if params_file.is_file():  # the params file this sweep ran with
            tracker.log_artifact(parent, params_file, "source")
        if tokenizer_path(data_path).is_file():  # text: the tokenizer that made the token ids, with the runs
            tracker.log_artifact(parent, tokenizer_path(data_path), "data")
        state.start(parent)
    else:
        tracker.client.update_run(parent, status="RUNNING")
        tracker.set_tags(parent, {TAG_DRIVER: driver_id()})
        keep = {f"{key}.parquet" for key in done}
        for leftover in work_dir.glob("*"):  # runs in flight when interrupted, files of an older grid
            if leftover.name not in keep:
                leftover.unlink()
    work_dir.mkdir(parents=True, exist_ok=True)
    todo = [run for run in runs if run.key not in done]
    workers = max(1, min(cfg.executor.resolved_workers(), len(todo)))
    # SIGTERM (e.g. from a job scheduler) unwinds like Ctrl-C so that MLflow runs are closed as KILLED.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    log_every = cfg.tracking.log_every
    children = ChildRuns(tracker, parent, run_names(entry, runs), tags, inputs)
    monitor = tracker.system_metrics(parent, cfg.tracking.system_metrics, cfg.tracking.system_metrics_every_s)
    try:
        with tracker.closing(parent), monitor:
            with tqdm(total=len(runs), desc=f"sweep {method}", position=0, disable=not progress, unit="run") as bar:
                bar.update(len(done))
                if cfg.executor.kind == "ray" and todo:
                    from .ray_executor import RayBackend

                    backend = RayBackend(cfg.executor, data, work_dir)
                    workers = backend.capacity
                    new = _dispatch(tracker, children, todo, backend, work_dir, log_every, bar, state.record)
                elif workers > 1:
                    backend = ProcessBackend(workers, data_path, work_dir)
                    new = _dispatch(tracker, children, todo, backend, work_dir, log_every, bar, state.record)
                else:
                    new = _sequential(tracker, children, todo, data, work_dir, log_every, progress, bar, state.record)
            by_key = {**done, **{row["run_key"]: row for row in new}}
            summary = pd.DataFrame([by_key[run.key] for run in runs])
            for key in reversed(method_axes(entry)):  # every grid / override axis as a column, after `seed`
                if key not in summary:
                    summary.insert(summary.columns.get_loc("seed") + 1, key, [axis_value(r, key) for r in runs])
            # DVC's output holds only what the params determine; the MLflow run ids and wall times, which differ
            # between two runs of the same params, go to .whywarmup/mlflow_runs/<method>.csv (and MLflow itself)
            atomic_write_text(work_dir / "summary.csv", summary.drop(columns=list(VOLATILE)).to_csv(index=False))
            atomic_write_text(volatile_path(root, method), summary[["run_key", *VOLATILE]].to_csv(index=False))
            counts = {
                "runs": float(len(summary)),
                "resumed_runs": float(len(done)),
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
    state.clear()
    return summary
