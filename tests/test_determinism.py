"""The same params give bitwise-identical results on the CPU in two fresh processes."""

import os
import subprocess
import sys

import pandas as pd
import yaml


def test_same_params_same_bits_in_two_fresh_processes(tmp_path):
    params = {
        "data": {"num_examples": 200},
        "model": {"kind": "fcn", "depth": 3, "width": 32},
        "training": {"steps": 40, "eval_every": 20},
        "sharpness": {"every": 5, "subset_size": 64},
        "executor": {"workers": 1},
        "methods": {
            "m": {
                "kind": "catapult_init",
                "eta_relative_to": "lambda_0",
                "warmup_steps": 20,
                "grid": {"eta_trgt": [8.0, 64.0]},
            }
        },
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    cli = [sys.executable, "-m", "whywarmup.cli"]
    results = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "params.yaml").write_text(yaml.safe_dump(params))
        for stage in (["prepare"], ["train", "--method", "m", "--no-progress"]):
            subprocess.run([*cli, *stage], cwd=folder, env=env, check=True, capture_output=True)
        summary = pd.read_csv(folder / "runs" / "m" / "summary.csv")
        trajectories = {k: pd.read_parquet(folder / "runs" / "m" / f"{k}.parquet") for k in summary["run_key"]}
        assert not {"wall_time_s", "mlflow_run_id"} & set(summary.columns)  # those live outside DVC's outputs
        results.append((summary, trajectories))
    (sa, ta), (sb, tb) = results
    pd.testing.assert_frame_equal(sa, sb, check_exact=True)
    assert ta.keys() == tb.keys() and len(ta) == 2
    for key in ta:
        pd.testing.assert_frame_equal(ta[key], tb[key], check_exact=True)
    assert sa["final_test_accuracy"].notna().any()  # something was trained, not two empty tables
