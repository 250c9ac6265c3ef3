"""The Transformer's curvature cost and the offline LM demo's speed; prints two tables.

1. One Hessian-vector product against one gradient, per HVP mode, for the offline demo's Transformer and the paper's
   Fig. 4 Transformer (4 blocks, width 128, context 64, vocabulary 4096), on a measurement set of random windows.
2. The offline demo (presets/lm_offline_demo.yaml): steps per second of one run without any measurement and with the
   preset's sharpness measurements (plain and Adam's preconditioned), and the HVPs they spent.

    python benchmarks/transformer.py [--repeats 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from whywarmup.config import load_config
from whywarmup.curvature import HessianOperator
from whywarmup.data import build_dataset
from whywarmup.losses import cross_entropy_loss
from whywarmup.models import build_model
from whywarmup.sections import TransformerConfig
from whywarmup.train import train_run

DEMO = Path(__file__).resolve().parents[1] / "presets" / "lm_offline_demo.yaml"
MODES = ("cached-reverse", "forward-over-reverse", "reverse-over-reverse")


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def hvp_table(repeats: int) -> None:
    demo = load_config(DEMO)
    setups = {
        "demo (2x32, T 32, V 256)": (demo.model, demo.data.resolved_context, demo.data.resolved_vocab_size, 64),
        "Fig. 4 (4x128, T 64, V 4096)": (TransformerConfig(depth=4, width=128, heads=4), 64, 4096, 64),
    }
    print("## HVP cost against a gradient (median of repeats, CPU)")
    print(f"{'model':<30}{'windows':>8}{'params':>10}{'mode':>24}{'ms':>10}{'x gradient':>12}")
    for name, (cfg, context, vocab, windows) in setups.items():
        torch.manual_seed(0)
        model = build_model(cfg, (context,), vocab)
        x, y = (torch.randint(0, vocab, (windows, context)) for _ in range(2))
        params = list(model.parameters())
        t_grad = timed(
            lambda m=model, x=x, y=y, ps=params: torch.autograd.grad(cross_entropy_loss(m(x), y), ps), repeats
        )
        size = sum(p.numel() for p in params)
        print(f"{name:<30}{windows:>8}{size:>10}{'gradient':>24}{1e3 * t_grad:>10.1f}{1.0:>12.2f}")
        for mode in MODES:
            op = HessianOperator(model, cross_entropy_loss, (x, y), mode=mode)
            v = torch.randn(op.size)
            t = timed(lambda op=op, v=v: op(v), repeats)
            print(f"{'':<30}{'':>8}{'':>10}{op.mode:>24}{1e3 * t:>10.1f}{t / t_grad:>12.2f}")


def demo_table() -> None:
    cfg = load_config(DEMO)
    data = build_dataset(cfg.data)
    print("\n## Offline demo, one run (presets/lm_offline_demo.yaml, Adam at its first eta_trgt, CPU, 1 thread)")
    print(f"{'setting':<44}{'steps':>7}{'wall s':>9}{'steps/s':>9}{'HVPs':>7}")
    run = cfg.runs("adam")[0]
    bare = run.model_copy(
        update={"sharpness": run.sharpness.model_copy(update={"every": 0, "dense_until": 0}), "name": "bare"}
    )
    for label, r in (("no measurement after lambda_0", bare), ("the preset's measurements", run)):
        t = time.perf_counter()
        result = train_run(r, data, progress=False)
        wall = time.perf_counter() - t
        steps = r.training.steps
        hvps = int(result.trajectory["sharpness_matvecs"].sum())
        print(f"{label:<44}{steps:>7}{wall:>9.1f}{steps / wall:>9.1f}{hvps:>7}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    hvp_table(args.repeats)
    demo_table()


if __name__ == "__main__":
    main()
