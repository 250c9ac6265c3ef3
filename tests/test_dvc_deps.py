"""Each DVC stage depends on exactly the modules its command can import, so an edit reruns what it affects and
nothing else: the import closure (static, every `import` in a module, function-level ones included) of the
stage's `whywarmup` command (cli's module-level imports plus those of its `cmd_<stage>` function)."""

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "whywarmup"


def _imports(tree: ast.AST, module: str) -> set[str]:
    """whywarmup modules imported anywhere in `tree` (relative or absolute imports)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                base = node.module
                found |= {base} if base else {a.name for a in node.names}
            elif node.module and node.module.startswith("whywarmup."):
                found.add(node.module.split(".")[1])
            elif node.module == "whywarmup":
                found |= {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("whywarmup.")}
    return {m for m in found if (PACKAGE / f"{m}.py").exists()} - {module}


def _closure(start: set[str]) -> set[str]:
    seen, todo = set(), list(start)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo += _imports(ast.parse((PACKAGE / f"{module}.py").read_text()), module)
    return seen


def stage_modules(command: str) -> set[str]:
    """The modules `whywarmup <command>` can import: cli's module-level imports, its cmd_<command>'s imports."""
    tree = ast.parse((PACKAGE / "cli.py").read_text())
    top = ast.Module(body=[n for n in tree.body if not isinstance(n, ast.FunctionDef)], type_ignores=[])
    function = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == f"cmd_{command}")
    return {"cli"} | _closure(_imports(top, "cli") | _imports(function, "cli"))


STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("stage", list(STAGES))
def test_stage_deps_are_the_import_closure_of_its_command(stage):
    spec = STAGES[stage].get("do", STAGES[stage])
    command = spec["cmd"].split()[1]  # python pipeline/<command>.py ...
    assert command == f"pipeline/{stage}.py"
    deps = {d for d in spec["deps"] if d.startswith("src/whywarmup/")}
    expected = {f"src/whywarmup/{m}.py" for m in stage_modules(stage) | {"__init__"}}
    assert deps == expected, f"missing: {sorted(expected - deps)}; not imported: {sorted(deps - expected)}"
    assert f"pipeline/{stage}.py" in spec["deps"]


def test_the_closure_follows_function_level_imports():
    # cli imports the sweep only inside cmd_train; the report logs to MLflow through a function-level import
    assert "sweep" in stage_modules("train") and "sweep" not in stage_modules("prepare")
    assert "tracking" in stage_modules("report")


def test_every_path_is_written_once():
    """The stages' outputs in dvc.yaml are the library's layout (whywarmup.layout), the one place the library takes
    them from: a path that changes in one place and not the other fails here."""
    from whywarmup import layout

    prepare, train = STAGES["prepare"], STAGES["train"]["do"]
    assert prepare["outs"] == [layout.PREPARED_DIR] and layout.PREPARED_DIR in train["deps"]
    assert train["outs"] == [f"{layout.RUNS_DIR}/${{key}}"] and layout.RUNS_DIR in STAGES["analyze"]["deps"]
    assert STAGES["analyze"]["outs"] == [layout.ANALYSIS_DIR] and layout.ANALYSIS_DIR in STAGES["report"]["deps"]
    assert [next(iter(m)) for m in STAGES["analyze"]["metrics"]] == [layout.METRICS_FILE]
    assert STAGES["report"]["outs"] == [layout.REPORTS_DIR]
    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    files = {f for p in plots for spec in p.values() for f in spec["y"]}
    assert files and all(f.startswith(layout.PLOTS_DIR + "/") for f in files)
    # no module but layout spells the folders out as path parts
    for module in PACKAGE.glob("*.py"):
        if module.name != "layout.py":
            text = module.read_text()
            for folder in (layout.RUNS_DIR, layout.ANALYSIS_DIR, layout.REPORTS_DIR, layout.STATE_DIR, "data"):
                assert f'/ "{folder}"' not in text and f'"{folder}" /' not in text, (module.name, folder)
