#!/usr/bin/env bash
# GPU check (at most ~5 minutes, CUDA machine): WideResNet-16-4 on CIFAR-10-shaped data made here (no download),
# a few hundred SGD steps with sharpness every 50 steps; prints steps/s, the same with the critical sharpness at every
# step (its overhead and forward passes per step), the HVP / gradient time ratio, peak GPU memory, runs per hour with
# 1, 2 and 4 runs packed on one GPU through Ray (executor.num_gpus 1, 0.5, 0.25), and the wall time of the default
# pipeline (`dvc repro` in a scratch clone) on this machine.
#     bash benchmarks/gpu_check.sh [steps]        (run from the repository root, its venv active)
# GPU_CHECK_DEVICE=cpu runs the same code on the CPU with a 64-example measurement set (a smoke test of the script;
# the numbers mean little there).
set -euo pipefail
STEPS="${1:-300}"
export DVC_NO_ANALYTICS=1
python - "$STEPS" <<'PY'
import os, sys, time
import torch
from whywarmup.config import parse_config
from whywarmup.curvature import HessianOperator
from whywarmup.data import PreparedData
from whywarmup.losses import get_loss
from whywarmup.models import build_model
from whywarmup.train import train_run

dev = torch.device(os.environ.get("GPU_CHECK_DEVICE", "cuda"))
if dev.type == "cuda" and not torch.cuda.is_available():
    sys.exit("gpu_check: no CUDA device visible to torch (torch.cuda.is_available() is False); run it on a GPU machine")
cuda = dev.type == "cuda"
def sync():
    if cuda:
        torch.cuda.synchronize()
def peak_gib():
    return torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
steps = int(sys.argv[1])
subset = 1024 if cuda else 64
g = torch.Generator().manual_seed(0)
n = 10_000  # CIFAR-10-shaped: 3x32x32 standardized images, 10 classes
data = PreparedData(torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g),
                    torch.randn(2000, 3, 32, 32, generator=g), torch.randint(0, 10, (2000,), generator=g), 10, "synthetic")
def make_run(steps, critical_every=0):
    return parse_config({
        "model": {"kind": "wrn", "depth": 16, "widen_factor": 4},
        "training": {"loss": "cross_entropy", "steps": steps, "batch_size": 128, "eval_every": steps,
                     "device": dev.type},
        "sharpness": {"every": 50, "dense_until": 0, "measure_on": "subset", "subset_size": subset, "chunk_size": 256,
                      "critical_every": critical_every},
        "methods": {"m": {"kind": "linear", "warmup_steps": max(1, min(100, steps // 3)), "eta_trgt": 0.1,
                          "optimizer": {"name": "sgd", "momentum": 0.9}}},
    }).runs("m")[0]
run = make_run(steps)
print(f"device: {torch.cuda.get_device_name(0) if cuda else 'cpu'}, torch {torch.__version__}")
train_run(make_run(2), data, progress=False)  # warm-up: CUDA context, kernels, allocator
sync()
if cuda:
    torch.cuda.reset_peak_memory_stats()
t = time.perf_counter()
result = train_run(run, data, progress=False)
sync()
wall = time.perf_counter() - t
measured = int(result.trajectory["sharpness"].notna().sum())
print(f"train: {steps} steps (batch 128, sharpness on {subset} examples x {measured} measurements) in {wall:.1f} s "
      f"= {steps / wall:.1f} steps/s; peak memory {peak_gib():.2f} GiB")
t = time.perf_counter()
critical = train_run(make_run(steps, critical_every=1), data, progress=False)
sync()
passes = critical.trajectory["critical_sharpness_passes"].dropna()
print(f"with the critical sharpness at every step: {time.perf_counter() - t:.1f} s "
      f"(+{100 * ((time.perf_counter() - t) / wall - 1):.0f}%), forward passes per step median {passes.median():.0f} "
      f"(mean {passes.mean():.2f})")

model = build_model(run.model, (3, 32, 32), 10).to(dev)
loss_fn = get_loss("cross_entropy")
x, y = data.x_train[:256 if cuda else 32].to(dev), data.y_train[:256 if cuda else 32].to(dev)
def timed(fn, reps=20 if cuda else 2):
    fn(); sync(); t = time.perf_counter()
    for _ in range(reps):
        fn()
    sync()
    return (time.perf_counter() - t) / reps
grad_s = timed(lambda: torch.autograd.grad(loss_fn(model(x), y), list(model.parameters())))
print(f"{f'HVP mode ({len(x)} examples)':<32}{'ms':>8}{'x gradient':>12}")
print(f"{'gradient':<32}{grad_s * 1e3:>8.2f}{1.0:>12.2f}")
for mode in ("cached-reverse", "forward-over-reverse", "reverse-over-reverse"):
    op = HessianOperator(model, loss_fn, [(x, y)], mode=mode)
    v = torch.randn(op.size, device=dev)
    op(v)  # the cached mode builds the gradient's graph on its first product
    s = timed(lambda: op(v))
    print(f"{mode:<32}{s * 1e3:>8.2f}{s / grad_s:>12.2f}")
PY
python - <<'PY'
# Packing (executor.num_gpus = 1/k): 2k short WRN runs through a local Ray instance with k of them sharing each GPU;
# runs per hour for k = 1, 2, 4 (on the CPU smoke test: k CPU workers, tiny runs, the code path only).
import os, tempfile, time
from pathlib import Path
import torch
from whywarmup.config import parse_config
from whywarmup.data import PreparedData, prepared_path, save_prepared
from whywarmup.sweep import run_method

cuda = os.environ.get("GPU_CHECK_DEVICE", "cuda") == "cuda"
g = torch.Generator().manual_seed(0)
n = 10_000 if cuda else 256
data = PreparedData(torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g),
                    torch.randn(500, 3, 32, 32, generator=g), torch.randint(0, 10, (500,), generator=g), 10, "synthetic")
steps = 100 if cuda else 3
print(f"{'runs per GPU':>12}{'num_gpus':>10}{'runs':>6}{'wall s':>9}{'runs/hour':>11}")
for k in (1, 2, 4):
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        cfg = parse_config({
            "model": {"kind": "wrn", "depth": 16, "widen_factor": 4},
            "training": {"loss": "cross_entropy", "steps": steps, "batch_size": 128 if cuda else 16,
                         "eval_every": steps, "device": "cuda" if cuda else "cpu"},
            "sharpness": {"every": 50, "dense_until": 0, "subset_size": 1024 if cuda else 32, "chunk_size": 256,
                          "critical_every": 0},
            "executor": {"kind": "ray", "num_gpus": 1 / k if cuda else 0, "num_cpus": 1, "workers": None if cuda else k},
            "methods": {"m": {"kind": "linear", "warmup_steps": max(1, steps // 3), "eta_trgt": 0.1,
                              "optimizer": {"name": "sgd", "momentum": 0.9}, "grid": {"seed": list(range(2 * k))}}},
        })
        save_prepared(data, tmp / prepared_path(cfg.data))
        t = time.perf_counter()
        run_method(cfg, "m", tmp, progress=False)
        wall = time.perf_counter() - t
    print(f"{k:>12}{(1 / k if cuda else 0):>10.2f}{2 * k:>6}{wall:>9.1f}{3600 * 2 * k / wall:>11.0f}")
PY
[ "${GPU_CHECK_DEVICE:-cuda}" = cpu ] && exit 0  # the CPU smoke test stops before the pipeline
tmp="$(mktemp -d)"
git clone -q . "$tmp/project"
start=$(date +%s)
(cd "$tmp/project" && timeout 240 dvc repro -q >/dev/null 2>"$tmp/repro.err") && status=ok || status="failed or over 240 s: $(tail -3 "$tmp/repro.err")"
echo "default pipeline (dvc repro in a scratch clone): $(( $(date +%s) - start )) s, $status"
rm -rf "$tmp"
