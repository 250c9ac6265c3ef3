import copy
import math

import pandas as pd
import pytest
import torch

from whywarmup.losses import mse_loss
from whywarmup.models import build_model
from whywarmup.train import _batches, measurement_batches, train_run

from .conftest import tiny_run, top_dense_eigenvalue


def _run(method: dict, **sections):
    return tiny_run(method, steps=40, eval_every=20, **sections)


def test_step_semantics_and_logged_columns(digits):
    run = _run({"kind": "linear", "warmup_steps": 20, "eta_trgt": 0.5})
    res = train_run(run, digits, progress=False)
    traj = res.trajectory
    assert res.status == "finished"
    assert list(traj["step"]) == list(range(41))
    schedule = run.method.build_schedule(0.5, 40, {})
    # row s holds the lr of update s + 1
    assert traj["lr"].iloc[:40].tolist() == pytest.approx([schedule.lr(s + 1) for s in range(40)])
    assert math.isnan(traj["lr"].iloc[40])
    measured = traj.dropna(subset=["sharpness"])["step"].tolist()
    assert measured == [0, 10, 20, 30, 40]
    dense = run.model_copy(update={"sharpness": run.sharpness.model_copy(update={"dense_until": 3})})
    steps = train_run(dense, digits, progress=False).trajectory.dropna(subset=["sharpness"])["step"].tolist()
    assert steps == [0, 1, 2, 3, 10, 20, 30, 40]
    assert traj["stability_threshold"].iloc[:40].tolist() == pytest.approx((2 / traj["lr"].iloc[:40]).tolist())
    row = traj.set_index("step").loc[10]
    assert row["lr_times_sharpness"] == pytest.approx(row["lr"] * row["sharpness"])
    assert traj.dropna(subset=["test_accuracy"])["step"].tolist() == [0, 20, 40]
    assert res.summary["warmup_steps_used"] == 20
    assert res.summary["lambda_0"] == traj["sharpness"].iloc[0]
    assert traj["sharpness_matvecs"].iloc[0] >= 2  # the cold-start measurement of lambda_0 is counted
    assert res.summary["final_test_accuracy"] == traj["test_accuracy"].iloc[-1]


def test_relative_eta_and_determinism(digits):
    run = _run({"kind": "none", "eta_trgt": 2.0, "eta_relative_to": "lambda_0"})
    a = train_run(run, digits, progress=False)
    b = train_run(run, digits, progress=False)
    assert a.summary["eta_trgt"] * a.summary["lambda_0"] == pytest.approx(2.0)
    pd.testing.assert_frame_equal(a.trajectory, b.trajectory)


def test_divergence_is_recorded_and_stops_the_run(digits):
    run = _run({"kind": "none", "eta_trgt": 1000.0, "eta_relative_to": "lambda_0"})
    res = train_run(run, digits, progress=False)
    assert res.status == "diverged"
    assert res.summary["diverged"] == 1 and res.summary["failed"] == 1
    assert 0 < res.summary["diverged_step"] < 40
    assert len(res.trajectory) == res.summary["diverged_step"] + 1
    assert math.isnan(res.summary["final_test_accuracy"])


def test_failure_to_learn_is_recorded(digits):
    # Zero-ish learning rate: the net stays at its initialization, whose accuracy (seed 3) is below 1.5/10.
    run = _run({"kind": "none", "eta_trgt": 1e-12, "seed": 3})
    res = train_run(run, digits, progress=False)
    assert res.summary["final_train_accuracy"] < 0.15
    assert res.status == "failed" and res.summary["failed"] == 1 and res.summary["diverged"] == 0


def test_adam_logs_preconditioned_sharpness(digits):
    run = _run(
        {
            "kind": "linear",
            "warmup_steps": 10,
            "eta_trgt": 1e-3,
            "optimizer": {"name": "adam"},
            "decay": "cosine",
        }
    )
    res = train_run(run, digits, progress=False)
    traj = res.trajectory.set_index("step")
    assert traj.loc[10, "preconditioned_sharpness"] > traj.loc[10, "sharpness"]
    assert traj.loc[10, "stability_threshold"] == pytest.approx(38 / traj.loc[10, "lr"])
    assert traj.loc[10, "lr_times_sharpness"] == pytest.approx(
        traj.loc[10, "lr"] * traj.loc[10, "preconditioned_sharpness"]
    )
    assert traj.loc[39, "lr"] == pytest.approx(1e-3 / 10 + 0.9e-3 * 0.5 * (1 + math.cos(math.pi * 30 / 30)))


def test_critical_lr_at_init_is_logged_and_brackets_the_catapult(digits):

    run = _run({"kind": "none", "eta_trgt": 0.1})
    res = train_run(run, digits, progress=False)
    s = res.summary
    assert s["critical_lr_lower"] < s["critical_lr_upper"] and s["critical_lr"] == s["critical_lr_lower"]
    assert s["critical_lr_times_lambda_0"] == pytest.approx(s["critical_lr"] * s["lambda_0"])
    assert 0 < s["critical_lr_forward_passes"] < 60
    # Independent check: one real torch.optim.SGD step from the same initialization.
    ((x, y),) = measurement_batches(digits, run)

    def loss_after_step(lr: float) -> float:
        torch.manual_seed(run.method.seed)
        model = build_model(run.model, digits.input_shape, digits.num_classes)
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        mse_loss(model(x), y).backward()
        opt.step()
        with torch.no_grad():
            return mse_loss(model(x), y).item()

    torch.manual_seed(run.method.seed)
    initial = mse_loss(build_model(run.model, digits.input_shape, digits.num_classes)(x), y).item()
    assert loss_after_step(s["critical_lr"]) <= initial * 1.01 < loss_after_step(s["critical_lr_upper"])


def test_minibatches_mean_lambda_0_is_the_mean_of_per_batch_top_eigenvalues(digits):

    run = _run(
        {"kind": "none", "eta_trgt": 0.05},
        model={"kind": "fcn", "depth": 3, "width": 8},
        training={"steps": 2, "batch_size": 32},
        sharpness={"measure_on": "minibatches_mean", "num_minibatches": 3, "every": 1},
    )
    res = train_run(run, digits, progress=False)
    batches = measurement_batches(digits, run)
    assert len(batches) == 3 and all(len(x) == 32 for x, _ in batches)
    assert not torch.equal(batches[0][0], batches[1][0])
    torch.manual_seed(run.method.seed)
    model = build_model(run.model, digits.input_shape, digits.num_classes)
    expected = sum(top_dense_eigenvalue(model, mse_loss, b) for b in batches) / 3
    assert res.summary["lambda_0"] == pytest.approx(expected, rel=2e-3)
    # Three separate eigenproblems: the first measurement costs at least 3 x 2 HVPs.
    assert res.trajectory.loc[0, "sharpness_matvecs"] >= 6


def test_minibatch_measurement_follows_the_batch_of_the_next_update(digits):

    run = _run(
        {"kind": "none", "eta_trgt": 0.05},
        model={"kind": "fcn", "depth": 3, "width": 8},
        training={"steps": 3, "batch_size": 16},
        sharpness={"measure_on": "minibatch", "every": 1},
    )
    res = train_run(run, digits, progress=False)
    # Independent replay with torch.optim.SGD on the same minibatch order.
    stream = _batches(digits, run)
    order = [next(stream) for _ in range(4)]
    torch.manual_seed(run.method.seed)
    model = build_model(run.model, digits.input_shape, digits.num_classes)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for s in range(4):
        expected = top_dense_eigenvalue(model, mse_loss, order[s])
        assert res.trajectory.loc[s, "sharpness"] == pytest.approx(expected, rel=2e-3), s
        if s < 3:
            opt.zero_grad()
            mse_loss(model(order[s][0]), order[s][1]).backward()
            opt.step()
    assert res.trajectory["sharpness"].nunique() == 4


def test_minibatches_mean_needs_a_batch_size():
    from whywarmup.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        _run({"kind": "none", "eta_trgt": 0.1}, sharpness={"measure_on": "minibatches_mean"})
    assert "sharpness.measure_on" in str(err.value) and "batch_size" in str(err.value)


def test_float64_measurement_of_a_float32_model(digits):

    run = _run(
        {"kind": "none", "eta_trgt": 0.05},
        model={"kind": "fcn", "depth": 3, "width": 8},
        training={"steps": 1},
        sharpness={"dtype": "float64", "tol": 1e-8, "subset_size": 64},
    )
    res = train_run(run, digits, progress=False)
    torch.manual_seed(run.method.seed)
    model = build_model(run.model, digits.input_shape, digits.num_classes)
    ((x, y),) = measurement_batches(digits, run)
    expected = top_dense_eigenvalue(copy.deepcopy(model).double(), mse_loss, (x.double(), y))
    assert res.summary["lambda_0"] == pytest.approx(expected, rel=1e-9)


def test_deterministic_flag_sets_torch_determinism_and_changes_nothing_on_cpu(digits):
    method = {"kind": "linear", "warmup_steps": 5, "eta_trgt": 0.05}
    on = tiny_run(method, steps=10, training={"steps": 10, "eval_every": 5, "deterministic": True})
    off = tiny_run(method, steps=10, training={"steps": 10, "eval_every": 5})
    try:
        a = train_run(on, digits, progress=False)
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        b = train_run(off, digits, progress=False)
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
    pd.testing.assert_frame_equal(a.trajectory, b.trajectory, check_exact=True)


def test_sharpness_is_measured_without_tf32_and_the_setting_comes_back(digits):
    """TF32 would add ~1e-3 relative noise to Hessian-vector products on a GPU: measurements run at full fp32."""
    from whywarmup.curvature import top_hessian_eigen
    from whywarmup.losses import get_loss

    seen = []
    mse = get_loss("mse")

    def loss_fn(out, y):
        seen.append((torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32))
        return mse(out, y)

    features = digits.x_train[0].numel()
    nn = torch.nn
    model = nn.Sequential(nn.Flatten(), nn.Linear(features, 8), nn.Tanh(), nn.Linear(8, 10))
    before = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("high")  # what a user enabling TF32 for training sets
    torch.backends.cudnn.allow_tf32 = True
    try:
        top_hessian_eigen(model, loss_fn, (digits.x_train[:64], digits.y_train[:64]), max_matvecs=20)
        after = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    finally:
        torch.set_float32_matmul_precision(before[0])
        torch.backends.cudnn.allow_tf32 = before[1]
    assert seen and set(seen) == {("highest", False)}
    assert after == ("high", True)


def test_divergence_found_at_a_batched_read_back_is_the_step_a_plain_replay_finds(digits):
    """Losses are read from the device in batches; the recorded trajectory and diverged_step must be those of a
    plain torch.optim.SGD replay that reads every step. Here the loss blows up a few steps in and the run only
    reads it back SYNC_EVERY steps later: the steps past the divergence are discarded."""
    from whywarmup.losses import get_loss
    from whywarmup.train import SYNC_EVERY

    method = {"kind": "none", "eta_trgt": 3.0}
    run = tiny_run(method, steps=300, eval_every=1000, sharpness={"every": 0, "subset_size": 64})
    result = train_run(run, digits, progress=False)

    torch.manual_seed(run.method.seed)
    model = build_model(run.model, digits.input_shape, digits.num_classes)
    loss_fn = get_loss("mse")
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    losses = []
    for _ in range(300):
        loss = loss_fn(model(digits.x_train), digits.y_train)
        losses.append(loss.item())
        if not math.isfinite(losses[-1]) or losses[-1] > run.training.divergence_factor * losses[0]:
            break
        opt.zero_grad()
        loss.backward()
        opt.param_groups[0]["lr"] = 3.0
        opt.step()
    step = len(losses) - 1
    assert result.status == "diverged" and result.summary["diverged_step"] == step
    assert 1 < step < SYNC_EVERY - 1  # found at the read-back of step SYNC_EVERY, not at the step itself
    traj = result.trajectory
    assert list(traj["step"]) == list(range(step + 1))
    assert traj["loss"].tolist()[:-1] == losses[:-1]  # bitwise
    last = traj.iloc[-1]
    assert last["step"] == step and math.isnan(last["accuracy"]) and math.isnan(last["lr"])


@pytest.mark.parametrize(
    ("kind", "warmup", "expected"),
    [
        ("linear", 10, [0, 2, 4, 6, 8, 10, 15, 30, 40]),  # eta_trgt first used by update 10: row 10 is measured
        ("linear", 9, [0, 2, 4, 6, 8, 9, 15, 30, 40]),
        ("none", 1, [0, 1, 15, 30, 40]),  # no warmup: the cadence after warmup from the first update on
    ],
)
def test_sharpness_cadence_changes_once_eta_trgt_is_reached(digits, kind, warmup, expected):
    method = {"kind": kind, "eta_trgt": 0.05, **({"warmup_steps": warmup} if kind == "linear" else {})}
    sharpness = {"every": 2, "every_after_warmup": 15, "subset_size": 64, "critical_lr": {"enabled": False}}
    run = tiny_run(method, steps=40, sharpness=sharpness)
    measured = train_run(run, digits, progress=False).trajectory.dropna(subset=["sharpness"])["step"]
    assert measured.tolist() == expected


@pytest.mark.parametrize(
    "method",
    [
        {"kind": "linear", "warmup_steps": 10, "eta_trgt": 0.5},
        {"kind": "none", "eta_trgt": 1e-3, "optimizer": {"name": "adam"}, "decay": "cosine"},
    ],
    ids=["sgd", "adam"],
)
def test_critical_sharpness_every_step_without_changing_training(digits, method):
    """critical_every: 1 adds lambda_c at every step before the last (warm-started: at most a few forward passes in the
    median) and lr x lambda_c, and leaves every other column bitwise as a run without it."""
    run = _run(method)
    off = run.model_copy(update={"sharpness": run.sharpness.model_copy(update={"critical_every": 0})})
    on, plain = train_run(run, digits, progress=False).trajectory, train_run(off, digits, progress=False).trajectory
    assert on["critical_sharpness"].notna().tolist() == [True] * 40 + [False]
    assert plain["critical_sharpness"].isna().all()
    other = [c for c in on.columns if "critical" not in c]
    pd.testing.assert_frame_equal(on[other], plain[other])
    assert (on["critical_sharpness"].iloc[:40] > 0).all()
    assert on["lr_times_critical_sharpness"].tolist()[:40] == pytest.approx(
        (on["lr"] * on["critical_sharpness"]).tolist()[:40]
    )
    passes = on["critical_sharpness_passes"].dropna()
    assert passes.min() >= 2 and passes.median() <= 6


def test_critical_sharpness_of_a_run_on_a_quadratic_is_gHg_over_gg_at_every_step(digits):
    """A one-layer FCN with MSE trained by full-batch GD in float64 has a constant Hessian H, and the update per unit
    lr is the gradient g_s: lambda_c at step s must be g_s.H.g_s / g_s.g_s (to the search's tolerance), replayed here
    with torch.optim.SGD from the same initialization."""
    from .conftest import dense_hessian

    run = tiny_run(
        {"kind": "linear", "warmup_steps": 5, "eta_trgt": 0.5},
        steps=12,
        eval_every=12,
        model={"kind": "fcn", "depth": 1},
        training={"steps": 12, "eval_every": 12, "dtype": "float64"},
        sharpness={"every": 6, "subset_size": 128, "critical_tol": 1e-3},
    )
    traj = train_run(run, digits, progress=False).trajectory
    torch.manual_seed(run.method.seed)
    model = build_model(run.model, digits.input_shape, digits.num_classes).double()
    x, y = digits.x_train.double(), digits.y_train
    H = dense_hessian(model, mse_loss, [(x, y)])
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    for s in range(12):
        opt.zero_grad()
        mse_loss(model(x), y).backward()
        g = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        assert traj["critical_sharpness"].iloc[s] == pytest.approx((g @ H @ g / (g @ g)).item(), rel=1e-3)
        opt.param_groups[0]["lr"] = traj["lr"].iloc[s]
        opt.step()
