"""The warmup-method registry.

Each method is one pydantic model with a literal `kind` and the behaviour it needs (its schedule, its
optimizer). Adding a method is adding one class below and listing it in METHOD_TYPES; params.yaml's
`methods` section, the JSON schema, the sweep and the tracking pick it up from there.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

import torch
from pydantic import Field, model_validator

from .errors import WhywarmupError
from .optim import build_optimizer
from .schedules import CatapultInitSchedule, PersistentCatapultSchedule, Schedule, WarmupSchedule
from .sections import GIAdamConfig, LearningRate, OptimizerConfig, Seed, SGDConfig, StepCount, Strict

# The roles a method kind plays in the analysis (docs/science.md sections 6-7). The claims, tables and figures select
# runs by role, never by kind name, so a new kind takes part in what its roles say by declaring them.
NO_WARMUP = "no_warmup"  # eta_trgt from the first update: the control of C1, C3 (b), C4 and C6; T_wrm = 1 in figures
FIXED_WARMUP = "fixed_warmup"  # a warmup of a fixed length T_wrm: C1-C4, the control of C5 and C7, trajectory figure
CRITICAL_START = "critical_start"  # starts at the critical learning rate: C5's subject and its steps figure
ADAPTIVE_WARMUP = "adaptive_warmup"  # a warmup without a fixed length: C7's subject and its figure
GRADIENT_INIT = "gradient_init"  # optimizer state initialized from the first gradient: C6's subject, GI-Adam figure
ROLES = (NO_WARMUP, FIXED_WARMUP, CRITICAL_START, ADAPTIVE_WARMUP, GRADIENT_INIT)


class MethodBase(Strict):
    """Fields every method has. `grid` and `overrides` are resolved away before a run starts."""

    roles: ClassVar[frozenset[str]] = frozenset()  # what the analysis uses its runs for (ROLES)
    kind: str
    optimizer: OptimizerConfig = Field(default_factory=SGDConfig)
    eta_trgt: LearningRate = Field(1.0, description="Target learning rate, or c in eta_trgt = c / lambda_0.")
    eta_relative_to: Literal["absolute", "lambda_0"] = "absolute"
    decay: Literal["constant", "cosine"] = Field(
        "constant", description="After warmup: constant or cosine to eta_trgt/10."
    )
    seed: Seed = Field(0, description="Initialization seed.")
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Dotted keys of the global sections (model, training, sharpness, data) set for this method only.",
    )
    grid: dict[str, Annotated[list[Any], Field(min_length=1)]] = Field(
        default_factory=dict,
        description="Dotted keys -> lists of values; the method runs every combination. Keys are fields of this "
        "method (eta_trgt, warmup_steps, seed, optimizer.beta2, ...) or of a global section (model.width, ...).",
    )

    @property
    def warmup_length(self) -> int:
        """T_wrm of this method (1 = no warmup)."""
        return 1

    def build_schedule(self, eta_trgt: float, total_steps: int, context: dict[str, Any]) -> Schedule:
        raise NotImplementedError

    def schedule_text(self) -> str:
        """The learning-rate schedule in one line (the MLflow parent run's description)."""
        raise NotImplementedError

    def build_optimizer(self, params: list[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
        return build_optimizer(self.optimizer, params, lr)


class NoWarmup(MethodBase):
    """Constant eta_trgt from the first update (T_wrm = 1), then the decay phase."""

    roles = frozenset({NO_WARMUP})
    kind: Literal["none"]

    def build_schedule(self, eta_trgt: float, total_steps: int, context: dict[str, Any]) -> Schedule:
        return WarmupSchedule(eta_trgt, 1, decay=self.decay, total_steps=total_steps)

    def schedule_text(self) -> str:
        return "no warmup: eta_trgt from the first update."


class LinearWarmup(MethodBase):
    """eta_t = eta_trgt (t / T_wrm)^k for t <= T_wrm (docs/science.md section 2 with eta_init = 0)."""

    roles = frozenset({FIXED_WARMUP})
    kind: Literal["linear"]
    warmup_steps: StepCount = Field(64, description="T_wrm (1 = no warmup).")
    exponent: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)] = Field(
        1.0, description="k in (t / T_wrm)^k; 1 = linear."
    )

    @property
    def warmup_length(self) -> int:
        return self.warmup_steps

    def build_schedule(self, eta_trgt: float, total_steps: int, context: dict[str, Any]) -> Schedule:
        return WarmupSchedule(eta_trgt, self.warmup_steps, 0.0, self.exponent, self.decay, total_steps)

    def schedule_text(self) -> str:
        shape = "t / T_wrm" if self.exponent == 1 else f"(t / T_wrm)^{self.exponent:g}"
        return f"warmup eta_t = eta_trgt {shape} for t <= T_wrm (T_wrm = {self.warmup_steps} unless in the grid)."


class GIAdamMethod(LinearWarmup):
    """GI-Adam (docs/science.md section 6): optimizer gi_adam (v_0 = g_0^2), without warmup unless warmup_steps > 1."""

    roles = frozenset({GRADIENT_INIT})
    kind: Literal["gi_adam"]
    optimizer: OptimizerConfig = Field(default_factory=GIAdamConfig)
    warmup_steps: StepCount = Field(1, description="T_wrm of an optional linear warmup.")

    @model_validator(mode="after")
    def _needs_gi_adam(self) -> GIAdamMethod:
        if not isinstance(self.optimizer, GIAdamConfig):
            raise ValueError(f"kind gi_adam needs optimizer.name: gi_adam, got {self.optimizer.name!r}")
        return self

    def schedule_text(self) -> str:
        warmup = "no warmup" if self.warmup_steps == 1 else f"a linear warmup over T_wrm = {self.warmup_steps} steps"
        return f"GI-Adam: Adam's second moment initialized to the first gradient squared (v_0 = g_0^2), {warmup}."


class CatapultInit(MethodBase):
    """Start at the critical learning rate found by the catapult search, with the linear warmup's slope."""

    roles = frozenset({CRITICAL_START})
    kind: Literal["catapult_init"]
    warmup_steps: StepCount = Field(64, description="T_wrm of the linear warmup it shortens.")

    @property
    def warmup_length(self) -> int:
        return self.warmup_steps

    def build_schedule(self, eta_trgt: float, total_steps: int, context: dict[str, Any]) -> Schedule:
        critical = context.get("critical_lr")
        if critical is None:
            raise WhywarmupError(
                "Method kind catapult_init starts at the critical learning rate, but the search is off "
                "(sharpness.critical_lr.enabled: false). Enable it."
            )
        return CatapultInitSchedule(eta_trgt, self.warmup_steps, critical.lr, self.decay, total_steps)

    def schedule_text(self) -> str:
        return (
            "start at the critical learning rate eta_c of the loss-catapult search at initialization and rise with "
            f"the linear warmup's slope eta_trgt / T_wrm (T_wrm = {self.warmup_steps} unless in the grid) to eta_trgt."
        )


class PersistentCatapult(MethodBase):
    """Feedback warmup without T_wrm: every `every` steps lr = min(eta_trgt, max(lr, gamma * eta_c(theta_t)))."""

    roles = frozenset({ADAPTIVE_WARMUP})
    kind: Literal["persistent_catapult"]
    decay: Literal["constant"] = Field("constant", description="Constant eta_trgt once reached.")
    gamma: Annotated[float, Field(gt=1, le=100, allow_inf_nan=False)] = Field(
        1.5, description="Factor above the local critical learning rate (> 1: every increase induces a catapult)."
    )
    every: StepCount = Field(10, description="Re-estimate eta_c every this many steps.")
    source: Literal["sharpness", "critical_sharpness", "search"] = Field(
        "sharpness",
        description="sharpness: eta_c = threshold constant / current (preconditioned) sharpness; critical_sharpness: "
        "eta_c = 2 / the critical sharpness along the next update (forward passes only); search: the loss-catapult "
        "search at the current parameters with the optimizer's current state.",
    )

    @property
    def warmup_length(self) -> int:
        return 0  # no fixed T_wrm: the analysis shows it as T_wrm = 0 ("adaptive")

    def build_schedule(self, eta_trgt: float, total_steps: int, context: dict[str, Any]) -> Schedule:
        return PersistentCatapultSchedule(eta_trgt, self.gamma, self.every)

    def schedule_text(self) -> str:
        return (
            f"persistent catapult: every {self.every} steps lr = min(eta_trgt, max(lr, {self.gamma:g} eta_c)), eta_c "
            f"from the {self.source.replace('_', ' ')} at the current parameters; no fixed T_wrm."
        )


METHOD_TYPES: tuple[type[MethodBase], ...] = (NoWarmup, LinearWarmup, GIAdamMethod, CatapultInit, PersistentCatapult)

# The discriminated union of params.yaml `methods` entries, built from the registry.
MethodConfig = Annotated[Union[METHOD_TYPES], Field(discriminator="kind")]  # noqa: UP007


def kinds_with(role: str) -> set[str]:
    """The method kinds (their `kind` tags) that play `role` in the analysis, read from the registry."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {ROLES}")
    out: set[str] = set()
    for cls in METHOD_TYPES:
        annotation = cls.model_fields["kind"].annotation
        if role in cls.roles and get_origin(annotation) is Literal:
            out |= set(get_args(annotation))
    return out
