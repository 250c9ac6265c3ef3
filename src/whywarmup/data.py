"""Datasets: load, standardize, split, and write/read prepared tensors with a checksum.

The default dataset, scikit-learn's 8x8 digits, ships inside the scikit-learn package (no network).
CIFAR-10, CIFAR-100, MNIST and Fashion-MNIST are downloaded by torchvision into `data.root` (or read from
there when already present) and read by whywarmup.datasets.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .datasets import load_arrays
from .errors import DataError
from .files import atomic_write_bytes
from .layout import PREPARED_DIR
from .sections import DataConfig


@dataclass
class PreparedData:
    x_train: torch.Tensor  # float32 (N, C, H, W), standardized with training-set statistics
    y_train: torch.Tensor  # int64 (N,)
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    dataset: str
    x_val: torch.Tensor | None = None  # held out from the training split (data.validation_fraction)
    y_val: torch.Tensor | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> PreparedData:
        return PreparedData(
            self.x_train.to(device, dtype),
            self.y_train.to(device),
            self.x_test.to(device, dtype),
            self.y_test.to(device),
            self.num_classes,
            self.dataset,
            self.x_val.to(device, dtype) if self.x_val is not None else None,
            self.y_val.to(device) if self.y_val is not None else None,
        )


def _load_digits() -> tuple[np.ndarray, np.ndarray, None, None, int]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return x.reshape(-1, 1, 8, 8).astype(np.float32), y.astype(np.int64), None, None, 10


def build_dataset(cfg: DataConfig) -> PreparedData:
    """Load the dataset of `cfg`, split and subset it deterministically, and standardize it."""
    if cfg.dataset == "digits":
        x, y, x_te, y_te, num_classes = _load_digits()
    else:
        x, y, x_te, y_te, num_classes = load_arrays(cfg.dataset, Path(cfg.root).resolve(), cfg.download)
    rng = np.random.default_rng(cfg.split_seed)
    if x_te is None:  # no official test split: a deterministic stratification-free random split
        perm = rng.permutation(len(x))
        n_test = int(round(cfg.test_fraction * len(x)))
        x_te, y_te = x[perm[:n_test]], y[perm[:n_test]]
        x, y = x[perm[n_test:]], y[perm[n_test:]]
    if cfg.num_examples is not None and cfg.num_examples < len(x):
        keep = np.sort(rng.permutation(len(x))[: cfg.num_examples])
        x, y = x[keep], y[keep]
    # the validation set: a fixed random part of the training examples, never trained on
    perm = rng.permutation(len(x))
    n_val = int(round(cfg.validation_fraction * len(x)))
    val, train = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    x_val, y_val, x, y = x[val], y[val], x[train], y[train]
    if cfg.num_test_examples is not None and cfg.num_test_examples < len(x_te):
        keep = np.sort(rng.permutation(len(x_te))[: cfg.num_test_examples])
        x_te, y_te = x_te[keep], y_te[keep]
    # Zero mean, unit variance per channel, with training-set statistics.
    mean = x.mean(axis=(0, 2, 3), keepdims=True, dtype=np.float64)
    std = x.std(axis=(0, 2, 3), keepdims=True, dtype=np.float64)
    x = ((x - mean) / std).astype(np.float32)
    x_te = ((x_te - mean) / std).astype(np.float32)
    x_val = ((x_val - mean) / std).astype(np.float32)
    return PreparedData(
        torch.from_numpy(x),
        torch.from_numpy(y),
        torch.from_numpy(x_te),
        torch.from_numpy(y_te),
        num_classes,
        cfg.dataset,
        torch.from_numpy(x_val),
        torch.from_numpy(y_val),
    )


def prepared_path(cfg: DataConfig) -> Path:
    return Path(PREPARED_DIR) / f"{cfg.dataset}.pt"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_prepared(data: PreparedData, path: Path) -> dict:
    """Write the tensors and a sidecar JSON with their sha256 and shapes; returns the sidecar."""
    buf = io.BytesIO()
    torch.save(
        {
            "x_train": data.x_train,
            "y_train": data.y_train,
            "x_test": data.x_test,
            "y_test": data.y_test,
            "num_classes": data.num_classes,
            "dataset": data.dataset,
            "x_val": data.x_val,
            "y_val": data.y_val,
        },
        buf,
    )
    payload = buf.getvalue()
    meta = {
        "dataset": data.dataset,
        "sha256": _sha256(payload),
        "num_classes": data.num_classes,
        "train": list(data.x_train.shape),
        "test": list(data.x_test.shape),
        "validation": list(data.x_val.shape) if data.x_val is not None else None,
    }
    atomic_write_bytes(path, payload)
    atomic_write_bytes(path.with_suffix(".json"), json.dumps(meta, indent=2).encode())
    return meta


def load_prepared(path: Path) -> PreparedData:
    """Read prepared tensors, verifying their checksum."""
    meta_path = path.with_suffix(".json")
    rebuild = "Rebuild it with `dvc repro prepare` (or `python pipeline/prepare.py`)."
    if not path.exists() or not meta_path.exists():
        raise DataError(f"Prepared data {path} (or its checksum file {meta_path}) is missing. {rebuild}")
    payload = path.read_bytes()
    expected = json.loads(meta_path.read_text())["sha256"]
    if _sha256(payload) != expected:
        raise DataError(
            f"Prepared data {path} does not match its checksum in {meta_path}: the file is "
            f"corrupted or was changed by hand. {rebuild}"
        )
    d = torch.load(io.BytesIO(payload), weights_only=True)
    if "x_val" not in d:
        raise DataError(f"Prepared data {path} was written by an older version (no validation split). {rebuild}")
    return PreparedData(
        d["x_train"], d["y_train"], d["x_test"], d["y_test"], d["num_classes"], d["dataset"], d["x_val"], d["y_val"]
    )
