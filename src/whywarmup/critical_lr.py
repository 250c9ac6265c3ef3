"""Critical learning rate by the loss-catapult search (docs/science.md section 5, the paper's Algorithms 1-2).

Probe(eta): from the current parameters take ONE update of the run's own optimizer (its type,
hyperparameters and state) with the gradient of a fixed batch B, and evaluate the loss on B. The loss
"catapults" when Probe(eta) > L_0 (1 + eps) (NaN/Inf counts as a catapult).

Every update rule used here (SGD with or without momentum, Adam, RAdam, GI-Adam) moves the parameters by
eta times a direction that does not depend on eta, given the optimizer's state and the gradient. The
direction is computed once, by stepping a copy of the model and optimizer with lr = 1; each probe is then one
forward pass. Cost: 1 gradient + (#doublings + #bisections) forward passes.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .losses import LossFn

OptimizerFactory = Callable[[list[nn.Parameter], float], torch.optim.Optimizer]


def bracket(
    rises: Callable[[float], bool],
    eta: float,
    tol: float,
    spent: Callable[[], int],
    max_probes: int,
    max_lr: float | None = None,
) -> tuple[float, float]:
    """The first eta at which `rises` turns true, bracketed: (lower, upper) with rises(upper) and not rises(lower),
    found by doubling from `eta` (halving when it already rises), then bisecting until (upper - lower) / upper < tol.
    upper is inf when nothing rose up to `max_lr` or the probe budget (`spent()` probes used of `max_probes`); lower
    is 0 when every halving within the budget still rose."""
    if rises(eta):
        while True:
            if spent() >= max_probes:
                return 0.0, eta
            eta /= 2
            if not rises(eta):
                break
        lower, upper = eta, 2 * eta
    else:
        while True:
            if max_lr is not None and eta >= max_lr or spent() >= max_probes:
                return eta, math.inf
            eta *= 2
            if rises(eta):
                break
        lower, upper = eta / 2, eta
    while (upper - lower) / upper >= tol and spent() < max_probes:
        mid = 0.5 * (lower + upper)
        if rises(mid):
            upper = mid
        else:
            lower = mid
    return lower, upper


@dataclass
class CriticalLRResult:
    lr: float  # the estimate: the largest probed eta that did not catapult (the bracket's lower end)
    lower: float
    upper: float  # inf when no probe up to max_lr catapulted
    forward_passes: int
    gradients: int
    initial_loss: float

    @property
    def bracketed(self) -> bool:
        return math.isfinite(self.upper)


class CatapultProbe:
    """Loss after one optimizer update of size eta, from fixed parameters, on a fixed batch."""

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        batch: tuple[torch.Tensor, torch.Tensor],
        make_optimizer: OptimizerFactory,
        optimizer_state: dict[str, Any] | None = None,
    ):
        self.model = copy.deepcopy(model)
        self.loss_fn = loss_fn
        self.x, self.y = batch
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = make_optimizer(self.params, 1.0)
        if optimizer_state is not None:
            optimizer.load_state_dict(copy.deepcopy(optimizer_state))
        for group in optimizer.param_groups:
            group["lr"] = 1.0
        loss = self.loss_fn(self.model(self.x), self.y)
        grads = torch.autograd.grad(loss, self.params)
        self.initial_loss = loss.item()
        self.theta0 = [p.detach().clone() for p in self.params]
        for p, g in zip(self.params, grads):
            p.grad = g
        optimizer.step()
        self.direction = [t0 - p.detach() for t0, p in zip(self.theta0, self.params)]  # the update at lr = 1
        self.forward_passes = 0

    @torch.no_grad()
    def __call__(self, eta: float) -> float:
        for p, t0, d in zip(self.params, self.theta0, self.direction):
            p.copy_(t0 - eta * d)
        self.forward_passes += 1
        return self.loss_fn(self.model(self.x), self.y).item()


def find_critical_lr(
    model: nn.Module,
    loss_fn: LossFn,
    batch: tuple[torch.Tensor, torch.Tensor],
    make_optimizer: OptimizerFactory,
    *,
    optimizer_state: dict[str, Any] | None = None,
    eta_0: float = 1e-4,
    max_lr: float | None = None,
    eps: float = 0.01,
    tol: float = 0.05,
    max_probes: int = 200,
) -> CriticalLRResult:
    """Exponential then binary search for the smallest eta whose one-step loss exceeds L_0 (1 + eps).

    Doubling starts at `eta_0` (halving instead if eta_0 already catapults) and stops at the first catapult or
    once eta >= `max_lr` (then `upper` is inf and `lr` >= max_lr: no warmup needed up to max_lr). Bisection
    stops when (upper - lower) / upper < tol. `optimizer_state` (an optimizer's state_dict) probes from a
    trained optimizer's state instead of a fresh one. The model is not changed.
    """
    probe = CatapultProbe(model, loss_fn, batch, make_optimizer, optimizer_state)
    threshold = probe.initial_loss * (1 + eps)

    def catapults(eta: float) -> bool:
        value = probe(eta)
        return not math.isfinite(value) or value > threshold

    def result(lower: float, upper: float) -> CriticalLRResult:
        return CriticalLRResult(lower, lower, upper, probe.forward_passes, 1, probe.initial_loss)

    lower, upper = bracket(catapults, eta_0, tol, lambda: probe.forward_passes, max_probes, max_lr)
    return result(lower, upper)


@dataclass
class CriticalSharpness:
    """lambda_c = 2 / eta_c along an update direction d (docs/science.md section 10)."""

    value: float  # 2 / eta_c; 0 when no probe raised the loss (upper inf), inf when every probe did (lower 0)
    eta_c: float  # the middle of the bracket
    lower: float  # the largest probed eta whose loss did not exceed L(theta)
    upper: float  # the smallest probed eta whose loss did (inf: none did)
    forward_passes: int


@torch.no_grad()
def critical_sharpness(
    model: nn.Module,
    loss_fn: LossFn,
    batch: tuple[torch.Tensor, torch.Tensor],
    direction: list[torch.Tensor],
    *,
    eta_0: float | None = None,
    tol: float = 1 / 16,
    initial_loss: float | None = None,
    max_probes: int = 64,
) -> CriticalSharpness:
    """The critical sharpness along `direction` d (one tensor per parameter, in model.parameters() order: the update
    per unit learning rate): eta_c = min{eta > 0 : L(theta - eta d) > L(theta)} on `batch`, lambda_c = 2 / eta_c.

    Exponential search from `eta_0` (default 1; the previous step's eta_c makes it a few probes), doubling until the
    loss exceeds L(theta) or halving until it does not, then bisection until 1 - lower / upper < `tol`. Each probe is
    one forward pass; `initial_loss` (L(theta) on the batch, e.g. from the training step's forward) saves one more.
    The search is `bracket`, the one find_critical_lr uses.
    A NaN or infinite loss counts as exceeding. On a quadratic, lambda_c = d.H.d / d.g exactly (a weighted mean of
    the Hessian's eigenvalues, at most the top one when d is the gradient). The model is left as it was."""
    params = list(model.parameters())
    if len(direction) != len(params):
        raise ValueError(f"direction has {len(direction)} tensors for {len(params)} parameters")
    theta = [p.detach().clone() for p in params]
    x, y = batch
    passes = 0

    def loss_at(eta: float) -> float:
        nonlocal passes
        for p, t, d in zip(params, theta, direction):
            p.copy_(t - eta * d)
        passes += 1
        return loss_fn(model(x), y).item()

    try:
        base = loss_at(0.0) if initial_loss is None else initial_loss

        def rises(eta: float) -> bool:
            value = loss_at(eta)
            return not math.isfinite(value) or value > base

        start = 1.0 if eta_0 is None or not (eta_0 > 0) else eta_0
        lower, upper = bracket(rises, start, tol, lambda: passes, max_probes)
        if upper == math.inf:  # no probe raised the loss
            return CriticalSharpness(0.0, math.inf, lower, math.inf, passes)
        if lower == 0.0:  # every probe raised it: d is not a descent direction here
            return CriticalSharpness(math.inf, 0.0, 0.0, upper, passes)
        eta_c = 0.5 * (lower + upper)
        return CriticalSharpness(2 / eta_c, eta_c, lower, upper, passes)
    finally:
        for p, t in zip(params, theta):
            p.copy_(t)
