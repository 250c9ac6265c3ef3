"""WikiText in the hub's parquet layout (written here, offline), the BPE tokenizer, and the next-token windows."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from whywarmup.errors import DataError
from whywarmup.text import (
    WIKITEXT,
    load_tokenizer,
    read_lines,
    split_files,
    token_stream,
    train_tokenizer,
    unigram_entropy,
    vocabulary_json,
    windows,
)

LINES = [
    "",
    " = Valkyria Chronicles III = \n",
    "",
    " The game began development in 2010 , carrying over a large portion of the work . \n",
    " It met with positive sales in Japan , and was praised by both Japanese and western critics . \n",
]


def write_wikitext(root, dataset="wikitext2", lines=LINES):
    for split in WIKITEXT[dataset].files:
        for i, path in enumerate(split_files(dataset, root, split)):
            path.parent.mkdir(parents=True, exist_ok=True)
            part = [f"{line} {split} {i}" if line else line for line in lines]
            pq.write_table(pa.table({"text": part}), path)


def test_reads_the_hub_layout_in_order(tmp_path):
    write_wikitext(tmp_path)
    assert (tmp_path / "wikitext-2-raw-v1" / "train-00000-of-00001.parquet").is_file()
    lines = read_lines("wikitext2", tmp_path, "train", download=False)
    assert len(lines) == len(LINES) and lines[1].endswith("train 0")
    # WikiText-103's training split is two files, read one after the other
    write_wikitext(tmp_path, "wikitext103")
    lines = read_lines("wikitext103", tmp_path, "train", download=False)
    assert len(lines) == 2 * len(LINES) and lines[1].endswith("train 0") and lines[-1].endswith("train 1")


def test_missing_and_corrupt_files_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(DataError, match="train-00000-of-00001.parquet are not in .* data.download is false"):
        read_lines("wikitext2", tmp_path, "train", download=False)
    write_wikitext(tmp_path)
    path = split_files("wikitext2", tmp_path, "test")[0]
    path.write_bytes(path.read_bytes()[:40])  # truncated
    with pytest.raises(DataError, match="test-00000-of-00001.parquet is truncated or corrupted"):
        read_lines("wikitext2", tmp_path, "test", download=False)
    pq.write_table(pa.table({"words": ["a"]}), path)  # a parquet file without a text column
    with pytest.raises(DataError, match="Salesforce/wikitext"):
        read_lines("wikitext2", tmp_path, "test", download=False)


def test_bpe_tokenizer_is_deterministic_and_round_trips(tmp_path):
    write_wikitext(tmp_path)
    lines = read_lines("wikitext2", tmp_path, "train", download=False)
    tok = train_tokenizer(lines, vocab_size=120)
    again = train_tokenizer(lines, vocab_size=120)
    assert vocabulary_json(tok) == vocabulary_json(again)
    assert 60 < tok.get_vocab_size() <= 120  # the corpus is small: fewer merges than asked for
    back = load_tokenizer(tok.to_str())
    stream = token_stream(back, lines)
    assert stream.dtype == np.int64 and stream.max() < tok.get_vocab_size()
    assert back.decode(back.encode("praised by both").ids).replace(" ", "") == "praisedbyboth"
    assert token_stream(tok, ["\u2603"]).tolist() == [tok.token_to_id("[UNK]")]  # an unseen character


def test_windows_are_non_overlapping_with_next_token_targets():
    x, y = windows(np.arange(11, dtype=np.int64), 3)
    assert x.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert y.tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    x, y = windows(np.arange(10, dtype=np.int64), 3)  # 9 tokens + the 10th as the last target
    assert len(x) == 3 and y[-1, -1] == 9
    assert unigram_entropy(np.array([0, 1, 0, 1]), 4) == pytest.approx(np.log(2))
    assert unigram_entropy(np.array([2, 2, 2]), 4) == 0.0
