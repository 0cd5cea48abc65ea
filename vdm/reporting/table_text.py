"""Each result table as captioned Markdown and LaTeX text.

Captions say what a table shows: metric, units (bits/dim for NLLs), FID feature space, seeds,
the CI (mean ± 95% Student-t CI over seeds) and, for significance tables, the baseline and the
tests. The numbers come from :mod:`vdm.reporting.aggregation` and
:mod:`vdm.reporting.significance`; the strings are printed by :mod:`vdm.reporting.formatting`.
Pivot tables are objective × schedule with the best cell in bold and each schedule's λ range
in a last row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from vdm.reporting import formatting
from vdm.reporting.aggregation import (
    cell_summary,
    denoiser_floor_cells,
    feature_extractors,
    guidance_cells,
    lambda_ranges,
    metric_values,
    sampler_sweep_cells,
)
from vdm.reporting.significance import resolve_baseline, significance_table
from vdm.reporting.summary_columns import GUIDANCE_METRICS, metric_spec
from vdm.reporting.summary_rows import display_frame, ordered_levels, row_axis_name


def _seed_text(df: pd.DataFrame, metric: str) -> str:
    n = cell_summary(df, metric)["n"]
    n = n[n > 0]
    if n.empty:
        return "no values"
    return f"n = {n.min()} seeds" if n.min() == n.max() else f"n = {n.min()}–{n.max()} seeds"


def _metric_sentence(df: pd.DataFrame, metric: str) -> str:
    if metric == "fid":
        with_fid = df[metric_values(df, "fid").notna()]
        samples = [int(s) for s in ordered_levels(metric_values(with_fid, "num_fid_samples"))]
        return formatting.fid_sentence(feature_extractors(df), samples)
    if metric == "nll_bpd":
        return formatting.NLL_SENTENCE
    if metric == "bayes_fid":
        return (_metric_sentence(df, "fid") + " Here the samples of the exact Bayes denoiser ε* "
                "(evaluation.bayes_samplers) with each run's own schedule, sampler setting and "
                "seed (the same initial noise and noise draws as the network's table above): "
                "what the sampler's discretization alone costs; the difference to the "
                "network's FID at the same setting is what the network's error costs.")
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
        own = metric_values(df, "classifier_test_accuracy").dropna()
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


#: what the step spacings are (the sampler table's caption, when a grid has several)
SPACING_SENTENCE = ("Step spacing between λ_min = λ(1) and λ_max = λ(0): time = uniform in the "
                    "schedule's t, logsnr = uniform in λ, karras = uniform in (σ/α)^(1/7) "
                    "(Karras et al. 2022, ρ = 7).")


def sampler_sweep_markdown(df: pd.DataFrame, metric: str = "fid") -> str:
    """Caption + Markdown table of :func:`sampler_sweep_cells`: one row per cell and sampler (and
    step spacing, in a grid with a spacing other than ``time``), one column per step count
    (``mean ± CI (NFE)``)."""
    cells = sampler_sweep_cells(df, metric)
    decimals = metric_spec(metric).decimals
    cells = cells.assign(text=[
        f"{formatting.fmt_mean_ci(c.mean, c.ci, decimals)} ({c.nfe})" + (" ᵖ" if c.primary else "")
        for c in cells.itertuples()])
    spacings = (cells["spacing"] != "time").any()
    table = cells.pivot_table(index=["objective", "schedule", "sampler",
                                     *(["spacing"] if spacings else [])], columns="steps",
                              values="text", aggfunc="first", sort=False)
    table = table.reindex(columns=sorted(table.columns)).fillna(formatting.MISSING)
    table.columns = [f"{steps} steps" for steps in table.columns]
    table = table.reset_index().rename(columns={"objective": row_axis_name(df)})
    caption = (f"{_metric_sentence(df, metric)} By sampler"
               f"{', step spacing' if spacings else ''} and number of steps, without "
               f"retraining: mean ± 95% CI over seeds (Student t), network evaluations per "
               f"image (NFE) in brackets; ᵖ = the primary setting used in the other tables. "
               f"Every setting starts from the same noise (the run's seed)."
               + (f" {SPACING_SENTENCE}" if spacings else ""))
    return formatting.markdown_block(caption, formatting.markdown_table(table))


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
                      "with a noise-conditional classifier (Dhariwal & Nichol 2021)",
        "oracle": "oracle guidance, classifier guidance with the exact p(y | z_lambda) of the "
                  "known distribution (no classifier error: compare with classifier guidance "
                  "at equal w)"}
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
            convention = conventions.get(kind, f"{kind} guidance")
            caption = (f"{_metric_sentence(df, metric)} By guidance weight w, {convention}; "
                       "w = 0 is the plain conditional sampler; mean ± 95% CI over seeds "
                       "(Student t); every weight starts from the same noise (paired).")
            blocks.append(formatting.markdown_block(caption, formatting.markdown_table(table)))
    return "\n".join(blocks)


def floor_markdown(floor: Mapping[str, Any]) -> str:
    """The FID floor (:func:`vdm.evaluation.data_floor.real_data_floor`) as a one-row table with
    its meaning: the FID, KID and precision/recall that held-out *real* images get, or, with a
    fresh reference, fresh *true samples* as many as the runs' samples."""
    table = pd.DataFrame([{
        "images": formatting.floor_images(floor),
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
    errors = metric_values(df, "fid_se").dropna()
    if errors.empty:
        return ""
    return (f"FID sampling error of one run (SD over 50 bootstrap resamples of its generated "
            f"samples; `fid_se` in summary.csv): median {errors.median():.3f}, range "
            f"{errors.min():.3f}–{errors.max():.3f}; compare it with the CIs over seeds above.")


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
