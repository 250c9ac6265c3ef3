import pytest
import torch

from whywarmup.curvature import HessianOperator, lanczos_top, top_hessian_eigen
from whywarmup.losses import cross_entropy_loss, mse_loss
from whywarmup.models import build_model
from whywarmup.sections import CNNConfig, FCNConfig

from .conftest import dense_hessian


def _data(n: int, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 4, 4, generator=g, dtype=dtype)
    y = torch.randint(0, 5, (n,), generator=g)
    return x, y


def _model(kind: str, activation: str, dtype: torch.dtype):
    torch.manual_seed(1)
    cfg = (
        FCNConfig(depth=3, width=12, activation=activation, bias=True)
        if kind == "fcn"
        else CNNConfig(channels=3, depth=1, activation=activation)
    )
    return build_model(cfg, (1, 4, 4), 5).to(dtype)


CASES = [
    ("fcn", "relu", "mse"),
    ("fcn", "tanh", "mse"),
    ("fcn", "relu", "cross_entropy"),
    ("fcn", "tanh", "cross_entropy"),
    ("cnn", "relu", "mse"),
    ("cnn", "tanh", "cross_entropy"),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind,activation,loss", CASES)
def test_top_eigenvalue_matches_dense_hessian(kind, activation, loss, dtype):
    model = _model(kind, activation, dtype)
    loss_fn = mse_loss if loss == "mse" else cross_entropy_loss
    x, y = _data(40, dtype)
    batches = [(x[:7], y[:7]), (x[7:30], y[7:30]), (x[30:], y[30:])]  # unequal sizes
    exact = torch.linalg.eigvalsh(dense_hessian(model, loss_fn, batches).double())[-1].item()
    for arg in (batches, (x, y)):  # several batches, and the same data as one batch
        res = top_hessian_eigen(model, loss_fn, arg)  # default tol 1e-3
        assert res.converged
        assert res.value == pytest.approx(exact, rel=1e-3)


def test_chunking_gives_the_hessian_of_the_mean_loss():
    model = _model("fcn", "tanh", torch.float64)
    x, y = _data(33, torch.float64)
    op_whole = HessianOperator(model, mse_loss, (x, y))
    op_chunked = HessianOperator(model, mse_loss, (x, y), chunk_size=5)
    v = torch.randn(op_whole.size, dtype=torch.float64)
    torch.testing.assert_close(op_whole(v), op_chunked(v))
    H = dense_hessian(model, mse_loss, [(x, y)])
    torch.testing.assert_close(op_chunked(v), H @ v)


def test_all_hvp_modes_agree_with_the_dense_hessian():
    model = _model("cnn", "relu", torch.float64)
    x, y = _data(10, torch.float64)
    op = HessianOperator(model, cross_entropy_loss, (x, y))
    assert op.mode == "cached-reverse"  # one chunk
    H = dense_hessian(model, cross_entropy_loss, [(x, y)])
    for mode in ("cached-reverse", "forward-over-reverse", "reverse-over-reverse"):
        op.mode = mode
        for _ in range(2):  # the cached graph is reused
            v = torch.randn(op.size, dtype=torch.float64)
            torch.testing.assert_close(op(v), H @ v)
    # Several chunks on CPU: double backward (measured faster there than forward-over-reverse); forced modes.
    assert HessianOperator(model, cross_entropy_loss, (x, y), chunk_size=3).mode == "reverse-over-reverse"
    # cached-reverse forced on several chunks keeps one graph per chunk (it used to read the first chunk only)
    for mode in ("cached-reverse", "forward-over-reverse", "reverse-over-reverse"):
        chunked = HessianOperator(model, cross_entropy_loss, (x, y), chunk_size=3, mode=mode)
        assert chunked.mode == mode
        v = torch.randn(chunked.size, dtype=torch.float64)
        torch.testing.assert_close(chunked(v), H @ v)
    with pytest.raises(ValueError, match="unknown HVP mode"):
        HessianOperator(model, cross_entropy_loss, (x, y), mode="finite-differences")


def test_preconditioned_eigenvalue_matches_dense():
    model = _model("fcn", "relu", torch.float64)
    x, y = _data(30, torch.float64)
    g = torch.Generator().manual_seed(3)
    P = [torch.rand(p.shape, generator=g, dtype=torch.float64) * 10 + 0.01 for p in model.parameters()]
    p_flat = torch.cat([p.reshape(-1) for p in P])
    H = dense_hessian(model, mse_loss, [(x, y)])
    M = H / p_flat.sqrt()[:, None] / p_flat.sqrt()[None, :]
    exact = torch.linalg.eigvalsh(M)[-1].item()
    res = top_hessian_eigen(model, mse_loss, (x, y), preconditioner=P, tol=1e-4, max_matvecs=200)
    assert res.value == pytest.approx(exact, rel=1e-3)
    # Same spectrum as P^-1 H (not symmetric): its largest real eigenvalue.
    assert torch.linalg.eigvals(H / p_flat[:, None]).real.max().item() == pytest.approx(exact, rel=1e-6)


def test_largest_algebraic_not_largest_magnitude():
    A = torch.diag(torch.tensor([-10.0, 1.0, 2.0, 3.0], dtype=torch.float64))
    value, vec, _, converged = lanczos_top(
        lambda v: A @ v, torch.ones(4, dtype=torch.float64), tol=1e-8, max_matvecs=10
    )
    assert converged and value == pytest.approx(3.0)
    assert abs(vec[3].item()) == pytest.approx(1.0)


def test_warm_start_converges_faster_and_agrees():
    model = _model("fcn", "tanh", torch.float64)
    x, y = _data(40, torch.float64)
    cold = top_hessian_eigen(model, mse_loss, (x, y), tol=1e-6)
    warm = top_hessian_eigen(model, mse_loss, (x, y), tol=1e-6, init=cold.vector)
    assert warm.value == pytest.approx(cold.value, rel=1e-6)
    assert warm.matvecs < cold.matvecs


def test_non_convergence_is_reported_not_hidden():
    torch.manual_seed(0)
    A = torch.diag(torch.linspace(0, 1, 500, dtype=torch.float64))  # dense, gapless spectrum
    value, _, used, converged = lanczos_top(
        lambda v: A @ v, torch.randn(500, dtype=torch.float64), tol=1e-12, max_matvecs=5
    )
    assert not converged and used == 5


def test_warm_start_from_a_former_top_eigenvector_is_not_trusted_too_early():
    """Eigenvalues cross during training: the warm start is then close to what is now the 2nd eigenvector."""
    n = 400
    g = torch.Generator().manual_seed(0)
    spectrum = torch.cat([torch.tensor([1.0, 0.97]), torch.rand(n - 2, generator=g) * 0.9 - 0.2]).double()
    A = torch.diag(spectrum)
    for _ in range(20):
        start = 0.05 * torch.randn(n, generator=g, dtype=torch.float64) / n**0.5
        start[1], start[0] = 1.0, 0.05
        value, *_ = lanczos_top(lambda v: A @ v, start, tol=1e-3, max_matvecs=100)
        assert value == pytest.approx(1.0, rel=1e-3)
