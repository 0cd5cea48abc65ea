"""Training budgets of a ``summary.csv`` with snapshots: which steps were evaluated, and each
cell's per-seed values at each of them.

A grid with ``train.snapshots`` evaluates each run's EMA weights at those training steps and at
its final one (``train.steps``); ``summary.csv`` then has a ``train_step`` column, and every
distinct value of it is a *budget*. Earlier snapshots are evaluated on the primary sampler
setting only, so everything here reads the primary rows (:func:`primary_setting_rows`) of each
budget. A cell is a key over :data:`~vdm.reporting.claim_registry.CELL_AXES` (conditioning,
parameterization, objective, schedule; the defaults fill the axes a grid does not have) and the
seeds are its replicates. Shared by :mod:`vdm.reporting.learning_curves`,
:mod:`vdm.reporting.ranking_stability` and :mod:`vdm.reporting.claims_by_budget`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vdm.reporting.claim_registry import CELL_AXES
from vdm.reporting.claims import cell_label, with_cell_axes
from vdm.reporting.summary_rows import TRAIN_STEP, primary_setting_rows

CELL_COLUMNS: list[str] = ["dataset", *CELL_AXES, "cell"]
"""Columns naming a cell in the frames of this module (``cell``: its label,
:func:`vdm.reporting.claims.cell_label`)."""


def has_budgets(summary: pd.DataFrame) -> bool:
    """Whether ``summary`` was evaluated at more than one training step (a ``train_step`` column
    with two or more distinct values)."""
    return TRAIN_STEP in summary and summary[TRAIN_STEP].dropna().nunique() > 1


def train_steps(summary: pd.DataFrame) -> pd.Series:
    """``summary``'s ``train_step`` column as integers; ``ValueError`` naming the column and the
    offending values when it is missing or a value is not a whole number ≥ 1."""
    if TRAIN_STEP not in summary:
        raise ValueError(f"summary has no {TRAIN_STEP!r} column (a grid without "
                         "train.snapshots has one training budget)")
    steps = pd.to_numeric(summary[TRAIN_STEP], errors="coerce")
    bad = ~(np.isfinite(steps) & (steps >= 1) & (steps == np.floor(steps)))
    if bad.any():
        shown = sorted({str(v) for v in summary.loc[bad, TRAIN_STEP]})[:5]
        raise ValueError(f"summary column {TRAIN_STEP!r}: every row needs a whole number of "
                         f"steps >= 1; got {', '.join(shown)}")
    return steps.astype(int)


def training_budgets(summary: pd.DataFrame) -> list[int]:
    """The distinct ``train_step`` values of ``summary``, ascending (the last is the final
    budget). Raises like :func:`train_steps`."""
    return sorted(int(s) for s in train_steps(summary).unique())


def seed_values(summary: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per dataset, cell, training budget and seed: ``value``, the mean of ``metric`` over the
    run's primary rows at that budget (NaN when none of them has a finite value: the cell was
    trained on that seed, so it still counts for pairing by seed).

    Columns :data:`CELL_COLUMNS` + ``train_step``, ``seed``, ``value``; cells in order of first
    appearance in ``summary``, then budget and seed ascending. ``ValueError`` (one line) when
    ``metric`` or ``seed`` is not a column, or ``train_step`` is missing or bad
    (:func:`train_steps`).
    """
    missing = [c for c in (metric, "seed") if c not in summary]
    if missing:
        raise ValueError(f"summary has no column {missing[0]!r}")
    steps = train_steps(summary)  # every row's step checked, before any work
    frame = with_cell_axes(primary_setting_rows(summary.assign(**{TRAIN_STEP: steps})))
    frame["dataset"] = frame["dataset"].astype(str) if "dataset" in frame else ""
    frame["cell"] = [cell_label(dict(zip(CELL_AXES, key, strict=True)))
                     for key in zip(*(frame[a] for a in CELL_AXES), strict=True)]
    values = pd.to_numeric(frame[metric], errors="coerce")
    frame["value"] = values.where(np.isfinite(values))
    out = (frame.groupby([*CELL_COLUMNS, TRAIN_STEP, "seed"], sort=False, dropna=False)["value"]
           .mean().reset_index())
    order = {key: i for i, key in enumerate(dict.fromkeys(
        zip(*(out[c] for c in CELL_COLUMNS), strict=True)))}
    out["_cell"] = [order[key] for key in zip(*(out[c] for c in CELL_COLUMNS), strict=True)]
    out = out.sort_values(["_cell", TRAIN_STEP, "seed"], kind="stable").drop(columns="_cell")
    return out.reset_index(drop=True)
