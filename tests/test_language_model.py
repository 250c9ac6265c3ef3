"""Language models end to end: the text datasets in the registry (windows, subsets, tokenizer file), the
Transformer's params and their validation, a training run scored on the loss, the analysis' LM rules, and the real
`dvc repro` of a WikiText-2 params file written in the hub's layout (offline), with its MLflow runs."""

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from whywarmup.config import parse_config
from whywarmup.data import DATASETS, build_dataset, load_prepared, save_prepared, tokenizer_path
from whywarmup.derived import apply_failure_rule, best_cell
from whywarmup.errors import ConfigError, DataError
from whywarmup.sections import DataConfig
from whywarmup.text import (
    SYNTHETIC_SHA256,
    WIKITEXT,
    load_tokenizer,
    split_files,
    synthetic_lines,
    token_stream,
    unigram_entropy,
)
from whywarmup.train import train_run

BIN = Path(sys.executable).parent


def write_wikitext_corpus(root: Path, dataset: str = "wikitext2", lines_per_split: int = 60) -> None:
    """The hub's parquet layout under `root`, filled with lines of the synthetic corpus (real-looking text, offline)."""
    for split in WIKITEXT[dataset].files:
        lines = synthetic_lines("train" if split == "train" else split)
        for i, path in enumerate(split_files(dataset, root, split)):
            path.parent.mkdir(parents=True, exist_ok=True)
            part = lines[i * lines_per_split : (i + 1) * lines_per_split]
            pq.write_table(pa.table({"text": ["", *part]}), path)  # WikiText has empty lines too


def test_synthetic_corpus_is_fixed_and_checksummed():
    train = synthetic_lines("train")
    assert train == synthetic_lines("train") and train != synthetic_lines("test")
    assert hashlib.sha256("\n".join(train).encode()).hexdigest() == SYNTHETIC_SHA256["train"]
    words = " ".join(train).split()
    # a made-up language with structure: 600 words (+ capitalized sentence starts), each followed by few successors
    assert len({w.lower() for w in words if w != "."}) == 600
    follow = {}
    for a, b in zip(words, words[1:]):
        if a != "." and b != "." and a.islower():
            follow.setdefault(a, set()).add(b.lower())
    assert max(len(s) for s in follow.values()) <= 6


def test_text_dataset_windows_targets_subsets_and_tokenizer(tmp_path):
    write_wikitext_corpus(tmp_path / "raw")
    cfg = DataConfig(dataset="wikitext2", root=str(tmp_path / "raw"), vocab_size=300, context=16, num_examples=40)
    data = build_dataset(cfg)
    assert data.task == "language_model" and data.num_classes <= 300
    assert data.x_train.dtype == torch.int64 and data.x_train.shape == (40, 16) and data.y_train.shape == (40, 16)
    # the targets are the next tokens: window i's targets are window i's inputs shifted by one, then the next token
    assert torch.equal(data.y_train[:, :-1], data.x_train[:, 1:])
    tok = load_tokenizer(data.tokenizer)
    lines = [t for t in pq.read_table(split_files("wikitext2", tmp_path / "raw", "train")[0])["text"].to_pylist()]
    stream = token_stream(tok, lines)
    starts = {tuple(stream[i : i + 16]) for i in range(0, len(stream) - 16, 16)}
    assert all(tuple(row) in starts for row in data.x_train.tolist())  # windows of the real stream, no overlap
    assert math.isclose(data.unigram_entropy, unigram_entropy(stream, data.num_classes))
    # seeded: the same config gives the same windows, another split_seed another subset
    assert torch.equal(build_dataset(cfg).x_train, data.x_train)
    assert not torch.equal(build_dataset(cfg.model_copy(update={"split_seed": 1})).x_train, data.x_train)
    # the prepared file keeps the integers and the task; the tokenizer is written beside it, loadable by `tokenizers`
    path = tmp_path / "prepared" / "wikitext2.pt"
    meta = save_prepared(data, path)
    back = load_prepared(path)
    assert back.task == "language_model" and torch.equal(back.x_test, data.x_test)
    assert back.to("cpu", torch.float64).x_train.dtype == torch.int64  # token ids are never cast to floats
    from tokenizers import Tokenizer

    assert Tokenizer.from_file(str(tokenizer_path(path))).get_vocab_size() == data.num_classes
    assert meta["tokenizer"] == "wikitext2.tokenizer.json" and meta["unigram_entropy"] == data.unigram_entropy


def test_text_dataset_errors_name_the_cause_and_the_fix(tmp_path):
    cfg = DataConfig(dataset="wikitext2", root=str(tmp_path), download=False, context=16)
    note, fatal = DATASETS["wikitext2"].download_note(cfg, tmp_path)
    assert fatal and "data.download is false" in note and "about 8 MB" in note
    with pytest.raises(DataError, match="train-00000-of-00001.parquet are not in"):
        build_dataset(cfg)
    write_wikitext_corpus(tmp_path, lines_per_split=1)
    with pytest.raises(DataError, match="fewer than one window of data.context = 512"):
        build_dataset(cfg.model_copy(update={"context": 512}))
    assert DATASETS["synthetic_text"].download_note(cfg, tmp_path) == ("", False)


LM = {
    "data": {"dataset": "synthetic_text", "vocab_size": 256, "context": 16, "num_examples": 256},
    "model": {"kind": "transformer", "depth": 1, "width": 16, "heads": 2},
    "training": {"loss": "cross_entropy", "steps": 60, "batch_size": 16, "eval_every": 30},
    "sharpness": {"every": 20, "subset_size": 32, "chunk_size": 32},
    "report": {"trajectory_method": "adam"},
    "methods": {
        "adam": {"kind": "none", "optimizer": {"name": "adam"}, "eta_relative_to": "absolute", "eta_trgt": 0.01},
        "gi_adam": {"kind": "gi_adam", "optimizer": {"name": "gi_adam"}, "eta_trgt": 0.01},
    },
}


def _with(**changes) -> dict:
    raw = json.loads(json.dumps(LM))
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        raw[section][key] = value
    return raw


@pytest.mark.parametrize(
    ("changes", "path", "message"),
    [
        ({"model__heads": 3}, "model.heads", "3 heads do not divide width 16"),
        ({"data__vocab_size": 100}, "data.vocab_size", "greater than or equal to 256"),
        ({"data__context": 1}, "data.context", "greater than or equal to 2"),
        ({"training__loss": "mse"}, "training.loss", "next-token cross_entropy"),
        ({"training__augment": "flip_crop"}, "training.augment", "text takes none"),
        ({"sharpness__chunk_size": 4096, "data__vocab_size": 4096}, "sharpness.chunk_size", "at most 2048"),
        ({"model__kind": "fcn"}, "model.kind", "needs model.kind: transformer"),
    ],
)
def test_bad_language_model_params_are_refused_with_the_dotted_path(changes, path, message):
    raw = _with(**changes)
    if changes.get("model__kind") == "fcn":
        raw["model"] = {"kind": "fcn"}
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    text = str(err.value)
    assert f"  {path}: " in text and message in text, text
    assert text.count("\n  ") == 1, text  # one mistake, one error: no knock-on errors from the defaults


def test_image_datasets_refuse_text_keys_and_the_transformer():
    methods = {"none": {"kind": "none", "eta_trgt": 1.0}}
    with pytest.raises(ConfigError, match="vocab_size is a setting of the text datasets"):
        parse_config({"data": {"dataset": "digits", "vocab_size": 512}, "methods": methods})
    with pytest.raises(ConfigError, match="data.dataset digits needs an image model"):
        parse_config({"model": {"kind": "transformer"}, "methods": methods})


def test_runs_made_before_the_text_keys_keep_their_keys():
    """The text keys are left out of a run's key while unset, so the keys of earlier image runs do not change."""
    run = parse_config({"methods": {"none": {"kind": "none", "eta_trgt": 1.0}}}).runs("none")[0]
    payload = run.model_dump(mode="json", exclude={"name"})
    del payload["data"]["vocab_size"], payload["data"]["context"]
    assert run.key == hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


@pytest.fixture(scope="module")
def lm_data():
    return build_dataset(parse_config(LM).data)


def test_a_language_model_run_is_scored_on_its_loss(lm_data):
    cfg = parse_config(LM)
    result = train_run(cfg.runs("adam")[0], lm_data, progress=False)
    s, traj = result.summary, result.trajectory
    assert s["unigram_entropy"] == lm_data.unigram_entropy
    assert math.isclose(s["final_test_perplexity"], math.exp(s["final_test_loss"]), rel_tol=1e-12)
    assert math.isclose(s["final_val_perplexity"], math.exp(s["final_val_loss"]), rel_tol=1e-12)
    # the trainer's failure flag is the LM rule: not below the unigram entropy
    assert (result.status == "failed") == (not s["final_train_loss"] < s["unigram_entropy"])
    assert s["final_train_loss"] < s["unigram_entropy"]  # 60 steps of Adam at 0.01 learn the synthetic language
    measured = traj.dropna(subset=["sharpness"])
    assert list(measured["step"]) == [0, 20, 40, 60]
    assert measured["preconditioned_sharpness"].iloc[:-1].gt(0).all()  # Adam's, at every measurement but the end
    # the initial loss is about log(vocabulary) (GPT-2's small init gives near-uniform logits)
    assert abs(traj["loss"].iloc[0] - math.log(lm_data.num_classes)) < 0.1


def test_the_lm_failure_rule_and_best_cell_use_the_loss():
    runs = pd.DataFrame(
        {
            "method": "adam",
            "variant": "",
            "eta_trgt_setting": [0.01, 0.01, 0.1, 0.1],
            "T_wrm": 1,
            "diverged": [0, 0, 0, 1],
            "failed": 0,
            "num_classes": 256,
            "unigram_entropy": 5.0,
            "final_train_loss": [3.0, 3.2, 5.0, math.nan],
            "final_train_accuracy": [0.2, 0.2, 0.01, math.nan],  # 0.01 > 1.5 / 256: not chance for a classifier
        }
    )
    judged = apply_failure_rule(runs)
    assert judged["failure"].tolist() == ["", "", "chance", "diverged"]
    cells = pd.DataFrame(
        {
            "trainable": True,
            "language_model": True,
            "final_val_loss": [3.5, 3.1, 3.3],
            "final_val_accuracy": [0.5, 0.1, 0.2],
            "eta_trgt_setting": [0.001, 0.01, 0.1],
        }
    )
    assert best_cell(cells)["eta_trgt_setting"] == 0.01  # the lowest validation loss, not the highest accuracy


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return {**env, "PATH": f"{BIN}{os.pathsep}{env['PATH']}", "DVC_NO_ANALYTICS": "1"}


def _run(args: list[str], cwd: Path) -> None:
    proc = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def test_dvc_repro_of_a_wikitext2_transformer_offline(tmp_path):
    """`data.dataset: wikitext2` with its files in the hub's layout under data.root and `model.kind: transformer`:
    the real `dvc repro`, offline (download: false), end to end, then the MLflow runs."""
    root = Path(__file__).resolve().parents[1]
    for name in ["dvc.yaml", ".gitignore"]:
        shutil.copy(root / name, tmp_path / name)
    for name in ["pipeline", "src"]:
        shutil.copytree(root / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    write_wikitext_corpus(tmp_path / "data" / "raw")
    params = _with(data__dataset="wikitext2")
    params["data"] |= {"root": "data/raw", "download": False, "num_examples": None}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    _run(["git", "init", "-q"], tmp_path)
    _run([str(BIN / "dvc"), "init", "-q"], tmp_path)
    _run([*git, "add", "-A"], tmp_path)
    _run([*git, "commit", "-qm", "init"], tmp_path)
    _run([str(BIN / "dvc"), "repro"], tmp_path)

    assert (tmp_path / "data" / "prepared" / "wikitext2.tokenizer.json").is_file()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["methods"]) == {"adam", "gi_adam"}
    assert "best_test_loss_without_warmup" in metrics["headline"]["adam_sp"] or metrics["methods"]["adam"]["failed"]
    assert "Final test loss" in (tmp_path / "reports" / "index.html").read_text()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("whywarmup")
    runs = client.search_runs([exp.experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    parents = [r for r in runs if r.data.tags.get("whywarmup.method") and "mlflow.parentRunId" not in r.data.tags]
    assert len(children) == 2
    for child in children:
        m = child.data.metrics
        assert math.isclose(m["final_test_perplexity"], math.exp(m["final_test_loss"]), rel_tol=1e-9)
        assert [h.step for h in client.get_metric_history(child.info.run_id, "test_loss")] == [0, 30, 60]
        assert len(client.get_metric_history(child.info.run_id, "sharpness")) == 4
        assert len(client.get_metric_history(child.info.run_id, "preconditioned_sharpness")) >= 3
    for parent in parents:
        if parent.data.tags["whywarmup.method"] in ("adam", "gi_adam"):
            names = [a.path for a in client.list_artifacts(parent.info.run_id, "data")]
            assert names == ["data/wikitext2.tokenizer.json"]
    assert np.isfinite([c.data.metrics["lambda_0"] for c in children]).all()
