"""The GPT-2-style Transformer (whywarmup.transformer): causal, token-level losses, and its sharpness and Adam's
preconditioned sharpness against a dense Hessian in every HVP mode (double backward through attention)."""

import math

import pytest
import torch

from whywarmup.curvature import HessianOperator, top_hessian_eigen
from whywarmup.losses import accuracy, cross_entropy_loss, mse_loss
from whywarmup.optim import adam_preconditioner, build_optimizer
from whywarmup.sections import AdamConfig
from whywarmup.transformer import Transformer, TransformerConfig, sinusoidal_positions

from .conftest import dense_hessian

VOCAB, CONTEXT = 5, 4


def _model(dtype=torch.float64, **kw) -> Transformer:
    torch.manual_seed(0)
    cfg = TransformerConfig(depth=1, width=4, heads=2, **kw)
    return Transformer(cfg, VOCAB, CONTEXT).to(dtype)


def _tokens(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    stream = torch.randint(0, VOCAB, (n, CONTEXT + 1), generator=g)
    return stream[:, :-1], stream[:, 1:]  # next-token targets


def test_logits_shape_causality_and_heads_validation():
    model = _model()
    x, _ = _tokens(3)
    out = model(x)
    assert out.shape == (3, CONTEXT, VOCAB)
    # causal: changing the last token changes no earlier position's logits
    x2 = x.clone()
    x2[:, -1] = (x2[:, -1] + 1) % VOCAB
    torch.testing.assert_close(model(x2)[:, :-1], out[:, :-1])
    assert not torch.allclose(model(x2)[:, -1], out[:, -1])
    with pytest.raises(ValueError, match="heads do not divide width"):
        TransformerConfig(width=10, heads=4)
    with pytest.raises(ValueError, match="longer than the model's context"):
        model(torch.zeros(1, CONTEXT + 1, dtype=torch.long))


def test_sinusoidal_positions_and_init_scales():
    table = sinusoidal_positions(4, 6)
    assert table[0].tolist() == [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    assert table[3, 0].item() == pytest.approx(math.sin(3)) and table[3, 1].item() == pytest.approx(math.cos(3))
    torch.manual_seed(0)
    big = Transformer(TransformerConfig(depth=2, width=256, heads=4), 1000, 8)
    assert big.tokens.weight.std().item() == pytest.approx(0.02, rel=0.02)
    assert big.blocks[0].attn.proj.weight.std().item() == pytest.approx(0.02 / 2, rel=0.05)  # / sqrt(2 depth)
    assert isinstance(_model(final_norm=False).norm, torch.nn.Identity)


def test_token_losses_weight_every_token_alike():
    torch.manual_seed(1)
    logits = torch.randn(2, 3, VOCAB, dtype=torch.float64)
    y = torch.randint(0, VOCAB, (2, 3))
    per_token = -torch.log_softmax(logits, -1).gather(-1, y[..., None]).squeeze(-1)
    assert cross_entropy_loss(logits, y).item() == pytest.approx(per_token.mean().item())
    assert accuracy(logits, y).item() == pytest.approx((logits.argmax(-1) == y).double().mean().item())
    onehot = torch.nn.functional.one_hot(y, VOCAB).double()
    assert mse_loss(logits, y).item() == pytest.approx(0.5 * (logits - onehot).pow(2).mean().item())


CASES = [
    {"norm_position": "pre", "final_norm": True, "position": "sinusoidal"},
    {"norm_position": "post", "final_norm": True, "position": "learned"},
    {"norm_position": "pre", "final_norm": False, "position": "learned", "parametrization": "mup"},
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c.values())))
def test_top_eigenvalue_matches_dense_hessian_in_every_hvp_mode(case):
    model = _model(**case)
    x, y = _tokens(6)
    batches = [(x[:2], y[:2]), (x[2:], y[2:])]  # two chunks of unequal size
    H = dense_hessian(model, cross_entropy_loss, batches).double()
    exact = torch.linalg.eigvalsh(H)[-1].item()
    v = torch.randn(H.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    for mode in ("cached-reverse", "forward-over-reverse", "reverse-over-reverse"):
        op = HessianOperator(model, cross_entropy_loss, batches, mode=mode)
        torch.testing.assert_close(op(v), H @ v)  # forward-over-reverse may fall back to double backward
        res = top_hessian_eigen(model, cross_entropy_loss, batches, hvp_mode=mode, tol=1e-6, max_matvecs=200)
        assert res.converged and res.value == pytest.approx(exact, rel=1e-5), mode


def test_adam_preconditioned_sharpness_matches_dense():
    model = _model()
    x, y = _tokens(6)
    opt = build_optimizer(AdamConfig(name="adam"), list(model.parameters()), 1e-3)
    loss = cross_entropy_loss(model(x), y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    P = adam_preconditioner(opt, grads)
    p_flat = torch.cat([p.reshape(-1) for p in P])
    H = dense_hessian(model, cross_entropy_loss, [(x, y)]).double()
    exact = torch.linalg.eigvalsh(H / p_flat.sqrt()[:, None] / p_flat.sqrt()[None, :])[-1].item()
    res = top_hessian_eigen(model, cross_entropy_loss, (x, y), preconditioner=P, tol=1e-6, max_matvecs=300)
    assert res.converged and res.value == pytest.approx(exact, rel=1e-5)
