"""Claim checks on synthetic runs tables whose verdict is known, and the trajectory statistics on hand-made series."""

import math

import numpy as np
import pandas as pd
import pytest

from whywarmup.claims import (
    CONTRADICTED,
    INCONCLUSIVE,
    SUPPORTED,
    check_c1,
    check_c2,
    check_c3,
    check_c4,
    check_c5,
    check_c6,
    check_c7,
)
from whywarmup.run_stats import (
    detect_catapults,
    edge_of_stability_fraction,
    run_statistics,
    sharpness_regime,
    threshold_following,
)

DEFAULTS = {
    "method": "m",
    "kind": "linear",
    "optimizer": "sgd",
    "eta_trgt_setting": 8.0,
    "eta_trgt_times_lambda_0": 8.0,
    "T_wrm": 64,
    "seed": 0,
    "failed": 0,
    "final_test_accuracy": 0.95,
    "warmup_steps_used": 64.0,
    "parametrization": "sp",
    "v_bias_correction": None,
    "sharpness_end_of_warmup_over_lambda_0": 0.5,
    "max_sharpness_during_warmup_over_lambda_0": 1.0,
    "eos_fraction_during_warmup": 0.0,
    "sharpness_regime": "reduction",
    "lr_times_sharpness_after_reaching_over_c": math.nan,
    "initial_preconditioned_sharpness": math.nan,
}


def table(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame([{**DEFAULTS, **r} for r in rows])


def phase(largest: dict[int, float], grid=(2.0, 8.0, 32.0, 128.0)) -> list[dict]:
    """SGD none (T_wrm 1) / linear runs trainable up to largest[T_wrm]."""
    return [
        {"kind": "none" if t == 1 else "linear", "T_wrm": t, "eta_trgt_setting": e, "failed": int(e > top)}
        for t, top in largest.items()
        for e in grid
    ]


def test_c1():
    assert check_c1(table(*phase({1: 8, 16: 32, 64: 128}))).verdict == SUPPORTED
    assert check_c1(table(*phase({1: 8, 16: 32, 64: 8}))).verdict == CONTRADICTED
    missing = check_c1(table(*phase({1: 8})))
    assert missing.verdict == INCONCLUSIVE and "warmup_steps" in missing.to_decide
    edge = check_c1(table(*phase({1: 128, 64: 128})))
    assert edge.verdict == INCONCLUSIVE and "upwards" in edge.to_decide


def test_c2():
    sp_up = {"sharpness_regime": "sharpening", "lr_times_sharpness_after_reaching_over_c": 1.1}
    sp_down = {"sharpness_regime": "reduction"}
    mup_down = {"parametrization": "mup", "sharpness_regime": "reduction"}
    mup_up = {**sp_up, "parametrization": "mup"}
    assert check_c2(table(sp_up, sp_up, mup_down)).verdict == SUPPORTED
    # SP sharpens but overshoots the threshold instead of following it (median lr * sharpness = 3 c)
    overshoot = {**sp_up, "lr_times_sharpness_after_reaching_over_c": 3.0}
    assert check_c2(table(overshoot, overshoot, mup_down)).verdict == CONTRADICTED
    swapped = check_c2(table(sp_down, sp_down, mup_up, mup_up))
    assert swapped.verdict == CONTRADICTED and "other way round" in swapped.finding
    assert swapped.numbers["sp_reduction"] == 2 and swapped.numbers["mup_sharpening_and_following_threshold"] == 2
    mixed = check_c2(table(sp_up, sp_up, sp_up, sp_down, sp_down, mup_down))  # 3 of 5 SP runs: between 50 and 80%
    assert mixed.verdict == INCONCLUSIVE and "sharpness.every" in mixed.to_decide
    missing = check_c2(table(sp_up, sp_up))
    assert missing.verdict == INCONCLUSIVE and "model.parametrization: mup" in missing.to_decide


def test_c3():
    big = {"eta_trgt_times_lambda_0": 32}
    assert check_c3(table(*[{**big, "sharpness_end_of_warmup_over_lambda_0": 0.2}] * 5)).verdict == SUPPORTED
    assert check_c3(table(*[{**big, "sharpness_end_of_warmup_over_lambda_0": 1.4}] * 5)).verdict == CONTRADICTED
    # only runs below 2/lambda_0 or without warmup: no evidence
    small = table({"eta_trgt_times_lambda_0": 1}, {**big, "T_wrm": 1})
    assert check_c3(small).verdict == INCONCLUSIVE


def test_c4():
    base = [{"kind": "none", "T_wrm": 1, "eta_trgt_setting": e, "final_test_accuracy": 0.95} for e in (2, 8)]
    base.append({"kind": "none", "T_wrm": 1, "eta_trgt_setting": 32, "failed": 1})
    close = [{"T_wrm": 64, "eta_trgt_setting": e, "final_test_accuracy": 0.953} for e in (2, 8)]
    better = [{"T_wrm": 64, "eta_trgt_setting": 32, "final_test_accuracy": 0.97}]
    assert check_c4(table(*base, *close, *better)).verdict == SUPPORTED
    far = [{"T_wrm": 64, "eta_trgt_setting": e, "final_test_accuracy": 0.90} for e in (2, 8)]
    assert check_c4(table(*base, *far)).verdict == CONTRADICTED
    assert check_c4(table(*close)).verdict == INCONCLUSIVE
    # a muP warmup run is not paired with the SP baseline at the same eta setting
    mup = [{"T_wrm": 64, "eta_trgt_setting": 8, "final_test_accuracy": 0.5, "parametrization": "mup"}]
    res = check_c4(table(*base, *close, *better, *mup))
    assert res.verdict == SUPPORTED and res.numbers["paired_cells"] == 2


def test_c5():
    lin = [{"kind": "linear", "eta_trgt_setting": e, "warmup_steps_used": 64.0} for e in (8, 32)]
    cat = [{"kind": "catapult_init", "eta_trgt_setting": e, "warmup_steps_used": 40.0} for e in (8, 32)]
    assert check_c5(table(*lin, *cat)).verdict == SUPPORTED
    slow = [{**c, "warmup_steps_used": 64.0} for c in cat]
    assert check_c5(table(*lin, *slow)).verdict == CONTRADICTED
    worse = [{**c, "final_test_accuracy": 0.80} for c in cat]
    assert check_c5(table(*lin, *worse)).verdict == CONTRADICTED
    assert check_c5(table(*lin)).verdict == INCONCLUSIVE


def _adam(kind, optimizer, largest, p0, bc=None):
    return [
        {
            "kind": kind,
            "optimizer": optimizer,
            "T_wrm": 1,
            "eta_trgt_setting": e,
            "failed": int(e > largest),
            "initial_preconditioned_sharpness": p0,
            "v_bias_correction": bc,
        }
        for e in (0.002, 0.008, 0.032, 0.128)
    ]


def test_c6():
    adam = _adam("none", "adam", 0.008, 1000.0)
    assert check_c6(table(*adam, *_adam("gi_adam", "gi_adam", 0.128, 30.0, True))).verdict == SUPPORTED
    assert check_c6(table(*adam, *_adam("gi_adam", "gi_adam", 0.002, 30.0, True))).verdict == CONTRADICTED
    # only the no-correction reading, which is worse: the claim (about the released code) has no evidence
    only_seed = check_c6(table(*adam, *_adam("gi_adam", "gi_adam", 0.002, 1000.0, False)))
    assert only_seed.verdict == INCONCLUSIVE and "gi_adam" in only_seed.to_decide
    top = check_c6(table(*_adam("none", "adam", 0.128, 1000.0), *_adam("gi_adam", "gi_adam", 0.128, 30.0, True)))
    assert top.verdict == INCONCLUSIVE and "upwards" in top.to_decide


def test_c7():
    lin = [
        {"kind": "linear", "eta_trgt_setting": 8, "T_wrm": t, "final_test_accuracy": a}
        for t, a in ((16, 0.9), (64, 0.95))
    ]
    pc = {"kind": "persistent_catapult", "T_wrm": 0, "eta_trgt_setting": 8, "warmup_steps_used": 40.0}
    assert check_c7(table(*lin, {**pc, "final_test_accuracy": 0.948})).verdict == SUPPORTED
    assert check_c7(table(*lin, {**pc, "final_test_accuracy": 0.90})).verdict == CONTRADICTED
    assert (
        check_c7(table(*lin, {**pc, "warmup_steps_used": math.nan, "final_test_accuracy": 0.95})).verdict
        == CONTRADICTED
    )
    assert check_c7(table(*lin)).verdict == INCONCLUSIVE


def test_catapult_detector_on_a_hand_made_series():
    loss = [1.0, 0.5, 0.4, 0.6, 2.0, 0.9, 0.43, 0.3, 0.35, 0.2, 5.0, 50.0]
    sharp = [10, np.nan, np.nan, 9, np.nan, np.nan, np.nan, 4, np.nan, np.nan, np.nan, np.nan]
    events = detect_catapults(range(len(loss)), loss, sharp, rise=0.1)
    # 0.6 > 1.1 * 0.4 starts a spike that peaks at 2.0 and is back at 0.43 <= 0.44; 0.35 > 0.33 is a small one
    # that comes back at 0.2; the final rise to 50 never comes back (divergence).
    assert [(e.start, e.peak, e.end) for e in events] == [(3, 4, 6), (8, 8, 9)]
    assert events[0].peak_ratio == pytest.approx(5.0)
    assert events[0].sharpness_before == 10 and events[0].sharpness_after == 4
    assert math.isnan(events[1].sharpness_after)
    assert detect_catapults(range(4), [1.0, 0.9, 0.8, 0.7]) == []


def test_edge_of_stability_fraction_and_run_statistics():
    assert edge_of_stability_fraction([1.0, 1.85, 2.1, 2.25, np.nan], 2.0) == pytest.approx(0.5)
    assert math.isnan(edge_of_stability_fraction([np.nan], 2.0))
    traj = pd.DataFrame(
        {
            "step": [0, 1, 2, 3, 4],
            "lr": [0.05, 0.1, 0.15, 0.2, np.nan],
            "loss": [1.0, 0.8, 0.9, 0.5, 0.4],
            "sharpness": [10.0, 12.0, 13.0, 9.0, 8.0],
        }
    )
    traj["stability_threshold"] = 2 / traj["lr"]
    traj["lr_times_sharpness"] = traj["lr"] * traj["sharpness"]
    s = run_statistics(traj, warmup_steps_used=3)
    assert s["threshold_constant"] == pytest.approx(2.0)
    assert s["sharpness_end_of_warmup_over_lambda_0"] == pytest.approx(0.9)  # row 3: after the 3rd update
    assert s["max_sharpness_during_warmup_over_lambda_0"] == pytest.approx(1.3)
    assert s["eos_fraction_during_warmup"] == pytest.approx(1 / 3)  # rows 0-2: 0.5, 1.2, 1.95
    assert s["max_lr_times_sharpness"] == pytest.approx(1.95)
    assert s["catapult_events"] == 1  # 0.9 > 1.1 x 0.8, back to 0.5 at the next step


def test_sharpness_regime_and_threshold_following():
    assert sharpness_regime(2.2, 0.5) == "sharpening"  # rose to 2.2 lambda_0 during warmup
    assert sharpness_regime(1.0, 0.6) == "reduction"
    assert sharpness_regime(1.05, 1.02) == "unclear"
    assert sharpness_regime(math.nan, math.nan) == "unclear"
    # c = 2: reaches 1.8 (>= 0.9 c) at the third measurement, then 2.0, 2.4, nan, 2.2 -> median of 0.9, 1, 1.2, 1.1
    index, median = threshold_following([0.5, 1.0, 1.8, 2.0, 2.4, np.nan, 2.2], 2.0)
    assert index == 2 and median == pytest.approx(1.05)
    assert all(math.isnan(v) for v in threshold_following([0.5, 1.0], 2.0))
