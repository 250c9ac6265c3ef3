"""What each preset costs: floating-point operations counted by torch (torch.utils.flop_counter) for one training
step, one Hessian-vector product and one test evaluation of the preset's own model, times how often the preset
does each; then GPU hours at an assumed sustained rate. An estimate, not a measurement: the rate is a parameter,
and `bash benchmarks/gpu_check.sh` measures the real steps/s of a WideResNet-16-4 on your GPU.

    python benchmarks/preset_cost.py [--tflops 20] [--matvecs 10] [presets/*.yaml]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from whywarmup.config import IMAGE_SIDES, RunConfig, load_config
from whywarmup.config import TRAIN_SET_SIZES as TRAIN_SIZES
from whywarmup.curvature import HessianOperator
from whywarmup.datasets import LAYOUTS, CifarLayout
from whywarmup.losses import get_loss
from whywarmup.models import build_model
from whywarmup.optim import is_adaptive

TEST_SIZES = {"cifar10": 10_000, "cifar100": 10_000, "mnist": 10_000, "fashion_mnist": 10_000}
# text: tokens of each split (estimates at a 4096-token BPE vocabulary: about 1.2 tokens a word; synthetic_text
# measured at vocabulary 256), divided into windows of data.context
TEXT_TOKENS = {  # dataset: (train, validation, test)
    "wikitext2": (2_500_000, 260_000, 295_000),
    "wikitext103": (140_000_000, 260_000, 295_000),
    "synthetic_text": (469_000, 39_000, 39_000),
}
PROBE = 8  # examples the counts are taken on; every cost here is linear in the number of examples
CRITICAL_PASSES_SGD, CRITICAL_PASSES_ADAPTIVE = 3.5, 5.7  # means at every step (benchmarks/critical_sharpness.py)


def _flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def per_example_costs(run: RunConfig) -> tuple[float, float, float]:
    """FLOPs per example of a training step (forward + backward), a Hessian-vector product, and a forward pass."""
    torch.manual_seed(0)
    if run.data.is_text:  # token windows: examples are windows of data.context tokens, classes the vocabulary
        shape, classes = (run.data.resolved_context,), run.data.resolved_vocab_size
        x, y = (torch.randint(0, classes, (PROBE, *shape)) for _ in range(2))
    else:
        layout, side = LAYOUTS.get(run.data.dataset), IMAGE_SIDES[run.data.dataset]
        shape = (3 if isinstance(layout, CifarLayout) else 1, side, side)
        classes = layout.num_classes if layout else 10  # digits: 10
        x, y = torch.randn(PROBE, *shape), torch.randint(0, classes, (PROBE,))
    model = build_model(run.model, shape, classes)
    loss_fn = get_loss(run.training.loss)

    def step():
        loss_fn(model(x), y).backward()

    forward = _flops(lambda: model(x))
    train = _flops(step)
    op = HessianOperator(model, loss_fn, (x, y), mode="reverse-over-reverse")
    hvp = _flops(lambda: op(torch.randn(op.size)))
    return train / PROBE, hvp / PROBE, forward / PROBE


def run_flops(run: RunConfig, matvecs: int) -> float:
    """FLOPs of one run: its steps, its sharpness measurements, its critical-sharpness steps (forward passes on the
    step's batch), the critical-lr search and its evaluations."""
    train, hvp, forward = per_example_costs(run)
    n_train, n_val, n_test = split_sizes(run)
    steps, s = run.training.steps, run.sharpness
    batch = run.training.batch_size or n_train
    measured = {t for t in range(steps + 1) if t <= s.dense_until or (s.every and t % s.every == 0)} | {0, steps}
    examples = {"subset": min(s.subset_size, n_train), "train": n_train, "minibatch": batch}.get(
        s.measure_on, s.num_minibatches * batch
    )
    kinds = 2 if is_adaptive(run.method.optimizer) else 1  # Adam family: plain and preconditioned sharpness
    probes = 25  # catapult search: doubling from eta_0 then bisection, one step + one loss each
    critical = len(range(0, steps, s.critical_every)) if s.critical_every else 0
    passes = CRITICAL_PASSES_ADAPTIVE if is_adaptive(run.method.optimizer) else CRITICAL_PASSES_SGD
    evals = math.ceil(steps / run.training.eval_every) + 1
    return (
        steps * batch * train
        + len(measured) * kinds * matvecs * examples * hvp
        + probes * min(s.chunk_size, examples) * (train + forward)
        + critical * passes * batch * forward
        + evals * (n_val + n_test) * forward
    )


def split_sizes(run: RunConfig) -> tuple[int, int, int]:
    """Examples (text: windows) of the training, validation and test sets of `run`'s data."""
    d = run.data
    if d.is_text:
        train, val, test = (n // d.resolved_context for n in TEXT_TOKENS[d.dataset])
        subset = d.num_test_examples or val + test
        return min(d.num_examples or train, train), min(subset, val), min(subset, test)
    n = min(d.num_examples or TRAIN_SIZES[d.dataset], TRAIN_SIZES[d.dataset])
    n_test = min(d.num_test_examples or TEST_SIZES[d.dataset], TEST_SIZES[d.dataset])
    return n, round(d.validation_fraction * n), n_test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="*", type=Path, default=sorted(Path("presets").glob("*.yaml")))
    parser.add_argument("--tflops", type=float, default=20.0, help="assumed sustained TFLOP/s of one GPU")
    parser.add_argument("--matvecs", type=int, default=10, help="HVPs per warm-started measurement (default runs: 5)")
    args = parser.parse_args()
    print(f"assumed {args.tflops:g} TFLOP/s sustained, {args.matvecs} HVPs per sharpness measurement")
    print(f"{'preset':<34}{'runs':>6}{'steps':>9}{'TFLOP/run':>11}{'PFLOP':>9}{'GPU h':>8}")
    for path in args.presets:
        cfg = load_config(path)
        runs = [r for m in cfg.methods for r in cfg.runs(m)]
        per_run = [run_flops(r, args.matvecs) for r in runs]
        total = sum(per_run)
        hours = total / (args.tflops * 1e12) / 3600
        steps = max(r.training.steps for r in runs)
        print(
            f"{path.stem:<34}{len(runs):>6}{steps:>9}{total / len(runs) / 1e12:>11.1f}{total / 1e15:>9.1f}{hours:>8.1f}"
        )


if __name__ == "__main__":
    main()
