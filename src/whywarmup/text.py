"""Text for the language models (docs/science.md section 9): WikiText as the Hugging Face hub serves it, a BPE
tokenizer trained on its training split, and the token streams cut into next-token windows.

Layout under `data.root`, as `huggingface_hub` downloads the dataset repository Salesforce/wikitext:
- WikiText-2 (raw): wikitext-2-raw-v1/{train,validation,test}-00000-of-00001.parquet
- WikiText-103 (raw): wikitext-103-raw-v1/train-0000{0,1}-of-00002.parquet, validation-/test-00000-of-00001.parquet
Each file has one `text` column, one line of the corpus per row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError

UNKNOWN = "[UNK]"  # the tokenizer's only special token: characters the training split never showed


@dataclass(frozen=True)
class TextLayout:
    repo_id: str
    folder: str
    files: dict[str, tuple[str, ...]]  # split -> its parquet files, in order


def _one(split: str) -> tuple[str, ...]:
    return (f"{split}-00000-of-00001.parquet",)


WIKITEXT: dict[str, TextLayout] = {
    "wikitext2": TextLayout(
        "Salesforce/wikitext",
        "wikitext-2-raw-v1",
        {"train": _one("train"), "validation": _one("validation"), "test": _one("test")},
    ),
    "wikitext103": TextLayout(
        "Salesforce/wikitext",
        "wikitext-103-raw-v1",
        {
            "train": ("train-00000-of-00002.parquet", "train-00001-of-00002.parquet"),
            "validation": _one("validation"),
            "test": _one("test"),
        },
    ),
}


def split_files(dataset: str, root: Path, split: str) -> list[Path]:
    layout = WIKITEXT[dataset]
    return [root / layout.folder / name for name in layout.files[split]]


def _download(dataset: str, root: Path, missing: list[Path]) -> None:
    """Fetch the missing files from the hub into `root` (the same layout); a failure names the files and the fix."""
    layout = WIKITEXT[dataset]
    try:
        from huggingface_hub import hf_hub_download

        for path in missing:
            hf_hub_download(layout.repo_id, f"{layout.folder}/{path.name}", repo_type="dataset", local_dir=root)
    except Exception as e:  # noqa: BLE001 - network, hub or file-system errors all mean "not downloaded"
        why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        raise DataError(
            f"Could not download {dataset} from the Hugging Face hub ({why}). Without network access, copy "
            f"{', '.join(p.name for p in missing)} into {missing[0].parent} from a machine where "
            f"`huggingface_hub.snapshot_download('{layout.repo_id}', repo_type='dataset', "
            f"allow_patterns='{layout.folder}/*')` has run; then re-run."
        ) from None


def read_lines(dataset: str, root: Path, split: str, download: bool) -> list[str]:
    """The `text` column of a split's parquet file(s), in order; missing files are downloaded when allowed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = split_files(dataset, root, split)
    missing = [p for p in files if not p.is_file()]
    if missing and not download:
        raise DataError(
            f"The {dataset} {split} file(s) {', '.join(p.name for p in missing)} are not in {missing[0].parent} and "
            "data.download is false. Put them there (the layout the Hugging Face hub serves), or set "
            "data.download: true on a machine with network access."
        )
    if missing:
        _download(dataset, root, missing)
    lines: list[str] = []
    for path in files:
        try:
            table = pq.read_table(path, columns=["text"])
        except (pa.ArrowException, OSError, KeyError) as e:
            raise DataError(
                f"{path} is truncated or corrupted, or not WikiText ({type(e).__name__}: {e}). Delete it and re-run "
                "with data.download: true, or copy a complete file from the Hugging Face hub "
                f"({WIKITEXT[dataset].repo_id}, {WIKITEXT[dataset].folder}/{path.name})."
            ) from None
        lines += [t for t in table.column("text").to_pylist() if t is not None]
    return lines


def train_tokenizer(lines: list[str], vocab_size: int):
    """A byte-pair-encoding tokenizer with a whitespace pre-tokenizer trained on `lines` (the training split)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token=UNKNOWN))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[UNKNOWN], show_progress=False)
    tokenizer.train_from_iterator(lines, trainer=trainer)
    return tokenizer


def load_tokenizer(text: str):
    """A tokenizer from its JSON (what the prepare stage writes)."""
    from tokenizers import Tokenizer

    return Tokenizer.from_str(text)


def token_stream(tokenizer, lines: list[str]) -> np.ndarray:
    """Every line's token ids, concatenated in order (int64)."""
    ids = [e.ids for e in tokenizer.encode_batch(lines)]
    return np.fromiter((i for row in ids for i in row), dtype=np.int64)


def windows(stream: np.ndarray, context: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping windows of `context` tokens and their next-token targets: window i is stream[i c : (i+1) c]
    and its targets stream[i c + 1 : (i+1) c + 1]; the tail that does not fill a window is dropped."""
    n = (len(stream) - 1) // context
    x = stream[: n * context].reshape(n, context)
    y = stream[1 : n * context + 1].reshape(n, context)
    return x, y


def unigram_entropy(stream: np.ndarray, vocab_size: int) -> float:
    """Entropy (nats) of the token frequencies: the loss of a model that ignores the context."""
    counts = np.bincount(stream, minlength=vocab_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def vocabulary_json(tokenizer) -> str:
    """The tokenizer as canonical JSON (sorted keys), so the same training gives the same bytes."""
    return json.dumps(json.loads(tokenizer.to_str()), sort_keys=True)
