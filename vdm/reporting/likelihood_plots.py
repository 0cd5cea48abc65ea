"""The likelihood figures: the probability-flow ODE bound against the ELBO per cell, the
model's denoising error against the optimal denoiser of the training set (the floor of the
training loss) and, on a dataset with a known density, its excess ε-error over the exact
denoiser of the true distribution, per λ.

Both bounds are in bits per dimension, averaged over test images, with 95% Student-t confidence
intervals over seeds (:func:`vdm.reporting.stats.mean_ci`); the denoising error is the
per-dimension ε-MSE at each log-SNR λ, averaged over seeds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from vdm.reporting.excess_eps_table import symlog_threshold
from vdm.reporting.plot_base import (
    CI_TEXT,
    PathLike,
    cell_errorbars,
    cell_levels,
    new_figure,
    no_data,
    paired_cells,
    palette,
    save_figure,
    suptitle,
)
from vdm.reporting.summary_rows import ordered_levels, row_axis_name


def plot_ode_vs_elbo(df: pd.DataFrame, out_dir: PathLike) -> Path:
    """``nll_ode_vs_elbo.png``: per cell, the decoder-consistent probability-flow ODE bound
    ``nll_ode_vdeq_bpd`` (y; the ELBO's decoder and ``q(z_0|x)``, the ODE's density of ``z_0``)
    against the ELBO (x) on the same test images, bits/dim, 95% t-CI error bars over seeds;
    below the diagonal the ODE bound is tighter. ``df``: primary rows (display frame)."""
    objs, scheds = cell_levels(df)
    paired = "nll_elbo_bpd_on_ode_examples" in df  # the ELBO on the ODE's images
    elbo = "nll_elbo_bpd_on_ode_examples" if paired else "nll_bpd"
    cells = paired_cells(df, {"elbo": elbo, "ode": "nll_ode_vdeq_bpd"})
    fig, axes = new_figure(size=(7.0, 5.5))
    ax = axes[0, 0]
    if cells.empty:
        no_data(ax, "no decoder-consistent ODE likelihoods (nll_ode_vdeq_bpd)")
        return save_figure(fig, Path(out_dir) / "nll_ode_vs_elbo.png")
    handles = cell_errorbars(ax, cells, "elbo", "ode", objs, scheds)
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
    return save_figure(fig, Path(out_dir) / "nll_ode_vs_elbo.png")


def _split_panels(cells: pd.DataFrame, order: tuple[str, ...]):
    """A figure with one panel per data split of ``cells`` present (in ``order``, y shared) and
    the cells labelled ``objective · schedule`` with a colour each: ``(fig, axes, splits,
    labelled cells, colours)``; one empty panel when no split is present."""
    splits = [s for s in order if not cells.empty and s in set(cells["split"])]
    fig, axes = new_figure(1, max(len(splits), 1), size=(6.0 * max(len(splits), 1), 4.6),
                           sharey=True)
    if not splits:
        return fig, axes, splits, cells, {}
    labels = [f"{o} · {s}" for o, s in zip(cells["objective"], cells["schedule"], strict=True)]
    cells = cells.assign(cell=labels)
    return fig, axes, splits, cells, palette(ordered_levels(cells["cell"]))


def plot_denoiser_floor(cells: pd.DataFrame, out_dir: PathLike) -> Path:
    """``denoiser_floor.png``: per-dimension ε-MSE against λ on the training and the test split
    (one panel each, log y): the model of each cell (mean over seeds) and the optimal denoiser of
    the training set (dashed; it memorises the training set: zero error on it at high SNR, a
    large one on new images)."""
    path = Path(out_dir) / "denoiser_floor.png"
    fig, axes, splits, cells, colours = _split_panels(cells, ("train", "test"))
    if not splits:
        no_data(axes[0, 0], "no optimal-denoiser gaps")
        return save_figure(fig, path)
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
    suptitle(fig, "Model vs the optimal (posterior-mean) denoiser of the training set, mean over "
                  "seeds. The optimum memorises the training set (its samples are training "
                  "images): it is the floor of the training loss, not a better model")
    return save_figure(fig, path)


def plot_excess_eps_error(cells: pd.DataFrame, out_dir: PathLike) -> Path:
    """``excess_eps_error.png``: the excess ε-error over the exact denoiser (per dimension,
    dimensionless) against λ, one line per cell (mean over seeds) with its 95% t-CI band, on the
    test split (and the train split beside it when present). ``cells``:
    :func:`vdm.reporting.excess_eps_table.excess_eps_cells` (``excess_eps_error.csv``). Log y
    when every plotted mean and band is positive, else symmetric log (linear below the
    smallest nonzero ``|mean|``)."""
    path = Path(out_dir) / "excess_eps_error.png"
    fig, axes, splits, cells, colours = _split_panels(cells, ("test", "train"))
    if not splits:
        no_data(axes[0, 0], "no excess ε-errors (needs a dataset with a known density)")
        return save_figure(fig, path)
    mean = cells["excess_mean"].to_numpy(dtype=float)
    band = cells["excess_ci"].fillna(0.0).to_numpy(dtype=float)
    positive = bool(np.all(mean - band > 0))
    for ax, split in zip(axes[0], splits, strict=True):
        for cell, line in cells[cells["split"] == split].groupby("cell", sort=False):
            line = line.sort_values("log_snr")
            y, ci = line["excess_mean"], line["excess_ci"].fillna(0.0)
            ax.plot(line["log_snr"], y, marker="o", ms=3, lw=1, color=colours[cell], label=cell)
            ax.fill_between(line["log_snr"], y - ci, y + ci, color=colours[cell], alpha=0.2,
                            lw=0)
        if positive:
            ax.set_yscale("log")
        else:
            ax.set_yscale("symlog", linthresh=symlog_threshold(mean))
            ax.axhline(0.0, color="black", lw=0.8)
        ax.set_xlabel("log-SNR λ")
        ax.set_title(f"{split} images", fontsize=10)
    axes[0, 0].set_ylabel("excess ε-error per dimension" + (" (log)" if positive else
                                                             " (symmetric log)"))
    axes[0, -1].legend(fontsize=7)
    suptitle(fig, "Excess ε-error over the exact denoiser of the true distribution: "
                  "E‖ε̂ − ε‖² − E‖ε̂* − ε‖² per dimension, paired on the same images and noise; "
                  f"{CI_TEXT}; 0 = the Bayes-optimal denoiser")
    return save_figure(fig, path)
