"""Report stage: figures (PNG), reports/report.md and a self-contained reports/index.html.

Also logs the report as artifacts of an `analysis` run in the MLflow experiment.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from .analysis import read_trajectory  # noqa: E402
from .claims import CONTRADICTED, INCONCLUSIVE, SUPPORTED  # noqa: E402
from .config import Config, config_axes  # noqa: E402
from .derived import UNIT_COLUMNS, critical_start_pairs, is_language_model, with_role  # noqa: E402
from .evidence import MIN_SEEDS  # noqa: E402
from .files import atomic_write_bytes, atomic_write_text  # noqa: E402
from .layout import ANALYSIS_DIR, METRICS_FILE, REPORTS_DIR  # noqa: E402
from .methods import ADAPTIVE_WARMUP, FIXED_WARMUP, GRADIENT_INIT, NO_WARMUP  # noqa: E402
from .optim import CRITICAL_CONSTANT  # noqa: E402
from .tracking import TAG_ROLE, redact  # noqa: E402


@dataclass
class Figure:
    filename: str
    title: str
    caption: str
    run_keys: list[str]  # the runs shown; the report names them by run key, which reruns do not change


RUNS_LINE = "Runs shown (in MLflow: filter tags.whywarmup.run_key = '<key>')"


def _runs_line(keys: list[str], every: set[str]) -> str:
    """The runs a figure shows, each named once; a figure of every run says so instead of listing them all."""
    if set(keys) == every:
        return f"Runs shown: all {len(every)} runs (analysis/runs.csv lists them with their run keys)."
    return f"{RUNS_LINE}: {', '.join(dict.fromkeys(keys))}"


def _eta_label(runs: pd.DataFrame) -> str:
    relative = (runs["eta_relative_to"] == "lambda_0").all()
    return "c = eta_trgt * lambda_0" if relative else "eta_trgt"


def _read_table(path: Path) -> pd.DataFrame:
    """An analysis table; `variant` "" (no other grid axis varies) stays "" instead of NaN."""
    table = pd.read_csv(path)
    if "variant" in table:
        table["variant"] = table["variant"].fillna("").astype(str)
    return table


def _panel_title(method: str, variant: str) -> str:
    return f"{method} ({variant})" if variant else method


def phase_diagram_figure(phase: pd.DataFrame, runs: pd.DataFrame, path: Path) -> Figure:
    """One panel per method and variant (the values of its other grid axes): never two axis values in one cell."""
    methods = list(dict.fromkeys(zip(runs["method"], runs["variant"])))
    # language models: the test loss (nats per token; lower is better), as the paper's Fig. 4; others: accuracy
    lm = bool(len(phase)) and bool(is_language_model(phase).all())
    metric = "final_test_loss" if lm else "final_test_accuracy"
    trained = phase.loc[phase["cell"].isin(["trained", "partial"]), metric]
    if lm:
        vmin, vmax = (float(trained.min()), float(trained.max()) + 1e-9) if len(trained) else (0.0, 1.0)
        shown = "Final test loss (nats per token)"
    else:
        vmin, vmax = (float(trained.min()) - 0.02 if len(trained) else 0.0), 1.0
        shown = "Final test accuracy (%)"
    ncols = min(4, len(methods))
    nrows = math.ceil(len(methods) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(4.2 * ncols + 1, 3.4 * nrows + 0.6), squeeze=False, layout="constrained"
    )
    for ax in axes.flat[len(methods) :]:
        ax.set_visible(False)
    for ax, (method, variant) in zip(axes.flat, methods):
        cells = phase[(phase["method"] == method) & (phase["variant"] == variant)]
        etas = sorted(cells["eta_trgt_setting"].unique())
        twrms = sorted(cells["T_wrm"].unique())
        grid = np.full((len(twrms), len(etas)), np.nan)
        for c in cells.itertuples():
            grid[twrms.index(c.T_wrm), etas.index(c.eta_trgt_setting)] = getattr(c, metric)
        cmap = "viridis_r" if lm else "viridis"  # the better end (low loss, high accuracy) is yellow either way
        im = ax.imshow(grid, origin="lower", aspect="auto", vmin=vmin, vmax=vmax, cmap=cmap)
        for c in cells.itertuples():
            x, y = etas.index(c.eta_trgt_setting), twrms.index(c.T_wrm)
            if c.cell in ("trained", "partial"):
                value = getattr(c, metric)
                dark = value > (vmin + vmax) / 2 if lm else value < (vmin + vmax) / 2
                text = f"{value:.2f}" if lm else f"{100 * value:.1f}"
                ax.text(x, y, text, ha="center", va="center", fontsize=7, color="white" if dark else "black")
            if c.cell != "trained":
                # X: seeds that diverged, F: seeds that failed to learn without diverging
                counts = (("X", int(c.diverged)), ("F", int(c.failed - c.diverged)))
                marks = [f"{m} {k}/{int(c.seeds)}" if c.seeds > 1 else m for m, k in counts if k]
                ax.text(
                    x,
                    y - (0.3 if c.cell == "partial" else 0),
                    "\n".join(marks),
                    ha="center",
                    va="center",
                    color="red",
                    fontsize=7 if c.cell == "partial" else 10,
                    fontweight="bold",
                )
        ax.set_xticks(range(len(etas)), [f"{e:g}" for e in etas], rotation=45)
        ax.set_yticks(range(len(twrms)), [str(t) for t in twrms])
        ax.set_xlabel(_eta_label(runs[runs["method"] == method]))
        ax.set_ylabel("T_wrm (0: persistent catapult)" if 0 in twrms else "T_wrm")
        ax.set_title(_panel_title(method, variant))
    fig.colorbar(im, ax=axes.ravel().tolist(), label=shown.split(" (")[0].lower(), shrink=0.6)
    seeds = int(phase["seeds"].max()) if len(phase) else 0
    fig.suptitle(
        f"{shown} per grid cell, mean over the seeds that trained (up to {seeds}); "
        "X k/n = k of n seeds diverged, F k/n = k failed to learn without diverging"
    )
    rule = (
        "final training loss not below the unigram entropy of the training tokens"
        if lm
        else "final training accuracy at chance or more than 10 points below the best cell of the method"
    )
    return _save(
        fig,
        path,
        "Phase diagrams",
        f"{shown.split(' (')[0]} per (eta_trgt, T_wrm), mean over the seeds that trained; X k/n: k of the n seeds "
        f"diverged, F k/n: k failed to learn without diverging ({rule}, docs/science.md section 7); a cell where "
        "some seeds trained shows their mean and the marks.",
        runs["run_key"].tolist(),
    )


def max_trainable_figure(trainable: pd.DataFrame, runs: pd.DataFrame, path: Path) -> Figure:
    """One panel per eta unit (c for the SGD grids, absolute eta_trgt for the Adam grids): never maxed together.
    A value at the top of the grid is a lower bound, drawn as an upward triangle."""
    groups = list(trainable.groupby("eta_unit", sort=True))
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 3.8), squeeze=False)
    for ax, (unit, group) in zip(axes[0], groups):
        column = f"max_trainable_{UNIT_COLUMNS[unit]}"
        for i, (method, variant) in enumerate(dict.fromkeys(zip(group["method"], group["variant"]))):
            rows = group[(group["method"] == method) & (group["variant"] == variant)]
            ax.plot(rows["T_wrm"], rows[column], "-", color=f"C{i}", label=_panel_title(method, variant))
            bound = rows["max_trainable_is_lower_bound"].astype(bool)
            ax.plot(rows.loc[~bound, "T_wrm"], rows.loc[~bound, column], "o", color=f"C{i}")
            ax.plot(rows.loc[bound, "T_wrm"], rows.loc[bound, column], "^", color=f"C{i}", ms=8)
        ax.set_xscale("symlog", linthresh=1)
        ax.set_yscale("log", base=2)
        ax.set_xlabel("T_wrm (0: persistent catapult)")
        ax.set_ylabel("largest trainable " + ("c = eta_trgt * lambda_0" if unit == "c" else "eta_trgt"))
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return _save(
        fig,
        path,
        "Largest trainable eta_trgt vs T_wrm",
        "For each method and warmup length, the largest target learning rate at which no seed failed "
        "(docs/science.md claim C1: it grows with T_wrm). A triangle is the top of the grid: the method trains "
        "there, so the true limit is at least that (a lower bound). c and absolute learning rates get separate panels.",
        runs["run_key"].tolist(),
    )


def _save(fig, path: Path, title: str, caption: str, run_keys: list[str]) -> Figure:
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, png.getvalue())
    plt.close(fig)
    return Figure(path.name, title, caption, run_keys)


def _plot_runs(root: Path, chosen: pd.DataFrame, ax_lr, ax_sharp, label, ax_loss=None, ax_ratio=None) -> None:
    """lr (and loss) per step, measured sharpness with the stability threshold dashed: one colour per (method,
    T_wrm), one line per seed (labelled once, with the seed count). `ax_ratio`: each curvature over its own threshold,
    lr x sharpness / c at the Lanczos steps (markers) and lr x critical sharpness / 2 at every step (line)."""
    for i, (_, group) in enumerate(chosen.groupby(["method", "T_wrm"], sort=False)):
        color, name = f"C{i}", label(group.iloc[0]) + (f" ({len(group)} seeds)" if len(group) > 1 else "")
        for j, row in enumerate(group.itertuples()):
            traj = read_trajectory(root, row.method, row.run_key)
            tag = name if j == 0 else None
            ax_lr.plot(traj["step"], traj["lr"], color=color, label=tag, lw=1.2, alpha=0.8)
            if ax_loss is not None:
                ax_loss.plot(traj["step"], traj["loss"], color=color, label=tag, lw=1.2, alpha=0.8)
            # the sharpness the run's stability threshold applies to: Adam's preconditioned one where measured
            column = "preconditioned_sharpness" if traj["preconditioned_sharpness"].notna().any() else "sharpness"
            measured = traj.dropna(subset=[column])
            ax_sharp.plot(measured["step"], measured[column], color=color, label=tag, lw=1.2, alpha=0.8)
            ax_sharp.plot(traj["step"], traj["stability_threshold"], color=color, ls="--", lw=0.8)
            if ax_ratio is not None:
                constant = (traj["lr"] * traj["stability_threshold"]).median()
                ax_ratio.plot(measured["step"], measured["lr_times_sharpness"] / constant, "o", color=color, ms=3)
                critical = (
                    traj.dropna(subset=["lr_times_critical_sharpness"]) if "critical_sharpness" in traj else traj[:0]
                )
                ratio = critical["lr_times_critical_sharpness"] / CRITICAL_CONSTANT
                ax_ratio.plot(critical["step"], ratio, color=color, lw=0.8, alpha=0.7)


def _step_axes(axes) -> None:
    for ax in axes:
        ax.set_xlabel("step")
        ax.set_xscale("symlog", linthresh=10)
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)


def trajectory_figure(root: Path, chosen: pd.DataFrame, path: Path) -> Figure:
    """One row per panel (method, e.g. SP and muP): lr, loss and sharpness with its stability threshold."""
    panels = list(dict.fromkeys(chosen["panel"]))
    fig, grid = plt.subplots(len(panels), 4, figsize=(18, 3.8 * len(panels)), squeeze=False)
    titles = []
    for axes, panel in zip(grid, panels):
        runs = chosen[chosen["panel"] == panel]
        _plot_runs(
            root,
            runs,
            axes[0],
            axes[2],
            lambda row: f"{row.method} T_wrm={row.T_wrm}",
            ax_loss=axes[1],
            ax_ratio=axes[3],
        )
        param = runs["parametrization"].iloc[-1] if "parametrization" in runs else "sp"
        eta = runs["eta_trgt_setting"].iloc[0]
        variant = runs["variant"].iloc[-1] if "variant" in runs else ""
        title = f"{panel} ({param}{', ' + variant if variant else ''}): {_eta_label(runs)} = {eta:g}"
        titles.append(title)
        axes[0].set_title(title, fontsize=10, loc="left")
        axes[0].set_ylabel("learning rate")
        axes[1].set_ylabel("training loss")
        axes[1].set_yscale("log")
        axes[2].set_ylabel("sharpness, preconditioned for Adam\n(dashed: stability threshold)")
        axes[2].set_yscale("log")
        axes[3].set_ylabel("over its threshold: lr x sharpness / c (dots),\nlr x critical sharpness / 2 (line)")
        axes[3].axhline(1.0, color="k", ls="--", lw=0.8)
        axes[3].set_yscale("log")
        _step_axes(axes)
    fig.suptitle("Training trajectories for several warmup lengths")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return _save(
        fig,
        path,
        "Trajectories (Fig. 1 style)",
        "Learning rate, loss and sharpness (solid; for the Adam family the preconditioned sharpness) with the "
        "stability threshold (dashed: 2/eta_t for GD, 38/eta_t for Adam with beta1 = 0.9) for "
        "several warmup lengths, every seed overlaid; the last panel puts each curvature over its own threshold: "
        "lr x sharpness / c at the Lanczos steps (dots) and lr x critical sharpness / 2 at every step where measured "
        "(line: above 1 the update raises the loss on its batch; docs/science.md section 10). One row per "
        "parametrization: " + "; ".join(titles) + ". Each "
        "row's eta_trgt is the smallest one at which the no-warmup runs fail while some warmup trains every seed "
        "(where warmup makes the difference); a row without such a value shows the largest eta_trgt the longest "
        "warmup trains.",
        chosen["run_key"].tolist(),
    )


def gi_adam_figure(root: Path, runs: pd.DataFrame, path: Path) -> Figure | None:
    """Preconditioned sharpness of Adam and GI-Adam without warmup at the smallest common eta_trgt, every seed, on a
    step axis that resolves the first updates (docs/science.md C6)."""
    adam = with_role(runs, NO_WARMUP, FIXED_WARMUP)
    adam = adam[(adam["optimizer"] == "adam") & (adam["T_wrm"] == 1)]
    gi = with_role(runs, GRADIENT_INIT)
    gi = gi[gi["T_wrm"] == 1]
    common = set(adam["eta_trgt_setting"]) & set(gi["eta_trgt_setting"])
    if not common:
        return None
    eta = min(common)
    chosen = pd.concat([adam[adam["eta_trgt_setting"] == eta], gi[gi["eta_trgt_setting"] == eta]])
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for i, (method, group) in enumerate(chosen.groupby("method", sort=False)):
        for j, row in enumerate(group.itertuples()):  # one line per seed
            traj = read_trajectory(root, row.method, row.run_key).dropna(subset=["preconditioned_sharpness"])
            name = f"{method} ({len(group)} seeds)" if j == 0 else None
            ax.plot(traj["step"], traj["preconditioned_sharpness"], "o-", color=f"C{i}", label=name, ms=3, alpha=0.8)
            ax.plot(traj["step"], traj["stability_threshold"], color=f"C{i}", ls="--", lw=0.8)
    ax.set_yscale("log")
    _step_axes([ax])
    ax.set_ylabel("preconditioned sharpness (dashed: threshold)")
    return _save(
        fig,
        path,
        "GI-Adam vs Adam: preconditioned sharpness without warmup",
        f"Top eigenvalue of P^-1 H at eta_trgt = {eta:g}, measured at every one of the first updates and then at the "
        "measurement cadence (step axis linear to 10, logarithmic beyond), against the Adam threshold "
        "(2 + 2 beta1) / ((1 - beta1) eta_t) (docs/science.md claim C6).",
        chosen["run_key"].tolist(),
    )


def steps_saved_figure(runs: pd.DataFrame, path: Path, axes: tuple[str, ...] = ()) -> Figure | None:
    """Warmup steps used by catapult_init and by linear at each (eta_trgt, T_wrm) (docs/science.md C5): the pairs C5 is
    computed from (same optimizer, parametrization, eta_trgt, T_wrm, seed; both trained)."""
    pairs = critical_start_pairs(runs, axes)
    pairs = pairs[(pairs["failed_subject"] == 0) & (pairs["failed_control"] == 0)]
    if pairs.empty:
        return None
    subject, control = pairs["method_subject"].iloc[0], pairs["method_control"].iloc[0]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for i, (t_wrm, cell) in enumerate(pairs.groupby("T_wrm")):
        # one point per seed, spread sideways a little so that equal values stay visible
        seeds = sorted(cell["seed"].unique())
        offset = cell["seed"].map({s: 2 ** (0.08 * (k - (len(seeds) - 1) / 2)) for k, s in enumerate(seeds)})
        x = cell["eta_trgt_setting"] * offset
        ax.plot(x, cell["warmup_steps_used_control"], "s", mfc="none", color=f"C{i}", label=f"{control} T_wrm={t_wrm}")
        ax.plot(x, cell["warmup_steps_used_subject"], "o", color=f"C{i}", label=f"{subject} T_wrm={t_wrm}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel(_eta_label(runs[runs["method"] == subject]))
    ax.set_ylabel("update at which eta_trgt is reached")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(
        fig,
        path,
        "Warmup steps: catapult_init against linear",
        "Update at which eta_trgt is reached, one point per seed (nudged sideways), per eta_trgt and T_wrm, for "
        "the pairs of claim C5 (same optimizer, parametrization, eta_trgt, T_wrm and seed; both trained); "
        "catapult_init starts at the critical learning rate with the same slope, so it needs fewer steps by "
        "construction: the figure measures how many. Every pair is in analysis/catapult_init_vs_linear.csv.",
        pairs["run_key_subject"].tolist() + pairs["run_key_control"].tolist(),
    )


def persistent_figure(root: Path, runs: pd.DataFrame, path: Path) -> Figure | None:
    """The adaptive warmup's lr and sharpness against the fixed warmups at one eta_trgt (C7): the largest one at
    which every trained persistent run reached eta_trgt; the caption says which eta_trgt some runs did not reach."""
    pc = with_role(runs, ADAPTIVE_WARMUP)
    pc = pc[pc["failed"] == 0]
    lin = with_role(runs, FIXED_WARMUP)
    lin = lin[(lin["failed"] == 0) & lin["optimizer"].isin(pc["optimizer"].unique())]
    common = sorted(set(pc["eta_trgt_setting"]) & set(lin["eta_trgt_setting"]))
    if not common:
        return None
    reached = pc.groupby("eta_trgt_setting")["warmup_steps_used"].agg(lambda x: int(x.notna().sum()))
    counts = pc.groupby("eta_trgt_setting")["run_key"].count()
    everyone = [e for e in common if reached[e] == counts[e]]
    eta = everyone[-1] if everyone else common[-1]
    short = [f"{e:g} ({reached[e]} of {counts[e]} runs)" for e in sorted(counts.index) if reached[e] < counts[e]]
    chosen = pd.concat([pc[pc["eta_trgt_setting"] == eta], lin[lin["eta_trgt_setting"] == eta]])
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    _plot_runs(
        root,
        chosen,
        axes[0],
        axes[1],
        lambda row: row.method if row.T_wrm == 0 else f"{row.method} T_wrm={row.T_wrm}",
    )
    axes[0].set_ylabel("learning rate")
    axes[1].set_ylabel("sharpness (dashed: 2 / lr)")
    axes[1].set_yscale("log")
    _step_axes(axes)
    not_reached = (
        "Trained runs that did not reach eta_trgt within the run: at " + "; ".join(short) + "."
        if short
        else "Every trained persistent_catapult run reached its eta_trgt."
    )
    return _save(
        fig,
        path,
        "persistent_catapult against linear warmup",
        f"Learning rate and sharpness at {_eta_label(chosen)} = {eta:g}, the largest value at which every trained "
        "persistent_catapult run reached eta_trgt: it raises the lr to gamma times the local critical lr at each "
        f"re-estimate, without a T_wrm (docs/science.md claim C7). {not_reached}",
        chosen["run_key"].tolist(),
    )


def _table(df: pd.DataFrame) -> list[list[str]]:
    def fmt(v) -> str:
        if isinstance(v, float):
            return "-" if math.isnan(v) else f"{v:.4g}"
        return str(v)

    return [list(map(str, df.columns))] + [[fmt(v) for v in row] for row in df.itertuples(index=False)]


def _md_table(rows: list[list[str]]) -> str:
    head, *body = rows
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])


def _html_table(rows: list[list[str]]) -> str:
    head, *body = rows
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
    return f"<div class='wide'><table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table></div>"


VERDICT_CLASS = {SUPPORTED: "supported", CONTRADICTED: "contradicted", INCONCLUSIVE: "inconclusive"}
CLAIMS_CSS = (
    "#claims table{width:100%;table-layout:fixed}#claims td{vertical-align:top;font-size:90%}"
    "#claims col.c1{width:4em}#claims col.c2{width:11em}#claims col.c5{width:150px}"
    ".verdict{display:inline-block;padding:2px 6px;border-radius:4px;color:#fff;font-weight:bold;font-size:90%}"
    ".supported{background:#1a7f37}.contradicted{background:#cf222e}.inconclusive{background:#9a6700}"
    ".wide{overflow-x:auto}.seeds{margin-top:4px;font-size:85%}.seed{display:inline-block;min-width:1.6em;text-align:center;color:#fff;"
    "border-radius:3px;margin:1px}.note{color:#555;font-size:90%;margin-top:4px}img.thumb{width:140px}"
)


def _per_seed(per_seed_json: str) -> dict[str, str]:
    return json.loads(per_seed_json or "{}")


def claims_markdown(claims: pd.DataFrame) -> str:
    """The claims scorecard as a Markdown table: verdict, per-seed verdicts, the statistic in words, the figure."""
    rows = [["claim", "verdict", "per seed", "statement", "evidence", "figure"]]
    for r in claims.itertuples():
        seeds = ", ".join(f"{s}: {v[0]}" for s, v in _per_seed(r.per_seed).items())
        notes = " ".join(x for x in (r.finding, f"To decide: {r.to_decide}" if r.to_decide else "") if x)
        rows.append(
            [
                r.claim,
                f"**{r.verdict}**",
                seeds,
                r.statement,
                r.statistic + (f" {notes}" if notes else ""),
                f"[{r.figure}](figures/{r.figure})" if r.figure else "",
            ]
        )
    return _md_table(rows) + "\n\nPer seed: S = SUPPORTED, C = CONTRADICTED, I = INCONCLUSIVE (that seed's runs alone)."


THUMBNAIL_WIDTH = 280  # pixels of the claims table's small figures (shown at 140 CSS px: sharp on 2x screens)


def _thumbnail(png: bytes) -> str:
    """A small copy of a figure, as base64 PNG."""
    from PIL import Image

    image = Image.open(io.BytesIO(png))
    image.thumbnail((THUMBNAIL_WIDTH, THUMBNAIL_WIDTH * 4))
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return base64.b64encode(out.getvalue()).decode()


def claims_html(claims: pd.DataFrame, figures: dict[str, bytes]) -> str:
    """The claims scorecard: colour-coded verdict, the per-seed verdicts, the statistic in words and a small copy of
    the figure it rests on (linked to the full one below); `figures` maps a figure file to its PNG."""
    thumbs = {name: _thumbnail(png) for name, png in figures.items() if name in set(claims["figure"])}
    body = []
    for r in claims.itertuples():
        seeds = "".join(
            f"<span class='seed {VERDICT_CLASS[v]}' title='seed {html.escape(s)}: {v}'>{html.escape(s)}</span>"
            for s, v in _per_seed(r.per_seed).items()
        )
        evidence = "<br>".join(html.escape(part) for part in r.statistic.split("; ") if part)
        notes = "".join(
            f"<div class='note'>{html.escape(x)}</div>"
            for x in (r.finding, f"To decide: {r.to_decide}" if r.to_decide else "")
            if x
        )
        stem = Path(r.figure).stem
        figure = (
            f"<a href='#fig-{stem}'><img class='thumb' alt='{html.escape(r.figure)}' "
            f"src='data:image/png;base64,{thumbs[r.figure]}'></a>"
            if r.figure in thumbs
            else ""
        )
        body.append(
            f"<tr><td>{r.claim}</td><td><span class='verdict {VERDICT_CLASS[r.verdict]}'>{r.verdict}</span>"
            f"<div class='seeds'>per seed: {seeds}</div></td><td>{html.escape(r.statement)}</td>"
            f"<td>{evidence}{notes}</td><td>{figure}</td></tr>"
        )
    cols = "".join(f"<col class='c{i}'>" for i in range(1, 6))
    head = "".join(f"<th>{h}</th>" for h in ("claim", "verdict", "statement", "evidence (pooled over seeds)", "figure"))
    return f"<table><colgroup>{cols}</colgroup><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


LARGE_CATAPULT = 2.0  # the loss at least doubles: a catapult proper, not an edge-of-stability oscillation


def report_config_yaml(cfg: Config) -> str:
    """The configuration that ran, as params.yaml sets it: the settings the file gives (every other one takes its
    default, which `whywarmup schema` lists), the tracking URI's password redacted. Sections the runs do not read
    (executor: results do not depend on it) are left out."""
    config = cfg.model_dump(mode="json", exclude_unset=True, exclude={"executor"})
    if "uri" in config.get("tracking", {}):
        config["tracking"]["uri"] = redact(config["tracking"]["uri"])
    return yaml.safe_dump(config, sort_keys=False)


def largest_table(trainable: pd.DataFrame, language_model: bool = False) -> pd.DataFrame:
    """The report's table of max_trainable_lr.csv: per method (and variant) and T_wrm, the largest trainable value
    in its unit (">= x" at the top of the grid) and the best cell, chosen on validation, with its test accuracy (a
    language model's: its test loss, nats per token)."""
    rows = []
    for r in trainable.itertuples():
        unit = UNIT_COLUMNS[r.eta_unit]
        best = getattr(r, f"best_{unit}")
        if language_model:
            loss, sd = r.best_final_test_loss, np.nan_to_num(r.best_final_test_loss_sd)
            score = {"its test loss": "-" if pd.isna(loss) else f"{loss:.3f} +- {sd:.3f}"}
        else:
            accuracy, sd = r.best_final_test_accuracy, np.nan_to_num(r.best_final_test_accuracy_sd)
            score = {"its test accuracy": "-" if pd.isna(accuracy) else f"{100 * accuracy:.1f} +- {100 * sd:.1f}"}
        rows.append(
            {
                "method": _panel_title(r.method, r.variant),
                "T_wrm": r.T_wrm,
                "unit": "c = eta_trgt * lambda_0" if r.eta_unit == "c" else "eta_trgt",
                "largest trainable": r.max_trainable,
                "best (on validation)": "-" if pd.isna(best) else f"{best:g}",
                **score,
            }
        )
    return pd.DataFrame(rows)


def catapult_summary(events: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Per method: runs, runs with a catapult, catapults, and for the large ones (loss peak >= 2x its running
    minimum; the small ones are mostly the loss oscillating at the edge of stability) their count and median
    sharpness after / before (Lanczos, and the critical sharpness)."""
    rows = []
    for method, r in runs.groupby("method", sort=False):
        e = events[events["method"] == method]
        large = e[e["loss_peak_over_min"] >= LARGE_CATAPULT]
        rows.append(
            {
                "method": method,
                "runs": len(r),
                "runs_with_catapults": e["run_key"].nunique(),
                "catapults": len(e),
                "large_catapults": len(large),
                "large_median_loss_peak_over_min": large["loss_peak_over_min"].median(),
                "large_median_sharpness_after_over_before": large["sharpness_after_over_before"].median(),
                "large_median_critical_after_over_before": large["critical_sharpness_after_over_before"].median(),
            }
        )
    return pd.DataFrame(rows)


# The report is one ordered list of sections, each a list of blocks; every block renders itself as Markdown and as
# HTML, so report.md and index.html cannot drift apart.


@dataclass
class Text:
    text: str
    small: bool = False

    def md(self) -> str:
        return self.text

    def html(self, pngs: dict[str, bytes]) -> str:
        cls = " class='runs'" if self.small else ""
        return f"<p{cls}>{html.escape(self.text)}</p>"


@dataclass
class Table:
    rows: list[list[str]]

    def md(self) -> str:
        return _md_table(self.rows)

    def html(self, pngs: dict[str, bytes]) -> str:
        return _html_table(self.rows)


@dataclass
class Image:
    filename: str
    alt: str

    def md(self) -> str:
        return f"![{self.alt}](figures/{self.filename})"

    def html(self, pngs: dict[str, bytes]) -> str:
        data = base64.b64encode(pngs[self.filename]).decode()
        return f"<img class='figure' alt='{html.escape(self.alt)}' src='data:image/png;base64,{data}'>"


@dataclass
class Code:
    text: str
    language: str = ""

    def md(self) -> str:
        return f"```{self.language}\n{self.text}\n```"

    def html(self, pngs: dict[str, bytes]) -> str:
        return f"<pre>{html.escape(self.text)}</pre>"


@dataclass
class ClaimsBlock:
    claims: pd.DataFrame

    def md(self) -> str:
        return claims_markdown(self.claims)

    def html(self, pngs: dict[str, bytes]) -> str:
        return f"<div id='claims'>{claims_html(self.claims, pngs)}</div>"


@dataclass
class Section:
    title: str
    blocks: list
    anchor: str = ""


def render_markdown(title: str, intro: str, sections: list[Section]) -> str:
    parts = [f"# {title}", intro]
    for section in sections:
        parts += [f"## {section.title}", *(b.md() for b in section.blocks)]
    return "\n\n".join(parts) + "\n"


def render_html(title: str, intro: str, sections: list[Section], pngs: dict[str, bytes]) -> str:
    body = "".join(
        (f"<section id='{s.anchor}'>" if s.anchor else "<section>")
        + f"<h2>{html.escape(s.title)}</h2>"
        + "".join(b.html(pngs) for b in s.blocks)
        + "</section>\n"
        for s in sections
    )
    intro_html = html.escape(intro).replace("`", "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}}img.figure{{max-width:100%}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px}}.runs{{font-size:70%;color:#666}}
pre{{background:#f6f6f6;padding:1em;overflow:auto}}{CLAIMS_CSS}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{intro_html}</p>
{body}</body></html>
"""


def build_report(cfg: Config, root: Path, *, log_to_mlflow: bool = True, params_file: Path | None = None) -> Path:
    analysis = root / ANALYSIS_DIR
    runs, phase, trainable, chosen = (
        _read_table(analysis / f"{name}.csv")
        for name in ("runs", "phase_diagram", "max_trainable_lr", "trajectory_runs")
    )
    out = root / REPORTS_DIR
    figdir = out / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    figures = [
        trajectory_figure(root, chosen, figdir / "trajectories.png"),
        phase_diagram_figure(phase, runs, figdir / "phase_diagrams.png"),
        max_trainable_figure(trainable, runs, figdir / "max_trainable_lr.png"),
        gi_adam_figure(root, runs, figdir / "gi_adam_vs_adam.png"),
        steps_saved_figure(runs, figdir / "catapult_init_steps.png", tuple(config_axes(cfg))),
        persistent_figure(root, runs, figdir / "persistent_vs_linear.png"),
    ]
    figures = [f for f in figures if f is not None]
    table = _table(largest_table(trainable, bool(len(runs)) and bool(is_language_model(runs).all())))
    claims = pd.read_csv(analysis / "claims.csv", dtype=str).fillna("")
    claims_title = "The paper's claims, checked on these runs"
    claims_caption = (
        f"Verdicts computed by whywarmup.claims from these runs ({runs['seed'].nunique()} initialization seeds; "
        "docs/science.md section 7). The verdict pools all seeds: an exact one-sided sign test on the units that agree "
        "or disagree, or the 95% confidence bounds of a mean difference against the measured seed-to-seed spread "
        f"(p < 0.05; at least {MIN_SEEDS} seeds); INCONCLUSIVE otherwise, with what to add to params.yaml. Per "
        "seed: what that seed's runs alone say (at least 80% of its units agree: supported; under 50%: "
        "contradicted). README's 'How each verdict is decided' states each claim's rule."
    )
    methods_table = _table(_read_table(analysis / "methods.csv"))
    methods_title = "Methods compared: largest trainable eta_trgt, accuracy and warmup steps"
    critical_path = analysis / "critical_lr.csv"
    try:
        critical = pd.read_csv(critical_path)
    except (FileNotFoundError, pd.errors.EmptyDataError):  # no run searched for eta_c
        critical = pd.DataFrame()
    critical_table = _table(critical) if len(critical) else None
    critical_title = "Critical learning rate at initialization (loss-catapult search) against each optimizer's limit"
    critical_caption = (
        "eta_c over the optimizer's own stability limit at initialization, constant / lambda, with lambda the "
        "initial sharpness the optimizer sees (lambda_0 for SGD; the preconditioned sharpness for the Adam family) "
        "and the constant of docs/science.md section 3 (2 for GD; (2 + 2 beta1) / (1 - beta1) = 38 for Adam). For GD "
        "1 means the catapult starts exactly at 2 / lambda_0 (a quadratic along the top eigenvector; section 5 "
        "measured 1.25-1.5 on the digits FCN). Adam's first update has no momentum history yet, so a quadratic "
        "would put its eta_c at 2 / lambda, i.e. 2 / 38 = 0.053 of the limit."
    )
    catapults_table = _table(catapult_summary(pd.read_csv(analysis / "catapults.csv"), runs))
    catapults_title = "Catapults: loss spikes that come back, and the sharpness before and after"
    catapults_caption = (
        "A catapult: the training loss rises more than 10% above its running minimum and comes back "
        "(whywarmup.run_stats.detect_catapults); most small ones are the loss oscillating at the edge of stability, "
        "so the large ones (the loss at least doubles) are counted apart. Sharpness after / before compares the last "
        "Lanczos measurement before the spike with the first one after it; critical after / before does the same with "
        "the critical sharpness (every step by default, so the step before the spike and the step it ended). Every "
        "event is in analysis/catapults.csv."
    )
    config_yaml = report_config_yaml(cfg)
    commands = "dvc repro\nmlflow ui --host 127.0.0.1   # then open http://127.0.0.1:5000"
    sections = [
        Section(claims_title, [ClaimsBlock(claims), Text(claims_caption)]),
        Section("Largest trainable target learning rate per warmup length", [Table(table)]),
        Section(methods_title, [Table(methods_table)]),
        *([Section(critical_title, [Table(critical_table), Text(critical_caption)])] if critical_table else []),
        Section(catapults_title, [Table(catapults_table), Text(catapults_caption)]),
        *(
            Section(
                f.title,
                [
                    Image(f.filename, f.title),
                    Text(f.caption),
                    Text(_runs_line(f.run_keys, set(runs["run_key"])), small=True),
                ],
                anchor=f"fig-{Path(f.filename).stem}",
            )
            for f in figures
        ),
        Section("Configuration", [Code(config_yaml.rstrip(), "yaml")]),
        Section("Reproduce", [Code(commands)]),
    ]
    intro = f"{len(runs)} runs over {len(cfg.methods)} methods on `{cfg.data.dataset}`."
    pngs = {f.filename: (figdir / f.filename).read_bytes() for f in figures}
    atomic_write_text(out / "report.md", render_markdown(cfg.report.title, intro, sections))
    atomic_write_text(out / "index.html", render_html(cfg.report.title, intro, sections, pngs))
    if log_to_mlflow:
        _log_report(cfg, root, out, params_file)
    return out / "index.html"


def _log_report(cfg: Config, root: Path, out: Path, params_file: Path | None) -> None:
    from .provenance import source_tags
    from .tracking import TAG_NOTE, open_tracker

    tracker = open_tracker(cfg, root)
    claims = json.loads((root / METRICS_FILE).read_text()).get("claims", {})
    tags = {
        **source_tags(root.resolve(), "", params_file.resolve() if params_file else None),
        TAG_ROLE: "analysis",
        TAG_NOTE: analysis_description(claims),
        **verdict_tags(claims),
    }
    run_id = tracker.client.create_run(tracker.experiment_id, run_name="analysis", tags=tags).info.run_id
    with tracker.closing(run_id):
        tracker.log_artifacts(run_id, out, "report")
        tracker.log_artifacts(run_id, root / ANALYSIS_DIR, "analysis")
        tracker.log_artifact(run_id, root / ANALYSIS_DIR / "claims.csv")
        tracker.log_artifact(run_id, root / METRICS_FILE)


def verdict_tags(claims: dict[str, dict]) -> dict[str, str]:
    """One tag per claim, `claims.C1 = SUPPORTED`, so that runs are searched by verdict
    (`tags."claims.C1" = 'SUPPORTED'`)."""
    return {f"claims.{name}": str(claim.get("verdict", "")) for name, claim in claims.items()}


def analysis_description(claims: dict[str, dict]) -> str:
    """The analysis run's description (Markdown): each claim's verdict and the statistic behind it."""
    rows = [
        f"| {name} | {c.get('verdict', '')} | {str(c.get('statistic', '')).replace('|', '/')} |"
        for name, c in claims.items()
    ]
    return "\n".join(
        [
            "The claims of the paper checked on this experiment's runs (whywarmup.claims; docs/science.md section 7). "
            "The report is the `report/index.html` artifact, the verdict table `claims.csv`; each verdict is also "
            "a tag (`claims.C1`, ...).",
            "",
            "| claim | verdict | statistic |",
            "|---|---|---|",
            *rows,
        ]
    )
