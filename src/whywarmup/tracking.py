"""MLflow tracking: one parent run per method, one child run per grid point, metrics sent in batches."""

from __future__ import annotations

import math
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .errors import TrackingError

if TYPE_CHECKING:
    from .config import Config

TAG_METHOD = "whywarmup.method"
TAG_KIND = "whywarmup.kind"
TAG_ROLE = "whywarmup.role"
TAG_RUN_KEY = "whywarmup.run_key"
TAG_STATUS = "whywarmup.status"
TAG_DRIVER = "whywarmup.driver"  # host:pid:start time of the stage process that runs a parent run
TAG_ENDED_BY = "whywarmup.ended_by"  # why a run was closed by someone else than the process that ran it
TAG_SEED_GROUP = "whywarmup.seed_group"  # a child's name without its seed: group by it to pool the seeds
TAG_NOTE = "mlflow.note.content"  # the description MLflow's UI shows on an experiment's or a run's page
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"  # read by MLflow's UI where its workflow switch is off
TRAINING_KIND = "custom_model_development"
# MLflow 3's UI opens an experiment on its GenAI overview unless this query (or the sidebar's "Model training"
# switch, remembered per browser) says otherwise
TRAINING_VIEW_QUERY = "workflowType=machine_learning"
PER_STEP_METRICS = [
    "loss",
    "accuracy",
    "lr",
    "sharpness",
    "preconditioned_sharpness",
    "stability_threshold",
    "lr_times_sharpness",
    "sharpness_matvecs",
    "critical_sharpness",
    "lr_times_critical_sharpness",
    "critical_sharpness_passes",
    "local_critical_lr",
    "val_loss",
    "val_accuracy",
    "test_loss",
    "test_accuracy",
]


def redact(uri: str) -> str:
    """Hide a password in a URI (scheme://user:password@host -> scheme://user:***@host)."""
    return re.sub(r"(//[^/:@]+:)[^@/]*@", r"\1***@", uri)


def store_root(workspace: Path) -> Path:
    """The folder relative store paths are resolved against: the project root.

    `dvc exp run --temp` and `dvc queue` run stages in a copy of the project under <project>/.dvc/tmp/exps/;
    their runs belong in the project's store, not in a store inside that throw-away copy.
    """
    workspace = workspace.resolve()
    for folder in [workspace, *workspace.parents]:
        if folder.name == ".dvc":
            return folder.parent
    return workspace


def resolve_tracking_uri(configured: str, workspace: Path) -> str:
    """MLFLOW_TRACKING_URI wins; otherwise a relative sqlite path is made absolute against the project root."""
    root = store_root(workspace)
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        uri = prefix + str((root / uri[len(prefix) :]).resolve())
    elif "://" not in uri:  # a plain path: a file store folder
        uri = str((root / uri).resolve())
    return uri


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = str(v)[:6000]
    return out


def driver_id() -> str:
    """This process as `host:pid:start time`: a pid alone is reused by the operating system after a process ends."""
    import socket

    import psutil

    return f"{socket.gethostname()}:{os.getpid()}:{psutil.Process().create_time():.2f}"


def driver_alive(driver: str) -> bool | None:
    """Whether the process a driver id names still runs; None when it ran on another host (nothing to tell)."""
    import socket

    import psutil

    host, _, rest = driver.partition(":")
    pid, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    try:
        return f"{psutil.Process(int(pid)).create_time():.2f}" == started
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def experiment_description(project: Path) -> str:
    """The experiment's description (Markdown): what the runs are and where the files behind them are."""
    return "\n".join(
        [
            '**whywarmup**: a reproduction of "Why Warmup the Learning Rate?" (Kalra & Barkeshli, NeurIPS 2024).',
            "",
            "- One parent run per method (an entry of `methods` in params.yaml), named after it and described by its "
            "schedule, optimizer and grid; one child run per grid point, named `<method> c=<c> T_wrm=<steps> "
            "seed=<seed>` with eta_trgt = c / lambda_0 (`lr=<eta_trgt>` where eta_trgt is absolute) and the grid's "
            "other varying keys. Per-step sharpness, learning rate and losses are each child's metrics; *Group by* "
            "the tag `whywarmup.seed_group` pools the seeds of a grid point (mean and range in the charts).",
            "- The `analysis` run holds the report, claims.csv and one tag per claim verdict: search "
            "`tags.\"claims.C1\" = 'SUPPORTED'`.",
            f"- Project: `{project}`; configuration: `{project / 'params.yaml'}`; report: "
            f"`{project / 'reports' / 'index.html'}`.",
            "- MLflow 3 opens experiments on its GenAI overview: switch the sidebar to *Model training* once (the "
            f"browser remembers it), or open the address `whywarmup ui` prints (it ends in `?{TRAINING_VIEW_QUERY}`).",
        ]
    )


def _chunked(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _unusable(uri: str, why: str) -> TrackingError:
    return TrackingError(
        f"The MLflow tracking store at {redact(uri)} cannot be used ({why}). Nothing was trained. If it is a "
        "server, start it (e.g. `mlflow server --host 127.0.0.1 --port 5000`) or correct tracking.uri in "
        "params.yaml / the MLFLOW_TRACKING_URI variable; if it is a sqlite file, check that its folder exists "
        "and is writable."
    )


def _probe_server(uri: str, timeout: float = 10.0) -> None:
    """Fail fast on a tracking server that is down, instead of MLflow's minutes of retries."""
    import urllib.error
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(uri)
    # urllib takes "user:password@host" for a host name: probe without the credentials (/health needs none)
    netloc = parts.netloc.rpartition("@")[2]
    try:
        probe = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/health", "", ""))
        urllib.request.urlopen(probe, timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # it answers; authentication and the like are MLflow's to report
    except (OSError, ValueError) as e:
        raise _unusable(uri, f"no answer: {getattr(e, 'reason', e)}") from None


def _store_lock(uri: str):
    """An inter-process lock for a SQLite store's setup (a no-op for servers, which serialize themselves)."""
    if not uri.startswith("sqlite:///"):
        return nullcontext()
    from filelock import FileLock

    db = Path(uri[len("sqlite:///") :])
    return FileLock(str(db.with_name(db.name + ".lock")), timeout=300)


class Tracker:
    """Thin layer over MlflowClient that knows this project's run layout."""

    def __init__(self, uri: str, experiment: str, root: Path):
        from mlflow.tracking import MlflowClient

        self.uri = uri
        if uri.startswith(("http://", "https://")):
            _probe_server(uri)
        try:
            # Several stages or queued experiments may open a new SQLite store at once: MLflow's table creation and
            # migrations, and the experiment's creation, must not race (a lock file beside the database).
            with _store_lock(uri):
                self.client = MlflowClient(tracking_uri=uri)
                exp = self.client.get_experiment_by_name(experiment)
                if exp is None:
                    location = None
                    if uri.startswith("sqlite:///"):  # artifacts beside the database file, whatever the cwd
                        location = (Path(uri[len("sqlite:///") :]).parent / "mlartifacts").as_uri()
                    exp_id = self.client.create_experiment(experiment, artifact_location=location)
                else:
                    exp_id = exp.experiment_id
                tags = {TAG_NOTE: experiment_description(store_root(root)), TAG_EXPERIMENT_KIND: TRAINING_KIND}
                current = exp.tags if exp is not None else {}
                for key, value in tags.items():
                    if current.get(key) != value:
                        self.client.set_experiment_tag(exp_id, key, value)
        except Exception as e:  # noqa: BLE001 - any failure here means the store is unusable
            first_line = str(e).splitlines()[0] if str(e) else ""
            raise _unusable(uri, f"{type(e).__name__}: {first_line}") from None
        self.experiment_id = exp_id

    def start_parent(
        self, method: str, kind: str, params: dict[str, Any], description: str = "", tags: dict[str, str] | None = None
    ) -> str:
        """A method's parent run: its settings as params, its description (schedule, optimizer, grid) as the run's
        note, `tags` (the source tags) added."""
        run_tags = {**(tags or {}), TAG_METHOD: method, TAG_KIND: kind, TAG_ROLE: "method"}
        if description:
            run_tags[TAG_NOTE] = description
        run = self.client.create_run(self.experiment_id, run_name=method, tags=run_tags)
        self.log_params(run.info.run_id, flatten(params))
        return run.info.run_id

    def start_child(
        self, parent_id: str, method: str, kind: str, run_key: str, run_name: str, tags: dict[str, str] | None = None
    ) -> str:
        run_tags = {
            **(tags or {}),
            "mlflow.parentRunId": parent_id,
            TAG_METHOD: method,
            TAG_KIND: kind,
            TAG_ROLE: "grid_point",
            TAG_RUN_KEY: run_key,
        }
        return self.client.create_run(self.experiment_id, run_name=run_name, tags=run_tags).info.run_id

    def close_orphans(self, method: str) -> list[str]:
        """Close, as KILLED, the runs of `method` left RUNNING by a stage process that died without a chance to close
        them (SIGKILL, the OOM killer, a power cut): the method's RUNNING parent runs whose driver (TAG_DRIVER) ran
        on this host and no longer runs, and their RUNNING children. A parent driven from another host, or by a
        process that still runs (a queued experiment running the same method), is left alone. Returns the closed
        run ids."""
        running = "attributes.status = 'RUNNING'"
        parents = self.client.search_runs(
            [self.experiment_id],
            f"tags.`{TAG_METHOD}` = '{method}' and tags.`{TAG_ROLE}` = 'method' and {running}",
            max_results=1000,
        )
        closed = []
        for parent in parents:
            driver = parent.data.tags.get(TAG_DRIVER, "")
            if driver_alive(driver) is not False:
                continue
            children = self.client.search_runs(
                [self.experiment_id],
                f"tags.`mlflow.parentRunId` = '{parent.info.run_id}' and {running}",
                max_results=10000,
            )
            why = (
                f"the stage process {driver} died while this run was in flight (killed without a chance to close it); "
                "closed by the next attempt at the stage"
            )
            for run in [*children, parent]:
                self.set_tags(run.info.run_id, {TAG_ENDED_BY: why})
                self.end(run.info.run_id, "KILLED")
                closed.append(run.info.run_id)
        return closed

    def log_inputs(self, run_id: str, inputs: list) -> None:
        """MLflow dataset inputs (provenance.dataset_inputs): the run table's Dataset column and its filter."""
        if inputs:
            self.client.log_inputs(run_id, datasets=inputs)

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()], synchronous=True)

    @contextmanager
    def system_metrics(self, run_id: str, enabled: bool, every_s: float) -> Iterator[None]:
        """MLflow's own system-metrics monitor (CPU, memory, disk, network; GPU utilization and memory where
        nvidia-ml-py is installed) logging `system/...` metrics to `run_id` every `every_s` seconds while the
        block runs; nothing when not enabled."""
        if not enabled:
            yield
            return
        import importlib.util

        import torch
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        if torch.cuda.is_available() and importlib.util.find_spec("pynvml") is None:
            print(
                "note: tracking.system_metrics logs no GPU metrics without nvidia-ml-py; install it with "
                "`pip install -e '.[gpu]'` (or `pip install nvidia-ml-py`).",
                file=sys.stderr,
            )
        monitor = SystemMetricsMonitor(run_id, sampling_interval=every_s, tracking_uri=self.uri)
        monitor.start()
        try:
            yield
        finally:
            monitor.finish()

    def log_params(self, run_id: str, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items()]
        for chunk in _chunked(items, 100):
            self.client.log_batch(run_id, params=chunk, synchronous=True)

    def log_trajectory(self, run_id: str, trajectory: pd.DataFrame, every: int = 1) -> None:
        """All per-step metrics in batches of 1000 (MLflow's limit), not one call per value."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = []
        for row in trajectory.itertuples(index=False):
            step = int(row.step)
            for name in PER_STEP_METRICS:
                value = getattr(row, name)
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    continue
                if name in ("loss", "accuracy", "lr") and step % every and step != trajectory["step"].iloc[-1]:
                    continue
                metrics.append(Metric(name, float(value), now, step))
        for chunk in _chunked(metrics, 1000):
            self.client.log_batch(run_id, metrics=chunk, synchronous=True)

    def log_summary(self, run_id: str, summary: dict[str, float], status: str) -> None:
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, 0) for k, v in summary.items() if v is not None and not math.isnan(v)]
        self.client.log_batch(run_id, metrics=metrics, tags=[RunTag(TAG_STATUS, status)], synchronous=True)

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def log_artifacts(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(run_id, str(path), artifact_path)

    def end(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status)

    @contextmanager
    def closing(self, run_id: str) -> Iterator[str]:
        """End the run FINISHED, or KILLED on Ctrl-C/SIGTERM, or FAILED on an error: never left RUNNING."""
        try:
            yield run_id
        except KeyboardInterrupt:
            self.end(run_id, "KILLED")
            raise
        except BaseException:
            self.end(run_id, "FAILED")
            raise
        self.end(run_id, "FINISHED")


def open_tracker(cfg: Config, root: Path) -> Tracker:
    """Connect to the tracking store of a configuration (raises TrackingError before any training when it is
    unusable)."""
    return Tracker(resolve_tracking_uri(cfg.tracking.uri, root), cfg.tracking.experiment, root)
