"""Which rows of a ``summary.csv`` frame a table, plot or claim reads.

One model has a row per evaluation setting (sampler, steps, guidance); the primary setting is
the config's first sampler and step count without guidance. Shared by
:mod:`vdm.reporting.tables` and :mod:`vdm.reporting.claims`.
"""

from __future__ import annotations

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
