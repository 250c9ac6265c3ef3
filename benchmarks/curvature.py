"""Speed and accuracy of the sharpness measurement on the default configuration; prints tables.

1. Cost of one Hessian-vector product against one gradient, per HVP mode.
2. Cold-start Lanczos against power iteration (PyHessian's recipe: stop when the eigenvalue estimate changes
   by less than tol relative, at most 100 iterations), both against a tight reference (Lanczos at tol 1e-10).
3. During training: HVPs per warm-started measurement, and a run's wall time with and without sharpness.

    python benchmarks/curvature.py [--params params.yaml] [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from whywarmup.config import load_config
from whywarmup.curvature import HessianOperator, lanczos_top
from whywarmup.data import build_dataset
from whywarmup.losses import get_loss
from whywarmup.models import build_model
from whywarmup.train import measurement_set, train_run


def power_iteration(matvec, v: torch.Tensor, tol: float, max_iter: int = 100) -> tuple[float, int]:
    """PyHessian's top-eigenvalue recipe."""
    v = v / v.norm()
    value = None
    for i in range(max_iter):
        hv = matvec(v)
        new = torch.dot(hv, v).item()
        v = hv / hv.norm()
        if value is not None and abs(new - value) / (abs(value) + 1e-6) < tol:
            return new, i + 1
        value = new
    return value, max_iter


def power_to_accuracy(matvec, v: torch.Tensor, ref: float, rel: float, max_iter: int = 2000) -> tuple[float, int]:
    v = v / v.norm()
    for i in range(max_iter):
        hv = matvec(v)
        value = torch.dot(hv, v).item()
        if abs(value - ref) / ref <= rel:
            return value, i + 1
        v = hv / hv.norm()
    return value, max_iter


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--method", default="linear")
    args = parser.parse_args()
    cfg = load_config(args.params)
    run = cfg.runs(args.method)[0]
    data = build_dataset(cfg.data)
    torch.manual_seed(0)
    model = build_model(run.model, data.input_shape, data.num_classes)
    loss_fn = get_loss(run.training.loss)
    x, y = measurement_set(data, run)
    params = [p for p in model.parameters()]

    def gradient():
        torch.autograd.grad(loss_fn(model(x), y), params)

    op = HessianOperator(model, loss_fn, (x, y))
    v = torch.randn(op.size)
    t_grad = timed(gradient, args.repeats)
    print(f"## HVP cost (default model, {len(x)} measurement examples, {op.size} parameters)")
    print(f"{'mode':<24}{'ms':>10}{'x gradient':>12}")
    print(f"{'gradient':<24}{1e3 * t_grad:>10.2f}{1.0:>12.2f}")
    for mode in ("cached-reverse", "forward-over-reverse", "reverse-over-reverse"):
        op.mode = mode
        t = timed(lambda: op(v), args.repeats)
        print(f"{mode:<24}{1e3 * t:>10.2f}{t / t_grad:>12.2f}")
    build = timed(lambda: HessianOperator(model, loss_fn, (x, y))(v), args.repeats)
    print(f"{'cached: graph + 1st HVP':<24}{1e3 * build:>10.2f}{build / t_grad:>12.2f}")
    op = HessianOperator(model, loss_fn, (x, y))

    print("\n## Top eigenvalue at initialization, cold start (3 random starts)")
    print(f"{'engine':<34}{'HVPs':>6}{'value':>12}{'rel. error':>12}")
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        start = torch.randn(op.size, generator=g)
        ref, *_ = lanczos_top(op, start, tol=1e-10, max_matvecs=300)
        value, _, used, _ = lanczos_top(op, start, tol=1e-3, max_matvecs=100)
        print(f"{f'Lanczos tol 1e-3 (seed {seed})':<34}{used:>6}{value:>12.5f}{abs(value - ref) / ref:>12.2e}")
        pvalue, pused = power_iteration(op, start, 1e-3)
        label = f"power iteration tol 1e-3 (seed {seed})"
        print(f"{label:<34}{pused:>6}{pvalue:>12.5f}{abs(pvalue - ref) / ref:>12.2e}")
        target = abs(value - ref) / ref  # power iteration run until it is as accurate as Lanczos
        pvalue, pused = power_to_accuracy(op, start, ref, target)
        label = f"power iteration, same acc. (seed {seed})"
        print(f"{label:<34}{pused:>6}{pvalue:>12.5f}{abs(pvalue - ref) / ref:>12.2e}")

    print("\n## During training (first grid point of the method)")
    t0 = time.perf_counter()
    res = train_run(run, data, progress=False)
    t_with = time.perf_counter() - t0
    measured = res.trajectory.dropna(subset=["sharpness"])
    warm = measured[measured["step"] > 0]["sharpness_matvecs"]
    no_sharp = run.model_copy(update={"sharpness": run.sharpness.model_copy(update={"every": 0})})
    t0 = time.perf_counter()
    train_run(no_sharp, data, progress=False)
    t_without = time.perf_counter() - t0
    print(f"{'measurements':<40}{len(warm):>10}")
    print(f"{'median HVPs per warm-started measurement':<40}{statistics.median(warm):>10.1f}")
    print(f"{'max HVPs per warm-started measurement':<40}{warm.max():>10.0f}")
    print(f"{'run wall time with sharpness (s)':<40}{t_with:>10.2f}")
    print(f"{'run wall time without sharpness (s)':<40}{t_without:>10.2f}")
    print(f"{'ratio':<40}{t_with / t_without:>10.2f}")


if __name__ == "__main__":
    main()
