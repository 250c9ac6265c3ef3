"""Learning-rate schedules. `lr(t)` is the learning rate of update t (t = 1, 2, ...; PAPER.md section 2)."""

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


def steps_to_target(schedule: Schedule, total_steps: int) -> int | None:
    """The first update t at which lr_t reaches eta_trgt (1 = no warmup), or None if it never does."""
    for t in range(1, total_steps + 1):
        if schedule.lr(t) >= schedule.eta_trgt * (1 - 1e-12):
            return t
    return None
