"""Learning-rate schedules. `lr(t)` is the learning rate of update t (t = 1, 2, ...; docs/science.md section 2)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol


class Schedule(Protocol):
    eta_trgt: float

    def lr(self, t: int) -> float: ...


def decayed_lr(eta_trgt: float, t: int, start: int, total: int, decay: Literal["constant", "cosine"]) -> float:
    """After warmup (t > start): constant eta_trgt, or cosine from eta_trgt to eta_trgt/10 at t = total."""
    if decay == "constant" or total <= start:
        return eta_trgt
    progress = min(1.0, (t - start) / (total - start))
    eta_min = eta_trgt / 10.0
    return eta_min + (eta_trgt - eta_min) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class WarmupSchedule:
    """eta_t = eta_init + (eta_trgt - eta_init) (t / T)^k for t <= T, then the decay phase.

    T = 1 is "no warmup": the first update already uses eta_trgt.
    """

    eta_trgt: float
    warmup_steps: int = 1
    eta_init: float = 0.0
    exponent: float = 1.0
    decay: Literal["constant", "cosine"] = "constant"
    total_steps: int = 1

    def lr(self, t: int) -> float:
        if t <= self.warmup_steps:
            return self.eta_init + (self.eta_trgt - self.eta_init) * (t / self.warmup_steps) ** self.exponent
        return decayed_lr(self.eta_trgt, t, self.warmup_steps, self.total_steps, self.decay)


@dataclass(frozen=True)
class CatapultInitSchedule:
    """catapult_init (docs/science.md section 6): start at the critical learning rate eta_c and climb with the linear
    warmup's slope, eta_t = eta_c + eta_trgt t / T_wrm, capped at eta_trgt, which is reached at update
    ceil(T_wrm (1 - eta_c / eta_trgt)); no warmup when eta_c >= eta_trgt. Then the decay phase."""

    eta_trgt: float
    warmup_steps: int
    eta_c: float
    decay: Literal["constant", "cosine"] = "constant"
    total_steps: int = 1

    @property
    def reached_at(self) -> int:
        if self.eta_c >= self.eta_trgt:
            return 1
        return max(1, math.ceil(self.warmup_steps * (1 - self.eta_c / self.eta_trgt)))

    def lr(self, t: int) -> float:
        if t < self.reached_at:
            return self.eta_c + self.eta_trgt * t / self.warmup_steps
        return decayed_lr(self.eta_trgt, t, self.reached_at, self.total_steps, self.decay)


class PersistentCatapultSchedule:
    """persistent_catapult (docs/science.md section 6), a feedback schedule: every `every` steps the training loop
    reports the local critical learning rate eta_c(theta_t), and the learning rate becomes
        eta = min(eta_trgt, max(eta_previous, gamma * eta_c(theta_t))),
    so it never decreases and always sits gamma above the local stability limit until eta_trgt is reached.
    `lr(t)` is the learning rate set by the latest report (0 before the first)."""

    def __init__(self, eta_trgt: float, gamma: float, every: int):
        self.eta_trgt, self.gamma, self.every = eta_trgt, gamma, every
        self.current = 0.0
        self.reached_at: int | None = None
        self.increases: list[int] = []  # steps s whose report raised the learning rate (of update s + 1)

    def wants_estimate(self, s: int) -> bool:
        """Whether the loop must report eta_c(theta_s) before update s + 1."""
        return self.reached_at is None and s % self.every == 0

    def report(self, s: int, eta_c: float) -> None:
        if not math.isfinite(eta_c) or eta_c <= 0:  # no usable estimate (non-converged, negative curvature)
            return
        new = min(self.eta_trgt, max(self.current, self.gamma * eta_c))
        if new > self.current:
            self.increases.append(s)
        self.current = new
        if new >= self.eta_trgt and self.reached_at is None:
            self.reached_at = s + 1

    def lr(self, t: int) -> float:
        return self.current


def steps_to_target(schedule: Schedule, total_steps: int) -> int | None:
    """The first update t at which lr_t reaches eta_trgt (1 = no warmup), or None if it never does."""
    if isinstance(schedule, PersistentCatapultSchedule):  # known only after training
        return schedule.reached_at
    for t in range(1, total_steps + 1):
        if schedule.lr(t) >= schedule.eta_trgt * (1 - 1e-12):
            return t
    return None
