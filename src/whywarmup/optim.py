"""Optimizers (torch.optim SGD, Adam, RAdam), their stability thresholds, and Adam's preconditioner."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch

from .sections import AdamConfig, OptimizerConfig, SGDConfig


def build_optimizer(cfg: OptimizerConfig, params: Iterable[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    if isinstance(cfg, SGDConfig):
        return torch.optim.SGD(
            params, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
        )
    cls = {"adam": torch.optim.Adam, "radam": torch.optim.RAdam}[cfg.name]
    return cls(params, lr=lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, weight_decay=cfg.weight_decay)


def is_adaptive(cfg: OptimizerConfig) -> bool:
    return isinstance(cfg, AdamConfig)


def stability_constant(cfg: OptimizerConfig) -> float:
    """c such that the update is unstable when lr * sharpness > c (PAPER.md section 3).

    SGD with heavy-ball momentum beta: 2 + 2 beta (2 for plain GD). Adam-family: (2 + 2 beta1) / (1 - beta1),
    to be compared with the *preconditioned* sharpness (38 for beta1 = 0.9).
    """
    if isinstance(cfg, SGDConfig):
        return 2.0 + 2.0 * cfg.momentum
    return (2.0 + 2.0 * cfg.beta1) / (1.0 - cfg.beta1)


def _radam_rectification(step: int, beta2: float) -> float | None:
    """RAdam's variance rectification r_t, or None while the update is un-adapted (rho_t <= 5)."""
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    rho_t = rho_inf - 2.0 * step * beta2**step / (1.0 - beta2**step)
    if rho_t <= 5.0:
        return None
    return math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))


@torch.no_grad()
def adam_preconditioner(optimizer: torch.optim.Optimizer, grads: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Diagonal P of the NEXT update of an Adam-family optimizer, one tensor per parameter.

    The update is  theta -= lr * m_t / P  with (PAPER.md section 3)
        v_t = beta2 v_{t-1} + (1 - beta2) g_t^2,  vhat_t = v_t / (1 - beta2^t),
        P_t = (1 - beta1^t) (sqrt(vhat_t) + eps).
    `grads` are the gradients g_t of the batch of that update, in the order of the optimizer's parameters.
    For RAdam (which adds eps to sqrt(v_t) rather than to sqrt(vhat_t)), P_t is divided by the rectification
    r_t, and is (1 - beta1^t) while RAdam is un-adapted (rho_t <= 5).
    For an optimizer with a `preconditioner(grads)` method (this project's GI-Adam) that method is used.
    """
    if hasattr(optimizer, "preconditioner"):
        return optimizer.preconditioner(grads)
    out: list[torch.Tensor] = []
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if len(params) != len(grads):
        raise ValueError("grads must hold one tensor per optimizer parameter")
    for group in optimizer.param_groups:
        beta1, beta2 = group["betas"]
        eps = group["eps"]
        for p in group["params"]:
            g = grads[len(out)]
            state = optimizer.state.get(p, {})
            step = int(state["step"]) + 1 if "step" in state else 1
            v_prev = state.get("exp_avg_sq", torch.zeros_like(p))
            v = beta2 * v_prev + (1 - beta2) * g * g
            vhat = v / (1 - beta2**step)
            bc1 = 1 - beta1**step
            if isinstance(optimizer, torch.optim.RAdam):
                r = _radam_rectification(step, beta2)
                # torch's RAdam adds eps to sqrt(v), not to sqrt(vhat)
                bc2 = 1 - beta2**step
                out.append(torch.full_like(p, bc1) if r is None else bc1 * (v.sqrt() + eps) / (math.sqrt(bc2) * r))
            else:
                out.append(bc1 * (vhat.sqrt() + eps))
    return out
