"""Sharpness: the top (largest algebraic) Hessian eigenvalue by Lanczos on torch.func Hessian-vector products.

The loss whose Hessian is measured is the sample-weighted mean loss over all measurement batches, evaluated
in chunks so that the measurement set can be larger than what fits in one forward pass:
    H = sum_i (n_i / N) H_i,   H_i = Hessian of the mean loss on chunk i.
With a diagonal preconditioner P (Adam, docs/science.md section 3) the operator is P^-1/2 H P^-1/2, which has the
same spectrum as P^-1 H.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, grad, jvp

from .losses import LossFn

Batch = tuple[torch.Tensor, torch.Tensor]
MIN_ITERS_FOR_GAP_BOUND = 5
HVP_MODES = ("auto", "cached-reverse", "forward-over-reverse", "reverse-over-reverse")


@dataclass
class EigenResult:
    value: float
    vector: torch.Tensor  # flat, unit norm, in the order of model.named_parameters()
    matvecs: int
    converged: bool


def _chunks(batches: Batch | Sequence[Batch], chunk_size: int | None) -> list[Batch]:
    if isinstance(batches, tuple) and len(batches) == 2 and isinstance(batches[0], torch.Tensor):
        batches = [batches]
    out: list[Batch] = []
    for x, y in batches:
        step = chunk_size or len(x)
        out += [(x[i : i + step], y[i : i + step]) for i in range(0, len(x), step)]
    return out


class HessianOperator:
    """v -> H v for flat vectors v, H the Hessian of the sample-weighted mean loss over `batches`."""

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        batches: Batch | Sequence[Batch],
        *,
        chunk_size: int | None = None,
        dtype: torch.dtype | None = None,
        mode: str = "auto",
    ):
        self.model = model
        self.loss_fn = loss_fn
        named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
        self.names = [k for k, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.numels = [p.numel() for _, p in named]
        self.dtype = dtype or named[0][1].dtype
        self.params = {k: p.detach().to(self.dtype) for k, p in named}
        self.buffers = {k: b.to(self.dtype) if b.is_floating_point() else b for k, b in model.named_buffers()}
        chunks = _chunks(batches, chunk_size)
        total = sum(len(x) for x, _ in chunks)
        # floating inputs follow the measurement dtype; token ids stay integers
        self.chunks = [(x.to(self.dtype) if x.is_floating_point() else x, y, len(x) / total) for x, y in chunks]
        self.size = sum(self.numels)
        self.device = named[0][1].device
        self.matvecs = 0
        # auto -- one chunk: build the gradient's graph once and spend one backward pass per HVP (1.8x a
        # gradient on CPU for the default FCN). Several chunks: keeping every chunk's graph would cost memory
        # proportional to the measurement set, so each HVP recomputes the chunk's gradient: by forward-over-
        # reverse (torch.func.jvp of grad) on CUDA, by double backward on CPU, where it measured 1.4-1.7x
        # faster than forward-over-reverse (benchmarks/curvature.py).
        if mode not in HVP_MODES:
            raise ValueError(f"unknown HVP mode {mode!r}; one of {HVP_MODES}")
        if mode == "auto":
            if len(self.chunks) == 1:
                mode = "cached-reverse"
            else:
                mode = "forward-over-reverse" if self.device.type == "cuda" else "reverse-over-reverse"
        self.mode = mode
        self._graphs: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}  # cached-reverse, per chunk

    def _loss(self, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(functional_call(self.model, (params, self.buffers), (x,)), y)

    def unflatten(self, v: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: t.view(s) for k, t, s in zip(self.names, v.split(self.numels), self.shapes)}

    def _cached_hvp(self, v: dict[str, torch.Tensor], chunk: int) -> list[torch.Tensor]:
        """One backward pass through the chunk's gradient graph, built on the first call and kept (memory grows
        with the number of chunks: auto picks this mode for one chunk only)."""
        if chunk not in self._graphs:
            leaves = [p.detach().requires_grad_(True) for p in self.params.values()]
            x, y, _ = self.chunks[chunk]
            loss = self._loss(dict(zip(self.names, leaves)), x, y)
            self._graphs[chunk] = (leaves, list(torch.autograd.grad(loss, leaves, create_graph=True)))
        leaves, grads = self._graphs[chunk]
        live = [i for i, g in enumerate(grads) if g.requires_grad]  # a gradient constant in theta has H = 0
        hv = torch.autograd.grad(
            [grads[i] for i in live],
            leaves,
            grad_outputs=[v[self.names[i]] for i in live],
            retain_graph=True,
            allow_unused=True,
        )
        return [torch.zeros_like(p) if h is None else h for h, p in zip(hv, leaves)]

    def _hvp_chunk(self, v: dict[str, torch.Tensor], chunk: int) -> list[torch.Tensor]:
        x, y, _ = self.chunks[chunk]
        if self.mode == "cached-reverse":
            return self._cached_hvp(v, chunk)
        if self.mode == "forward-over-reverse":
            try:
                _, hv = jvp(lambda p: grad(self._loss)(p, x, y), (self.params,), (v,))
                return [hv[k] for k in self.names]
            except (RuntimeError, NotImplementedError):
                self.mode = "reverse-over-reverse"  # an op without forward-mode AD: fall back for good
        params = {k: p.detach().requires_grad_(True) for k, p in self.params.items()}
        g = torch.autograd.grad(self._loss(params, x, y), list(params.values()), create_graph=True)
        return list(torch.autograd.grad(g, list(params.values()), grad_outputs=[v[k] for k in self.names]))

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        self.matvecs += 1
        vd = self.unflatten(v)
        out = torch.zeros_like(v)
        for i, (_, _, weight) in enumerate(self.chunks):
            out.add_(torch.cat([h.reshape(-1) for h in self._hvp_chunk(vd, i)]), alpha=weight)
        return out


def lanczos_top(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    init: torch.Tensor,
    *,
    tol: float,
    max_matvecs: int,
) -> tuple[float, torch.Tensor, int, bool]:
    """Largest algebraic eigenvalue of a symmetric operator by Lanczos with full reorthogonalization.

    Stops when the error bound of the top Ritz value is below tol * |theta|: r = beta_j |s_j|, the Ritz residual
    norm (rigorous), or from the 6th Lanczos vector on min(r, r^2 / gap) with gap the distance to the next Ritz
    value (Kato-Temple with the Ritz estimate of the gap).
    Returns (value, unit eigenvector, matvecs spent, converged).
    """
    q = init / init.norm()
    basis: list[torch.Tensor] = []
    alphas: list[float] = []
    betas: list[float] = []
    theta, s = float("nan"), None
    for j in range(max_matvecs):
        basis.append(q)
        w = matvec(q)
        alpha = torch.dot(w, q).item()
        alphas.append(alpha)
        w = w - alpha * q
        if j > 0:
            w = w - betas[-1] * basis[-2]
        Q = torch.stack(basis)
        for _ in range(2):  # classical Gram-Schmidt, twice, against all previous Lanczos vectors
            w = w - Q.T @ (Q @ w)
        beta = w.norm().item()
        T = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if j > 0:
            off = torch.tensor(betas, dtype=torch.float64)
            T += torch.diag(off, 1) + torch.diag(off, -1)
        evals, evecs = torch.linalg.eigh(T)
        theta, s = evals[-1].item(), evecs[:, -1]
        resid = beta * abs(s[-1].item())
        gap = (evals[-1] - evals[-2]).item() if j > 0 else float("inf")
        # The gap to the next Ritz value overestimates the true gap while the Krylov space is small (a warm
        # start then stopped at 2 HVPs with 3% error); trust r^2/gap only from the 6th Lanczos vector on.
        trust_gap = gap > 0 and j >= MIN_ITERS_FOR_GAP_BOUND
        bound = min(resid, resid * resid / gap) if trust_gap else resid
        scale = max(abs(theta), 1e-30)
        if j > 0 and bound <= tol * scale or beta <= 1e-10 * max(scale, abs(alpha)):
            vec = Q.T @ s.to(Q.dtype)
            return theta, vec / vec.norm(), j + 1, True
        betas.append(beta)
        q = w / beta
    Q = torch.stack(basis)
    vec = Q.T @ s.to(Q.dtype)
    return theta, vec / vec.norm(), max_matvecs, False


def top_hessian_eigen(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Batch | Sequence[Batch],
    *,
    preconditioner: Sequence[torch.Tensor] | None = None,
    init: torch.Tensor | None = None,
    tol: float = 1e-3,
    max_matvecs: int = 100,
    dtype: torch.dtype | None = None,
    chunk_size: int | None = None,
    generator: torch.Generator | None = None,
    hvp_mode: str = "auto",
) -> EigenResult:
    """Top (largest algebraic) eigenvalue of the Hessian of the mean loss over `batches`.

    With `preconditioner` (the diagonal P, one tensor per parameter) it is the top eigenvalue of
    P^-1/2 H P^-1/2. `init` warm-starts Lanczos from a previous result's `vector`. If Lanczos has not
    converged after `max_matvecs`, it retries once from a random start; `converged` is False if that
    fails too, and the value must then not be reported as a measurement.
    """
    with full_fp32_precision():
        return _top_hessian_eigen(
            model, loss_fn, batches, preconditioner, init, tol, max_matvecs, dtype, chunk_size, generator, hvp_mode
        )


@contextmanager
def full_fp32_precision() -> Iterator[None]:
    """TF32 off for a measurement (CUDA matmuls and cuDNN convolutions; on by default for convolutions on Ampere
    and newer GPUs): its 10-bit mantissa adds ~1e-3 relative noise to every Hessian-vector product, as large as
    Lanczos's tolerance. Training keeps whatever the user chose; the previous settings come back afterwards."""
    matmul, conv = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(matmul)
        torch.backends.cudnn.allow_tf32 = conv


def _top_hessian_eigen(
    model, loss_fn, batches, preconditioner, init, tol, max_matvecs, dtype, chunk_size, generator, hvp_mode
) -> EigenResult:
    op = HessianOperator(model, loss_fn, batches, chunk_size=chunk_size, dtype=dtype, mode=hvp_mode)
    matvec: Callable[[torch.Tensor], torch.Tensor] = op
    if preconditioner is not None:
        p_inv_sqrt = torch.cat([p.detach().reshape(-1).to(op.dtype) for p in preconditioner]).rsqrt()
        matvec = lambda v: p_inv_sqrt * op(p_inv_sqrt * v)  # noqa: E731

    def random_start() -> torch.Tensor:
        v = torch.randn(op.size, generator=generator, dtype=op.dtype, device="cpu")
        return v.to(op.device)

    start = init.to(op.device, op.dtype) if init is not None else random_start()
    value, vector, _, converged = lanczos_top(matvec, start, tol=tol, max_matvecs=max_matvecs)
    if not converged:
        value, vector, _, converged = lanczos_top(matvec, random_start(), tol=tol, max_matvecs=max_matvecs)
    return EigenResult(value=value, vector=vector, matvecs=op.matvecs, converged=converged)
