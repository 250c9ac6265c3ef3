"""A method's grid of the default params.yaml on a simulated 3-node Ray cluster (ray.cluster_utils.Cluster on this
machine: a head node for the driver only, three worker nodes of one CPU each), once with every node up and once
with a busy worker node killed half-way through (after half the grid finished). Prints wall time, the runs Ray
retried, the runs lost (grid points without a FINISHED MLflow run: must be 0) and whether the two sweeps' results
(summary and every trajectory) are bitwise equal.

    python benchmarks/ray_cluster.py [--method linear] [--points N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ray_nodes.py: which node trains, killing one

from tests.ray_nodes import finished_runs, kill_a_node_once_running  # noqa: E402
from whywarmup.config import load_config  # noqa: E402
from whywarmup.data import build_dataset, prepared_path, save_prepared  # noqa: E402
from whywarmup.sweep import run_method  # noqa: E402


def _children(root: Path) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("whywarmup")
    return client.search_runs([exp.experiment_id], "tags.`whywarmup.role` = 'grid_point'", max_results=10000)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--method", default="linear")
    parser.add_argument("--points", type=int, default=None, help="the first N eta_trgt values only (faster)")
    args = parser.parse_args()
    import ray
    from ray.cluster_utils import Cluster

    cfg = load_config(args.params)
    method = cfg.methods[args.method]
    if args.points:
        method = method.model_copy(update={"grid": {**method.grid, "eta_trgt": method.grid["eta_trgt"][: args.points]}})
    executor = cfg.executor.model_copy(update={"kind": "ray", "num_cpus": 1.0, "max_retries": 3, "workers": None})
    cfg = cfg.model_copy(update={"methods": {args.method: method}, "executor": executor})
    n = len(cfg.runs(args.method))
    data = build_dataset(cfg.data)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(3):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    rows, summaries = [], {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for scenario in ("all nodes up", "a node killed half-way"):
                root = Path(tmp) / scenario.replace(" ", "_")
                save_prepared(data, root / prepared_path(cfg.data))
                killed: list = []
                if scenario != "all nodes up":
                    half_done = lambda where=root: finished_runs(where, args.method) >= n // 2  # noqa: E731
                    kill_a_node_once_running(cluster, root, killed, half_done)
                t = time.perf_counter()
                summary = run_method(cfg, args.method, root, progress=False)
                wall = time.perf_counter() - t
                children = _children(root)
                finished = {r.data.tags["whywarmup.run_key"] for r in children if r.info.status == "FINISHED"}
                retried = sum(int(r.data.tags.get("whywarmup.attempts", "1")) > 1 for r in children)
                trajectories = {
                    key: pd.read_parquet(root / "runs" / args.method / f"{key}.parquet") for key in finished
                }
                summaries[scenario] = (summary.drop(columns=["wall_time_s", "mlflow_run_id"]), trajectories)
                rows.append((scenario, n, len(killed), wall, retried, n - len(finished)))
    finally:
        ray.shutdown()
        cluster.shutdown()
    (a, ta), (b, tb) = summaries.values()
    equal = a.equals(b) and ta.keys() == tb.keys() and all(ta[k].equals(tb[k]) for k in ta)
    print(f"method {args.method}: {n} grid points on 3 worker nodes of 1 CPU (this machine: simulated cluster)")
    print(f"{'scenario':<24}{'runs':>6}{'nodes killed':>14}{'wall s':>9}{'retried':>9}{'lost':>6}")
    for scenario, runs, nodes, wall, retried, lost in rows:
        print(f"{scenario:<24}{runs:>6}{nodes:>14}{wall:>9.1f}{retried:>9}{lost:>6}")
    print(f"results bitwise equal (summary and every trajectory): {'yes' if equal else 'NO'}")


if __name__ == "__main__":
    main()
