import copy
import math

import pytest
import torch
from torch import nn

from whywarmup.critical_lr import CatapultProbe, find_critical_lr
from whywarmup.losses import mse_loss
from whywarmup.optim import build_optimizer
from whywarmup.sections import AdamConfig, GIAdamConfig, SGDConfig

from .conftest import dense_hessian


def _factory(cfg):
    return lambda params, lr: build_optimizer(cfg, params, lr)


def test_one_dimensional_quadratic_under_gd_gives_two_over_lambda():
    lam = 7.0
    model = nn.Linear(1, 1, bias=False).double()
    with torch.no_grad():
        model.weight.fill_(0.3)
    x, y = torch.ones(1, 1, dtype=torch.float64), torch.zeros(1)

    def loss_fn(out, _):  # L(w) = lam w^2 / 2
        return 0.5 * lam * out.pow(2).sum()

    eps, tol = 1e-3, 1e-3
    res = find_critical_lr(model, loss_fn, (x, y), _factory(SGDConfig()), eps=eps, tol=tol)
    exact = (1 + math.sqrt(1 + eps)) / lam  # (1 - eta lam)^2 = 1 + eps
    assert res.lower <= exact <= res.upper
    assert res.lr == pytest.approx(2 / lam, rel=tol + eps)
    assert res.forward_passes < 40 and res.gradients == 1
    assert model.weight.item() == 0.3  # the model itself is untouched


def _quadratic_problem(seed=0):
    """A linear model with MSE: the loss is exactly quadratic in the weights."""
    torch.manual_seed(seed)
    model = nn.Linear(6, 4, bias=False).double()
    x = torch.randn(20, 6, dtype=torch.float64)
    y = torch.randint(0, 4, (20,))
    loss = mse_loss(model(x), y)
    g = torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, list(model.parameters()))])
    H = dense_hessian(model, mse_loss, [(x, y)])
    return model, (x, y), g, H, loss.item()


@pytest.mark.parametrize("nesterov", [False, True])
def test_any_quadratic_gives_the_exact_one_step_catapult_point(nesterov):
    model, batch, g, H, L0 = _quadratic_problem()
    beta = 0.9 if nesterov else 0.0
    cfg = SGDConfig(momentum=beta, nesterov=nesterov)
    eps, tol = 1e-8, 1e-3
    res = find_critical_lr(model, mse_loss, batch, _factory(cfg), eps=eps, tol=tol)
    d = (1 + beta) * g  # first update direction: heavy-ball buffer = g; Nesterov adds beta * g
    gg, dHd = torch.dot(g, d).item(), (d @ H @ d).item()
    # L(theta - eta d) = L0 - eta g.d + eta^2 d.H.d / 2 exceeds L0 (1 + eps) beyond:
    exact = (gg + math.sqrt(gg**2 + 2 * dHd * eps * L0)) / dHd
    assert res.lower <= exact <= res.upper
    assert res.lr == pytest.approx(2 * torch.dot(g, g).item() / ((1 + beta) * (g @ H @ g).item()), rel=2 * tol)


def test_probe_equals_a_real_optimizer_step_for_adam_fresh_and_trained():
    model, (x, y), *_ = _quadratic_problem(1)
    cfg = AdamConfig(beta1=0.9, beta2=0.99)
    opt = build_optimizer(cfg, list(model.parameters()), 1e-3)
    for _ in range(3):  # give the optimizer some state
        opt.zero_grad()
        mse_loss(model(x), y).backward()
        opt.step()
    for state in (None, opt.state_dict()):
        probe = CatapultProbe(model, mse_loss, (x, y), _factory(cfg), state)
        for eta in (1e-3, 0.05, 0.7):
            ref = copy.deepcopy(model)
            ref_opt = build_optimizer(cfg, list(ref.parameters()), eta)
            if state is not None:
                ref_opt.load_state_dict(copy.deepcopy(state))
                for group in ref_opt.param_groups:
                    group["lr"] = eta
            ref_opt.zero_grad()
            mse_loss(ref(x), y).backward()
            ref_opt.step()
            assert probe(eta) == pytest.approx(mse_loss(ref(x), y).item(), rel=1e-9)


def test_no_catapult_below_max_lr_means_no_warmup_needed():
    model, batch, g, H, _ = _quadratic_problem()
    two_over = 2 * torch.dot(g, g).item() / (g @ H @ g).item()
    res = find_critical_lr(model, mse_loss, batch, _factory(SGDConfig()), max_lr=two_over / 4)
    assert res.upper == math.inf and not res.bracketed and res.lr >= two_over / 4


def test_start_above_the_critical_lr_searches_downwards():
    model, batch, g, H, _ = _quadratic_problem()
    two_over = 2 * torch.dot(g, g).item() / (g @ H @ g).item()
    res = find_critical_lr(model, mse_loss, batch, _factory(SGDConfig()), eta_0=50 * two_over, eps=1e-8, tol=1e-3)
    assert res.lr == pytest.approx(two_over, rel=2e-3)


def _split(flat: torch.Tensor, model: nn.Module) -> list[torch.Tensor]:
    """A flat vector as one tensor per parameter, in model.parameters() order."""
    out, i = [], 0
    for p in model.parameters():
        out.append(flat[i : i + p.numel()].view_as(p))
        i += p.numel()
    return out


@pytest.mark.parametrize("which", ["gradient", "adam_like", "random"])
def test_critical_sharpness_on_a_quadratic_is_dHd_over_dg(which):
    """Linear model + MSE (exactly quadratic): L(theta - eta d) > L(theta) beyond eta_c = 2 d.g / d.H.d, so lambda_c =
    d.H.d / d.g, against the dense Hessian; for the gradient it lies between the smallest and largest eigenvalue."""
    from whywarmup.critical_lr import critical_sharpness

    model, batch, g, H, L0 = _quadratic_problem(seed=3)
    gen = torch.Generator().manual_seed(1)
    d = {
        "gradient": g,
        "adam_like": g / (g.abs() + 1e-3),  # a preconditioned direction, still a descent direction
        "random": torch.randn(len(g), generator=gen, dtype=torch.float64) + 2 * g / g.norm(),
    }[which]
    assert torch.dot(d, g) > 0
    exact = (d @ H @ d).item() / torch.dot(d, g).item()
    before = [p.detach().clone() for p in model.parameters()]
    res = critical_sharpness(model, mse_loss, batch, _split(d, model), tol=1 / 16)
    assert 1 - res.lower / res.upper < 1 / 16 and res.lower < 2 / exact <= res.upper
    assert res.value == pytest.approx(exact, rel=1 / 32)  # the middle of a bracket narrower than 1/16
    assert res.eta_c == pytest.approx(2 / res.value)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the model is left as it was
    if which == "gradient":
        eig = torch.linalg.eigvalsh(H)
        assert eig[0] <= res.value <= eig[-1] * (1 + 1 / 32)
    # warm-started at the previous eta_c (here: this one, a little off) with L(theta) known: a handful of passes
    warm = critical_sharpness(model, mse_loss, batch, _split(d, model), eta_0=0.9 * res.eta_c, initial_loss=L0)
    assert warm.value == pytest.approx(exact, rel=1 / 32) and warm.forward_passes <= 6
    # tighter tolerance, tighter answer
    tight = critical_sharpness(model, mse_loss, batch, _split(d, model), tol=1e-4)
    assert tight.value == pytest.approx(exact, rel=1e-4)


def test_critical_sharpness_without_a_finite_eta_c():
    """Along an ascent direction every eta raises the loss (value inf); along a direction of zero curvature that
    lowers the loss none does (value 0)."""
    from whywarmup.critical_lr import critical_sharpness

    model, batch, g, H, L0 = _quadratic_problem(seed=4)
    up = critical_sharpness(model, mse_loss, batch, _split(-g, model), max_probes=20)
    assert up.value == math.inf and up.lower == 0.0 and up.forward_passes == 20

    class Line(nn.Module):  # L(w) = -w: linear, so no eta raises it
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1, dtype=torch.float64))

        def forward(self, x):
            return self.w

    flat = critical_sharpness(Line(), lambda out, _: -out.sum(), batch, [-torch.ones(1, dtype=torch.float64)])
    assert flat.value == 0.0 and flat.upper == math.inf


@pytest.mark.parametrize("seed", range(5))
def test_bracket_around_finds_any_threshold_and_costs_two_probes_near_the_guess(seed):
    """rises(eta) = eta > c: from any guess the bracket holds c with 1 - lower / upper < tol; from a guess within the
    tolerance of c it takes exactly 2 probes, from a guess 1000x off far fewer than doubling from scratch would."""
    from whywarmup.critical_lr import bracket_around

    gen = torch.Generator().manual_seed(seed)
    c = float(torch.exp(torch.randn(1, generator=gen) * 3))
    tol = 1 / 16
    for guess, most in [(c * 1.01, 2), (c / 1.01, 2), (c * 1000, 18), (c / 1000, 18), (c, 2)]:
        probes: list[float] = []
        lower, upper = bracket_around(lambda eta, p=probes: p.append(eta) or eta > c, guess, tol, probes.__len__, 64)
        assert lower <= c < upper and 1 - lower / upper < tol
        assert len(probes) <= most, (guess / c, len(probes))


def test_bracket_around_reports_no_rise_and_every_rise():
    from whywarmup.critical_lr import bracket_around

    n = []
    assert bracket_around(lambda eta: n.append(eta) or False, 1.0, 1 / 16, lambda: len(n), 10) == (max(n), math.inf)
    n.clear()
    assert bracket_around(lambda eta: n.append(eta) or True, 1.0, 1 / 16, lambda: len(n), 10) == (0.0, min(n))


OPTIMIZERS = [
    SGDConfig(),
    SGDConfig(momentum=0.9),
    SGDConfig(momentum=0.9, nesterov=True, weight_decay=1e-2),
    AdamConfig(),
    AdamConfig(name="radam", weight_decay=1e-3),
    GIAdamConfig(),
    GIAdamConfig(v_bias_correction=False),
]


@pytest.mark.parametrize("cfg", OPTIMIZERS, ids=lambda c: f"{c.name}-{getattr(c, 'momentum', '')}")
def test_update_direction_is_the_real_next_update_per_unit_lr(cfg):
    """After a few real steps, UpdateDirection's d equals (theta_s - theta_{s+1}) / lr of the optimizer's own next
    step at any lr (float64 model: exact to rounding), and reading it leaves the optimizer and the model untouched."""
    from whywarmup.critical_lr import UpdateDirection

    model, (x, y), *_ = _quadratic_problem(seed=5)
    params = list(model.parameters())
    optimizer = build_optimizer(cfg, params, 0.05)
    direction = UpdateDirection(params, _factory(cfg))

    def backward():
        for p in params:
            p.grad = None
        mse_loss(model(x), y).backward()

    for _ in range(3):
        backward()
        optimizer.step()
    backward()
    d = direction(optimizer)
    state_before = copy.deepcopy(optimizer.state_dict())
    theta = [p.detach().clone() for p in params]
    assert all(torch.equal(p, t) for p, t in zip(params, theta))
    lr = 0.0123
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.step()
    for t, p, di in zip(theta, params, d):
        assert torch.allclose((t - p.detach()) / lr, di, rtol=1e-9, atol=1e-12)
    # the shadow step did not advance the real optimizer: its state before the real step was the one after 3 steps
    steps = [s["step"] for s in state_before["state"].values() if "step" in s]
    assert all(float(s) == 3 for s in steps)


def test_update_direction_of_a_float32_model_is_exact_where_the_step_is_below_rounding():
    """At a learning rate whose step lr * g is far below float32's rounding of the weights, theta_s - theta_{s+1}
    carries no information, but d (from the float64 shadow step at lr = 1) still equals the gradient."""
    from whywarmup.critical_lr import UpdateDirection

    model, (x, y), *_ = _quadratic_problem(seed=6)
    model = model.float()
    params = list(model.parameters())
    optimizer = build_optimizer(SGDConfig(), params, 1e-12)
    mse_loss(model(x.float()), y).backward()
    d = UpdateDirection(params, _factory(SGDConfig()))(optimizer)
    assert torch.equal(d[0], params[0].grad)
