"""Per-cell statistics of the summary frame: the numbers behind every table and figure.

A cell is an (objective row, schedule) pair of one dataset (the objective row is
``parameterization / objective`` when the grid varies the parameterization,
:func:`vdm.reporting.summary_rows.display_frame`). A cell's value of a metric over its seeds is
``mean ± t_{0.975,n−1}·s/√n`` (:func:`vdm.reporting.stats.mean_ci`), in the metric's own units
(NLL in bits/dim, FID in the feature space of :func:`fid_label`). Cell statistics of the primary
evaluation setting (:func:`cell_summary`), of each unguided sampler setting
(:func:`sampler_sweep_cells`), of each guidance weight (:func:`guidance_cells`) and of the
optimal-denoiser gaps (:func:`denoiser_floor_cells`). Objectives and schedules keep the order
in which they first appear in the data unless an explicit order is passed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from vdm.reporting.stats import mean_ci
from vdm.reporting.summary_columns import GUIDANCE_METRICS
from vdm.reporting.summary_rows import (
    display_frame,
    guidance_kind_column,
    ordered_levels,
    primary_rows,
    spacing_column,
)


def _check_one_dataset(df: pd.DataFrame) -> None:
    if "dataset" in df and df["dataset"].nunique() > 1:
        raise ValueError("table spans several datasets; filter to one dataset first")


def metric_values(df: pd.DataFrame, metric: str) -> pd.Series:
    """``df[metric]`` as floats; all NaN when ``df`` has no such column (metric not computed)."""
    return df[metric].astype(float) if metric in df else pd.Series(np.nan, index=df.index)


def cell_summary(df: pd.DataFrame, metric: str, objective_order: Sequence[str] | None = None,
                 schedule_order: Sequence[str] | None = None,
                 confidence: float = 0.95) -> pd.DataFrame:
    """Per (objective, schedule) cell that has runs: ``mean``, ``ci`` (t-CI half-width), ``n``
    (number of non-NaN values of ``metric``), in objective-major order."""
    _check_one_dataset(df)
    values = metric_values(df, metric)
    rows = []
    for obj in ordered_levels(df["objective"], objective_order):
        for sched in ordered_levels(df["schedule"], schedule_order):
            cell = values[(df["objective"] == obj) & (df["schedule"] == sched)]
            if cell.empty:
                continue
            mean, ci = mean_ci(cell.to_numpy(), confidence)
            rows.append({"objective": obj, "schedule": sched, "mean": mean, "ci": ci,
                         "n": int(cell.notna().sum())})
    return pd.DataFrame(rows, columns=["objective", "schedule", "mean", "ci", "n"])


def lambda_ranges(df: pd.DataFrame) -> pd.DataFrame:
    """Mean ``logsnr_min`` and ``logsnr_max`` per schedule (index: schedule)."""
    cols = ["logsnr_min", "logsnr_max"]
    return pd.DataFrame({c: metric_values(df, c) for c in cols}).groupby(df["schedule"]).mean()


def feature_extractors(df: pd.DataFrame) -> list[str]:
    """Distinct FID feature extractors named in the runs that have an FID."""
    if "feature_extractor" not in df:
        return []
    has_fid = metric_values(df, "fid").notna()
    return [str(v) for v in ordered_levels(df.loc[has_fid, "feature_extractor"])]


def fid_label(df: pd.DataFrame) -> str:
    """Axis/heading label naming the FID's feature space, e.g. ``FID (classifier-digits)``."""
    names = feature_extractors(df)
    return f"FID ({' / '.join(names) if names else 'unknown features'})"


def sampler_settings(df: pd.DataFrame) -> list[tuple[str, int, str]]:
    """Distinct unguided ``(sampler, steps, step spacing)`` settings of ``df`` in order of
    appearance (spacing ``time`` where ``df`` has no ``sample_spacing`` column)."""
    if "sampler" not in df:
        return []
    plain = df[guidance_kind_column(df) == "none"].assign(sample_spacing=spacing_column(df))
    plain = plain.dropna(subset=["sampler", "sample_steps"])
    return list(dict.fromkeys(zip(plain["sampler"], plain["sample_steps"].astype(int),
                                  plain["sample_spacing"], strict=True)))


def sampler_sweep_cells(df: pd.DataFrame, metric: str = "fid", confidence: float = 0.95
                        ) -> pd.DataFrame:
    """Per cell (objective row, schedule) and unguided sampler setting (sampler, step spacing,
    steps): ``nfe``, mean and t-CI half-width of ``metric`` over seeds and ``n``; the primary
    setting is marked. Rows in cell order, then sampler, then spacing (order of appearance),
    then steps."""
    settings = sampler_settings(df)
    unguided = df[guidance_kind_column(df) == "none"]
    unguided = unguided.assign(sample_spacing=spacing_column(unguided))
    rows = []
    for cell in cell_summary(unguided, metric).itertuples():
        in_cell = unguided[(unguided["objective"] == cell.objective)
                           & (unguided["schedule"] == cell.schedule)]
        for sampler in dict.fromkeys(s for s, _, _ in settings):
            for spacing in dict.fromkeys(p for s, _, p in settings if s == sampler):
                for steps in sorted(k for s, k, p in settings if (s, p) == (sampler, spacing)):
                    sub = in_cell[(in_cell["sampler"] == sampler)
                                  & (in_cell["sample_steps"] == steps)
                                  & (in_cell["sample_spacing"] == spacing)]
                    if sub.empty:
                        continue
                    mean, ci = mean_ci(metric_values(sub, metric).to_numpy(), confidence)
                    rows.append({"objective": cell.objective, "schedule": cell.schedule,
                                 "sampler": sampler, "spacing": spacing, "steps": steps,
                                 "nfe": int(sub["nfe"].iloc[0]), "mean": mean, "ci": ci,
                                 "n": int(metric_values(sub, metric).notna().sum()),
                                 "primary": bool(len(primary_rows(sub)) == len(sub))})
    return pd.DataFrame(rows, columns=["objective", "schedule", "sampler", "spacing", "steps",
                                       "nfe", "mean", "ci", "n", "primary"])


def guidance_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of the primary sampler (method, steps and step spacing of the primary setting) at
    every guidance setting; guidance weight 0 (no guidance) belongs to every guidance kind's
    curve."""
    if "guidance_kind" not in df or "sampler" not in df:
        return df.iloc[0:0]
    primary = primary_rows(df).dropna(subset=["sampler"])
    if primary.empty:
        return df.iloc[0:0]
    method, steps = primary["sampler"].iloc[0], primary["sample_steps"].iloc[0]
    spacing = spacing_column(primary).iloc[0]
    return df[(df["sampler"] == method) & (df["sample_steps"] == steps)
              & (spacing_column(df) == spacing)]


#: order of the guidance kinds in tables and figures (others follow in order of appearance):
#: the oracle (exact p(c | z)) right after the trained classifier it is compared with
GUIDANCE_KIND_ORDER: tuple[str, ...] = ("cfg", "classifier", "oracle")


def guidance_kinds(df: pd.DataFrame) -> list[str]:
    """The guidance kinds evaluated in ``df`` (besides ``none``), in :data:`GUIDANCE_KIND_ORDER`."""
    rows = guidance_rows(df)
    if not len(rows):
        return []
    return [k for k in ordered_levels(rows["guidance_kind"], GUIDANCE_KIND_ORDER) if k != "none"]


def guidance_cells(df: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Per cell (objective row, schedule), guidance kind and weight (weight 0 = no guidance,
    repeated under each kind): mean and t-CI half-width over seeds of each of
    :data:`GUIDANCE_METRICS` present, ``n``, and the primary sampler's NFE."""
    rows = guidance_rows(df)
    out = []
    for kind in guidance_kinds(df):
        curve = rows[rows["guidance_kind"].isin(["none", kind])]
        for cell in cell_summary(curve, "fid").itertuples():
            in_cell = curve[(curve["objective"] == cell.objective)
                            & (curve["schedule"] == cell.schedule)]
            for weight in sorted(in_cell["guidance_weight"].astype(float).unique()):
                sub = in_cell[in_cell["guidance_weight"].astype(float) == weight]
                record = {"objective": cell.objective, "schedule": cell.schedule,
                          "guidance_kind": kind, "guidance_weight": weight,
                          "nfe": int(sub["nfe"].iloc[0]), "n": len(sub)}
                for metric in GUIDANCE_METRICS:
                    if metric in sub and sub[metric].notna().any():
                        record[f"{metric}_mean"], record[f"{metric}_ci"] = mean_ci(
                            metric_values(sub, metric).to_numpy(), confidence)
                out.append(record)
    return pd.DataFrame(out)


def denoiser_floor_cells(floors: pd.DataFrame) -> pd.DataFrame:
    """Per cell (objective row of the display frame, schedule), split and noise level: means
    over seeds of λ and of the model's and the optimum's ε-MSE, and of the weighted gap."""
    if floors.empty:
        return floors
    view = display_frame(floors)
    columns = ["log_snr", "model_mse", "optimum_mse", "gap", "weighted_model",
               "weighted_optimum", "weighted_gap"]
    cells = view.groupby(["objective", "schedule", "split", "level"], sort=False)[columns].mean()
    counts = view.groupby(["objective", "schedule", "split", "level"], sort=False)["seed"].nunique()
    return cells.assign(n=counts).reset_index()
