"""`whywarmup ui`: MLflow's own UI on this project's tracking store, opened on the experiment's training runs."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import TrackingError
from .tracking import TRAINING_VIEW_QUERY, redact, resolve_tracking_uri

if TYPE_CHECKING:
    from .config import Config


def runs_address(base: str, experiment_id: str) -> str:
    """The address of an experiment's runs table in MLflow's model-training view (not its GenAI overview)."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{TRAINING_VIEW_QUERY}"


def _experiment_id(uri: str, name: str) -> str:
    from mlflow.tracking import MlflowClient

    exp = MlflowClient(tracking_uri=uri).get_experiment_by_name(name)
    if exp is None:
        raise TrackingError(
            f"The MLflow store at {redact(uri)} has no experiment '{name}' yet: nothing has been trained with this "
            "params.yaml. Run `dvc repro` first (or check tracking.experiment)."
        )
    return exp.experiment_id


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def serve(cfg: Config, root: Path, host: str, port: int) -> int:
    """Start `mlflow ui` on the configured store (a server's address is printed, nothing started) and print the
    address of the experiment's runs; runs until the UI exits or Ctrl-C. Returns the UI's exit status."""
    uri = resolve_tracking_uri(cfg.tracking.uri, root)
    if uri.startswith(("http://", "https://")):  # a server: its own UI (the address without any credentials)
        parts = urllib.parse.urlsplit(uri)
        base = urllib.parse.urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
        print(runs_address(base, _experiment_id(uri, cfg.tracking.experiment)), flush=True)
        return 0
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file():
        raise TrackingError(
            f"There is no MLflow store at {uri[len('sqlite:///') :]} yet: nothing has been trained with this "
            "params.yaml. Run `dvc repro` first (or check tracking.uri / MLFLOW_TRACKING_URI)."
        )
    experiment = _experiment_id(uri, cfg.tracking.experiment)
    if not _port_free(host, port):
        raise TrackingError(
            f"Port {port} on {host} is taken (another `mlflow ui` or server?). Choose another with "
            "`whywarmup ui --port 5001`, or open the one that runs."
        )
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]
    print(f"starting MLflow's UI on {redact(uri)} ...", flush=True)
    ui = subprocess.Popen(command)
    try:
        if _wait_until_up(f"http://{host}:{port}/health", ui):
            address = runs_address(f"http://{host}:{port}", experiment)
            print(f"the training runs: {address}\n(Ctrl-C stops the UI)", flush=True)
        return ui.wait()
    except KeyboardInterrupt:
        ui.terminate()
        ui.wait(timeout=30)
        return 0


def _wait_until_up(health: str, ui: subprocess.Popen, timeout_s: float = 300.0) -> bool:
    """Whether the UI answers its health check before it exits (its own message then says why) or times out."""
    deadline = time.monotonic() + timeout_s
    while ui.poll() is None and time.monotonic() < deadline:
        try:
            urllib.request.urlopen(health, timeout=2).close()
            return True
        except OSError:
            time.sleep(0.3)
    return False
