"""Result tables: per-run metrics → long CSV, objective × schedule pivots, significance tests.

``summary.csv`` has one row per run and evaluation setting (sampler, steps, guidance; the
``primary`` one is the config's first sampler setting). The pivots and significance tests use
the primary rows; when the grid varies the network's parameterization, a pivot row is
``parameterization / objective`` (:func:`display_frame`). The primary rows are aggregated per
cell (objective, schedule) over seeds as
``mean ± t_{0.975,n−1}·s/√n`` (:func:`vdm.reporting.stats.mean_ci`) and compared with the DDPM baseline
cell (``eps``, ``linear``) by a two-sided Welch t-test (:func:`vdm.reporting.stats.welch_t_test`).
Objectives and schedules keep the order in which they first appear in the data (the config
order when the runs are listed in config order) unless an explicit order is passed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vdm.core.provenance import atomic_output, read_json
from vdm.reporting import formatting
from vdm.reporting.stats import compare_cells, holm_adjust, mean_ci
from vdm.reporting.summary_rows import guidance_kind_column, primary_rows

KEY_COLUMNS = ["dataset", "conditioning", "parameterization", "objective", "schedule", "seed"]
#: the evaluation setting of a row (one model has a row per setting)
EVALUATION_COLUMNS = ["sampler", "sample_steps", "nfe", "guidance_kind", "guidance_weight",
                      "primary"]
SUMMARY_COLUMNS = KEY_COLUMNS + EVALUATION_COLUMNS + [
    "steps", "train_seconds", "num_params", "final_loss", "logsnr_max", "logsnr_min",
    "nll_bpd", "nll_bpd_se", "nll_bpd_mc_se", "nll_reconstruction_bpd", "nll_prior_bpd",
    "nll_diffusion_bpd", "nll_ode_bpd", "nll_ode_bpd_se", "nll_ode_num_examples",
    "nll_elbo_bpd_on_ode_examples", "nll_ode_minus_elbo_bpd", "nll_ode_minus_elbo_bpd_se",
    "nll_ode_vdeq_bpd", "nll_ode_vdeq_bpd_se", "nll_ode_vdeq_minus_elbo_bpd",
    "nll_ode_vdeq_minus_elbo_bpd_se", "nll_cond_bpd", "nll_cond_bpd_se",
    "fid", "fid_se", "kid", "kid_std", "precision", "recall", "class_accuracy",
    "classifier_test_accuracy", "denoiser_gap_train", "denoiser_gap_test",
    "per_class_fid_mean", "feature_extractor", "num_fid_samples",
    "git_commit", "metrics_file",
]
TEXT_COLUMNS = {"dataset", "conditioning", "parameterization", "objective", "schedule", "sampler",
                "guidance_kind", "feature_extractor", "git_commit", "metrics_file"}
#: columns that stay out of the table when no run has them (e.g. precision/recall not computed)
OPTIONAL_COLUMNS = ("precision", "recall", "nll_ode_bpd", "nll_ode_bpd_se", "nll_ode_num_examples",
                    "nll_elbo_bpd_on_ode_examples", "nll_ode_minus_elbo_bpd",
                    "nll_ode_minus_elbo_bpd_se", "nll_ode_vdeq_bpd", "nll_ode_vdeq_bpd_se",
                    "nll_ode_vdeq_minus_elbo_bpd", "nll_ode_vdeq_minus_elbo_bpd_se",
                    "nll_cond_bpd", "nll_cond_bpd_se",
                    "class_accuracy", "classifier_test_accuracy", "per_class_fid_mean", "fid_se",
                    "denoiser_gap_train", "denoiser_gap_test")
#: metrics that must be finite numbers whenever present (checked by ``collect`` and again when
#: tabulating): NaN never reaches a table or plot
FINITE_METRICS = ("final_loss", "nll_bpd", "nll_bpd_se", "nll_bpd_mc_se", "nll_reconstruction_bpd",
                  "nll_prior_bpd", "nll_diffusion_bpd", "nll_ode_bpd", "nll_ode_bpd_se",
                  "nll_elbo_bpd_on_ode_examples", "nll_ode_minus_elbo_bpd",
                  "nll_ode_minus_elbo_bpd_se", "nll_ode_vdeq_bpd", "nll_ode_vdeq_bpd_se",
                  "nll_ode_vdeq_minus_elbo_bpd", "nll_ode_vdeq_minus_elbo_bpd_se", "nll_cond_bpd",
                  "nll_cond_bpd_se", "fid", "fid_se",
                  "kid", "kid_std", "class_accuracy", "per_class_fid_mean", "denoiser_gap_train",
                  "denoiser_gap_test")
BASELINE = ("eps", "linear")


@dataclass(frozen=True)
class MetricSpec:
    """How a metric is named and printed: short ``name``, ``unit`` and decimal places."""

    name: str
    unit: str
    decimals: int


METRICS = {"fid": MetricSpec("FID", "", 2), "nll_bpd": MetricSpec("NLL", "bits/dim", 3),
           "nll_ode_bpd": MetricSpec("ODE NLL", "bits/dim", 3),
           "nll_ode_vdeq_bpd": MetricSpec("ODE NLL (decoder-consistent)", "bits/dim", 3),
           "nll_cond_bpd": MetricSpec("conditional NLL -log p(x|y)", "bits/dim", 3),
           "class_accuracy": MetricSpec("class accuracy", "", 3),
           "precision": MetricSpec("precision", "", 3), "recall": MetricSpec("recall", "", 3)}
PIVOT_METRICS = ("fid", "nll_bpd")
#: pivots written only when some run has the metric
OPTIONAL_PIVOT_METRICS = ("nll_ode_bpd", "nll_ode_vdeq_bpd", "nll_cond_bpd")
#: what the guidance tables show per guidance kind and weight
GUIDANCE_METRICS = ("fid", "class_accuracy", "precision", "recall")


def metric_spec(metric: str) -> MetricSpec:
    """The :class:`MetricSpec` of a column (a generic one for unknown columns)."""
    return METRICS.get(metric, MetricSpec(metric, "", 3))


def _standard_columns(df: pd.DataFrame) -> list[str]:
    """:data:`SUMMARY_COLUMNS` in order, without optional columns that ``df`` lacks."""
    return [c for c in SUMMARY_COLUMNS if c in df.columns or c not in OPTIONAL_COLUMNS]


def load_metrics(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per ``metrics.json`` and evaluation setting (its ``evaluations``; a record without
    them gives one primary row): the run's scalar fields, the setting's sampler, steps, NFE,
    guidance and FID/KID/precision/recall, plus ``git_commit`` and ``metrics_file`` (the row's
    source, whose ``config``/``provenance`` hold everything else).

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
        elif col not in TEXT_COLUMNS:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


#: grid axes that, when the grid varies them, prefix the objective in a pivot row
ROW_PREFIXES = ("conditioning", "parameterization")


def display_frame(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with ``objective`` replaced by ``parameterization / objective`` when the frame
    holds more than one parameterization (the pivot rows are then the model variants; the
    objective itself stays in ``base_objective``); the frame is returned unchanged otherwise,
    so single-parameterization grids read as before."""
    varying = [c for c in ROW_PREFIXES if c in df and df[c].nunique(dropna=True) > 1]
    if not varying or "base_objective" in df:
        return df
    label = df[varying[0]].astype(str)
    for column in varying[1:]:
        label = label + " / " + df[column].astype(str)
    return df.assign(base_objective=df["objective"],
                     objective=label + " / " + df["objective"].astype(str))


def row_axis_name(df: pd.DataFrame) -> str:
    """The name of a pivot's row axis for ``df`` (see :func:`display_frame`)."""
    varying = [c for c in ROW_PREFIXES if c in df and df[c].nunique(dropna=True) > 1]
    return " / ".join([*varying, "objective"])


def ordered_levels(values: pd.Series, order: Sequence[str] | None = None) -> list[str]:
    """Distinct non-null values: those in ``order`` first (in that order), then the rest in
    order of first appearance."""
    present = list(pd.unique(values.dropna()))
    head = [v for v in (order or []) if v in present]
    return head + [v for v in present if v not in head]


def summary_long(df: pd.DataFrame, objective_order: Sequence[str] | None = None,
                 schedule_order: Sequence[str] | None = None) -> pd.DataFrame:
    """The long table of ``summary.csv``: standard columns first, sorted by dataset, objective,
    schedule (first-appearance or explicit order) and seed."""
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
    keys["evaluation"] = ~out.index.isin(primary_rows(out).index)  # primary row first
    order = keys.sort_values(list(keys.columns), kind="stable", na_position="last").index
    return out.loc[order].reset_index(drop=True)


# --------------------------------------------------------------------------- cell statistics
def _check_one_dataset(df: pd.DataFrame) -> None:
    if "dataset" in df and df["dataset"].nunique() > 1:
        raise ValueError("table spans several datasets; filter to one dataset first")


def _values(df: pd.DataFrame, metric: str) -> pd.Series:
    return df[metric].astype(float) if metric in df else pd.Series(np.nan, index=df.index)


def cell_summary(df: pd.DataFrame, metric: str, objective_order: Sequence[str] | None = None,
                 schedule_order: Sequence[str] | None = None,
                 confidence: float = 0.95) -> pd.DataFrame:
    """Per (objective, schedule) cell that has runs: ``mean``, ``ci`` (t-CI half-width), ``n``
    (number of non-NaN values of ``metric``), in objective-major order."""
    _check_one_dataset(df)
    values = _values(df, metric)
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
    return pd.DataFrame({c: _values(df, c) for c in cols}).groupby(df["schedule"]).mean()


def feature_extractors(df: pd.DataFrame) -> list[str]:
    """Distinct FID feature extractors named in the runs that have an FID."""
    if "feature_extractor" not in df:
        return []
    has_fid = _values(df, "fid").notna()
    return [str(v) for v in ordered_levels(df.loc[has_fid, "feature_extractor"])]


def fid_label(df: pd.DataFrame) -> str:
    """Axis/heading label naming the FID's feature space, e.g. ``FID (classifier-digits)``."""
    names = feature_extractors(df)
    return f"FID ({' / '.join(names) if names else 'unknown features'})"


def _seed_text(df: pd.DataFrame, metric: str) -> str:
    n = cell_summary(df, metric)["n"]
    n = n[n > 0]
    if n.empty:
        return "no values"
    return f"n = {n.min()} seeds" if n.min() == n.max() else f"n = {n.min()}–{n.max()} seeds"


def _metric_sentence(df: pd.DataFrame, metric: str) -> str:
    if metric == "fid":
        with_fid = df[_values(df, "fid").notna()]
        samples = [int(s) for s in ordered_levels(_values(with_fid, "num_fid_samples"))]
        return formatting.fid_sentence(feature_extractors(df), samples)
    if metric == "nll_bpd":
        return formatting.NLL_SENTENCE
    if metric == "nll_ode_bpd":
        return ("Test NLL bound from the probability-flow ODE in bits/dim (uniform dequantization "
                "over the K levels, Hutchinson trace, adaptive dopri5); lower is better.")
    if metric == "nll_ode_vdeq_bpd":
        return ("Test NLL bound from the probability-flow ODE in bits/dim, decoder-consistent: "
                "the ELBO's decoder and q(z_0 | x) at λ_max with the ODE's density of z_0 in "
                "place of the diffusion terms (comparable with the ELBO; Hutchinson trace, "
                "adaptive dopri5); lower is better.")
    if metric == "nll_cond_bpd":
        return ("Conditional test NLL bound -log p(x | y) in bits/dim (ELBO with each image's "
                "true label; the NLL table above is the model's unconditional mode, null "
                "label); lower is better.")
    if metric == "class_accuracy":
        own = _values(df, "classifier_test_accuracy").dropna()
        own_text = (f" (its own accuracy on the real test images: {float(own.iloc[0]):.3f})"
                    if len(own) else "")
        return ("Class accuracy of class-balanced samples under the dataset classifier (the "
                f"one the classifier FID uses){own_text}; higher is better.")
    spec = metric_spec(metric)
    return f"{spec.name}{f' [{spec.unit}]' if spec.unit else ''}."


def pivot_caption(df: pd.DataFrame, metric: str, confidence: float = 0.95) -> str:
    """Caption of an objective × schedule pivot: metric, units, feature space, CI, marking."""
    return formatting.pivot_caption_text(_metric_sentence(df, metric), _seed_text(df, metric),
                                     confidence)


# --------------------------------------------------------------------------- pivots
def pivot_cells(df: pd.DataFrame, metric: str, latex: bool = False,
                objective_order: Sequence[str] | None = None,
                schedule_order: Sequence[str] | None = None) -> pd.DataFrame:
    """Objective × schedule table of formatted ``mean ± ci`` strings, best cell bold, plus a
    last row with each schedule's λ range."""
    cells = cell_summary(df, metric, objective_order, schedule_order)
    objs = ordered_levels(df["objective"], objective_order)
    scheds = ordered_levels(df["schedule"], schedule_order)
    best = cells["mean"].min()
    decimals = metric_spec(metric).decimals
    table = pd.DataFrame(formatting.MISSING, index=objs, columns=scheds, dtype=object)
    for c in cells.itertuples():
        table.loc[c.objective, c.schedule] = formatting.fmt_mean_ci(
            c.mean, c.ci, decimals, latex=latex, bold=bool(c.mean == best))
    lam = lambda_ranges(df)
    table.loc[formatting.lambda_label(latex)] = [
        formatting.lambda_cell(lam.loc[s] if s in lam.index else None, latex) for s in scheds]
    if latex:
        table.index = [i if i == formatting.lambda_label(True) else formatting.latex_escape(i)
                       for i in table.index]
        table.columns = [formatting.latex_escape(c) for c in table.columns]
    return table.rename_axis(row_axis_name(df)).reset_index()


def pivot_table_markdown(df: pd.DataFrame, metric: str, **order: Sequence[str]) -> str:
    """Caption + Markdown objective × schedule pivot of ``metric`` (see :func:`pivot_cells`)."""
    table = formatting.markdown_table(pivot_cells(df, metric, False, **order))
    return formatting.markdown_block(pivot_caption(df, metric), table)


def pivot_table_latex(df: pd.DataFrame, metric: str, label: str | None = None,
                      **order: Sequence[str]) -> str:
    """LaTeX (booktabs) objective × schedule pivot of ``metric`` with caption and label."""
    return formatting.latex_table(pivot_cells(df, metric, True, **order), pivot_caption(df, metric),
                              label or f"tab:{metric}", midrule_before=formatting.lambda_label(True))


# --------------------------------------------------------------------------- significance
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
    seed (common random numbers), so when both cells have the same seeds (≥ 2) the test is the
    paired t-test across seeds, otherwise Welch's t-test (:func:`vdm.reporting.stats.compare_cells`). The
    p-values of the table are Holm-adjusted across its comparisons
    (:func:`vdm.reporting.stats.holm_adjust`); a cell is ``significant`` when its adjusted p < alpha.

    Columns: metric, objective, schedule, n, mean, baseline_mean, diff (= mean − baseline_mean),
    ci_low / ci_high (95% CI of the difference), test ("paired t" / "Welch t"), t, dof, p,
    p_holm, significant and mark (``*`` if significant, ``base`` for the baseline). Stats are
    NaN where undefined (n < 2, zero variance, no baseline).
    """
    chosen, _ = resolve_baseline(df, baseline, **order)
    values = _values(df, metric)

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
               "mean": c.mean, "baseline_mean": base_mean, "diff": c.mean - base_mean,
               "ci_low": np.nan, "ci_high": np.nan, "test": "", "t": np.nan, "dof": np.nan,
               "p": np.nan}
        if not is_base and base:
            comparison = compare_cells(by_seed(c.objective, c.schedule), base)
            row.update(ci_low=comparison.ci_low, ci_high=comparison.ci_high,
                       test=comparison.test, t=comparison.t, dof=comparison.dof, p=comparison.p)
        row["is_base"] = is_base
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["p_holm"] = holm_adjust(table["p"].to_numpy(dtype=float))
    table["significant"] = table["p_holm"] < alpha
    table["mark"] = ["base" if b else ("*" if s else "") for b, s in zip(
        table.pop("is_base"), table["significant"], strict=True)]
    return table


def significance_caption(df: pd.DataFrame, metric: str, baseline: Mapping[str, str] | None = None,
                         alpha: float = 0.05, **order: Sequence[str]) -> str:
    """Caption stating the baseline, how it was chosen, and the tests of
    :func:`significance_table`."""
    spec = metric_spec(metric)
    chosen, why = resolve_baseline(df, baseline, **order)
    table = significance_table(df, metric, baseline, alpha, **order)
    tests = sorted(set(table["test"]) - {""}) if not table.empty else []
    return formatting.significance_caption_text(spec.name, spec.unit, chosen, why, tests,
                                                int(table["p"].notna().sum()) if len(table) else 0,
                                                alpha)


def significance_table_markdown(df: pd.DataFrame, metric: str, **kw: object) -> str:
    """Caption + Markdown table of :func:`significance_table` (``kw`` passed on to it)."""
    cells = formatting.significance_cells(significance_table(df, metric, **kw),
                                          metric_spec(metric).decimals)
    return formatting.markdown_block(significance_caption(df, metric, **kw),
                                     formatting.markdown_table(cells))


def significance_table_latex(df: pd.DataFrame, metric: str, label: str | None = None,
                             **kw: object) -> str:
    """LaTeX (booktabs) table of :func:`significance_table` with the test in its caption."""
    cells = formatting.significance_cells(significance_table(df, metric, **kw),
                                          metric_spec(metric).decimals, latex=True)
    return formatting.latex_table(cells, significance_caption(df, metric, **kw),
                                  label or f"tab:{metric}-sig", label_cols=2)


# --------------------------------------------------------------------------- sampler sweep
def sampler_settings(df: pd.DataFrame) -> list[tuple[str, int]]:
    """Distinct unguided ``(sampler, steps)`` settings of ``df`` in order of appearance."""
    if "sampler" not in df:
        return []
    plain = df[guidance_kind_column(df) == "none"]
    plain = plain.dropna(subset=["sampler", "sample_steps"])
    return list(dict.fromkeys(zip(plain["sampler"], plain["sample_steps"].astype(int),
                                  strict=True)))


def sampler_sweep_cells(df: pd.DataFrame, metric: str = "fid", confidence: float = 0.95
                        ) -> pd.DataFrame:
    """Per cell (objective row, schedule) and unguided sampler setting: ``nfe``, mean and t-CI
    half-width of ``metric`` over seeds and ``n``; the primary setting is marked. Rows in cell
    order, then sampler, then steps."""
    settings = sampler_settings(df)
    unguided = df[guidance_kind_column(df) == "none"]
    rows = []
    for cell in cell_summary(unguided, metric).itertuples():
        in_cell = unguided[(unguided["objective"] == cell.objective)
                           & (unguided["schedule"] == cell.schedule)]
        for sampler in dict.fromkeys(s for s, _ in settings):
            for steps in sorted(k for s, k in settings if s == sampler):
                sub = in_cell[(in_cell["sampler"] == sampler) & (in_cell["sample_steps"] == steps)]
                if sub.empty:
                    continue
                mean, ci = mean_ci(_values(sub, metric).to_numpy(), confidence)
                rows.append({"objective": cell.objective, "schedule": cell.schedule,
                             "sampler": sampler, "steps": steps, "nfe": int(sub["nfe"].iloc[0]),
                             "mean": mean, "ci": ci, "n": int(_values(sub, metric).notna().sum()),
                             "primary": bool(len(primary_rows(sub)) == len(sub))})
    return pd.DataFrame(rows, columns=["objective", "schedule", "sampler", "steps", "nfe", "mean",
                                       "ci", "n", "primary"])


def sampler_sweep_markdown(df: pd.DataFrame, metric: str = "fid") -> str:
    """Caption + Markdown table of :func:`sampler_sweep_cells`: one row per cell and sampler, one
    column per step count (``mean ± CI (NFE)``)."""
    cells = sampler_sweep_cells(df, metric)
    decimals = metric_spec(metric).decimals
    cells = cells.assign(text=[
        f"{formatting.fmt_mean_ci(c.mean, c.ci, decimals)} ({c.nfe})" + (" ᵖ" if c.primary else "")
        for c in cells.itertuples()])
    table = cells.pivot_table(index=["objective", "schedule", "sampler"], columns="steps",
                              values="text", aggfunc="first", sort=False)
    table = table.reindex(columns=sorted(table.columns)).fillna(formatting.MISSING)
    table.columns = [f"{steps} steps" for steps in table.columns]
    table = table.reset_index().rename(columns={"objective": row_axis_name(df)})
    caption = (f"{_metric_sentence(df, metric)} By sampler and number of steps, without "
               f"retraining: mean ± 95% CI over seeds (Student t), network evaluations per "
               f"image (NFE) in brackets; ᵖ = the primary setting used in the other tables. "
               f"Every setting starts from the same noise (the run's seed).")
    return formatting.markdown_block(caption, formatting.markdown_table(table))


# --------------------------------------------------------------------------- guidance
def guidance_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of the primary sampler (method and steps of the primary setting) at every guidance
    setting; guidance weight 0 (no guidance) belongs to every guidance kind's curve."""
    if "guidance_kind" not in df or "sampler" not in df:
        return df.iloc[0:0]
    primary = primary_rows(df).dropna(subset=["sampler"])
    if primary.empty:
        return df.iloc[0:0]
    method, steps = primary["sampler"].iloc[0], primary["sample_steps"].iloc[0]
    return df[(df["sampler"] == method) & (df["sample_steps"] == steps)]


def guidance_kinds(df: pd.DataFrame) -> list[str]:
    """The guidance kinds evaluated in ``df`` (besides ``none``)."""
    rows = guidance_rows(df)
    return [k for k in ordered_levels(rows["guidance_kind"]) if k != "none"] if len(rows) else []


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
                            _values(sub, metric).to_numpy(), confidence)
                out.append(record)
    return pd.DataFrame(out)


def guidance_markdown(df: pd.DataFrame) -> str:
    """Per guidance kind and metric, a table with one row per cell and one column per guidance
    weight (``mean ± 95% CI`` over seeds), with captions naming the convention."""
    cells = guidance_cells(df)
    if cells.empty:
        return ""
    blocks = []
    conventions = {
        "cfg": "classifier-free guidance, eps~ = (1 + w) eps(z, c) - w eps(z, null) "
               "(Ho & Salimans 2022)",
        "classifier": "classifier guidance, eps~ = eps(z, c) - w sigma grad_z log p(y | z) "
                      "with a noise-conditional classifier (Dhariwal & Nichol 2021)"}
    for kind in ordered_levels(cells["guidance_kind"]):
        of_kind = cells[cells["guidance_kind"] == kind]
        for metric in GUIDANCE_METRICS:
            if f"{metric}_mean" not in of_kind or of_kind[f"{metric}_mean"].isna().all():
                continue
            decimals = metric_spec(metric).decimals
            text = of_kind.assign(text=[formatting.fmt_mean_ci(m, c, decimals) for m, c in zip(
                of_kind[f"{metric}_mean"], of_kind[f"{metric}_ci"], strict=True)])
            table = text.pivot_table(index=["objective", "schedule"], columns="guidance_weight",
                                     values="text", aggfunc="first", sort=False)
            table.columns = [f"w = {w:g}" for w in table.columns]
            table = table.reset_index().rename(columns={"objective": row_axis_name(df)})
            caption = (f"{_metric_sentence(df, metric)} By guidance weight w, {conventions[kind]}; "
                       "w = 0 is the plain conditional sampler; mean ± 95% CI over seeds "
                       "(Student t); every weight starts from the same noise (paired).")
            blocks.append(formatting.markdown_block(caption, formatting.markdown_table(table)))
    return "\n".join(blocks)


# --------------------------------------------------------------------------- floors and claims
def floor_markdown(floor: Mapping[str, Any]) -> str:
    """The real-data floor (:func:`vdm.evaluation.data_floor.real_data_floor`) as a one-row table with its
    meaning: the FID, KID and precision/recall that held-out *real* images get."""
    table = pd.DataFrame([{
        "images": f"{floor['num_floor_images']} {floor['floor_split']} images",
        "FID": formatting.fmt_num(floor["fid"], 2)
        + (f" (± {floor['fid_se']:.2f})" if floor.get("fid_se") is not None else ""),
        "KID": formatting.fmt_num(floor["kid"], 4),
        "precision": formatting.fmt_num(floor.get("precision", np.nan), 3),
        "recall": formatting.fmt_num(floor.get("recall", np.nan), 3)}])
    caption = (f"{floor['meaning'][0].upper()}{floor['meaning'][1:].rstrip('.')}. ± = FID "
               "sampling error (bootstrap SD over the images).")
    return formatting.markdown_block(caption, formatting.markdown_table(table))


def fid_error_sentence(df: pd.DataFrame) -> str:
    """How large the FID's own sampling noise is in these runs (median of ``fid_se``)."""
    errors = _values(df, "fid_se").dropna()
    if errors.empty:
        return ""
    return (f"FID sampling error of one run (SD over 50 bootstrap resamples of its generated "
            f"samples; `fid_se` in summary.csv): median {errors.median():.3f}, range "
            f"{errors.min():.3f}–{errors.max():.3f}; compare it with the CIs over seeds above.")


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


def denoiser_floor_markdown(floors: pd.DataFrame, note: str, weighting: str) -> str:
    """Per cell: the model's and the optimal denoiser's weighted ε-error on the training and the
    test split (mean over seeds), with what the optimum means."""
    cells = denoiser_floor_cells(floors)
    if cells.empty:
        return ""
    first = cells.drop_duplicates(["objective", "schedule", "split"])
    table = first.pivot_table(index=["objective", "schedule"], columns="split",
                              values=["weighted_model", "weighted_optimum", "weighted_gap"],
                              aggfunc="first", sort=False)
    out = pd.DataFrame({
        row_axis_name(display_frame(floors)): [o for o, _ in table.index],
        "schedule": [s for _, s in table.index]})
    for split in ("train", "test"):
        for value, name in (("weighted_model", "model"), ("weighted_optimum", "optimum"),
                            ("weighted_gap", "gap")):
            if (value, split) in table:
                out[f"{split} {name}"] = [formatting.fmt_num(v, 4) for v in table[(value, split)]]
    splits = " and ".join(sorted(set(first["split"]), reverse=True))
    caption = (f"Distance to the optimal denoiser of the training set: weighted per-dimension "
               f"ε-error of the model and of the optimum, and their gap, on {splits} images "
               f"(mean over seeds; per noise level in denoiser_floor.csv and the plot). "
               f"{weighting.rstrip('.')}. {note[0].upper()}{note[1:].rstrip('.')}.")
    return formatting.markdown_block(caption, formatting.markdown_table(out))


def claims_report(summary: pd.DataFrame, *, run_name: str, commit: str | None = None
                  ) -> tuple[str, str]:
    """``(claims.md, claims.csv)`` text of a summary (:mod:`vdm.reporting.claims`); ``commit`` defaults to
    the runs' most common ``git_commit``."""
    from vdm.reporting.claims import claims_csv, claims_markdown, evaluate_claims

    if commit is None:
        commits = summary.get("git_commit", pd.Series(dtype=str)).dropna()
        commit = str(commits.mode().iloc[0]) if len(commits) else "unknown"
    claims = evaluate_claims(summary)
    command = (f"python -m vdm claims --summary results/{run_name}/tables/summary.csv "
               f"--run-name {run_name}")
    return (claims_markdown(claims, run_name=run_name, commit=commit, command=command),
            claims_csv(claims))


# --------------------------------------------------------------------------- files
def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", str(text)).strip("-") or "all"


def _dataset_groups(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    names = df["dataset"].astype(object).where(df["dataset"].notna(), "unknown")
    return [(str(ds), df[names == ds]) for ds in ordered_levels(names)]


def write_tables(df: pd.DataFrame, out_dir: str | Path, *, baseline: Mapping[str, str] | None = None,
                 floor: Mapping[str, Any] | None = None, floors: pd.DataFrame | None = None,
                 run_name: str = "results", **order: Sequence[str]) -> dict[str, Path]:
    """Write ``summary.csv``, ``summary.md``, ``summary.tex``, ``significance.csv`` and, when the
    runs were evaluated with more than one sampler setting, ``sampler_sweep.csv``, and with
    guidance, ``guidance.csv``.

    The Markdown/LaTeX files hold, per dataset, the FID and NLL pivots (and the ODE NLL when
    computed) of the primary rows, their significance tables vs the baseline
    (:func:`resolve_baseline`), the sampler sweep, guidance, real-data floor and optimal-denoiser
    tables (Markdown). Also ``claims.md`` / ``claims.csv`` (:func:`claims_report`) and, with
    ``floors`` (:func:`load_denoiser_floors`), ``denoiser_floor.csv``. ``summary.tex`` is a
    sequence of ``table`` floats for ``\\input``; it needs ``\\usepackage{booktabs}`` only.
    Returns ``{file name: path}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    long = summary_long(df, **order)
    md = ["# vdm-bench results\n"]
    tex = ["% vdm-bench results, generated by vdm.reporting.tables.write_tables.",
           "% Requires \\usepackage{booktabs}.\n"]
    sig_frames, sweep_frames, guidance_frames = [], [], []
    for ds, every in _dataset_groups(display_frame(long)):
        sub = primary_rows(every)
        md.append(f"## Dataset `{ds}`\n")
        metrics = [*PIVOT_METRICS, *(m for m in OPTIONAL_PIVOT_METRICS if _values(sub, m).notna().any())]
        for metric in metrics:
            md.append(pivot_table_markdown(sub, metric, **order))
            tex.append(pivot_table_latex(sub, metric, f"tab:{_slug(ds)}-{metric}", **order))
            if metric == "fid":
                md += [text + "\n" for text in (fid_error_sentence(sub),) if text]
                if floor is not None and floor.get("dataset") == ds:
                    md.append(floor_markdown(floor))
        if len(sampler_settings(every)) > 1:
            md.append("### Samplers and steps\n")
            md.append(sampler_sweep_markdown(every))
            sweep_frames.append(sampler_sweep_cells(every).assign(dataset=ds))
        if guidance_kinds(every):
            md.append("### Guidance\n")
            md.append(guidance_markdown(every))
            guidance_frames.append(guidance_cells(every).assign(dataset=ds))
        chosen, _ = resolve_baseline(sub, baseline, **order)
        md.append(f"### Significance vs baseline (`{chosen[0]}`, `{chosen[1]}`)\n" if chosen
                  else "### Significance\n")
        for metric in PIVOT_METRICS:
            sig_frames.append(significance_table(sub, metric, baseline, **order)
                              .assign(dataset=ds))
            md.append(significance_table_markdown(sub, metric, baseline=baseline, **order))
            tex.append(significance_table_latex(sub, metric, f"tab:{_slug(ds)}-{metric}-sig",
                                                baseline=baseline, **order))
        if floors is not None and not floors.empty:
            in_ds = floors[floors["dataset"] == ds]
            if not in_ds.empty:
                md.append("### Distance to the optimal denoiser\n")
                md.append(denoiser_floor_markdown(in_ds, *_floor_notes(in_ds)))
    sig_all = pd.concat(sig_frames, ignore_index=True) if sig_frames else pd.DataFrame()
    if not sig_all.empty:
        sig_all = sig_all[["dataset"] + [c for c in sig_all.columns if c != "dataset"]]
    names = ["summary.csv", "summary.md", "summary.tex", "significance.csv", "claims.md",
             "claims.csv"]
    floor_cells = denoiser_floor_cells(floors) if floors is not None else pd.DataFrame()
    extra = {"sampler_sweep.csv": sweep_frames, "guidance.csv": guidance_frames,
             "denoiser_floor.csv": [floor_cells] if not floor_cells.empty else []}
    names += [name for name, frames in extra.items() if frames]
    paths = {name: out / name for name in names}
    for name, frames in extra.items():
        if frames:
            with atomic_output(paths[name]) as tmp:
                pd.concat(frames, ignore_index=True).to_csv(tmp, index=False)
    with atomic_output(paths["summary.csv"]) as tmp:
        long.to_csv(tmp, index=False)
    with atomic_output(paths["summary.md"]) as tmp:
        tmp.write_text("\n".join(md))
    with atomic_output(paths["summary.tex"]) as tmp:
        tmp.write_text("\n".join(tex))
    with atomic_output(paths["significance.csv"]) as tmp:
        sig_all.to_csv(tmp, index=False)
    claims_md, claims_table = claims_report(long, run_name=run_name)
    with atomic_output(paths["claims.md"]) as tmp:
        tmp.write_text(claims_md)
    with atomic_output(paths["claims.csv"]) as tmp:
        tmp.write_text(claims_table)
    return paths


def _floor_notes(floors: pd.DataFrame) -> tuple[str, str]:
    """The optimum's meaning and the weighting statement of :mod:`vdm.evaluation.optimal_denoiser`."""
    from vdm.evaluation.optimal_denoiser import OPTIMUM_NOTE, WEIGHTING_NOTE

    return OPTIMUM_NOTE, WEIGHTING_NOTE


def aggregate_main(metrics_paths: Iterable[str | Path], out_dir: str | Path, *,
                   baseline: Mapping[str, str] | None = None,
                   floor: Mapping[str, Any] | None = None,
                   run_name: str = "results") -> dict[str, Path]:
    """CLI entry (``python -m vdm aggregate``): load all ``metrics.json`` and write the tables."""
    paths = list(metrics_paths)
    return write_tables(load_metrics(paths), out_dir, baseline=baseline, floor=floor,
                        floors=load_denoiser_floors(paths), run_name=run_name)
