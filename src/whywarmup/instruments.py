"""The per-step instruments of a training run: each one says at which steps it measures (`due`) and, at those steps,
measures the parameters after the backward pass and before the update (`record`), writing its columns into the step's
trajectory row. The training loop (whywarmup.train) is then: forward, backward, instruments, update.

- SharpnessInstrument: the top Hessian eigenvalue by warm-started Lanczos and, for the Adam family, the top
  eigenvalue of the preconditioned Hessian (columns sharpness, preconditioned_sharpness, sharpness_matvecs);
- CriticalSharpnessInstrument: lambda_c = 2 / eta_c along the run's next update, from forward passes only
  (critical_sharpness, critical_sharpness_passes);
- FeedbackInstrument: persistent_catapult's estimate of the local critical learning rate, reported to its schedule
  (local_critical_lr);
- EvaluationInstrument: loss and accuracy on the validation and test sets (val_*, test_*).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .config import RunConfig
from .critical_lr import UpdateDirection, critical_sharpness, find_critical_lr
from .curvature import top_hessian_eigen
from .data import PreparedData
from .losses import accuracy
from .optim import CRITICAL_CONSTANT, adam_preconditioner
from .schedules import PersistentCatapultSchedule

Batch = tuple[torch.Tensor, torch.Tensor]
Row = dict[str, float]


class Instrument:
    """One per-step measurement. `due(s)` is asked once per step, before the loop reads the loss back from the device
    (a due instrument forces that read-back: it reads the host anyway); `record` runs at the steps where it was due."""

    def due(self, s: int) -> bool:
        raise NotImplementedError

    def record(self, s: int, row: Row, batch: Batch) -> None:
        raise NotImplementedError


@torch.no_grad()
def evaluate(model: torch.nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, chunk: int) -> tuple[float, float]:
    """Mean loss and accuracy over (x, y), in chunks, weighted by chunk size."""
    total_loss, total_acc = 0.0, 0.0
    for i in range(0, len(x), chunk):
        out = model(x[i : i + chunk])
        n = len(out)
        total_loss += loss_fn(out, y[i : i + chunk]).item() * n
        total_acc += accuracy(out, y[i : i + chunk]).item() * n
    return total_loss / len(x), total_acc / len(x)


def measurement_batches(data: PreparedData, run: RunConfig) -> list[Batch]:
    """The fixed batches the sharpness is measured on (sharpness.measure_on); empty for `minibatch`, whose
    batch is the current one and is passed to each measurement."""
    cfg = run.sharpness
    n = len(data.x_train)
    device = data.x_train.device
    g = torch.Generator().manual_seed(cfg.subset_seed)
    if cfg.measure_on == "minibatch":
        return []
    if cfg.measure_on == "minibatches_mean":
        bs = min(run.training.batch_size or n, n)
        picks = [torch.randperm(n, generator=g)[:bs].to(device) for _ in range(cfg.num_minibatches)]
        return [(data.x_train[idx], data.y_train[idx]) for idx in picks]
    if cfg.measure_on == "train" or cfg.subset_size >= n:
        return [(data.x_train, data.y_train)]
    idx = torch.randperm(n, generator=g)[: cfg.subset_size].sort().values.to(device)
    return [(data.x_train[idx], data.y_train[idx])]


class SharpnessMeter:
    """Measures the top Hessian eigenvalue, warm-starting each measurement from the last one's eigenvector.

    On one fixed batch (subset, train), on the current minibatch, or as the mean of the top eigenvalues over
    K fixed minibatches (each its own eigenproblem, warm-started separately).
    """

    def __init__(self, model, loss_fn, batches: list[Batch], run: RunConfig, dtype: torch.dtype):
        self.model, self.loss_fn, self.fixed, self.cfg = model, loss_fn, batches, run.sharpness
        self.dtype = torch.float64 if self.cfg.dtype == "float64" else dtype
        self.generator = torch.Generator().manual_seed(run.sharpness.subset_seed + 1)
        self.vectors: dict[tuple[str, int], torch.Tensor] = {}
        self.nonconverged = 0

    def probe_batch(self, current: Batch) -> Batch:
        """The batch of the critical-lr search: the first fixed batch, else the current minibatch."""
        x, y = self.fixed[0] if self.fixed else current
        n = self.cfg.chunk_size
        return x[:n], y[:n]

    def measure(self, current: Batch, which: str = "plain", preconditioner=None) -> tuple[float, int]:
        """(value, HVPs spent); value is NaN when Lanczos did not converge (counted in `nonconverged`)."""
        values, spent = [], 0
        for i, batch in enumerate(self.fixed or [current]):
            res = top_hessian_eigen(
                self.model,
                self.loss_fn,
                batch,
                preconditioner=preconditioner,
                init=self.vectors.get((which, i)),
                tol=self.cfg.tol,
                max_matvecs=self.cfg.max_matvecs,
                dtype=self.dtype,
                chunk_size=self.cfg.chunk_size,
                generator=self.generator,
                hvp_mode=self.cfg.hvp,
            )
            self.vectors[(which, i)] = res.vector
            spent += res.matvecs
            if not res.converged:
                self.nonconverged += 1
                return math.nan, spent
            values.append(res.value)
        return sum(values) / len(values), spent


def relevant_sharpness(row: Row) -> float:
    """The sharpness the run's stability threshold applies to at this row: the preconditioned one where measured
    (the Adam family), else the plain one; NaN where neither was measured."""
    return row.get("preconditioned_sharpness", row.get("sharpness", math.nan))


class SharpnessInstrument(Instrument):
    """Plain (and, for the Adam family before the last step, preconditioned) sharpness at the measurement cadence:
    every step to `dense_until`, every `every` steps (`every_after_warmup` once eta_trgt is reached, and at that first
    step), at the last step, and wherever persistent_catapult's estimate reads the sharpness. Step 0 is lambda_0,
    measured before training."""

    def __init__(
        self,
        run: RunConfig,
        meter: SharpnessMeter,
        initial: tuple[float, int],
        warmup_end: Callable[[], float],
        estimate_due: Callable[[int], bool],
        optimizer: torch.optim.Optimizer | None,
        params: list[torch.nn.Parameter],
    ):
        self.cfg, self.steps, self.meter, self.initial = run.sharpness, run.training.steps, meter, initial
        self.warmup_end, self.estimate_due = warmup_end, estimate_due
        self.reads_sharpness = getattr(run.method, "source", None) == "sharpness"  # the feedback estimate reads it
        self.optimizer, self.params = optimizer, params  # optimizer: the Adam family's, whose preconditioner is used

    def due(self, s: int) -> bool:
        every, after = self.cfg.every, self.cfg.every_after_warmup
        cadence = every if after is None or s <= self.warmup_end() else after
        return (
            s <= self.cfg.dense_until
            or bool(cadence and s % cadence == 0)
            or (after is not None and s == self.warmup_end())
            or s == self.steps
            or (self.reads_sharpness and self.estimate_due(s))
        )

    def record(self, s: int, row: Row, batch: Batch) -> None:
        value, hvps = self.initial if s == 0 else self.meter.measure(batch)
        row.update(sharpness=value, sharpness_matvecs=hvps)
        if self.optimizer is not None and s < self.steps:
            pre = adam_preconditioner(self.optimizer, [p.grad for p in self.params])
            pvalue, phvps = self.meter.measure(batch, "preconditioned", pre)
            row.update(preconditioned_sharpness=pvalue, sharpness_matvecs=hvps + phvps)


MAX_PROBES = 32  # forward passes per critical-sharpness step at most: a loss that has still not risen along d (some
# 2^25 x beyond the previous eta_c) is reported as no rise (lambda_c 0) rather than searched further


class CriticalSharpnessInstrument(Instrument):
    """The critical sharpness lambda_c = 2 / eta_c (docs/science.md section 10) along the run's real next update d (the
    optimizer's step per unit learning rate, from its current state: `UpdateDirection`), on the step's own batch, with
    L(theta) the loss the training step's forward already computed: eta_c = min{eta : L(theta - eta d) > L(theta)}.
    Warm-started from the previous measurement's eta_c, so a slowly moving lambda_c costs 2 forward passes. Every
    `sharpness.critical_every` steps, and wherever persistent_catapult's estimate reads it (source:
    critical_sharpness). By its definition an update of size lr raises the loss on its batch once lr x lambda_c > 2,
    for every optimizer (CRITICAL_CONSTANT)."""

    def __init__(self, run: RunConfig, model, loss_fn, optimizer, params, estimate_due: Callable[[int], bool]):
        self.every, self.tol, self.steps = run.sharpness.critical_every, run.sharpness.critical_tol, run.training.steps
        self.model, self.loss_fn, self.optimizer, self.estimate_due = model, loss_fn, optimizer, estimate_due
        self.reads_it = getattr(run.method, "source", None) == "critical_sharpness"
        self.direction = UpdateDirection(params, run.method.build_optimizer)
        self.eta: float | None = None  # the previous measurement's eta_c: the next search's start

    def due(self, s: int) -> bool:
        return s < self.steps and (bool(self.every and s % self.every == 0) or (self.reads_it and self.estimate_due(s)))

    def record(self, s: int, row: Row, batch: Batch) -> None:
        found = critical_sharpness(
            self.model,
            self.loss_fn,
            batch,
            self.direction(self.optimizer),
            eta_0=self.eta,
            tol=self.tol,
            initial_loss=row["loss"],
            max_probes=MAX_PROBES,
        )
        if 0 < found.eta_c < math.inf:
            self.eta = found.eta_c
        row.update(critical_sharpness=found.value, critical_sharpness_passes=found.forward_passes)


class FeedbackInstrument(Instrument):
    """persistent_catapult: at each re-estimate, eta_c(theta_s) reported to the schedule (docs/science.md section 6):
    the stability constant over the step's (preconditioned) sharpness, 2 over the step's critical sharpness, or the
    loss-catapult search at the current parameters with the optimizer's current state."""

    def __init__(
        self, run: RunConfig, schedule: PersistentCatapultSchedule, model, loss_fn, meter, optimizer, constant
    ):
        self.run, self.schedule, self.model, self.loss_fn = run, schedule, model, loss_fn
        self.meter, self.optimizer, self.constant = meter, optimizer, constant

    def due(self, s: int) -> bool:
        return s < self.run.training.steps and self.schedule.wants_estimate(s)

    def record(self, s: int, row: Row, batch: Batch) -> None:
        local = self.local_critical_lr(self.meter.probe_batch(batch), row)
        self.schedule.report(s, local)
        row["local_critical_lr"] = local

    def local_critical_lr(self, batch: Batch, row: Row) -> float:
        if self.run.method.source == "sharpness":
            sharpness = relevant_sharpness(row)
            return self.constant / sharpness if sharpness > 0 else math.nan
        if self.run.method.source == "critical_sharpness":
            critical = row["critical_sharpness"]
            return CRITICAL_CONSTANT / critical if 0 < critical < math.inf else math.nan
        cfg = self.run.sharpness.critical_lr
        start = self.optimizer.param_groups[0]["lr"] or cfg.eta_0
        found = find_critical_lr(
            self.model,
            self.loss_fn,
            batch,
            self.run.method.build_optimizer,
            optimizer_state=self.optimizer.state_dict(),
            eta_0=start,
            eps=cfg.eps,
            tol=cfg.tol,
        )
        return found.lr


class EvaluationInstrument(Instrument):
    """Validation and test loss and accuracy every `training.eval_every` steps and at the last step."""

    def __init__(self, run: RunConfig, model, loss_fn, data: PreparedData):
        self.every, self.steps, self.chunk = run.training.eval_every, run.training.steps, run.sharpness.chunk_size
        self.model, self.loss_fn, self.data = model, loss_fn, data

    def due(self, s: int) -> bool:
        return s % self.every == 0 or s == self.steps

    def record(self, s: int, row: Row, batch: Batch) -> None:
        d = self.data
        if d.x_val is not None and len(d.x_val):
            row["val_loss"], row["val_accuracy"] = evaluate(self.model, self.loss_fn, d.x_val, d.y_val, self.chunk)
        row["test_loss"], row["test_accuracy"] = evaluate(self.model, self.loss_fn, d.x_test, d.y_test, self.chunk)
