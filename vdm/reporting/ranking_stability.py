"""Ranking stability across training budgets: at which number of training steps does the ranking
of the cells settle?

For a metric and each training budget ``s`` (:mod:`vdm.reporting.budgets`; the final budget
``S`` is the largest step), per dataset:

* **ranking**: the cells with a value at ``s``, ordered by their mean over seeds (lower is
  better unless ``direction="higher"``), best first;
* **Kendall's τ** between the cell means at ``s`` and at ``S``, over the cells present at both:
  τ-b (:func:`scipy.stats.kendalltau`, which corrects for ties),
  ``τ = (C − D) / √((C + D + T_s)(C + D + T_S))`` with ``C`` / ``D`` the concordant /
  discordant pairs and ``T`` the pairs tied at one budget only; 1 = the final order, −1 = its
  reverse; NaN with fewer than two common cells. ``kendall_p``: scipy's two-sided p of τ = 0
  (exact for small untied samples), given for completeness: τ near 1 is what matters here;
* **significant pairs**: of the ``k(k−1)/2`` pairs of the ``k`` cells at ``s``, those whose
  order is significant at ``s``: two-sided t-test over seeds
  (:func:`vdm.reporting.stats.compare_cells`: paired by seed when both cells have the same seeds,
  Welch otherwise), **Holm-adjusted across the pairs of that budget** (and dataset), adjusted
  p < ``alpha``. Holm, because with 10 cells there are 45 pairs: uncorrected, about two would
  come out "significant" by chance at every budget;
* **flipped pairs**: pairs of common cells ordered the other way round at ``s`` than at ``S``
  (``D`` above), and how many of those are significant at ``s`` (an early order the data at
  ``s`` were sure of, which training then reversed).

The metric is in its own units (FID; NLL in bits/dim).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy import stats as sps

from vdm.reporting import formatting
from vdm.reporting.budgets import seed_values
from vdm.reporting.claims import METRIC_DECIMALS
from vdm.reporting.stats import compare_cells, holm_adjust
from vdm.reporting.summary_rows import TRAIN_STEP

STABILITY_COLUMNS: list[str] = [
    "dataset", "metric", "direction", "train_step", "final_step", "n_cells", "ranking",
    "kendall_tau", "kendall_p", "n_common", "n_pairs", "n_tested", "n_significant",
    "n_flipped", "n_flipped_significant",
]
"""Columns of :func:`ranking_stability` (and of ``ranking_stability_<metric>.csv``)."""

DIRECTIONS = ("lower", "higher")


def _cell_means(values: pd.DataFrame) -> pd.Series:
    """Mean over seeds of each cell with a finite value (index: cell label, first-appearance
    order)."""
    means = values.groupby("cell", sort=False)["value"].mean()
    return means[np.isfinite(means)]


def _ranking_text(means: pd.Series, direction: str, decimals: int) -> str:
    """``a (1.00) < b (2.00) = c (2.00)``: best first, ties by ``=`` (in first-appearance
    order), ``<`` / ``>`` the order of the means for a ``lower`` / ``higher`` metric."""
    ordered = means.sort_values(ascending=direction == "lower", kind="stable")
    better = " < " if direction == "lower" else " > "
    text = ""
    for i, (cell, mean) in enumerate(ordered.items()):
        if i:
            text += " = " if mean == ordered.iloc[i - 1] else better
        text += f"{cell} ({mean:.{decimals}f})"
    return text


def _pairs(values: pd.DataFrame, cells: list[str]) -> pd.DataFrame:
    """Every pair of ``cells`` with the two-sided p of its comparison over seeds."""
    by_seed = {cell: dict(zip(g["seed"], g["value"], strict=True))
               for cell, g in values.groupby("cell", sort=False)}
    rows = [{"a": a, "b": b, "p": compare_cells(by_seed[a], by_seed[b], "two-sided").p}
            for a, b in itertools.combinations(cells, 2)]
    return pd.DataFrame(rows, columns=["a", "b", "p"])


def ranking_stability(summary: pd.DataFrame, metric: str, alpha: float = 0.05,
                      direction: str = "lower") -> pd.DataFrame:
    """One row per dataset and training budget (ascending) with the columns
    :data:`STABILITY_COLUMNS` (see the module docstring): the budget's ranking of the cells by
    their mean ``metric`` over seeds (``ranking``, best first, means in brackets), Kendall's τ-b
    against the final budget's cell means (``kendall_tau``, ``kendall_p``, over ``n_common``
    cells), the ``n_pairs`` pairs of the budget's ``n_cells`` cells of which ``n_tested`` have
    a defined test and ``n_significant`` a significant order (two-sided, paired by seed where
    possible, Holm across the budget's pairs, ``alpha``), and ``n_flipped`` pairs ordered
    against the final budget (``n_flipped_significant`` of them significant at this budget).

    ``summary``: every row of ``summary.csv`` (the primary rows of each budget are used).
    ``ValueError`` (one line) for a missing ``metric`` / ``train_step`` column, a bad
    ``train_step`` value (:func:`vdm.reporting.budgets.seed_values`) or ``direction``.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    values = seed_values(summary, metric)
    decimals = METRIC_DECIMALS.get(metric, 3)
    rows = []
    for dataset, in_dataset in values.groupby("dataset", sort=False):
        final_step = int(in_dataset[TRAIN_STEP].max())
        final = _cell_means(in_dataset[in_dataset[TRAIN_STEP] == final_step])
        for step, at_step in in_dataset.groupby(TRAIN_STEP, sort=True):
            means = _cell_means(at_step)
            cells = list(means.index)
            common = [c for c in cells if c in final.index]
            tau, tau_p = np.nan, np.nan
            if len(common) >= 2:
                result = sps.kendalltau(means[common].to_numpy(), final[common].to_numpy())
                tau, tau_p = float(result.statistic), float(result.pvalue)
            pairs = _pairs(at_step[at_step["cell"].isin(cells)], cells)
            significant = holm_adjust(pairs["p"].to_numpy(dtype=float)) < alpha
            flipped = np.array([
                a in final.index and b in final.index
                and (means[a] - means[b]) * (final[a] - final[b]) < 0
                for a, b in zip(pairs["a"], pairs["b"], strict=True)], dtype=bool)
            rows.append({
                "dataset": dataset, "metric": metric, "direction": direction,
                "train_step": int(step), "final_step": final_step, "n_cells": len(cells),
                "ranking": _ranking_text(means, direction, decimals),
                "kendall_tau": tau, "kendall_p": tau_p, "n_common": len(common),
                "n_pairs": len(pairs), "n_tested": int(pairs["p"].notna().sum()),
                "n_significant": int(significant.sum()), "n_flipped": int(flipped.sum()),
                "n_flipped_significant": int((flipped & significant).sum()),
            })
    return pd.DataFrame(rows, columns=STABILITY_COLUMNS)


def ranking_stability_csv(table: pd.DataFrame) -> str:
    """CSV text of :func:`ranking_stability` (floats to 6 significant digits, ``\\n`` line
    ends: byte-for-byte reproducible)."""
    return table.to_csv(index=False, float_format="%.6g", lineterminator="\n")


def ranking_stability_caption(table: pd.DataFrame, alpha: float = 0.05) -> str:
    """What :func:`ranking_stability_markdown` shows and how it was tested (one paragraph)."""
    metric = str(table["metric"].iloc[0]) if len(table) else "the metric"
    direction = str(table["direction"].iloc[0]) if len(table) else "lower"
    final = ", ".join(str(s) for s in dict.fromkeys(table["final_step"])) if len(table) else "?"
    return (
        f"Ranking of the cells by `{metric}` at each training budget (the EMA weights at that "
        f"step, primary sampler setting): mean over seeds in brackets, best first "
        f"({direction} is better). Kendall τ: τ-b between that budget's cell means and the "
        f"final budget's ({final} steps), over the cells present at both; 1 = already the "
        f"final order. Significant pairs: of all pairs of cells at that budget, those whose "
        f"order is significant there: two-sided t-test over seeds (paired by seed, Welch where "
        f"the seeds differ), Holm-adjusted across that budget's pairs, α = {alpha:g}. Flipped: "
        f"pairs in the opposite order to the final budget's (of which significant at that "
        f"budget)."
    )


def ranking_stability_markdown(table: pd.DataFrame, alpha: float = 0.05) -> str:
    """Caption and Markdown table of :func:`ranking_stability` (one row per dataset and budget;
    a ``dataset`` column only when there are several)."""
    multi = table["dataset"].nunique() > 1
    cells = pd.DataFrame({
        **({"dataset": list(table["dataset"])} if multi else {}),
        "training steps": [f"{r.train_step}" + (" (final)" if r.train_step == r.final_step
                                                else "") for r in table.itertuples()],
        "ranking (best first, mean over seeds)": list(table["ranking"]),
        "Kendall τ vs final": [formatting.fmt_num(t, 2) for t in table["kendall_tau"]],
        "significant pairs": [f"{r.n_significant} / {r.n_pairs}" for r in table.itertuples()],
        "flipped vs final (significant)": [f"{r.n_flipped} ({r.n_flipped_significant})"
                                           for r in table.itertuples()],
    }, dtype=object)
    return formatting.markdown_block(ranking_stability_caption(table, alpha),
                                     formatting.markdown_table(cells))


RANKED_METRICS: tuple[str, ...] = ("fid", "nll_bpd")
"""Metrics of :func:`ranking_stability_report` (lower is better for both)."""
_HEADINGS = {"fid": "FID", "nll_bpd": "NLL (bits/dim)"}


def ranking_stability_report(summary: pd.DataFrame, metrics: tuple[str, ...] = RANKED_METRICS,
                             alpha: float = 0.05) -> tuple[str, str]:
    """``(ranking_stability.md, ranking_stability.csv)`` text: :func:`ranking_stability` of each
    of ``metrics`` that ``summary`` has a finite value of (one Markdown block per metric, one CSV
    with a ``metric`` column); a metric without values is named in the Markdown and left out."""
    blocks, frames = ["# Ranking stability across training budgets", ""], []
    for metric in metrics:
        values = pd.to_numeric(summary[metric], errors="coerce") if metric in summary else None
        if values is None or not np.isfinite(values).any():
            blocks += [f"No `{metric}` values in this grid.", ""]
            continue
        table = ranking_stability(summary, metric, alpha)
        frames.append(table)
        blocks += [f"## {_HEADINGS.get(metric, metric)}", "",
                   ranking_stability_markdown(table, alpha)]
    csv = ranking_stability_csv(pd.concat(frames, ignore_index=True) if frames
                                else pd.DataFrame(columns=STABILITY_COLUMNS))
    return "\n".join(blocks), csv
