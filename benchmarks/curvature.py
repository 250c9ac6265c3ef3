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
import subprocess
import sys
import time
from pathlib import Path

import torch

from whywarmup.config import load_config
from whywarmup.curvature import HessianOperator, lanczos_top
from whywarmup.data import build_dataset
from whywarmup.losses import get_loss
from whywarmup.models import build_model
from whywarmup.train import measurement_batches, train_run


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


MEMORY_PROBE = """
import resource, sys, torch
from whywarmup.curvature import top_hessian_eigen
from whywarmup.losses import mse_loss
from whywarmup.models import build_model
from whywarmup.sections import CNNConfig
n, chunk = int(sys.argv[1]), int(sys.argv[2])
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
torch.manual_seed(0)
model = build_model(CNNConfig(channels=16), (3, 32, 32), 10).to(device)
x, y = torch.randn(n, 3, 32, 32, device=device), torch.randint(0, 10, (n,), device=device)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
res = top_hessian_eigen(model, mse_loss, (x, y), chunk_size=chunk, tol=0.5, max_matvecs=2)
if device.type == "cuda":
    print(torch.cuda.max_memory_allocated() / 2**20, res.value)
else:
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024, res.value)
"""


def memory_table(n: int = 1024) -> None:
    """Peak memory of one measurement (CIFAR-shaped inputs, Myrtle CNN) against the chunk size, each in a
    fresh process: on CPU the growth of the peak RSS during the measurement, on CUDA the peak allocation."""
    where = "CUDA peak allocated" if torch.cuda.is_available() else "CPU peak RSS growth"
    print(f"\n## Memory of one measurement, {n} CIFAR-shaped examples, Myrtle CNN (16 channels), {where}")
    print(f"{'chunk size':>12}{'MiB':>10}{'value':>12}")
    for chunk in (n, n // 4, n // 16):
        out = subprocess.run(
            [sys.executable, "-c", MEMORY_PROBE, str(n), str(chunk)], capture_output=True, text=True, check=True
        ).stdout.split()
        print(f"{chunk:>12}{float(out[0]):>10.0f}{float(out[1]):>12.5f}")


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
    parser.add_argument("--starts", type=int, default=5, help="random starts per point in the cold-start table")
    args = parser.parse_args()
    cfg = load_config(args.params)
    run = cfg.runs(args.method)[0]
    data = build_dataset(cfg.data)
    torch.manual_seed(0)
    model = build_model(run.model, data.input_shape, data.num_classes)
    loss_fn = get_loss(run.training.loss)
    ((x, y),) = measurement_batches(data, run)
    params = [p for p in model.parameters()]

    def gradient():
        torch.autograd.grad(loss_fn(model(x), y), params)

    op = HessianOperator(model, loss_fn, (x, y))
    v = torch.randn(op.size)
    t_grad = timed(gradient, args.repeats)
    print(f"## HVP cost (default model, {len(x)} measurement examples, {op.size} parameters)")
    print(f"{'mode':<36}{'ms':>10}{'x gradient':>12}")
    print(f"{'gradient':<36}{1e3 * t_grad:>10.2f}{1.0:>12.2f}")
    for chunk in (None, 256):
        op = HessianOperator(model, loss_fn, (x, y), chunk_size=chunk)
        label = "1 chunk" if chunk is None else f"{len(op.chunks)} chunks of {chunk}"
        for mode in ("cached-reverse", "forward-over-reverse", "reverse-over-reverse"):
            if mode == "cached-reverse" and chunk is not None:
                continue
            op.mode = mode
            t = timed(lambda op=op: op(v), args.repeats)
            print(f"{f'{mode} ({label})':<36}{1e3 * t:>10.2f}{t / t_grad:>12.2f}")
    build = timed(lambda: HessianOperator(model, loss_fn, (x, y))(v), args.repeats)
    print(f"{'cached: graph + 1st HVP':<36}{1e3 * build:>10.2f}{build / t_grad:>12.2f}")
    print(
        f"auto mode here: {HessianOperator(model, loss_fn, (x, y)).mode} (1 chunk), "
        f"{HessianOperator(model, loss_fn, (x, y), chunk_size=256).mode} (several chunks)"
    )

    # Points to measure at: initialization, and after 100 steps of GD at eta = 1 / lambda_0.
    points = {"init": {k: p.detach().clone() for k, p in model.state_dict().items()}}
    lam0, *_ = lanczos_top(HessianOperator(model, loss_fn, (x, y)), torch.randn(op.size), tol=1e-6, max_matvecs=200)
    opt = torch.optim.SGD(model.parameters(), lr=1 / lam0)
    for _ in range(100):
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    points["GD 100 steps"] = {k: p.detach().clone() for k, p in model.state_dict().items()}

    print(f"\n## Top eigenvalue, cold start ({args.starts} random starts per point)")
    print("power: PyHessian's recipe (tol 1e-3 on the relative change, <= 100 iterations); power*: power iteration")
    print("run until it is as accurate as Lanczos was (same start). ratio = power* HVPs / Lanczos HVPs.")
    header = f"{'point':<14}{'seed':>5}{'Lanczos':>9}{'error':>10}{'power':>7}{'error':>10}{'power*':>8}{'error':>10}"
    print(header + f"{'ratio':>7}")
    ratios, ratios_recipe = [], []
    for point, state in points.items():
        model.load_state_dict(state)
        op = HessianOperator(model, loss_fn, (x, y))
        for seed in range(args.starts):
            start = torch.randn(op.size, generator=torch.Generator().manual_seed(seed))
            ref, *_ = lanczos_top(op, start, tol=1e-10, max_matvecs=300)
            value, _, used, _ = lanczos_top(op, start, tol=1e-3, max_matvecs=100)
            err = abs(value - ref) / ref
            pvalue, pused = power_iteration(op, start, 1e-3)
            perr = abs(pvalue - ref) / ref
            svalue, sused = power_to_accuracy(op, start, ref, err)
            serr = abs(svalue - ref) / ref
            ratios.append(sused / used)
            ratios_recipe.append(pused / used)
            print(
                f"{point:<14}{seed:>5}{used:>9}{err:>10.1e}{pused:>7}{perr:>10.1e}{sused:>8}{serr:>10.1e}"
                f"{sused / used:>7.2f}"
            )
    print(
        f"median ratio at equal accuracy: {statistics.median(ratios):.2f} (min {min(ratios):.2f}); "
        f"against the recipe, whose error is larger: {statistics.median(ratios_recipe):.2f}"
    )
    memory_table()

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
