"""What makes a figure readable, shared by the report's figures: titles fitted to the width they
have, axes ticked at the measured values, and the per-run sampling error of a one-seed grid as
its error bars.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.ticker import FuncFormatter, Locator, NullLocator
from scipy import stats

#: metric -> the column with one run's own sampling error of it (a standard error)
SAMPLING_ERRORS = {"fid": "fid_se", "nll_bpd": "nll_bpd_se"}
SAMPLING_ERROR_MEANING = {
    "fid_se": "the FID's bootstrap SD over the run's generated samples",
    "nll_bpd_se": "the NLL's standard error over the test images"}
#: share of the width a title may use (the rest is margin)
TITLE_MARGIN = 0.98


# --------------------------------------------------------------------------- titles
def _wrap(text: str, width: int) -> str:
    """``text`` wrapped to ``width`` characters paragraph by paragraph (its line breaks kept;
    words and hyphenated terms never split)."""
    return "\n".join("\n".join(textwrap.wrap(line, width, break_long_words=False,
                                             break_on_hyphens=False) or [""])
                     for line in text.split("\n"))


def fit_text(artist: Text, max_width: float, min_fontsize: float = 6.0) -> None:
    """Re-wrap ``artist`` (its words in order, its own line breaks kept) until its rendered
    width is at most ``max_width`` display pixels; a single word that is still too wide
    shrinks the font (down to ``min_fontsize``)."""
    original = artist.get_text()
    if not original.strip():
        return
    renderer = artist.figure.canvas.get_renderer()
    chars = max(len(line) for line in original.split("\n"))
    for _ in range(50):
        width = artist.get_window_extent(renderer).width
        if width <= max_width:
            return
        longest = max(len(line) for line in artist.get_text().split("\n"))
        target = min(chars - 1, int(longest * max_width / width))
        if target >= max(len(word) for word in original.split()):
            chars = target
            artist.set_text(_wrap(original, chars))
        elif artist.get_fontsize() * 0.9 >= min_fontsize:
            artist.set_fontsize(artist.get_fontsize() * 0.9)
        else:
            return


def fit_titles(fig: Figure) -> None:
    """Fit the figure's title to the figure's width and each axes title to its axes' width
    (:func:`fit_text`): first on the axes' grid positions, then again on the layout the figure
    is drawn with (constrained layout makes room for the titles, so it runs on fitted ones)."""
    for laid_out in (False, True):
        if laid_out:
            fig.draw_without_rendering()
        if fig._suptitle is not None:  # matplotlib keeps the figure title there
            fit_text(fig._suptitle, TITLE_MARGIN * fig.bbox.width)
        for ax in fig.axes:
            if ax.get_visible() and ax.axison:
                fit_text(ax.title, TITLE_MARGIN * ax.bbox.width)


def title_overflow(fig: Figure) -> list[str]:
    """Titles wider than the room they have (the figure's; an axes title: its axes'), as
    ``"text: width > room"``; empty when every title fits."""
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    texts = [(fig._suptitle, fig.bbox.width)] if fig._suptitle is not None else []
    texts += [(ax.title, ax.bbox.width) for ax in fig.axes if ax.get_visible() and ax.axison]
    return [f"{t.get_text()!r}: {t.get_window_extent(renderer).width:.0f} > {room:.0f} px"
            for t, room in texts if t.get_text() and t.get_window_extent(renderer).width > room]


# --------------------------------------------------------------------------- ticks
class MeasuredTicks(Locator):
    """Ticks at the measured values only (e.g. the NFE of each sampler setting): on a log axis
    they read ``26, 51`` instead of ``3×10¹``. At draw time, a value whose label would overlap
    the previous kept one (positions in pixels on the laid-out axes) is left out."""

    def __init__(self, values: Iterable[float], fontsize: float = 8.0) -> None:
        self.values = sorted({float(v) for v in values if np.isfinite(float(v))})
        self.fontsize = fontsize

    def __call__(self) -> list[float]:
        lo, hi = sorted(self.axis.get_view_interval())
        inside = [v for v in self.values if lo <= v <= hi]
        axes = self.axis.axes
        is_x = self.axis.axis_name == "x"
        points = [(v, 0.0) if is_x else (0.0, v) for v in inside]
        pixels = axes.transData.transform(points)[:, 0 if is_x else 1] if points else []
        dpi = axes.figure.dpi
        kept: list[tuple[float, float, float]] = []  # value, pixel, half-width of its label
        for value, pixel in zip(inside, pixels, strict=True):
            half = (0.3 * len(f"{value:g}") * self.fontsize if is_x else 0.6 * self.fontsize)
            half = half * dpi / 72 + 2
            if not kept or abs(pixel - kept[-1][1]) >= half + kept[-1][2]:
                kept.append((value, pixel, half))
        return [value for value, _, _ in kept]


def tick_at_values(axis: Axis, values: Iterable[float], fontsize: float = 8.0) -> None:
    """Major ticks of ``axis`` at the measured ``values`` (:class:`MeasuredTicks`), labelled as
    plain numbers; no minor ticks. Call after setting the axis scale (which resets ticks)."""
    axis.set_major_locator(MeasuredTicks(values, fontsize))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_locator(NullLocator())
    axis.set_tick_params(labelsize=fontsize)


# --------------------------------------------------------------------------- one-seed error bars
def normal_quantile(confidence: float) -> float:
    """``z`` of a two-sided normal interval: ``Φ⁻¹((1 + confidence) / 2)`` (1.96 for 95%)."""
    return float(stats.norm.ppf(0.5 + confidence / 2))


def sampling_interval_text(metric: str, confidence: float = 0.95) -> str:
    """What the error bars of a one-seed grid are (:func:`one_seed_errors`)."""
    column = SAMPLING_ERRORS[metric]
    return (f"one seed: ± {100 * confidence:g}% normal interval of the run's sampling error "
            f"({normal_quantile(confidence):.2f} × {column}, {SAMPLING_ERROR_MEANING[column]})")


def one_seed_errors(cells: pd.DataFrame, rows: pd.DataFrame, metric: str,
                    keys: Mapping[str, str] | None = None, *, ci: str = "ci", n: str = "n",
                    confidence: float = 0.95) -> tuple[pd.DataFrame, str | None]:
    """Error bars for a grid with one seed, where a t-interval over seeds does not exist.

    When every cell has at most one value (``cells[n] <= 1``) and ``rows`` (the runs the cells
    summarise) have the metric's sampling-error column (:data:`SAMPLING_ERRORS`), returns
    ``cells`` with ``cells[ci] = z · SE`` of the cell's run (``z`` =
    :func:`normal_quantile`) and the text that says so (:func:`sampling_interval_text`);
    otherwise ``cells`` unchanged and ``None``. ``keys``: cell column → ``rows`` column that
    identify a cell (default: objective and schedule)."""
    keys = dict(keys or {"objective": "objective", "schedule": "schedule"})
    column = SAMPLING_ERRORS.get(metric)
    if (cells.empty or column is None or column not in rows or metric not in rows
            or cells[n].max() > 1 or rows[column].notna().sum() == 0):
        return cells, None
    runs = rows[pd.to_numeric(rows[metric], errors="coerce").notna()]
    errors = runs.groupby(list(keys.values()), sort=False)[column].first().reset_index()
    errors = errors.rename(columns={v: k for k, v in keys.items()})
    merged = cells.drop(columns=[column], errors="ignore").merge(errors, on=list(keys), how="left")
    out = cells.copy()
    out[ci] = normal_quantile(confidence) * pd.to_numeric(merged[column], errors="coerce").to_numpy()
    return out, sampling_interval_text(metric, confidence)
