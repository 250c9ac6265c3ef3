"""Wall time of one method's sweep with 1 and with N local worker processes (and, with --ray, as Ray tasks on a
local Ray instance of N CPUs); prints a table.

Trains the grid of a method of params.yaml (default: linear) into a scratch folder with its own MLflow store,
once per executor and worker count, and checks that the results are identical.

    python benchmarks/sweep.py [--params params.yaml] [--method linear] [--workers 1 2] [--limit 6] [--ray]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from whywarmup.config import load_config
from whywarmup.data import build_dataset, prepared_path, save_prepared
from whywarmup.sweep import run_method


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--method", default="linear")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--limit", type=int, default=6, help="first grid values of eta_trgt only (0: all)")
    parser.add_argument("--ray", action="store_true", help="also run the sweep as Ray tasks (needs the ray extra)")
    args = parser.parse_args()
    cfg = load_config(args.params)
    entry = cfg.methods[args.method]
    if args.limit and "eta_trgt" in entry.grid:
        grid = {**entry.grid, "eta_trgt": entry.grid["eta_trgt"][: args.limit]}
        cfg = cfg.model_copy(update={"methods": {args.method: entry.model_copy(update={"grid": grid})}})
    runs = len(cfg.runs(args.method))
    data = build_dataset(cfg.data)
    print(
        f"method {args.method}: {runs} runs of {cfg.training.steps} steps, {cfg.training.threads} torch thread(s) each"
    )
    print(f"{'executor':>9}{'workers':>8}{'wall s':>10}{'s / run':>10}{'speed-up':>10}{'identical':>11}")
    base_time, base = None, None
    setups = [("local", w) for w in args.workers] + ([("ray", w) for w in args.workers] if args.ray else [])
    for kind, workers in setups:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            save_prepared(data, root / prepared_path(cfg.data))
            executor = {"kind": kind, "workers": workers, "local_cpus": workers if kind == "ray" else None}
            run_cfg = cfg.model_copy(update={"executor": cfg.executor.model_copy(update=executor)})
            t = time.perf_counter()  # for Ray this includes starting the local instance
            summary = run_method(run_cfg, args.method, root, progress=False)
            wall = time.perf_counter() - t
        result = summary.drop(columns=["wall_time_s", "mlflow_run_id"])
        base_time = base_time or wall
        same = "-" if base is None else str(result.equals(base))
        base = result if base is None else base
        print(f"{kind:>9}{workers:>8}{wall:>10.1f}{wall / runs:>10.2f}{base_time / wall:>10.2f}{same:>11}")


if __name__ == "__main__":
    main()
