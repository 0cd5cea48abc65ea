"""The sampler sweep's figure: FID against the network evaluations per image (NFE), every point
the same trained model sampled with another sampler, step spacing or number of steps.

Bands are 95% Student-t confidence intervals of the cell mean over seeds (one seed: the run's
sampling interval, ``1.96 · fid_se``, :func:`vdm.reporting.plot_style.one_seed_errors`); FID is
in the units of its feature extractor.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from vdm.reporting.aggregation import fid_label, metric_values, sampler_sweep_cells
from vdm.reporting.plot_base import CI_TEXT, PathLike, new_figure, no_data, palette, save_figure, suptitle
from vdm.reporting.plot_style import one_seed_errors, tick_at_values
from vdm.reporting.summary_rows import SPACING, guidance_kind_column, ordered_levels, spacing_column

#: line style of each step spacing (vdm.model.step_grids); ``--`` is left for other line kinds
SPACING_STYLES = {"time": "-", "logsnr": "-.", "karras": ":"}


def fid_vs_nfe_figure(df: pd.DataFrame) -> Figure:
    """FID against network evaluations per image (log x, ticked at the measured NFEs), one
    panel per cell (rows = objective row, columns = schedule), one line per sampler and step
    spacing (colour = sampler, line style = spacing, :data:`SPACING_STYLES`) with its 95% t-CI
    band over seeds (one seed: the run's sampling interval); every point is the same trained
    model sampled with another setting. With the exact denoiser's FID (``bayes_fid``,
    evaluation.bayes_samplers) each sampler and spacing also gets a thin line of the same colour
    with × markers (``exact ε̂*``; dashed when every setting has the time spacing, else in the
    spacing's line style): the same setting and noise without network error. ``df``: all rows
    of ``summary.csv`` (display frame)."""
    unguided = df[guidance_kind_column(df) == "none"]
    cells, sampling = one_seed_errors(
        sampler_sweep_cells(df), unguided.assign(**{SPACING: spacing_column(unguided)}), "fid",
        {"objective": "objective", "schedule": "schedule", "sampler": "sampler",
         "spacing": SPACING, "steps": "sample_steps"})
    exact = (sampler_sweep_cells(df, "bayes_fid") if metric_values(df, "bayes_fid").notna().any()
             else None)  # the exact denoiser's FID per setting (evaluation.bayes_samplers)
    objs, scheds = ordered_levels(cells["objective"]), ordered_levels(cells["schedule"])
    nr, nc = max(len(objs), 1), max(len(scheds), 1)
    fig, axes = new_figure(nr, nc, size=(max(3.6 * nc + 1.2, 7.0), 2.8 * nr + 1.0), sharey=False)
    if cells.empty:
        no_data(axes[0, 0], "no sampler settings")
        return fig
    samplers, spacings = ordered_levels(cells["sampler"]), ordered_levels(cells["spacing"])
    colours = palette(samplers)
    several = spacings != ["time"]  # name the spacing in the legend unless all are time
    for (i, obj), (j, sched) in ((a, b) for a in enumerate(objs) for b in enumerate(scheds)):
        ax = axes[i, j]
        in_cell = cells[(cells["objective"] == obj) & (cells["schedule"] == sched)]
        for sampler, spacing in ((s, p) for s in samplers for p in spacings):
            line = in_cell[(in_cell["sampler"] == sampler)
                           & (in_cell["spacing"] == spacing)].sort_values("nfe")
            if line.empty:
                continue
            ax.plot(line["nfe"], line["mean"], marker="o", ms=4, color=colours[sampler],
                    ls=SPACING_STYLES.get(spacing, "-"),
                    label=f"{sampler}, {spacing}" if several else sampler)
            ci = line["ci"].fillna(0.0)
            ax.fill_between(line["nfe"], line["mean"] - ci, line["mean"] + ci,
                            color=colours[sampler], alpha=0.2, lw=0)
            if exact is not None:
                _exact_line(ax, exact, obj, sched, sampler, spacing, colours[sampler],
                            SPACING_STYLES.get(spacing, "-") if several else "--")
        ax.set_xscale("log")
        tick_at_values(ax.xaxis, in_cell["nfe"])
        ax.set_title(f"{obj} · {sched}", fontsize=9)
        if i == nr - 1:
            ax.set_xlabel("network evaluations per image (NFE)")
        if j == 0:
            ax.set_ylabel(fid_label(df))
    axes[0, -1].legend(title="sampler, step spacing" if several else "sampler", fontsize=8)
    suptitle(fig, "FID vs sampling cost, same trained models; lower is better\n"
                  + (f"{'thin, ×' if several else 'dashed'}: the same sampler with the exact "
                     "denoiser ε̂* (no network error), same noise\n" if exact is not None else "")
                  + f"{sampling or CI_TEXT} as a band")
    return fig


def _exact_line(ax, exact: pd.DataFrame, obj: str, sched: str, sampler: str, spacing: str,
                colour, style: str) -> None:
    """The exact denoiser's mean FID of one cell, sampler and step spacing against NFE: a thin
    line in the sampler's colour and line ``style`` with × markers, labelled ``exact ε̂*`` once
    per panel."""
    spacings = exact["spacing"] if "spacing" in exact else pd.Series("time", index=exact.index)
    line = exact[(exact["objective"] == obj) & (exact["schedule"] == sched)
                 & (exact["sampler"] == sampler) & (spacings == spacing)
                 ].dropna(subset=["mean"]).sort_values("nfe")
    if line.empty:
        return
    labelled = "exact ε̂*" in ax.get_legend_handles_labels()[1]
    ax.plot(line["nfe"], line["mean"], ls=style, marker="x", ms=4, lw=1.0, color=colour,
            label=None if labelled else "exact ε̂*")


def plot_fid_vs_nfe(df: pd.DataFrame, out_dir: PathLike) -> Path:
    """``fid_vs_nfe.png`` (:func:`fid_vs_nfe_figure`)."""
    return save_figure(fid_vs_nfe_figure(df), Path(out_dir) / "fid_vs_nfe.png")
