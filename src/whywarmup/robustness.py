"""Do the claim verdicts depend on which seeds were drawn? Train a configuration and the same configuration with
every initialization seed moved to a disjoint set (config.shift_seeds), and compare the pooled verdicts.

Used by benchmarks/seed_robustness.py (the full default) and tests/test_seed_robustness.py (a tiny one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from .analysis import analyze
from .config import Config
from .data import build_dataset, prepared_path, save_prepared
from .sweep import run_method


def pipeline_claims(cfg: Config, root: Path, *, progress: bool = False) -> dict[str, Any]:
    """Prepare, train every method and analyze into `root` (its own MLflow store and outputs); returns
    metrics.json's `claims` section."""
    save_prepared(build_dataset(cfg.data), root / prepared_path(cfg.data))
    for method in cfg.methods:
        run_method(cfg, method, root, progress=progress)
    return analyze(cfg, root)["claims"]


def compare_verdicts(first: dict[str, Any], second: dict[str, Any]) -> pd.DataFrame:
    """One row per claim: each set's pooled verdict, its per-seed verdicts and statistic, and whether they agree."""
    rows = []
    for claim in sorted(set(first) | set(second)):
        a, b = first.get(claim, {}), second.get(claim, {})
        rows.append(
            {
                "claim": claim,
                "verdict": a.get("verdict"),
                "per_seed": " ".join(v[0] for v in a.get("per_seed", {}).values()),
                "verdict_shifted": b.get("verdict"),
                "per_seed_shifted": " ".join(v[0] for v in b.get("per_seed", {}).values()),
                "same": a.get("verdict") == b.get("verdict"),
                "statistic": a.get("statistic", ""),
                "statistic_shifted": b.get("statistic", ""),
            }
        )
    return pd.DataFrame(rows)
