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


def test_sweep_against_a_real_mlflow_server(tmp_path, monkeypatch, capsys):
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
        # `whywarmup ui` on a server starts nothing: it prints the server's address of the runs, no credentials
        from whywarmup.mlflow_ui import serve

        assert serve(cfg, root, "127.0.0.1", 1) == 0
        printed = capsys.readouterr().out.strip().splitlines()[-1]
        assert printed == f"{uri}/#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning"
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


def _git(root, *args):
    return subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=root, check=True,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip


def test_sweep_runs_carry_names_datasets_sources_and_system_metrics(tmp_path):
    """A sweep in a git work tree with tracking.system_metrics on: every child run has its readable name and seed
    group, the prepared file's three splits as MLflow datasets (digest of its sha256, contexts), the commit and
    the params file's digest; the parent its description, the params file, and MLflow's system metrics."""
    import hashlib
    import json

    from mlflow.tracking import MlflowClient

    from tests.conftest import SMALL_SWEEP, run_small_sweep
    from whywarmup.config import parse_config
    from whywarmup.provenance import source_tags

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "code.py").write_text("x = 1\n")
    (tmp_path / "params.yaml").write_text("# the params file\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "init")
    head = _git(tmp_path, "rev-parse", "HEAD")
    summary = run_small_sweep(tmp_path, {"workers": 2}, {"system_metrics": True, "system_metrics_every_s": 0.2})

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("whywarmup")
    assert (
        exp.tags["mlflow.note.content"].startswith("**whywarmup**") and str(tmp_path) in exp.tags["mlflow.note.content"]
    )
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.data.tags["whywarmup.role"] == "method"]
    children = {r.data.tags["whywarmup.run_key"]: r for r in runs if r.data.tags["whywarmup.role"] == "grid_point"}
    assert set(children) == set(summary["run_key"])
    params_sha = hashlib.sha256((tmp_path / "params.yaml").read_bytes()).hexdigest()
    prepared_sha = json.loads((tmp_path / "data" / "prepared" / "digits.json").read_text())["sha256"]
    cfg = parse_config(SMALL_SWEEP)
    runs_by_key = {r.key: r for r in cfg.runs("m")}
    for key, child in children.items():
        run = runs_by_key[key]
        c = {2.0: "2", 8.0: "8", 64.0: "64"}[run.method.eta_trgt]
        assert child.info.run_name == f"m c={c} seed={run.method.seed}"
        assert child.data.tags["whywarmup.seed_group"] == f"m c={c}"
        tags = child.data.tags
        assert tags["mlflow.source.git.commit"] == head and tags["whywarmup.git.uncommitted_code"] == "false"
        assert tags["mlflow.source.name"] == str(tmp_path) and tags["whywarmup.params_sha256"] == params_sha
        inputs = {d.dataset.name: d for d in child.inputs.dataset_inputs}
        assert list(inputs) == ["digits/train", "digits/validation", "digits/test"]
        contexts = [[t.value for t in d.tags if t.key == "mlflow.data.context"] for d in inputs.values()]
        assert contexts == [["training"], ["validation"], ["evaluation"]]
        assert {d.dataset.digest for d in inputs.values()} == {prepared_sha[:12]}
        profile = json.loads(inputs["digits/train"].dataset.profile)
        assert profile["prepared_file_sha256"] == prepared_sha and profile["examples"] == 180
    note = parent.data.tags["mlflow.note.content"]
    assert "persistent catapult: every 5 steps" in note
    assert "Grid: c (eta_trgt = c / lambda_0) in {2, 8, 64}; seed in {0, 1}; 6 runs" in note
    assert "SGD (momentum 0" in note
    assert parent.data.tags["mlflow.source.git.commit"] == head
    assert [a.path for a in client.list_artifacts(parent.info.run_id, "source")] == ["source/params.yaml"]
    system = [k for k in parent.data.metrics if k.startswith("system/")]
    assert "system/cpu_utilization_percentage" in system and "system/system_memory_usage_megabytes" in system
    assert not any(k.startswith("system/") for c in children.values() for k in c.data.metrics)

    # an edit to the code under src/ shows in the next run's tags (the commit alone would hide it)
    (tmp_path / "src" / "code.py").write_text("x = 2\n")
    assert source_tags(tmp_path, "")["whywarmup.git.uncommitted_code"] == "true"
    assert "mlflow.source.git.commit" not in source_tags(tmp_path.parent, "")  # not a git work tree: no commit


def test_ui_command_names_what_is_missing(tmp_path):
    """`whywarmup ui` before anything was trained, and on a port in use: one paragraph each, no traceback."""
    import socket

    (tmp_path / "params.yaml").write_text("methods: {m: {kind: none}}\n")
    whywarmup = os.path.join(os.path.dirname(sys.executable), "whywarmup")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run([whywarmup, "ui"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "no MLflow store" in proc.stderr and "dvc repro" in proc.stderr
    from mlflow.tracking import MlflowClient

    MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").create_experiment("whywarmup")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = [whywarmup, "ui", "--port", str(port)]
        proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"Port {port} on 127.0.0.1 is taken" in proc.stderr and "--port" in proc.stderr
