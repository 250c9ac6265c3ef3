"""Optimizers (torch.optim SGD, Adam, RAdam), their stability thresholds, and Adam's preconditioner."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch

from .sections import AdamConfig, GIAdamConfig, OptimizerConfig, SGDConfig


class GIAdam(torch.optim.Optimizer):
    """GI-Adam (docs/science.md section 6): Adam whose second moment starts at v_0 = g_0^2 instead of 0; m_0 = 0.

    g_0 is the gradient at the first `step()` (the first batch at initialization), unless
    `initialize_second_moment(grads)` was called before with the gradient of another batch.
        m_t = beta1 m_{t-1} + (1 - beta1) g_t,   v_t = beta2 v_{t-1} + (1 - beta2) g_t^2,
        theta_t = theta_{t-1} - lr * (m_t / (1 - beta1^t)) / (sqrt(vhat_t) + eps),
    with vhat_t = v_t / (1 - beta2^t) when `v_bias_correction` (the authors' released code; since v_0 is not
    zero this shrinks early steps by about sqrt(1 - beta2^t), an implicit warmup) and vhat_t = v_t otherwise
    (the reading that GI needs no correction of v). `v0="zero"` is plain Adam (torch.optim.Adam's algorithm).
    Weight decay is L2 added to the gradient, as in torch.optim.Adam.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        v_bias_correction: bool = True,
        v0: str = "gradient",
    ):
        if not 0.0 <= lr:
            raise ValueError(f"invalid learning rate {lr}")
        if v0 not in ("gradient", "zero"):
            raise ValueError(f"v0 must be 'gradient' or 'zero', got {v0!r}")
        defaults = dict(
            lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, v_bias_correction=v_bias_correction, v0=v0
        )
        super().__init__(params, defaults)

    def _grad(self, p: torch.Tensor, g: torch.Tensor, group: dict) -> torch.Tensor:
        return g.add(p, alpha=group["weight_decay"]) if group["weight_decay"] else g

    @torch.no_grad()
    def initialize_second_moment(self, grads: Sequence[torch.Tensor]) -> None:
        """Set v_0 = g_0^2 from `grads` (one tensor per parameter, in param_groups order) before the first step."""
        pairs = [(p, group) for group in self.param_groups for p in group["params"]]
        if len(pairs) != len(grads):
            raise ValueError("grads must hold one tensor per optimizer parameter")
        for (p, group), g in zip(pairs, grads):
            g = self._grad(p, g, group)
            self.state[p].update(step=torch.tensor(0.0), exp_avg=torch.zeros_like(p), exp_avg_sq=g * g)

    @staticmethod
    def _initial_v(g: torch.Tensor, group: dict) -> torch.Tensor:
        return g * g if group["v0"] == "gradient" else torch.zeros_like(g)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = self._grad(p, p.grad, group)
                state = self.state[p]
                if "step" not in state:
                    state.update(
                        step=torch.tensor(0.0), exp_avg=torch.zeros_like(p), exp_avg_sq=self._initial_v(g, group)
                    )
                state["step"] += 1
                t = int(state["step"])
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.lerp_(g, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                step_size = group["lr"] / (1 - beta1**t)
                bc2_sqrt = math.sqrt(1 - beta2**t) if group["v_bias_correction"] else 1.0
                denom = (exp_avg_sq.sqrt() / bc2_sqrt).add_(group["eps"])
                p.addcdiv_(exp_avg, denom, value=-step_size)
        return loss

    @torch.no_grad()
    def preconditioner(self, grads: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """P_t of the next update (theta -= lr m_t / P_t): (1 - beta1^t) (sqrt(vhat_t) + eps)."""
        out: list[torch.Tensor] = []
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                g = self._grad(p, grads[len(out)], group)
                state = self.state.get(p, {})
                t = int(state["step"]) + 1 if "step" in state else 1
                v_prev = state["exp_avg_sq"] if "exp_avg_sq" in state else self._initial_v(g, group)
                v = beta2 * v_prev + (1 - beta2) * g * g
                vhat = v / (1 - beta2**t) if group["v_bias_correction"] else v
                out.append((1 - beta1**t) * (vhat.sqrt() + group["eps"]))
        return out


def build_optimizer(cfg: OptimizerConfig, params: Iterable[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    if isinstance(cfg, SGDConfig):
        return torch.optim.SGD(
            params, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
        )
    if isinstance(cfg, GIAdamConfig):
        return GIAdam(
            params,
            lr=lr,
            betas=(cfg.beta1, cfg.beta2),
            eps=cfg.eps,
            weight_decay=cfg.weight_decay,
            v_bias_correction=cfg.v_bias_correction,
        )
    cls = {"adam": torch.optim.Adam, "radam": torch.optim.RAdam}[cfg.name]
    return cls(params, lr=lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, weight_decay=cfg.weight_decay)


def is_adaptive(cfg: OptimizerConfig) -> bool:
    return isinstance(cfg, (AdamConfig, GIAdamConfig))


# lr x critical sharpness > 2: the update raises the loss on its batch, whatever the optimizer (docs/science.md
# section 10; at the edge of stability it is where GD's, heavy-ball's and Adam's own thresholds put lambda_c)
CRITICAL_CONSTANT = 2.0


def stability_constant(cfg: OptimizerConfig) -> float:
    """c such that the update is unstable when lr * sharpness > c (docs/science.md section 3).

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

    The update is  theta -= lr * m_t / P  with (docs/science.md section 3)
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
            if group["weight_decay"]:  # torch.optim.Adam/RAdam add the L2 term to the gradient first
                g = g + group["weight_decay"] * p
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
