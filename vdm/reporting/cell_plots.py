"""The figures laid out by cell (objective row × noise schedule) of a grid's primary evaluation:
metric heatmaps, per-row bar panels, the FID–NLL trade-off, the training-loss curves and the
sample montage.

Error bars are 95% Student-t confidence intervals of the cell mean over seeds,
``t_{0.975,n−1}·s/√n`` (:func:`vdm.reporting.stats.mean_ci`); in a grid with a single seed they
are the run's own sampling error instead, ``1.96 · fid_se`` (FID) or ``1.96 · nll_bpd_se`` (NLL)
(:func:`vdm.reporting.plot_style.one_seed_errors`), and none where the runs lack it. Missing
values (e.g. FID not computed) are left blank, never plotted as 0. FID is in the units of its
feature extractor, NLL in bits per dimension; on a dataset with a known density the NLL figures
also show its true entropy ``H`` (bits/dim), the lowest expected NLL of any model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from PIL import Image

from vdm.reporting.aggregation import cell_summary
from vdm.reporting.formatting import floor_name
from vdm.reporting.plot_base import (
    CI_TEXT,
    METRIC_FILES,
    PathLike,
    cell_errorbars,
    cell_levels,
    entropy_line,
    floor_line,
    metric_label,
    new_figure,
    no_data,
    paired_cells,
    palette,
    save_figure,
    suptitle,
    uniform_line,
)
from vdm.reporting.plot_style import normal_quantile, one_seed_errors
from vdm.reporting.summary_rows import row_axis_name


# --------------------------------------------------------------------------- heatmaps
def heatmap_figure(df: pd.DataFrame, metric: str, entropy_bpd: float | None = None) -> Figure:
    """Objective row × schedule, each cell annotated with its mean ± 95% t-CI (one seed: ± the
    run's sampling interval), the best cell boxed; the NLL's title names the true entropy ``H``
    (bits/dim) where the dataset has one (``entropy_bpd``)."""
    cells, sampling = one_seed_errors(cell_summary(df, metric), df, metric)
    objs, scheds = cell_levels(df)
    fig, axes = new_figure(size=(1.6 * len(scheds) + 2.5, 0.8 * len(objs) + 1.8))
    ax = axes[0, 0]
    means = cells.pivot(index="objective", columns="schedule", values="mean")
    means = means.reindex(index=objs, columns=scheds).astype(float)
    if not np.isfinite(means.to_numpy()).any():
        no_data(ax, f"no {metric_label(df, metric).split(',')[0]} values")
        return fig
    cis = cells.pivot(index="objective", columns="schedule", values="ci")
    cis = cis.reindex(index=objs, columns=scheds).astype(float)
    digits = 2 if metric == "fid" else 3
    annot = np.vectorize(lambda m, c: "" if np.isnan(m) else
                         f"{m:.{digits}f}" + ("" if np.isnan(c) else f"\n±{c:.{digits}f}"))(
        means.to_numpy(), cis.to_numpy())
    sns.heatmap(means, annot=annot, fmt="", mask=means.isna(), cmap="viridis_r", ax=ax,
                linewidths=0.5, cbar_kws={"label": metric_label(df, metric)})
    i, j = np.unravel_index(np.nanargmin(means.to_numpy()), means.shape)
    ax.add_patch(Rectangle((j, i), 1, 1, fill=False, edgecolor="red", lw=2.5))
    ax.set_xlabel("noise schedule")
    ax.set_ylabel(row_axis_name(df))
    truth = (f"; true entropy H = {entropy_bpd:.3f} bits/dim"
             if entropy_bpd is not None and metric == "nll_bpd" else "")
    ax.set_title(f"{metric_label(df, metric).split(',')[0]}: {sampling or CI_TEXT}\n"
                 f"red box = best cell{truth}")
    return fig


def _heatmap(df: pd.DataFrame, metric: str, path: Path, entropy_bpd: float | None = None) -> Path:
    return save_figure(heatmap_figure(df, metric, entropy_bpd), path)


def plot_heatmaps(df: pd.DataFrame, out_dir: PathLike,
                  entropy_bpd: float | None = None) -> list[Path]:
    """``fid_heatmap.png`` and ``nll_heatmap.png``: objective × schedule, annotated means (the
    NLL's title with the true entropy ``entropy_bpd`` where given)."""
    return [_heatmap(df, m, Path(out_dir) / f"{f}_heatmap.png", entropy_bpd)
            for m, f in METRIC_FILES.items()]


# --------------------------------------------------------------------------- bars
def bars_figure(df: pd.DataFrame, metric: str, floor: Mapping[str, Any] | None = None,
                uniform_bpd: float | None = None, entropy_bpd: float | None = None) -> Figure:
    """One panel per objective row, each with its own y axis (so one bad row, e.g. x0 with a
    FID of 40, does not flatten the differences among the others): a bar per schedule with the
    95% t-CI (one seed: the run's sampling interval) and the seeds as dots; the FID floor
    (held-out real images, or fresh true samples) or the uniform bound (NLL) as a reference
    line, and for the NLL the true entropy ``H`` (``entropy_bpd``, bits/dim) where the dataset
    has one."""
    cells, sampling = one_seed_errors(cell_summary(df, metric), df, metric)
    objs, scheds = cell_levels(df)
    ncols = min(max(len(objs), 1), 4)
    nrows = math.ceil(max(len(objs), 1) / ncols)
    fig, axes = new_figure(nrows, ncols, size=(max(1.0 * len(scheds), 2.4) * ncols + 1.6,
                                               3.0 * nrows + 1.0))
    for ax in axes.flat[len(objs):]:
        ax.set_axis_off()
    if not np.isfinite(cells["mean"].to_numpy(dtype=float)).any():
        no_data(axes[0, 0], f"no {metric_label(df, metric).split(',')[0]} values")
        return fig
    colours = palette(scheds)
    rng = np.random.default_rng(0)
    for ax, obj in zip(axes.flat, objs, strict=False):
        sub = cells[cells["objective"] == obj].set_index("schedule").reindex(scheds)
        x = np.arange(len(scheds))
        ax.bar(x, sub["mean"], 0.7, yerr=sub["ci"], capsize=3,
               color=[colours[s] for s in scheds], alpha=0.85)
        seeds_all = []
        for xi, sched in zip(x, scheds, strict=True):
            seeds = df.loc[(df["objective"] == obj) & (df["schedule"] == sched), metric]
            seeds_all.append(seeds.to_numpy(float))
            ax.scatter(xi + rng.uniform(-0.15, 0.15, len(seeds)), seeds, s=10, color="black",
                       zorder=3)
        values = np.concatenate([(sub["mean"] - sub["ci"].fillna(0)).to_numpy(float),
                                 (sub["mean"] + sub["ci"].fillna(0)).to_numpy(float),
                                 *seeds_all])
        if np.isfinite(values).any():
            lo, hi = np.nanmin(values), np.nanmax(values)
            pad = 0.15 * (hi - lo) if hi > lo else 0.05 * abs(hi) + 1e-3
            bottom = 0.0 if lo - pad <= 0 or lo < 0.3 * hi else lo - pad
            ax.set_ylim(bottom, hi + pad)
            if bottom != 0:
                ax.text(0.01, 0.99, "axis not from 0", transform=ax.transAxes, fontsize=6,
                        va="top")
        ax.set_xticks(x, scheds, fontsize=8, rotation=30 if len(scheds) > 3 else 0)
        ax.set_title(obj, fontsize=9)
        if floor is not None and metric == "fid":
            floor_line(ax, floor, label=ax is axes.flat[0])
            ax.set_ylim(min(ax.get_ylim()[0], 0.9 * float(floor["fid"])), ax.get_ylim()[1])
        if entropy_bpd is not None and metric == "nll_bpd":
            entropy_line(ax, entropy_bpd)
        if uniform_bpd is not None and metric == "nll_bpd":
            uniform_line(ax, uniform_bpd)
    for ax in axes[:, 0]:
        ax.set_ylabel(metric_label(df, metric), fontsize=8)
    if floor is not None and metric == "fid":
        axes.flat[0].legend(fontsize=6, loc="lower left")
    suptitle(fig, f"{metric_label(df, metric).split(',')[0]} per {row_axis_name(df)} (one panel "
                f"each, own y axis) and schedule: {sampling or CI_TEXT}; dots = seeds")
    return fig


def plot_bars(df: pd.DataFrame, out_dir: PathLike, floor: Mapping[str, Any] | None = None,
              uniform_bpd: float | None = None, entropy_bpd: float | None = None) -> list[Path]:
    """``fid_bars.png`` and ``nll_bars.png`` (:func:`bars_figure`): cell means with 95% t-CI
    error bars over seeds (one seed: the run's sampling interval) and the seeds as dots."""
    return [save_figure(bars_figure(df, m, floor, uniform_bpd, entropy_bpd),
                        Path(out_dir) / f"{f}_bars.png") for m, f in METRIC_FILES.items()]


# --------------------------------------------------------------------------- trade-off
def tradeoff_figure(df: pd.DataFrame, floor: Mapping[str, Any] | None = None,
                    uniform_bpd: float | None = None, entropy_bpd: float | None = None) -> Figure:
    """Cell means of FID against NLL with 95% t-CI error bars on both axes (one seed: the
    run's sampling intervals); colour = objective, marker = schedule; the FID floor,
    the uniform NLL bound and the true entropy ``H`` (where given) as reference lines."""
    objs, scheds = cell_levels(df)
    cells = paired_cells(df, {"nll": "nll_bpd", "fid": "fid"})
    cells, nll_sampling = one_seed_errors(cells, df, "nll_bpd", ci="ci_nll", n="n_nll")
    cells, fid_sampling = one_seed_errors(cells, df, "fid", ci="ci_fid", n="n_fid")
    fig, axes = new_figure(size=(7.0, 5.0))
    ax = axes[0, 0]
    if cells.empty:
        no_data(ax, "no cell has both FID and NLL")
        return fig
    handles = cell_errorbars(ax, cells, "nll", "fid", objs, scheds)
    if floor is not None:
        floor_line(ax, floor)
        handles.append(Line2D([], [], color="crimson", ls="--", label=floor_name(floor)))
    if entropy_bpd is not None:
        entropy_line(ax, entropy_bpd, axis="x")
    if uniform_bpd is not None:
        uniform_line(ax, uniform_bpd, axis="x")
    ax.legend(handles=handles, title=f"{row_axis_name(df)} / schedule", fontsize=8, loc="best")
    ax.set_xlabel(metric_label(df, "nll_bpd"))
    ax.set_ylabel(metric_label(df, "fid"))
    sampled = [column for column, text in (("nll_bpd_se", nll_sampling), ("fid_se", fid_sampling))
               if text]
    errors = (f"one seed: ± 95% normal interval of the run's sampling error, "
              f"{normal_quantile(0.95):.2f} × {' and '.join(sampled)}" if sampled else CI_TEXT)
    ax.set_title(f"FID vs NLL per cell ({errors}); lower left is better", fontsize=10)
    return fig


def plot_tradeoff(df: pd.DataFrame, out_dir: PathLike, floor: Mapping[str, Any] | None = None,
                  uniform_bpd: float | None = None, entropy_bpd: float | None = None) -> Path:
    """``fid_vs_nll.png`` (:func:`tradeoff_figure`)."""
    return save_figure(tradeoff_figure(df, floor, uniform_bpd, entropy_bpd),
                       Path(out_dir) / "fid_vs_nll.png")


# --------------------------------------------------------------------------- loss curves
def _read_log(path: PathLike, window_frac: float) -> pd.DataFrame | None:
    log = pd.read_csv(path)
    if not {"step", "loss"} <= set(log.columns):
        return None
    log = log[["step", "loss"]].apply(pd.to_numeric, errors="coerce").dropna()
    if log.empty:
        return None
    window = max(1, int(round(window_frac * len(log))))
    return log.assign(smooth=log["loss"].rolling(window, center=True, min_periods=1).mean())


def plot_loss_curves(log_csvs: Mapping[tuple[str, str, int], PathLike], out_dir: PathLike,
                     window_frac: float = 0.02) -> Path:
    """``loss_curves.png``: training loss vs step, one facet per schedule, colour = objective,
    one line per seed, log y; smoothed by a centred moving average over ``window_frac`` of
    each run's logged rows. Logs without ``step``/``loss`` columns are skipped."""
    logs = {k: v for k, p in log_csvs.items() if (v := _read_log(p, window_frac)) is not None}
    keys = pd.DataFrame(list(logs), columns=["objective", "schedule", "seed"])
    objs, scheds = cell_levels(keys)
    fig, axes = new_figure(1, max(len(scheds), 1), size=(4.0 * max(len(scheds), 1) + 1.0, 4.0),
                           sharey=True)
    if not logs:
        no_data(axes[0, 0], "no training logs")
        return save_figure(fig, Path(out_dir) / "loss_curves.png")
    colours = palette(objs)
    positive = all((log["smooth"] > 0).all() for log in logs.values())
    for ax, sched in zip(axes[0], scheds, strict=True):
        for (obj, s, _seed), log in logs.items():
            if s == sched:
                ax.plot(log["step"], log["smooth"], color=colours[obj], lw=1.0, alpha=0.8)
        ax.set_yscale("log" if positive else "symlog")
        ax.set_title(f"schedule: {sched}", fontsize=10)
        ax.set_xlabel("training step")
    axes[0, 0].set_ylabel("training loss (objective's own scale, log)")
    handles = [Line2D([], [], color=colours[o], label=o) for o in objs]
    axes[0, -1].legend(handles=handles, title="objective", fontsize=8)
    suptitle(fig, f"Training loss, moving average over {100 * window_frac:g}% of steps; "
                "one line per seed (loss scales differ by objective)")
    return save_figure(fig, Path(out_dir) / "loss_curves.png")


# --------------------------------------------------------------------------- sample montage
def _image(path: PathLike) -> tuple[np.ndarray, str | None]:
    with Image.open(path) as img:
        if img.mode in ("L", "I", "I;16", "F", "1"):
            return np.asarray(img.convert("L")), "gray"
        return np.asarray(img.convert("RGB")), None


def plot_sample_montage(grid_pngs: Mapping[tuple, PathLike], out_dir: PathLike,
                        seeds: Mapping[tuple[str, str], int] | None = None) -> Path:
    """``samples_montage.png``: rows = objectives, columns = schedules, each tile one run's
    sample grid. Keys are ``(objective, schedule)`` (extra key items such as a seed are
    ignored; the first path per cell is shown)."""
    tiles: dict[tuple[str, str], PathLike] = {}
    for key, path in grid_pngs.items():
        tiles.setdefault((key[0], key[1]), path)
    keys = pd.DataFrame(list(tiles), columns=["objective", "schedule"])
    objs, scheds = cell_levels(keys)
    nr, nc = max(len(objs), 1), max(len(scheds), 1)
    fig, axes = new_figure(nr, nc, size=(2.2 * nc + 0.6, 2.2 * nr + 0.6))
    if not tiles:
        no_data(axes[0, 0], "no sample grids")
        return save_figure(fig, Path(out_dir) / "samples_montage.png")
    for (i, obj), (j, sched) in ((a, b) for a in enumerate(objs) for b in enumerate(scheds)):
        ax = axes[i, j]
        ax.set_xticks([])
        ax.set_yticks([])
        if (obj, sched) in tiles:
            pixels, cmap = _image(tiles[(obj, sched)])
            ax.imshow(pixels, cmap=cmap, vmin=0, vmax=255, interpolation="nearest")
        else:
            ax.text(0.5, 0.5, "missing", ha="center", va="center", transform=ax.transAxes)
        if i == 0:
            ax.set_title(sched, fontsize=10)
        if j == 0:
            ax.set_ylabel(obj, fontsize=10)
    shown = sorted(set((seeds or {}).values()))
    which = (f"seed {shown[0]}" if len(shown) == 1 else "the seed in each title"
             if shown else "one seed")
    suptitle(fig, f"Samples of {which} of each cell (its lowest): rows = objective (prefixed by "
                "what varies besides), columns = noise schedule")
    return save_figure(fig, Path(out_dir) / "samples_montage.png")
