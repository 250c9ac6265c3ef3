"""What code a run came from, in the form MLflow's UI shows: the project's git commit and params file (MLflow's
source tags, as `mlflow run` sets them)."""

from __future__ import annotations

import hashlib
import subprocess
from functools import cache
from pathlib import Path

from .tracking import redact

PARAMS_FILE = "params.yaml"
TAG_PARAMS_DIGEST = "whywarmup.params_sha256"
TAG_CODE_CHANGED = "whywarmup.git.uncommitted_code"  # src/ or pipeline/ differ from the commit
TAG_CODE_VERSION = "whywarmup.code_version"  # hash of the package's source: what resume compares
CODE_FOLDERS = ("src", "pipeline")


def _git(root: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


@cache
def source_tags(root: Path, code_version: str = "", params_file: Path | None = None) -> dict[str, str]:
    """MLflow's source tags for a run of this project, as `mlflow run` sets them: mlflow.source.name (the project
    folder), .type PROJECT, .git.commit / .git.branch / .git.repoURL where the folder is a git work tree; plus
    whether src/ or pipeline/ have uncommitted changes, the sha256 of the params file (`params_file`, by default
    the project's params.yaml) and the package's code hash."""
    tags = {"mlflow.source.name": str(root), "mlflow.source.type": "PROJECT"}
    commit = _git(root, "rev-parse", "HEAD")
    if commit:
        tags["mlflow.source.git.commit"] = commit
        branch = _git(root, "rev-parse", "--abbrev-ref", "HEAD")
        if branch and branch != "HEAD":
            tags["mlflow.source.git.branch"] = branch
        remote = _git(root, "config", "--get", "remote.origin.url")
        if remote:
            tags["mlflow.source.git.repoURL"] = redact(remote)  # no token of an https remote in the store
        changed = _git(root, "status", "--porcelain", "--untracked-files=no", "--", *CODE_FOLDERS)
        tags[TAG_CODE_CHANGED] = str(bool(changed)).lower()
    params = params_file or root / PARAMS_FILE
    if params.is_file():
        tags[TAG_PARAMS_DIGEST] = hashlib.sha256(params.read_bytes()).hexdigest()
    if code_version:
        tags[TAG_CODE_VERSION] = code_version
    return tags
