"""Result tables: per-run metrics → long CSV, objective × schedule pivots, significance tests.

One row per run (``metrics.json``) is aggregated per cell (objective, schedule) over seeds as
``mean ± t_{0.975,n−1}·s/√n`` (:func:`vdm.stats.mean_ci`) and compared with the DDPM baseline
cell (``eps``, ``linear``) by a two-sided Welch t-test (:func:`vdm.stats.welch_t_test`).
Objectives and schedules keep the order in which they first appear in the data (the config
order when the runs are listed in config order) unless an explicit order is passed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from vdm import formatting
from vdm.provenance import atomic_output, read_json
from vdm.stats import mean_ci, welch_t_test

KEY_COLUMNS = ["dataset", "objective", "schedule", "seed"]
SUMMARY_COLUMNS = KEY_COLUMNS + [
    "steps", "train_seconds", "num_params", "final_loss", "logsnr_max", "logsnr_min",
    "nll_bpd", "nll_bpd_se", "nll_bpd_mc_se", "nll_reconstruction_bpd", "nll_prior_bpd", "nll_diffusion_bpd",
    "fid", "kid", "kid_std", "precision", "recall", "feature_extractor", "num_fid_samples",
    "git_commit", "metrics_file",
]
TEXT_COLUMNS = {"dataset", "objective", "schedule", "feature_extractor", "git_commit",
                "metrics_file"}
#: columns that stay out of the table when no run has them (e.g. precision/recall not computed)
OPTIONAL_COLUMNS = ("precision", "recall")
#: metrics that must be finite numbers whenever present (checked by ``collect`` and again when
#: tabulating): NaN never reaches a table or plot
FINITE_METRICS = ("final_loss", "nll_bpd", "nll_bpd_se", "nll_bpd_mc_se", "nll_reconstruction_bpd",
                  "nll_prior_bpd", "nll_diffusion_bpd", "fid", "kid", "kid_std")
BASELINE = ("eps", "linear")


@dataclass(frozen=True)
class MetricSpec:
    """How a metric is named and printed: short ``name``, ``unit`` and decimal places."""

    name: str
    unit: str
    decimals: int


METRICS = {"fid": MetricSpec("FID", "", 2), "nll_bpd": MetricSpec("NLL", "bits/dim", 3)}
PIVOT_METRICS = ("fid", "nll_bpd")


def metric_spec(metric: str) -> MetricSpec:
    """The :class:`MetricSpec` of a column (a generic one for unknown columns)."""
    return METRICS.get(metric, MetricSpec(metric, "", 3))


def _standard_columns(df: pd.DataFrame) -> list[str]:
    """:data:`SUMMARY_COLUMNS` in order, without optional columns that ``df`` lacks."""
    return [c for c in SUMMARY_COLUMNS if c in df.columns or c not in OPTIONAL_COLUMNS]


def load_metrics(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per ``metrics.json``: its scalar fields plus ``git_commit`` and ``metrics_file``
    (the row's source, whose ``config``/``provenance`` hold everything else).

    Missing standard fields (e.g. ``fid`` when FID was not computed) become NaN columns;
    precision/recall are left out when no run has them. Raises ``ValueError`` naming the file
    when a present metric of :data:`FINITE_METRICS` is NaN or infinite.
    """
    rows = []
    for path in paths:
        record = read_json(path)
        row = {k: v for k, v in record.items() if not isinstance(v, (dict, list))}
        for key in FINITE_METRICS:
            if key in row and not np.isfinite(float(row[key])):
                raise ValueError(f"{path}: {key} is {row[key]} (not finite); fix or rerun that "
                                 "run before tabulating")
        row["git_commit"] = record.get("provenance", {}).get("git", {}).get("commit", "unknown")
        row["metrics_file"] = str(path)
        rows.append(row)
    df = pd.DataFrame(rows)
    extras = [c for c in df.columns if c not in SUMMARY_COLUMNS]
    columns = _standard_columns(df)
    df = df.reindex(columns=columns + extras)
    for col in columns:
        if col not in TEXT_COLUMNS:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


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
        "objective": ordered_levels(out["objective"], objective_order),
        "schedule": ordered_levels(out["schedule"], schedule_order),
    }
    keys = pd.DataFrame({c: out[c].map({v: i for i, v in enumerate(levels)})
                         for c, levels in ranks.items()})
    keys["seed"] = out["seed"]
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
    return table.rename_axis("objective").reset_index()


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
def significance_table(df: pd.DataFrame, metric: str, baseline: tuple[str, str] = BASELINE,
                       alpha: float = 0.05, **order: Sequence[str]) -> pd.DataFrame:
    """Each cell vs the ``baseline`` (objective, schedule) cell by a two-sided Welch t-test.

    Columns: metric, objective, schedule, n, mean, baseline_mean, diff (= mean − baseline_mean),
    t, dof, p, significant (p < alpha) and mark (``*`` if significant, ``base`` for the
    baseline itself). Stats are NaN where undefined (n < 2, zero variance, no baseline).
    """
    values = _values(df, metric)
    base = values[(df["objective"] == baseline[0]) & (df["schedule"] == baseline[1])].to_numpy()
    base_mean = float(np.nanmean(base)) if np.isfinite(base).any() else float("nan")
    rows = []
    for c in cell_summary(df, metric, **order).itertuples():
        cell = values[(df["objective"] == c.objective) & (df["schedule"] == c.schedule)]
        is_base = (c.objective, c.schedule) == tuple(baseline)
        t, dof, p = (np.nan,) * 3 if is_base else welch_t_test(cell.to_numpy(), base)
        sig = bool(p < alpha)
        rows.append({"metric": metric, "objective": c.objective, "schedule": c.schedule,
                     "n": c.n, "mean": c.mean, "baseline_mean": base_mean,
                     "diff": c.mean - base_mean, "t": t, "dof": dof, "p": p,
                     "significant": sig, "mark": "base" if is_base else ("*" if sig else "")})
    return pd.DataFrame(rows)


def significance_caption(metric: str, baseline: tuple[str, str] = BASELINE,
                         alpha: float = 0.05) -> str:
    """Caption stating the test used by :func:`significance_table`."""
    spec = metric_spec(metric)
    return formatting.significance_caption_text(spec.name, spec.unit, baseline, alpha)


def significance_table_markdown(df: pd.DataFrame, metric: str, **kw: object) -> str:
    """Caption + Markdown table of :func:`significance_table` (``kw`` passed on to it)."""
    cells = formatting.significance_cells(significance_table(df, metric, **kw),
                                      metric_spec(metric).decimals)
    return formatting.markdown_block(significance_caption(metric), formatting.markdown_table(cells))


def significance_table_latex(df: pd.DataFrame, metric: str, label: str | None = None,
                             **kw: object) -> str:
    """LaTeX (booktabs) table of :func:`significance_table` with the test in its caption."""
    cells = formatting.significance_cells(significance_table(df, metric, **kw),
                                      metric_spec(metric).decimals, latex=True)
    return formatting.latex_table(cells, significance_caption(metric), label or f"tab:{metric}-sig",
                              label_cols=2)


# --------------------------------------------------------------------------- files
def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", str(text)).strip("-") or "all"


def _dataset_groups(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    names = df["dataset"].astype(object).where(df["dataset"].notna(), "unknown")
    return [(str(ds), df[names == ds]) for ds in ordered_levels(names)]


def write_tables(df: pd.DataFrame, out_dir: str | Path, **order: Sequence[str]) -> dict[str, Path]:
    """Write ``summary.csv``, ``summary.md``, ``summary.tex`` and ``significance.csv``.

    The Markdown/LaTeX files hold, per dataset, the FID and NLL pivots and their significance
    tables vs the baseline. ``summary.tex`` is a sequence of ``table`` floats for ``\\input``;
    it needs ``\\usepackage{booktabs}`` only. Returns ``{file name: path}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    long = summary_long(df, **order)
    md = ["# vdm-bench results\n"]
    tex = ["% vdm-bench results, generated by vdm.tables.write_tables.",
           "% Requires \\usepackage{booktabs}.\n"]
    sig_frames = []
    for ds, sub in _dataset_groups(long):
        md.append(f"## Dataset `{ds}`\n")
        for metric in PIVOT_METRICS:
            md.append(pivot_table_markdown(sub, metric, **order))
            tex.append(pivot_table_latex(sub, metric, f"tab:{_slug(ds)}-{metric}", **order))
        md.append(f"### Significance vs baseline (`{BASELINE[0]}`, `{BASELINE[1]}`)\n")
        for metric in PIVOT_METRICS:
            sig_frames.append(significance_table(sub, metric, **order).assign(dataset=ds))
            md.append(significance_table_markdown(sub, metric, **order))
            tex.append(significance_table_latex(sub, metric, f"tab:{_slug(ds)}-{metric}-sig",
                                                **order))
    sig_all = pd.concat(sig_frames, ignore_index=True) if sig_frames else pd.DataFrame()
    if not sig_all.empty:
        sig_all = sig_all[["dataset"] + [c for c in sig_all.columns if c != "dataset"]]
    paths = {name: out / name for name in
             ("summary.csv", "summary.md", "summary.tex", "significance.csv")}
    with atomic_output(paths["summary.csv"]) as tmp:
        long.to_csv(tmp, index=False)
    with atomic_output(paths["summary.md"]) as tmp:
        tmp.write_text("\n".join(md))
    with atomic_output(paths["summary.tex"]) as tmp:
        tmp.write_text("\n".join(tex))
    with atomic_output(paths["significance.csv"]) as tmp:
        sig_all.to_csv(tmp, index=False)
    return paths


def aggregate_main(metrics_paths: Iterable[str | Path], out_dir: str | Path) -> dict[str, Path]:
    """CLI entry (``python -m vdm aggregate``): load all ``metrics.json`` and write the tables."""
    return write_tables(load_metrics(list(metrics_paths)), out_dir)
