"""The "against the known answer" table of a grid on a dataset with an exact density
(``digits-gmm``): per cell, the run's NLL bound next to the true entropy ``H`` and split into the
network's and the schedule's share (columns of :mod:`vdm.evaluation.known_density`).

Every number is in bits per dimension; a cell is ``mean ± 95% Student-t CI`` over its seeds
(:func:`vdm.reporting.aggregation.cell_summary`). ``NLL − H`` and the two gaps are the means of
each run's paired per-image differences, so ``network gap + schedule + decoder gap = NLL − H``
in every run (and in the cell means). ``H`` is the distribution's entropy estimated on 100k
fresh exact samples, the same in every row; the exact mean ``-log2 P(x) / D`` of the test images
the differences are paired with (``true_nll_bpd``) is in the caption, so ``NLL − H`` can differ
from the NLL column minus the H column by the test images' own spread around ``H``.

A second table (when the runs' samples were scored against the truth,
:mod:`vdm.evaluation.sample_truth`) puts each cell's primary samples next to the truth: their
mean exact ``-log2 P(x) / D`` against ``H``, FID against the FID of the exact denoiser's samples
(same sampler, steps and noise: no network error), and the Bayes classifier's accuracy on the
requested labels and mean confidence against the Bayes accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from vdm.reporting import formatting
from vdm.reporting.aggregation import cell_summary, metric_values
from vdm.reporting.summary_rows import row_axis_name

#: (column, heading) of the table; the ODE columns are added when some run has them
ELBO_COLUMNS: tuple[tuple[str, str], ...] = (
    ("nll_bpd", "NLL"), ("true_entropy_bpd", "H"), ("nll_minus_entropy_bpd", "NLL − H"),
    ("bayes_bound_bpd", "Bayes bound"), ("nll_minus_bayes_bound_bpd", "network gap"),
    ("bayes_bound_minus_entropy_bpd", "schedule + decoder gap"))
ODE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("nll_ode_vdeq_bpd", "ODE NLL"), ("nll_ode_vdeq_minus_entropy_bpd", "ODE NLL − H"),
    ("bayes_ode_vdeq_bpd", "ODE Bayes bound"),
    ("nll_ode_vdeq_minus_bayes_ode_vdeq_bpd", "ODE network gap"),
    ("bayes_ode_vdeq_minus_entropy_bpd", "ODE schedule + decoder gap"))
DECIMALS = 3


def true_entropy(df: pd.DataFrame) -> tuple[float, float] | None:
    """``(H, its SE)`` in bits/dim from ``true_entropy_bpd`` (and ``_se``) of the runs, or None
    when no run has it (a dataset without a known density)."""
    values = metric_values(df, "true_entropy_bpd").dropna()
    if values.empty:
        return None
    se = metric_values(df, "true_entropy_bpd_se").dropna()
    return float(values.iloc[0]), float(se.iloc[0]) if len(se) else float("nan")


def has_known_answer(df: pd.DataFrame) -> bool:
    """Whether the runs were measured against a known density (:func:`true_entropy`)."""
    return true_entropy(df) is not None


def known_answer_columns(df: pd.DataFrame) -> tuple[tuple[str, str], ...]:
    """The table's (column, heading) pairs: :data:`ELBO_COLUMNS`, and :data:`ODE_COLUMNS` when
    some run has the ODE's known-answer columns."""
    ode = metric_values(df, "nll_ode_vdeq_minus_entropy_bpd").notna().any()
    return ELBO_COLUMNS + (ODE_COLUMNS if ode else ())


def known_answer_cells(df: pd.DataFrame, latex: bool = False,
                       objective_order: Sequence[str] | None = None,
                       schedule_order: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per cell (objective row, schedule): each column of :func:`known_answer_columns`
    as formatted ``mean ± CI`` over seeds (``n/a`` where missing; ``H`` without a CI, it is
    the same number in every run)."""
    return _cell_table(df, [(metric, heading, DECIMALS)
                            for metric, heading in known_answer_columns(df)],
                       {"true_entropy_bpd"}, latex, objective_order, schedule_order)  # H: SE in caption


def known_answer_caption(df: pd.DataFrame, confidence: float = 0.95) -> str:
    """What the table shows, with ``H``, the test images' exact mean and the seeds."""
    entropy, entropy_se = true_entropy(df) or (np.nan, np.nan)
    exact = metric_values(df, "true_nll_bpd").dropna()
    images = metric_values(df, "nll_num_examples").dropna()
    on_images = (f" ({int(images.iloc[0])} test images, whose exact mean −log2 P(x)/D is "
                 f"{exact.iloc[0]:.3f})" if len(exact) and len(images) else "")
    seeds = cell_summary(df, "nll_minus_entropy_bpd")["n"]
    seeds = seeds[seeds > 0]
    seed_text = ("no values" if seeds.empty else f"n = {seeds.min()} seeds" if
                 seeds.min() == seeds.max() else f"n = {seeds.min()}–{seeds.max()} seeds")
    ode = (" ODE columns: the same for the decoder-consistent ODE bound, on its images."
           if len(known_answer_columns(df)) > len(ELBO_COLUMNS) else "")
    return (f"Against the known answer, in bits/dim (lower is better): H = {entropy:.4f} ± "
            f"{entropy_se:.4f} is the true entropy E_P[−log2 P(x)]/D of the data's distribution "
            "(100k fresh exact samples). NLL − H = the run's ELBO minus the exact −log2 P(x)/D "
            f"of the same test image, averaged{on_images}. Bayes bound = the ELBO of the "
            "Bayes-optimal denoiser eps* with the run's own λ range on the same images and noise: "
            "the best any network can reach with that λ range and VDM's decoder. Network gap = "
            "NLL − Bayes bound; schedule + decoder gap = Bayes bound − H; per image the two add "
            f"up to NLL − H.{ode} Cells: mean ± {100 * confidence:g}% CI half-width over seeds "
            f"(Student t, n − 1 dof; {seed_text}).")


def known_answer_markdown(df: pd.DataFrame, **order: Sequence[str]) -> str:
    """Caption + Markdown table of :func:`known_answer_cells`, and of
    :func:`known_answer_sample_cells` when the runs' samples were scored against the truth."""
    text = formatting.markdown_block(known_answer_caption(df),
                                     formatting.markdown_table(known_answer_cells(df, **order)))
    if sample_columns(df):
        text += "\n" + formatting.markdown_block(
            known_answer_sample_caption(df),
            formatting.markdown_table(known_answer_sample_cells(df, **order)))
    return text


def known_answer_latex(df: pd.DataFrame, label: str = "tab:known-answer",
                       **order: Sequence[str]) -> str:
    """LaTeX (booktabs) table of :func:`known_answer_cells` with caption and label (and the
    samples' table, :func:`known_answer_sample_cells`, labelled ``<label>-samples``)."""
    text = formatting.latex_table(known_answer_cells(df, True, **order),
                                  known_answer_caption(df), label, label_cols=2)
    if sample_columns(df):
        text += "\n" + formatting.latex_table(known_answer_sample_cells(df, True, **order),
                                              known_answer_sample_caption(df),
                                              f"{label}-samples", label_cols=2)
    return text


# ----- the samples against the truth (vdm.evaluation.sample_truth) ---------------------------
#: (column, heading, decimals) of the samples' table; columns no run has are left out
SAMPLE_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("sample_nll_bpd", "samples −log2 P/D", 3), ("true_entropy_bpd", "H", 3),
    ("sample_nll_minus_entropy_bpd", "samples − H", 3),
    ("bayes_sample_nll_bpd", "exact ε*: −log2 P/D", 3), ("fid", "FID", 2),
    ("bayes_fid", "FID of exact ε*", 2), ("bayes_class_accuracy", "Bayes class accuracy", 4),
    ("sample_bayes_confidence", "Bayes confidence", 4),
    ("bayes_sample_bayes_confidence", "exact ε*: Bayes confidence", 4),
    ("bayes_accuracy", "Bayes accuracy", 4))
#: same in every run (a property of the distribution): shown without a CI
CONSTANT_COLUMNS = ("true_entropy_bpd", "bayes_accuracy")


def sample_columns(df: pd.DataFrame) -> tuple[tuple[str, str, int], ...]:
    """The samples' table columns some run has; empty when no run's samples were scored
    against the truth."""
    if not metric_values(df, "sample_nll_bpd").notna().any():
        return ()
    return tuple(c for c in SAMPLE_COLUMNS if metric_values(df, c[0]).notna().any())


def known_answer_sample_cells(df: pd.DataFrame, latex: bool = False,
                              objective_order: Sequence[str] | None = None,
                              schedule_order: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per cell: each column of :func:`sample_columns` as ``mean ± CI`` over seeds
    (``H`` and the Bayes accuracy without a CI)."""
    return _cell_table(df, list(sample_columns(df)), set(CONSTANT_COLUMNS), latex,
                       objective_order, schedule_order)


def _cell_table(df: pd.DataFrame, columns: list[tuple[str, str, int]], constant: set[str],
                latex: bool, objective_order: Sequence[str] | None,
                schedule_order: Sequence[str] | None) -> pd.DataFrame:
    """One row per cell (objective row, schedule), one column per ``(metric, heading,
    decimals)``: ``mean ± CI`` over seeds, without a CI for the ``constant`` metrics (the same
    number in every run); the cell names LaTeX-escaped with ``latex``."""
    frames = [cell_summary(df, metric, objective_order, schedule_order)
              .set_index(["objective", "schedule"]) for metric, _, _ in columns]
    table = pd.DataFrame(index=frames[0].index)
    for (metric, heading, decimals), cells in zip(columns, frames, strict=True):
        cis = (cells["ci"] if metric not in constant
               else pd.Series(np.nan, index=cells.index))
        table[heading] = [formatting.fmt_mean_ci(m, c, decimals, latex=latex)
                          for m, c in zip(cells["mean"], cis, strict=True)]
    table = table.reset_index().rename(columns={"objective": row_axis_name(df)})
    if latex:
        for column in table.columns[:2]:
            table[column] = table[column].map(formatting.latex_escape)
    return table


def known_answer_sample_caption(df: pd.DataFrame, confidence: float = 0.95) -> str:
    """What the samples' table shows."""
    settings = primary_setting_text(df)
    exact = (" 'exact ε*' columns: the same sampler, steps and seed (the same initial noise and "
             "noise draws) with the exact Bayes denoiser ε* on the run's own schedule instead of "
             "the network: what the run would score without network error (the gap to the "
             "run's own FID is what the network's error costs)."
             if metric_values(df, "bayes_fid").notna().any() else "")
    return (f"The primary samples{settings} against the known answer: samples −log2 P/D = the "
            "mean exact −log2 P(x)/D of the samples in bits/dim, next to the true entropy H "
            "(perfect samples score H; samples off the data's support or at low-density points "
            "score higher, but mode-collapsed samples on high-density points can score below "
            "H, so read it with FID). Bayes class accuracy (class-conditional samples) = the "
            "fraction whose Bayes-classifier label argmax_c p(c | x) is the requested class; "
            "Bayes confidence = the mean max_c p(c | x); both equal the Bayes accuracy "
            f"E_P[max_c p(c | x)] for perfect samples.{exact} Cells: mean ± "
            f"{100 * confidence:g}% CI half-width over seeds (Student t, n − 1 dof).")


def primary_setting_text(df: pd.DataFrame) -> str:
    """`` (ancestral, 25 steps)`` of the rows' sampler setting, empty when unknown or mixed."""
    if "sampler" not in df or "sample_steps" not in df:
        return ""
    settings = {(s, k) for s, k in zip(df["sampler"], df["sample_steps"], strict=True)
                if isinstance(s, str)}
    if len(settings) != 1:
        return ""
    sampler, steps = settings.pop()
    return f" ({sampler}, {int(steps)} steps)"
