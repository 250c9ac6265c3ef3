"""Text for the language models (docs/science.md section 9): WikiText as the Hugging Face hub serves it, a BPE
tokenizer trained on its training split, and the token streams cut into next-token windows.

Layout under `data.root`, as `huggingface_hub` downloads the dataset repository Salesforce/wikitext:
- WikiText-2 (raw): wikitext-2-raw-v1/{train,validation,test}-00000-of-00001.parquet
- WikiText-103 (raw): wikitext-103-raw-v1/train-0000{0,1}-of-00002.parquet, validation-/test-00000-of-00001.parquet
Each file has one `text` column, one line of the corpus per row.
"""

from __future__ import annotations

import hashlib
import json
import random
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


# approximate bytes of each dataset's parquet files on the hub (2026)
DOWNLOAD_MB = {"wikitext2": 8, "wikitext103": 315}


def download_note(dataset: str, root: Path, download: bool) -> tuple[str, bool]:
    """("", False) when every file of `dataset` is in `root`; otherwise what the prepare stage will do, in words, and
    whether that is an error (it cannot get the files)."""
    missing = [p for split in WIKITEXT[dataset].files for p in split_files(dataset, root, split) if not p.is_file()]
    if not missing:
        return "", False
    folder, size = missing[0].parent, f"about {DOWNLOAD_MB[dataset]} MB"
    if not download:
        return (
            f"the {dataset} files {', '.join(p.name for p in missing)} are not in {folder} and data.download is false, "
            f"so the prepare stage will stop: put them there, or set data.download: true (it downloads {size})",
            True,
        )
    return (
        f"the {dataset} files are not in {folder} yet: the prepare stage will download {size} from the Hugging Face "
        "hub (offline it stops and says where to put the files)",
        False,
    )


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


# The offline corpus (data.dataset: synthetic_text): a made-up language sampled from a fixed seed with Python's own
# Mersenne Twister (`random.Random`, whose stream Python keeps the same across versions and platforms). Words are
# syllable strings; each word is followed by one of a few successors with Zipf-like weights (a sparse Markov chain),
# so the next token is far more predictable than the unigram distribution says and a model has something to learn.
SYNTHETIC_SEED = 20_240_917
SYNTHETIC_WORDS = 600
SYNTHETIC_SUCCESSORS = 6
SYNTHETIC_SENTENCES = {"train": 24_000, "validation": 2_000, "test": 2_000}
# sha256 of "\n".join(lines) per split; a mismatch means this machine's Python samples differently
SYNTHETIC_SHA256 = {
    "train": "9b8ae670d43311eab765c08db9fd62da858cdd9c599086a1f65a0905213c5e27",
    "validation": "579915e62494736ebd05f60f38b73768a871c623327f3b982d66e3d0429a3475",
    "test": "9aeb1bb731029f32d2fba7c1cf410008324963d5899de815d7b1c18066b80a9b",
}


def _synthetic_language(rng: random.Random) -> tuple[list[str], list[list[int]], list[float]]:
    onsets, vowels = "ptkbdgmnslrvzfh", "aeiou"
    words: set[str] = set()
    while len(words) < SYNTHETIC_WORDS:
        words.add("".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(rng.choice((1, 2, 2, 3)))))
    vocabulary = sorted(words)
    successors = [rng.sample(range(SYNTHETIC_WORDS), SYNTHETIC_SUCCESSORS) for _ in vocabulary]
    weights = [1.0 / (rank + 1) for rank in range(SYNTHETIC_SUCCESSORS)]
    return vocabulary, successors, weights


def synthetic_lines(split: str) -> list[str]:
    """The synthetic corpus' `split` (train, validation or test): the same language, disjoint samples, one
    paragraph of 1-4 sentences per line; checked against its sha256."""
    vocabulary, successors, weights = _synthetic_language(random.Random(SYNTHETIC_SEED))
    rng = random.Random(f"{SYNTHETIC_SEED}-{split}")
    lines, sentences = [], []
    for _ in range(SYNTHETIC_SENTENCES[split]):
        word = rng.randrange(SYNTHETIC_WORDS)
        sentence = [vocabulary[word].capitalize()]
        for _ in range(rng.randint(4, 14)):
            word = rng.choices(successors[word], weights)[0]
            sentence.append(vocabulary[word])
        sentences.append(" ".join(sentence) + " .")
        if len(sentences) >= rng.randint(1, 4):
            lines.append(" ".join(sentences))
            sentences = []
    if sentences:
        lines.append(" ".join(sentences))
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    if digest != SYNTHETIC_SHA256[split]:
        raise DataError(
            f"The synthetic_text {split} split generated on this machine has sha256 {digest[:12]}..., not the "
            f"{SYNTHETIC_SHA256[split][:12]}... it has everywhere else: this Python's `random` module samples "
            "differently, so results here would not compare with others'. Use the CPython that CI uses, or a WikiText "
            "dataset."
        )
    return lines
