"""The paper's improvements: catapult_init, GI-Adam (both readings) and persistent_catapult."""

import copy
import math

import pytest
import torch

from whywarmup.optim import GIAdam, adam_preconditioner
from whywarmup.schedules import CatapultInitSchedule, PersistentCatapultSchedule, steps_to_target
from whywarmup.train import train_run

from .conftest import tiny_run


def _run(method: dict, **sections):
    return tiny_run(method, steps=60, eval_every=30, **sections)


# --- catapult_init ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("eta_c", "eta_trgt", "t_wrm"), [(0.3, 1.0, 64), (0.05, 2.0, 100), (0.9, 1.0, 7), (1e-6, 1, 16)]
)
def test_catapult_init_reaches_the_target_at_the_predicted_step(eta_c, eta_trgt, t_wrm):
    sched = CatapultInitSchedule(eta_trgt, t_wrm, eta_c, total_steps=500)
    expected = math.ceil(t_wrm * (1 - eta_c / eta_trgt))
    assert steps_to_target(sched, 500) == expected
    assert sched.lr(1) == pytest.approx(min(eta_trgt, eta_c + eta_trgt / t_wrm))
    if expected > 2:  # the linear warmup's slope
        assert sched.lr(2) - sched.lr(1) == pytest.approx(eta_trgt / t_wrm)
    assert all(sched.lr(t) <= eta_trgt for t in range(1, 500))
    assert sched.lr(expected) == eta_trgt and sched.lr(499) == eta_trgt


def test_catapult_init_without_warmup_when_eta_c_is_above_the_target():
    sched = CatapultInitSchedule(0.5, 64, 0.8)
    assert steps_to_target(sched, 100) == 1 and sched.lr(1) == 0.5


def test_catapult_init_run_logs_what_it_saved(digits):
    run = _run({"kind": "catapult_init", "eta_trgt": 128.0, "eta_relative_to": "lambda_0", "warmup_steps": 40})
    res = train_run(run, digits, progress=False)
    s = res.summary
    used = math.ceil(40 * (1 - s["critical_lr"] / s["eta_trgt"]))
    assert 1 < used < 40
    assert s["warmup_steps_used"] == used and s["warmup_steps_saved"] == 40 - used
    lr = res.trajectory.set_index("step")["lr"]
    assert lr[0] == pytest.approx(s["critical_lr"] + s["eta_trgt"] / 40)  # update 1
    assert lr[used - 1] == pytest.approx(s["eta_trgt"]) and lr[used - 2] < s["eta_trgt"]


# --- GI-Adam -------------------------------------------------------------------------------------------------


def _tiny_problem(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    x, y = torch.randn(32, 5), torch.randn(32, 3)
    return model, lambda m: ((m(x) - y) ** 2).mean()


def _train(model, opt, loss, steps):
    for _ in range(steps):
        opt.zero_grad()
        loss(model).backward()
        opt.step()


def test_gi_adam_with_zero_v0_is_torch_adam_over_100_steps():
    model, loss = _tiny_problem()
    ref = copy.deepcopy(model)
    _train(model, GIAdam(model.parameters(), lr=1e-2, weight_decay=1e-3, v0="zero"), loss, 100)
    _train(ref, torch.optim.Adam(ref.parameters(), lr=1e-2, weight_decay=1e-3), loss, 100)
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    assert not torch.equal(p, _tiny_problem()[0][2].weight)  # it did train


@pytest.mark.parametrize("bias_correction", [True, False])
def test_gi_adam_first_update_by_hand_on_a_two_parameter_quadratic(bias_correction):
    a, b, lr, beta1, beta2, eps = 3.0, 0.5, 0.1, 0.9, 0.999, 1e-8
    theta = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    opt = GIAdam([theta], lr=lr, betas=(beta1, beta2), eps=eps, v_bias_correction=bias_correction)
    (0.5 * (a * theta[0] ** 2 + b * theta[1] ** 2)).backward()
    g = torch.tensor([a * 1.0, b * -2.0], dtype=torch.float64)
    opt.step()
    # v_0 = g^2 and g_1 = g_0, so v_1 = g^2; m_1 = (1 - beta1) g, mhat_1 = g.
    vhat = g**2 / (1 - beta2) if bias_correction else g**2
    expected = torch.tensor([1.0, -2.0], dtype=torch.float64) - lr * g / (vhat.sqrt() + eps)
    torch.testing.assert_close(theta.detach(), expected, rtol=1e-12, atol=1e-14)
    # With bias correction the first step is sqrt(1 - beta2) = 0.032 of the lr (an implicit warmup).
    step = (torch.tensor([1.0, -2.0], dtype=torch.float64) - theta.detach()).abs()
    assert step.tolist() == pytest.approx([lr * math.sqrt(1 - beta2)] * 2 if bias_correction else [lr] * 2, rel=1e-6)


def test_gi_adam_state_dict_round_trip_and_preconditioner():
    model, loss = _tiny_problem(1)
    opt = GIAdam(model.parameters(), lr=1e-2, v_bias_correction=False)
    _train(model, opt, loss, 5)
    other = copy.deepcopy(model)
    opt2 = GIAdam(other.parameters(), lr=123.0, v_bias_correction=True)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert opt2.param_groups[0]["v_bias_correction"] is False and opt2.param_groups[0]["lr"] == 1e-2
    _train(model, opt, loss, 5)
    _train(other, opt2, loss, 5)
    for p, q in zip(model.parameters(), other.parameters()):
        assert torch.equal(p, q)
    # P of the next update, rebuilt by hand from the state: (1 - beta1^t)(sqrt(v_t) + eps), no v correction.
    model.zero_grad()
    loss(model).backward()
    grads = [p.grad for p in model.parameters()]
    pre = adam_preconditioner(opt, grads)
    for p, g, got in zip(model.parameters(), grads, pre):
        v = 0.999 * opt.state[p]["exp_avg_sq"] + 0.001 * g * g
        torch.testing.assert_close(got, (1 - 0.9**11) * (v.sqrt() + 1e-8))


def test_gi_adam_fresh_preconditioner_uses_v0_from_the_gradient():
    model, loss = _tiny_problem(2)
    loss(model).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    for bc in (True, False):
        opt = GIAdam(model.parameters(), v_bias_correction=bc)
        scale = 1 / math.sqrt(1 - 0.999) if bc else 1.0
        for g, got in zip(grads, adam_preconditioner(opt, grads)):
            torch.testing.assert_close(got, 0.1 * (g.abs() * scale + 1e-8))


def test_gi_adam_method_validation():
    from whywarmup.errors import ConfigError

    run = _run({"kind": "gi_adam", "eta_trgt": 1e-3, "optimizer": {"name": "gi_adam", "v_bias_correction": False}})
    assert run.method.warmup_length == 1
    with pytest.raises(ConfigError, match="gi_adam needs optimizer.name: gi_adam"):
        _run({"kind": "gi_adam", "optimizer": {"name": "adam"}})


# --- persistent_catapult -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("eta_trgt", "expected"), [(10.0, 1.5 * 2 / 4.0), (0.6, 0.6)])
def test_persistent_catapult_on_a_quadratic_settles_at_gamma_times_two_over_lambda(eta_trgt, expected):
    lam, gamma = 4.0, 1.5
    sched = PersistentCatapultSchedule(eta_trgt, gamma, every=5)
    x, lrs = 1.0, []
    for s in range(40):  # GD on L = lam x^2 / 2; its sharpness is lam everywhere
        if sched.wants_estimate(s):
            sched.report(s, 2.0 / lam)
        lrs.append(sched.lr(s + 1))
        x -= lrs[-1] * lam * x
    assert lrs == [expected] * 40
    assert (sched.reached_at == 1) == (expected == eta_trgt)


def test_persistent_catapult_rises_when_the_sharpness_falls_never_decreases():
    sched = PersistentCatapultSchedule(1.0, 1.2, every=1)
    for s, lam in enumerate([10.0, 20.0, 8.0, 8.0, math.nan, 5.0, 1.0, 3.0]):
        sched.report(s, 2.0 / lam)
    assert sched.increases == [0, 2, 5, 6] and sched.reached_at == 7 and sched.lr(8) == 1.0


# The search's one-step eta_c is 22.6 / lambda_0 on the 3-layer width-32 net (its gradient is mostly outside the
# top eigendirection), so 1.5 x that diverges there; on a 4-layer width-128 net it is 2.7 / lambda_0.
@pytest.mark.parametrize(
    ("source", "c", "depth", "width"),
    [("sharpness", 64.0, 3, 32), ("search", 32.0, 4, 128), ("critical_sharpness", 32.0, 4, 128)],
)
def test_persistent_catapult_run_reaches_a_stable_target(digits, source, c, depth, width):
    run = _run(
        {"kind": "persistent_catapult", "eta_trgt": c, "eta_relative_to": "lambda_0", "every": 5, "source": source},
        model={"kind": "fcn", "depth": depth, "width": width},
        training={"steps": 100, "eval_every": 50},
        sharpness={"every": 10, "subset_size": 128, "critical_every": 0},  # lambda_c only where the estimate reads it
    )
    res = train_run(run, digits, progress=False)
    assert res.status == "finished"
    s, traj = res.summary, res.trajectory
    lr = traj["lr"].dropna()
    assert (lr.diff().dropna() >= 0).all() and lr.max() == pytest.approx(s["eta_trgt"]) and lr.le(s["eta_trgt"]).all()
    used = s["warmup_steps_used"]
    assert 1 < used < 100 and traj.loc[used - 1, "lr"] == s["eta_trgt"] and traj.loc[used - 2, "lr"] < s["eta_trgt"]
    estimates = traj.dropna(subset=["local_critical_lr"])
    assert len(estimates) == s["critical_lr_estimates"] >= 2
    assert set(estimates["step"] % 5) == {0} and estimates["step"].max() < used
    if source == "sharpness":  # eta_c = 2 / lambda_t at each re-estimate, lr = gamma eta_c (until the cap)
        torch.testing.assert_close(
            estimates["local_critical_lr"].to_numpy().copy(), 2 / estimates["sharpness"].to_numpy(), check_dtype=False
        )
    if source == "critical_sharpness":  # eta_c = 2 / lambda_c along the next update, measured only at the estimates
        assert traj.dropna(subset=["critical_sharpness"])["step"].tolist() == estimates["step"].tolist()
        torch.testing.assert_close(
            estimates["local_critical_lr"].to_numpy().copy(),
            2 / estimates["critical_sharpness"].to_numpy(),
            check_dtype=False,
        )
    first = estimates.iloc[0]
    assert first["lr"] == pytest.approx(min(s["eta_trgt"], 1.5 * first["local_critical_lr"]))
    assert 0 <= s["catapults"] <= s["lr_increases"]
    assert s["catapults"] >= 1  # e.g. the sharpness run's increase at step 20 doubles the loss within 5 steps
