"""Ray's overhead per grid point: many tiny grid points (a few steps each) run in the stage's own process and as
Ray tasks one at a time on a local Ray instance; prints a table. The difference per point is what Ray adds
(task submission, moving the result back, the driver writing its file), not counting starting Ray, shown apart.

    python benchmarks/ray_overhead.py [--points 40] [--steps 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from whywarmup.config import parse_config
from whywarmup.data import build_dataset, prepared_path, save_prepared
from whywarmup.sweep import run_method


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=40)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    import ray

    raw = {
        "data": {"num_examples": 300},
        "model": {"kind": "fcn", "depth": 3, "width": 64},
        "training": {"steps": args.steps, "eval_every": args.steps},
        "sharpness": {"every": 0, "subset_size": 128},
        "methods": {"m": {"kind": "none", "grid": {"eta_trgt": [0.01 + i * 1e-4 for i in range(args.points)]}}},
    }
    data = build_dataset(parse_config(raw).data)
    t = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    start_s = time.perf_counter() - t
    rows = []
    try:
        for kind in ("local", "ray"):
            cfg = parse_config({**raw, "executor": {"kind": kind, "workers": 1}})
            with tempfile.TemporaryDirectory() as tmp:
                root = Path(tmp)
                save_prepared(data, root / prepared_path(cfg.data))
                t = time.perf_counter()
                run_method(cfg, "m", root, progress=False)
                rows.append((kind, time.perf_counter() - t))
    finally:
        ray.shutdown()
    print(f"{args.points} grid points of {args.steps} steps, one at a time; starting the local Ray: {start_s:.1f} s")
    print(f"{'executor':>9}{'wall s':>9}{'s / point':>11}")
    for kind, wall in rows:
        print(f"{kind:>9}{wall:>9.2f}{wall / args.points:>11.3f}")
    overhead = (rows[1][1] - rows[0][1]) / args.points
    print(f"Ray overhead per grid point: {overhead:.3f} s")


if __name__ == "__main__":
    main()
