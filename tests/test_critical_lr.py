import copy
import math

import pytest
import torch
from torch import nn

from whywarmup.critical_lr import CatapultProbe, find_critical_lr
from whywarmup.losses import mse_loss
from whywarmup.optim import build_optimizer
from whywarmup.sections import AdamConfig, SGDConfig

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
