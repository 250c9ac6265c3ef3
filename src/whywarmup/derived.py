"""The quantities derived from runs, one function each, used alike by the analysis tables, the claims and the
report (docs/science.md section 7): the failure rule, the largest trainable eta_trgt (a lower bound at the top of
the grid), the best setting (chosen on validation, scored on test), the robust eta_trgt range, and the runs of two
roles paired on everything but the method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .methods import CRITICAL_START, FIXED_WARMUP, kinds_with

CHANCE_FACTOR = 1.5  # a final training accuracy below 1.5 / classes is chance level
FAILURE_MARGIN = 0.10  # ... or more than 10 points below the best cell of the run's method: not trained
ACCURACY_POINT = 0.01  # the robust eta_trgt range: settings within one accuracy point of the best
LOSS_NATS = 0.01  # ... for language models: within 0.01 nats per token of the best test loss (1% in perplexity)
CELL = ["method", "variant", "eta_trgt_setting", "T_wrm"]  # a grid cell: the runs that differ only in the seed
UNIT_COLUMNS = {"c": "c", "absolute": "eta_trgt"}  # eta_unit -> the column suffix of a value in that unit


def eta_unit(runs: pd.DataFrame) -> pd.Series:
    """Per run: "c" when eta_trgt_setting is c = eta_trgt x lambda_0, "absolute" when it is eta_trgt itself."""
    return pd.Series(np.where(runs["eta_relative_to"] == "lambda_0", "c", "absolute"), index=runs.index)


def with_role(runs: pd.DataFrame, *roles: str) -> pd.DataFrame:
    """The runs whose method kind plays one of `roles` (methods.ROLES) in the analysis."""
    kinds = set().union(*(kinds_with(r) for r in roles))
    return runs[runs["kind"].isin(kinds)]


def apply_failure_rule(runs: pd.DataFrame) -> pd.DataFrame:
    """Add `failure` ("", "diverged", "chance" or "below_best") and set `failed` (0/1) by the rule of docs/science.md
    section 7; the trainer's own flag (divergence or chance level only) is kept as `failed_in_training`."""
    runs = runs.copy()
    runs["failed_in_training"] = runs["failed"]
    diverged = runs["diverged"] > 0
    cells = runs[~diverged].groupby(CELL)["final_train_accuracy"].mean()
    best = cells.groupby(level=["method", "variant"]).max()
    best_of_run = pd.Series(
        [best.get((m, v), math.nan) for m, v in zip(runs["method"], runs["variant"])], index=runs.index
    )
    chance = CHANCE_FACTOR / runs["num_classes"]
    acc = runs["final_train_accuracy"]
    # a language model (its runs carry the unigram entropy of the training tokens) is judged on its loss: not below
    # the entropy = nothing learned beyond the token frequencies; the accuracy margin does not apply to it
    language_model = is_language_model(runs)
    missing = pd.Series(math.nan, index=runs.index)
    entropy, loss = runs.get("unigram_entropy", missing), runs.get("final_train_loss", missing)
    at_chance = np.where(language_model, ~(loss < entropy), acc < chance)
    below_best = ~language_model & (acc < best_of_run - FAILURE_MARGIN)
    failure = np.where(diverged, "diverged", np.where(at_chance, "chance", np.where(below_best, "below_best", "")))
    runs["failure"] = failure
    runs["failed"] = (runs["failure"] != "").astype(int)
    return runs


def largest_trainable(cells: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per group of `by`: the largest eta_trgt_setting whose cell is trainable (`trainable`: no seed failed; at run
    level, the run trained), and whether it is the top of the group's grid (then only a lower bound). NaN when
    nothing trained."""
    rows = []
    for key, group in cells.groupby(by, sort=True):
        ok = group.loc[group["trainable"].astype(bool), "eta_trgt_setting"]
        value = float(ok.max()) if len(ok) else math.nan
        top = float(group["eta_trgt_setting"].max())
        rows.append(
            {
                **dict(zip(by, key if isinstance(key, tuple) else (key,))),
                "max_trainable": value,
                "max_trainable_is_lower_bound": bool(value == top),
                "grid_max": top,
            }
        )
    return pd.DataFrame(rows, columns=[*by, "max_trainable", "max_trainable_is_lower_bound", "grid_max"])


def compare_largest(a: float, b: float) -> int:
    """Did the largest trainable value grow from `a` to `b` (same grid)? +1, -1, or 0 for equal, which includes two
    lower bounds at the top of the grid (both ">= top": undecided). NaN (nothing trained) is below every value."""
    a, b = (-math.inf if math.isnan(v) else v for v in (a, b))
    return int(np.sign(b - a)) if a != b else 0


def format_largest(value: float, lower_bound: bool) -> str:
    """512 or ">= 512" (top of the grid); "none" when nothing trained."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "none"
    return f">= {value:g}" if lower_bound else f"{value:g}"


SELECTION = ("final_val_accuracy", "final_train_accuracy")  # what a best setting is chosen on, in order
LM_SELECTION = ("final_val_loss", "final_train_loss")  # ... for language models: the lowest loss


def is_language_model(runs: pd.DataFrame) -> pd.Series:
    """Per run (or grid cell): a language model's, i.e. it carries the unigram entropy of its training tokens (the
    runs of a text dataset) or is flagged `language_model` (phase_diagram's cells)."""
    if "language_model" in runs:
        return runs["language_model"].astype(bool)
    if "unigram_entropy" in runs:
        return runs["unigram_entropy"].notna()
    return pd.Series(False, index=runs.index)


def _best(rows: pd.DataFrame) -> pd.Series | None:
    """The row with the highest SELECTION column that has a value, for language models the lowest LM_SELECTION
    column (None when `rows` is empty)."""
    lm = len(rows) and bool(is_language_model(rows).all())
    for column in LM_SELECTION if lm else SELECTION:
        if column in rows and rows[column].notna().any():
            return rows.loc[rows[column].idxmin() if lm else rows[column].idxmax()]
    return None


@dataclass(frozen=True)
class Score:
    """What a run's result is judged on: classifiers on test accuracy, language models on test loss (docs/science.md
    section 9). `sign` turns a difference of the score into "how much better" (higher is better after it)."""

    test: str  # the column of a run's final score on the test set
    val: str  # ... and on the validation set (what best settings are chosen on)
    sign: float
    name: str  # in words
    scale: float  # a difference is shown multiplied by this
    unit: str
    better: str  # key of a sign-applied difference in claims' numbers
    spread: str  # key suffix of the seed-to-seed spread of `test`
    robust_within: float  # the robust range: settings within this of the best score

    def better_by(self, subject: pd.Series, control: pd.Series) -> pd.Series:
        """How much better `subject` scored than `control` (positive: better), in the score's own unit."""
        return self.sign * (subject - control)


ACCURACY = Score(
    "final_test_accuracy",
    "final_val_accuracy",
    1.0,
    "accuracy",
    100.0,
    " points",
    "accuracy_difference",
    "accuracy",
    ACCURACY_POINT,
)
TEST_LOSS = Score(
    "final_test_loss", "final_val_loss", -1.0, "test loss", 1.0, " nats", "loss_reduction", "test_loss", LOSS_NATS
)


def score_of(runs: pd.DataFrame) -> Score:
    """TEST_LOSS when every run is a language model's, ACCURACY otherwise."""
    return TEST_LOSS if len(runs) and bool(is_language_model(runs).all()) else ACCURACY


def best_cell(cells: pd.DataFrame) -> pd.Series | None:
    """The best of some grid cells (phase_diagram rows): among cells where every seed trained, the highest mean
    validation accuracy (training accuracy where there is no validation set; for language models the lowest mean
    validation loss); None when none trained. Its `final_test_accuracy` (`final_test_loss`) is the score to report:
    the test set does not take part in the choice."""
    return _best(cells[cells["trainable"].astype(bool)])


def best_run(runs: pd.DataFrame) -> pd.Series | None:
    """The best of some runs (e.g. one seed's), by the same rule as best_cell."""
    return _best(runs[runs["failed"] == 0])


def robust_range(accuracy_by_eta: pd.Series, within: float = ACCURACY_POINT) -> tuple[float, float]:
    """The paper's robustness: the smallest and largest eta_trgt setting whose accuracy is within `within` of the
    best one (NaN, NaN when nothing trained). Settings in between that fall short do not split the range."""
    acc = accuracy_by_eta.dropna()
    if not len(acc):
        return math.nan, math.nan
    good = acc[acc >= acc.max() - within].index
    return float(min(good)), float(max(good))


def paired(
    runs: pd.DataFrame, subject: str, control: str, axes: tuple[str, ...] = (), on: tuple[str, ...] = ("T_wrm",)
) -> pd.DataFrame:
    """Runs of role `subject` beside the run of role `control` that differs from it only in the method: same
    optimizer, parametrization, value of every other axis, eta_trgt setting, seed and the columns `on`. Columns of
    the two sides end in _subject and _control."""
    keys = ["optimizer", "parametrization", "eta_relative_to", *axes, "eta_trgt_setting", "seed", *on]
    return with_role(runs, subject).merge(with_role(runs, control), on=keys, suffixes=("_subject", "_control"))


def critical_start_pairs(runs: pd.DataFrame, axes: tuple[str, ...] = ()) -> pd.DataFrame:
    """Each run of a method that starts at the critical lr (catapult_init) beside the fixed-warmup run that differs
    only in the method (same T_wrm too): the warmup steps each used, steps saved, test accuracy and failure of both
    (C5's pairs; analysis/catapult_init_vs_linear.csv)."""
    pairs = paired(runs, CRITICAL_START, FIXED_WARMUP, axes)
    pairs["steps_saved"] = pairs["warmup_steps_used_control"] - pairs["warmup_steps_used_subject"]
    pairs["accuracy_difference"] = pairs["final_test_accuracy_subject"] - pairs["final_test_accuracy_control"]
    keep = ["optimizer", "parametrization", *axes, "eta_trgt_setting", "T_wrm", "seed"]
    keep += [f"{c}_{side}" for side in ("subject", "control") for c in ("method", "run_key")]
    keep += [f"{c}_{s}" for c in ("warmup_steps_used", "final_test_accuracy", "failed") for s in ("subject", "control")]
    keep += ["steps_saved", "accuracy_difference"]
    if len(pairs) and score_of(runs) is TEST_LOSS:  # language models: the test losses and how much lower
        subject, control = pairs["final_test_loss_subject"], pairs["final_test_loss_control"]
        pairs["loss_reduction"] = TEST_LOSS.better_by(subject, control)
        keep += ["final_test_loss_subject", "final_test_loss_control", "loss_reduction"]
    return pairs[keep].sort_values(["optimizer", "parametrization", *axes, "eta_trgt_setting", "T_wrm", "seed"])
