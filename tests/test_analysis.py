"""Analysis helpers on hand-made tables whose answers are known: the robust eta_trgt range, catapult_init against
linear pairing, the per-run catapult table, and the Fig.-1 trajectory panels (one per parametrization)."""

import math

import numpy as np
import pandas as pd
import pytest

from whywarmup.analysis import catapult_table, max_trainable, phase_diagram
from whywarmup.derived import critical_start_pairs, robust_range


def test_robust_range_is_the_span_within_one_point_of_the_best():
    acc = pd.Series({2.0: 0.950, 8.0: 0.975, 32.0: 0.981, 128.0: 0.990, 512.0: 0.985})
    assert robust_range(acc) == (32.0, 512.0)  # 0.981 >= 0.990 - 0.01; 0.975 is not
    assert robust_range(acc, within=0.05) == (2.0, 512.0)
    # a setting in between that falls short (or diverged: NaN) does not split the range
    assert robust_range(pd.Series({2.0: 0.99, 8.0: np.nan, 32.0: 0.95, 128.0: 0.985})) == (2.0, 128.0)
    assert all(math.isnan(v) for v in robust_range(pd.Series({2.0: np.nan})))


def _run(**kw) -> dict:
    base = {
        "optimizer": "sgd",
        "parametrization": "sp",
        "eta_relative_to": "lambda_0",
        "eta_trgt_setting": 8.0,
        "T_wrm": 64,
        "seed": 0,
        "failed": 0,
        "critical_lr_times_lambda_0": 3.1,
        "variant": "",
        "run_key": "k",
    }
    return {**base, **kw}


def test_catapult_init_is_paired_with_linear_at_the_same_cell_only():
    runs = pd.DataFrame(
        [
            _run(method="linear", kind="linear", warmup_steps_used=64.0, final_test_accuracy=0.97),
            _run(method="linear", kind="linear", T_wrm=256, warmup_steps_used=256.0, final_test_accuracy=0.98),
            _run(
                method="linear_mup",
                kind="linear",
                parametrization="mup",
                warmup_steps_used=64.0,
                final_test_accuracy=0.5,
            ),
            _run(method="catapult_init", kind="catapult_init", warmup_steps_used=40.0, final_test_accuracy=0.965),
        ]
    )
    pairs = critical_start_pairs(runs)
    assert len(pairs) == 1  # T_wrm 256 has no catapult_init run; the muP run is another parametrization
    row = pairs.iloc[0]
    assert row["steps_saved"] == 24.0 and row["accuracy_difference"] == pytest.approx(-0.005)
    assert row["method_control"] == "linear" and row["run_key_subject"] == row["run_key_control"] == "k"


def test_catapult_table_lists_each_event_with_the_sharpness_drop(tmp_path):
    (tmp_path / "runs" / "m").mkdir(parents=True)
    loss = [1.0, 0.5, 0.4, 0.6, 2.0, 0.9, 0.43, 0.3]
    sharp = [10.0, np.nan, np.nan, 9.0, np.nan, np.nan, np.nan, 4.0]
    pd.DataFrame({"step": range(8), "loss": loss, "sharpness": sharp}).to_parquet(tmp_path / "runs/m/k1.parquet")
    pd.DataFrame({"step": range(3), "loss": [1.0, 0.9, 0.8], "sharpness": np.nan}).to_parquet(
        tmp_path / "runs/m/k2.parquet"
    )
    runs = pd.DataFrame([_run(method="m", run_key=k, mlflow_run_id=f"id-{k}") for k in ("k1", "k2")])
    table = catapult_table(runs, tmp_path)
    assert len(table) == 1  # k2's loss only falls
    e = table.iloc[0]
    assert (e["run_key"], e["start"], e["peak"], e["end"]) == ("k1", 3, 4, 6)
    assert e["loss_peak_over_min"] == pytest.approx(5.0)
    # last measurement before the spike's first step (step 0: 10), first one at or after its end (step 7: 4)
    assert e["sharpness_after_over_before"] == pytest.approx(0.4)
    assert list(catapult_table(runs.iloc[1:], tmp_path).columns) == list(table.columns)


def test_trajectory_panels_one_per_parametrization():
    from whywarmup.analysis import add_axes, phase_diagram, trajectory_runs
    from whywarmup.config import parse_config

    lin = {"kind": "linear", "eta_relative_to": "lambda_0", "grid": {"eta_trgt": [2, 8], "warmup_steps": [16, 64]}}
    cfg = parse_config(
        {
            "methods": {
                "none": {"kind": "none", "eta_relative_to": "lambda_0", "grid": {"eta_trgt": [2, 8]}},
                "linear": lin,
                "linear_wide": lin,  # same parametrization: no panel of its own
                "linear_mup": {**lin, "overrides": {"model.parametrization": "mup"}},
            }
        }
    )
    rows = []
    for method in cfg.methods:
        for run in cfg.runs(method):
            t_wrm = getattr(run.method, "warmup_steps", 1)
            eta = run.method.eta_trgt
            rows.append(
                {
                    "method": method,
                    "kind": run.method.kind,
                    "optimizer": "sgd",
                    "parametrization": run.model.parametrization,
                    "eta_relative_to": "lambda_0",
                    "eta_trgt_setting": eta,
                    "eta_trgt": eta / 30,
                    "T_wrm": t_wrm,
                    "seed": 0,
                    "run_key": run.key,
                    # eta 8 diverges without warmup and with the muP 64-step warmup
                    "failed": int(eta == 8 and (t_wrm == 1 or (method == "linear_mup" and t_wrm == 64))),
                    "diverged": 0,
                    "final_test_accuracy": 0.9,
                    "final_val_accuracy": 0.9,
                    "final_train_accuracy": 0.95,
                    "final_train_loss": 0.1,
                }
            )
    runs = add_axes(cfg, pd.DataFrame(rows))
    assert list(runs["model.parametrization"].unique()) == ["sp", "mup"] and (runs["variant"] == "").all()
    chosen = trajectory_runs(cfg, runs, phase_diagram(runs))
    assert list(dict.fromkeys(chosen["panel"])) == ["linear", "linear_mup"]
    sp = chosen[chosen["panel"] == "linear"]
    # the smallest eta where the no-warmup control fails and a warmup trains (8), the no-warmup run first
    assert list(zip(sp["method"], sp["T_wrm"], sp["eta_trgt_setting"])) == [
        ("none", 1, 8.0),
        ("linear", 16, 8.0),
        ("linear", 64, 8.0),
    ]
    mup = chosen[chosen["panel"] == "linear_mup"]
    # no muP control: the largest eta the longest muP warmup trains (2; 8 failed at T_wrm 64)
    assert set(mup["parametrization"]) == {"mup"} and list(mup["T_wrm"]) == [16, 64]
    assert set(mup["eta_trgt_setting"]) == {2.0}


def test_phase_diagram_cells_average_the_seeds_that_trained_and_count_the_failures():
    rows = [
        # (eta, seed, diverged, failed, accuracy)
        (2.0, 0, 0, 0, 0.90),
        (2.0, 1, 0, 0, 0.92),
        (2.0, 2, 0, 0, 0.94),
        (8.0, 0, 0, 0, 0.96),
        (8.0, 1, 1, 1, math.nan),
        (8.0, 2, 0, 1, 0.10),  # failed to learn: not in the mean
        (32.0, 0, 1, 1, math.nan),
        (32.0, 1, 1, 1, math.nan),
        (32.0, 2, 0, 1, 0.11),
    ]
    runs = pd.DataFrame(
        [
            {
                "method": "m",
                "eta_trgt_setting": e,
                "T_wrm": 1,
                "seed": s,
                "diverged": d,
                "failed": f,
                "final_test_accuracy": a,
                # validation ranks the cells the other way round from test: the best is chosen on validation
                "final_val_accuracy": {2.0: 0.95, 8.0: 0.90}.get(e, math.nan) if not f else math.nan,
                "final_train_accuracy": 0.99 if not f else 0.1,
                "final_train_loss": 0.1,
                "eta_trgt": e,
                "eta_unit": "c",
                "variant": "",
            }
            for e, s, d, f, a in rows
        ]
    )
    phase = phase_diagram(runs).set_index("eta_trgt_setting")
    assert phase.loc[2.0, "final_test_accuracy"] == pytest.approx(0.92)
    assert phase.loc[2.0, "final_test_accuracy_sd"] == pytest.approx(0.02)
    assert phase.loc[8.0, "final_test_accuracy"] == pytest.approx(0.96)  # only the seed that trained
    assert list(phase["cell"]) == ["trained", "partial", "diverged"]
    assert list(phase["failed"]) == [0, 2, 3] and list(phase["diverged"]) == [0, 1, 2]
    assert list(phase["trainable"]) == [True, False, False] and (phase["seeds"] == 3).all()
    # the best setting is taken among cells where every seed trained: 2.0 (0.92), not the partial 8.0 (0.96)
    best = max_trainable(phase.reset_index()).iloc[0]
    assert (best["best_c"], best["max_trainable_c"]) == (2.0, 2.0)
    assert math.isnan(best["best_eta_trgt"]) and math.isnan(best["max_trainable_eta_trgt"])  # c is not absolute
    assert best["best_final_test_accuracy"] == pytest.approx(0.92) and best["max_trainable"] == "2"
    assert not best["max_trainable_is_lower_bound"]


def test_a_width_grid_is_never_pooled(tmp_path):
    """A grid over model.width gives one phase diagram per width with the right seed count, the width is a column
    of summary.csv and runs.csv, and claims pair runs of the same width only."""
    from whywarmup.claims import check_c4
    from whywarmup.config import config_axes, parse_config
    from whywarmup.report import build_report
    from whywarmup.robustness import pipeline_claims

    raw = {
        "data": {"dataset": "digits", "num_examples": 200},
        "model": {"kind": "fcn", "depth": 2, "width": 8},
        "training": {"steps": 12, "eval_every": 12},
        "sharpness": {"every": 6, "subset_size": 64, "critical_lr": {"enabled": False}},
        "executor": {"workers": 1},
        "methods": {
            "none": {"kind": "none", "eta_relative_to": "lambda_0", "grid": {"eta_trgt": [0.5, 1], "seed": [0, 1]}},
            "linear": {
                "kind": "linear",
                "eta_relative_to": "lambda_0",
                "warmup_steps": 4,
                "grid": {"eta_trgt": [0.5, 1], "model.width": [8, 16], "seed": [0, 1]},
            },
        },
    }
    cfg = parse_config(raw)
    assert config_axes(cfg) == ["model.width"]
    pipeline_claims(cfg, tmp_path)
    summary = pd.read_csv(tmp_path / "runs/linear/summary.csv")
    assert list(summary.columns[: summary.columns.get_loc("seed") + 2])[-2:] == ["seed", "model.width"]
    assert sorted(summary["model.width"]) == [8, 8, 8, 8, 16, 16, 16, 16]
    phase = pd.read_csv(tmp_path / "analysis/phase_diagram.csv").fillna({"variant": ""})
    linear = phase[phase["method"] == "linear"]
    assert sorted(linear["variant"].unique()) == ["model.width=16", "model.width=8"]
    assert len(linear) == 4 and (linear["seeds"] == 2).all()  # 2 widths x 2 eta_trgt, each cell 2 seeds
    assert (phase.loc[phase["method"] == "none", "variant"] == "").all()
    runs = pd.read_csv(tmp_path / "analysis/runs.csv")
    assert set(runs.loc[runs["method"] == "none", "model.width"]) == {8}
    # C4 pairs a width-16 warmup run with nothing: the no-warmup runs are width 8
    runs["model.width"] = runs["model.width"].astype(str)
    units = check_c4(runs, ("model.width",)).numbers["fixed_eta_units"]
    pooled = check_c4(runs).numbers["fixed_eta_units"]
    ok = runs[runs["failed"] == 0]
    base = set(zip(ok.loc[ok["method"] == "none", "seed"], ok.loc[ok["method"] == "none", "eta_trgt_setting"]))
    lin = ok[ok["method"] == "linear"]
    matched = [(s, e) in base for s, e in zip(lin["seed"], lin["eta_trgt_setting"])]
    assert units == sum(m for m, w in zip(matched, lin["model.width"]) if w == "8") and pooled == sum(matched)
    assert 0 < units < pooled
    trainable = pd.read_csv(tmp_path / "analysis/max_trainable_lr.csv")
    assert len(trainable[trainable["method"] == "linear"]) == 2  # one row per width
    build_report(cfg, tmp_path, log_to_mlflow=False)
    assert "model.width=16" in (tmp_path / "reports/report.md").read_text()


def test_failure_rule_chance_level_and_far_below_the_best_of_the_method():
    from whywarmup.derived import apply_failure_rule

    rows = [  # (method, eta, seed, diverged, final train accuracy)
        ("a", 2.0, 0, 0, 1.00),
        ("a", 2.0, 1, 0, 0.98),  # cell mean 0.99: the best of method a
        ("a", 8.0, 0, 0, 0.90),  # 0.09 below the best: trained
        ("a", 8.0, 1, 0, 0.88),  # 0.11 below: failed to learn
        ("a", 32.0, 0, 0, 0.12),  # below chance (1.5 / 10)
        ("a", 32.0, 1, 1, np.nan),  # diverged
        ("b", 2.0, 0, 0, 0.60),  # method b's own best is 0.60: 0.55 is within 10 points of it
        ("b", 8.0, 0, 0, 0.55),
    ]
    runs = pd.DataFrame(
        [
            {"method": m, "variant": "", "eta_trgt_setting": e, "T_wrm": 1, "seed": s, "diverged": d}
            | {"final_train_accuracy": acc, "num_classes": 10, "failed": d}
            for m, e, s, d, acc in rows
        ]
    )
    out = apply_failure_rule(runs)
    assert list(out["failure"]) == ["", "", "", "below_best", "chance", "diverged", "", ""]
    assert list(out["failed"]) == [0, 0, 0, 1, 1, 1, 0, 0]
    assert list(out["failed_in_training"]) == [0, 0, 0, 0, 0, 1, 0, 0]


def test_largest_trainable_at_the_top_of_the_grid_is_a_lower_bound():
    from whywarmup.derived import compare_largest, format_largest, largest_trainable

    cells = pd.DataFrame(
        {
            "T_wrm": [1, 1, 1, 64, 64, 64, 256, 256, 256],
            "eta_trgt_setting": [2.0, 8.0, 32.0] * 3,
            "trainable": [True, True, False, True, True, True, False, False, False],
        }
    )
    table = largest_trainable(cells, ["T_wrm"]).set_index("T_wrm")
    assert table.loc[1, "max_trainable"] == 8.0 and not table.loc[1, "max_trainable_is_lower_bound"]
    assert table.loc[64, "max_trainable"] == 32.0 and table.loc[64, "max_trainable_is_lower_bound"]
    assert math.isnan(table.loc[256, "max_trainable"])
    assert format_largest(32.0, True) == ">= 32" and format_largest(8.0, False) == "8"
    assert format_largest(math.nan, False) == "none"
    assert compare_largest(8.0, 32.0) == 1 and compare_largest(32.0, 8.0) == -1
    assert compare_largest(32.0, 32.0) == 0  # two lower bounds at the top: undecided
    assert compare_largest(math.nan, 2.0) == 1 and compare_largest(2.0, math.nan) == -1


def test_headline_keeps_units_and_parametrizations_apart():
    """An SGD grid in c and another in absolute learning rates get one headline block each (never one max over
    both), and each block says its unit; the SP and muP blocks are separate."""
    from whywarmup.analysis import add_axes, headline_metrics, method_table, phase_diagram
    from whywarmup.config import parse_config

    cfg = parse_config(
        {
            "methods": {
                "rel": {"kind": "none", "eta_relative_to": "lambda_0", "grid": {"eta_trgt": [2, 512]}},
                "abs": {"kind": "none", "grid": {"eta_trgt": [0.5, 1.0]}},
                "mup": {"kind": "none", "overrides": {"model.parametrization": "mup"}, "grid": {"eta_trgt": [0.5]}},
            }
        }
    )
    rows = []
    for method in cfg.methods:
        for run in cfg.runs(method):
            eta = run.method.eta_trgt
            rows.append(
                {"method": method, "kind": "none", "optimizer": "sgd", "parametrization": run.model.parametrization}
                | {"eta_relative_to": run.method.eta_relative_to, "eta_trgt_setting": eta, "eta_trgt": eta}
                | {"T_wrm": 1, "seed": 0, "run_key": run.key, "failed": int(eta == 512), "diverged": 0}
                | {"final_test_accuracy": 0.9, "final_val_accuracy": 0.9, "final_train_accuracy": 0.95}
                | {"final_train_loss": 0.1, "lambda_0": 20.0, "warmup_steps_used": 1.0, "warmup_steps_saved": np.nan}
            )
    runs = add_axes(cfg, pd.DataFrame(rows))
    phase = phase_diagram(runs)
    head = headline_metrics(cfg, runs, phase, max_trainable(phase), method_table(runs, phase))["headline"]
    assert set(head) == {"seeds", "runs", "sgd_sp_c", "sgd_sp_absolute", "sgd_mup"}
    assert head["sgd_sp_c"]["largest_trainable_c_without_warmup"] == 2.0  # 512 failed
    assert head["sgd_sp_absolute"]["largest_trainable_eta_trgt_without_warmup"] == 1.0
    assert head["sgd_sp_absolute"]["largest_trainable_without_warmup_is_lower_bound"]
    assert head["sgd_mup"]["eta_unit"] == "absolute"
