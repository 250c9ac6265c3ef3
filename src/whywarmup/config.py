"""params.yaml -> a validated Config, and a method's grid -> one RunConfig per grid point.

All problems of a file are collected and raised together as one ConfigError (exit status 2), each with its
dotted path, before anything is trained or logged.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import itertools
import json
import math
import re
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError
from .methods import MethodBase, MethodConfig
from .sections import (
    DEFAULT_CONTEXT,
    DEFAULT_VOCAB_SIZE,
    TEXT_DATASETS,
    DataConfig,
    ExecutorConfig,
    FCNConfig,
    ModelConfig,
    OptimizerConfig,
    ReportConfig,
    SharpnessConfig,
    Strict,
    TrackingConfig,
    TrainingConfig,
)

GLOBAL_SECTIONS = ("data", "model", "training", "sharpness")
OVERRIDABLE_SECTIONS = ("model", "training", "sharpness")  # data is prepared once for all methods


# Settings added after runs had been keyed: left out of the key while null, so the runs made before keep their keys.
KEYED_ONLY_WHEN_SET = (("data", "vocab_size"), ("data", "context"))


class RunConfig(Strict):
    """Everything one training run depends on; `key` is a stable hash of it."""

    name: str = Field(description="Name of the methods entry this run belongs to.")
    data: DataConfig
    model: ModelConfig
    training: TrainingConfig
    sharpness: SharpnessConfig
    method: MethodConfig

    @property
    def key(self) -> str:
        payload = self.model_dump(mode="json", exclude={"name"})
        for section, key in KEYED_ONLY_WHEN_SET:  # keys added later: left out while unset, so older runs keep theirs
            if payload[section][key] is None:
                del payload[section][key]
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]

    @model_validator(mode="after")
    def _cross_checks(self) -> RunConfig:
        problems = cross_field_problems(self.model_dump(mode="json"))
        if problems:
            raise ValueError("; ".join(f"{path}: {msg}" for path, msg in problems))
        return self


TRAIN_SET_SIZES = {"digits": 1797, "cifar10": 50_000, "cifar100": 50_000, "mnist": 60_000, "fashion_mnist": 60_000}
IMAGE_SIDES = {"digits": 8, "cifar10": 32, "cifar100": 32, "mnist": 28, "fashion_mnist": 28}
MAX_GRID_POINTS = 10_000  # per method: more is a typo (a grid of 10^6 runs) rather than an experiment


def training_set_size(data: dict[str, Any]) -> int | None:
    """Training examples `data` yields (data.build_dataset's split and subset), None when the values are invalid."""
    n = TRAIN_SET_SIZES.get(data.get("dataset", "digits"))
    fraction, subset = data.get("test_fraction", 0.2), data.get("num_examples")
    if n is None or not isinstance(fraction, (int, float)) or not (isinstance(subset, int) or subset is None):
        return None
    if data.get("dataset", "digits") == "digits":  # no official test split: test_fraction is held out
        n -= int(round(fraction * n))
    n = min(n, subset) if subset else n
    validation = data.get("validation_fraction", 0.1)
    return n - int(round(validation * n)) if isinstance(validation, (int, float)) else None


def cross_field_problems(run: dict[str, Any]) -> list[tuple[str, str]]:
    """Checks that involve several sections of a resolved run; tolerant of invalid values elsewhere."""
    problems = []
    method, training = run.get("method") or {}, run.get("training") or {}
    warmup, steps = method.get("warmup_steps"), training.get("steps", 1000)
    if isinstance(warmup, int) and isinstance(steps, int) and warmup > steps:
        problems.append(("method.warmup_steps", f"warmup ({warmup} steps) is longer than training.steps ({steps})"))
    sharpness = run.get("sharpness") or {}
    critical = sharpness.get("critical_lr") or {}
    if method.get("kind") == "catapult_init" and critical.get("enabled") is False:
        problems.append(
            ("sharpness.critical_lr.enabled", "method kind catapult_init starts at the critical lr; enable the search")
        )
    n_train = training_set_size(run.get("data") or {})
    subset, batch = sharpness.get("subset_size", 1024), training.get("batch_size")
    if n_train and sharpness.get("measure_on", "subset") == "subset" and isinstance(subset, int) and subset > n_train:
        problems.append(
            (
                "sharpness.subset_size",
                f"the measurement subset ({subset} examples) is larger than the training set ({n_train}); lower "
                "sharpness.subset_size or set sharpness.measure_on: train",
            )
        )
    if n_train and isinstance(batch, int) and batch > n_train:
        problems.append(
            (
                "training.batch_size",
                f"the batch ({batch} examples) is larger than the training set ({n_train}); lower it, or null for "
                "full-batch GD",
            )
        )
    model, side = run.get("model") or {}, IMAGE_SIDES.get((run.get("data") or {}).get("dataset", "digits"))
    if model.get("kind") == "cnn" and isinstance(model.get("depth"), int) and side and 2 ** model["depth"] > side:
        problems.append(
            (
                "model.depth",
                f"{model['depth']} pooling stages halve the {side}x{side} images of "
                f"{(run.get('data') or {}).get('dataset', 'digits')} to nothing; use at most {int(math.log2(side))}",
            )
        )
    problems += _text_problems(run.get("data") or {}, model, training, sharpness)
    if sharpness.get("measure_on") == "minibatches_mean" and training.get("batch_size") is None:
        problems.append(
            (
                "sharpness.measure_on",
                "minibatches_mean averages over minibatches of training.batch_size, but training.batch_size is "
                "null (full-batch GD); set a batch size or measure on 'subset' or 'train'",
            )
        )
    return problems


MAX_LOGITS_PER_PASS = 2**27  # 0.5 GB of float32 logits; the double backward of a measurement keeps several copies


def _text_problems(data: dict, model: dict, training: dict, sharpness: dict) -> list[tuple[str, str]]:
    """Text datasets go with the Transformer, next-token cross-entropy and no image augmentation, and vice versa."""
    dataset = data.get("dataset", "digits")
    text, transformer = dataset in TEXT_DATASETS, model.get("kind", "fcn") == "transformer"
    if text != transformer:
        wanted = "model.kind: transformer" if text else "an image model (fcn, cnn, wrn), or a text dataset"
        return [("model.kind", f"data.dataset {dataset} needs {wanted}; model.kind is {model.get('kind', 'fcn')}")]
    if not text:
        return []
    problems = []
    if training.get("loss", "mse") != "cross_entropy":
        problems.append(("training.loss", "a language model is trained on next-token cross_entropy; set it"))
    if training.get("augment", "none") != "none":
        problems.append(("training.augment", "flip_crop augments images; text takes none"))
    if training.get("mixup_alpha", 0.0):
        problems.append(("training.mixup_alpha", "mixup mixes images and labels; text takes 0"))
    vocab, context = data.get("vocab_size") or DEFAULT_VOCAB_SIZE, data.get("context") or DEFAULT_CONTEXT
    chunk = sharpness.get("chunk_size", 4096)
    if all(isinstance(v, int) for v in (vocab, context, chunk)) and chunk * context * vocab > MAX_LOGITS_PER_PASS:
        most = max(1, MAX_LOGITS_PER_PASS // (context * vocab))
        problems.append(
            (
                "sharpness.chunk_size",
                f"a forward pass of {chunk} windows x {context} tokens x a {vocab}-token vocabulary is "
                f"{chunk * context * vocab:.2e} logits ({chunk * context * vocab * 4 / 2**30:.1f} GiB, several times "
                f"that in a sharpness measurement); set sharpness.chunk_size to at most {most}",
            )
        )
    return problems


class Config(Strict):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=FCNConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    sharpness: SharpnessConfig = Field(default_factory=SharpnessConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    methods: dict[str, MethodConfig] = Field(min_length=1)

    @field_validator("methods")
    @classmethod
    def _method_names(cls, methods: dict[str, Any]) -> dict[str, Any]:
        for name in methods:
            if not name or not all(c.isalnum() or c in "_-" for c in name):
                raise ValueError(f"method name {name!r} may only use letters, digits, '_' and '-'")
        return methods

    def runs(self, method: str) -> list[RunConfig]:
        """The grid points of one method, in a deterministic order."""
        return expand_method(self, method)


FIXED_AXES = ("eta_trgt", "warmup_steps", "seed")  # summary.csv's eta_trgt_setting, T_wrm and seed


def method_axes(method: Any) -> list[str]:
    """The dotted keys a method sets beyond eta_trgt, T_wrm and seed: its grid keys, then its overrides. Runs that
    differ in one of them are different experiments, never pooled (their resolved values are summary.csv columns)."""
    keys = dict.fromkeys([*method.grid, *method.overrides])
    return [k for k in keys if k not in FIXED_AXES]


def config_axes(cfg: Config) -> list[str]:
    """method_axes of every method, in order of first appearance."""
    return list(dict.fromkeys(k for m in cfg.methods.values() for k in method_axes(m)))


def axis_value(run: RunConfig, key: str) -> Any:
    """The resolved value of a dotted key in one run (None where the key does not apply, e.g. beta2 of SGD)."""
    node: Any = run if key.split(".")[0] in GLOBAL_SECTIONS else run.method
    for part in key.split("."):
        node = getattr(node, part, None)
    return node


def shift_seeds(cfg: Config, offset: int) -> Config:
    """The same configuration with every initialization seed moved by `offset` (a method's `seed` and its grid's
    seed values): a disjoint seed set, to check that verdicts do not depend on which seeds were drawn."""
    methods = {}
    for name, method in cfg.methods.items():
        grid = dict(method.grid)
        if "seed" in grid:
            grid["seed"] = [int(s) + offset for s in grid["seed"]]
        methods[name] = method.model_copy(update={"seed": method.seed + offset, "grid": grid})
    return cfg.model_copy(update={"methods": methods})


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {} if child is None else child
            node[part] = child
        node = child
    node[parts[-1]] = copy.deepcopy(value)


def _run_dict(cfg: Config, name: str, point: dict[str, Any]) -> dict[str, Any]:
    method = cfg.methods[name]
    base = {s: getattr(cfg, s).model_dump(mode="json") for s in GLOBAL_SECTIONS}
    entry = method.model_dump(mode="json", exclude={"grid", "overrides"})
    entry["grid"], entry["overrides"] = {}, {}
    for key, value in list(method.overrides.items()) + list(point.items()):
        if key.split(".")[0] in OVERRIDABLE_SECTIONS:
            _set_dotted(base, key, value)
        else:
            _set_dotted(entry, key, value)
    return {"name": name, **base, "method": entry}


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def expand_method(cfg: Config, name: str) -> list[RunConfig]:
    return [RunConfig.model_validate(_run_dict(cfg, name, p)) for p in grid_points(cfg.methods[name].grid)]


def _locate(loc: tuple[Any, ...], data: Any) -> tuple[list[Any], list[tuple[Any, Any]] | None]:
    """The parts of a pydantic error location that are keys of the file (the discriminator tags pydantic inserts
    dropped), and the (container, key) of each of them in `data` (None when the location is not in `data`)."""
    parts: list[Any] = []
    steps: list[tuple[Any, Any]] | None = []
    node = data
    for part in loc:
        in_dict = isinstance(node, dict) and part in node
        if not in_dict and isinstance(node, dict) and part in (node.get("kind"), node.get("name"), "fcn", "sgd"):
            continue  # the tag of a discriminated union, not a key of the file
        if steps is not None and (in_dict or isinstance(node, list) and isinstance(part, int) and part < len(node)):
            steps.append((node, part))
            node = node[part]
        else:
            steps, node = None, None
        parts.append(part)
    return parts, steps


def _format_loc(loc: tuple[Any, ...], data: Any) -> str:
    """Dotted path of a pydantic error location in the file."""
    parts, _ = _locate(loc, data)
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in parts).replace(".[", "[")


def _known_keys() -> set[str]:
    """Every setting name of params.yaml: the fields of all sections and methods."""
    keys, stack = set(), [Strict]
    while stack:
        cls = stack.pop()
        stack += cls.__subclasses__()
        keys |= set(cls.model_fields)
    return keys


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation admits (through Annotated, unions and Optional)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _models_in(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [m for arg in get_args(annotation) for m in _models_in(arg)]
    return [annotation] if isinstance(annotation, type) and issubclass(annotation, BaseModel) else []


def _models_at(root: type[BaseModel], loc: tuple[Any, ...]) -> tuple[list[type[BaseModel]], list[type[BaseModel]]]:
    """The models of the mapping `loc` points into, and the alternatives of the union they were picked from by a
    tag (an optimizer's `name`, a model's or method's `kind`; empty when not a union); no models when `loc`
    cannot be resolved."""
    models: list[type[BaseModel]] = [root]
    union: list[type[BaseModel]] = []
    dict_values: Any = None  # the value annotation while inside a dict[str, X] (methods)
    for part in loc:
        if dict_values is not None:  # `part` is a user-chosen dict key (a method name)
            models, dict_values = _models_in(dict_values), None
            continue
        tagged = [m for m in models if part in _tags(m)]
        if tagged and not any(part in m.model_fields for m in models):
            models, union = tagged, models  # the tag pydantic puts in the location of a discriminated union
            continue
        field = next((m.model_fields[part] for m in models if part in m.model_fields), None)
        if field is None:
            return [], []
        union = []
        if get_origin(field.annotation) is dict:
            dict_values = get_args(field.annotation)[1]
            models = []
        else:
            models = _models_in(field.annotation)
        if not models and dict_values is None:
            return [], []
    return models, union


def _tags(model: type[BaseModel]) -> tuple[Any, ...]:
    """The values of a model's tag field (`kind` or `name`: a Literal) that select it in a union."""
    for tag in ("kind", "name"):
        field = model.model_fields.get(tag)
        if field is not None and get_origin(field.annotation) is Literal:
            return get_args(field.annotation)
    return ()


def _keys_at(root: type[BaseModel], loc: tuple[Any, ...]) -> set[str]:
    """The setting names valid at the mapping `loc` points into (all known keys when it cannot be resolved)."""
    models, _ = _models_at(root, loc)
    keys = {k for m in models for k in m.model_fields}
    return keys or _known_keys()


RETIRED = {  # settings that no longer exist, and why
    ("data", "prepared_dir"): "no longer a setting: the prepared data always goes to data/prepared, the output "
    "dvc.yaml names (one place for each path); delete this line",
}


def _section_keys(section: str) -> set[str]:
    """The setting names of a global section (of every kind, for the model)."""
    return {k for m in _models_in(Config.model_fields[section].annotation) for k in m.model_fields}


def _unknown_key(root: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """Why a key is not allowed where it is: a setting of another optimizer / model / method kind, a key of a
    global section written in a method, or a typo."""
    key = str(loc[-1])
    if tuple(loc[-2:]) in RETIRED:
        return RETIRED[tuple(loc[-2:])]
    models, union = _models_at(root, tuple(loc[:-1]))
    owners = [m for m in union if key in m.model_fields and m not in models]
    if owners and models:
        tag = "name" if "name" in owners[0].model_fields and _tags(owners[0]) else "kind"
        theirs = " / ".join(repr(t) for m in owners for t in _tags(m))
        return f"'{key}' is a setting of {tag} {theirs}, not of {tag} {_tags(models[0])[0]!r}: remove it here"
    if any(issubclass(m, MethodBase) for m in models):
        sections = [s for s in GLOBAL_SECTIONS if key in _section_keys(s)]
        if sections:
            return (
                f"'{key}' is not a setting of a method but of the global section {sections[0]}: set it at the top "
                f"of params.yaml, or for this method only in its overrides as `{sections[0]}.{key}`"
            )
    return "unknown key (not a setting of this section)" + _did_you_mean(key, _keys_at(root, tuple(loc[:-1])))


def _did_you_mean(word: str, choices, cutoff: float = 0.6) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=cutoff)
    return f"; did you mean '{close[0]}'?" if close and close[0] != word else ""


_SCALAR_ERRORS = {"int_type", "float_type", "bool_type", "string_type", "literal_error", "enum", "int_parsing"}


def _list_where_scalar(path: str, values: list[Any]) -> str:
    """A list given for one value: most often meant as a sweep, which belongs in a method's grid."""
    parts = path.split(".")
    if parts[0] == "methods" and len(parts) > 2:
        key, where = ".".join(parts[2:]), f"methods.{parts[1]}.grid"
    else:
        key, where = path, "a method's grid (methods.<name>.grid)"
    return (
        f"takes one value, got a list {values!r}: to sweep it, put `{key}: {values!r}` in {where}; each value "
        "then becomes its own runs, kept apart in the analysis"
    )


_LEADING_PATH = re.compile(r"^([A-Za-z_][\w.\[\]-]*): (.*)$", re.DOTALL)


def _problems(err: ValidationError, data: Any, prefix: str = "", root: type[BaseModel] | None = None) -> list:
    out = []
    for e in err.errors():
        path = _format_loc(tuple(e["loc"]), data) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = _unknown_key(root or Config, tuple(e["loc"]))
        elif e["type"] == "union_tag_invalid":
            expected = re.findall(r"'([^']*)'", str(e.get("ctx", {}).get("expected_tags", "")))
            tag, field = str(e.get("ctx", {}).get("tag", "")), str(e.get("ctx", {}).get("discriminator", "")).strip("'")
            path += "." + field  # model.kind, not model
            if tag.lower() in expected:
                msg = f"{tag!r} must be written {tag.lower()!r} (the {field} values are lower case)"
            else:
                msg = f"{tag!r} is not a known {field}; one of {', '.join(map(repr, expected))}"
                msg += _did_you_mean(tag, expected)
        elif isinstance(e.get("input"), list) and e["type"] in _SCALAR_ERRORS:
            msg = _list_where_scalar(_format_loc(tuple(e["loc"]), data), e["input"])
        elif e["type"] == "union_tag_not_found" and isinstance(e.get("input"), dict):
            tag = str(e.get("ctx", {}).get("discriminator", "")).strip("'")
            typo = next((str(k) for k in e["input"] if _did_you_mean(str(k), [tag])), None)
            if typo is not None:  # `knid: linear`: name the misspelled key, not just its mapping
                path, msg = f"{path}.{typo}", f"unknown key; did you mean '{tag}'?"
            else:
                msg = f"no '{tag}' key: every entry here says which one it is (`whywarmup schema` lists them)"
        elif e["input"] is None and e["type"] in ("model_type", "dict_type", "model_attributes_type"):
            msg = "is empty (a heading with nothing under it): fill it in, or delete the line to use the defaults"
        elif "input" in e and e["type"] not in ("missing",) and not isinstance(e["input"], (dict, list)):
            msg = f"{msg} (got {e['input']!r})"
        if path == "(top level)" and (m := _LEADING_PATH.match(msg)):  # a model validator naming its field
            path, msg = m.groups()
        out.append((prefix + path, msg))
    return out


def _grid_problems(cfg: Config, cross_field: bool = True) -> list[tuple[str, str]]:
    """Validate every grid point; map each error back to the grid key or override that caused it, one problem per
    mistake: a key that is wrong whatever its value is named once, a bad value with every grid value it has."""
    problems: list[tuple[str, str]] = []
    for name, method in cfg.methods.items():
        size = math.prod(len(values) for values in method.grid.values())
        if size > MAX_GRID_POINTS:
            shape = " x ".join(f"{len(v)} {k}" for k, v in method.grid.items())
            problems.append(
                (f"methods.{name}.grid", f"{size} grid points ({shape}), more than {MAX_GRID_POINTS}; split it")
            )
            continue
        for key, values in method.grid.items():
            repeated = [v for i, v in enumerate(values) if any(v == u for u in values[:i])]
            if repeated:
                problems.append((f"methods.{name}.grid.{key}", f"{repeated[0]!r} is listed twice (same runs twice)"))
        keys = [
            (f"methods.{name}.{where}.{k}", _key_problem(method, k))
            for where in ("grid", "overrides")
            for k in getattr(method, where)
        ]
        problems += [(path, msg) for path, msg in keys if msg]
        if any(msg for _, msg in keys):
            continue  # every grid point would repeat it
        seen: dict[str, dict[str, Any]] = {}
        found: dict[tuple[str, str], list[str]] = {}  # (culprit, message) -> the grid values it occurs at
        for point in grid_points(method.grid):
            run = _run_dict(cfg, name, point)
            errors = cross_field_problems(run) if cross_field else []
            try:
                key = RunConfig.model_validate(run).key
            except ValidationError as err:
                errors += [p for p in _problems(err, run, root=RunConfig) if p[0] != "(top level)"]
            else:
                if key in seen and not any(p[0].startswith(f"methods.{name}.grid") for p in problems):
                    errors.append(("grid", f"grid points {seen[key]} and {point} are the same run; remove one"))
                seen[key] = point
            for path, msg in errors:
                culprit, value = _culprit(name, path, point, method.overrides)
                found.setdefault((culprit, _GOT.sub("", msg)), []).append(value)
        for (culprit, msg), values in found.items():
            named = list(dict.fromkeys(v for v in values if v is not None))
            # one value, or a message about the values (not the same for every value of the key): name them
            if named and (len(named) == 1 or len(named) < len(method.grid[culprit.rsplit(".grid.", 1)[-1]])):
                culprit += " = " + ", ".join(named)
            problems.append((culprit, msg))
    return list(dict.fromkeys(problems))


def _key_problem(method: Any, key: str) -> str:
    """What is wrong with a grid / overrides key as a key, whatever its values ("" when nothing is)."""
    first = key.split(".")[0]
    if first == "data":
        return DATA_PER_METHOD
    if first in GLOBAL_SECTIONS or first in type(method).model_fields:
        return ""
    optimizers = {k for m in _models_in(OptimizerConfig) for k in m.model_fields}
    meant = [f"{s}.{key}" for s in GLOBAL_SECTIONS if key in _section_keys(s)]
    meant += [f"optimizer.{key}"] if key in optimizers else []
    if not meant:
        return ""  # an unknown key: the validation of the grid points names it with a did-you-mean
    msg = f"a key of a section is written with its section: did you mean `{meant[0]}`?"
    if meant[0].startswith("optimizer.") and key not in type(method.optimizer).model_fields:
        owners = [t for m in _models_in(OptimizerConfig) if key in m.model_fields for t in _tags(m)]
        theirs = " / ".join(map(repr, owners))
        msg += f" ({key} is a setting of optimizer {theirs}, this method uses {method.optimizer.name!r})"
    return msg


_GOT = re.compile(r" \(got [^)]*\)$")
DATA_PER_METHOD = (
    "data cannot be set per method: the prepare stage makes one dataset that every method trains and is "
    "evaluated on (so their accuracies compare); change the top-level `data` section instead, or run another "
    "params file for the other data"
)


def _report_problems(cfg: Config, names: Any = ()) -> list[tuple[str, str]]:
    """`names`: methods of the file beyond cfg's (entries dropped for their own errors, named there)."""
    name = cfg.report.trajectory_method
    if name is None or name in cfg.methods or name in names:
        return []
    msg = f"{name!r} is not a method of this file (have {sorted(cfg.methods)})" + _did_you_mean(name, cfg.methods)
    return [("report.trajectory_method", msg)]


def _culprit(name: str, path: str, point: dict[str, Any], overrides: dict[str, Any]) -> tuple[str, str | None]:
    """The params.yaml path responsible for an error at `path` of method `name`'s resolved run dict, and the grid
    value that was set there (None when the path is not a grid key)."""
    if path == "grid":
        return f"methods.{name}.grid", None
    rel = path.removeprefix("method.")
    for source, keys in (("grid", point), ("overrides", overrides)):
        for key in keys:
            if rel == key or rel.startswith(key + ".") or key.startswith(rel + "."):
                return f"methods.{name}.{source}.{key}", repr(point[key]) if source == "grid" else None
    return (f"methods.{name}.{rel}" if path.startswith("method.") else path), None  # a global section's setting


def _drop(raw: Any, loc: tuple[Any, ...]) -> bool:
    """Delete the node at a pydantic error location from `raw` (a union tag at the end: the tagged mapping itself);
    False when the location is not in `raw`."""
    _, steps = _locate(loc, raw)
    if not steps:
        return False
    container, key = steps[-1]
    del container[key]
    return True


def _further_problems(raw: dict[str, Any], err: ValidationError) -> list[tuple[str, str]]:
    """Grid-point errors hidden behind section errors: drop the invalid fields (their defaults apply) and check
    the grids of what remains, so one run of `validate` names every bad field. Cross-field checks are left out
    here: they would compare against defaults the user did not choose."""
    trimmed = copy.deepcopy(raw)
    for _ in range(5):
        if not all(_drop(trimmed, tuple(e["loc"])) for e in err.errors() if e["loc"]):
            return []
        try:
            cfg = Config.model_validate(trimmed)
            names = raw.get("methods") if isinstance(raw.get("methods"), dict) else {}
            return _report_problems(cfg, names) + _grid_problems(cfg, cross_field=False)
        except ValidationError as again:
            err = again
    return []


def dvc_tracked_sections(params: Path) -> list[str]:
    """Top-level sections of `params` that the stages of the dvc.yaml beside it read (DVC stops with "Parameters
    ... are missing" when one is absent); none when `params` is not that folder's params.yaml."""
    dvc = params.parent / "dvc.yaml"
    if params.name != "params.yaml" or not dvc.is_file():
        return []
    try:
        stages = (yaml.safe_load(dvc.read_text()) or {}).get("stages") or {}
    except (OSError, yaml.YAMLError, AttributeError):
        return []  # DVC reports a broken dvc.yaml itself
    names: list[str] = []
    for stage in stages.values():
        body = stage.get("do", stage) if isinstance(stage, dict) else {}
        for entry in body.get("params") or []:
            if isinstance(entry, str) and not entry.startswith("$"):
                names.append(entry.split(".")[0])
    return list(dict.fromkeys(names))


def parse_config(raw: Any, source: str = "params.yaml", required: list[str] = ()) -> Config:
    """Validate a params mapping; `required`: sections that must be present (those DVC's stages read)."""
    if not isinstance(raw, dict):
        raise ConfigError(source, [("(top level)", "the file must be a YAML mapping of sections")])
    missing = [
        (
            name,
            'missing: the stages in dvc.yaml read this section, so `dvc repro` would stop ("Parameters ... are '
            'missing"); put it back (`whywarmup schema` lists its settings and defaults)',
        )
        for name in required
        if name not in raw
    ]
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as err:
        problems = missing + _problems(err, raw)
        raise ConfigError(source, list(dict.fromkeys(problems + _further_problems(raw, err)))) from None
    problems = missing + _report_problems(cfg) + _grid_problems(cfg)
    if problems:
        raise ConfigError(source, problems)
    return cfg


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that also records every key written twice in one mapping (YAML keeps the last value and silently
    drops the first: an edit that seems to take no effect)."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self.duplicates: list[tuple[str, str]] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
            if key in seen:
                self.duplicates.append(
                    (
                        f"line {line}",
                        f"key {key!r} is written twice in the same mapping (also at line {seen[key]}); YAML keeps only "
                        "the last one, so the first is ignored: delete one or merge them",
                    )
                )
            seen.setdefault(key, line)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(text: str) -> tuple[Any, list[tuple[str, str]]]:
    """The document and the duplicate keys in it."""
    loader = _UniqueKeyLoader(text)
    try:
        return loader.get_single_data(), loader.duplicates
    finally:
        loader.dispose()


def load_config(path: str | Path = "params.yaml") -> Config:
    """Read and validate a params file; raise ConfigError listing every problem in it."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(str(path), [("(file)", f"cannot be read: {e.strerror or e}")]) from None
    try:
        raw, duplicates = _read_yaml(text)
    except yaml.YAMLError as e:
        raise ConfigError(str(path), [("(file)", f"is not valid YAML: {e}")]) from None
    if duplicates:
        raise ConfigError(str(path), duplicates)
    return parse_config(raw, str(path), dvc_tracked_sections(path.resolve()))


def json_schema() -> dict[str, Any]:
    return Config.model_json_schema()
