"""Loading per-run results into the summary frame: ``metrics.json`` files -> ``summary.csv`` rows.

``summary.csv`` has one row per run and evaluation setting (sampler, steps, guidance; the
``primary`` one is the config's first sampler setting), with the standard columns of
:data:`vdm.reporting.summary_columns.SUMMARY_COLUMNS` first. Rows are sorted by dataset,
conditioning, parameterization, objective, schedule (first-appearance or explicit order,
:func:`vdm.reporting.summary_rows.ordered_levels`) and seed. The optimal-denoiser gaps of the
runs are loaded into their own long frame (:func:`load_denoiser_floors`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from vdm.core.provenance import read_json
from vdm.reporting.summary_columns import (
    FINITE_METRICS,
    OPTIONAL_COLUMNS,
    SUMMARY_COLUMNS,
    TEXT_COLUMNS,
)
from vdm.reporting.summary_rows import SPACING, TRAIN_STEP, ordered_levels, primary_rows


def _standard_columns(df: pd.DataFrame) -> list[str]:
    """:data:`SUMMARY_COLUMNS` in order, without optional columns that ``df`` lacks."""
    return [c for c in SUMMARY_COLUMNS if c in df.columns or c not in OPTIONAL_COLUMNS]


def load_metrics(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per ``metrics.json`` and evaluation setting (its ``evaluations``; a record without
    them gives one primary row): the run's scalar fields, the setting's sampler, steps, NFE,
    guidance and FID/KID/precision/recall (and the step spacing ``sample_spacing`` when some
    setting has one other than ``time``; ``time`` in the other rows), plus ``git_commit`` and
    ``metrics_file`` (the row's source, whose ``config``/``provenance`` hold everything else).

    Missing standard fields (e.g. ``fid`` when FID was not computed) become NaN columns;
    optional ones (precision/recall, the ODE likelihood) are left out when no run has them.
    Raises ``ValueError`` naming the file when a present metric of :data:`FINITE_METRICS` is
    NaN or infinite.
    """
    rows = []
    for path in paths:
        record = read_json(path)
        run = {k: v for k, v in record.items() if not isinstance(v, (dict, list))}
        run.setdefault("parameterization", "eps")
        run.setdefault("conditioning", "uncond")
        run["git_commit"] = record.get("provenance", {}).get("git", {}).get("commit", "unknown")
        run["metrics_file"] = str(path)
        for evaluation in record.get("evaluations") or [{"primary": True}]:
            row = {**run, **{k: v for k, v in evaluation.items() if k != "fid_file"}}
            if evaluation.get("primary") is False:  # other settings: no primary-only fields
                for key in ("precision", "recall"):
                    row[key] = evaluation.get(key, np.nan)
            for key in FINITE_METRICS:
                if key in row and not np.isfinite(float(row[key])):
                    raise ValueError(f"{path}: {key} is {row[key]} (not finite); fix or rerun "
                                     "that run before tabulating")
            rows.append(row)
    df = pd.DataFrame(rows)
    extras = [c for c in df.columns if c not in SUMMARY_COLUMNS]
    columns = _standard_columns(df)
    df = df.reindex(columns=columns + extras)
    for col in columns:
        if col == "primary":
            df[col] = df[col].fillna(True).astype(bool)
        elif col == SPACING:  # recorded only when not time (vdm collect): the rest are time
            df[col] = df[col].fillna("time")
        elif col not in TEXT_COLUMNS:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


def summary_long(df: pd.DataFrame, objective_order: Sequence[str] | None = None,
                 schedule_order: Sequence[str] | None = None) -> pd.DataFrame:
    """The long table of ``summary.csv``: standard columns first, sorted by dataset, objective,
    schedule (first-appearance or explicit order), seed and, in a grid with snapshots, training
    step (``train_step``); each model's primary evaluation setting first."""
    standard = _standard_columns(df)
    out = df.reindex(columns=standard + [c for c in df.columns if c not in standard])
    ranks = {
        "dataset": ordered_levels(out["dataset"]),
        "conditioning": ordered_levels(out["conditioning"]),
        "parameterization": ordered_levels(out["parameterization"]),
        "objective": ordered_levels(out["objective"], objective_order),
        "schedule": ordered_levels(out["schedule"], schedule_order),
    }
    keys = pd.DataFrame({c: out[c].map({v: i for i, v in enumerate(levels)})
                         for c, levels in ranks.items()})
    keys["seed"] = out["seed"]
    if TRAIN_STEP in out:  # a grid with snapshots: each run's budgets in training order
        keys[TRAIN_STEP] = pd.to_numeric(out[TRAIN_STEP], errors="coerce")
    keys["evaluation"] = ~out.index.isin(primary_rows(out).index)  # primary row first
    order = keys.sort_values(list(keys.columns), kind="stable", na_position="last").index
    return out.loc[order].reset_index(drop=True)


def load_denoiser_floors(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per run, split and noise level of the runs' optimal-denoiser gaps
    (``metrics.json``'s ``denoiser_floor``, :mod:`vdm.evaluation.optimal_denoiser`): the run's key columns,
    ``level`` (position in its λ grid), ``log_snr``, ``model_mse``, ``optimum_mse``, ``gap``
    (per-dimension ε-MSE) and the run's weighted ``weighted_model`` / ``weighted_optimum`` /
    ``weighted_gap`` of that split. Empty when no run has one."""
    rows = []
    for path in paths:
        record = read_json(path)
        floor = record.get("denoiser_floor")
        if not floor:
            continue
        keys = {key: record.get(key, default) for key, default in (
            ("dataset", None), ("conditioning", "uncond"), ("parameterization", "eps"),
            ("objective", None), ("schedule", None), ("seed", None))}
        levels = {float(lam): i for i, lam in enumerate(floor["log_snrs"])}
        for row in floor["rows"]:
            weighted = floor["weighted"][row["split"]]
            rows.append({**keys, "split": row["split"], "level": levels[float(row["log_snr"])],
                         "log_snr": row["log_snr"], "model_mse": row["model_mse"],
                         "optimum_mse": row["optimum_mse"], "gap": row["gap"],
                         "weighted_model": weighted["model"],
                         "weighted_optimum": weighted["optimum"],
                         "weighted_gap": weighted["gap"]})
    return pd.DataFrame(rows)
