"""The figures a grid's ``summary.csv`` gets (``python -m vdm plots``): always the cell figures
(:mod:`vdm.reporting.cell_plots`), and the sampler sweep (:mod:`vdm.reporting.sampler_plots`),
likelihood (:mod:`vdm.reporting.likelihood_plots`), guidance
(:mod:`vdm.reporting.guidance_plots`) and learning-curve figures
(:mod:`vdm.reporting.learning_curves`) where the runs have what they show.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from vdm.reporting.aggregation import guidance_kinds, sampler_settings
from vdm.reporting.budgets import has_budgets
from vdm.reporting.cell_plots import (
    plot_bars,
    plot_heatmaps,
    plot_loss_curves,
    plot_sample_montage,
    plot_tradeoff,
)
from vdm.reporting.guidance_plots import plot_guidance, plot_guidance_samples
from vdm.reporting.known_answer import true_entropy
from vdm.reporting.learning_curves import plot_learning_curves
from vdm.reporting.likelihood_plots import (
    plot_denoiser_floor,
    plot_excess_eps_error,
    plot_ode_vs_elbo,
)
from vdm.reporting.plot_base import PathLike, uniform_bound_bpd
from vdm.reporting.sampler_plots import plot_fid_vs_nfe
from vdm.reporting.summary_rows import display_frame, final_step_rows, primary_rows


def plots_main(summary_csv: PathLike, log_csvs: Mapping[tuple[str, str, int], PathLike],
               grid_pngs: Mapping[tuple, PathLike], out_dir: PathLike,
               guided_samples: Mapping[tuple[str, str, str], PathLike] | None = None,
               grid_seeds: Mapping[tuple[str, str], int] | None = None,
               floor: Mapping[str, Any] | None = None,
               denoiser_floor_csv: PathLike | None = None,
               excess_eps_error_csv: PathLike | None = None) -> list[Path]:
    """CLI entry (``python -m vdm plots``): all figures from ``summary.csv``, the training logs
    and the sample grids; ``fid_vs_nfe.png`` when the runs have several sampler settings,
    ``nll_ode_vs_elbo.png`` when they have ODE likelihoods, and the guidance figures
    (:func:`~vdm.reporting.guidance_plots.plot_guidance`,
    :func:`~vdm.reporting.guidance_plots.plot_guidance_samples` from ``guided_samples``) when they
    were evaluated with guidance, and the learning curves
    (:func:`~vdm.reporting.learning_curves.plot_learning_curves`: ``learning_curve_fid.png``,
    ``learning_curve_nll.png``) when they were evaluated at several training steps (training
    snapshots); ``denoiser_floor.png`` from ``denoiser_floor_csv`` and, on a dataset with a
    known density, ``excess_eps_error.png`` from ``excess_eps_error_csv``. Returns the written
    paths."""
    summary = pd.read_csv(summary_csv)
    every = final_step_rows(display_frame(summary))  # earlier steps: the learning curves
    df = primary_rows(every)
    uniform = uniform_bound_bpd(df)
    entropy = (true_entropy(df) or (None,))[0]  # a dataset with a known density: H, bits/dim
    written = [*plot_heatmaps(df, out_dir, entropy),
               *plot_bars(df, out_dir, floor, uniform, entropy),
               plot_tradeoff(df, out_dir, floor, uniform, entropy),
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
    if excess_eps_error_csv is not None:
        written.append(plot_excess_eps_error(pd.read_csv(excess_eps_error_csv), out_dir))
    if has_budgets(summary):  # every row: one point per training budget
        written += plot_learning_curves(summary, out_dir)
    return written
