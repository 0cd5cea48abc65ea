"""Figures of the benchmark: heatmaps, bars, FID–NLL trade-off, loss curves, sample montage.

All figures are drawn on explicit :class:`matplotlib.figure.Figure` objects with an Agg canvas
(no pyplot state, no display needed). Error bars are 95% Student-t confidence intervals of the
cell mean over seeds, ``t_{0.975,n−1}·s/√n`` (:func:`vdm.reporting.stats.mean_ci`); in a grid with a
single seed they are the run's own sampling error instead, ``1.96 · fid_se`` (FID) or
``1.96 · nll_bpd_se`` (NLL) (:func:`vdm.reporting.plot_style.one_seed_errors`), and none where the
runs lack it. Missing values (e.g. FID not computed) are left blank, never plotted as 0. Titles
are fitted to the width they have when a figure is saved (:func:`vdm.reporting.plot_style.fit_titles`).
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
from matplotlib.patches import Rectangle
from PIL import Image

from vdm.core.data import dataset_info
from vdm.core.provenance import atomic_output
from vdm.reporting.aggregation import (
    cell_summary,
    fid_label,
    guidance_cells,
    guidance_kinds,
    guidance_rows,
    sampler_settings,
    sampler_sweep_cells,
)
from vdm.reporting.plot_style import fit_titles, normal_quantile, one_seed_errors, tick_at_values
from vdm.reporting.summary_rows import (
    display_frame,
    final_step_rows,
    guidance_kind_column,
    ordered_levels,
    primary_rows,
    row_axis_name,
)

METRIC_FILES = {"fid": "fid", "nll_bpd": "nll"}
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
CI_TEXT = "mean ± 95% CI (Student t over seeds)"
PathLike = str | Path


def _figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (6.4, 4.8),
            sharey: bool = False) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False, sharey=sharey)


def _save(fig: Figure, path: Path) -> Path:
    fit_titles(fig)
    with atomic_output(path) as tmp:  # a PNG is never seen half-written
        fig.savefig(tmp, dpi=120)
    return path


def _suptitle(fig: Figure, text: str, fontsize: float = 10) -> None:
    """A figure title (wrapped to the figure's width when saved, its own line breaks kept)."""
    fig.suptitle(text, fontsize=fontsize)


def _no_data(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def metric_label(df: pd.DataFrame, metric: str) -> str:
    """Axis label with units and direction, naming the FID feature extractor."""
    if metric == "fid":
        return f"{fid_label(df)}, lower is better"
    if metric == "nll_bpd":
        return "NLL (bits/dim), lower is better"
    return metric


def _palette(levels: Sequence[str]) -> dict[str, tuple]:
    return dict(zip(levels, sns.color_palette("tab10", max(len(levels), 1)), strict=False))


def _levels(df: pd.DataFrame) -> tuple[list[str], list[str]]:
    return ordered_levels(df["objective"]), ordered_levels(df["schedule"])


# --------------------------------------------------------------------------- heatmaps
def heatmap_figure(df: pd.DataFrame, metric: str) -> Figure:
    """Objective row × schedule, each cell annotated with its mean ± 95% t-CI (one seed: ± the
    run's sampling interval), the best cell boxed."""
    cells, sampling = one_seed_errors(cell_summary(df, metric), df, metric)
    objs, scheds = _levels(df)
    fig, axes = _figure(size=(1.6 * len(scheds) + 2.5, 0.8 * len(objs) + 1.8))
    ax = axes[0, 0]
    means = cells.pivot(index="objective", columns="schedule", values="mean")
    means = means.reindex(index=objs, columns=scheds).astype(float)
    if not np.isfinite(means.to_numpy()).any():
        _no_data(ax, f"no {metric_label(df, metric).split(',')[0]} values")
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
    ax.set_title(f"{metric_label(df, metric).split(',')[0]}: {sampling or CI_TEXT}\n"
                 "red box = best cell")
    return fig


def _heatmap(df: pd.DataFrame, metric: str, path: Path) -> Path:
    return _save(heatmap_figure(df, metric), path)


def plot_heatmaps(df: pd.DataFrame, out_dir: PathLike) -> list[Path]:
    """``fid_heatmap.png`` and ``nll_heatmap.png``: objective × schedule, annotated means."""
    return [_heatmap(df, m, Path(out_dir) / f"{f}_heatmap.png") for m, f in METRIC_FILES.items()]


# --------------------------------------------------------------------------- bars
def bars_figure(df: pd.DataFrame, metric: str, floor: Mapping[str, Any] | None = None,
                uniform_bpd: float | None = None) -> Figure:
    """One panel per objective row, each with its own y axis (so one bad row, e.g. x0 with a
    FID of 40, does not flatten the differences among the others): a bar per schedule with the
    95% t-CI (one seed: the run's sampling interval) and the seeds as dots; the real-data
    floor (FID) or the uniform bound (NLL) as a reference line."""
    cells, sampling = one_seed_errors(cell_summary(df, metric), df, metric)
    objs, scheds = _levels(df)
    ncols = min(max(len(objs), 1), 4)
    nrows = math.ceil(max(len(objs), 1) / ncols)
    fig, axes = _figure(nrows, ncols, size=(max(1.0 * len(scheds), 2.4) * ncols + 1.6,
                                            3.0 * nrows + 1.0))
    for ax in axes.flat[len(objs):]:
        ax.set_axis_off()
    if not np.isfinite(cells["mean"].to_numpy(dtype=float)).any():
        _no_data(axes[0, 0], f"no {metric_label(df, metric).split(',')[0]} values")
        return fig
    colours = _palette(scheds)
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
            _floor_line(ax, floor, label=ax is axes.flat[0])
            ax.set_ylim(min(ax.get_ylim()[0], 0.9 * float(floor["fid"])), ax.get_ylim()[1])
        if uniform_bpd is not None and metric == "nll_bpd":
            _uniform_line(ax, uniform_bpd)
    for ax in axes[:, 0]:
        ax.set_ylabel(metric_label(df, metric), fontsize=8)
    if floor is not None and metric == "fid":
        axes.flat[0].legend(fontsize=6, loc="lower left")
    _suptitle(fig, f"{metric_label(df, metric).split(',')[0]} per {row_axis_name(df)} (one panel "
                 f"each, own y axis) and schedule: {sampling or CI_TEXT}; dots = seeds")
    return fig


def plot_bars(df: pd.DataFrame, out_dir: PathLike, floor: Mapping[str, Any] | None = None,
              uniform_bpd: float | None = None) -> list[Path]:
    """``fid_bars.png`` and ``nll_bars.png`` (:func:`bars_figure`): cell means with 95% t-CI
    error bars over seeds (one seed: the run's sampling interval) and the seeds as dots."""
    return [_save(bars_figure(df, m, floor, uniform_bpd), Path(out_dir) / f"{f}_bars.png")
            for m, f in METRIC_FILES.items()]


def _paired_cells(df: pd.DataFrame, metrics: Mapping[str, str]) -> pd.DataFrame:
    """Cells (objective row, schedule) that have both metrics: :func:`cell_summary` of each,
    side by side as ``mean_<name>``, ``ci_<name>``, ``n_<name>`` (``metrics``: two
    name → column pairs), the input of :func:`_cell_errorbars`."""
    (x, x_metric), (y, y_metric) = metrics.items()
    cells = cell_summary(df, x_metric).merge(cell_summary(df, y_metric),
                                             on=["objective", "schedule"],
                                             suffixes=(f"_{x}", f"_{y}"))
    return cells.dropna(subset=[f"mean_{x}", f"mean_{y}"])


def _cell_errorbars(ax: Axes, cells: pd.DataFrame, x: str, y: str, objs: Sequence[str],
                    scheds: Sequence[str]) -> list[Line2D]:
    """One point per cell at (``mean_<x>``, ``mean_<y>``) with its 95% t-CIs on both axes;
    colour = objective row, marker = schedule. Returns the legend handles."""
    colours = _palette(objs)
    markers = {s: MARKERS[i % len(MARKERS)] for i, s in enumerate(scheds)}
    for c in cells.itertuples():
        ax.errorbar(getattr(c, f"mean_{x}"), getattr(c, f"mean_{y}"), xerr=getattr(c, f"ci_{x}"),
                    yerr=getattr(c, f"ci_{y}"), fmt=markers[c.schedule], ms=8, capsize=3,
                    color=colours[c.objective], mec="black")
    handles = [Line2D([], [], ls="", marker="o", color=colours[o], label=o) for o in objs]
    return handles + [Line2D([], [], ls="", marker=markers[s], color="grey", label=s)
                      for s in scheds]


# --------------------------------------------------------------------------- trade-off
def tradeoff_figure(df: pd.DataFrame, floor: Mapping[str, Any] | None = None,
                    uniform_bpd: float | None = None) -> Figure:
    """Cell means of FID against NLL with 95% t-CI error bars on both axes (one seed: the
    run's sampling intervals); colour = objective, marker = schedule; the real-data FID floor
    and the uniform NLL bound as reference lines."""
    objs, scheds = _levels(df)
    cells = _paired_cells(df, {"nll": "nll_bpd", "fid": "fid"})
    cells, nll_sampling = one_seed_errors(cells, df, "nll_bpd", ci="ci_nll", n="n_nll")
    cells, fid_sampling = one_seed_errors(cells, df, "fid", ci="ci_fid", n="n_fid")
    fig, axes = _figure(size=(7.0, 5.0))
    ax = axes[0, 0]
    if cells.empty:
        _no_data(ax, "no cell has both FID and NLL")
        return fig
    handles = _cell_errorbars(ax, cells, "nll", "fid", objs, scheds)
    if floor is not None:
        _floor_line(ax, floor)
        handles.append(Line2D([], [], color="crimson", ls="--", label="real-data FID floor"))
    if uniform_bpd is not None:
        _uniform_line(ax, uniform_bpd, axis="x")
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
                  uniform_bpd: float | None = None) -> Path:
    """``fid_vs_nll.png`` (:func:`tradeoff_figure`)."""
    return _save(tradeoff_figure(df, floor, uniform_bpd), Path(out_dir) / "fid_vs_nll.png")


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
    objs, scheds = _levels(keys)
    fig, axes = _figure(1, max(len(scheds), 1), size=(4.0 * max(len(scheds), 1) + 1.0, 4.0),
                        sharey=True)
    if not logs:
        _no_data(axes[0, 0], "no training logs")
        return _save(fig, Path(out_dir) / "loss_curves.png")
    colours = _palette(objs)
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
    _suptitle(fig, f"Training loss, moving average over {100 * window_frac:g}% of steps; "
                 "one line per seed (loss scales differ by objective)")
    return _save(fig, Path(out_dir) / "loss_curves.png")


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
    objs, scheds = _levels(keys)
    nr, nc = max(len(objs), 1), max(len(scheds), 1)
    fig, axes = _figure(nr, nc, size=(2.2 * nc + 0.6, 2.2 * nr + 0.6))
    if not tiles:
        _no_data(axes[0, 0], "no sample grids")
        return _save(fig, Path(out_dir) / "samples_montage.png")
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
    _suptitle(fig, f"Samples of {which} of each cell (its lowest): rows = objective (prefixed by "
                 "what varies besides), columns = noise schedule")
    return _save(fig, Path(out_dir) / "samples_montage.png")


# --------------------------------------------------------------------------- sampler sweep
def fid_vs_nfe_figure(df: pd.DataFrame) -> Figure:
    """FID against network evaluations per image (log x, ticked at the measured NFEs), one
    panel per cell (rows = objective row, columns = schedule), one line per sampler with its
    95% t-CI band over seeds (one seed: the run's sampling interval); every point is the same
    trained model sampled with another setting. ``df``: all rows of ``summary.csv`` (display
    frame)."""
    cells, sampling = one_seed_errors(
        sampler_sweep_cells(df), df[guidance_kind_column(df) == "none"], "fid",
        {"objective": "objective", "schedule": "schedule", "sampler": "sampler",
         "steps": "sample_steps"})
    objs, scheds = ordered_levels(cells["objective"]), ordered_levels(cells["schedule"])
    nr, nc = max(len(objs), 1), max(len(scheds), 1)
    fig, axes = _figure(nr, nc, size=(max(3.6 * nc + 1.2, 7.0), 2.8 * nr + 1.0), sharey=False)
    if cells.empty:
        _no_data(axes[0, 0], "no sampler settings")
        return fig
    samplers = ordered_levels(cells["sampler"])
    colours = _palette(samplers)
    for (i, obj), (j, sched) in ((a, b) for a in enumerate(objs) for b in enumerate(scheds)):
        ax = axes[i, j]
        in_cell = cells[(cells["objective"] == obj) & (cells["schedule"] == sched)]
        for sampler in samplers:
            line = in_cell[in_cell["sampler"] == sampler].sort_values("nfe")
            if line.empty:
                continue
            ax.plot(line["nfe"], line["mean"], marker="o", ms=4, color=colours[sampler],
                    label=sampler)
            ci = line["ci"].fillna(0.0)
            ax.fill_between(line["nfe"], line["mean"] - ci, line["mean"] + ci,
                            color=colours[sampler], alpha=0.2, lw=0)
        ax.set_xscale("log")
        tick_at_values(ax.xaxis, in_cell["nfe"])
        ax.set_title(f"{obj} · {sched}", fontsize=9)
        if i == nr - 1:
            ax.set_xlabel("network evaluations per image (NFE)")
        if j == 0:
            ax.set_ylabel(fid_label(df))
    axes[0, -1].legend(title="sampler", fontsize=8)
    _suptitle(fig, "FID vs sampling cost, same trained models; lower is better\n"
                   f"{sampling or CI_TEXT} as a band")
    return fig


def plot_fid_vs_nfe(df: pd.DataFrame, out_dir: PathLike) -> Path:
    """``fid_vs_nfe.png`` (:func:`fid_vs_nfe_figure`)."""
    return _save(fid_vs_nfe_figure(df), Path(out_dir) / "fid_vs_nfe.png")


def plot_ode_vs_elbo(df: pd.DataFrame, out_dir: PathLike) -> Path:
    """``nll_ode_vs_elbo.png``: per cell, the decoder-consistent probability-flow ODE bound
    ``nll_ode_vdeq_bpd`` (y; the ELBO's decoder and ``q(z_0|x)``, the ODE's density of ``z_0``)
    against the ELBO (x) on the same test images, bits/dim, 95% t-CI error bars over seeds;
    below the diagonal the ODE bound is tighter. ``df``: primary rows (display frame)."""
    objs, scheds = _levels(df)
    paired = "nll_elbo_bpd_on_ode_examples" in df  # the ELBO on the ODE's images
    elbo = "nll_elbo_bpd_on_ode_examples" if paired else "nll_bpd"
    cells = _paired_cells(df, {"elbo": elbo, "ode": "nll_ode_vdeq_bpd"})
    fig, axes = _figure(size=(7.0, 5.5))
    ax = axes[0, 0]
    if cells.empty:
        _no_data(ax, "no decoder-consistent ODE likelihoods (nll_ode_vdeq_bpd)")
        return _save(fig, Path(out_dir) / "nll_ode_vs_elbo.png")
    handles = _cell_errorbars(ax, cells, "elbo", "ode", objs, scheds)
    lo = float(min(cells["mean_elbo"].min(), cells["mean_ode"].min()))
    hi = float(max(cells["mean_elbo"].max(), cells["mean_ode"].max()))
    pad = 0.05 * (hi - lo) + 1e-3
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="grey", ls="--", lw=1,
            label="ODE = ELBO")
    handles.append(Line2D([], [], ls="--", color="grey", label="ODE = ELBO"))
    ax.legend(handles=handles, title=f"{row_axis_name(df)} / schedule", fontsize=7)
    examples = sorted({int(n) for n in df.get("nll_ode_num_examples", pd.Series()).dropna()})
    ax.set_xlabel("ELBO bound (bits/dim)" + (", same images" if paired else ", all test images"))
    ax.set_ylabel("probability-flow ODE bound, decoder-consistent (bits/dim)")
    ax.set_title(f"Likelihood bounds per cell ({CI_TEXT}); ODE on "
                 f"{'/'.join(map(str, examples)) or '?'} test images; lower is better",
                 fontsize=9)
    return _save(fig, Path(out_dir) / "nll_ode_vs_elbo.png")


# --------------------------------------------------------------------------- guidance
GUIDANCE_NAMES = {"cfg": "classifier-free guidance", "classifier": "classifier guidance"}


def _guidance_curves(df: pd.DataFrame, metric: str, ylabel: str, path: Path,
                     reference: float | None = None, reference_label: str = "") -> Path:
    """One panel per guidance kind: ``metric`` against the guidance weight w, one line per cell
    that was guided with its 95% t-CI band over seeds (one seed: the run's sampling interval,
    where it has one); w = 0: the plain conditional sampler."""
    cells = guidance_cells(df)
    if not cells.empty:  # cells evaluated at w = 0 only (e.g. unconditional models) have no curve
        guided = cells.groupby(["objective", "schedule", "guidance_kind"], sort=False)[
            "guidance_weight"].transform("max") > 0
        cells = cells[guided]
    kinds = ordered_levels(cells["guidance_kind"]) if not cells.empty else []
    fig, axes = _figure(1, max(len(kinds), 1), size=(5.2 * max(len(kinds), 1) + 1.0, 4.4),
                        sharey=True)
    if cells.empty or f"{metric}_mean" not in cells:
        _no_data(axes[0, 0], "no guidance settings")
        return _save(fig, path)
    labels = [f"{o} · {s}" for o, s in zip(cells["objective"], cells["schedule"], strict=True)]
    cells = cells.assign(cell=labels)
    colours = _palette(ordered_levels(cells["cell"]))
    rows = guidance_rows(df)
    sampling = None
    for ax, kind in zip(axes[0], kinds, strict=True):
        of_kind, sampling = one_seed_errors(
            cells[cells["guidance_kind"] == kind],
            rows[guidance_kind_column(rows).isin(["none", kind])], metric,
            {k: k for k in ("objective", "schedule", "guidance_weight")}, ci=f"{metric}_ci")
        for cell, line in of_kind.groupby("cell", sort=False):
            line = line.sort_values("guidance_weight")
            mean, ci = line[f"{metric}_mean"], line[f"{metric}_ci"].fillna(0.0)
            ax.plot(line["guidance_weight"], mean, marker="o", ms=4, color=colours[cell],
                    label=cell)
            ax.fill_between(line["guidance_weight"], mean - ci, mean + ci, color=colours[cell],
                            alpha=0.15, lw=0)
        if reference is not None:
            ax.axhline(reference, color="grey", ls="--", lw=1, label=reference_label)
        ax.set_title(GUIDANCE_NAMES.get(kind, kind), fontsize=10)
        ax.set_xlabel("guidance weight w")
    axes[0, 0].set_ylabel(ylabel)
    axes[0, -1].legend(title=f"{row_axis_name(df)} · schedule", fontsize=7)
    _suptitle(fig, f"{ylabel.split(',')[0]} vs guidance weight ({sampling or CI_TEXT} as a band)")
    return _save(fig, path)


def plot_guidance(df: pd.DataFrame, out_dir: PathLike) -> list[Path]:
    """``fid_vs_guidance.png``, ``accuracy_vs_guidance.png`` (with the dataset classifier's own
    test accuracy as a dashed line) and ``precision_recall_guidance.png`` (the precision-recall
    trade-off traced by w: one line per cell, weights annotated). ``df``: all rows (display
    frame)."""
    out = Path(out_dir)
    test_accuracy = df.get("classifier_test_accuracy", pd.Series(dtype=float)).dropna()
    written = [
        _guidance_curves(df, "fid", metric_label(df, "fid"), out / "fid_vs_guidance.png"),
        _guidance_curves(df, "class_accuracy", "class accuracy of the samples, higher = more "
                         "on-class", out / "accuracy_vs_guidance.png",
                         float(test_accuracy.iloc[0]) if len(test_accuracy) else None,
                         "classifier's own test accuracy")]
    cells = guidance_cells(df)
    kinds = ordered_levels(cells["guidance_kind"]) if not cells.empty else []
    fig, axes = _figure(1, max(len(kinds), 1), size=(5.2 * max(len(kinds), 1) + 1.0, 4.6),
                        sharey=True)
    if cells.empty or "precision_mean" not in cells:
        _no_data(axes[0, 0], "no precision/recall with guidance")
    else:
        cells = cells.assign(cell=[f"{o} · {s}" for o, s in zip(cells["objective"],
                                                                cells["schedule"], strict=True)])
        colours = _palette(ordered_levels(cells["cell"]))
        for ax, kind in zip(axes[0], kinds, strict=True):
            for cell, line in cells[cells["guidance_kind"] == kind].groupby("cell", sort=False):
                line = line.sort_values("guidance_weight")
                ax.plot(line["recall_mean"], line["precision_mean"], marker="o", ms=4,
                        color=colours[cell], label=cell)
                for row in line.itertuples():
                    ax.annotate(f"{row.guidance_weight:g}", (row.recall_mean, row.precision_mean),
                                fontsize=6, xytext=(2, 2), textcoords="offset points")
            ax.set_title(GUIDANCE_NAMES.get(kind, kind), fontsize=10)
            ax.set_xlabel("recall (diversity), higher is better")
        axes[0, 0].set_ylabel("precision (fidelity), higher is better")
        axes[0, -1].legend(title=f"{row_axis_name(df)} · schedule", fontsize=7)
        _suptitle(fig, "Precision-recall traced by the guidance weight w (numbers: w; mean over "
                     "seeds)")
    written.append(_save(fig, out / "precision_recall_guidance.png"))
    return written


def guidance_sample_panels(cells: pd.DataFrame, cell: tuple[str, str]
                           ) -> list[tuple[str, float, str]]:
    """Panels of :func:`plot_guidance_samples` for ``cell`` (objective row, schedule), from
    :func:`~vdm.reporting.aggregation.guidance_cells`: ``(kind, weight, title)`` for w = 0 (once,
    kind ``none``), then per guidance kind its best-FID weight among w > 0 and its largest
    weight (once if they coincide); titles say where the best FID overall is."""
    in_cell = cells[(cells["objective"] == cell[0]) & (cells["schedule"] == cell[1])]
    best_overall = {kind: float(curve.sort_values("fid_mean")["guidance_weight"].iloc[0])
                    for kind, curve in in_cell.groupby("guidance_kind", sort=False)}
    unguided_best = [GUIDANCE_NAMES.get(k, k) for k, w in best_overall.items() if w == 0]
    if unguided_best and len(unguided_best) == len(best_overall):
        unguided_best = ["every kind"]
    panels = [("none", 0.0, "w = 0 (no guidance)" + (
        f"\nbest FID of {' and '.join(unguided_best)}" if unguided_best else ""))]
    for kind in ordered_levels(cells["guidance_kind"]):
        guided = in_cell[(in_cell["guidance_kind"] == kind) & (in_cell["guidance_weight"] > 0)]
        if guided.empty:
            continue
        best = float(guided.sort_values("fid_mean")["guidance_weight"].iloc[0])
        largest = float(guided["guidance_weight"].max())
        name = GUIDANCE_NAMES.get(kind, kind)
        panels.append((kind, best, f"{name}\nw = {best:g}, best FID of w > 0"
                       + (" (and overall)" if best_overall[kind] == best else "")))
        if largest != best:
            panels.append((kind, largest, f"{name}\nw = {largest:g}, the largest"))
    return panels


def plot_guidance_samples(df: pd.DataFrame, samples: Mapping[tuple[str, str, str], PathLike],
                          out_dir: PathLike, per_class: int = 8) -> Path:
    """``guidance_samples.png``: the samples of one cell, one row per class: at w = 0 (no
    guidance; one panel, shared by every kind), then for each guidance kind at its best-FID
    weight among w > 0 and at its largest weight (the panel titles say which weight has the
    best FID overall, w = 0 included). The cell is the one with the lowest mean FID at w = 0;
    the images are those of its lowest seed, every panel from the same initial noise.
    ``samples`` maps (objective row, schedule, setting name) to that seed's ``samples.npz``
    (with ``labels``)."""
    cells = guidance_cells(df)
    path = Path(out_dir) / "guidance_samples.png"
    if cells.empty:
        fig, axes = _figure()
        _no_data(axes[0, 0], "no guidance settings")
        return _save(fig, path)
    start = cells[cells["guidance_weight"] == 0].sort_values("fid_mean").iloc[0]
    cell = (start["objective"], start["schedule"])
    panels = guidance_sample_panels(cells, cell)
    primary = primary_rows(df)
    method, steps = primary["sampler"].iloc[0], int(primary["sample_steps"].iloc[0])
    fig, axes = _figure(1, len(panels), size=(2.6 * len(panels) + 0.8, 3.4))
    for ax, (kind, weight, title) in zip(axes[0], panels, strict=True):
        setting = f"{method}-{steps}" + ("" if weight == 0 else f"-{kind}-{weight:g}")
        source = samples.get((*cell, setting))
        ax.set_xticks([])
        ax.set_yticks([])
        if source is None:
            ax.text(0.5, 0.5, "missing", ha="center", va="center", transform=ax.transAxes)
            continue
        with np.load(source) as npz:
            images, labels = npz["images"], npz["labels"]
        rows = []
        for c in sorted(set(labels.tolist())):
            chosen = images[labels == c][:per_class]
            rows.append(np.concatenate(list(chosen), axis=-1))  # (C, H, per_class * W)
        grid = np.concatenate(rows, axis=-2)  # (C, classes * H, per_class * W)
        ax.imshow(grid[0] if grid.shape[0] == 1 else grid.transpose(1, 2, 0),
                  cmap="gray" if grid.shape[0] == 1 else None, vmin=0, vmax=255,
                  interpolation="nearest")
        ax.set_title(title, fontsize=8)
    axes[0, 0].set_ylabel("one row per class (0 at the top)", fontsize=8)
    _suptitle(fig, f"Guided samples of {cell[0]} · {cell[1]} (lowest seed)")
    return _save(fig, path)


# --------------------------------------------------------------------------- floors
def _floor_line(ax: Axes, floor: Mapping[str, Any] | None, label: bool = True) -> None:
    """A dashed horizontal line at the real-data FID floor."""
    if floor is None:
        return
    ax.axhline(float(floor["fid"]), color="crimson", ls="--", lw=1,
               label=f"real data ({floor['num_floor_images']} {floor['floor_split']} images)"
               if label else None)


def uniform_bound_bpd(df: pd.DataFrame) -> float | None:
    """``log₂ K`` bits/dim, the NLL of the uniform distribution over the K levels of the
    summary's dataset (:func:`vdm.core.data.dataset_info`); ``None`` for several or unknown
    datasets."""
    names = df["dataset"].dropna().unique() if "dataset" in df else []
    try:
        return math.log2(dataset_info(str(names[0]))["num_levels"]) if len(names) == 1 else None
    except ValueError:
        return None


def _uniform_line(ax: Axes, bound: float, axis: str = "y") -> None:
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


def plot_denoiser_floor(cells: pd.DataFrame, out_dir: PathLike) -> Path:
    """``denoiser_floor.png``: per-dimension ε-MSE against λ on the training and the test split
    (one panel each, log y): the model of each cell (mean over seeds) and the optimal denoiser of
    the training set (dashed; it memorises the training set: zero error on it at high SNR, a
    large one on new images)."""
    path = Path(out_dir) / "denoiser_floor.png"
    splits = [s for s in ("train", "test") if not cells.empty and s in set(cells["split"])]
    fig, axes = _figure(1, max(len(splits), 1), size=(6.0 * max(len(splits), 1), 4.6),
                        sharey=True)
    if not splits:
        _no_data(axes[0, 0], "no optimal-denoiser gaps")
        return _save(fig, path)
    labels = [f"{o} · {s}" for o, s in zip(cells["objective"], cells["schedule"], strict=True)]
    cells = cells.assign(cell=labels)
    colours = _palette(ordered_levels(cells["cell"]))
    for ax, split in zip(axes[0], splits, strict=True):
        in_split = cells[cells["split"] == split]
        for cell, line in in_split.groupby("cell", sort=False):
            line = line.sort_values("log_snr")
            ax.plot(line["log_snr"], line["model_mse"], marker="o", ms=3, color=colours[cell],
                    label=cell, lw=1)
        optimum = in_split.groupby("level")[["log_snr", "optimum_mse"]].mean().sort_values(
            "log_snr")
        ax.plot(optimum["log_snr"], optimum["optimum_mse"].clip(lower=1e-6), color="black",
                ls="--", lw=1.5, label="optimal denoiser of the training set")
        ax.set_yscale("log")
        ax.set_xlabel("log-SNR λ")
        ax.set_title(f"{split} images", fontsize=10)
    axes[0, 0].set_ylabel("ε-MSE per dimension (log; optimum clipped at 1e-6)")
    axes[0, -1].legend(fontsize=7)
    _suptitle(fig, "Model vs the optimal (posterior-mean) denoiser of the training set, mean over "
                   "seeds. The optimum memorises the training set (its samples are training "
                   "images): it is the floor of the training loss, not a better model")
    return _save(fig, path)


# --------------------------------------------------------------------------- CLI layer
def plots_main(summary_csv: PathLike, log_csvs: Mapping[tuple[str, str, int], PathLike],
               grid_pngs: Mapping[tuple, PathLike], out_dir: PathLike,
               guided_samples: Mapping[tuple[str, str, str], PathLike] | None = None,
               grid_seeds: Mapping[tuple[str, str], int] | None = None,
               floor: Mapping[str, Any] | None = None,
               denoiser_floor_csv: PathLike | None = None) -> list[Path]:
    """CLI entry (``python -m vdm plots``): all figures from ``summary.csv``, the training logs
    and the sample grids; ``fid_vs_nfe.png`` when the runs have several sampler settings,
    ``nll_ode_vs_elbo.png`` when they have ODE likelihoods, and the guidance figures
    (:func:`plot_guidance`, :func:`plot_guidance_samples` from ``guided_samples``) when they
    were evaluated with guidance. Returns the written paths."""
    every = final_step_rows(display_frame(pd.read_csv(summary_csv)))  # earlier steps: curves
    df = primary_rows(every)
    uniform = uniform_bound_bpd(df)
    written = [*plot_heatmaps(df, out_dir), *plot_bars(df, out_dir, floor, uniform),
               plot_tradeoff(df, out_dir, floor, uniform),
               plot_loss_curves(log_csvs, out_dir),
               plot_sample_montage(grid_pngs, out_dir, grid_seeds)]
    if len(sampler_settings(every)) > 1:
        written.append(plot_fid_vs_nfe(every, out_dir))
    if "nll_ode_bpd" in df and df["nll_ode_bpd"].notna().any():
        written.append(plot_ode_vs_elbo(df, out_dir))
    if guidance_kinds(every):
        written += plot_guidance(every, out_dir)
        written.append(plot_guidance_samples(every, guided_samples or {}, out_dir))
    if denoiser_floor_csv is not None:
        written.append(plot_denoiser_floor(pd.read_csv(denoiser_floor_csv), out_dir))
    return written
