"""presets/: each file is valid, says what docs/science.md sections 8 and 9 say, and runs end to end (prepare, train,
analyze, report) with its own model, loss, optimizers and augmentation on a tiny CIFAR-10 (or WikiText) written in the
real on-disk format, with the lengths and grids shrunk."""

import copy
import math
import os
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT
from tests.test_datasets import write_cifar
from tests.test_language_model import write_wikitext_corpus
from whywarmup.config import load_config
from whywarmup.datasets import CIFAR10

PRESETS = ROOT / "presets"


def test_fig1_preset_is_the_papers_setting():
    cfg = load_config(PRESETS / "fig1_fcn_cifar10_sp_mup.yaml")
    assert (cfg.data.dataset, cfg.data.num_examples) == ("cifar10", 5556)
    from whywarmup.config import training_set_size

    assert training_set_size(cfg.data.model_dump()) == 5000  # the paper's 5k, with 556 held out for validation
    assert (cfg.model.kind, cfg.model.depth, cfg.model.width, cfg.model.activation) == ("fcn", 4, 512, "relu")
    assert cfg.training.loss == "mse" and cfg.training.batch_size is None and cfg.sharpness.every == 1
    sp, mup = cfg.runs("linear_sp"), cfg.runs("linear_mup")
    assert {r.method.warmup_steps for r in sp} == {r.method.warmup_steps for r in mup} == {1, 64, 256, 1024}
    assert all(r.model.parametrization == "sp" and r.method.eta_relative_to == "lambda_0" for r in sp)
    assert all(r.method.eta_trgt == 32 for r in sp)
    assert all(r.model.parametrization == "mup" and r.method.eta_relative_to == "absolute" for r in mup)
    assert all(r.method.eta_trgt == 1 / 8 for r in mup)
    assert all(r.method.warmup_steps <= r.training.steps for r in sp + mup)


@pytest.mark.parametrize("name", ["wrn_cifar10_adam_vs_gi_adam", "wrn_cifar10_sgd_phase_diagram"])
def test_wrn_presets_are_the_papers_setting(name):
    cfg = load_config(PRESETS / f"{name}.yaml")
    assert (cfg.data.dataset, cfg.data.num_examples) == ("cifar10", None)
    assert (cfg.model.kind, cfg.model.depth, cfg.model.widen_factor) == ("wrn", 16, 4)
    assert (cfg.training.batch_size, cfg.training.steps, cfg.training.augment) == (128, 100_000, "flip_crop")
    assert cfg.training.mixup_alpha > 0  # flip, crop, then mixup (docs/science.md section 8)
    runs = [r for m in cfg.methods for r in cfg.runs(m)]
    assert 1 in {r.method.warmup_steps for r in runs} and 1024 in {r.method.warmup_steps for r in runs}
    if name.endswith("adam_vs_gi_adam"):
        assert {r.method.optimizer.name for r in runs} == {"adam", "gi_adam"}
        assert all(r.method.decay == "cosine" and r.method.eta_relative_to == "absolute" for r in runs)
        assert all((o.beta1, o.beta2, o.eps) == (0.9, 0.999, 1e-8) for o in (r.method.optimizer for r in runs))
        etas = sorted({r.method.eta_trgt for r in runs})
        assert etas[0] == 0.00512 and all(math.isclose(b, 2 * a) for a, b in zip(etas, etas[1:]))
    else:
        assert {r.method.optimizer.name for r in runs} == {"sgd"}
        assert all(r.method.eta_relative_to == "lambda_0" and r.method.decay == "constant" for r in runs)
        assert all(math.log2(r.method.eta_trgt).is_integer() for r in runs)


SQRT2_GRID = [1e-4 * 2 ** (x / 2) for x in range(17)]  # docs/science.md section 9: 1e-4 * 2^(x/2)


def test_lm_wikitext2_preset_is_the_papers_fig4_setting():
    cfg = load_config(PRESETS / "lm_wikitext2_adam_vs_gi_adam.yaml")
    assert (cfg.data.dataset, cfg.data.vocab_size, cfg.data.context) == ("wikitext2", 4096, 64)
    m = cfg.model
    assert (m.kind, m.depth, m.width, m.norm_position, m.position, m.parametrization) == (
        "transformer",
        4,
        128,
        "pre",
        "sinusoidal",
        "sp",
    )
    assert cfg.training.loss == "cross_entropy" and cfg.training.steps == 10_000
    runs = [r for name in cfg.methods for r in cfg.runs(name)]
    assert {r.method.optimizer.name for r in runs} == {"adam", "gi_adam"}
    assert {r.model.final_norm for r in runs} == {True, False}  # Pre-LN and the no-final-LayerNorm variant
    assert len({r.method.warmup_steps for r in runs}) > 1
    etas = sorted({r.method.eta_trgt for r in runs})
    assert len(etas) == len(SQRT2_GRID) and all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(etas, SQRT2_GRID))
    assert all(
        (o.beta1, o.beta2, o.eps, o.weight_decay) == (0.9, 0.999, 1e-8, 0) for o in (r.method.optimizer for r in runs)
    )


def test_lm_wikitext103_preset_compares_three_optimizers_with_and_without_warmup():
    cfg = load_config(PRESETS / "lm_wikitext103_optimizers.yaml")
    assert (cfg.data.dataset, cfg.model.kind, cfg.model.depth, cfg.model.width) == (
        "wikitext103",
        "transformer",
        4,
        128,
    )
    runs = [r for name in cfg.methods for r in cfg.runs(name)]
    assert {r.method.optimizer.name for r in runs} == {"adam", "gi_adam", "radam"}
    for name in cfg.methods:
        assert {r.method.warmup_steps for r in cfg.runs(name)} == {1, 4096}
    assert all(any(math.isclose(r.method.eta_trgt, g, rel_tol=1e-6) for g in SQRT2_GRID) for r in runs)


def test_offline_lm_demo_needs_no_download_and_compares_adam_with_gi_adam():
    cfg = load_config(PRESETS / "lm_offline_demo.yaml")
    assert cfg.data.dataset == "synthetic_text" and cfg.model.kind == "transformer"
    kinds = {(cfg.methods[n].kind, cfg.methods[n].optimizer.name) for n in cfg.methods}
    assert kinds == {("none", "adam"), ("gi_adam", "gi_adam")}
    assert min(len({r.method.seed for r in cfg.runs(n)}) for n in cfg.methods) >= 3


def _shrunk(preset: dict, root) -> dict:
    """The preset with tiny lengths and one grid point per method; model, loss, optimizers, augmentation kept."""
    p = copy.deepcopy(preset)
    p["data"] |= {"root": str(root / "raw"), "num_examples": None}
    if p["data"]["dataset"] in ("wikitext2", "wikitext103", "synthetic_text"):  # a small vocabulary and few windows
        p["data"] |= {"vocab_size": 300, "num_examples": 64, "num_test_examples": 16}
    p["training"] |= {"steps": 4, "eval_every": 2}
    if p["training"]["batch_size"]:
        p["training"]["batch_size"] = 8
    p["sharpness"] |= {"every": 4, "max_matvecs": 12, "tol": 0.05, "num_minibatches": 2, "chunk_size": 32}
    p["sharpness"]["subset_size"] = 16
    p.setdefault("tracking", {})["uri"] = "sqlite:///mlflow.db"
    for method in p["methods"].values():
        grid = method.get("grid", {})
        for key, values in grid.items():
            grid[key] = [min(values[-1], 3)] if key == "warmup_steps" else values[:1]
    return p


@pytest.mark.parametrize("name", sorted(p.stem for p in PRESETS.glob("*.yaml")))
def test_each_preset_runs_end_to_end_shrunk(tmp_path, name):
    (tmp_path / "raw").mkdir()
    write_cifar(tmp_path / "raw", CIFAR10, per_file=8)  # 40 training, 8 test images
    for dataset in ("wikitext2", "wikitext103"):
        write_wikitext_corpus(tmp_path / "raw", dataset)
    preset = yaml.safe_load((PRESETS / f"{name}.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(_shrunk(preset, tmp_path)))
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}

    def start(*stage):
        cmd = [sys.executable, "-m", "whywarmup.cli", stage[0], "params.yaml", *stage[1:]]
        return stage, subprocess.Popen(cmd, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)

    # prepare; the methods' train stages side by side (as `dvc repro` may run them); analyze; report
    for group in [
        [("prepare",)],
        [("train", "--method", m, "--no-progress") for m in preset["methods"]],
        [("analyze",)],
        [("report",)],
    ]:
        for stage, proc in [start(*stage) for stage in group]:
            _, err = proc.communicate()
            assert proc.returncode == 0, (stage, err[-3000:])
    runs = pd.read_csv(tmp_path / "analysis" / "runs.csv")
    assert sorted(runs["method"].unique()) == sorted(preset["methods"])
    assert runs["lambda_0"].gt(0).all() and runs["sharpness_nonconverged"].eq(0).all()
    if preset["model"]["kind"] == "transformer":  # scored on the loss, with perplexities
        assert runs["unigram_entropy"].gt(0).all() and runs["final_test_perplexity"].notna().all()
    # Every run trained to the end, or stopped at a divergence (4 steps are too few to learn: "failed" is fine)
    assert runs["status"].isin(["finished", "diverged", "failed"]).all()
    assert (runs["steps_completed"].eq(4) | runs["status"].eq("diverged")).all()
    assert (tmp_path / "reports" / "index.html").exists()
