"""Grid points as Ray tasks (`executor.kind: ray`), on a cluster (`executor.address`) or a local Ray instance.

Each task declares `num_cpus`/`num_gpus`; the prepared data goes once into Ray's object store; the task returns
the run's result and the stage's own process writes the trajectory file and is the only MLflow writer, so worker
nodes need neither the project folder nor access to the tracking store - only `pip install whywarmup[ray]`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .config import RunConfig
from .data import PreparedData
from .errors import WhywarmupError
from .files import atomic_write_bytes
from .sections import ExecutorConfig
from .train import RunResult, train_run

TAG_ATTEMPTS = "whywarmup.attempts"  # how many times Ray started the run (> 1: retried after a lost node)
TAG_NODE = "whywarmup.ray_node"  # the Ray node id the finished attempt ran on


def _train_task(run: RunConfig, data: PreparedData, attempts: Any) -> tuple[RunResult, int, str]:
    """One grid point; also which attempt this is (the driver's ledger counts starts) and the node it ran on."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    attempt = ray.get(attempts.start.remote(run.key, node))
    return train_run(run, data, progress=False), attempt, node


class _Attempts:
    """The driver's ledger of task starts (a Ray actor pinned to the driver's node, so that it outlives any worker
    node): a retried grid point's second start is its attempt 2; the node of its last start names a lost node."""

    def __init__(self) -> None:
        self.starts: dict[str, int] = {}
        self.nodes: dict[str, str] = {}

    def start(self, key: str, node: str) -> int:
        self.starts[key] = self.starts.get(key, 0) + 1
        self.nodes[key] = node
        return self.starts[key]

    def last(self, key: str) -> tuple[int, str]:
        return self.starts.get(key, 0), self.nodes.get(key, "")


def _import_ray():
    try:
        import ray
    except ImportError:
        raise WhywarmupError(
            "executor.kind is 'ray' but Ray is not installed. Install the extra with `pip install -e '.[ray]'` "
            "(on every node of the cluster), or set executor.kind: local in params.yaml."
        ) from None
    return ray


class RayBackend:
    def __init__(self, cfg: ExecutorConfig, data: PreparedData, work_dir: Path):
        ray = self.ray = _import_ray()
        self.work_dir = work_dir
        self.started_here = not ray.is_initialized()
        if self.started_here:
            try:
                if cfg.address is None:
                    ray.init(
                        num_cpus=cfg.local_cpus,
                        include_dashboard=False,
                        log_to_driver=False,
                        configure_logging=False,
                    )
                else:
                    ray.init(address=cfg.address, log_to_driver=False, configure_logging=False)
            except Exception as e:  # noqa: BLE001 - ConnectionError, RuntimeError, ... all mean: no cluster
                where = f"the Ray cluster at executor.address={cfg.address!r}" if cfg.address else "a local Ray"
                why = str(e).splitlines()[0] if str(e) else ""
                raise WhywarmupError(
                    f"Could not start or join {where} ({type(e).__name__}: {why}). "
                    "Start the head node with `ray start --head` (then address: auto on it), check the address, or "
                    "set executor.kind: local in params.yaml."
                ) from None
        self.in_flight: set = set()
        self.max_retries = cfg.max_retries
        # retried on a lost worker or node only (retry_exceptions False: an error in the training code is final)
        self.task = ray.remote(
            num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus, max_retries=cfg.max_retries, retry_exceptions=False
        )(_train_task)
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self.attempts = ray.remote(num_cpus=0)(_Attempts).options(scheduling_strategy=here).remote()
        self.placement: dict[str, dict[str, str]] = {}
        self.data_ref = ray.put(data)
        resources = ray.cluster_resources()
        slots = resources.get("CPU", 0.0) / cfg.num_cpus
        if cfg.num_gpus > 0:
            slots = min(slots, resources.get("GPU", 0.0) / cfg.num_gpus)
        if slots < 1:
            self.stop(cancel=True)
            raise WhywarmupError(
                f"The Ray cluster has {resources.get('CPU', 0):g} CPUs and {resources.get('GPU', 0):g} GPUs, too few "
                f"for one task of executor.num_cpus={cfg.num_cpus:g}, num_gpus={cfg.num_gpus:g}: lower them in "
                "params.yaml or add nodes."
            )
        self.capacity = cfg.workers or max(1, math.floor(slots))

    def submit(self, run: RunConfig) -> Any:
        ref = self.task.remote(run, self.data_ref, self.attempts)
        self.in_flight.add(ref)
        return ref

    def wait(self, handles: list, timeout: float) -> list:
        done, _ = self.ray.wait(handles, num_returns=1, timeout=timeout)
        self.in_flight.difference_update(done)
        return done

    def result(self, handle: Any, run: RunConfig) -> RunResult:
        from ray.exceptions import RayTaskError

        try:
            result, attempt, node = self.ray.get(handle)
        except RayTaskError as e:  # the task raised: surface the original error
            raise e.as_instanceof_cause() from None
        except self.ray.exceptions.RayError as e:  # its worker or node was lost, more often than max_retries
            attempts, node = self.ray.get(self.attempts.last.remote(run.key))
            raise WhywarmupError(
                f"Grid point {run.key} of method '{run.name}' was lost with its Ray worker or node "
                f"({type(e).__name__}; last started on node {node or 'unknown'}) on each of its {attempts} attempts "
                f"(executor.max_retries = {self.max_retries}). Finished runs are saved in MLflow and the runs in "
                "flight are marked FAILED. Run `dvc repro` again: it resumes, training only the grid points not "
                "finished. If nodes keep dying, raise executor.max_retries or check the cluster (`ray status`); a "
                "worker killed by the operating system is most often short of memory: lower executor.workers or "
                "raise executor.num_cpus."
            ) from None
        self.placement[run.key] = {TAG_ATTEMPTS: str(attempt), TAG_NODE: node}
        atomic_write_bytes(self.work_dir / f"{run.key}.parquet", result.trajectory.to_parquet(index=False))
        return result

    def run_tags(self, run: RunConfig) -> dict[str, str]:
        """Where the finished run ran: its attempt count (1 unless a lost node made Ray retry it) and Ray node."""
        return self.placement.pop(run.key, {})

    def check_alive(self, run: RunConfig) -> None:
        """Ray reports a dead worker through the task's result."""

    def stop(self, cancel: bool) -> None:
        if cancel:
            for ref in self.in_flight:
                self.ray.cancel(ref, force=True)
        self.ray.kill(self.attempts)
        if self.started_here:
            self.ray.shutdown()  # a local instance: also ends whatever still runs
