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
    "run_key": "k",
    "kind": "linear",
    "optimizer": "sgd",
    "eta_relative_to": "lambda_0",
    "eta_trgt_setting": 8.0,
    "eta_trgt_times_lambda_0": 8.0,
    "T_wrm": 64,
    "seed": 0,
    "failed": 0,
    "diverged": 0,
    "final_test_accuracy": 0.95,
    "final_train_accuracy": 0.99,
    "warmup_steps_used": 64.0,
    "parametrization": "sp",
    "v_bias_correction": None,
    "sharpness_end_of_warmup_over_lambda_0": 0.5,
    "sharpness_end_of_warmup_over_threshold": 0.9,
    "sharpness_end_of_warmup": 5.0,
    "sharpness_last": 5.0,
    "max_sharpness_during_warmup_over_lambda_0": 1.0,
    "eos_fraction_during_warmup": 0.0,
    "sharpness_regime": "reduction",
    "lr_times_sharpness_after_reaching_over_c": math.nan,
    "initial_preconditioned_sharpness": math.nan,
}


def table(*rows: dict, seeds=(0, 1, 2), noise: float = 0.002) -> pd.DataFrame:
    """Each row once per seed. Accuracies are moved by noise x (-1, 0, +1), a permutation that depends on the row, so
    each cell's seed-to-seed standard deviation is exactly `noise` (3 seeds) and paired differences vary."""
    n = len(seeds)
    out = []
    for i, s in enumerate(seeds):
        for j, r in enumerate(rows):
            row = {**DEFAULTS, **r, "seed": s}
            row["final_test_accuracy"] += noise * ((i + j) % n - (n - 1) / 2)
            row.setdefault("final_val_accuracy", row["final_test_accuracy"])  # validation ranks as test does
            out.append(row)
    return pd.DataFrame(out)


def phase(largest: dict[int, float], grid=(2.0, 8.0, 32.0, 128.0)) -> list[dict]:
    """SGD none (T_wrm 1) / linear runs trainable up to largest[T_wrm]."""
    return [
        {"kind": "none" if t == 1 else "linear", "T_wrm": t, "eta_trgt_setting": e, "failed": int(e > top)}
        for t, top in largest.items()
        for e in grid
    ]


def test_c1():
    res = check_c1(table(*phase({1: 8, 16: 32, 64: 128})))
    # 2 steps of T_wrm x 3 seeds, all growing: one-sided sign test p = 1/64
    assert res.verdict == SUPPORTED and res.numbers["growth_agree"] == 6
    assert res.numbers["growth_p_agree"] == pytest.approx(1 / 64)
    assert res.per_seed == {0: SUPPORTED, 1: SUPPORTED, 2: SUPPORTED}
    assert "6 of 6" in res.statistic and "3 seeds" in res.statistic
    assert check_c1(table(*phase({1: 128, 16: 32, 64: 8}))).verdict == CONTRADICTED
    # one seed alone never decides the pooled verdict, however clear
    single = check_c1(table(*phase({1: 8, 16: 32, 64: 128}), seeds=(0,)))
    assert single.verdict == INCONCLUSIVE and single.per_seed == {0: SUPPORTED} and "seed" in single.to_decide
    missing = check_c1(table(*phase({1: 8})))
    assert missing.verdict == INCONCLUSIVE and "warmup_steps" in missing.to_decide
    edge = check_c1(table(*phase({1: 128, 64: 128})))
    assert edge.verdict == INCONCLUSIVE and "upwards" in edge.to_decide


def test_c1_mixed_seeds_are_inconclusive():
    # seed 0 grows, seed 1 shrinks, seed 2 grows at one step and ties at the other (ties do not count): 3 up,
    # 2 down -> p = 0.5
    rows = [
        *table(*phase({1: 8, 16: 32, 64: 128}), seeds=(0,)).to_dict("records"),
        *table(*phase({1: 128, 16: 32, 64: 8}), seeds=(1,)).to_dict("records"),
        *table(*phase({1: 8, 16: 32, 64: 32}), seeds=(2,)).to_dict("records"),
    ]
    res = check_c1(pd.DataFrame(rows))
    assert res.verdict == INCONCLUSIVE
    assert res.per_seed == {0: SUPPORTED, 1: CONTRADICTED, 2: SUPPORTED}
    assert res.numbers["growth_p_agree"] == pytest.approx(0.5)


def test_c2():
    """The corrected statement: SP reduces the sharpness, muP sharpens and then follows the threshold."""
    sp_down = {"sharpness_regime": "reduction"}
    mup_up = {
        "parametrization": "mup",
        "sharpness_regime": "sharpening",
        "lr_times_sharpness_after_reaching_over_c": 1.1,
    }
    res = check_c2(table(sp_down, sp_down, mup_up, mup_up))
    assert res.verdict == SUPPORTED and res.numbers["sp_reduction"] == 6
    assert res.numbers["mup_sharpening_and_following_threshold"] == 6
    # the old (swapped) pairing is now contradicted
    sp_up = {"sharpness_regime": "sharpening", "lr_times_sharpness_after_reaching_over_c": 1.1}
    mup_down = {"parametrization": "mup", "sharpness_regime": "reduction"}
    assert check_c2(table(sp_up, sp_up, mup_down, mup_down)).verdict == CONTRADICTED
    # muP sharpens but overshoots the threshold instead of following it (median lr * sharpness = 3 c)
    overshoot = {**mup_up, "lr_times_sharpness_after_reaching_over_c": 3.0}
    assert check_c2(table(sp_down, sp_down, overshoot, overshoot)).verdict == CONTRADICTED
    # 3 of 5 SP runs per seed reduce: 9 of 15 pooled, p = 0.3
    mixed = check_c2(table(sp_down, sp_down, sp_down, sp_up, sp_up, mup_up, mup_up))
    assert mixed.verdict == INCONCLUSIVE and "seed" in mixed.to_decide
    missing = check_c2(table(sp_down, sp_down))
    assert missing.verdict == INCONCLUSIVE and "model.parametrization: mup" in missing.to_decide


def test_c3():
    """(a) the warmup brings the sharpness under the threshold eta_trgt needs; (b) below the sharpness at which the
    same run without warmup diverged."""
    big = {"eta_trgt_times_lambda_0": 32, "eta_trgt_setting": 32.0}
    twin = {**big, "kind": "none", "T_wrm": 1, "diverged": 1, "failed": 1, "sharpness_last": 40.0}
    under = {**big, "sharpness_end_of_warmup_over_threshold": 0.95, "sharpness_end_of_warmup": 3.0}
    res = check_c3(table(twin, under, {**under, "T_wrm": 16}))
    assert res.verdict == SUPPORTED, res.statistic
    assert res.numbers["under_threshold_agree"] == 6 and res.numbers["below_control_agree"] == 6
    # warmups too short: they end over the threshold (a catapult at eta_trgt does the reduction later)
    over = {**under, "sharpness_end_of_warmup_over_threshold": 1.5}
    assert check_c3(table(twin, over, {**over, "T_wrm": 16})).verdict == CONTRADICTED
    # ... or end warmup sharper than the no-warmup run was when it blew up
    sharp = {**under, "sharpness_end_of_warmup": 60.0}
    assert check_c3(table(twin, sharp, {**sharp, "T_wrm": 16})).verdict == CONTRADICTED
    # no no-warmup run that diverged at that eta_trgt: no control, no verdict
    stable = {**twin, "diverged": 0, "failed": 0}
    res = check_c3(table(stable, under, {**under, "T_wrm": 16}))
    assert res.verdict == INCONCLUSIVE and "kind: none" in res.to_decide
    # only runs below 2/lambda_0 or without warmup: no evidence
    small = table({"eta_trgt_times_lambda_0": 1}, {**big, "T_wrm": 1})
    assert check_c3(small).verdict == INCONCLUSIVE


def _c4_rows(warm_accuracy: float, best: float) -> list[dict]:
    base = [{"kind": "none", "T_wrm": 1, "eta_trgt_setting": e, "final_test_accuracy": 0.95} for e in (2, 8)]
    base.append({"kind": "none", "T_wrm": 1, "eta_trgt_setting": 32, "failed": 1})
    warm = [{"T_wrm": t, "eta_trgt_setting": e, "final_test_accuracy": warm_accuracy} for e in (2, 8) for t in (16, 64)]
    return base + warm + [{"T_wrm": 64, "eta_trgt_setting": 32, "final_test_accuracy": best}]


def test_c4_equivalence_against_the_seed_spread():
    # seed-to-seed sd of 1 point; warmup moves accuracy by 0.1 point: inside +-1 sd with 95% confidence
    res = check_c4(table(*_c4_rows(0.951, 0.99), noise=0.01))
    assert res.numbers["seed_spread_accuracy"] == pytest.approx(0.01)
    assert res.verdict == SUPPORTED, res.statistic
    assert res.numbers["fixed_eta_units"] == 12 and res.numbers["best_gain_units"] == 3
    # the same 0.1-point change is NOT small when the seeds agree to 0.01 points: contradicted
    tight = check_c4(table(*_c4_rows(0.951, 0.99), noise=0.0001))
    assert tight.verdict == CONTRADICTED
    # warmup 5 points worse at fixed eta_trgt
    assert check_c4(table(*_c4_rows(0.90, 0.97), noise=0.01)).verdict == CONTRADICTED
    # the newly usable eta_trgt is worse than the best without warmup: the best does not improve
    assert check_c4(table(*_c4_rows(0.951, 0.90), noise=0.01)).verdict == CONTRADICTED
    assert check_c4(table(*_c4_rows(0.951, 0.99)[3:])).verdict == INCONCLUSIVE
    # a muP warmup run is not paired with the SP baseline at the same eta setting
    mup = [{"T_wrm": 64, "eta_trgt_setting": 8, "final_test_accuracy": 0.5, "parametrization": "mup"}]
    res = check_c4(table(*_c4_rows(0.951, 0.99), *mup, noise=0.01))
    assert res.verdict == SUPPORTED and res.numbers["paired_cells"] == 4


def test_c5():
    """Fewer steps holds by construction, so it is measured, not tested; the claim can fail on failures and
    accuracy."""
    etas = (2, 8, 32, 128)
    lin = [{"kind": "linear", "eta_trgt_setting": e, "warmup_steps_used": 64.0} for e in etas]
    cat = [{"kind": "catapult_init", "eta_trgt_setting": e, "warmup_steps_used": 40.0} for e in etas]
    res = check_c5(table(*lin, *cat, noise=0.01))
    assert res.verdict == SUPPORTED, res.statistic
    assert res.numbers["failure_rate_units"] == 3 and res.numbers["failure_rate_upper"] == 0.0
    assert res.numbers["median_steps_saved"] == 24 and res.numbers["pairs_without_warmup_needed"] == 0
    assert "Steps saved (measured, not tested" in res.finding
    # taking more steps is reported, but it is not what the check decides on
    slow = check_c5(table(*lin, *[{**c, "warmup_steps_used": 80.0} for c in cat], noise=0.01))
    assert slow.verdict == SUPPORTED and slow.numbers["median_steps_saved"] == -16
    worse = [{**c, "final_test_accuracy": 0.80} for c in cat]
    assert check_c5(table(*lin, *worse, noise=0.01)).verdict == CONTRADICTED
    # starting at eta_c makes it fail where linear trains, in half of the cells
    fails = [{**c, "failed": int(c["eta_trgt_setting"] >= 32)} for c in cat]
    res = check_c5(table(*lin, *fails, noise=0.01))
    assert res.verdict == CONTRADICTED and res.numbers["pairs_only_catapult_init_failed"] == 6
    assert check_c5(table(*lin)).verdict == INCONCLUSIVE


def _adam(kind, optimizer, largest, p0, bc=None, grid=(0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128)):
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
        for e in grid
    ]


def test_c6():
    adam = _adam("none", "adam", 0.008, 1000.0)
    res = check_c6(table(*adam, *_adam("gi_adam", "gi_adam", 0.128, 30.0, True)))
    assert res.verdict == SUPPORTED
    assert res.numbers["larger_eta_agree"] == 12 and res.numbers["doublings_gained_median"] == 4
    assert res.numbers["adam_over_gi_initial_preconditioned_sharpness"] == pytest.approx(1000 / 30)
    assert check_c6(table(*adam, *_adam("gi_adam", "gi_adam", 0.002, 30.0, True))).verdict == CONTRADICTED
    # GI-Adam trains further but its preconditioned sharpness is only 1.5x smaller: not "much smaller"
    assert check_c6(table(*adam, *_adam("gi_adam", "gi_adam", 0.128, 700.0, True))).verdict == CONTRADICTED
    # only the no-correction reading, which is worse: the claim (about the released code) has no evidence
    only_seed = check_c6(table(*adam, *_adam("gi_adam", "gi_adam", 0.002, 1000.0, False)))
    assert only_seed.verdict == INCONCLUSIVE and "gi_adam" in only_seed.to_decide
    # no eta_trgt in common: no cell to compare, so the second part cannot decide
    apart = check_c6(table(*adam, *_adam("gi_adam", "gi_adam", 1.0, 30.0, True, grid=(0.5, 1.0))))
    assert apart.verdict == INCONCLUSIVE and apart.numbers["larger_eta_units"] == 0
    top = check_c6(table(*_adam("none", "adam", 0.128, 1000.0), *_adam("gi_adam", "gi_adam", 0.128, 30.0, True)))
    assert top.verdict == INCONCLUSIVE and "upwards" in top.to_decide


def test_c7():
    lin = [
        {"kind": "linear", "eta_trgt_setting": e, "T_wrm": t, "final_test_accuracy": a}
        for t, a in ((16, 0.9), (64, 0.95))
        for e in (2, 8, 32, 128)
    ]
    pc = [
        {"kind": "persistent_catapult", "T_wrm": 0, "eta_trgt_setting": e, "warmup_steps_used": 40.0}
        for e in (2, 8, 32, 128)
    ]
    res = check_c7(table(*lin, *[{**p, "final_test_accuracy": 0.948} for p in pc], noise=0.01))
    assert res.verdict == SUPPORTED, res.statistic
    assert check_c7(table(*lin, *[{**p, "final_test_accuracy": 0.90} for p in pc], noise=0.01)).verdict == CONTRADICTED
    never = [{**p, "warmup_steps_used": math.nan, "final_test_accuracy": 0.95} for p in pc]
    assert check_c7(table(*lin, *never, noise=0.01)).verdict == CONTRADICTED
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
    # a dead network (every ReLU off) has a zero Hessian: the sharpness ratio is undefined, not a crash
    dead = detect_catapults(range(4), [1.0, 0.5, 2.0, 0.4], [0.0, 0.0, np.nan, 0.0])
    assert len(dead) == 1 and math.isnan(dead[0].sharpness_ratio)
    assert math.isnan(
        run_statistics(
            pd.DataFrame(
                {
                    "step": range(4),
                    "loss": [1.0, 0.5, 2.0, 0.4],
                    "sharpness": [0.0, 0.0, np.nan, 0.0],
                    "lr": [0.1] * 4,
                    "stability_threshold": [20.0] * 4,
                }
            ),
            1.0,
        )["catapult_sharpness_drop_median"]
    )


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


def test_every_step_critical_sharpness_drives_the_edge_of_stability_statistics():
    """With lambda_c at every step, the eos fraction and threshold following read lr x lambda_c / 2 at every step; the
    Lanczos steps' values stay under *_lanczos; catapults carry lambda_c at the step before the spike and at its end.
    Without it at every step (a cadence of 2), the Lanczos values are used."""
    traj = pd.DataFrame(
        {
            "step": range(7),
            "lr": [0.1, 0.2, 0.3, 0.4, 0.4, 0.4, np.nan],
            "loss": [1.0, 0.8, 0.9, 0.6, 0.5, 0.45, 0.4],
            "sharpness": [10.0, np.nan, np.nan, 6.0, np.nan, np.nan, 5.0],
            "critical_sharpness": [2.0, 4.0, 6.5, 5.0, 5.2, 4.5, np.nan],
        }
    )
    traj["stability_threshold"] = 2 / traj["lr"]
    traj["lr_times_sharpness"] = traj["lr"] * traj["sharpness"]
    traj["lr_times_critical_sharpness"] = traj["lr"] * traj["critical_sharpness"]
    s = run_statistics(traj, warmup_steps_used=4)
    assert s["curvature_every_step"] == 1.0
    # lr x lambda_c / 2 = 0.1, 0.4, 0.975, 1.0, 1.04, 0.9: during warmup (rows 0-3) 2 of 4 within 10% of 1
    assert s["eos_fraction_during_warmup"] == pytest.approx(0.5)
    assert s["eos_fraction_during_warmup_lanczos"] == pytest.approx(0.0)  # rows 0 and 3: 0.5 and 1.2
    assert s["lr_times_sharpness_after_reaching_over_c"] == pytest.approx(np.median([0.975, 1.0, 1.04, 0.9]))
    assert s["lr_times_sharpness_after_reaching_over_c_lanczos"] == pytest.approx(1.2)  # reached at row 3: 1.2
    (event,) = detect_catapults(traj["step"], traj["loss"], traj["sharpness"], critical=traj["critical_sharpness"])
    assert (event.start, event.end) == (2, 3) and event.critical_before == 4.0 and event.critical_after == 5.0
    assert event.sharpness_before == 10.0 and event.sharpness_after == 6.0
    assert s["catapult_critical_sharpness_drop_median"] == pytest.approx(1.25)
    sparse = traj.assign(critical_sharpness=[2.0, np.nan, 6.5, np.nan, 5.2, np.nan, np.nan])
    s = run_statistics(sparse, warmup_steps_used=4)
    assert s["curvature_every_step"] == 0.0
    assert s["eos_fraction_during_warmup"] == s["eos_fraction_during_warmup_lanczos"] == 0.0


def test_sharpness_regime_and_threshold_following():
    assert sharpness_regime(2.2, 0.5) == "sharpening"  # rose to 2.2 lambda_0 during warmup
    assert sharpness_regime(1.0, 0.6) == "reduction"
    assert sharpness_regime(1.05, 1.02) == "unclear"
    assert sharpness_regime(math.nan, math.nan) == "unclear"
    # c = 2: reaches 1.8 (>= 0.9 c) at the third measurement, then 2.0, 2.4, nan, 2.2 -> median of 0.9, 1, 1.2, 1.1
    index, median = threshold_following([0.5, 1.0, 1.8, 2.0, 2.4, np.nan, 2.2], 2.0)
    assert index == 2 and median == pytest.approx(1.05)
    assert all(math.isnan(v) for v in threshold_following([0.5, 1.0], 2.0))


def test_a_method_kind_defined_only_in_this_test_takes_part_through_its_roles(monkeypatch, tmp_path):
    """Claims and figures select runs by the roles a kind declares in the registry, never by kind name: a new kind
    registered with a role is picked up without editing claims.py, analysis.py or report.py."""
    from typing import Literal

    from whywarmup import methods
    from whywarmup.report import steps_saved_figure

    class ExponentialWarmup(methods.LinearWarmup):
        roles = frozenset({methods.FIXED_WARMUP})
        kind: Literal["exp_test"]

    class Adaptive(methods.MethodBase):
        roles = frozenset({methods.ADAPTIVE_WARMUP})
        kind: Literal["adaptive_test"]

    class HighStart(methods.MethodBase):
        roles = frozenset({methods.CRITICAL_START})
        kind: Literal["high_start_test"]

    warm = [{**r, "kind": "exp_test"} if r["kind"] == "linear" else r for r in phase({1: 8, 16: 32, 64: 128})]
    pc = [{"kind": "adaptive_test", "T_wrm": 0, "eta_trgt_setting": e, "warmup_steps_used": 40.0} for e in (2, 8)]
    lin = [{"kind": "exp_test", "T_wrm": 64, "eta_trgt_setting": e, "warmup_steps_used": 64.0} for e in (2, 8)]
    start = [{"kind": "high_start_test", "eta_trgt_setting": e, "warmup_steps_used": 30.0} for e in (2, 8)]
    runs = table(*lin, *start).assign(method=lambda t: t["kind"])
    # not registered: the runs take part in nothing
    assert steps_saved_figure(runs, tmp_path / "steps.png") is None
    assert check_c1(table(*warm)).verdict == INCONCLUSIVE
    assert check_c7(table(*lin, *pc)).numbers["trained_runs"] == 0
    monkeypatch.setattr(methods, "METHOD_TYPES", (*methods.METHOD_TYPES, ExponentialWarmup, Adaptive, HighStart))
    assert methods.kinds_with(methods.FIXED_WARMUP) == {"linear", "exp_test"}
    res = check_c1(table(*warm))
    assert res.verdict == SUPPORTED and res.numbers["growth_agree"] == 6
    res = check_c7(table(*lin, *pc, noise=0.01))
    assert res.numbers["trained_runs"] == 6 and res.numbers["reaches_eta_trgt_agree"] == 6
    res = check_c5(table(*lin, *start, noise=0.01))
    assert res.numbers["pairs"] == 6 and res.numbers["median_steps_saved"] == 34
    figure = steps_saved_figure(runs, tmp_path / "steps.png")
    assert figure is not None and (tmp_path / "steps.png").exists() and len(figure.run_keys) == 12


def lm_table(*rows: dict, noise: float = 0.01) -> pd.DataFrame:
    """table() for language models: every run carries the unigram entropy; test (= validation) losses get the same
    seed noise pattern as table()'s accuracies."""
    runs = table(*rows, noise=0.0)
    n = 3
    offsets = [noise * ((i + j) % n - (n - 1) / 2) for i in range(n) for j in range(len(rows))]
    runs["final_test_loss"] = runs["final_test_loss"] + offsets
    runs["final_val_loss"] = runs["final_test_loss"]
    return runs.assign(unigram_entropy=5.0)


def test_c7_on_language_models_is_decided_on_the_test_loss():
    """persistent_catapult's test loss within one seed sd of the best linear T_wrm (chosen on the lowest validation
    loss) supports C7 even where its next-token accuracy is far lower (accuracy says little for a language model);
    a test loss one nat higher contradicts it even where its accuracy is higher."""
    lin = [
        {"kind": "linear", "eta_trgt_setting": e, "T_wrm": t, "final_test_loss": loss, "final_test_accuracy": 0.3}
        for t, loss in ((16, 3.4), (64, 3.0))
        for e in (2, 8, 32, 128)
    ]
    pc = [
        {"kind": "persistent_catapult", "T_wrm": 0, "eta_trgt_setting": e, "warmup_steps_used": 40.0}
        for e in (2, 8, 32, 128)
    ]
    close = lm_table(*lin, *[{**p, "final_test_loss": 3.002, "final_test_accuracy": 0.1} for p in pc])
    res = check_c7(close)
    assert res.verdict == SUPPORTED, res.statistic
    assert res.numbers["median_loss_reduction"] == pytest.approx(-0.002, abs=0.02)  # against T_wrm 64, not 16
    assert "seed_spread_test_loss" in res.numbers and "nats" in res.statistic
    worse = lm_table(*lin, *[{**p, "final_test_loss": 4.0, "final_test_accuracy": 0.9} for p in pc])
    assert check_c7(worse).verdict == CONTRADICTED
