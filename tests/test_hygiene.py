"""Source rules a reviewer would otherwise check by hand: safe loaders only, no shell, atomic output writes,
and every documented `mlflow ui` / `mlflow server` command bound to 127.0.0.1."""

import ast
import re

from tests.conftest import ROOT

SOURCES = sorted((ROOT / "src" / "whywarmup").glob("*.py")) + sorted((ROOT / "pipeline").glob("*.py"))


def _calls(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def test_only_safe_loaders_and_no_shell():
    for path in SOURCES:
        for call, name in _calls(path):
            where = f"{path.name}:{call.lineno}"
            assert name not in ("yaml.load", "yaml.unsafe_load", "pickle.load", "pickle.loads", "os.system"), where
            assert name != "eval" and name != "exec", where
            if name == "torch.load":
                assert any(k.arg == "weights_only" and ast.literal_eval(k.value) is True for k in call.keywords), where
            for k in call.keywords:
                assert not (k.arg == "shell" and isinstance(k.value, ast.Constant) and k.value.value), where


def test_outputs_are_written_atomically():
    """Files are written only by whywarmup.files (write beside, then rename); dataframes and figures are rendered
    to memory first (to_csv() / to_parquet() without a path, savefig into a buffer)."""
    for path in SOURCES:
        if path.name == "files.py":
            continue
        for call, name in _calls(path):
            where = f"{path.name}:{call.lineno}: {name}"
            method = name.rsplit(".", 1)[-1]
            assert method not in ("write_text", "write_bytes"), where
            if method in ("to_csv", "to_parquet", "to_json"):
                assert not call.args and all(k.arg != "path_or_buf" for k in call.keywords), where
            if method == "savefig":
                assert isinstance(call.args[0], ast.Name) and call.args[0].id == "png", where
            if name == "open" and len(call.args) > 1:
                assert "w" not in ast.literal_eval(call.args[1]) and "a" not in ast.literal_eval(call.args[1]), where


def test_mlflow_commands_bind_to_localhost():
    texts = {p.name: p.read_text() for p in [ROOT / "README.md", *SOURCES]}
    found = 0
    for name, text in texts.items():
        for match in re.finditer(r"mlflow (ui|server)\b(?!`)[^\n`\"]*", text):
            found += 1
            assert "--host 127.0.0.1" in match.group(0), f"{name}: {match.group(0)}"
    assert found >= 3
