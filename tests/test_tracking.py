import os
import subprocess
import sys

import pytest

from whywarmup.errors import TrackingError
from whywarmup.tracking import Tracker, flatten, redact, resolve_tracking_uri, store_root


def test_relative_sqlite_uri_is_resolved_against_the_project_root(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri("sqlite:///mlflow.db", tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert resolve_tracking_uri("sqlite:////abs/x.db", tmp_path) == "sqlite:////abs/x.db"
    assert resolve_tracking_uri("http://127.0.0.1:5000", tmp_path) == "http://127.0.0.1:5000"
    # a `dvc exp run --temp` workspace logs to the project's store
    temp_ws = tmp_path / ".dvc" / "tmp" / "exps" / "standalone" / "tmpabc"
    temp_ws.mkdir(parents=True)
    assert store_root(temp_ws) == tmp_path.resolve()
    assert resolve_tracking_uri("sqlite:///mlflow.db", temp_ws) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///other.db")
    assert resolve_tracking_uri("sqlite:///mlflow.db", tmp_path) == f"sqlite:///{tmp_path.resolve()}/other.db"


def test_redaction_and_flattening():
    assert redact("postgresql://alice:s3cret@db:5432/mlflow") == "postgresql://alice:***@db:5432/mlflow"
    assert redact("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": {}}) == {"a.b": "1", "a.c.d": "[1, 2]", "e": "{}"}


def test_unreachable_server_fails_fast_with_the_fix(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    with pytest.raises(TrackingError) as e:
        Tracker(f"http://user:pw@127.0.0.1:{port}", "x", tmp_path)
    msg = str(e.value)
    assert "mlflow server" in msg and "pw" not in msg and "Nothing was trained" in msg


def test_unwritable_sqlite_location(tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    with pytest.raises(TrackingError, match="cannot be used"):
        Tracker(f"sqlite:///{tmp_path}/a_file/mlflow.db", "x", tmp_path)


def test_train_stage_stops_before_training_when_the_store_is_down(tmp_path, project_root):
    params = tmp_path / "params.yaml"
    params.write_text("methods:\n  m: {kind: none}\ntracking: {uri: 'http://127.0.0.1:9'}\n")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run(
        [sys.executable, "-m", "whywarmup.cli", "train", str(params), "--method", "m"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    assert "127.0.0.1:9" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / ".whywarmup").exists()


def test_sweep_against_a_real_mlflow_server(tmp_path, monkeypatch):
    """`mlflow server` started for real on a free local port; a two-worker sweep with tracking.uri pointing at it
    (with a user and password in the URI): every run, metric point and trajectory artifact arrives over HTTP, and
    the password is logged nowhere."""
    import socket
    import time
    import urllib.request

    import pandas as pd
    from mlflow.tracking import MlflowClient

    from whywarmup.config import parse_config
    from whywarmup.data import build_dataset, prepared_path, save_prepared
    from whywarmup.sweep import run_method

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server_dir = tmp_path / "server"
    server_dir.mkdir()
    mlflow = os.path.join(os.path.dirname(sys.executable), "mlflow")
    server = subprocess.Popen(
        [mlflow, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{server_dir / 'store.db'}",
         "--artifacts-destination", str(server_dir / "artifacts")],
        cwd=server_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    with_password = f"http://alice:s3cret@127.0.0.1:{port}"  # credentials in the URI (the server ignores them)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=2)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "mlflow server did not come up"
                time.sleep(0.5)
        cfg = parse_config(
            {
                "data": {"num_examples": 150},
                "model": {"kind": "fcn", "depth": 2, "width": 16},
                "training": {"steps": 20, "eval_every": 10},
                "sharpness": {"every": 5, "subset_size": 64},
                "tracking": {"uri": with_password},
                "executor": {"workers": 2},
                "methods": {"m": {"kind": "linear", "warmup_steps": 5, "grid": {"eta_trgt": [0.01, 0.05, 0.1]}}},
            }
        )
        root = tmp_path / "project"
        save_prepared(build_dataset(cfg.data), root / prepared_path(cfg.data))
        summary = run_method(cfg, "m", root, progress=False)
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("whywarmup")
        runs = client.search_runs([exp.experiment_id])
        children = [r for r in runs if r.data.tags["whywarmup.role"] == "grid_point"]
        assert sorted(r.info.run_id for r in children) == sorted(summary["mlflow_run_id"])
        assert all(r.info.status == "FINISHED" for r in runs) and len(runs) == 4
        for r in children:
            key = r.data.tags["whywarmup.run_key"]
            traj = pd.read_parquet(root / "runs" / "m" / f"{key}.parquet")
            assert len(client.get_metric_history(r.info.run_id, "loss")) == len(traj) == 21
            assert [a.path for a in client.list_artifacts(r.info.run_id, "trajectory")] == [f"trajectory/{key}.parquet"]
        assert not (root / "mlflow.db").exists()  # nothing went to a local store
        for r in runs:  # the password is in no param or tag of any run
            assert not any("s3cret" in str(v) for v in [*r.data.params.values(), *r.data.tags.values()])
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_report_configuration_redacts_the_tracking_password():
    from whywarmup.config import parse_config
    from whywarmup.report import report_config_yaml

    cfg = parse_config(
        {"tracking": {"uri": "http://alice:s3cret@mlflow.internal:5000"}, "methods": {"m": {"kind": "none"}}}
    )
    text = report_config_yaml(cfg)
    assert "s3cret" not in text and "http://alice:***@mlflow.internal:5000" in text
