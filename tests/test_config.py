import json
import subprocess
import sys

import pytest
import yaml

from whywarmup.config import load_config, parse_config, shift_seeds
from whywarmup.errors import ConfigError


def _errors(raw) -> dict[str, str]:
    with pytest.raises(ConfigError) as e:
        parse_config(raw)
    return dict(e.value.problems)


def test_default_params_file_is_valid(project_root):
    cfg = load_config(project_root / "params.yaml")
    assert {"none", "linear"} <= set(cfg.methods)
    grid = cfg.methods["linear"].grid
    assert len(cfg.runs("linear")) == len(grid["eta_trgt"]) * len(grid["warmup_steps"]) * len(grid["seed"])
    # every method runs at least 3 initialization seeds (the claims pool them)
    assert all(len({r.method.seed for r in cfg.runs(m)}) >= 3 for m in cfg.methods)


def test_shift_seeds_moves_every_initialization_seed_and_nothing_else(project_root):
    cfg = load_config(project_root / "params.yaml")
    shifted = shift_seeds(cfg, 100)
    for m in cfg.methods:
        before, after = cfg.runs(m), shifted.runs(m)
        assert [r.method.seed + 100 for r in before] == [r.method.seed for r in after]
        strip = [r.model_dump(exclude={"method": {"seed"}}) for r in before]
        assert strip == [r.model_dump(exclude={"method": {"seed"}}) for r in after]


def test_all_errors_are_reported_together_with_dotted_paths():
    problems = _errors(
        {
            "model": {"kind": "fcn", "widht": 3},
            "training": {"steps": "many"},
            "sharpness": {"tol": -1},
            "methods": {"lin": {"kind": "linear", "optimizer": {"name": "sgd", "momentum": 1.5}}},
        }
    )
    assert set(problems) == {
        "model.widht",
        "training.steps",
        "sharpness.tol",
        "methods.lin.optimizer.momentum",
    }
    assert "unknown key" in problems["model.widht"]


def test_grid_values_and_cross_field_checks_are_validated():
    problems = _errors(
        {
            "methods": {
                "lin": {
                    "kind": "linear",
                    "grid": {"eta_trgt": [0.1, -1.0], "warmup_steps": [10, 5000], "optimizer.beta9": [1]},
                }
            }
        }
    )
    assert any(p.startswith("methods.lin.grid.eta_trgt = -1.0") for p in problems)
    assert any("optimizer.beta9" in p for p in problems)
    assert any("longer than training.steps" in m for m in problems.values())


def test_unknown_method_kind_and_empty_grid():
    problems = _errors({"methods": {"a": {"kind": "cosmic"}, "b": {"kind": "none", "grid": {"seed": []}}}})
    assert "methods.a.kind" in problems and "cosmic" in problems["methods.a.kind"]
    assert "methods.b.grid.seed" in problems


def test_grid_expansion_overrides_and_stable_keys():
    cfg = parse_config(
        {
            "methods": {
                "adam": {
                    "kind": "linear",
                    "optimizer": {"name": "adam"},
                    "overrides": {"model.width": 32},
                    "grid": {
                        "eta_trgt": [1e-3, 1e-2],
                        "optimizer.beta2": [0.95, 0.999],
                        "training.steps": [100],
                    },
                }
            }
        }
    )
    runs = cfg.runs("adam")
    assert len(runs) == 4
    assert {(r.method.eta_trgt, r.method.optimizer.beta2) for r in runs} == {
        (1e-3, 0.95),
        (1e-3, 0.999),
        (1e-2, 0.95),
        (1e-2, 0.999),
    }
    assert all(r.model.width == 32 and r.training.steps == 100 for r in runs)
    assert len({r.key for r in runs}) == 4
    assert [r.key for r in runs] == [r.key for r in cfg.runs("adam")]  # deterministic


def test_cli_validate_exit_status_and_schema(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"methods": {"x": {"kind": "linear", "eta_trgt": "fast"}}, "data": {"seedz": 1}}))
    proc = subprocess.run([sys.executable, "-m", "whywarmup.cli", "validate", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert str(bad) in proc.stderr
    assert "methods.x.eta_trgt" in proc.stderr and "data.seedz" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "whywarmup.cli", "schema"], capture_output=True, text=True)
    schema = json.loads(proc.stdout)
    assert {"methods", "model", "training", "sharpness", "tracking", "report", "data"} <= set(schema["properties"])


def test_unreadable_and_non_yaml_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(tmp_path / "missing.yaml")
    f = tmp_path / "broken.yaml"
    f.write_text("methods: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(f)


def test_misspelled_keys_and_tags_get_a_did_you_mean():
    problems = _errors(
        {
            "trainig": {"steps": 10},
            "model": {"widht": 64},
            "sharpness": {"evrey": 5},
            "methods": {"m": {"kind": "linera"}, "a": {"kind": "none", "optimizer": {"name": "adma"}}},
        }
    )
    assert problems["trainig"].endswith("did you mean 'training'?")
    assert problems["model.widht"].endswith("did you mean 'width'?")  # no `kind`: the default FCN's keys
    assert problems["sharpness.evrey"].endswith("did you mean 'every'?")
    assert problems["methods.m.kind"].endswith("did you mean 'linear'?")
    assert problems["methods.a.optimizer.name"].endswith("did you mean 'adam'?")
    far = _errors({"zzzzqq": 1, "methods": {"m": {"kind": "none"}}})
    assert "did you mean" not in far["zzzzqq"]


def test_model_without_kind_is_the_default_fcn():
    cfg = parse_config({"model": {"width": 64, "depth": 3}, "methods": {"m": {"kind": "none"}}})
    assert cfg.model.kind == "fcn" and cfg.model.width == 64 and cfg.model.depth == 3


def test_measurement_set_and_batch_no_larger_than_the_training_set():
    from whywarmup.config import training_set_size
    from whywarmup.data import build_dataset
    from whywarmup.sections import DataConfig

    for data in ({}, {"num_examples": 300}, {"test_fraction": 0.5}):
        assert training_set_size(data) == len(build_dataset(DataConfig(**data)).x_train)
    assert training_set_size({"dataset": "cifar10", "num_examples": 5000}) == 4500  # 10% held out for validation
    problems = _errors(
        {
            "data": {"num_examples": 300},
            "sharpness": {"subset_size": 512},
            "training": {"batch_size": 400},
            "methods": {"m": {"kind": "none"}},
        }
    )
    assert "larger than the training set (270)" in problems["sharpness.subset_size"]
    assert "larger than the training set (270)" in problems["training.batch_size"]
    ok = {"data": {"num_examples": 300}, "sharpness": {"measure_on": "train"}, "methods": {"m": {"kind": "none"}}}
    parse_config(ok)  # the whole training set is fine


def test_cross_field_checks_between_sections():
    problems = _errors(
        {
            "data": {"dataset": "mnist"},
            "model": {"kind": "cnn", "depth": 5},
            "report": {"trajectory_method": "linaer"},
            "methods": {
                "linear": {"kind": "linear", "optimizer": {"name": "sgd", "nesterov": True}},
                "g": {"kind": "gi_adam", "optimizer": {"name": "adam"}},
            },
        }
    )
    assert "28x28" in problems["model.depth"] and "at most 4" in problems["model.depth"]
    assert problems["report.trajectory_method"].endswith("did you mean 'linear'?")
    assert "momentum > 0" in problems["methods.linear.optimizer"]
    assert "gi_adam needs optimizer.name: gi_adam" in problems["methods.g"]


def test_absurd_grids_and_values_are_rejected():
    problems = _errors(
        {
            "training": {"steps": 10**30, "eval_every": 10**12},
            "sharpness": {"chunk_size": 10**30},
            "methods": {
                "a": {
                    "kind": "none",
                    "grid": {"eta_trgt": [float(i + 1) for i in range(101)], "seed": list(range(100))},
                },
                "b": {"kind": "none", "grid": {"eta_trgt": [2, 2.0, 1e30]}},
            },
        }
    )
    assert {"training.steps", "training.eval_every", "sharpness.chunk_size"} <= set(problems)
    assert "10100 grid points (101 eta_trgt x 100 seed), more than 10000" in problems["methods.a.grid"]
    assert "listed twice" in problems["methods.b.grid.eta_trgt"]
    assert "less than or equal to 1000000" in problems["methods.b.grid.eta_trgt = 1e+30"]


def test_every_bad_field_is_named_even_behind_a_section_error():
    """A bad section value and a bad grid value in one file: both in one message (grids are checked on what is
    valid, the bad fields at their defaults)."""
    problems = _errors(
        {
            "training": {"steps": "many"},
            "data": None,
            "methods": {"lin": {"kind": "linear", "grid": {"eta_trgt": [-1.0]}, "knid": "x"}, "ok": {"kind": "none"}},
        }
    )
    assert problems["data"].startswith("is empty")
    assert "training.steps" in problems
    assert problems["methods.lin.knid"] == "unknown key (not a setting of this section); did you mean 'kind'?"
    problems = _errors({"training": {"steps": "many"}, "methods": {"lin": {"kind": "linear", "grid": {"seed": [-1]}}}})
    assert set(problems) == {"training.steps", "methods.lin.grid.seed = -1"}


def test_sections_dvc_reads_must_be_in_the_pipelines_params_file(tmp_path, project_root):
    raw = yaml.safe_load((project_root / "params.yaml").read_text())
    del raw["model"], raw["report"]
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    load_config(params)  # no dvc.yaml beside it: omitted sections take their defaults
    (tmp_path / "dvc.yaml").write_text((project_root / "dvc.yaml").read_text())
    with pytest.raises(ConfigError) as e:
        load_config(params)
    problems = dict(e.value.problems)
    assert set(problems) == {"model", "report"} and "Parameters ... are missing" in problems["model"]


# --- the edits users make (issue: validate helps) -----------------------------------------------------------------


def test_a_key_of_another_optimizer_says_whose_it_is():
    problems = _errors({"methods": {"a": {"kind": "none", "optimizer": {"name": "sgd", "beta1": 0.9}}}})
    assert problems == {
        "methods.a.optimizer.beta1": "'beta1' is a setting of name 'adam' / 'radam' / 'gi_adam', not of name 'sgd': "
        "remove it here"
    }
    # the same key swept in a grid is named once, at the grid key, with the same reason
    problems = _errors({"methods": {"a": {"kind": "none", "grid": {"optimizer.beta1": [0.8, 0.9]}}}})
    assert list(problems) == ["methods.a.grid.optimizer.beta1"]
    assert "setting of name 'adam'" in problems["methods.a.grid.optimizer.beta1"]


def test_wrong_case_and_unknown_tags():
    problems = _errors({"methods": {"a": {"kind": "none", "optimizer": {"name": "SGD"}}}})
    assert problems == {"methods.a.optimizer.name": "'SGD' must be written 'sgd' (the name values are lower case)"}
    # one mistake, one error: the misspelled method is not also reported as missing from report.trajectory_method
    problems = _errors({"report": {"trajectory_method": "lin"}, "methods": {"lin": {"kind": "Linear"}}})
    assert problems == {"methods.lin.kind": "'Linear' must be written 'linear' (the kind values are lower case)"}
    problems = _errors({"model": {"kind": "mlp"}, "methods": {"a": {"kind": "none"}}})
    assert problems["model.kind"].startswith("'mlp' is not a known kind; one of 'fcn', 'cnn', 'wrn'")


def test_a_list_where_one_value_goes_points_to_the_grid():
    problems = _errors({"model": {"width": [32, 512]}, "methods": {"a": {"kind": "none"}}})
    assert list(problems) == ["model.width"]
    assert "to sweep it, put `model.width: [32, 512]` in a method's grid" in problems["model.width"]
    problems = _errors({"methods": {"a": {"kind": "linear", "warmup_steps": [16, 64]}}})
    assert "put `warmup_steps: [16, 64]` in methods.a.grid" in problems["methods.a.warmup_steps"]


def test_a_grid_key_without_its_section():
    problems = _errors({"methods": {"a": {"kind": "none", "grid": {"width": [32, 64], "beta2": [0.99]}}}})
    assert problems == {
        "methods.a.grid.width": "a key of a section is written with its section: did you mean `model.width`?",
        "methods.a.grid.beta2": "a key of a section is written with its section: did you mean `optimizer.beta2`? "
        "(beta2 is a setting of optimizer 'adam' / 'radam' / 'gi_adam', this method uses 'sgd')",
    }
    # a global section's key written directly in a method entry
    problems = _errors({"methods": {"a": {"kind": "none", "depth": 3}}})
    assert "of the global section model" in problems["methods.a.depth"]


def test_data_cannot_be_set_per_method():
    problems = _errors(
        {
            "methods": {
                "a": {"kind": "none", "overrides": {"data.num_examples": 100}},
                "b": {"kind": "none", "grid": {"data.dataset": ["digits", "mnist"]}},
            }
        }
    )
    assert set(problems) == {"methods.a.overrides.data.num_examples", "methods.b.grid.data.dataset"}
    assert all(m.startswith("data cannot be set per method") for m in problems.values())


def test_one_error_per_mistake_not_per_grid_value():
    problems = _errors({"methods": {"a": {"kind": "none", "grid": {"eta_trgt": [-1, 0.1, -2], "seed": [0, 1, 2]}}}})
    assert problems == {"methods.a.grid.eta_trgt = -1, -2": "Input should be greater than 0"}
    problems = _errors({"methods": {"a": {"kind": "none", "grid": {"optimizer.momentun": [0.1, 0.2], "seed": [0, 1]}}}})
    assert list(problems) == ["methods.a.grid.optimizer.momentun"]  # the key is wrong whatever its value
    assert "did you mean 'momentum'" in problems["methods.a.grid.optimizer.momentun"]


def test_a_key_written_twice_in_the_file_is_an_error(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("model:\n  width: 64\n  depth: 3\n  width: 128\nmethods:\n  a: {kind: none}\n  a: {kind: linear}\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    problems = dict(e.value.problems)
    assert set(problems) == {"line 4", "line 7"}
    assert "'width' is written twice in the same mapping (also at line 2)" in problems["line 4"]


def test_validate_says_what_a_missing_real_dataset_will_cost(tmp_path):
    (tmp_path / "p.yaml").write_text("data: {dataset: cifar10, root: raw}\nmethods:\n  a: {kind: none}\n")
    done = subprocess.run(
        [sys.executable, "-m", "whywarmup.cli", "validate", "p.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "the prepare stage will download 170 MB" in done.stdout
    offline = "data: {dataset: mnist, root: raw, download: false}\nmethods:\n  a: {kind: none}\n"
    (tmp_path / "q.yaml").write_text(offline)
    done = subprocess.run(
        [sys.executable, "-m", "whywarmup.cli", "validate", "q.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "data.download: the mnist files are not in" in done.stderr and "downloads 12 MB" in done.stderr
    # with the archive in place nothing is said
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "cifar-10-python.tar.gz").write_bytes(b"x")
    done = subprocess.run(
        [sys.executable, "-m", "whywarmup.cli", "validate", "p.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0 and "note" not in done.stdout


def test_a_retired_setting_says_why_it_went():
    problems = _errors({"data": {"prepared_dir": "elsewhere"}, "methods": {"a": {"kind": "none"}}})
    message = problems["data.prepared_dir"]
    assert message.startswith("no longer a setting: the prepared data always goes to data/prepared")


def test_critical_sharpness_settings_are_validated_and_default_to_every_step():
    methods = {"p": {"kind": "persistent_catapult", "eta_trgt": 1.0, "source": "critical_sharpness"}}
    cfg = parse_config({"methods": methods})
    (run,) = cfg.runs("p")
    assert run.sharpness.critical_every == 1 and run.sharpness.critical_tol == 1 / 16
    assert run.method.source == "critical_sharpness"
    problems = _errors({"sharpness": {"critical_every": -1, "critical_tol": 1.5}, "methods": methods})
    assert set(problems) == {"sharpness.critical_every", "sharpness.critical_tol"}
    problems = _errors({"methods": {"p": {**methods["p"], "source": "lanczos"}}})
    assert "critical_sharpness" in problems["methods.p.source"]


def test_ray_resources_take_fractions_of_one_or_whole_units():
    """executor.num_gpus 0.25 packs four runs on one GPU; above 1 Ray takes whole numbers only, and a unit splits
    in steps of 0.0001 at the finest (Ray's own rules, checked before a cluster refuses the task)."""
    base = {"methods": {"m": {"kind": "none"}}}
    for ok in (0.25, 0.5, 1, 2, 0.0001):
        cfg = parse_config({**base, "executor": {"kind": "ray", "num_gpus": ok, "num_cpus": ok}})
        assert cfg.executor.num_gpus == ok
    problems = _errors({**base, "executor": {"kind": "ray", "num_gpus": 1.5, "num_cpus": 0.00005}})
    assert "above 1 Ray takes only whole numbers" in problems["executor.num_gpus"]
    assert "steps of 0.0001" in problems["executor.num_cpus"]
