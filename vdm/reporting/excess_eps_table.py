"""The excess ε-error over the exact denoiser (a dataset with a known density, ``digits-gmm``;
:mod:`vdm.evaluation.excess_eps_error`) across a grid: loading the runs' records, the per-cell
table ``excess_eps_error.csv`` (cell × split × λ of the common grid: mean over seeds, 95%
Student-t CI, number of seeds), the section of ``summary.md`` and the table of ``summary.tex``
(per cell: the λ-weighted excess and the λ where it is largest).

The excess is a per-dimension squared ε-error (dimensionless); its λ-weighted integral is in the
objective's units (nats/dim for ``elbo``). Only the λ of the common grid enter the table and the
plot (every seed of a cell has the same values there); a λ near a learned schedule's end can be
inside the range of some seeds only, so ``n`` (seeds) can vary along λ.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from vdm.core.provenance import read_json
from vdm.reporting import formatting
from vdm.reporting.stats import mean_ci
from vdm.reporting.summary_rows import display_frame, row_axis_name

#: per-λ values of a run's record that the long frame keeps
ROW_VALUES = ("n", "model_mse", "bayes_mse", "excess", "excess_se", "distance", "distance_se",
              "cross", "cross_se")
#: per-λ values averaged over seeds in the cell table (mean and CI each)
CELL_VALUES = ("excess", "distance", "model_mse", "bayes_mse")
READING = ("How to read it: at each log-SNR λ, how much larger the model's ε-error is than the "
           "smallest any denoiser can reach on the true distribution; 0 is perfect, and the λ "
           "where it is largest are where the model loses most (per λ in excess_eps_error.csv "
           "and plots/excess_eps_error.png).")


def load_excess_eps_errors(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per run, split and λ of the runs' excess ε-errors (``metrics.json``'s
    ``excess_eps_error``): the run's key columns, ``split``, ``log_snr``, ``common`` (on the
    common λ grid), :data:`ROW_VALUES` and the run's ``weighted_excess`` /
    ``weighted_excess_se`` of that split. Empty when no run has one."""
    rows = []
    for path in paths:
        record = read_json(path)
        excess = record.get("excess_eps_error")
        if not excess:
            continue
        keys = {key: record.get(key, default) for key, default in (
            ("dataset", None), ("conditioning", "uncond"), ("parameterization", "eps"),
            ("objective", None), ("schedule", None), ("seed", None))}
        for row in excess["rows"]:
            weighted = excess["weighted"][row["split"]]
            rows.append({**keys, "split": row["split"], "log_snr": float(row["log_snr"]),
                         "common": bool(row["common"]),
                         **{key: row[key] for key in ROW_VALUES},
                         "weighted_excess": weighted["excess"],
                         "weighted_excess_se": weighted["excess_se"]})
    return pd.DataFrame(rows)


def excess_eps_cells(frame: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Per dataset, cell (objective row of the display frame, schedule), split and λ of the
    common grid: ``n`` (seeds), ``n_images`` (per seed), for each of :data:`CELL_VALUES` the
    mean over seeds (``*_mean``) and the half-width of its Student-t CI (``*_ci``; NaN for one
    seed), and the cell's λ-weighted excess over seeds (``weighted_excess_mean`` / ``_ci``,
    the same on every λ row of the cell and split). Cells in order of appearance, λ ascending."""
    if frame.empty:
        return pd.DataFrame()
    view = display_frame(frame)
    view = view[view["common"].astype(bool)]
    keys = ["dataset", "objective", "schedule", "split"]
    order = {cell: i for i, cell in enumerate(dict.fromkeys(
        view[keys].itertuples(index=False, name=None)))}
    out = []
    for cell, rows in view.groupby(keys, sort=False, dropna=False):
        per_run = rows.drop_duplicates("seed")
        weighted = mean_ci(per_run["weighted_excess"].to_numpy(dtype=float), confidence)
        for lam, at in rows.groupby("log_snr"):
            record = dict(zip(keys, cell, strict=True))
            record.update(log_snr=float(lam), n=int(at["seed"].nunique()),
                          n_images=int(at["n"].iloc[0]))
            for value in CELL_VALUES:
                record[f"{value}_mean"], record[f"{value}_ci"] = mean_ci(
                    at[value].to_numpy(dtype=float), confidence)
            record["weighted_excess_mean"], record["weighted_excess_ci"] = weighted
            record["_order"] = order[cell]
            out.append(record)
    cells = pd.DataFrame(out).sort_values(["_order", "log_snr"], kind="stable")
    return cells.drop(columns="_order").reset_index(drop=True)


def _worst_lambda(rows: pd.DataFrame) -> str:
    """The λ of the common grid where the cell's mean excess is largest."""
    if rows.empty or rows["excess_mean"].isna().all():
        return formatting.MISSING
    return f"{float(rows.loc[rows['excess_mean'].idxmax(), 'log_snr']):g}"


def excess_eps_summary(frame: pd.DataFrame, confidence: float = 0.95, latex: bool = False
                       ) -> pd.DataFrame:
    """Per cell: the λ-weighted excess ε-error on test (and train) images, mean ± CI over seeds
    (4 decimals), the λ of the common grid where the mean test excess is largest and the
    number of seeds, as strings (LaTeX-ready with ``latex``). ``frame``:
    :func:`load_excess_eps_errors` of one dataset; empty when it has none."""
    cells = excess_eps_cells(frame, confidence)
    if cells.empty:
        return pd.DataFrame()
    escape = formatting.latex_escape if latex else str
    table = []
    for (objective, schedule), rows in cells.groupby(["objective", "schedule"], sort=False):
        record = {row_axis_name(display_frame(frame)): escape(objective),
                  "schedule": escape(schedule)}
        for split in ("test", "train"):
            in_split = rows[rows["split"] == split]
            if in_split.empty:
                continue
            first = in_split.iloc[0]
            record[f"{split} weighted excess"] = formatting.fmt_mean_ci(
                first["weighted_excess_mean"], first["weighted_excess_ci"], 4, latex=latex)
            if split == "test":
                record["largest at λ"] = _worst_lambda(in_split)
        record["seeds"] = str(int(rows["n"].max()))
        table.append(record)
    return pd.DataFrame(table)


def excess_eps_caption(confidence: float = 0.95) -> str:
    """The table's caption (plain text, LaTeX-convertible): what it is and how to read it."""
    return (f"Excess ε-error over the exact (Bayes-optimal) denoiser of the true distribution, "
            f"per dimension, paired on the same images and noise, λ-weighted with each model's "
            f"objective over its λ range (nats/dim for the ELBO weighting); mean ± "
            f"{100 * confidence:g}% CI over seeds. {READING}")


def excess_eps_markdown(frame: pd.DataFrame, note: str, weighting: str,
                        confidence: float = 0.95) -> str:
    """:func:`excess_eps_summary` as Markdown, captioned with :func:`excess_eps_caption`, the
    weighting and what the exact denoiser is (``weighting``, ``note``); "" when empty."""
    table = excess_eps_summary(frame, confidence)
    if table.empty:
        return ""
    caption = (f"{excess_eps_caption(confidence)} {weighting[0].upper()}{weighting[1:]}"
               .rstrip(".") + f". {note[0].upper()}{note[1:].rstrip('.')}.")
    return formatting.markdown_block(caption, formatting.markdown_table(table))


def excess_eps_latex(frame: pd.DataFrame, label: str, confidence: float = 0.95) -> str:
    """:func:`excess_eps_summary` as a booktabs LaTeX table; "" when empty."""
    table = excess_eps_summary(frame, confidence, latex=True)
    if table.empty:
        return ""
    return formatting.latex_table(table, excess_eps_caption(confidence), label, label_cols=2)


def symlog_threshold(values: np.ndarray) -> float:
    """A linear threshold for a symmetric-log axis: the smallest positive ``|value|`` (at least
    1e-8), or 1e-4 when there is none."""
    positive = np.abs(values[np.isfinite(values) & (values != 0)])
    return max(float(positive.min()), 1e-8) if positive.size else 1e-4
