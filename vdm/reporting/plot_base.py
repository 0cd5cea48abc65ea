"""What every figure module of the report shares: a figure on its own Agg canvas (no pyplot
state, no display needed), saving it (titles fitted to the width they have,
:func:`vdm.reporting.plot_style.fit_titles`; the PNG written atomically), titles, colours, a
panel that says there is no data, metric labels with units and direction, one point per cell
with its error bars on two metrics, and the reference lines: the real-data FID floor, the
uniform bound ``log₂ K`` bits/dim and, on a dataset with a known density, its true entropy ``H``
bits/dim.

:func:`paired_cells` gives each cell mean a 95% Student-t confidence interval over seeds,
``t_{0.975,n−1}·s/√n`` (:func:`vdm.reporting.stats.mean_ci`), which a caller may replace by a
one-seed grid's sampling interval (:func:`vdm.reporting.plot_style.one_seed_errors`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from vdm.core.dataset_facts import dataset_info
from vdm.core.provenance import atomic_output
from vdm.reporting.aggregation import cell_summary, fid_label
from vdm.reporting.formatting import floor_images
from vdm.reporting.plot_style import fit_titles
from vdm.reporting.summary_rows import ordered_levels

METRIC_FILES = {"fid": "fid", "nll_bpd": "nll"}
"""File-name stem of each metric's figures, e.g. ``nll_bars.png`` for ``nll_bpd``."""
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
CI_TEXT = "mean ± 95% CI (Student t over seeds)"
PathLike = str | Path


# --------------------------------------------------------------------------- figures
def new_figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (6.4, 4.8),
               sharey: bool = False) -> tuple[Figure, np.ndarray]:
    """A constrained-layout figure of ``size`` inches on its own Agg canvas and its
    ``nrows × ncols`` axes as a 2-D array (also for one panel)."""
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False, sharey=sharey)


def save_figure(fig: Figure, path: Path) -> Path:
    """Fit ``fig``'s titles to their width, write it to ``path`` as a 120-dpi PNG (atomically)
    and return ``path``."""
    fit_titles(fig)
    with atomic_output(path) as tmp:  # a PNG is never seen half-written
        fig.savefig(tmp, dpi=120)
    return path


def suptitle(fig: Figure, text: str, fontsize: float = 10) -> None:
    """A figure title (wrapped to the figure's width when saved, its own line breaks kept)."""
    fig.suptitle(text, fontsize=fontsize)


def no_data(ax: Axes, message: str) -> None:
    """An empty panel that says ``message`` in its centre (no axes drawn)."""
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def metric_label(df: pd.DataFrame, metric: str) -> str:
    """Axis label with units and direction, naming the FID feature extractor."""
    if metric == "fid":
        return f"{fid_label(df)}, lower is better"
    if metric == "nll_bpd":
        return "NLL (bits/dim), lower is better"
    return metric


def palette(levels: Sequence[str]) -> dict[str, tuple]:
    """One ``tab10`` colour per level, in order (RGB tuples in [0, 1])."""
    return dict(zip(levels, sns.color_palette("tab10", max(len(levels), 1)), strict=False))


def cell_levels(df: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The objective rows and the schedules of ``df``, each in order of first appearance
    (:func:`vdm.reporting.summary_rows.ordered_levels`)."""
    return ordered_levels(df["objective"]), ordered_levels(df["schedule"])


# --------------------------------------------------------------------------- cells on two metrics
def paired_cells(df: pd.DataFrame, metrics: Mapping[str, str]) -> pd.DataFrame:
    """Cells (objective row, schedule) that have both metrics: :func:`cell_summary` of each,
    side by side as ``mean_<name>``, ``ci_<name>``, ``n_<name>`` (``metrics``: two
    name → column pairs), the input of :func:`cell_errorbars`."""
    (x, x_metric), (y, y_metric) = metrics.items()
    cells = cell_summary(df, x_metric).merge(cell_summary(df, y_metric),
                                             on=["objective", "schedule"],
                                             suffixes=(f"_{x}", f"_{y}"))
    return cells.dropna(subset=[f"mean_{x}", f"mean_{y}"])


def cell_errorbars(ax: Axes, cells: pd.DataFrame, x: str, y: str, objs: Sequence[str],
                   scheds: Sequence[str]) -> list[Line2D]:
    """One point per cell at (``mean_<x>``, ``mean_<y>``) with its 95% t-CIs on both axes;
    colour = objective row, marker = schedule. Returns the legend handles."""
    colours = palette(objs)
    markers = {s: MARKERS[i % len(MARKERS)] for i, s in enumerate(scheds)}
    for c in cells.itertuples():
        ax.errorbar(getattr(c, f"mean_{x}"), getattr(c, f"mean_{y}"), xerr=getattr(c, f"ci_{x}"),
                    yerr=getattr(c, f"ci_{y}"), fmt=markers[c.schedule], ms=8, capsize=3,
                    color=colours[c.objective], mec="black")
    handles = [Line2D([], [], ls="", marker="o", color=colours[o], label=o) for o in objs]
    return handles + [Line2D([], [], ls="", marker=markers[s], color="grey", label=s)
                      for s in scheds]


# --------------------------------------------------------------------------- reference lines
def floor_line(ax: Axes, floor: Mapping[str, Any] | None, label: bool = True) -> None:
    """A dashed horizontal line at the FID floor: held-out real images ("real data (300 test
    images)") or fresh true samples ("fresh true samples, N = 1000")."""
    if floor is None:
        return
    text = floor_images(floor)
    ax.axhline(float(floor["fid"]), color="crimson", ls="--", lw=1,
               label=(text if floor.get("floor_split") == "fresh" else f"real data ({text})")
               if label else None)


def uniform_bound_bpd(df: pd.DataFrame) -> float | None:
    """``log₂ K`` bits/dim, the NLL of the uniform distribution over the K levels of the
    summary's dataset (:func:`vdm.core.dataset_facts.dataset_info`); ``None`` for several or unknown
    datasets."""
    names = df["dataset"].dropna().unique() if "dataset" in df else []
    try:
        return math.log2(dataset_info(str(names[0]))["num_levels"]) if len(names) == 1 else None
    except ValueError:
        return None


def uniform_line(ax: Axes, bound: float, axis: str = "y") -> None:
    """The uniform bound ``log₂ K`` as a dotted line across the axes (horizontal for
    ``axis="y"``), labelled in place; outside the axis range, a note says where it lies."""
    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    if lo <= bound <= hi:
        line = ax.axhline if axis == "y" else ax.axvline
        line(bound, color="dimgrey", ls=":", lw=1.2)
        if axis == "y":
            ax.text(0.99, bound, f"uniform {bound:.2f}", transform=ax.get_yaxis_transform(),
                    fontsize=6, ha="right", va="bottom", color="dimgrey", zorder=4,
                    bbox={"fc": "white", "ec": "none", "alpha": 0.8, "pad": 1})
        else:
            ax.text(bound, 0.99, f" uniform {bound:.2f} bits/dim", transform=ax.get_xaxis_transform(),
                    fontsize=7, ha="left", va="top", color="dimgrey", zorder=4)
        return
    where = ("above" if bound > hi else "below") if axis == "y" else (
        "to the right" if bound > hi else "to the left")
    ax.text(0.99, 0.99, f"uniform bound {bound:.2f} {where}", transform=ax.transAxes, fontsize=6,
            ha="right", va="top", color="dimgrey")


def entropy_line(ax: Axes, entropy: float, axis: str = "y") -> None:
    """The true entropy ``H`` (bits/dim, the lowest NLL any model can have in expectation) as a
    dashed line across the axes (horizontal for ``axis="y"``), labelled in place; the axis is
    extended to show it."""
    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    span = (hi - lo) or 1.0
    if not lo <= entropy <= hi:
        lo, hi = min(lo, entropy - 0.08 * span), max(hi, entropy + 0.08 * span)
        (ax.set_ylim if axis == "y" else ax.set_xlim)(lo, hi)
    if axis == "y":
        ax.axhline(entropy, color="darkgreen", ls="--", lw=1.2)
        ax.text(0.01, entropy, f"true entropy H {entropy:.3f}", transform=ax.get_yaxis_transform(),
                fontsize=6, ha="left", va="bottom", color="darkgreen", zorder=4,
                bbox={"fc": "white", "ec": "none", "alpha": 0.8, "pad": 1})
    else:
        ax.axvline(entropy, color="darkgreen", ls="--", lw=1.2)
        ax.text(entropy, 0.01, f" true entropy H {entropy:.3f} bits/dim",
                transform=ax.get_xaxis_transform(), fontsize=7, ha="left", va="bottom",
                color="darkgreen", zorder=4)
