"""The Ray executor on Ray's own local cluster (ray.init with 2 CPUs): the same results as the in-process sweep,
every run and metric point in MLflow, and clear errors for a cluster too small for one task."""

import pandas as pd
import pytest

from whywarmup.errors import WhywarmupError

from .conftest import run_small_sweep


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def test_ray_sweep_equals_the_in_process_sweep_and_tracks_every_point(tmp_path, ray_cluster):
    from mlflow.tracking import MlflowClient

    local = run_small_sweep(tmp_path / "local", {"kind": "local", "workers": 1})
    # num_cpus 0.5 on 2 CPUs: 4 tasks at once, all reporting to this process, the only MLflow writer
    remote = run_small_sweep(tmp_path / "ray", {"kind": "ray", "num_cpus": 0.5})
    drop = ["wall_time_s", "mlflow_run_id"]
    pd.testing.assert_frame_equal(local.drop(columns=drop), remote.drop(columns=drop), check_exact=True)
    for key in local["run_key"]:
        a = pd.read_parquet(tmp_path / "local" / "runs" / "m" / f"{key}.parquet")
        b = pd.read_parquet(tmp_path / "ray" / "runs" / "m" / f"{key}.parquet")
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    client = MlflowClient(f"sqlite:///{tmp_path / 'ray' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("whywarmup")
    runs = client.search_runs([exp.experiment_id])
    parent = next(r for r in runs if r.data.tags["whywarmup.role"] == "method")
    assert parent.data.metrics["workers"] == 4  # what the cluster holds at 0.5 CPU a task
    children = [r for r in runs if r.data.tags["whywarmup.role"] == "grid_point"]
    assert len(children) == 6 and all(r.info.status == "FINISHED" for r in children)
    for r in children:
        traj = pd.read_parquet(tmp_path / "ray" / "runs" / "m" / f"{r.data.tags['whywarmup.run_key']}.parquet")
        assert len(client.get_metric_history(r.info.run_id, "loss")) == len(traj)
        assert len(client.get_metric_history(r.info.run_id, "sharpness")) == traj["sharpness"].notna().sum()


def test_a_task_larger_than_the_cluster_is_refused_with_the_fix(tmp_path, ray_cluster):
    with pytest.raises(WhywarmupError, match="too few") as err:
        run_small_sweep(tmp_path, {"kind": "ray", "num_cpus": 4})
    assert "executor.num_cpus" in str(err.value)
