"""Which rows of a ``summary.csv`` frame a table, plot or claim reads, in which order, under
which label.

One model has a row per evaluation setting (sampler, steps, guidance); the primary setting is
the config's first sampler and step count without guidance. Objectives and schedules keep the
order in which they first appear in the data (the config order when the runs are listed in
config order) unless an explicit order is passed (:func:`ordered_levels`). When the grid varies
the conditioning or the network's parameterization, a table or plot row is
``parameterization / objective`` (:func:`display_frame`). Shared by the tables, the plots and
:mod:`vdm.reporting.claims`.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd


def primary_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of each run's primary evaluation setting (all rows when there is no ``primary``
    column or flag, e.g. a hand-made frame)."""
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
