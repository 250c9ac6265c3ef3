import os
from pathlib import Path

import pytest
import torch
from torch.func import functional_call

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
ROOT = Path(__file__).resolve().parents[1]


def dense_hessian(model: torch.nn.Module, loss_fn, batches) -> torch.Tensor:
    """Dense Hessian of the sample-weighted mean loss, by reverse-over-reverse autograd (independent path)."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    total = sum(len(x) for x, _ in batches)

    def loss(flat):
        chunks = flat.split([s.numel() for s in shapes])
        params = {n: c.view(s) for n, c, s in zip(names, chunks, shapes)}
        return sum(len(x) / total * loss_fn(functional_call(model, params, (x,)), y) for x, y in batches)

    return torch.autograd.functional.hessian(loss, flat0)


def top_dense_eigenvalue(model: torch.nn.Module, loss_fn, batch) -> float:
    return torch.linalg.eigvalsh(dense_hessian(model, loss_fn, [batch]).double())[-1].item()


def tiny_run(method: dict, *, steps: int = 40, eval_every: int = 20, **sections):
    """The resolved run of a one-method params file on a small FCN; `sections` replace whole sections."""
    from whywarmup.config import parse_config

    raw = {
        "model": {"kind": "fcn", "depth": 3, "width": 32},
        "training": {"steps": steps, "eval_every": eval_every},
        "sharpness": {"every": 10, "subset_size": 128},
        "methods": {"m": method},
        **sections,
    }
    return parse_config(raw).runs("m")[0]


@pytest.fixture(scope="session")
def digits():
    """300 examples of scikit-learn's bundled digits, prepared as the pipeline does."""
    from whywarmup.data import build_dataset
    from whywarmup.sections import DataConfig

    return build_dataset(DataConfig(num_examples=300))


@pytest.fixture
def project_root() -> Path:
    return ROOT


SMALL_SWEEP = {
    "data": {"num_examples": 200},
    "model": {"kind": "fcn", "depth": 3, "width": 16},
    "training": {"steps": 40, "eval_every": 20},
    "sharpness": {"every": 10, "subset_size": 64},
    "methods": {
        "m": {
            "kind": "persistent_catapult",
            "eta_relative_to": "lambda_0",
            "every": 5,
            "grid": {"eta_trgt": [2.0, 8.0, 64.0], "seed": [0, 1]},
        }
    },
}


def run_small_sweep(root: Path, executor: dict, tracking: dict | None = None):
    """Six persistent_catapult grid points (three eta_trgt, two seeds) swept into `root` with `executor`."""
    from whywarmup.config import parse_config
    from whywarmup.data import build_dataset, prepared_path, save_prepared
    from whywarmup.sweep import run_method

    cfg = parse_config({**SMALL_SWEEP, "executor": executor, "tracking": tracking or {}})
    save_prepared(build_dataset(cfg.data), root / prepared_path(cfg.data))
    return run_method(cfg, "m", root, progress=False)
