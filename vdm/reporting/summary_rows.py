"""Which rows of a ``summary.csv`` frame a table, plot or claim reads.

One model has a row per evaluation setting (sampler, steps, guidance); the primary setting is
the config's first sampler and step count without guidance. A grid with ``train.snapshots``
also evaluates each run's EMA weights at earlier training steps: its ``summary.csv`` has a
``train_step`` column, and the rows of a run's final step (the largest ``train_step``, which is
``train.steps``) are the ones every table, plot and claim reads (:func:`final_step_rows`); the
earlier steps are for the learning curves (:mod:`vdm.reporting.learning_curves`). Shared by
:mod:`vdm.reporting.tables` and :mod:`vdm.reporting.claims`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TRAIN_STEP = "train_step"
"""Column of ``summary.csv``: the training step whose EMA weights a row evaluates."""

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
