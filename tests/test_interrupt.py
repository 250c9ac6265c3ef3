"""Ctrl-C / SIGTERM during a real sweep: finished runs kept, in-flight runs KILLED, no output where DVC caches."""

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from .conftest import run_small_sweep


def _default_sigint() -> None:
    """In the child before exec: SIGINT back to its default. A shell that starts the tests as a background job
    ignores SIGINT, the children inherit that, and Python then installs no KeyboardInterrupt handler: Ctrl-C
    would look broken when only the test's launcher was."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize(
    ("sig", "executor"),
    [
        (signal.SIGINT, {"workers": 1}),
        (signal.SIGTERM, {"workers": 1}),
        (signal.SIGINT, {"workers": 2}),
        (signal.SIGINT, {"kind": "ray", "local_cpus": 2, "workers": 2}),  # Ray's own local cluster
    ],
    ids=["sigint-1", "sigterm-1", "sigint-2", "sigint-ray"],
)
def test_interrupted_sweep_closes_every_mlflow_run(tmp_path, sig, executor):
    from mlflow.tracking import MlflowClient

    params = {
        "data": {"num_examples": 100},
        "model": {"kind": "fcn", "depth": 2, "width": 8},
        "sharpness": {"every": 0, "subset_size": 32},
        "methods": {"m": {"kind": "none", "eta_trgt": 0.01, "grid": {"training.steps": [5, 1_000_000]}}},
        "executor": executor,
    }
    if executor.get("kind") == "ray":
        pytest.importorskip("ray")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    cli = [sys.executable, "-m", "whywarmup.cli"]
    subprocess.run([*cli, "prepare"], cwd=tmp_path, env=env, check=True, capture_output=True)
    clusters_before = _ray_clusters()
    proc = subprocess.Popen(
        [*cli, "train", "--method", "m", "--no-progress"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    deadline = time.monotonic() + 120
    while True:  # wait until the first run has finished and the second is training
        assert proc.poll() is None and time.monotonic() < deadline
        exp = client.get_experiment_by_name("whywarmup") if _store_ready(tmp_path) else None
        runs = client.search_runs([exp.experiment_id]) if exp else []
        children = [r for r in runs if r.data.tags.get("whywarmup.role") == "grid_point"]
        if sorted(r.info.status for r in children) == ["FINISHED", "RUNNING"]:
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
    deadline = time.monotonic() + 10
    while _processes_in(tmp_path) and time.monotonic() < deadline:  # the worker processes are gone too
        time.sleep(0.2)
    assert not _processes_in(tmp_path)
    if executor.get("kind") == "ray":  # the stage's local Ray instance (its gcs_server) was shut down
        deadline = time.monotonic() + 30
        while _ray_clusters() > clusters_before and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _ray_clusters() == clusters_before


def _store_ready(folder) -> bool:
    """Whether the stage has set up its MLflow store (its parent run is recorded): opening the SQLite file before
    that races the stage's own table creation (MLflow's migrations are not safe to run twice at once)."""
    return (folder / ".whywarmup" / "resume" / "m" / "parent.json").exists()


def _ray_clusters() -> int:
    return sum(
        os.path.basename(_cmdline(pid).split("\0")[0]) == "gcs_server" for pid in os.listdir("/proc") if pid.isdigit()
    )


def _processes_in(folder) -> list[str]:
    """PIDs of processes whose working directory is `folder` (the sweep's workers inherit it)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/cwd") == str(folder):
                    found.append(entry)
            except OSError:
                pass
    return found


def test_sweep_results_are_bitwise_equal_with_one_and_two_workers(tmp_path):
    import pandas as pd
    from mlflow.tracking import MlflowClient

    summaries, trajectories = {}, {}
    for workers in (1, 2):
        root = tmp_path / f"w{workers}"
        root.mkdir()
        summary = run_small_sweep(root, {"workers": workers})
        summaries[workers] = summary.drop(columns=["wall_time_s", "mlflow_run_id"])
        trajectories[workers] = {p.name: pd.read_parquet(p) for p in (root / "runs" / "m").glob("*.parquet")}
        client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
        exp = client.get_experiment_by_name("whywarmup")
        runs = client.search_runs([exp.experiment_id])
        children = [r for r in runs if r.data.tags.get("whywarmup.role") == "grid_point"]
        assert len(children) == 6 and all(r.info.status == "FINISHED" for r in children)
        for r in children:  # every metric point is in the store
            traj = trajectories[workers][f"{r.data.tags['whywarmup.run_key']}.parquet"]
            assert len(client.get_metric_history(r.info.run_id, "loss")) == len(traj)
    pd.testing.assert_frame_equal(summaries[1], summaries[2], check_exact=True)
    assert trajectories[1].keys() == trajectories[2].keys() and len(trajectories[1]) == 6
    for name, traj in trajectories[1].items():
        pd.testing.assert_frame_equal(traj, trajectories[2][name], check_exact=True)


def test_a_killed_worker_ends_the_sweep_with_a_message_and_no_running_runs(tmp_path):
    from mlflow.tracking import MlflowClient

    params = {
        "data": {"num_examples": 100},
        "model": {"kind": "fcn", "depth": 2, "width": 8},
        "sharpness": {"every": 0, "subset_size": 32},
        "methods": {"m": {"kind": "none", "eta_trgt": 0.01, "grid": {"training.steps": [1_000_000, 999_999]}}},
        "executor": {"workers": 2},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    cli = [sys.executable, "-m", "whywarmup.cli"]
    subprocess.run([*cli, "prepare"], cwd=tmp_path, env=env, check=True, capture_output=True)
    proc = subprocess.Popen(
        [*cli, "train", "--method", "m", "--no-progress"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    workers: list[str] = []
    while len(workers) < 2:  # both grid points handed to their worker processes
        assert proc.poll() is None and time.monotonic() < deadline
        workers = [p for p in _processes_in(tmp_path) if _parent(p) == proc.pid and "spawn_main" in _cmdline(p)]
        time.sleep(0.5)
    time.sleep(3.0)
    os.kill(int(workers[0]), signal.SIGKILL)  # what the kernel's OOM killer does
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        for pid in [proc.pid, *map(int, _processes_in(tmp_path))]:
            try:
                os.kill(pid, signal.SIGKILL)  # never leave a hung sweep behind
            except (ProcessLookupError, PermissionError):
                pass
    assert proc.returncode == 1, err
    assert "worker process died" in err and "executor.workers" in err and "Traceback" not in err
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("whywarmup")
    statuses = sorted(r.info.status for r in client.search_runs([exp.experiment_id]))
    assert statuses == ["FAILED", "FAILED", "FAILED"]
    deadline = time.monotonic() + 10
    while _processes_in(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _processes_in(tmp_path)


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _parent(pid: str) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return -1


# Three grid points in the stage's own process: a short one that finishes, a long one in flight, a short one after.
RESUMABLE = {
    "data": {"num_examples": 100},
    "model": {"kind": "fcn", "depth": 2, "width": 8},
    "training": {"eval_every": 1000},
    "sharpness": {"every": 0, "subset_size": 32},
    "methods": {"m": {"kind": "none", "eta_trgt": 0.01, "grid": {"training.steps": [5, 20_000, 7]}}},
    "executor": {"workers": 1},
}


def test_rerun_after_ctrl_c_trains_only_the_missing_grid_points(tmp_path):
    """Interrupt a real sweep after its first grid point finished, run it again: the finished point is taken over
    (same MLflow run, same trajectory file), the others are trained, the parent run is reused, and the result
    equals an uninterrupted sweep's."""
    import pandas as pd
    from mlflow.tracking import MlflowClient

    params = RESUMABLE
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    cli = [sys.executable, "-m", "whywarmup.cli"]
    work, ref = tmp_path / "work", tmp_path / "ref"
    for folder in (work, ref):
        folder.mkdir()
        (folder / "params.yaml").write_text(yaml.safe_dump(params))
        subprocess.run([*cli, "prepare"], cwd=folder, env=env, check=True, capture_output=True)
    proc = subprocess.Popen(
        [*cli, "train", "--method", "m", "--no-progress"],
        cwd=work,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )
    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    deadline = time.monotonic() + 120
    while True:  # the 5-step point finished, the 20000-step one is training
        assert proc.poll() is None and time.monotonic() < deadline
        exp = client.get_experiment_by_name("whywarmup") if _store_ready(work) else None
        children = [r for r in (client.search_runs([exp.experiment_id]) if exp else []) if _role(r) == "grid_point"]
        if sorted(r.info.status for r in children) == ["FINISHED", "RUNNING"]:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    first = next(r for r in children if r.info.status == "FINISHED")
    key = first.data.tags["whywarmup.run_key"]
    kept = work / ".whywarmup" / "partial" / "m" / f"{key}.parquet"
    mtime = kept.stat().st_mtime_ns

    again = subprocess.run([*cli, "train", "--method", "m", "--no-progress"], cwd=work, env=env, capture_output=True)
    assert again.returncode == 0, again.stderr.decode()[-2000:]
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if _role(r) == "method"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert parents[0].data.metrics["resumed_runs"] == 1
    by_steps: dict[str, list[str]] = {}
    for r in runs:
        if _role(r) == "grid_point":
            by_steps.setdefault(r.data.params["training.steps"], []).append(r.info.status)
    # one FINISHED run per grid point; the point that was in flight keeps its KILLED record beside the new one
    assert {k: sorted(v) for k, v in by_steps.items()} == {
        "5": ["FINISHED"],
        "20000": ["FINISHED", "KILLED"],
        "7": ["FINISHED"],
    }
    summary = pd.read_csv(work / "runs" / "m" / "summary.csv")
    ids = pd.read_csv(work / ".whywarmup" / "mlflow_runs" / "m.csv")
    assert ids.set_index("run_key").loc[key, "mlflow_run_id"] == first.info.run_id
    assert (work / "runs" / "m" / f"{key}.parquet").stat().st_mtime_ns == mtime  # not trained again
    assert not (work / ".whywarmup" / "resume" / "m").exists()
    assert sorted(p.name for p in (work / "runs" / "m").iterdir()) == sorted(
        [*(f"{k}.parquet" for k in summary["run_key"]), "summary.csv"]
    )

    subprocess.run([*cli, "train", "--method", "m", "--no-progress"], cwd=ref, env=env, check=True, capture_output=True)
    expected = pd.read_csv(ref / "runs" / "m" / "summary.csv")
    pd.testing.assert_frame_equal(summary, expected, check_exact=True)


def _role(run) -> str:
    return run.data.tags.get("whywarmup.role", "")


def test_resume_state_is_used_only_by_the_same_method_config_and_code(tmp_path, monkeypatch):
    import whywarmup.sweep as sweep
    from whywarmup.tracking import Tracker

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "whywarmup", tmp_path)
    params = {"kind": "linear", "eta_trgt": 8.0}
    parent = tracker.start_parent("m", "linear", params)
    sweep.ResumeState(tmp_path, "m", params).start(parent)
    assert sweep.ResumeState(tmp_path, "m", params).parent(tracker) == parent
    assert sweep.ResumeState(tmp_path, "m", {**params, "eta_trgt": 16.0}).parent(tracker) is None
    monkeypatch.setattr(sweep, "code_version", lambda: "edited since the interruption")
    assert sweep.ResumeState(tmp_path, "m", params).parent(tracker) is None
    monkeypatch.undo()
    tracker.client.delete_run(parent)  # deleted in the MLflow UI meanwhile
    assert sweep.ResumeState(tmp_path, "m", params).parent(tracker) is None


def test_resume_after_sigkill_closes_the_runs_the_dead_stage_left_running(tmp_path):
    """SIGKILL of the stage (no handler can run: as the OOM killer or a reboot would) while a grid point trains,
    then the stage again, as `dvc repro` runs it: the runs the dead attempt left RUNNING are closed KILLED with a tag
    saying the stage died, the point finished before the kill is kept (same MLflow run, its file not rewritten), the
    others are trained, and every grid point ends with exactly one FINISHED run; nothing is left RUNNING."""
    import pandas as pd
    from mlflow.tracking import MlflowClient

    params = RESUMABLE  # in the stage's process; tests/test_ray_cluster.py kills a stage whose runs train elsewhere
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    cli = [sys.executable, "-m", "whywarmup.cli"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run([*cli, "prepare"], cwd=tmp_path, env=env, check=True, capture_output=True)
    # its own process group, killed as a whole (as a reboot would)
    proc = subprocess.Popen(
        [*cli, "train", "--method", "m", "--no-progress"], cwd=tmp_path, env=env, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    deadline = time.monotonic() + 120
    while True:  # a point finished, the 20000-step one is training
        assert proc.poll() is None and time.monotonic() < deadline
        exp = client.get_experiment_by_name("whywarmup") if _store_ready(tmp_path) else None
        children = [r for r in (client.search_runs([exp.experiment_id]) if exp else []) if _role(r) == "grid_point"]
        statuses = {r.info.status for r in children}
        if statuses == {"FINISHED", "RUNNING"}:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    left = {r.info.run_id for r in client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'")}
    assert len(left) >= 2  # the parent and the run(s) in flight: no process will ever close them
    finished = {r.data.tags["whywarmup.run_key"]: r for r in children if r.info.status == "FINISHED"}
    mtimes = {k: (tmp_path / ".whywarmup/partial/m" / f"{k}.parquet").stat().st_mtime_ns for k in finished}

    again = subprocess.run(
        [*cli, "train", "--method", "m", "--no-progress"], cwd=tmp_path, env=env, capture_output=True
    )
    assert again.returncode == 0, again.stderr.decode()[-2000:]
    runs = client.search_runs([exp.experiment_id])
    assert not [r for r in runs if r.info.status == "RUNNING"]
    parents = [r for r in runs if _role(r) == "method"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"  # the dead attempt's parent, resumed
    by_steps: dict[str, list[str]] = {}
    for r in runs:
        if _role(r) == "grid_point":
            by_steps.setdefault(r.data.params["training.steps"], []).append(r.info.status)
    assert all(statuses.count("FINISHED") == 1 for statuses in by_steps.values()) and len(by_steps) == 3
    killed = [r for r in runs if r.info.run_id in left and _role(r) == "grid_point"]
    assert killed and all(r.info.status == "KILLED" for r in killed)
    assert all("died while this run was in flight" in r.data.tags["whywarmup.ended_by"] for r in killed)
    ids = pd.read_csv(tmp_path / ".whywarmup/mlflow_runs/m.csv").set_index("run_key")["mlflow_run_id"]
    for key, run in finished.items():  # kept, not trained again
        assert ids[key] == run.info.run_id
        assert (tmp_path / "runs/m" / f"{key}.parquet").stat().st_mtime_ns == mtimes[key]
