"""Verdicts that survive a change of seeds: trains the configuration as written and again with every initialization
seed moved by --offset (a disjoint seed set, e.g. 0, 1, 2 -> 100, 101, 102), analyzes both, and prints each claim's
pooled verdict, per-seed verdicts (S/C/I) and statistic side by side.

    python benchmarks/seed_robustness.py [--params params.yaml] [--offset 100] [--reuse .]

--reuse ROOT takes the first set's claims from ROOT/metrics.json of a finished `dvc repro` of the same params
instead of training it again. Exit status 1 when a verdict differs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from whywarmup.config import load_config, shift_seeds
from whywarmup.robustness import compare_verdicts, pipeline_claims


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--offset", type=int, default=100)
    parser.add_argument("--reuse", type=Path, default=None, help="take the first set's claims from ROOT/metrics.json")
    args = parser.parse_args()
    cfg = load_config(args.params)
    sets = {"as written": cfg, f"seeds + {args.offset}": shift_seeds(cfg, args.offset)}
    claims, times = {}, {}
    for name, c in sets.items():
        seeds = sorted({r.method.seed for m in c.methods for r in c.runs(m)})
        print(f"{name}: seeds {seeds}", flush=True)
        t = time.perf_counter()
        if args.reuse is not None and not claims:
            claims[name] = json.loads((args.reuse / "metrics.json").read_text())["claims"]
        else:
            with tempfile.TemporaryDirectory() as tmp:
                claims[name] = pipeline_claims(c, Path(tmp))
        times[name] = time.perf_counter() - t
    table = compare_verdicts(*claims.values())
    print()
    print(table[["claim", "verdict", "per_seed", "verdict_shifted", "per_seed_shifted", "same"]].to_string(index=False))
    print()
    for row in table.itertuples():
        print(f"{row.claim} as written: {row.statistic}\n{row.claim} shifted:    {row.statistic_shifted}")
    print(
        f"\n{int(table['same'].sum())} of {len(table)} verdicts the same; wall time "
        + ", ".join(f"{k}: {v:.0f} s" for k, v in times.items())
    )
    return 0 if table["same"].all() else 1


if __name__ == "__main__":
    sys.exit(main())
