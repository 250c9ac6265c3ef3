"""End to end: the real `dvc repro` on a tiny params file in a temporary git repository, then the MLflow store
opened with MlflowClient, the report files, `dvc metrics show`, `dvc plots show`, and re-runs."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

BIN = Path(sys.executable).parent

TINY = {
    "data": {"dataset": "digits", "num_examples": 200},
    "model": {"kind": "fcn", "depth": 3, "width": 64},
    "training": {"steps": 30, "eval_every": 10},
    "sharpness": {"every": 10, "subset_size": 64},
    "report": {"trajectory_method": "linear"},
    "methods": {
        "none": {"kind": "none", "eta_relative_to": "lambda_0", "grid": {"eta_trgt": [8.0, 64.0]}},
        "linear": {
            "kind": "linear",
            "eta_relative_to": "lambda_0",
            "grid": {"eta_trgt": [8.0, 64.0], "warmup_steps": [5, 10]},
        },
        "catapult_init": {
            "kind": "catapult_init",
            "eta_relative_to": "lambda_0",
            "warmup_steps": 5,
            "grid": {"eta_trgt": [8.0, 64.0]},
        },
        "persistent": {
            "kind": "persistent_catapult",
            "eta_relative_to": "lambda_0",
            "every": 5,
            "grid": {"eta_trgt": [1.0, 8.0]},
        },
        "adam": {"kind": "none", "optimizer": {"name": "adam"}, "eta_trgt": 0.01},
        "gi_adam": {"kind": "gi_adam", "grid": {"eta_trgt": [0.01], "optimizer.v_bias_correction": [True, False]}},
    },
}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    env["DVC_NO_ANALYTICS"] = "1"
    return env


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = Path(__file__).resolve().parents[1]
    repo = tmp_path_factory.mktemp("project")
    for name in ["dvc.yaml", "MLproject", ".gitignore"]:
        shutil.copy(root / name, repo / name)
    for name in ["pipeline", "src"]:
        shutil.copytree(root / name, repo / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (repo / "params.yaml").write_text(yaml.safe_dump(TINY))
    _run(["git", "init", "-q"], repo)
    _run([str(BIN / "dvc"), "init", "-q"], repo)
    _run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A"], repo)
    _run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init"], repo)
    _run([str(BIN / "dvc"), "repro"], repo)
    return repo


def _client(repo: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")


def test_mlflow_has_parent_and_child_runs_with_histories(repo):
    client = _client(repo)
    exp = client.get_experiment_by_name("whywarmup")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = {r.data.tags["whywarmup.method"]: r for r in runs if r.data.tags.get("whywarmup.role") == "method"}
    assert set(parents) == set(TINY["methods"])
    children = [r for r in runs if r.data.tags.get("whywarmup.role") == "grid_point"]
    assert len(children) == 2 + 4 + 2 + 2 + 1 + 2
    for child in children:
        assert child.info.status == "FINISHED"
        method = child.data.tags["whywarmup.method"]
        assert child.data.tags["mlflow.parentRunId"] == parents[method].info.run_id
        m = child.data.metrics
        assert {"lambda_0", "diverged", "failed", "warmup_steps_used"} <= set(m)
        assert m["lambda_0"] > 0
        steps = [p.step for p in client.get_metric_history(child.info.run_id, "sharpness")]
        if m["diverged"]:
            assert steps[0] == 0
        elif method == "persistent":  # also measured at its re-estimates (every 5 steps) until eta_trgt
            assert {0, 10, 20, 30} <= set(steps) and "local_critical_lr" in m
        else:
            assert steps == [0, 10, 20, 30]
            assert {"final_test_accuracy", "final_train_loss"} <= set(m)
            lr = client.get_metric_history(child.info.run_id, "lr")
            assert len(lr) == 30
        artifacts = [a.path for a in client.list_artifacts(child.info.run_id, "trajectory")]
        assert artifacts == [f"trajectory/{child.data.tags['whywarmup.run_key']}.parquet"]
    # warmup makes c = 64 trainable where constant 64/lambda_0 fails (at chance level: the catapult kills the network)
    by_key = {
        (
            c.data.tags["whywarmup.method"],
            c.data.params["method.eta_trgt"],
            c.data.params.get("method.warmup_steps"),
        ): c.data.metrics
        for c in children
    }
    assert by_key[("none", "64.0", None)]["failed"] == 1
    assert by_key[("linear", "64.0", "10")]["failed"] == 0
    analysis = [r for r in runs if r.data.tags.get("whywarmup.role") == "analysis"]
    assert len(analysis) == 1
    assert "report/index.html" in [a.path for a in client.list_artifacts(analysis[0].info.run_id, "report")]


def test_mlflow_runs_say_what_they_are(repo):
    """Every child run is named after its grid point (unique, as run_names gives it), every training run has the
    prepared file's splits as MLflow datasets and the repository's commit, each parent its method's description, and
    the analysis run one tag per claim verdict, as metrics.json has them, with claims.csv beside the report."""
    from whywarmup.config import load_config
    from whywarmup.run_names import run_names

    client = _client(repo)
    exp = client.get_experiment_by_name("whywarmup")
    assert "params.yaml" in exp.tags["mlflow.note.content"] and "whywarmup ui" in exp.tags["mlflow.note.content"]
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    head = _run(["git", "rev-parse", "HEAD"], repo).stdout.strip()
    cfg = load_config(repo / "params.yaml")
    for method in cfg.methods:
        children = [
            r for r in runs if r.data.tags.get("whywarmup.method") == method and "mlflow.parentRunId" in r.data.tags
        ]
        names = {r.data.tags["whywarmup.run_key"]: r.info.run_name for r in children}
        assert names == run_names(cfg.methods[method], cfg.runs(method))
        assert len(set(names.values())) == len(names)
        (parent,) = [
            r
            for r in runs
            if r.data.tags.get("whywarmup.method") == method and r.data.tags.get("whywarmup.role") == "method"
        ]
        assert parent.data.tags["mlflow.note.content"].startswith(f"**{method}** (kind `{cfg.methods[method].kind}`)")
        for run in [parent, *children]:
            datasets = [(d.dataset.name, [t.value for t in d.tags]) for d in run.inputs.dataset_inputs]
            assert datasets == [
                ("digits/train", ["training"]),
                ("digits/validation", ["validation"]),
                ("digits/test", ["evaluation"]),
            ]
    assert {r.data.tags["mlflow.source.git.commit"] for r in runs} == {head}
    assert {r.data.tags["whywarmup.git.uncommitted_code"] for r in runs} == {"false"}
    (analysis,) = [r for r in runs if r.data.tags.get("whywarmup.role") == "analysis"]
    verdicts = {
        name: claim["verdict"] for name, claim in json.loads((repo / "metrics.json").read_text())["claims"].items()
    }
    assert {k: v for k, v in analysis.data.tags.items() if k.startswith("claims.")} == {
        f"claims.{c}": v for c, v in verdicts.items()
    }
    assert "| C1 | " in analysis.data.tags["mlflow.note.content"]
    assert {"claims.csv", "metrics.json", "report", "analysis"} <= {
        a.path for a in client.list_artifacts(analysis.info.run_id)
    }
    found = client.search_runs([exp.experiment_id], filter_string=f"tags.`claims.C1` = '{verdicts['C1']}'")
    assert [r.info.run_id for r in found] == [analysis.info.run_id]


def test_mlflow_ui_in_headless_chromium(repo, project_root):
    """The real MLflow UI, started by `whywarmup ui`, in headless chromium: the address it prints opens on the
    training runs (not MLflow 3's GenAI overview); expanding a method's parent shows its children by their readable
    names with their datasets in the Dataset column; a search on a verdict tag finds the analysis run; a child's
    page draws its per-step sharpness; the sidebar's "Model training" switch, clicked once, is remembered by the
    browser (README's one line). Screenshots land in test-artifacts/."""
    import threading
    import urllib.parse
    import urllib.request

    from playwright.sync_api import sync_playwright

    from whywarmup.config import load_config
    from whywarmup.run_names import run_names

    chromium = _chromium()
    client = _client(repo)
    exp = client.get_experiment_by_name("whywarmup")
    cfg = load_config(repo / "params.yaml")
    expected = sorted(run_names(cfg.methods["linear"], cfg.runs("linear")).values())
    child = client.search_runs([exp.experiment_id], filter_string=f"attributes.run_name = '{expected[0]}'")[0]
    verdict = json.loads((repo / "metrics.json").read_text())["claims"]["C1"]["verdict"]
    port = _free_port()
    ui = subprocess.Popen(
        [str(BIN / "whywarmup"), "ui", "--port", str(port)],
        cwd=repo, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    out = project_root / "test-artifacts"
    out.mkdir(exist_ok=True)
    try:
        printed: list[str] = []  # "starting ...", MLflow's own lines, then the address once the UI is up

        up = threading.Event()

        def read_all() -> None:  # to the end, so that the UI never blocks on a full pipe
            for line in ui.stdout:
                printed.append(line)
                if line.startswith("the training runs: "):
                    up.set()

        threading.Thread(target=read_all, daemon=True).start()
        assert up.wait(timeout=300), f"whywarmup ui printed no address within 5 minutes: {printed}"
        address = next(line for line in printed if line.startswith("the training runs: ")).rsplit(" ", 1)[-1].strip()
        base = f"http://127.0.0.1:{port}"
        assert address == f"{base}/#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning", printed
        urllib.request.urlopen(f"{base}/health", timeout=5).close()  # it is up when it says so
        names_in_table = "[role=gridcell][col-id='attributes.`Run Name`'] a"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
            try:
                page = browser.new_context(viewport={"width": 1600, "height": 1000}).new_page()
                page.goto(address)
                page.get_by_role("link", name="analysis", exact=True).wait_for(timeout=120_000)
                parents = page.locator(names_in_table).all_inner_texts()
                parent_cell = page.locator("[role=gridcell]", has=page.get_by_role("link", name="linear", exact=True))
                parent_cell.locator("button").first.click()  # expand the parent
                page.get_by_role("link", name=expected[-1], exact=True).wait_for(timeout=30_000)
                shown = page.locator(names_in_table).all_inner_texts()
                datasets = page.locator("[role=gridcell][col-id='attributes.`Dataset`']").all_inner_texts()
                page.screenshot(path=str(out / "mlflow_ui_runs.png"))

                query = urllib.parse.quote(f"tags.\"claims.C1\" = '{verdict}'")
                page.goto(f"{address}&searchFilter={query}")
                page.get_by_role("link", name="analysis", exact=True).wait_for(timeout=120_000)
                page.get_by_text("1 matching runs").or_(page.get_by_text("1 matching run")).first.wait_for(
                    timeout=30_000
                )
                by_verdict = page.locator(names_in_table).all_inner_texts()

                page.set_viewport_size({"width": 1600, "height": 1400})  # the chart grid renders only what is seen
                page.goto(
                    f"{base}/#/experiments/{exp.experiment_id}/runs/{child.info.run_id}/model-metrics?workflowType=machine_learning"
                )
                page.get_by_placeholder("Search metric charts").fill("sharpness")
                # the chart card titled exactly `sharpness` (of the 7 metrics the search keeps), once it has drawn
                cards = page.locator("[data-testid='experiment-view-compare-runs-card']")
                chart = cards.filter(has=page.get_by_text("sharpness", exact=True))
                chart.locator("svg.main-svg").first.wait_for(timeout=60_000)
                legend = chart.inner_text()
                points = chart.locator("path.point, g.points path").count()
                page.screenshot(path=str(out / "mlflow_ui_sharpness.png"))

                # a new user on the experiment's own page: the sidebar switch, once, and the browser remembers it
                context = browser.new_context(viewport={"width": 1600, "height": 1000})
                fresh = context.new_page()
                fresh.goto(f"{base}/#/experiments/{exp.experiment_id}")
                switch = fresh.locator("div[role=button]", has_text="Model training").first
                switch.wait_for(timeout=60_000)
                switch.dispatch_event("click")
                fresh.wait_for_url("**/runs?**", timeout=30_000)
                remembered = context.new_page()
                remembered.goto(f"{base}/#/experiments/{exp.experiment_id}")
                remembered.get_by_role("link", name="analysis", exact=True).wait_for(timeout=120_000)
            finally:
                browser.close()
    finally:
        ui.terminate()
        ui.wait(timeout=30)
    assert set(cfg.methods) | {"analysis"} <= set(parents)
    assert not any(name in parents for name in expected)  # children are under their parent until expanded
    assert set(expected) <= set(shown) and len(expected) == 4
    train = [d for d in datasets if "digits/train (" in d]
    assert len(train) >= len(cfg.methods) + len(expected) and all("Training" in d for d in train), datasets
    assert by_verdict == ["analysis"]
    assert f"{expected[0]} (sharpness)" in legend and points >= 4, legend
    assert (out / "mlflow_ui_runs.png").stat().st_size > 10_000
    assert (out / "mlflow_ui_sharpness.png").stat().st_size > 10_000


def test_outputs_metrics_and_plots(repo):
    for f in [
        "reports/index.html",
        "reports/report.md",
        "reports/figures/trajectories.png",
        "reports/figures/phase_diagrams.png",
        "reports/figures/max_trainable_lr.png",
        "analysis/phase_diagram.csv",
        "runs/none/summary.csv",
        "runs/linear/summary.csv",
    ]:
        assert (repo / f).exists(), f
    html = (repo / "reports/index.html").read_text()
    figures = ["trajectories", "phase_diagrams", "max_trainable_lr", "gi_adam_vs_adam", "catapult_init_steps"]
    figures.append("persistent_vs_linear")
    assert all((repo / f"reports/figures/{f}.png").stat().st_size > 1000 for f in figures)
    # each figure once in full and once small beside each claim that rests on it (C1-C7 all have one here)
    assert html.count("data:image/png;base64,") == len(figures) + 7 == len(figures) + html.count("class='thumb'")
    assert "http" not in html.replace("http://127.0.0.1", "")
    metrics = json.loads((repo / "metrics.json").read_text())
    assert metrics["methods"]["none"]["max_trainable_c"] == {"T_wrm=1": 8.0}  # c: the none grid is relative
    assert metrics["methods"]["none"]["max_trainable_is_lower_bound"] == {"T_wrm=1": False}
    # eta_c lambda_0 across each method's grid, recomputed from the per-run summaries.
    import pandas as pd

    methods = pd.read_csv(repo / "analysis/methods.csv").set_index("method")
    assert set(methods.index) == set(TINY["methods"])
    # the v_bias_correction grid splits gi_adam in two (one row, one phase-diagram panel each), never averaged
    gi = methods.loc[["gi_adam"]]
    assert sorted(gi["variant"]) == ["optimizer.v_bias_correction=False", "optimizer.v_bias_correction=True"]
    assert (gi["runs"] == 1).all() and (gi["optimizer"] == "gi_adam").all()
    assert pd.read_csv(repo / "runs/gi_adam/summary.csv")["optimizer.v_bias_correction"].tolist() == [True, False]
    cat = pd.read_csv(repo / "runs/catapult_init/summary.csv").iloc[0]
    assert cat["warmup_steps_used"] + cat["warmup_steps_saved"] == 5
    assert cat["warmup_steps_used"] == max(1, math.ceil(5 * (1 - cat["critical_lr"] / cat["eta_trgt"])))
    persistent = pd.read_parquet(next((repo / "runs/persistent").glob("*.parquet")))
    assert persistent["local_critical_lr"].notna().sum() >= 1
    # the headline keeps optimizers and units apart: c for SGD, absolute eta_trgt for the Adam family
    assert "Methods compared" in html
    assert {"sgd_sp", "adam_sp", "gi_adam_sp"} <= set(metrics["headline"])
    assert metrics["headline"]["sgd_sp"]["eta_unit"] == "c" and metrics["headline"]["adam_sp"]["eta_unit"] == "absolute"
    assert "largest_trainable_c_with_warmup" in metrics["headline"]["sgd_sp"]
    assert "largest_trainable_eta_trgt_without_warmup" in metrics["headline"]["adam_sp"]
    # a verdict per claim in metrics.json and at the top of the report
    assert set(metrics["claims"]) == {f"C{i}" for i in range(1, 8)}
    assert all(c["verdict"] in ("SUPPORTED", "CONTRADICTED", "INCONCLUSIVE") for c in metrics["claims"].values())
    assert html.index("checked on these runs") < html.index("Largest trainable target")
    assert metrics["claims"]["C2"]["verdict"] == "INCONCLUSIVE"  # the tiny config has no muP run
    critical = pd.read_csv(repo / "analysis/critical_lr.csv").set_index("method")
    runs = pd.read_csv(repo / "runs/linear/summary.csv")
    ratio = runs["critical_lr"] * runs["lambda_0"] / 2  # GD: eta_c over the limit 2 / lambda_0
    assert critical.loc["linear", "runs"] == 4 and critical.loc["linear", "threshold_constant"] == pytest.approx(2)
    assert critical.loc["linear", "critical_lr_over_threshold_max"] == pytest.approx(ratio.max())
    assert critical.loc["linear", "critical_lr_over_threshold_median"] == pytest.approx(ratio.median())
    assert ratio.min() > 0.5  # a catapult needs eta well above 1 / lambda_0 (2 / lambda_0 on a quadratic)
    # Adam's eta_c is compared with Adam's own limit 38 / (preconditioned sharpness), not with 2 / lambda_0
    adam = pd.read_csv(repo / "analysis/runs.csv").query("method == 'adam'").iloc[0]
    assert critical.loc["adam", "threshold_constant"] == pytest.approx(38)
    assert critical.loc["adam", "critical_lr_over_threshold_median"] == pytest.approx(
        adam["critical_lr"] * adam["initial_preconditioned_sharpness"] / 38
    )
    assert "against each optimizer" in html
    shown = _run([str(BIN / "dvc"), "metrics", "show", "--json"], repo).stdout
    assert "largest_trainable_c_with_warmup" in shown
    exps = json.loads(_run([str(BIN / "dvc"), "exp", "show", "--json"], repo).stdout)
    listed = exps[0]["data"]["metrics"]["metrics.json"]["data"]["claims"]
    assert {c: v["verdict"] for c, v in listed.items()} == {c: v["verdict"] for c, v in metrics["claims"].items()}
    catapults = pd.read_csv(repo / "analysis/catapults.csv")
    assert {"sharpness_before", "sharpness_after", "loss_peak_over_min"} <= set(catapults.columns)
    pairs = pd.read_csv(repo / "analysis/catapult_init_vs_linear.csv")
    assert len(pairs) == 2 and (pairs["T_wrm"] == 5).all()  # catapult_init (T 5) meets linear's T 5 cells
    assert (pairs["steps_saved"] == pairs["warmup_steps_used_control"] - pairs["warmup_steps_used_subject"]).all()
    assert set(pairs["method_subject"]) == {"catapult_init"} and set(pairs["method_control"]) == {"linear"}
    assert {"robust_min_c", "robust_max_c", "robust_min_eta_trgt", "robust_max_eta_trgt"} <= set(methods.columns)
    # a figure of every run says so instead of listing every run key (each run named once per figure)
    md = (repo / "reports/report.md").read_text()
    assert md.count("Runs shown: all 13 runs") == 2  # phase diagrams and largest trainable
    # the configuration block shows what params.yaml sets, not every default (e.g. no executor, no unset keys)
    config_block = html[html.index("<h2>Configuration</h2>") :]
    assert "eval_every: 10" in config_block and "executor" not in config_block
    assert "divergence_factor" not in config_block
    _run([str(BIN / "dvc"), "plots", "show", "-o", "dvc_plots"], repo)
    assert (repo / "dvc_plots" / "index.html").exists()


def _digests(repo: Path) -> dict[str, str]:
    import hashlib

    files = [repo / "dvc.lock", repo / "metrics.json"]
    for folder in ("data/prepared", "runs", "analysis", "reports"):
        files += sorted(p for p in (repo / folder).rglob("*") if p.is_file())
    return {str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_forced_repro_leaves_every_dvc_output_byte_identical(repo):
    """What varies between two runs of the same params (MLflow ids, wall time) lives outside DVC's outputs: a
    `dvc repro --force` retrains everything and dvc.lock, metrics.json and every tracked file stay the same."""
    before = _digests(repo)
    volatile = (repo / ".whywarmup/mlflow_runs/linear.csv").read_text()
    assert "mlflow_run_id" not in (repo / "runs/linear/summary.csv").read_text()
    _run([str(BIN / "dvc"), "repro", "--force"], repo)
    after = _digests(repo)
    assert after == before, sorted(k for k in before if before[k] != after.get(k))
    assert (repo / ".whywarmup/mlflow_runs/linear.csv").read_text() != volatile  # new MLflow runs, new ids


def test_second_repro_is_a_noop_and_edits_rerun_only_their_method(repo):
    out = _run([str(BIN / "dvc"), "repro"], repo).stdout
    assert "Running stage" not in out
    params = yaml.safe_load((repo / "params.yaml").read_text())
    # still meets catapult_init (T_wrm 5): the report keeps its C5 figure
    params["methods"]["linear"]["grid"]["warmup_steps"] = [5]
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    out = _run([str(BIN / "dvc"), "repro"], repo).stdout
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    assert ran == {"train@linear", "analyze", "report"}


def test_mlflow_run_entry_point(repo):
    out = _run([str(BIN / "mlflow"), "run", ".", "-e", "validate", "--env-manager", "local"], repo)
    assert "valid" in out.stdout + out.stderr


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str, body: dict | None = None, timeout: float = 5.0) -> dict:
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def test_mlflow_ui_in_the_repo_root_serves_the_runs(repo):
    """`mlflow ui` with its defaults (only the port chosen) finds the store, the runs and their artifacts."""
    import time

    port = _free_port()
    base = f"http://127.0.0.1:{port}/api/2.0/mlflow"
    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "ui", "--port", str(port)],
        cwd=repo,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                exp = _get_json(f"{base}/experiments/get-by-name?experiment_name=whywarmup")["experiment"]
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "mlflow ui did not come up"
                time.sleep(1)
        runs = _get_json(f"{base}/runs/search", {"experiment_ids": [exp["experiment_id"]], "max_results": 500})
        children = [
            r for r in runs["runs"] if {"key": "whywarmup.role", "value": "grid_point"} in r["data"].get("tags", [])
        ]
        assert len(children) >= 6
        run_id = children[0]["info"]["run_id"]
        history = _get_json(f"{base}/metrics/get-history?run_id={run_id}&metric_key=sharpness")
        assert history["metrics"][0]["step"] == 0
        files = _get_json(f"{base}/artifacts/list?run_id={run_id}&path=trajectory")["files"]
        assert files[0]["path"].endswith(".parquet")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_dvc_exp_run_in_a_temp_workspace_logs_to_the_project_store(repo):
    client = _client(repo)
    exp = client.get_experiment_by_name("whywarmup")
    before = len(client.search_runs([exp.experiment_id], max_results=1000))
    _run([str(BIN / "dvc"), "exp", "run", "--temp", "-S", "methods.none.grid.eta_trgt=[2.0]"], repo)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    new = [r for r in runs[: len(runs) - before] if r.data.tags.get("whywarmup.role") == "grid_point"]
    assert [r.data.params["method.eta_trgt"] for r in new] == ["2.0"]
    assert not list((repo / ".dvc").rglob("mlflow.db"))


def test_queued_experiments_run_two_at_a_time_into_the_project_store(repo):
    """`dvc exp run --queue` twice, then `dvc queue start -j 2`: both experiments log to the workspace's store."""
    import time

    client = _client(repo)
    exp = client.get_experiment_by_name("whywarmup")
    before = {r.info.run_id for r in client.search_runs([exp.experiment_id], max_results=1000)}
    dvc = str(BIN / "dvc")
    for eta in ("3.0", "5.0"):
        _run([dvc, "exp", "run", "--queue", "-S", f"methods.none.grid.eta_trgt=[{eta}]"], repo)
    _run([dvc, "queue", "start", "-j", "2"], repo)
    try:
        deadline = time.monotonic() + 600
        while True:
            status = _run([dvc, "queue", "status"], repo).stdout
            if "Queued" not in status and "Running" not in status:
                break
            assert time.monotonic() < deadline, status
            time.sleep(2)
    finally:
        subprocess.run([dvc, "queue", "stop"], cwd=repo, env=_env(), capture_output=True, timeout=120)
    assert status.count("Success") >= 2, status
    runs = [r for r in client.search_runs([exp.experiment_id], max_results=1000) if r.info.run_id not in before]
    new = sorted(r.data.params["method.eta_trgt"] for r in runs if r.data.tags.get("whywarmup.role") == "grid_point")
    assert new == ["3.0", "5.0"]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert not list((repo / ".dvc").rglob("mlflow.db"))


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str:
    """Debian's chromium (installed by .ci/run); the test skips without it, or fails where CI requires it."""
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        if os.environ.get("WHYWARMUP_REQUIRE_BROWSER"):
            pytest.fail("WHYWARMUP_REQUIRE_BROWSER is set but chromium is not installed (apt-get install chromium)")
        pytest.skip("Debian's chromium is not installed: `apt-get install chromium` (.ci/run installs it)")
    return chromium


def test_report_renders_in_headless_chromium(repo, project_root):
    """Open reports/index.html in Debian's chromium (installed by .ci/run): every figure decodes, the claims table
    is at the top with a verdict per claim; a full-page screenshot lands in test-artifacts/."""
    chromium = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto((repo / "reports" / "index.html").as_uri(), wait_until="load")
            images = page.eval_on_selector_all(
                "img.figure",
                "imgs => imgs.map(i => ({alt: i.alt, done: i.complete, w: i.naturalWidth, h: i.naturalHeight}))",
            )
            thumbs = page.eval_on_selector_all(
                "#claims img", "imgs => imgs.map(i => ({done: i.complete, w: i.naturalWidth, shown: i.width}))"
            )
            # the scorecard fits the page at 1400 px: nothing sticks out to the right or scrolls sideways
            fit = page.eval_on_selector(
                "#claims table",
                "t => ({right: t.getBoundingClientRect().right, page: document.documentElement.clientWidth, "
                "scroll: document.documentElement.scrollWidth, cells: Array.from(t.querySelectorAll('td')).map("
                "td => td.scrollWidth - td.clientWidth).reduce((a, b) => Math.max(a, b), 0)})",
            )
            badges = page.eval_on_selector_all(
                "#claims .verdict", "bs => bs.map(b => [b.innerText, getComputedStyle(b).backgroundColor])"
            )
            rows = page.eval_on_selector_all(
                "#claims tbody tr", "trs => trs.map(tr => Array.from(tr.cells).map(td => td.innerText))"
            )
            first_h2 = page.inner_text("h2")
            out = project_root / "test-artifacts"
            out.mkdir(exist_ok=True)
            page.screenshot(path=str(out / "report.png"), full_page=True)
        finally:
            browser.close()
    assert len(images) == 6, images
    for img in images:
        assert img["done"] and img["w"] > 300 and img["h"] > 100, img  # decoded, not a broken-image icon
    assert first_h2 == "The paper's claims, checked on these runs"
    assert [r[0] for r in rows] == [f"C{i}" for i in range(1, 8)]
    assert all(r[1].split("\n")[0] in ("SUPPORTED", "CONTRADICTED", "INCONCLUSIVE") for r in rows)
    # per-seed verdicts under each verdict; the statistic of metrics.json in words, one line per part
    metrics = json.loads((repo / "metrics.json").read_text())["claims"]
    assert all("per seed" in r[1] for r in rows), rows
    assert all(part in r[3] for r in rows for part in metrics[r[0]]["statistic"].split("; ")), rows
    assert sum("seeds, sign test p" in r[3] for r in rows) >= 3, rows
    assert fit["right"] <= fit["page"] and fit["scroll"] <= fit["page"] and fit["cells"] <= 1, fit
    colours = {text: colour for text, colour in badges}
    assert len(set(colours.values())) == len(colours), colours  # one colour per verdict
    assert len(thumbs) == 7 and all(t["done"] and t["w"] == 280 and 0 < t["shown"] <= 160 for t in thumbs), thumbs
    assert (project_root / "test-artifacts" / "report.png").stat().st_size > 10_000
