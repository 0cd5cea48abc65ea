"""Which rows of a ``summary.csv`` frame a table, plot or claim reads, in which order, under
which label.

One model has a row per evaluation setting (sampler, steps, guidance); the primary setting is
the config's first sampler and step count without guidance. Objectives and schedules keep the
order in which they first appear in the data (the config order when the runs are listed in
config order) unless an explicit order is passed (:func:`ordered_levels`). When the grid varies
the conditioning or the network's parameterization, a table or plot row is
``parameterization / objective`` (:func:`display_frame`). Shared by the tables, the plots and
:mod:`vdm.reporting.claims`.
A grid with ``train.snapshots`` also evaluates each run's EMA weights at earlier training steps:
its ``summary.csv`` has a ``train_step`` column, and the rows of a run's final step (the largest
``train_step``, which is ``train.steps``) are the ones every table, plot and claim reads
(:func:`final_step_rows`); the earlier steps are for the learning curves
(:mod:`vdm.reporting.learning_curves`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

TRAIN_STEP = "train_step"
"""Column of ``summary.csv``: the training step whose EMA weights a row evaluates."""

SPACING = "sample_spacing"
"""Column of ``summary.csv``: a row's step spacing (vdm.model.step_grids), only in grids with a
spacing other than ``time``."""

RUN_COLUMNS: tuple[str, ...] = ("dataset", "conditioning", "parameterization", "objective",
                                "schedule", "seed")
"""Columns that identify one training run (the ones a frame has)."""


def final_step_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of each run's final training step: all rows when there is no ``train_step``
    column (a grid without snapshots); else, per run (:data:`RUN_COLUMNS`), the rows whose
    ``train_step`` is that run's largest. A row without a ``train_step`` value counts as its
    run's final step."""
    if TRAIN_STEP not in df:
        return df
    step = pd.to_numeric(df[TRAIN_STEP], errors="coerce").fillna(np.inf)
    keys = [df[c] for c in RUN_COLUMNS if c in df]
    final = step.groupby(keys, dropna=False).transform("max") if keys else step.max()
    return df[step == final]


def primary_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of each run's primary evaluation setting at its final training step
    (:func:`final_step_rows`; all of those when there is no ``primary`` column or flag, e.g. a
    hand-made frame)."""
    return primary_setting_rows(final_step_rows(df))


def primary_setting_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of the primary evaluation setting at every training step (all rows when there
    is no ``primary`` column or flag)."""
    if "primary" not in df:
        return df
    flag = df["primary"]  # a missing flag (no evaluation settings recorded) counts as primary
    return df[flag.isna() | flag.astype(str).str.lower().isin(["true", "1", "1.0"])]


def guidance_kind_column(df: pd.DataFrame) -> pd.Series:
    """Each row's guidance kind as text: ``none`` where the column is missing (a grid without
    the guidance axis) or empty (an all-NaN column reads back from CSV as floats)."""
    if "guidance_kind" not in df:
        return pd.Series("none", index=df.index, dtype=object)
    return df["guidance_kind"].astype(object).fillna("none")


def spacing_column(df: pd.DataFrame) -> pd.Series:
    """Each row's step spacing as text: ``time`` (the uniform time grid) where the column is
    missing (a grid with no other spacing) or empty."""
    if SPACING not in df:
        return pd.Series("time", index=df.index, dtype=object)
    return df[SPACING].astype(object).fillna("time")


def ordered_levels(values: pd.Series, order: Sequence[str] | None = None) -> list[str]:
    """Distinct non-null values: those in ``order`` first (in that order), then the rest in
    order of first appearance."""
    present = list(pd.unique(values.dropna()))
    head = [v for v in (order or []) if v in present]
    return head + [v for v in present if v not in head]


#: grid axes that, when the grid varies them, prefix the objective in a pivot row
ROW_PREFIXES = ("conditioning", "parameterization")


def display_frame(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with ``objective`` replaced by ``parameterization / objective`` when the frame
    holds more than one parameterization (the pivot rows are then the model variants; the
    objective itself stays in ``base_objective``); the frame is returned unchanged otherwise,
    so single-parameterization grids read as before."""
    varying = [c for c in ROW_PREFIXES if c in df and df[c].nunique(dropna=True) > 1]
    if not varying or "base_objective" in df:
        return df
    label = df[varying[0]].astype(str)
    for column in varying[1:]:
        label = label + " / " + df[column].astype(str)
    return df.assign(base_objective=df["objective"],
                     objective=label + " / " + df["objective"].astype(str))


def row_axis_name(df: pd.DataFrame) -> str:
    """The name of a pivot's row axis for ``df`` (see :func:`display_frame`)."""
    varying = [c for c in ROW_PREFIXES if c in df and df[c].nunique(dropna=True) > 1]
    return " / ".join([*varying, "objective"])
