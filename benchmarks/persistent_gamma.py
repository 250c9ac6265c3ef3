"""How persistent_catapult's gamma and its source of eta_c trade warmup length against stability; prints a table.

For each source of the local critical learning rate (sharpness: c / lambda_max by Lanczos; critical_sharpness:
2 / lambda_c from forward passes along the next update; search: the loss-catapult search), gamma and target c
(eta_trgt = c / lambda_0) it trains the default params.yaml model with the persistent_catapult method over several
seeds and reports, as mean +- sd over the seeds, the update at which eta_trgt was reached, the lr increases and the
catapults they induced, the final test accuracy and the wall time, with the number of runs that did not finish.
Each run measures only what its source needs (sharpness.critical_every: 0), so the wall times compare the sources.
docs/science.md section 6 asks for gamma's default to be chosen by such a measurement.

    python benchmarks/persistent_gamma.py [--params params.yaml] [--sources sharpness critical_sharpness search]
        [--gammas 1.5] [--targets 32 128] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

from whywarmup.config import load_config
from whywarmup.data import build_dataset
from whywarmup.train import train_run


def spread(values: list[float], digits: int = 1) -> str:
    """mean +- sd of the finite values ("-" when none; no sd for one)."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "-"
    if len(finite) == 1:
        return f"{finite[0]:.{digits}f}"
    return f"{statistics.mean(finite):.{digits}f}+-{statistics.stdev(finite):.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--method", default="persistent_catapult")
    parser.add_argument("--sources", nargs="+", default=["sharpness", "critical_sharpness", "search"])
    parser.add_argument("--gammas", type=float, nargs="+", default=[1.5])
    parser.add_argument("--targets", type=float, nargs="+", default=[32.0, 128.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    cfg = load_config(args.params)
    base = cfg.runs(args.method)[0]
    data = build_dataset(cfg.data)
    print(
        f"persistent_catapult on {cfg.data.dataset}, {base.training.steps} steps, re-estimate every "
        f"{base.method.every} steps; mean +- sd over seeds {args.seeds}; 'reached' over the runs that reached eta_trgt"
    )
    header = f"{'source':>19}{'gamma':>6}{'c':>6}{'reached at':>14}{'increases':>11}{'catapults':>11}"
    print(header + f"{'test acc':>15}{'not finished':>14}{'s/run':>8}")
    sharpness = base.sharpness.model_copy(update={"critical_every": 0})
    for c in args.targets:
        for source in args.sources:
            for gamma in args.gammas:
                reached, increases, catapults, accuracy, walls, unfinished = [], [], [], [], [], 0
                for seed in args.seeds:
                    # gamma = 1 is outside the method's validated range (> 1); build the run without validation.
                    fields = {**dict(base.method), "gamma": gamma, "eta_trgt": c, "source": source, "seed": seed}
                    method = base.method.model_construct(**fields)
                    run = base.model_construct(**{**dict(base), "method": method, "sharpness": sharpness})
                    t = time.perf_counter()
                    res = train_run(run, data, progress=False)
                    walls.append(time.perf_counter() - t)
                    s = res.summary
                    reached.append(s["warmup_steps_used"])
                    increases.append(s["lr_increases"])
                    catapults.append(s["catapults"])
                    accuracy.append(s["final_test_accuracy"])
                    unfinished += res.status != "finished"
                print(
                    f"{source:>19}{gamma:>6.2f}{c:>6.0f}{spread(reached):>14}{spread(increases):>11}"
                    f"{spread(catapults):>11}{spread(accuracy, 4):>15}{unfinished:>14}{statistics.mean(walls):>8.1f}"
                )


if __name__ == "__main__":
    main()
