"""Command line: `whywarmup validate|schema|prepare|train|analyze|report|ui`.

Every stage runs through `run_stage`, which turns user-caused failures into a one-paragraph message and an
exit status (2 for an invalid params file, 1 for other errors, 130 for Ctrl-C) instead of a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from .errors import WhywarmupError

DEFAULT_PARAMS = Path("params.yaml")


def run_stage(fn: Callable[[], object]) -> int:
    try:
        fn()
    except WhywarmupError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(
            "interrupted: finished runs are saved in MLflow; runs in flight were marked KILLED. "
            "Re-run the same command to start the stage again.",
            file=sys.stderr,
        )
        return 130
    return 0


def _root(params: Path) -> Path:
    return params.resolve().parent


def _find_params(path: Path) -> Path:
    """The default params.yaml is looked for in the current folder and then in its parents (like git)."""
    if path != DEFAULT_PARAMS or path.exists():
        return path
    for folder in Path.cwd().resolve().parents:
        if (folder / DEFAULT_PARAMS).exists() and (folder / "dvc.yaml").exists():
            return folder / DEFAULT_PARAMS
    return path


def cmd_validate(args: argparse.Namespace) -> None:
    from .config import load_config
    from .data import DATASETS
    from .errors import ConfigError

    cfg = load_config(args.params)
    note, fatal = DATASETS[cfg.data.dataset].download_note(cfg.data, _root(args.params) / cfg.data.root)
    if fatal:
        raise ConfigError(str(args.params), [("data.download", note)])
    n = sum(len(cfg.runs(m)) for m in cfg.methods)
    print(f"{args.params}: valid ({len(cfg.methods)} methods, {n} runs)")
    if note:
        print(f"note: {note}")


def cmd_schema(args: argparse.Namespace) -> None:
    from .config import json_schema

    print(json.dumps(json_schema(), indent=2))


def cmd_prepare(args: argparse.Namespace) -> None:
    from .config import load_config
    from .data import build_dataset, prepared_path, save_prepared

    cfg = load_config(args.params)
    root = _root(args.params)
    os.chdir(root)
    meta = save_prepared(build_dataset(cfg.data), prepared_path(cfg.data))
    print(
        f"prepared {meta['dataset']}: train {meta['train']}, validation {meta['validation']}, test {meta['test']} "
        f"-> {prepared_path(cfg.data)}"
        + (f" (vocabulary {meta['num_classes']}, tokenizer {meta['tokenizer']})" if "tokenizer" in meta else "")
    )


def cmd_train(args: argparse.Namespace) -> None:
    from .config import load_config
    from .errors import ConfigError
    from .sweep import run_method

    cfg = load_config(args.params)
    if args.method not in cfg.methods:
        raise ConfigError(str(args.params), [(f"methods.{args.method}", f"no such method; have {list(cfg.methods)}")])
    root = _root(args.params)
    summary = run_method(cfg, args.method, root, progress=not args.no_progress, params_file=args.params)
    print(summary[["run_key", "eta_trgt_setting", "T_wrm", "status", "final_test_accuracy"]].to_string(index=False))


def cmd_analyze(args: argparse.Namespace) -> None:
    from .analysis import analyze
    from .config import load_config

    cfg = load_config(args.params)
    analyze(cfg, _root(args.params))


def cmd_report(args: argparse.Namespace) -> None:
    from .config import load_config
    from .report import build_report

    cfg = load_config(args.params)
    path = build_report(cfg, _root(args.params), params_file=args.params)
    print(f"report written to {path}")


def cmd_ui(args: argparse.Namespace) -> None:
    from .config import load_config
    from .mlflow_ui import serve

    status = serve(load_config(args.params), _root(args.params), args.host, args.port)
    if status:
        raise WhywarmupError(f"`mlflow ui` stopped with exit status {status}; its own message is above.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="whywarmup", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn, help_ in [
        ("validate", cmd_validate, "validate a params file (exit 2 with every problem listed when invalid)"),
        ("schema", cmd_schema, "print the JSON schema of params.yaml"),
        ("prepare", cmd_prepare, "prepare the dataset (DVC stage `prepare`)"),
        ("train", cmd_train, "train every grid point of one method (DVC stage `train@<method>`)"),
        (
            "analyze",
            cmd_analyze,
            "phase diagrams, trainable learning rates, metrics.json (DVC stage `analyze`)",
        ),
        ("report", cmd_report, "figures and reports/index.html (DVC stage `report`)"),
        ("ui", cmd_ui, "MLflow's UI on this project's store, opened on the training runs"),
    ]:
        p = sub.add_parser(name, help=help_)
        p.set_defaults(fn=fn)
        if name != "schema":
            p.add_argument("params", nargs="?", type=Path, default=DEFAULT_PARAMS)
        if name == "train":
            p.add_argument("--method", required=True)
            p.add_argument("--no-progress", action="store_true")
        if name == "ui":
            p.add_argument("--host", default="127.0.0.1")
            p.add_argument("--port", type=int, default=5000)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if hasattr(args, "params"):
        args.params = _find_params(args.params)
    return run_stage(lambda: args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
