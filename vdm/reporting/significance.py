"""The significance table: every cell of a pivot against one baseline cell.

The baseline is the configured cell, else the DDPM baseline (``eps``, ``linear``), else the
grid's first cell (:func:`resolve_baseline`). Each cell is compared with it by a two-sided
t-test on the metric's per-seed values (:func:`vdm.reporting.stats.compare_cells`): paired by
seed when the cell and the baseline were trained on the same seeds (over the ``n_pairs`` seeds
where both have a value), Welch's test only when they were trained on different seeds. The
p-values of one table are Holm-adjusted across its comparisons
(:func:`vdm.reporting.stats.holm_adjust`). Differences are in the metric's units.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from vdm.reporting.aggregation import cell_summary, metric_values
from vdm.reporting.stats import PAIRED_T, compare_cells, holm_adjust

#: the DDPM baseline cell (objective, schedule): ε-MSE on the linear schedule
BASELINE = ("eps", "linear")


def resolve_baseline(df: pd.DataFrame, baseline: Mapping[str, str] | None = None,
                     **order: Sequence[str]) -> tuple[tuple[str, str] | None, str]:
    """The baseline cell ``(objective row, schedule)`` of the significance tests and why it is
    that one: ``baseline`` (``{"objective", "schedule"[, "parameterization"]}``, parameterization
    ε by default) when given and in the grid; else the DDPM baseline (ε output, ε-MSE, linear)
    when in the grid; else the grid's first cell (first objective row and first schedule in the
    config's order). ``(None, "no cells")`` for an empty frame."""
    cells = cell_summary(df, "nll_bpd" if "nll_bpd" in df else "fid", **order)
    if cells.empty:
        return None, "no cells"

    def find(keys: Mapping[str, str]) -> tuple[str, str] | None:
        objective = df.get("base_objective", df["objective"])
        mask = (objective == keys["objective"]) & (df["schedule"] == keys["schedule"])
        if "parameterization" in df:
            mask &= df["parameterization"].astype(object).fillna("eps") == keys.get("parameterization", "eps")
        rows = df[mask]
        return None if rows.empty else (rows["objective"].iloc[0], keys["schedule"])

    if baseline is not None and (found := find(baseline)) is not None:
        return found, "the configured baseline"
    if (found := find({"objective": BASELINE[0], "schedule": BASELINE[1]})) is not None:
        return found, "the DDPM baseline"
    first = cells.iloc[0]
    missing = (f"the configured baseline {dict(baseline)} is not in the grid" if baseline
               else "the grid has no ε + linear cell")
    return (first["objective"], first["schedule"]), f"the grid's first cell ({missing})"


def significance_table(df: pd.DataFrame, metric: str, baseline: Mapping[str, str] | None = None,
                       alpha: float = 0.05, **order: Sequence[str]) -> pd.DataFrame:
    """Each cell vs the baseline cell (:func:`resolve_baseline`), two-sided.

    Cells that share a seed share initial weights, data order, training noise and evaluation
    seed (common random numbers), so when a cell and the baseline were trained on the same seeds
    the test is the paired t-test over the seeds where both have a value (a missing value drops
    that seed's pair only; ≥ 2 pairs needed), and Welch's t-test only when they were trained on
    different seeds (:func:`vdm.reporting.stats.compare_cells`). The p-values of the table are
    Holm-adjusted across its comparisons (:func:`vdm.reporting.stats.holm_adjust`); a cell is
    ``significant`` when its adjusted p < alpha.

    Columns: metric, objective, schedule, n (the cell's values), n_pairs (the pairs of a paired
    test; empty for Welch and the baseline), mean, baseline_mean (over each cell's values),
    diff (the tested difference: the mean of the paired differences, which is mean −
    baseline_mean when no value is missing; mean − baseline_mean for Welch), ci_low / ci_high
    (95% CI of diff), test ("paired t" / "Welch t"), t, dof, p, p_holm, significant and mark
    (``*`` if significant, ``base`` for the baseline). Stats are NaN where undefined (< 2
    values or pairs, zero variance, no baseline).
    """
    chosen, _ = resolve_baseline(df, baseline, **order)
    values = metric_values(df, metric)

    def by_seed(objective: str, schedule: str) -> dict:
        mask = (df["objective"] == objective) & (df["schedule"] == schedule)
        return dict(zip(df.loc[mask, "seed"], values[mask], strict=True))

    base = by_seed(*chosen) if chosen else {}
    base_values = np.array(list(base.values()), dtype=float)
    base_mean = float(np.nanmean(base_values)) if np.isfinite(base_values).any() else np.nan
    rows = []
    for c in cell_summary(df, metric, **order).itertuples():
        is_base = (c.objective, c.schedule) == chosen
        row = {"metric": metric, "objective": c.objective, "schedule": c.schedule, "n": c.n,
               "n_pairs": pd.NA, "mean": c.mean, "baseline_mean": base_mean,
               "diff": c.mean - base_mean, "ci_low": np.nan, "ci_high": np.nan, "test": "",
               "t": np.nan, "dof": np.nan, "p": np.nan}
        if not is_base and base:
            comparison = compare_cells(by_seed(c.objective, c.schedule), base)
            row.update(diff=comparison.effect, ci_low=comparison.ci_low,
                       ci_high=comparison.ci_high, test=comparison.test, t=comparison.t,
                       dof=comparison.dof, p=comparison.p)
            if comparison.test == PAIRED_T:
                row["n_pairs"] = comparison.n_a
        row["is_base"] = is_base
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["n_pairs"] = table["n_pairs"].astype("Int64")
    table["p_holm"] = holm_adjust(table["p"].to_numpy(dtype=float))
    table["significant"] = table["p_holm"] < alpha
    table["mark"] = ["base" if b else ("*" if s else "") for b, s in zip(
        table.pop("is_base"), table["significant"], strict=True)]
    return table
