"""Datasets: load, standardize, split, and write/read prepared tensors with a checksum.

Every dataset is an entry of DATASETS, whose `build` turns a DataConfig into PreparedData:
- images (a classification task): scikit-learn's 8x8 digits, which ship inside the scikit-learn package (no
  network); CIFAR-10, CIFAR-100, MNIST and Fashion-MNIST, downloaded by torchvision into `data.root` (or read from
  there when already present) and read by whywarmup.datasets;
- text (a language-model task): WikiText-2/103 as the Hugging Face hub serves them and the seeded synthetic corpus,
  tokenized by a BPE tokenizer trained on the training split and cut into next-token windows (whywarmup.text).
The training loop sees only PreparedData: inputs (float images or int64 token windows), targets and the task.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from . import text
from .datasets import download_note, load_arrays
from .errors import DataError
from .files import atomic_write_bytes
from .layout import PREPARED_DIR
from .sections import DataConfig

CLASSIFICATION, LANGUAGE_MODEL = "classification", "language_model"


@dataclass
class PreparedData:
    """Images: x float32 (N, C, H, W) standardized with training-set statistics, y int64 (N,) labels. Text: x int64
    (N, T) token windows, y int64 (N, T) the next tokens, num_classes the vocabulary."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    dataset: str
    x_val: torch.Tensor | None = None  # held out from the training split (data.validation_fraction)
    y_val: torch.Tensor | None = None
    task: str = CLASSIFICATION
    unigram_entropy: float | None = None  # text: nats per token of the training tokens' frequencies
    tokenizer: str | None = None  # text: the tokenizer's JSON

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> PreparedData:
        """On `device`, floating inputs in `dtype`; token ids and labels stay integers."""

        def moved(x: torch.Tensor | None) -> torch.Tensor | None:
            if x is None:
                return None
            return x.to(device, dtype) if x.is_floating_point() else x.to(device)

        fields = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return PreparedData(**{k: moved(v) if isinstance(v, torch.Tensor) else v for k, v in fields.items()})

    def failed_to_learn(self, loss: float, accuracy: float) -> bool:
        """The trainer's own failure flag at the end of a run: a classifier no better than 1.5x chance accuracy; a
        language model whose training loss is not below the unigram entropy (it learned nothing of the context)."""
        if self.task == LANGUAGE_MODEL:
            return not (loss < self.unigram_entropy)
        return accuracy < 1.5 / self.num_classes


def _load_digits() -> tuple[np.ndarray, np.ndarray, None, None, int]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return x.reshape(-1, 1, 8, 8).astype(np.float32), y.astype(np.int64), None, None, 10


def _subset(rng: np.random.Generator, n: int, size: int | None) -> np.ndarray:
    """Sorted indices of a seeded random subset of `size` of range(n) (all of it when size is None or >= n)."""
    return np.arange(n) if size is None or size >= n else np.sort(rng.permutation(n)[:size])


class DatasetSource:
    """One entry of DATASETS: how a dataset's files become PreparedData."""

    task: ClassVar[str]

    def __init__(self, name: str, origin: str):
        self.name = name
        self.origin = origin  # where the files come from, in words (the MLflow dataset's profile)

    def build(self, cfg: DataConfig) -> PreparedData:
        raise NotImplementedError

    def download_note(self, cfg: DataConfig, root: Path) -> tuple[str, bool]:
        """What the prepare stage will have to download, in words, and whether that is an error; ("", False) when
        nothing is missing."""
        return "", False


class ImageSource(DatasetSource):
    """Images and labels: split, subset, validation split, per-channel standardization."""

    task = CLASSIFICATION

    def arrays(self, cfg: DataConfig):
        return load_arrays(cfg.dataset, Path(cfg.root).resolve(), cfg.download)

    def download_note(self, cfg: DataConfig, root: Path) -> tuple[str, bool]:
        return download_note(self.name, root, cfg.download)

    def build(self, cfg: DataConfig) -> PreparedData:
        x, y, x_te, y_te, num_classes = self.arrays(cfg)
        rng = np.random.default_rng(cfg.split_seed)
        if x_te is None:  # no official test split: a deterministic stratification-free random split
            perm = rng.permutation(len(x))
            n_test = int(round(cfg.test_fraction * len(x)))
            x_te, y_te = x[perm[:n_test]], y[perm[:n_test]]
            x, y = x[perm[n_test:]], y[perm[n_test:]]
        if cfg.num_examples is not None and cfg.num_examples < len(x):
            keep = _subset(rng, len(x), cfg.num_examples)
            x, y = x[keep], y[keep]
        # the validation set: a fixed random part of the training examples, never trained on
        perm = rng.permutation(len(x))
        n_val = int(round(cfg.validation_fraction * len(x)))
        val, train = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        x_val, y_val, x, y = x[val], y[val], x[train], y[train]
        if cfg.num_test_examples is not None and cfg.num_test_examples < len(x_te):
            keep = _subset(rng, len(x_te), cfg.num_test_examples)
            x_te, y_te = x_te[keep], y_te[keep]
        # Zero mean, unit variance per channel, with training-set statistics.
        mean = x.mean(axis=(0, 2, 3), keepdims=True, dtype=np.float64)
        std = x.std(axis=(0, 2, 3), keepdims=True, dtype=np.float64)
        x = ((x - mean) / std).astype(np.float32)
        x_te = ((x_te - mean) / std).astype(np.float32)
        x_val = ((x_val - mean) / std).astype(np.float32)
        tensors = [torch.from_numpy(a) for a in (x, y, x_te, y_te)]
        val = torch.from_numpy(x_val), torch.from_numpy(y_val)
        return PreparedData(*tensors, num_classes, cfg.dataset, *val, task=self.task)


class DigitsSource(ImageSource):
    def arrays(self, cfg: DataConfig):
        return _load_digits()


class TextSource(DatasetSource):
    """Token windows: a BPE tokenizer trained on the training split (data.vocab_size), each split's token stream cut
    into non-overlapping windows of data.context tokens with their next tokens as targets. num_examples takes a
    seeded subset of the training windows, num_test_examples of the validation and test windows."""

    task = LANGUAGE_MODEL

    def lines(self, cfg: DataConfig, split: str) -> list[str]:
        return text.read_lines(self.name, Path(cfg.root).resolve(), split, cfg.download)

    def download_note(self, cfg: DataConfig, root: Path) -> tuple[str, bool]:
        return text.download_note(self.name, root, cfg.download)

    def build(self, cfg: DataConfig) -> PreparedData:
        vocab, context = cfg.resolved_vocab_size, cfg.resolved_context
        train_lines = self.lines(cfg, "train")
        tokenizer = text.train_tokenizer(train_lines, vocab)
        rng = np.random.default_rng(cfg.split_seed)
        train_stream = text.token_stream(tokenizer, train_lines)
        parts = []
        subsets = (("train", cfg.num_examples), ("validation", cfg.num_test_examples), ("test", cfg.num_test_examples))
        for split, size in subsets:
            stream = train_stream if split == "train" else text.token_stream(tokenizer, self.lines(cfg, split))
            x, y = text.windows(stream, context)
            if not len(x):
                raise DataError(
                    f"The {self.name} {split} split has {len(stream)} tokens, fewer than one window of data.context = "
                    f"{context} + 1; lower data.context or use a larger corpus."
                )
            keep = _subset(rng, len(x), size)
            parts += [torch.from_numpy(x[keep]), torch.from_numpy(y[keep])]
        x, y, x_val, y_val, x_te, y_te = parts
        return PreparedData(
            x,
            y,
            x_te,
            y_te,
            tokenizer.get_vocab_size(),
            cfg.dataset,
            x_val,
            y_val,
            task=self.task,
            unigram_entropy=text.unigram_entropy(train_stream, tokenizer.get_vocab_size()),
            tokenizer=text.vocabulary_json(tokenizer),
        )


class SyntheticTextSource(TextSource):
    def lines(self, cfg: DataConfig, split: str) -> list[str]:
        return text.synthetic_lines(split)

    def download_note(self, cfg: DataConfig, root: Path) -> tuple[str, bool]:
        return "", False


DATASETS: dict[str, DatasetSource] = {
    "digits": DigitsSource("digits", "scikit-learn's bundled copy (sklearn.datasets.load_digits)"),
    **{
        name: ImageSource(name, f"torchvision.datasets.{torchvision} files under data.root")
        for name, torchvision in (
            ("cifar10", "CIFAR10"),
            ("cifar100", "CIFAR100"),
            ("mnist", "MNIST"),
            ("fashion_mnist", "FashionMNIST"),
        )
    },
    **{
        name: TextSource(name, f"Hugging Face dataset Salesforce/wikitext ({config}) under data.root")
        for name, config in (("wikitext2", "wikitext-2-raw-v1"), ("wikitext103", "wikitext-103-raw-v1"))
    },
    "synthetic_text": SyntheticTextSource("synthetic_text", "made up offline by whywarmup.text.synthetic_lines"),
}


def build_dataset(cfg: DataConfig) -> PreparedData:
    """Load the dataset of `cfg`, split and subset it deterministically, and standardize (images) or tokenize (text)
    it."""
    return DATASETS[cfg.dataset].build(cfg)


def prepared_path(cfg: DataConfig) -> Path:
    return Path(PREPARED_DIR) / f"{cfg.dataset}.pt"


def tokenizer_path(prepared: Path) -> Path:
    """The tokenizer file written beside a text dataset's prepared tensors (tokenizers' JSON format)."""
    return prepared.with_suffix(".tokenizer.json")


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
            "task": data.task,
            "unigram_entropy": data.unigram_entropy,
            "tokenizer": data.tokenizer,
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
    if data.task != CLASSIFICATION:
        meta.update(task=data.task, unigram_entropy=data.unigram_entropy, tokenizer=tokenizer_path(path).name)
        atomic_write_bytes(tokenizer_path(path), data.tokenizer.encode())  # for a user's `Tokenizer.from_file`
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
        d["x_train"],
        d["y_train"],
        d["x_test"],
        d["y_test"],
        d["num_classes"],
        d["dataset"],
        d["x_val"],
        d["y_val"],
        task=d.get("task", CLASSIFICATION),
        unigram_entropy=d.get("unigram_entropy"),
        tokenizer=d.get("tokenizer"),
    )
