"""One training run: initialize, measure lambda_0, then train with the method's schedule while recording
loss, accuracy, lr and the sharpness.

Step semantics: row s of the trajectory (MLflow step s) describes the parameters after s updates (s = 0 is
initialization, i.e. the parameters *before* update s + 1), and `lr` at row s is the learning rate of update
s + 1, the update applied to those parameters. So `lr_times_sharpness` at row s measures the stability of
the very next update.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .augment import flip_crop, mixup
from .config import RunConfig
from .critical_lr import CriticalLRResult, find_critical_lr
from .data import PreparedData
from .errors import WhywarmupError
from .instruments import (
    CriticalSharpnessInstrument,
    EvaluationInstrument,
    FeedbackInstrument,
    Instrument,
    SharpnessInstrument,
    SharpnessMeter,
    evaluate,
    measurement_batches,
    relevant_sharpness,
)
from .losses import accuracy, get_loss
from .models import build_model
from .optim import is_adaptive, stability_constant
from .schedules import PersistentCatapultSchedule, steps_to_target
from .tracking import PER_STEP_METRICS

TRAJECTORY_COLUMNS = ["step", *PER_STEP_METRICS]
Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class RunResult:
    key: str
    summary: dict[str, float]
    trajectory: pd.DataFrame
    status: str  # "finished", "diverged" or "failed"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise WhywarmupError(
            "training.device is 'cuda' but no CUDA device is visible to torch. "
            "Set training.device to 'auto' or 'cpu', or install a CUDA build of torch."
        )
    return torch.device(name)


def _instruments(
    run: RunConfig, model, loss_fn, data: PreparedData, meter, schedule, feedback, optimizer, constant, initial
) -> list[Instrument]:
    """The run's per-step instruments, in the order they record: sharpness and critical sharpness (whose values the
    feedback estimate and lr_times_(critical_)sharpness read), persistent_catapult's feedback estimate (`feedback`: its
    schedule, None for the other methods), evaluation."""
    steps = run.training.steps
    target = steps_to_target(schedule, steps) if feedback is None else None

    def warmup_end() -> float:
        """The first update at eta_trgt, whose row is the end-of-warmup measurement (persistent_catapult: known once
        reached; inf before)."""
        reached = feedback.reached_at if feedback is not None else target
        return math.inf if reached is None else reached

    estimate = FeedbackInstrument(run, feedback, model, loss_fn, meter, optimizer, constant) if feedback else None
    params = [p for p in model.parameters() if p.requires_grad]
    adaptive = optimizer if is_adaptive(run.method.optimizer) else None
    estimate_due = estimate.due if estimate else lambda s: False
    sharpness = SharpnessInstrument(run, meter, initial, warmup_end, estimate_due, adaptive, params)
    critical = CriticalSharpnessInstrument(run, model, loss_fn, optimizer, params, estimate_due)
    return [sharpness, critical, *([estimate] if estimate else []), EvaluationInstrument(run, model, loss_fn, data)]


def _critical_lr(run: RunConfig, model, loss_fn, batch: Batch) -> CriticalLRResult | None:
    """The catapult search at initialization with the run's own optimizer, on the measurement batch."""
    cfg = run.sharpness.critical_lr
    if not cfg.enabled:
        return None
    return find_critical_lr(
        model, loss_fn, batch, run.method.build_optimizer, eta_0=cfg.eta_0, eps=cfg.eps, tol=cfg.tol
    )


def _batches(data: PreparedData, run: RunConfig):
    """Yield the (x, y) of each update: the full training set, or minibatches of a seeded epoch order; flipped and
    shifted when training.augment is flip_crop, then mixed (soft targets) when training.mixup_alpha > 0."""
    bs = run.training.batch_size
    n = len(data.x_train)
    augment = run.training.augment == "flip_crop"
    alpha = run.training.mixup_alpha
    draws = torch.Generator().manual_seed(run.training.data_seed + 1_000_003)  # augmentation's own stream
    mixing = np.random.default_rng(run.training.data_seed + 2_000_003)  # mixup's own stream

    def prepared(x: torch.Tensor, y: torch.Tensor) -> Batch:
        x = flip_crop(x, draws) if augment else x
        return mixup(x, y, data.num_classes, alpha, mixing) if alpha > 0 else (x, y)

    if bs is None or bs >= n:
        while True:
            yield prepared(data.x_train, data.y_train)
    g = torch.Generator().manual_seed(run.training.data_seed)
    while True:
        perm = torch.randperm(n, generator=g).to(data.x_train.device)
        for i in range(0, n - bs + 1, bs):
            idx = perm[i : i + bs]
            yield prepared(data.x_train[idx], data.y_train[idx])


SYNC_EVERY = 32  # steps between reads of the loss from the device when nothing else reads it


def _read_back(pending: list[tuple[dict[str, float], torch.Tensor, torch.Tensor]]) -> list[dict[str, float]]:
    """Fill the pending rows' loss and accuracy with one device-to-host copy each (the values .item() gives);
    returns those rows in step order."""
    if not pending:
        return []
    losses = torch.stack([loss for _, loss, _ in pending]).tolist()
    accs = torch.stack([acc for _, _, acc in pending]).tolist()
    filled = []
    for (row, _, _), loss, acc in zip(pending, losses, accs):
        row["loss"], row["accuracy"] = loss, acc
        filled.append(row)
    pending.clear()
    return filled


def _diverged(row: dict[str, float], initial_loss: float, run: RunConfig) -> bool:
    loss = row["loss"]
    return not math.isfinite(loss) or loss > run.training.divergence_factor * initial_loss


def set_determinism(on: bool) -> None:
    """training.deterministic: deterministic kernels only (an op without one raises, naming itself) and no cuDNN
    autotuning; cuBLAS reads CUBLAS_WORKSPACE_CONFIG when CUDA starts, so it is set before the first CUDA call."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(on)  # off: torch's default, as is cudnn.deterministic
    torch.backends.cudnn.deterministic = on


def train_run(run: RunConfig, data: PreparedData, *, progress: bool = True, position: int = 0) -> RunResult:
    """Train one grid point and return its trajectory and summary. NaN/Inf loss ends the run as diverged."""
    t_start = time.perf_counter()
    device = resolve_device(run.training.device)
    dtype = torch.float64 if run.training.dtype == "float64" else torch.float32
    if run.training.threads and device.type == "cpu":
        torch.set_num_threads(run.training.threads)
    set_determinism(run.training.deterministic)
    data = data.to(device, dtype)
    torch.manual_seed(run.method.seed)
    model = build_model(run.model, data.input_shape, data.num_classes).to(device, dtype)
    loss_fn = get_loss(run.training.loss)
    meter = SharpnessMeter(model, loss_fn, measurement_batches(data, run), run, dtype)
    batches = _batches(data, run)
    first = next(batches)
    batches = itertools.chain([first], batches)

    lambda_0, lambda_0_hvps = meter.measure(first)
    if run.method.eta_relative_to == "lambda_0":
        if not (lambda_0 > 0):
            raise WhywarmupError(
                f"Run {run.key} ({run.name}): eta_trgt is relative to lambda_0 but the initial sharpness is "
                f"{lambda_0}, so eta_trgt = c / lambda_0 is undefined. Use eta_relative_to: absolute."
            )
        eta_trgt = run.method.eta_trgt / lambda_0
    else:
        eta_trgt = run.method.eta_trgt
    critical = _critical_lr(run, model, loss_fn, meter.probe_batch(first))
    steps = run.training.steps
    schedule = run.method.build_schedule(eta_trgt, steps, {"lambda_0": lambda_0, "critical_lr": critical})
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = run.method.build_optimizer(params, schedule.lr(1))
    constant = stability_constant(run.method.optimizer)
    feedback = schedule if isinstance(schedule, PersistentCatapultSchedule) else None

    initial = (lambda_0, lambda_0_hvps)
    instruments = _instruments(run, model, loss_fn, data, meter, schedule, feedback, optimizer, constant, initial)
    rows: list[dict[str, float]] = []
    status, diverged_step, initial_loss = "finished", math.nan, math.nan
    bar = tqdm(
        total=steps,
        desc=f"{run.name} {run.key}",
        position=position,
        leave=False,
        disable=not progress,
        mininterval=1.0,
        unit="step",
    )
    # Loss and accuracy stay on the device until a read-back: every SYNC_EVERY steps, or where the step reads
    # the host anyway (an instrument, the first and last step), so a GPU is not stalled every step. A divergence
    # is found at the read-back; the steps run past it are discarded, the trajectory is unchanged.
    pending: list[tuple[dict[str, float], torch.Tensor, torch.Tensor]] = []
    for s in range(steps + 1):
        step_batch = next(batches)  # the batch of update s + 1 (also the measurement batch for `minibatch`)
        x, y = step_batch if s < steps else (data.x_train, data.y_train)
        model.train()
        for p in params:
            p.grad = None
        row: dict[str, float] = {"step": s}
        if s < steps:  # forward
            out = model(x)
            loss = loss_fn(out, y)
            pending.append((row, loss.detach(), accuracy(out, y).detach()))
        else:
            row["loss"], row["accuracy"] = evaluate(model, loss_fn, x, y, run.sharpness.chunk_size)
        due = [i for i in instruments if i.due(s)]
        if s == 0 or s == steps or due or len(pending) >= SYNC_EVERY:
            checked = _read_back(pending) if s < steps else [*_read_back(pending), row]
            if s == 0:
                initial_loss = row["loss"]
            bad = next((r for r in checked if _diverged(r, initial_loss, run)), None)
            if bad is not None:
                status, diverged_step = "diverged", int(bad["step"])
                del rows[next((i for i, r in enumerate(rows) if r is bad), len(rows)) :]
                rows.append({"step": bad["step"], "loss": bad["loss"]})
                break
        if s < steps:  # backward
            loss.backward()
        for instrument in due:  # instruments: after the backward pass, before the update
            instrument.record(s, row, step_batch)
        lr = schedule.lr(s + 1) if s < steps else math.nan  # after the feedback estimate, which may raise it
        row.update(lr=lr, stability_threshold=constant / lr if lr > 0 else math.nan)
        if s < steps and math.isfinite(relevant_sharpness(row)):
            row["lr_times_sharpness"] = lr * relevant_sharpness(row)
        if "critical_sharpness" in row:
            row["lr_times_critical_sharpness"] = lr * row["critical_sharpness"]
        rows.append(row)
        if s < steps:  # update
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.step()
            bar.update(1)
    bar.close()

    trajectory = pd.DataFrame(rows, columns=TRAJECTORY_COLUMNS)
    last = rows[-1]
    if status == "finished" and data.failed_to_learn(last["loss"], last["accuracy"]):
        status = "failed"
    used = steps_to_target(schedule, steps)
    summary = {
        "lambda_0": lambda_0,
        "eta_trgt": eta_trgt,
        "eta_trgt_times_lambda_0": eta_trgt * lambda_0,
        "warmup_length": float(run.method.warmup_length),
        "warmup_steps_used": float(used) if used is not None else math.nan,
        # T_wrm - used: what catapult_init saves over linear with the same T_wrm (NaN without a fixed T_wrm)
        "warmup_steps_saved": (
            run.method.warmup_length - used if used is not None and run.method.warmup_length else math.nan
        ),
        "diverged": float(status == "diverged"),
        "diverged_step": float(diverged_step),
        "failed": float(status != "finished"),
        "final_train_loss": last["loss"] if status != "diverged" else math.nan,
        "final_train_accuracy": last.get("accuracy", math.nan),
        "final_val_loss": last.get("val_loss", math.nan),
        "final_val_accuracy": last.get("val_accuracy", math.nan),
        "final_test_loss": last.get("test_loss", math.nan),
        "final_test_accuracy": last.get("test_accuracy", math.nan),
        "sharpness_nonconverged": float(meter.nonconverged),
        "num_classes": float(data.num_classes),
        **_language_model_summary(data, last),
        **_critical_summary(critical, lambda_0),
        **_feedback_summary(feedback, trajectory, run),
        "steps_completed": float(trajectory["step"].max()),
        "wall_time_s": time.perf_counter() - t_start,
    }
    summary = {k: float(v) if v is not None else math.nan for k, v in summary.items()}
    return RunResult(run.key, summary, trajectory, status)


def _catapults(trajectory: pd.DataFrame, increases: list[int], window: int, eps: float) -> int:
    """Learning-rate increases followed, within `window` steps, by a loss above (1 + eps) x the loss before."""
    loss = trajectory.set_index("step")["loss"]
    count = 0
    for s in increases:
        after = loss.loc[s + 1 : s + window]
        if s in loss.index and len(after) and not (after.max() <= loss.loc[s] * (1 + eps)):
            count += 1
    return count


def _feedback_summary(feedback, trajectory: pd.DataFrame, run: RunConfig) -> dict[str, float]:
    if feedback is None:
        return {}
    window, eps = run.method.every, run.sharpness.critical_lr.eps
    return {
        "lr_increases": float(len(feedback.increases)),
        "catapults": float(_catapults(trajectory, feedback.increases, window, eps)),
        "critical_lr_estimates": float(trajectory["local_critical_lr"].notna().sum()),
    }


def _language_model_summary(data: PreparedData, last: dict[str, float]) -> dict[str, float]:
    """Text: the unigram entropy the failure rule compares the loss with, and perplexities (exp of the mean token
    loss)."""
    if data.unigram_entropy is None:
        return {}
    return {
        "unigram_entropy": data.unigram_entropy,
        "final_val_perplexity": math.exp(min(last.get("val_loss", math.nan), 700.0)),
        "final_test_perplexity": math.exp(min(last.get("test_loss", math.nan), 700.0)),
    }


def _critical_summary(critical: CriticalLRResult | None, lambda_0: float) -> dict[str, float]:
    if critical is None:
        return {}
    return {
        "critical_lr": critical.lr,
        "critical_lr_lower": critical.lower,
        "critical_lr_upper": critical.upper if critical.bracketed else math.nan,
        "critical_lr_forward_passes": float(critical.forward_passes),
        "critical_lr_times_lambda_0": critical.lr * lambda_0,
    }


def summary_row(run: RunConfig, result: RunResult) -> dict[str, Any]:
    """One row of a method's summary.csv: the grid coordinates and the summary metrics."""
    m = run.method
    return {
        "run_key": run.key,
        "method": run.name,
        "kind": m.kind,
        "optimizer": m.optimizer.name,
        "eta_trgt_setting": m.eta_trgt,
        "eta_relative_to": m.eta_relative_to,
        "T_wrm": m.warmup_length,
        "seed": m.seed,
        "parametrization": getattr(run.model, "parametrization", "sp"),
        "v_bias_correction": getattr(m.optimizer, "v_bias_correction", None),
        "status": result.status,
        **result.summary,
    }
