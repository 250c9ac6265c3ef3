"""The Ray executor on a simulated multi-node cluster (Ray's own ray.cluster_utils.Cluster: a head node that runs
only the driver, three worker nodes of one CPU each, real raylets on this machine): grid points spread over the
nodes with results bitwise equal to the in-process sweep; a worker node killed mid-sweep costs only its run, retried
on the others; with no retries left the stage stops with the message naming the lost node, and the next attempt
resumes without recomputing what finished."""

import time

import pandas as pd
import pytest

from whywarmup.errors import WhywarmupError

from .ray_nodes import kill_a_node_once_running, training_on, worker_nodes

ray = pytest.importorskip("ray")

SWEEP = {
    "data": {"num_examples": 100},
    "model": {"kind": "fcn", "depth": 2, "width": 8},
    "training": {"eval_every": 1000},
    "sharpness": {"every": 0, "subset_size": 32, "critical_every": 0},
    "methods": {"m": {"kind": "none", "eta_trgt": 0.01, "grid": {"training.steps": [6000, 6200], "seed": [0, 1, 2]}}},
}


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})  # the driver's node: no tasks
    cluster.add_node(num_cpus=1)
    cluster.add_node(num_cpus=1)
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def _sweep(root, executor):
    from whywarmup.config import parse_config
    from whywarmup.data import build_dataset, prepared_path, save_prepared
    from whywarmup.sweep import run_method

    cfg = parse_config({**SWEEP, "executor": executor})
    if not (root / prepared_path(cfg.data)).exists():
        save_prepared(build_dataset(cfg.data), root / prepared_path(cfg.data))
    return run_method(cfg, "m", root, progress=False)


def _children(root):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("whywarmup")
    return [r for r in client.search_runs([exp.experiment_id]) if r.data.tags["whywarmup.role"] == "grid_point"]


def _same_results(a_root, b_root, a, b):
    drop = ["wall_time_s", "mlflow_run_id"]
    pd.testing.assert_frame_equal(a.drop(columns=drop), b.drop(columns=drop), check_exact=True)
    for key in a["run_key"]:
        pd.testing.assert_frame_equal(
            pd.read_parquet(a_root / "runs" / "m" / f"{key}.parquet"),
            pd.read_parquet(b_root / "runs" / "m" / f"{key}.parquet"),
            check_exact=True,
        )


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("local")
    return root, _sweep(root, {"kind": "local", "workers": 1})


def test_grid_points_spread_over_the_nodes_with_the_local_results(tmp_path, cluster, reference):
    local_root, local = reference
    summary = _sweep(tmp_path, {"kind": "ray", "address": "auto", "num_cpus": 1})
    _same_results(local_root, tmp_path, local, summary)
    children = _children(tmp_path)
    assert len(children) == 6 and all(r.info.status == "FINISHED" for r in children)
    nodes = {r.data.tags["whywarmup.ray_node"] for r in children}
    workers = {node.node_id for node in worker_nodes(cluster)}
    assert len(nodes) >= 2 and nodes <= workers  # more than one node, never the head
    assert {r.data.tags["whywarmup.attempts"] for r in children} == {"1"}


def test_a_lost_node_costs_only_its_run(tmp_path, cluster, reference):
    local_root, local = reference
    killed: list = []
    watcher = kill_a_node_once_running(cluster, tmp_path, killed)
    try:
        summary = _sweep(tmp_path, {"kind": "ray", "address": "auto", "num_cpus": 1, "max_retries": 2})
    finally:
        watcher.join(timeout=60)
        cluster.add_node(num_cpus=1)  # back to three workers for the next test
        cluster.wait_for_nodes()
    assert len(killed) == 1, "the sweep ended before a node could be killed"
    _same_results(local_root, tmp_path, local, summary)
    children = _children(tmp_path)
    assert len(children) == 6 and all(r.info.status == "FINISHED" for r in children)  # one FINISHED run a point
    attempts = sorted(int(r.data.tags["whywarmup.attempts"]) for r in children)
    assert attempts[-1] == 2 and attempts.count(1) >= 4  # the run(s) on the lost node, and only those, ran again
    assert killed[0].node_id not in {
        r.data.tags["whywarmup.ray_node"] for r in children if r.data.tags["whywarmup.attempts"] == "2"
    }


def test_no_retries_left_stops_with_the_lost_node_and_dvc_repro_resumes(tmp_path, cluster, reference):
    local_root, local = reference
    killed: list = []
    watcher = kill_a_node_once_running(cluster, tmp_path, killed)
    try:
        with pytest.raises(WhywarmupError) as err:
            _sweep(tmp_path, {"kind": "ray", "address": "auto", "num_cpus": 1, "max_retries": 0})
    finally:
        watcher.join(timeout=60)
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
    assert len(killed) == 1, "the sweep ended before a node could be killed"
    message = str(err.value)
    assert killed[0].node_id in message and "max_retries = 0" in message and "dvc repro" in message
    before = {
        r.data.tags["whywarmup.run_key"]: r.info.run_id for r in _children(tmp_path) if r.info.status == "FINISHED"
    }
    assert before
    mtimes = {k: (tmp_path / ".whywarmup/partial/m" / f"{k}.parquet").stat().st_mtime_ns for k in before}
    summary = _sweep(tmp_path, {"kind": "ray", "address": "auto", "num_cpus": 1})  # what `dvc repro` runs again
    _same_results(local_root, tmp_path, local, summary)
    finished = {
        r.data.tags["whywarmup.run_key"]: r.info.run_id for r in _children(tmp_path) if r.info.status == "FINISHED"
    }
    assert len(finished) == 6 and all(finished[k] == run_id for k, run_id in before.items())  # kept, not rerun
    assert all((tmp_path / "runs/m" / f"{k}.parquet").stat().st_mtime_ns == mtimes[k] for k in before)


def test_stage_killed_with_sigkill_on_the_cluster_is_resumed_and_closes_its_runs(tmp_path, cluster):
    """The stage process (a driver joined to the cluster) killed with SIGKILL while its grid points train on the
    worker nodes, then run again: the runs it left RUNNING are closed KILLED with the tag saying the stage died, the
    finished ones are kept, every grid point ends with exactly one FINISHED run."""
    import os
    import signal
    import subprocess
    import sys

    import yaml
    from mlflow.tracking import MlflowClient

    params = {**SWEEP, "executor": {"kind": "ray", "address": cluster.address, "num_cpus": 1}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RAY_ADDRESS"))}
    cli = [sys.executable, "-m", "whywarmup.cli"]
    subprocess.run([*cli, "prepare"], cwd=tmp_path, env=env, check=True, capture_output=True)
    stage = subprocess.Popen([*cli, "train", "--method", "m", "--no-progress"], cwd=tmp_path, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 300
    while True:  # a point finished, others are training on the nodes
        assert stage.poll() is None and time.monotonic() < deadline
        if (tmp_path / ".whywarmup/resume/m/parent.json").exists():
            statuses = [r.info.status for r in _children(tmp_path)]
            if "FINISHED" in statuses and any(training_on(node) for node in worker_nodes(cluster)):
                break
        time.sleep(0.1)
    os.kill(stage.pid, signal.SIGKILL)
    stage.wait(timeout=30)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("whywarmup")
    left = {r.info.run_id for r in client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'")}
    finished = {
        r.data.tags["whywarmup.run_key"]: r.info.run_id for r in _children(tmp_path) if r.info.status == "FINISHED"
    }
    again = subprocess.run([*cli, "train", "--method", "m", "--no-progress"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=600)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    runs = client.search_runs([exp.experiment_id])
    assert not [r for r in runs if r.info.status == "RUNNING"]
    killed = [r for r in runs if r.info.run_id in left and r.data.tags["whywarmup.role"] == "grid_point"]
    assert killed and all(r.info.status == "KILLED" for r in killed)  # the runs in flight; the parent is resumed
    assert all("died while this run was in flight" in r.data.tags["whywarmup.ended_by"] for r in killed)
    done = {}
    for r in _children(tmp_path):
        if r.info.status == "FINISHED":
            assert r.data.tags["whywarmup.run_key"] not in done  # exactly one FINISHED run per grid point
            done[r.data.tags["whywarmup.run_key"]] = r.info.run_id
    assert len(done) == 6 and all(done[k] == run_id for k, run_id in finished.items())
