"""Learning curves: a metric against training steps, one line per cell, from the snapshots of one
training run per cell and seed (``summary.csv`` with a ``train_step`` column,
:mod:`vdm.reporting.budgets`).

At each training budget ``s`` (a snapshot's step, or the final one) and for each cell, the
metric of the EMA weights at step ``s`` on the primary evaluation setting is averaged over seeds:
``mean ± t_{0.975,n−1}·s/√n`` (:func:`vdm.reporting.stats.mean_ci`; no band with one seed).
The curves are in the metric's own units: FID in its feature space, NLL in bits per dimension
(the ELBO bound, per dimension, averaged over test images).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from vdm.reporting.budgets import CELL_COLUMNS, seed_values
from vdm.reporting.plot_base import (
    CI_TEXT,
    MARKERS,
    METRIC_FILES,
    metric_label,
    new_figure,
    no_data,
    palette,
    save_figure,
    suptitle,
)
from vdm.reporting.stats import mean_ci
from vdm.reporting.summary_rows import TRAIN_STEP

LEARNING_CURVE_METRICS: tuple[str, ...] = ("fid", "nll_bpd")
"""Metrics drawn by :func:`plot_learning_curves`, each to ``learning_curve_<name>.png`` with
``<name>`` from :data:`vdm.reporting.plot_base.METRIC_FILES` (``fid``, ``nll``)."""


def learning_curve_file(metric: str) -> str:
    """File name of ``metric``'s learning curve, e.g. ``learning_curve_nll.png``."""
    return f"learning_curve_{METRIC_FILES.get(metric, metric)}.png"


def learning_curve_cells(summary: pd.DataFrame, metric: str,
                         confidence: float = 0.95) -> pd.DataFrame:
    """Per dataset, cell and training budget: ``mean`` and ``ci`` (Student-t half-width at
    ``confidence``) of ``metric`` over seeds, and ``n`` (seeds with a finite value).

    Columns :data:`~vdm.reporting.budgets.CELL_COLUMNS` + ``train_step``, ``mean``, ``ci``,
    ``n``; cells in order of first appearance, budgets ascending. Raises ``ValueError`` like
    :func:`vdm.reporting.budgets.seed_values`.
    """
    values = seed_values(summary, metric)
    rows = []
    for key, group in values.groupby([*CELL_COLUMNS, TRAIN_STEP], sort=False, dropna=False):
        mean, ci = mean_ci(group["value"].to_numpy(dtype=float), confidence)
        rows.append({**dict(zip([*CELL_COLUMNS, TRAIN_STEP], key, strict=True)), "mean": mean,
                     "ci": ci, "n": int(group["value"].notna().sum())})
    return pd.DataFrame(rows, columns=[*CELL_COLUMNS, TRAIN_STEP, "mean", "ci", "n"])


def _step_axis(ax: Axes, steps: Sequence[int]) -> None:
    """Log-scaled x axis ticked (and labelled) at exactly the measured steps."""
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(list(steps), labels=[str(s) for s in steps])
    ax.set_xlabel("training steps (EMA weights at that step; log scale)")


def learning_curve_figure(summary: pd.DataFrame, metric: str) -> Figure:
    """``metric`` against training steps (log x, ticked at the measured steps): one panel per
    dataset, one line per cell with its 95% t-CI band over seeds (:func:`learning_curve_cells`);
    a figure saying so when no run has a finite ``metric``."""
    cells = learning_curve_cells(summary, metric) if metric in summary else pd.DataFrame()
    cells = cells[np.isfinite(cells["mean"].astype(float))] if len(cells) else cells
    datasets = list(dict.fromkeys(cells["dataset"])) if len(cells) else [""]
    label = metric_label(summary, metric)
    name = label.split(",")[0]
    fig, axes = new_figure(1, len(datasets), size=(6.0 * len(datasets) + 2.6, 4.6), sharey=False)
    if cells.empty:
        no_data(axes[0, 0], f"no {name} values")
        return fig
    labels = list(dict.fromkeys(cells["cell"]))
    colours = palette(labels)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        in_dataset = cells[cells["dataset"] == dataset]
        for cell, line in in_dataset.groupby("cell", sort=False):
            line = line.sort_values(TRAIN_STEP)
            steps, mean = line[TRAIN_STEP].to_numpy(), line["mean"].to_numpy(dtype=float)
            ci = line["ci"].fillna(0.0).to_numpy(dtype=float)
            ax.plot(steps, mean, marker=MARKERS[labels.index(cell) % len(MARKERS)], ms=4,
                    color=colours[cell], label=cell)
            ax.fill_between(steps, mean - ci, mean + ci, color=colours[cell], alpha=0.15, lw=0)
        _step_axis(ax, sorted(int(s) for s in in_dataset[TRAIN_STEP].unique()))
        if len(datasets) > 1:
            ax.set_title(f"dataset {dataset}", fontsize=10)
    axes[0, 0].set_ylabel(label)
    axes[0, -1].legend(title="cell (objective/schedule)", fontsize=7, loc="upper left",
                       bbox_to_anchor=(1.01, 1.0))
    suptitle(fig, f"{name} vs training steps, one line per cell: {CI_TEXT} as a band")
    return fig


def plot_learning_curve(summary: pd.DataFrame, metric: str, path: str | Path) -> Path:
    """Save :func:`learning_curve_figure` of ``metric`` to ``path`` (atomically); returns it."""
    return save_figure(learning_curve_figure(summary, metric), Path(path))


def plot_learning_curves(summary: pd.DataFrame, out_dir: str | Path,
                         metrics: Sequence[str] = LEARNING_CURVE_METRICS) -> list[Path]:
    """One learning-curve figure per metric of ``metrics`` (:func:`plot_learning_curve`) in
    ``out_dir``: ``learning_curve_fid.png`` and ``learning_curve_nll.png`` by default
    (:func:`learning_curve_file`). ``summary``: all rows of ``summary.csv`` (every budget)."""
    out = Path(out_dir)
    return [plot_learning_curve(summary, m, out / learning_curve_file(m)) for m in metrics]
