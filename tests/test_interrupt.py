"""Ctrl-C / SIGTERM during a real sweep: finished runs kept, in-flight runs KILLED, no output where DVC caches."""

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_sweep_closes_every_mlflow_run(tmp_path, sig):
    from mlflow.tracking import MlflowClient

    params = {
        "data": {"num_examples": 100},
        "model": {"kind": "fcn", "depth": 2, "width": 8},
        "sharpness": {"every": 0, "subset_size": 32},
        "methods": {"m": {"kind": "none", "eta_trgt": 0.01, "grid": {"training.steps": [5, 1_000_000]}}},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    cli = [sys.executable, "-m", "whywarmup.cli"]
    subprocess.run([*cli, "prepare"], cwd=tmp_path, env=env, check=True, capture_output=True)
    proc = subprocess.Popen(
        [*cli, "train", "--method", "m", "--no-progress"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    deadline = time.monotonic() + 120
    while True:  # wait until the first run has finished and the second is training
        assert proc.poll() is None and time.monotonic() < deadline
        exp = client.get_experiment_by_name("whywarmup") if (tmp_path / "mlflow.db").exists() else None
        runs = client.search_runs([exp.experiment_id]) if exp else []
        children = [r for r in runs if r.data.tags.get("whywarmup.role") == "grid_point"]
        if len(children) == 2:
            break
        time.sleep(0.5)
    time.sleep(1.0)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    statuses = {
        r.data.tags.get("whywarmup.role") + ":" + r.data.params.get("training.steps", "-"): r.info.status
        for r in client.search_runs([exp.experiment_id])
    }
    assert statuses == {"grid_point:5": "FINISHED", "grid_point:1000000": "KILLED", "method:-": "KILLED"}
    assert not (tmp_path / "runs" / "m").exists()
