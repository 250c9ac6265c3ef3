"""Property-based test: any mutation that makes the real params.yaml invalid is rejected by every stage with
exit status 2, a message naming each bad field's dotted path (with "did you mean" for a misspelled key), and
nothing written: no MLflow run, no output file changed."""

import contextlib
import copy
import difflib
import hashlib
import io
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT, SMALL_SWEEP
from whywarmup.cli import main
from whywarmup.config import _known_keys, dvc_tracked_sections

BASE = yaml.safe_load((ROOT / "params.yaml").read_text())
# Fields that must be > 0 (docs/science.md / the meaning of each knob), so 0 is a bad value for them.
POSITIVE = re.compile(
    r"^(training\.(steps|eval_every|divergence_factor)|model\.(depth|width)|data\.test_fraction|"
    r"sharpness\.(subset_size|chunk_size|tol|max_matvecs|num_minibatches)|tracking\.log_every|"
    r"report\.max_trajectories|methods\.\w+\.(grid\.(eta_trgt|warmup_steps)\[\d+\]|gamma|every|optimizer\.eps))$"
)
TAG_KEYS = ("kind", "name")


def _dotted(path: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(path))


def _walk(node, path=()):
    """(path, value) of every node below the top level."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, value in items:
        yield path + (key,), value
        yield from _walk(value, path + (key,))


def _get(tree, path):
    for p in path:
        tree = tree[p]
    return tree


LEAVES = [(p, v) for p, v in _walk(BASE) if not isinstance(v, (dict, list))]
NUMBERS = [p for p, v in LEAVES if isinstance(v, (int, float)) and not isinstance(v, bool)]
MAPPINGS = [()] + [p for p, v in _walk(BASE) if isinstance(v, dict) and p != ("methods",)]
# Keys that are setting names (not user-chosen method names), and tags like `kind: linear`.
SETTING_KEYS = [p for p, _ in _walk(BASE) if isinstance(p[-1], str) and len(p[-1]) >= 3 and p[:-1] != ("methods",)]
TAGS = [p for p, v in LEAVES if p[-1] in TAG_KEYS]
GRIDS = [p for p, v in _walk(BASE) if p[-1] == "grid" and len(p) == 3]
DVC_SECTIONS = dvc_tracked_sections(ROOT / "params.yaml")


def _unit(path: tuple) -> tuple:
    """Mutations are applied to different units (a section or one method), so none hides another."""
    return path[:2] if path and path[0] == "methods" else path[:1]


def _misspell(word: str, draw) -> str:
    i = draw(st.integers(0, len(word) - 2))
    edit = draw(st.sampled_from(["swap", "drop", "double", "replace"]))
    if edit == "swap" and word[i] != word[i + 1]:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if edit == "drop":
        return word[:i] + word[i + 1 :]
    if edit == "double":
        return word[:i] + word[i] + word[i:]
    return word[:i] + ("x" if word[i] != "x" else "q") + word[i + 1 :]


@st.composite
def mutation(draw):
    """One invalidating edit: (apply(tree), the dotted path the message must name, a did-you-mean expectation)."""
    kind = draw(
        st.sampled_from(
            ["wrong_type", "bad_number", "zero", "unknown_key", "misspelled_key", "misspelled_tag", "null_section"]
            + ["missing_section", "empty_grid", "huge_grid", "repeated_grid_value"]
        )
    )
    if kind == "wrong_type":
        path, value = draw(st.sampled_from(LEAVES))
        bad = draw(st.sampled_from([[1, 2], {"x": 1}] + ([7, 2.5] if isinstance(value, str) else ["lots"])))
        return path, lambda t: _set(t, path, bad), _dotted(path[:-1] if isinstance(path[-1], int) else path), None
    if kind == "bad_number":
        path = draw(st.sampled_from(NUMBERS))
        bad = draw(st.sampled_from([-1 - abs(_get(BASE, path)), math.nan, math.inf, -math.inf, 10**30]))
        return path, lambda t: _set(t, path, bad), _dotted(path[:-1] if isinstance(path[-1], int) else path), None
    if kind == "zero":
        path = draw(st.sampled_from([p for p in NUMBERS if POSITIVE.match(_dotted(p))]))
        return path, lambda t: _set(t, path, 0), _dotted(path[:-1] if isinstance(path[-1], int) else path), None
    if kind == "unknown_key":
        at = draw(st.sampled_from(MAPPINGS))
        key = draw(
            st.text("abcdefghijklmnopqrstuvwxyz", min_size=4, max_size=12).filter(lambda k: k not in _known_keys())
        )
        path = at + (key,)
        return path, lambda t: _set(t, path, 1), _dotted(path), None
    if kind == "misspelled_key":
        path = draw(st.sampled_from(SETTING_KEYS))
        word = path[-1].split(".")[-1]  # overrides keys are dotted: misspell the setting, not the section
        typo = path[-1][: len(path[-1]) - len(word)] + _misspell(word, draw)
        if typo.split(".")[-1] in _known_keys():
            typo = path[-1] + "zq"  # the edit made another real key; make it unknown
        new = path[:-1] + (typo,)

        def apply(t):
            parent = _get(t, path[:-1])
            parent[typo] = parent.pop(path[-1])

        return path, apply, _dotted(new), (typo.split(".")[-1], word)
    if kind == "misspelled_tag":
        path = draw(st.sampled_from(TAGS))
        typo = _misspell(_get(BASE, path), draw)
        if typo == _get(BASE, path) or typo in ("fcn", "cnn", "wrn", "none", "linear", "sgd", "adam", "radam"):
            typo += "zq"
        return path, lambda t: _set(t, path, typo), _dotted(path), None
    if kind == "null_section":
        section = draw(st.sampled_from([k for k in BASE if k != "methods"]))
        return (section,), lambda t: _set(t, (section,), None), section, None
    if kind == "missing_section":  # one that dvc.yaml's stages read (beside the file in the project)
        section = draw(st.sampled_from(DVC_SECTIONS))
        return (section,), lambda t: t.pop(section), section, None
    grid = draw(st.sampled_from(GRIDS))
    key = draw(st.sampled_from(sorted(_get(BASE, grid))))
    if kind == "empty_grid":
        return grid + (key,), lambda t: _set(t, grid + (key,), []), _dotted(grid + (key,)), None
    if kind == "huge_grid":
        values = [float(x + 1) for x in range(101)]
        return grid, lambda t: _set(t, grid, {"eta_trgt": values, "seed": list(range(100))}), _dotted(grid), None
    return (
        grid + (key,),
        lambda t: _get(t, grid + (key,)).append(_get(t, grid + (key,))[0]),
        _dotted(grid + (key,)),
        None,
    )


def _set(tree, path, value):
    _get(tree, path[:-1])[path[-1]] = value


@st.composite
def mutations(draw):
    chosen = draw(st.lists(mutation(), min_size=1, max_size=3, unique_by=lambda m: _unit(m[0])))
    if any(m[0] == ("methods",) for m in chosen):  # without methods nothing below it can be checked
        chosen = [m for m in chosen if m[0][0] != "methods" or m[0] == ("methods",)]
    return chosen


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "params.yaml"
    }


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project with prepared data, a finished sweep in its MLflow store and its outputs."""
    folder = tmp_path_factory.mktemp("fuzz")
    small = copy.deepcopy(SMALL_SWEEP)
    small["methods"]["m"]["grid"] = {"eta_trgt": [2.0, 8.0]}
    small["executor"] = {"workers": 1}
    (folder / "params.yaml").write_text(yaml.safe_dump(small))
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    for stage in (["prepare"], ["train", "--method", "m", "--no-progress"]):
        cmd = [sys.executable, "-m", "whywarmup.cli", stage[0], "params.yaml", *stage[1:]]
        subprocess.run(cmd, cwd=folder, env=env, check=True, capture_output=True)
    assert (folder / "mlflow.db").exists() and len(list((folder / "runs" / "m").glob("*.parquet"))) == 2
    shutil.copy(ROOT / "dvc.yaml", folder / "dvc.yaml")  # the pipeline's params.yaml: DVC's sections required
    return folder


@settings(
    max_examples=int(os.environ.get("WHYWARMUP_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(chosen=mutations())
def test_every_invalid_params_file_is_rejected_by_every_stage(project, chosen):
    tree = copy.deepcopy(BASE)
    for _, apply, _, _ in chosen:
        apply(tree)
    params = project / "params.yaml"
    params.write_text(yaml.safe_dump(tree, sort_keys=False))
    before = _snapshot(project)
    method = next(iter(tree.get("methods") or {"linear": None}))
    cwd = os.getcwd()
    try:
        for stage in (["validate"], ["prepare"], ["train", "--method", method], ["analyze"], ["report"]):
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = main([stage[0], str(params), *stage[1:]])
            message = err.getvalue()
            assert code == 2, (stage, message)
            assert "Traceback" not in message
            lines = message.splitlines()
            for _, _, where, typo in chosen:
                named = [line for line in lines if line.strip().startswith(where)]
                assert named, f"{where} is not named in:\n{message}"
                if typo is not None:  # a misspelled key: the suggestion is a real key at least as close as ours
                    wrong, meant = typo
                    hints = re.findall(r"did you mean '([^']+)'", " ".join(named))
                    assert hints, f"no 'did you mean' for {where}:\n{message}"
                    ratio = difflib.SequenceMatcher(None, wrong, hints[0]).ratio()
                    assert hints[0] in _known_keys()
                    assert ratio >= difflib.SequenceMatcher(None, wrong, meant).ratio()
    finally:
        os.chdir(cwd)
    assert _snapshot(project) == before  # no MLflow run, no prepared data, no runs/ or analysis/ output changed
