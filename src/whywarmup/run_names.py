"""Readable MLflow names and descriptions: what a run is, said in the run table rather than in a hash."""

from __future__ import annotations

from collections import Counter
from typing import Any

from .config import RunConfig, axis_value, grid_points, method_axes


def format_value(value: Any) -> str:
    """A grid value as a user wrote it: 0.002, 32, 1e-05, true."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _learning_rate(run: RunConfig) -> str:
    """eta_trgt as c where it is relative to lambda_0 (eta_trgt = c / lambda_0), as lr where it is absolute."""
    symbol = "c" if run.method.eta_relative_to == "lambda_0" else "lr"
    return f"{symbol}={format_value(run.method.eta_trgt)}"


def _shows_warmup_length(method: Any) -> bool:
    """T_wrm is part of the name for methods with a fixed warmup length longer than one step or a grid over it."""
    return "warmup_steps" in type(method).model_fields and ("warmup_steps" in method.grid or method.warmup_length > 1)


def _labels(keys: list[str]) -> dict[str, str]:
    """A short label per dotted key: its last part, or the whole key where two keys share a last part."""
    last = Counter(k.split(".")[-1] for k in keys)
    return {k: k.split(".")[-1] if last[k.split(".")[-1]] == 1 else k for k in keys}


def varying_axes(method: Any, runs: list[RunConfig]) -> list[str]:
    """The method's grid / override keys (beyond eta_trgt, T_wrm and seed) that take more than one value."""
    return [k for k in method_axes(method) if len({repr(axis_value(r, k)) for r in runs}) > 1]


def run_names(method: Any, runs: list[RunConfig]) -> dict[str, str]:
    """run_key -> `<method> c=32 T_wrm=64 <varying key>=<value> seed=1`, unique within the method, the same on every
    rerun of the same grid (a name two grid points would share gets the run key's first 6 characters)."""
    labels = _labels(varying_axes(method, runs))
    shows_t = _shows_warmup_length(method)
    names = {}
    for run in runs:
        parts = [run.name, _learning_rate(run)]
        if shows_t:
            parts.append(f"T_wrm={run.method.warmup_length}")
        parts += [f"{label}={format_value(axis_value(run, key))}" for key, label in labels.items()]
        parts.append(f"seed={run.method.seed}")
        names[run.key] = " ".join(parts)
    counts = Counter(names.values())
    return {key: name if counts[name] == 1 else f"{name} #{key[:6]}" for key, name in names.items()}


def seed_group(name: str) -> str:
    """A run's name without its seed: the runs that differ only in the seed share it (MLflow's "Group by" on the
    tag whywarmup.seed_group draws their mean and range)."""
    parts = name.split(" ")
    return " ".join(p for p in parts if not p.startswith("seed=") and not p.startswith("#"))


def grid_text(method: Any) -> str:
    """The method's grid in one line: `c (eta_trgt = c / lambda_0) in {2, 8}; warmup_steps in {16, 64}; 4 runs`."""
    parts = []
    for key, values in method.grid.items():
        label = key
        if key == "eta_trgt":
            label = "c (eta_trgt = c / lambda_0)" if method.eta_relative_to == "lambda_0" else "eta_trgt"
        parts.append(f"{label} in {{{', '.join(format_value(v) for v in values)}}}")
    runs = len(grid_points(method.grid))
    return "; ".join([*parts, f"{runs} run{'s' if runs != 1 else ''}"])


def method_description(name: str, method: Any) -> str:
    """A parent run's description (MLflow's `mlflow.note.content`, Markdown): schedule, optimizer, grid."""
    lr = "c / lambda_0 (c below)" if method.eta_relative_to == "lambda_0" else "absolute"
    lines = [
        f"**{name}** (kind `{method.kind}`): {method.schedule_text()}",
        "",
        f"- Optimizer: {method.optimizer.describe()}",
        f"- eta_trgt: {lr}; after warmup: {method.decay}",
        f"- Grid: {grid_text(method)}",
    ]
    if method.overrides:
        settings = ", ".join(f"{k} = {format_value(v)}" for k, v in method.overrides.items())
        lines.append(f"- Overrides for this method: {settings}")
    lines += [
        "",
        f"Child runs are the grid points, named `{name} c=... T_wrm=... seed=...` (c for eta_trgt relative to "
        f"lambda_0, lr where absolute). Their trajectories are in runs/{name}/ (a DVC output) and in each child's "
        "`trajectory` artifact; this run's `summary.csv` has one row per grid point.",
    ]
    return "\n".join(lines)
