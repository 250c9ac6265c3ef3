"""Four sweeps at once, each its own process writing to the one default SQLite store (what `dvc queue start -j 4`
or parallel `dvc exp run` does): every run and every metric point lands."""

import os
import subprocess
import sys

import pandas as pd
import yaml


def test_four_concurrent_sweeps_on_one_sqlite_store(tmp_path):
    from mlflow.tracking import MlflowClient

    method = {"kind": "linear", "eta_relative_to": "lambda_0", "grid": {"eta_trgt": [2.0, 8.0], "warmup_steps": [5]}}
    params = {
        "data": {"num_examples": 150},
        "model": {"kind": "fcn", "depth": 2, "width": 16},
        "training": {"steps": 40, "eval_every": 10},
        "sharpness": {"every": 5, "subset_size": 64},
        "tracking": {"log_every": 1},
        "executor": {"workers": 1},
        "methods": {f"m{i}": method for i in range(4)},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    cli = [sys.executable, "-m", "whywarmup.cli"]
    subprocess.run([*cli, "prepare"], cwd=tmp_path, env=env, check=True, capture_output=True)
    procs = [
        subprocess.Popen(
            [*cli, "train", "--method", f"m{i}", "--no-progress"],
            cwd=tmp_path,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("whywarmup")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    assert sorted(r.data.tags["whywarmup.role"] for r in runs) == ["grid_point"] * 8 + ["method"] * 4
    assert all(r.info.status == "FINISHED" for r in runs)
    points = 0
    for r in runs:
        if r.data.tags["whywarmup.role"] != "grid_point":
            continue
        method, key = r.data.tags["whywarmup.method"], r.data.tags["whywarmup.run_key"]
        traj = pd.read_parquet(tmp_path / "runs" / method / f"{key}.parquet")
        for name in ["loss", "lr", "sharpness", "stability_threshold", "lr_times_sharpness"]:
            history = client.get_metric_history(r.info.run_id, name)
            expected = traj[name].dropna()
            assert sorted(m.step for m in history) == sorted(traj.loc[expected.index, "step"]), (method, name)
            points += len(history)
    assert points > 8 * 40 * 2
