"""How persistent_catapult's gamma trades warmup length against stability; prints a table.

For each gamma and target c (eta_trgt = c / lambda_0) it trains the default params.yaml model with the
persistent_catapult method and reports the update at which eta_trgt was reached, the catapults it induced, the
final status and test accuracy. docs/science.md section 6 asks for gamma's default to be chosen by such a measurement.

    python benchmarks/persistent_gamma.py [--params params.yaml] [--gammas 1.0 1.1 1.25 1.5 2] [--targets 32 128]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from whywarmup.config import load_config
from whywarmup.data import build_dataset
from whywarmup.train import train_run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--method", default="persistent_catapult")
    parser.add_argument("--gammas", type=float, nargs="+", default=[1.0, 1.1, 1.25, 1.5, 2.0])
    parser.add_argument("--targets", type=float, nargs="+", default=[32.0, 128.0])
    args = parser.parse_args()
    cfg = load_config(args.params)
    base = cfg.runs(args.method)[0]
    data = build_dataset(cfg.data)
    print(
        f"persistent_catapult on {cfg.data.dataset}, {base.training.steps} steps, re-estimate every "
        f"{base.method.every} steps from {base.method.source}"
    )
    print(
        f"{'gamma':>6}{'c':>7}{'reached at':>12}{'increases':>11}{'catapults':>11}{'status':>10}{'test acc':>10}"
        f"{'s':>7}"
    )
    for c in args.targets:
        for gamma in args.gammas:
            # gamma = 1 is outside the method's validated range (> 1); build the run without validation.
            method = base.method.model_construct(**{**dict(base.method), "gamma": gamma, "eta_trgt": c})
            run = base.model_construct(**{**dict(base), "method": method})
            t = time.perf_counter()
            res = train_run(run, data, progress=False)
            s = res.summary
            reached = "never" if s["warmup_steps_used"] != s["warmup_steps_used"] else f"{s['warmup_steps_used']:.0f}"
            print(
                f"{gamma:>6.2f}{c:>7.0f}{reached:>12}{s['lr_increases']:>11.0f}{s['catapults']:>11.0f}"
                f"{res.status:>10}{s['final_test_accuracy']:>10.4f}{time.perf_counter() - t:>7.1f}"
            )


if __name__ == "__main__":
    main()
