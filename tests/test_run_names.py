"""Readable MLflow names and descriptions: every child run of the default params gets a unique name that states its
grid point, the same on every load; every registered method and optimizer describes itself."""

from pathlib import Path

import pytest

from whywarmup.config import load_config, parse_config
from whywarmup.methods import METHOD_TYPES
from whywarmup.run_names import format_value, grid_text, method_description, run_names, seed_group, varying_axes
from whywarmup.sections import AdamConfig, GIAdamConfig, SGDConfig

ROOT = Path(__file__).resolve().parents[1]


def _names(cfg, method):
    return run_names(cfg.methods[method], cfg.runs(method))


def test_default_child_names_are_unique_readable_and_stable():
    cfg = load_config(ROOT / "params.yaml")
    again = load_config(ROOT / "params.yaml")
    for method in cfg.methods:
        names = _names(cfg, method)
        runs = cfg.runs(method)
        assert len(set(names.values())) == len(runs), method  # unique within the parent
        assert names == _names(again, method)  # the same on a rerun
        for run in runs:
            name = names[run.key]
            assert name.startswith(f"{method} ") and name.endswith(f" seed={run.method.seed}")
            assert "#" not in name  # no run-key suffix needed: the stated keys tell the points apart
    linear = {r.key: r for r in cfg.runs("linear")}
    by_name = {name: linear[key] for key, name in _names(cfg, "linear").items()}
    run = by_name["linear c=32 T_wrm=64 seed=1"]
    assert (run.method.eta_trgt, run.method.warmup_steps, run.method.seed) == (32, 64, 1)
    adam = _names(cfg, "adam")
    assert {n.split(" ")[1] for n in adam.values()} == {f"lr={v:g}" for v in cfg.methods["adam"].grid["eta_trgt"]}
    assert not any("T_wrm" in n for n in adam.values())  # no warmup: no T_wrm
    assert any(n == "adam_linear lr=0.008 T_wrm=64 seed=2" for n in _names(cfg, "adam_linear").values())
    assert "persistent_catapult c=128 seed=0" in _names(cfg, "persistent_catapult").values()


def _method(grid, **entry):
    return parse_config({"methods": {"m": {"kind": "linear", "eta_relative_to": "lambda_0", "grid": grid, **entry}}})


def test_varying_grid_keys_are_named_and_constant_ones_left_out():
    cfg = _method(
        {
            "eta_trgt": [2.0, 8.0],
            "model.width": [32, 64],
            "training.steps": [50],  # one value: not in the name
            "optimizer.momentum": [0.0, 0.9],
        },
        warmup_steps=16,
    )
    names = set(_names(cfg, "m").values())
    assert names == {
        f"m c={c} T_wrm=16 width={w} momentum={b} seed=0" for c in (2, 8) for w in (32, 64) for b in (0, 0.9)
    }
    assert varying_axes(cfg.methods["m"], cfg.runs("m")) == ["model.width", "optimizer.momentum"]


def test_keys_sharing_a_last_part_are_named_in_full():
    cfg = parse_config(
        {
            "methods": {
                "m": {
                    "kind": "persistent_catapult",
                    "eta_relative_to": "lambda_0",
                    "grid": {"every": [5, 10], "sharpness.every": [10, 20], "optimizer.momentum": [0.0, 0.5]},
                }
            }
        }
    )
    names = set(_names(cfg, "m").values())
    assert "m c=1 every=5 sharpness.every=20 momentum=0.5 seed=0" in names and len(names) == 8


def test_names_that_would_collide_get_the_run_key():
    # two eta_trgt values that %g prints alike: the names are told apart by the run key, and stay so on a rerun
    cfg = _method({"eta_trgt": [2.0, 2.0000001]}, warmup_steps=16)
    names = _names(cfg, "m")
    assert len(set(names.values())) == 2
    for key, name in names.items():
        assert name == f"m c=2 T_wrm=16 seed=0 #{key[:6]}"
        assert seed_group(name) == "m c=2 T_wrm=16"


def test_seed_group_drops_only_the_seed():
    assert seed_group("linear c=32 T_wrm=64 width=64 seed=2") == "linear c=32 T_wrm=64 width=64"


def test_values_print_as_written():
    assert [format_value(v) for v in (0.002, 32.0, 1e-5, True, 64, "mup")] == [
        "0.002",
        "32",
        "1e-05",
        "true",
        "64",
        "mup",
    ]


@pytest.mark.parametrize("cls", METHOD_TYPES)
def test_every_registered_method_describes_its_schedule(cls):
    kind = cls.model_fields["kind"].annotation.__args__[0]
    entry = {"kind": kind, "grid": {"eta_trgt": [0.1, 0.2], "seed": [0, 1]}}
    if kind == "gi_adam":
        entry["optimizer"] = {"name": "gi_adam"}
    cfg = parse_config({"methods": {"x": entry}})
    method = cfg.methods["x"]
    text = method.schedule_text()
    assert text and text.endswith(".") and "\n" not in text
    description = method_description("x", method)
    assert f"**x** (kind `{kind}`)" in description
    assert method.optimizer.describe() in description
    assert "eta_trgt in {0.1, 0.2}; seed in {0, 1}; 4 runs" in description


def test_optimizers_and_grid_describe_their_settings():
    assert SGDConfig(momentum=0.9, nesterov=True).describe() == "SGD (momentum 0.9, Nesterov, weight decay 0)"
    assert AdamConfig(name="radam", beta2=0.99).describe() == "RAdam (beta1 0.9, beta2 0.99, eps 1e-08, weight decay 0)"
    assert "without bias correction of v" in GIAdamConfig(v_bias_correction=False).describe()
    cfg = load_config(ROOT / "params.yaml")
    assert grid_text(cfg.methods["linear"]) == (
        "c (eta_trgt = c / lambda_0) in {2, 8, 32, 128, 512}; warmup_steps in {16, 64, 256}; seed in {0, 1, 2}; 45 runs"
    )
    mup = method_description("linear_mup", cfg.methods["linear_mup"])
    assert "Overrides for this method: model.parametrization = mup" in mup
