"""Helpers for tests and benchmarks on a simulated Ray cluster (ray.cluster_utils.Cluster): which worker node is
training a grid point now, and killing one mid-sweep as a lost machine would be lost."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path


def worker_nodes(cluster) -> list:
    """The cluster's worker nodes that still run (a removed node has no processes left)."""
    return [node for node in cluster.worker_nodes if node.all_processes]


def training_on(node) -> bool:
    """Whether a worker process of this node's raylet executes a grid point now (Ray titles it ray::_train_task)."""
    import psutil

    for info in node.all_processes.get("raylet", []):
        try:
            workers = psutil.Process(info.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        for worker in workers:
            try:
                if any("ray::_train_task" in part for part in worker.cmdline()):
                    return True
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
    return False


def finished_runs(root: Path, method: str = "m") -> int:
    """FINISHED child runs of `method` in the store under `root` (0 before the stage has set the store up)."""
    from mlflow.tracking import MlflowClient

    if not (root / ".whywarmup" / "resume" / method / "parent.json").exists():
        return 0  # opening the store before the stage created it would race its table creation
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("whywarmup")
    runs = client.search_runs([exp.experiment_id], "tags.`whywarmup.role` = 'grid_point'", max_results=10000)
    return sum(r.info.status == "FINISHED" for r in runs)


def kill_a_node_once_running(cluster, root: Path, killed: list, ready: Callable[[], bool] | None = None):
    """In the background: once `ready()` (default: a grid point has finished), kill a worker node that trains a
    grid point now, without letting it shut down gracefully (as a lost machine); the node goes into `killed`."""
    ready = ready or (lambda: finished_runs(root) >= 1)

    def watch() -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if ready():
                busy = [node for node in worker_nodes(cluster) if training_on(node)]
                if busy:
                    cluster.remove_node(busy[0], allow_graceful=False)
                    killed.append(busy[0])
                    return
            time.sleep(0.1)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread
