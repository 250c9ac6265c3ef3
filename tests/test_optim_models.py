import math

import pytest
import torch

from whywarmup.models import build_model
from whywarmup.optim import adam_preconditioner, build_optimizer, stability_constant
from whywarmup.sections import AdamConfig, CNNConfig, FCNConfig, SGDConfig, WRNConfig


def test_stability_constants():
    assert stability_constant(SGDConfig()) == 2.0
    assert stability_constant(SGDConfig(momentum=0.9)) == pytest.approx(3.8)
    assert stability_constant(AdamConfig(beta1=0.9)) == pytest.approx(38.0)


@pytest.mark.parametrize("name", ["adam", "radam"])
def test_adam_preconditioner_from_torch_state(name):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(5, dtype=torch.float64))
    cfg = AdamConfig(name=name, beta1=0.8, beta2=0.95, eps=1e-3)
    opt = build_optimizer(cfg, [w], lr=0.01)
    for _ in range(7):
        opt.zero_grad()
        (w**4).sum().backward()
        opt.step()
    g = 4 * w.detach() ** 3
    P = adam_preconditioner(opt, [g])[0]
    # Rebuilt by hand from the state torch.optim keeps: next step t = 8.
    t = 8
    v = 0.95 * opt.state[w]["exp_avg_sq"] + 0.05 * g * g
    expected = (1 - 0.8**t) * ((v / (1 - 0.95**t)).sqrt() + 1e-3)
    if name == "radam":
        rho_inf = 2 / 0.05 - 1
        rho_t = rho_inf - 2 * t * 0.95**t / (1 - 0.95**t)
        assert rho_t > 5
        r = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
        expected = (1 - 0.8**t) * (v.sqrt() + 1e-3) / math.sqrt(1 - 0.95**t) / r  # torch adds eps to sqrt(v)
    torch.testing.assert_close(P, expected)
    # The update torch.optim then applies is -lr * m_t / P.
    m = 0.8 * opt.state[w]["exp_avg"] + 0.2 * g
    before = w.detach().clone()
    opt.zero_grad()
    w.grad = g.clone()
    opt.step()
    torch.testing.assert_close(w.detach(), before - 0.01 * m / P)


def test_adam_preconditioner_before_first_step():
    w = torch.nn.Parameter(torch.ones(3))
    opt = build_optimizer(AdamConfig(eps=1e-30), [w], lr=0.1)
    g = torch.tensor([1.0, -2.0, 3.0])
    P = adam_preconditioner(opt, [g])[0]
    torch.testing.assert_close(P, 0.1 * g.abs())  # (1 - beta1) * |g|


def test_fcn_sp_init_variances_and_mup_readout():
    torch.manual_seed(0)
    sp = build_model(FCNConfig(depth=3, width=2000), (1, 8, 8), 10)
    assert sp.layers[1].weight.var().item() == pytest.approx(2 / 2000, rel=0.02)
    assert sp.layers[2].weight.var().item() == pytest.approx(1 / 2000, rel=0.05)
    torch.manual_seed(0)
    mup = build_model(FCNConfig(depth=3, width=2000, parametrization="mup"), (1, 8, 8), 10)
    x = torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(mup(x), sp(x) / math.sqrt(2000))


def test_wrn_16_4_shape_and_size():
    model = build_model(WRNConfig(depth=16, widen_factor=4), (3, 32, 32), 10)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    n = sum(p.numel() for p in model.parameters())
    assert 2.7e6 < n < 2.8e6  # WRN-16-4 has ~2.75M parameters
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_cnn_runs_on_small_images():
    model = build_model(CNNConfig(channels=4, depth=3), (1, 8, 8), 10)
    assert model(torch.randn(3, 1, 8, 8)).shape == (3, 10)
