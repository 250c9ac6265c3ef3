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


def bracket_around(
    rises: Callable[[float], bool], guess: float, tol: float, spent: Callable[[], int], max_probes: int
) -> tuple[float, float]:
    """Like `bracket`, but started from a guess of where `rises` turns true (the previous step's eta_c): the first two
    probes already bracket the guess within `tol`, so a value that moved less than that since costs 2 probes.

    Probes guess / q and guess * q with q^2 just under 1 / (1 - tol); if both lie on one side, steps away from the guess
    by factors q^2, q^4, q^8, ... up to 2 (growing, so that a jump costs a few probes more, capped so that the search
    never leaps to where a step is below the loss's rounding), then bisects geometrically until 1 - lower / upper < tol.
    Returns (lower, upper) as `bracket` does: upper inf when nothing rose within the probe budget, lower 0 when
    everything did."""
    q = (1 - 0.9 * tol) ** -0.5
    lower, upper = 0.0, math.inf
    low = guess / q
    if rises(low):
        upper, factor = low, q * q
        while spent() < max_probes:
            eta = upper / factor
            if not rises(eta):
                lower = eta
                break
            upper, factor = eta, min(2.0, factor * factor)
    else:
        lower, factor = low, q * q
        while spent() < max_probes:
            eta = lower * factor
            if rises(eta):
                upper = eta
                break
            lower, factor = eta, min(2.0, factor * factor)
    if lower == 0.0 or upper == math.inf:
        return lower, upper
    while 1 - lower / upper >= tol and spent() < max_probes:
        mid = math.sqrt(lower * upper)
        if rises(mid):
            upper = mid
        else:
            lower = mid
    return lower, upper


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

    The search (`bracket_around`) starts from `eta_0` (default 1; the previous step's eta_c makes it 2 probes while
    eta_c moves less than `tol` per step), widens geometrically until the loss exceeds L(theta) on one side and not on
    the other, then bisects until 1 - lower / upper < `tol`. Each probe is one forward pass; `initial_loss` (L(theta)
    on the batch, e.g. from the training step's forward) saves one more.
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
            p.copy_(t - eta * d)  # eta * d overflows to inf, not to an error, for a huge eta
        passes += 1
        return loss_fn(model(x), y).item()

    if all(not d.any() for d in direction):  # no update (e.g. every ReLU dead): nothing can raise the loss
        return CriticalSharpness(0.0, math.inf, 0.0, math.inf, 0)
    try:
        base = loss_at(0.0) if initial_loss is None else initial_loss

        def rises(eta: float) -> bool:
            value = loss_at(eta)
            return not math.isfinite(value) or value > base

        start = 1.0 if eta_0 is None or not (eta_0 > 0 and math.isfinite(eta_0)) else eta_0
        lower, upper = bracket_around(rises, start, tol, lambda: passes, max_probes)
        if upper == math.inf:  # no probe raised the loss
            return CriticalSharpness(0.0, math.inf, lower, math.inf, passes)
        if lower == 0.0:  # every probe raised it: d is not a descent direction here
            return CriticalSharpness(math.inf, 0.0, 0.0, upper, passes)
        eta_c = 0.5 * (lower + upper)
        return CriticalSharpness(2 / eta_c, eta_c, lower, upper, passes)
    finally:
        for p, t in zip(params, theta):
            p.copy_(t)


class UpdateDirection:
    """The optimizer's next update per unit learning rate, d (theta_{s+1} = theta_s - lr d), read without touching the
    optimizer or the model: a shadow optimizer of the same kind, built once by `make_optimizer`, takes the step at
    lr = 1 from a float64 copy of the parameters, the gradients and the optimizer's state (so d is exact to float32
    even where lr d is far below the parameters' rounding, early in a warmup). Valid for every update rule here: each
    moves the parameters by lr times a direction that does not depend on lr (module docstring)."""

    def __init__(self, params: list[torch.Tensor], make_optimizer: OptimizerFactory):
        self.params = params
        self.shadow = [torch.zeros_like(p, dtype=torch.float64, requires_grad=True) for p in params]
        self.optimizer = make_optimizer(self.shadow, 1.0)

    @torch.no_grad()
    def __call__(self, optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
        self.optimizer.state.clear()
        for p, q in zip(self.params, self.shadow):
            q.copy_(p)
            q.grad = None if p.grad is None else p.grad.to(torch.float64)
            state = optimizer.state.get(p)
            if state:
                self.optimizer.state[q] = {k: _shadow_entry(v, p) for k, v in state.items()}
        for group in self.optimizer.param_groups:
            group["lr"] = 1.0
        self.optimizer.step()
        return [(p.to(torch.float64) - q).to(p.dtype) for p, q in zip(self.params, self.shadow)]


def _shadow_entry(value: Any, param: torch.Tensor) -> Any:
    """An optimizer-state entry for the float64 shadow: per-element buffers in float64, anything else copied."""
    if isinstance(value, torch.Tensor):
        per_element = value.is_floating_point() and value.shape == param.shape
        return value.to(torch.float64, copy=True) if per_element else value.clone()
    return copy.deepcopy(value)
