"""Which published findings reproduce in this grid: the claims of :mod:`vdm.reporting.claim_registry`
tested on ``summary.csv``, one row per claim and dataset.

Tests (all one-sided, in the direction the paper claims; :mod:`vdm.reporting.stats`):

* ``better``: cell A (the claimed winner) against cell B over seeds on the primary evaluation
  setting: paired t-test by seed when both cells were trained on the same seeds (cells that
  share a seed share initial weights, data order, training noise and evaluation noise: common
  random numbers), over the seeds where both have a value; Welch t-test only when they were
  trained on different seeds (:func:`vdm.reporting.stats.compare_cells`).
* ``best``: A against every competitor cell. A is declared best only if it beats each one:
  intersection–union test, ``p = max_j p_j`` over the competitors (a valid level-α test of "A
  beats all", no multiplicity correction needed); the effect shown is against the competitor
  attaining that largest p (the closest one). Contradicted when some competitor is
  significantly better than A: ``min(1, k · min_j p'_j)`` (Bonferroni over the ``k``
  competitors) of the opposite one-sided tests. A competitor without any value of the metric
  cannot be beaten: it is named under ``missing``, ``p`` is undefined and the claim is never
  reproduced (it can still be contradicted by a competitor that beats A).
* ``sign``: a paired per-run difference against 0, per cell: one-sample t-test over the cell's
  seeds (independent runs), never pooled over the runs of different cells, which share
  evaluation noise (dequantization, probes, ELBO draws), initial weights and data order when
  they share a seed. The claim must hold in every cell that has the metric: intersection–union
  test, ``p = max_j p_j``; the effect shown is that weakest cell's. Contradicted when some cell
  is significantly on the other side: Holm's adjustment across the cells of the opposite
  one-sided p-values (its smallest value).
* ``guidance``: the metric at the largest guidance weight of the grid against weight 0 for the
  same runs (same model, sampler and steps): paired t-test by run.

Effect = mean(A) − mean(B) in the metric's units (for ``sign``: the mean difference; for
``guidance``: guided − unguided), with its two-sided 95% t-interval; for a ``lower`` claim a
negative effect supports it. Holm's step-down correction is applied across all claims evaluated
in this run (every dataset; claims not in the grid, or whose test is undefined, are not
counted), separately to the claimed-direction p-values and to the opposite-direction ones.
Verdict at ``alpha``: ``reproduced`` (Holm-adjusted p < alpha), ``contradicted`` (the
opposite-direction test is significant after the same correction), ``inconclusive``, or
``not in this grid`` (nothing could be tested; the cells or columns it needs are named under
``missing``). A tested claim with something under ``missing`` is never ``reproduced``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from vdm.reporting import formatting
from vdm.reporting.claim_registry import CELL_AXES, CELL_DEFAULTS, CLAIMS, CellKey, Claim
from vdm.reporting.stats import (
    PAIRED_T,
    Comparison,
    compare_cells,
    holm_adjust,
    one_sample_comparison,
)
from vdm.reporting.summary_rows import final_step_rows, guidance_kind_column, primary_rows

REPRODUCED = "reproduced"
CONTRADICTED = "contradicted"
INCONCLUSIVE = "inconclusive"
NOT_IN_GRID = "not in this grid"
VERDICTS: tuple[str, ...] = (REPRODUCED, CONTRADICTED, INCONCLUSIVE, NOT_IN_GRID)

CLAIM_COLUMNS: list[str] = [
    "dataset", "claim", "citation", "statement", "metric", "direction", "kind", "cells", "n_a",
    "n_b", "test", "mean_a", "mean_b", "effect", "ci_low", "ci_high", "p", "p_holm",
    "p_opposite", "p_opposite_holm", "verdict", "missing", "note",
]
"""Columns of :func:`evaluate_claims` (and of ``claims.csv``)."""

UNDEFINED_TEST = ("no test: fewer than 2 seeds (or pairs) on a side, or no spread; counted as "
                  "inconclusive and left out of the Holm correction")
#: decimals of a metric's effect in the Markdown table (3 for any other metric)
METRIC_DECIMALS = {"fid": 2, "kid": 4}
_OPPOSITE = {"less": "greater", "greater": "less"}


# --------------------------------------------------------------------------- cells
def with_cell_axes(summary: pd.DataFrame) -> pd.DataFrame:
    """``summary`` with every axis of :data:`CELL_AXES` as a text column; a missing
    ``conditioning`` or ``parameterization`` column (older grids) takes its default."""
    out = summary.copy()
    for axis in CELL_AXES:
        default = CELL_DEFAULTS.get(axis)
        if axis not in out:
            out[axis] = default
        elif default is not None:
            out[axis] = out[axis].where(out[axis].notna(), default)
        out[axis] = out[axis].astype(str)
    return out


def full_key(key: CellKey) -> dict[str, str]:
    """A claim's cell key with the defaults filled in for the axes it does not name."""
    return {**CELL_DEFAULTS, **dict(key)}


def cell_label(key: Mapping[str, str]) -> str:
    """Short text of a cell or set of runs: ``objective/schedule``, then ``<p> output`` when the
    parameterization is not ``eps`` and ``class-conditional`` for class-conditional models,
    e.g. ``eps/cosine, class-conditional``; ``all runs`` for the empty key."""
    key = dict(key)
    parts = ["/".join(key[a] for a in ("objective", "schedule") if a in key)]
    if key.get("parameterization", "eps") != "eps":
        parts.append(f"{key['parameterization']} output")
    if key.get("conditioning", "uncond") != "uncond":
        parts.append(f"{key['conditioning']}-conditional")
    return ", ".join(p for p in parts if p) or "all runs"


def scope_label(key: Mapping[str, str]) -> str:
    """The competitors of a ``best`` claim in words, e.g. ``every other cell on the cosine
    schedule (unconditional, eps output)``."""
    key = dict(key)
    fixed = [f"{axis} {key[axis]}" for axis in ("objective", "schedule") if axis in key]
    where = f" with {' and '.join(fixed)}" if fixed else ""
    conditioning = key.get("conditioning", "uncond")
    model = "unconditional" if conditioning == "uncond" else f"{conditioning}-conditional"
    return f"every other cell{where} ({model}, {key.get('parameterization', 'eps')} output)"


def _match(df: pd.DataFrame, key: Mapping[str, str]) -> pd.Series:
    mask = pd.Series(True, index=df.index)
    for axis, value in key.items():
        mask &= df[axis] == value
    return mask


def _by_seed(df: pd.DataFrame, metric: str) -> dict[Any, float]:
    """``{seed: value}`` of ``metric`` for every seed of ``df``: the mean of its finite values
    over duplicate rows, NaN for a seed without one (the seed stays: the cell was trained on it,
    so :func:`~vdm.reporting.stats.compare_cells` still pairs the other seeds)."""
    values = pd.to_numeric(df[metric], errors="coerce")
    values = values.where(np.isfinite(values))
    return {k: float(v) for k, v in values.groupby(df["seed"]).mean().items()}


def _has_values(by_seed: Mapping[Any, float]) -> bool:
    return any(np.isfinite(v) for v in by_seed.values())


# --------------------------------------------------------------------------- per kind
def _row(claim: Claim, cells: str, comparison: Comparison | None, p_opposite: float = np.nan,
         missing: str = "", note: str = "") -> dict[str, Any]:
    row: dict[str, Any] = {
        "claim": claim.id, "citation": claim.citation.text, "statement": claim.statement,
        "metric": claim.metric, "direction": claim.direction, "kind": claim.kind,
        "cells": cells, "missing": missing,
        "note": "; ".join(n for n in (claim.note, note) if n),
    }
    stats = {"n_a": np.nan, "n_b": np.nan, "test": "", "mean_a": np.nan, "mean_b": np.nan,
             "effect": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p": np.nan}
    if comparison is not None:
        stats.update({k: getattr(comparison, k) for k in stats})
        if np.isnan(comparison.p):
            row["note"] = "; ".join(n for n in (row["note"], UNDEFINED_TEST) if n)
    return {**row, **stats, "p_opposite": p_opposite}


def _alternative(claim: Claim) -> str:
    return "less" if claim.direction == "lower" else "greater"


def _not_in_grid(claim: Claim, cells: str, missing: str) -> dict[str, Any]:
    return _row(claim, cells, None, missing=f"{missing} (needs {claim.requires})")


def _metric_missing(df: pd.DataFrame, metric: str) -> bool:
    return metric not in df or not np.isfinite(pd.to_numeric(df[metric], errors="coerce")).any()


def _steps_note(*frames: pd.DataFrame) -> str:
    steps = sorted({int(s) for f in frames if "steps" in f for s in f["steps"].dropna()})
    return f"training steps differ between the runs compared ({steps})" if len(steps) > 1 else ""


def _better(claim: Claim, rows: pd.DataFrame) -> dict[str, Any]:
    a_key, b_key = full_key(claim.a), full_key(claim.b)
    cells = f"{cell_label(a_key)} vs {cell_label(b_key)}"
    a_rows, b_rows = rows[_match(rows, a_key)], rows[_match(rows, b_key)]
    absent = [cell_label(k) for k, r in ((a_key, a_rows), (b_key, b_rows)) if r.empty]
    if absent:
        return _not_in_grid(claim, cells, "no runs of " + " and ".join(absent))
    if _metric_missing(a_rows, claim.metric) or _metric_missing(b_rows, claim.metric):
        return _not_in_grid(claim, cells, f"no {claim.metric} values")
    a, b = _by_seed(a_rows, claim.metric), _by_seed(b_rows, claim.metric)
    alternative = _alternative(claim)
    comparison = compare_cells(a, b, alternative)
    opposite = compare_cells(a, b, _OPPOSITE[alternative]).p
    return _row(claim, cells, comparison, opposite, note=_steps_note(a_rows, b_rows))


def _best(claim: Claim, rows: pd.DataFrame) -> dict[str, Any]:
    a_key = full_key(claim.a)
    pool = rows[_match(rows, full_key(claim.among))]
    competitors = [dict(zip(CELL_AXES, k, strict=True))
                   for k in dict.fromkeys(zip(*(pool[a] for a in CELL_AXES), strict=True))]
    competitors = [k for k in competitors if k != a_key]
    a_rows = rows[_match(rows, a_key)]
    scope = scope_label(full_key(claim.among))
    cells = f"{cell_label(a_key)} vs {scope}"
    if a_rows.empty or not competitors:
        what = f"no runs of {cell_label(a_key)}" if a_rows.empty else "no other cells to compare"
        return _not_in_grid(claim, cells, what)
    if _metric_missing(a_rows, claim.metric):
        return _not_in_grid(claim, cells, f"no {claim.metric} values")
    a = _by_seed(a_rows, claim.metric)
    alternative = _alternative(claim)
    results, without_values = [], []
    for key in competitors:
        b = _by_seed(rows[_match(rows, key)], claim.metric)
        if not _has_values(b):  # A cannot be shown to beat it: named, never skipped
            without_values.append(cell_label(key))
            continue
        results.append((key, compare_cells(a, b, alternative),
                        compare_cells(a, b, _OPPOSITE[alternative]).p))
    missing = f"no {claim.metric} values in {', '.join(without_values)}" if without_values else ""
    if not results:
        return _not_in_grid(claim, cells, missing)
    p_values = np.array([c.p for _, c, _ in results])
    if np.isnan(p_values).any():  # some comparison is undefined: A is not shown to beat it
        closest = int(np.flatnonzero(np.isnan(p_values))[0])
    else:
        closest = int(np.argmax(p_values))
    key, comparison, _ = results[closest]
    opposite = np.array([p for *_, p in results])
    finite = opposite[np.isfinite(opposite)]
    p_opposite = float(min(1.0, finite.size * finite.min())) if finite.size else np.nan
    cells = (f"{cell_label(a_key)} vs {scope}: {len(results)} cells; closest: "
             f"{cell_label(key)}")
    note = _steps_note(a_rows, pool)
    row = _row(claim, cells, comparison, p_opposite, missing=missing, note=note)
    if missing:  # the intersection–union p over all competitors is undefined
        row["p"] = np.nan
    return row


def _sign(claim: Claim, rows: pd.DataFrame) -> dict[str, Any]:
    key = dict(claim.a)
    subset = rows[_match(rows, key)]
    cells = f"{claim.metric} per cell over its seeds vs 0, {cell_label(key)}"
    if subset.empty or _metric_missing(subset, claim.metric):
        return _not_in_grid(claim, cells, f"no {claim.metric} values")
    alternative = _alternative(claim)
    results = []
    for axes, cell_rows in subset.groupby(list(CELL_AXES), sort=False):
        values = [v for v in _by_seed(cell_rows, claim.metric).values() if np.isfinite(v)]
        if values:  # cells without the metric (e.g. no ODE likelihood) are outside the claim
            results.append((dict(zip(CELL_AXES, axes, strict=True)),
                            one_sample_comparison(values, alternative),
                            one_sample_comparison(values, _OPPOSITE[alternative]).p))
    p_values = np.array([c.p for _, c, _ in results])
    if np.isnan(p_values).any():  # a cell without a test: the claim is not shown in every cell
        weakest = int(np.flatnonzero(np.isnan(p_values))[0])
    else:
        weakest = int(np.argmax(p_values))
    cell_key, comparison, _ = results[weakest]
    opposite = np.array([p for *_, p in results])
    finite = opposite[np.isfinite(opposite)]
    p_opposite = float(holm_adjust(finite).min()) if finite.size else np.nan
    cells = (f"{cells}: {len(results)} cell{'s' if len(results) != 1 else ''}; weakest: "
             f"{cell_label(cell_key)}")
    return _row(claim, cells.replace(", all runs:", ":"), comparison, p_opposite)


RUN_KEY = [*CELL_AXES, "seed"]
SETTING_KEY = ["sampler", "sample_steps", "sample_spacing"]  # the spacing: only in some grids


def _guidance(claim: Claim, rows: pd.DataFrame) -> dict[str, Any]:
    key = dict(claim.a)
    cells = f"{claim.guidance_kind} at the largest weight vs weight 0, {cell_label(key)} runs"
    subset = rows[_match(rows, key)]
    if subset.empty:
        return _not_in_grid(claim, cells, f"no {cell_label(key)} runs")
    if "guidance_weight" not in subset or _metric_missing(subset, claim.metric):
        return _not_in_grid(claim, cells, f"no {claim.metric} values")
    weight = pd.to_numeric(subset["guidance_weight"], errors="coerce").fillna(0.0)
    guided = subset[(guidance_kind_column(subset) == claim.guidance_kind) & (weight > 0)]
    if guided.empty:
        return _not_in_grid(claim, cells, f"no samples with {claim.guidance_kind} weight > 0")
    w_max = float(pd.to_numeric(guided["guidance_weight"]).max())
    guided = guided[pd.to_numeric(guided["guidance_weight"]) == w_max]
    plain = subset[weight == 0]
    setting_key = [c for c in SETTING_KEY if c in subset]
    value = claim.metric
    merged = guided[RUN_KEY + setting_key + [value]].merge(
        plain[RUN_KEY + setting_key + [value]], on=RUN_KEY + setting_key, suffixes=("_a", "_b"))
    for side in ("_a", "_b"):
        merged[value + side] = pd.to_numeric(merged[value + side], errors="coerce")
    merged = merged[np.isfinite(merged[value + "_a"]) & np.isfinite(merged[value + "_b"])]
    if merged.empty:
        return _not_in_grid(claim, cells, f"no run with {claim.metric} at both weight {w_max:g} "
                                          "and weight 0 (same sampler and steps)")
    per_run = merged.groupby(RUN_KEY, sort=False)[[value + "_a", value + "_b"]].mean()
    a = {run: float(v) for run, v in per_run[value + "_a"].items()}
    b = {run: float(v) for run, v in per_run[value + "_b"].items()}
    alternative = _alternative(claim)
    comparison = compare_cells(a, b, alternative)
    opposite = compare_cells(a, b, _OPPOSITE[alternative]).p
    cells = (f"{claim.guidance_kind} w = {w_max:g} vs w = 0, same model, sampler and steps "
             f"({len(a)} runs: {cell_label(key)})")
    return _row(claim, cells, comparison, opposite)


_EVALUATORS = {"better": _better, "best": _best, "sign": _sign, "guidance": _guidance}


# --------------------------------------------------------------------------- public API
def evaluate_claims(summary: pd.DataFrame, registry: Sequence[Claim] = CLAIMS,
                    alpha: float = 0.05) -> pd.DataFrame:
    """Test every claim of ``registry`` on ``summary`` (``summary.csv`` as a DataFrame), per
    dataset; one row per (dataset, claim) with the columns :data:`CLAIM_COLUMNS`.

    Cell claims use the primary evaluation rows only; ``guidance`` claims use every row of the
    runs involved. ``test`` is ``paired t`` / ``Welch t`` / ``one-sample t`` (empty when the
    claim is not in the grid); ``p`` is the one-sided p in the claimed direction, ``p_holm``
    its Holm-adjusted value over the rows with a defined ``p``; ``p_opposite`` /
    ``p_opposite_holm`` the same for the opposite direction. Deterministic: rows in dataset
    (first appearance) then registry order. See the module docstring for the tests. Only
    each run's final training step counts (:func:`final_step_rows`; claims at every training
    budget: :mod:`vdm.reporting.claims_by_budget`).
    """
    ids = [c.id for c in registry]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate claim ids in the registry: {ids}")
    frame = with_cell_axes(final_step_rows(summary))
    datasets = list(pd.unique(frame["dataset"].astype(str))) if "dataset" in frame else [""]
    rows = []
    for dataset in datasets:
        every = frame[frame["dataset"].astype(str) == dataset] if "dataset" in frame else frame
        primary = primary_rows(every)
        for claim in registry:
            source = every if claim.kind == "guidance" else primary
            rows.append({"dataset": dataset, **_EVALUATORS[claim.kind](claim, source)})
    out = pd.DataFrame(rows)
    out["p_holm"] = holm_adjust(out["p"].to_numpy(dtype=float))
    out["p_opposite_holm"] = holm_adjust(out["p_opposite"].to_numpy(dtype=float))
    out["verdict"] = [_verdict(r, alpha) for r in out.itertuples()]
    for col in ("n_a", "n_b"):
        out[col] = out[col].astype("Int64")
    return out[CLAIM_COLUMNS]


def _verdict(row: Any, alpha: float) -> str:
    if row.missing and not row.test:  # nothing could be tested
        return NOT_IN_GRID
    if row.p_holm < alpha and not row.missing:  # never decided over a cell it could not compare
        return REPRODUCED
    if row.p_opposite_holm < alpha:
        return CONTRADICTED
    return INCONCLUSIVE


def claims_csv(claims: pd.DataFrame) -> str:
    """``claims.csv`` text of :func:`evaluate_claims` (floats to 6 significant digits, ``\\n``
    line ends: byte-for-byte reproducible)."""
    return claims.to_csv(index=False, float_format="%.6g", lineterminator="\n")


def _fmt_effect(row: Any) -> str:
    if formatting.is_missing(row.effect):
        return formatting.MISSING
    decimals = METRIC_DECIMALS.get(row.metric, 3)
    text = f"{row.effect:+.{decimals}f}"
    if not (formatting.is_missing(row.ci_low) or formatting.is_missing(row.ci_high)):
        text += f" [{row.ci_low:+.{decimals}f}, {row.ci_high:+.{decimals}f}]"
    return text.replace("-", "−")


def _fmt_n(row: Any) -> str:
    if pd.isna(row.n_a):
        return formatting.MISSING
    if row.test in (PAIRED_T, "one-sample t") or pd.isna(row.n_b):
        return str(int(row.n_a))
    return f"{int(row.n_a)} / {int(row.n_b)}"


def claims_caption(claims: pd.DataFrame, alpha: float = 0.05) -> str:
    """What the claims table shows and how it was tested (one paragraph)."""
    tested = int(claims["p"].notna().sum())
    return (
        "Each published claim tested on this grid, one-sided in the claimed direction. "
        "Cells are conditioning / parameterization / objective / schedule (`eps` output and "
        "unconditional models unless the claim names them), compared on each run's primary "
        "evaluation setting over seeds. Effect = mean(A) − mean(B) in the metric's units "
        "(A = the cell the paper says is better; for a lower-is-better metric a negative "
        "effect supports the claim) with its two-sided 95% CI. Test: paired t over seeds when "
        "both cells were trained on the same seeds (cells sharing a seed share initial "
        "weights, data order, training and evaluation noise), on the seeds where both have a "
        "value (a missing value drops only its pair), Welch t only when the cells were trained "
        "on different seeds; a sign claim (a per-run "
        "paired difference) is a one-sample t over the seeds of each cell, never over the runs "
        "of different cells (which share evaluation noise by seed), and must hold in every "
        "cell (p = the largest; contradicted by any cell after Holm across the cells); "
        "guidance claims are paired by run (guided vs unguided samples of "
        "the same model, sampler and steps). A \"best\" claim must beat every other cell "
        "(intersection–union test: p = the largest one-sided p; the effect is against that "
        "closest cell); it is contradicted when some cell beats it (Bonferroni over the "
        "cells); a cell with no values is named under what is missing and the claim is then never "
        f"reproduced. p (Holm): Holm-adjusted across the {tested} claims tested in this run "
        f"(claims not in this grid, or with < 2 seeds, are not counted). Verdict at "
        f"α = {alpha:g} after Holm: reproduced; contradicted (the opposite one-sided test is "
        "significant after the same correction); inconclusive; not in this grid (what it needs "
        "is named)."
    )


def claims_table_cells(claims: pd.DataFrame) -> pd.DataFrame:
    """The formatted strings of the claims table (one row per claim and dataset)."""
    multi = claims["dataset"].nunique() > 1
    table = pd.DataFrame({
        **({"dataset": list(claims["dataset"])} if multi else {}),
        "claim": [f"**{r.claim}**: {r.statement} ({r.citation})" for r in claims.itertuples()],
        "cells compared (A vs B)": [
            r.cells + (f"; missing: {r.missing}" if r.missing else "") for r in claims.itertuples()],
        "metric": [f"`{m}` ({'↓' if d == 'lower' else '↑'})"
                   for m, d in zip(claims["metric"], claims["direction"], strict=True)],
        "n": [_fmt_n(r) for r in claims.itertuples()],
        "effect A − B [95% CI]": [_fmt_effect(r) for r in claims.itertuples()],
        "test": [t or formatting.MISSING for t in claims["test"]],
        "p": [formatting.fmt_p(p) for p in claims["p"]],
        "p (Holm)": [formatting.fmt_p(p) for p in claims["p_holm"]],
        "verdict": [f"**{v}**" if v in (REPRODUCED, CONTRADICTED) else v
                    for v in claims["verdict"]],
    }, dtype=object)
    return table


def claims_markdown(claims: pd.DataFrame, *, run_name: str, commit: str,
                    command: str | None = None, alpha: float = 0.05) -> str:
    """``claims.md``: a header naming the run and commit it was generated from (and the command
    that regenerates it), the caption, the table and one note per claim that says how it is
    judged here. Deterministic for a given ``claims`` frame."""
    lines = ["# Published claims: do they reproduce here?", "",
             f"Generated by `vdm.reporting.claims` from run `{run_name}` at commit `{commit}`; do not edit "
             "by hand." + (f" Regenerate with `{command}`." if command else ""), ""]
    counts = claims["verdict"].value_counts()
    lines.append("Verdicts: " + ", ".join(f"{int(counts.get(v, 0))} {v}" for v in VERDICTS)
                 + ".")
    lines.append("")
    lines.append(formatting.markdown_block(claims_caption(claims, alpha),
                                           formatting.markdown_table(claims_table_cells(claims))))
    notes = [f"- **{r.claim}**: {r.note}."
             for r in claims.drop_duplicates(["claim", "note"]).itertuples() if r.note]
    if notes:
        lines += ["How each claim is judged here:", "", *notes, ""]
    return "\n".join(lines)
