"""The grid's answer in a few lines, for the first page a reader opens: which published claims
reproduce, the best cells per metric with their confidence intervals, and what the grid covered.

Built once (:func:`headline`) from ``summary.csv`` and ``claims.csv`` (and, when given, the grid's
config: its name and the runs it planned), then written as Markdown (:func:`headline_markdown`:
README, ``headline.md``) and reStructuredText (:func:`headline_rst`: ``headline.rst``, which the
report's landing page ``workflow/report/workflow.rst`` includes). Numbers are the tables': cell
means over seeds on the primary evaluation setting with their 95% Student-t intervals
(:func:`vdm.reporting.tables.cell_summary`), claim effects with their 95% CIs and Holm-adjusted
one-sided p-values (:mod:`vdm.reporting.claims`). Deterministic for given inputs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from vdm.core.provenance import atomic_output
from vdm.reporting import formatting
from vdm.reporting.aggregation import cell_summary, fid_label
from vdm.reporting.claims import CONTRADICTED, INCONCLUSIVE, METRIC_DECIMALS, NOT_IN_GRID, REPRODUCED
from vdm.reporting.summary_columns import OPTIONAL_PIVOT_METRICS, PIVOT_METRICS, metric_spec
from vdm.reporting.summary_rows import (
    display_frame,
    final_step_rows,
    guidance_kind_column,
    ordered_levels,
    primary_rows,
    row_axis_name,
    spacing_column,
)

#: one piece of inline text: ``(style, text)``, style ``text``, ``bold`` or ``code``
Span = tuple[str, str]
Line = tuple[Span, ...]
RUN_AXES = ("conditioning", "parameterization", "objective", "schedule", "seed")


@dataclass(frozen=True)
class Headline:
    """The headline as structured text: a title, a one-paragraph answer (``lead``) and
    sections of bullet lines (``(heading, lines)``)."""

    title: Line
    lead: Line
    sections: tuple[tuple[str, tuple[Line, ...]], ...]


def _t(text: str) -> Span:
    return ("text", text)


def _b(text: str) -> Span:
    return ("bold", text)


def _c(text: str) -> Span:
    return ("code", text)


# --------------------------------------------------------------------------- content
def _count(n: int, one: str, several: str) -> str:
    return f"{n} {one if n == 1 else several}"


def _names(values: Iterable[Any]) -> str:
    return ", ".join(str(v) for v in values)


def _seed_count(cells: pd.DataFrame) -> str:
    n = cells["n"][cells["n"] > 0]
    if n.empty:
        return "no seeds"
    return f"{n.min()} seeds" if n.min() == n.max() else f"{n.min()}–{n.max()} seeds"


def best_cells(summary: pd.DataFrame) -> list[dict[str, Any]]:
    """Per dataset and metric of the pivots (FID, NLL and, when computed, ODE / conditional
    NLL; all lower-is-better): the best and the runner-up cell of the primary rows by mean, as
    ``{"dataset", "metric", "label", "cells"}`` with ``cells`` the :func:`cell_summary` rows
    (mean, 95% t-CI half-width, n) sorted by mean; metrics without values are left out."""
    out = []
    for dataset, rows in _datasets(summary):
        rows = display_frame(primary_rows(rows))
        for metric in (*PIVOT_METRICS, *OPTIONAL_PIVOT_METRICS):
            if metric not in rows or rows[metric].isna().all():
                continue
            cells = cell_summary(rows, metric).dropna(subset=["mean"])
            cells = cells.sort_values("mean", kind="stable").reset_index(drop=True)
            label = fid_label(rows) if metric == "fid" else (
                f"{metric_spec(metric).name} ({metric_spec(metric).unit})")
            out.append({"dataset": dataset, "metric": metric, "label": label, "cells": cells,
                        "row_axis": row_axis_name(rows)})
    return out


def _datasets(summary: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    if "dataset" not in summary:
        return [("", summary)]
    names = summary["dataset"].astype(object).where(summary["dataset"].notna(), "unknown")
    return [(str(name), summary[names == name]) for name in ordered_levels(names)]


def _cell_text(cell: pd.Series, decimals: int) -> str:
    return formatting.fmt_mean_ci(cell["mean"], cell["ci"], decimals)


def _cell_name(cell: pd.Series) -> str:
    return f"{cell['objective']} / {cell['schedule']}"


def _best_lines(best: list[dict[str, Any]], several: bool) -> tuple[Line, ...]:
    lines = []
    for entry in best:
        cells, decimals = entry["cells"], metric_spec(entry["metric"]).decimals
        first = cells.iloc[0]
        line: list[Span] = [_t((f"{entry['dataset']}: " if several else "")
                               + f"{entry['label']}, lower is better: "),
                            _b(_cell_name(first)),
                            _t(f" {_cell_text(first, decimals)}")]
        if len(cells) > 1:
            second = cells.iloc[1]
            line.append(_t(f"; next {_cell_name(second)} {_cell_text(second, decimals)}"))
        ci_note = ("95% CI over " + _seed_count(cells) if cells["ci"].notna().any()
                   else "one seed: no CI")
        line.append(_t(f" (mean ± {ci_note}; {len(cells)} cells)"))
        lines.append(tuple(line))
    return tuple(lines)


def _effect(row: Any) -> str:
    decimals = METRIC_DECIMALS.get(row.metric, 3)
    text = f"{row.effect:+.{decimals}f}"
    if not (formatting.is_missing(row.ci_low) or formatting.is_missing(row.ci_high)):
        text += f" [{row.ci_low:+.{decimals}f}, {row.ci_high:+.{decimals}f}]"
    return text.replace("-", "−")


#: what a claim's effect is, by kind (:mod:`vdm.reporting.claim_registry`)
EFFECT_NAMES = {"sign": "mean", "guidance": "guided − unguided"}


def _p_text(p: float) -> str:
    text = formatting.fmt_p(p)
    return text.replace("<", "< ") if text.startswith("<") else f"= {text}"


def _claim_lines(claims: pd.DataFrame, several: bool) -> tuple[Line, ...]:
    """Reproduced and contradicted claims one per line (statement, cells, effect with its 95%
    CI, the Holm-adjusted p of the direction that won), then the others' ids by verdict."""
    lines: list[Line] = []
    for verdict in (REPRODUCED, CONTRADICTED):
        for row in claims[claims["verdict"] == verdict].itertuples():
            where = f"{row.dataset}: " if several else ""
            p = row.p_holm if verdict == REPRODUCED else row.p_opposite_holm
            direction = "" if verdict == REPRODUCED else "opposite direction, "
            lines.append((_b(verdict), _t(f" {where}"), _c(str(row.claim)),
                          _t(f" — {row.statement} {row.cells}: "
                             f"{EFFECT_NAMES.get(row.kind, 'A − B')} of "), _c(str(row.metric)),
                          _t(f" {_effect(row)} (95% CI), {direction}p (Holm) {_p_text(p)}.")))
    for verdict in (INCONCLUSIVE, NOT_IN_GRID):
        ids = claims.loc[claims["verdict"] == verdict, "claim"].astype(str)
        if len(ids):
            spans: list[Span] = [_t(f"{verdict}: ")]
            for i, claim in enumerate(dict.fromkeys(ids)):
                spans += [*([_t(", ")] if i else []), _c(claim)]
            lines.append(tuple(spans))
    return tuple(lines)


def final_budget_claims(claims: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``claims.csv`` at the final training budget: a grid with snapshots has one
    row per claim and budget (:mod:`vdm.reporting.claims_by_budget`), and its headline verdict
    is the final budget's; other claims tables are returned as they are."""
    if "train_step" in claims and "final_step" in claims:
        return claims[claims["train_step"] == claims["final_step"]]
    return claims


def _budgets_text(summary: pd.DataFrame) -> str:
    """`` (also evaluated after 150/300 steps)``: the earlier training budgets of a grid with
    snapshots (empty without)."""
    if "train_step" not in summary:
        return ""
    steps = sorted({int(s) for s in pd.to_numeric(summary["train_step"], errors="coerce").dropna()})
    return f" (also evaluated after {'/'.join(map(str, steps[:-1]))} steps)" if len(steps) > 1 else ""


def _runs(summary: pd.DataFrame) -> pd.DataFrame:
    columns = [c for c in RUN_AXES if c in summary]
    return primary_rows(summary)[columns].drop_duplicates()


def _coverage_lines(summary: pd.DataFrame, config: Mapping[str, Any] | None) -> tuple[Line, ...]:
    runs = _runs(summary)
    axes, sizes, fixed = [], [], []
    for axis, plural in (("objective", "objectives"), ("schedule", "schedules"),
                         ("parameterization", "network outputs"), ("conditioning", "conditionings"),
                         ("seed", "seeds")):
        if axis not in runs:
            continue
        values = runs[axis].dropna()
        levels = ordered_levels(values.astype(int).astype(str) if axis == "seed"
                                else values.astype(str))
        if len(levels) > 1 or axis in ("objective", "schedule", "seed"):
            axes.append(f"{_count(len(levels), axis, plural)} ({_names(levels)})")
            sizes.append(len(levels))
        else:
            fixed.append(f"{levels[0]} output" if axis == "parameterization" else
                         "unconditional" if levels[0] == "uncond" else f"{levels[0]}-conditional")
    combinations = math.prod(sizes)
    text = (f"{len(runs)} runs = {' × '.join(axes)}" if combinations == len(runs) else
            f"{len(runs)} runs over {', '.join(axes[:-1])} and {axes[-1]} (not every "
            f"combination: {len(runs)} of {combinations})")
    lines: list[Line] = [(_t(text + (f"; all {', '.join(fixed)}" if fixed else "") + "."),)]
    if config:
        planned = math.prod(len(config.get(key) or [None]) for key in (
            "objectives", "schedules", "seeds", "parameterizations"))
        lines.append((_t(f"All {planned} runs the config plans are here." if len(runs) >= planned
                         else f"{len(runs)} of the {planned} runs the config plans are here."),))
    dataset = _names(ordered_levels(summary["dataset"].astype(str))) if "dataset" in summary else "?"
    steps = sorted({int(s) for s in summary.get("steps", pd.Series(dtype=float)).dropna()})
    lines.append((_t(f"Data: {dataset}; training: {'/'.join(map(str, steps)) or '?'} steps per run"
                     f"{_budgets_text(summary)}."),))
    lines.append((_t("Evaluation: " + _evaluation_text(summary)),))
    return tuple(lines)


def _evaluation_text(summary: pd.DataFrame) -> str:
    parts = []
    primary = primary_rows(summary)
    if "sampler" in primary and primary["sampler"].notna().any():
        first = primary.dropna(subset=["sampler"]).iloc[0]
        spacing = spacing_column(primary.dropna(subset=["sampler"])).iloc[0]
        parts.append(f"{first['sampler']} sampler, {int(first['sample_steps'])} steps "
                     + ("" if spacing == "time" else f"({spacing} spacing) ")
                     + f"(NFE {int(first['nfe'])})")
        final = final_step_rows(summary)  # a snapshot's rows are earlier budgets, not settings
        others = final[(guidance_kind_column(final) == "none")
                       & ~final.index.isin(primary.index)].dropna(subset=["sampler"])
        settings = list(dict.fromkeys(zip(others["sampler"], others["sample_steps"].astype(int),
                                          spacing_column(others), strict=True)))
        if settings:
            names = (f"{s}-{k}" + ("" if p == "time" else f"-{p}") for s, k, p in settings)
            parts.append(f"{len(settings)} further sampler settings on the same models "
                         f"({_names(names)})")
        kinds = guidance_kind_column(summary)
        for kind in [k for k in ordered_levels(kinds) if k != "none"]:
            weights = sorted(summary.loc[kinds == kind, "guidance_weight"].astype(float).unique())
            parts.append(f"{kind} guidance at w = {_names(f'{w:g}' for w in weights)}")
    if "fid" in primary and primary["fid"].notna().any():
        samples = sorted({int(n) for n in primary.get("num_fid_samples", pd.Series()).dropna()})
        parts.append(f"{fid_label(primary)} on {'/'.join(map(str, samples)) or '?'} samples")
    if "nll_bpd" in primary and primary["nll_bpd"].notna().any():
        examples = sorted({int(n) for n in primary.get("nll_num_examples", pd.Series()).dropna()})
        parts.append("NLL (ELBO, bits/dim)" + (f" on {'/'.join(map(str, examples))} test images"
                                               if examples else ""))
    if "nll_ode_bpd" in primary and primary["nll_ode_bpd"].notna().any():
        examples = sorted({int(n) for n in primary.get("nll_ode_num_examples",
                                                       pd.Series()).dropna()})
        parts.append("ODE NLL" + (f" on {'/'.join(map(str, examples))} test images"
                                  if examples else ""))
    return "; ".join(parts) + "." if parts else "none recorded."


def headline(summary: pd.DataFrame, claims: pd.DataFrame, config: Mapping[str, Any] | None = None,
             *, run_name: str = "results", commit: str | None = None) -> Headline:
    """The :class:`Headline` of a grid from its ``summary.csv`` and ``claims.csv`` frames
    (:func:`vdm.reporting.claims.evaluate_claims`): a lead sentence (claim verdict counts, the
    best cell per metric), then the reproduced and contradicted claims with their effects, the
    others by id, the best two cells per metric with CIs, and what the grid covered (axes,
    seeds, training steps, evaluation settings; with ``config``, the runs it plans).
    ``commit`` defaults to the runs' most common ``git_commit``."""
    if summary.empty:
        raise ValueError("the summary has no runs: nothing to headline")
    if commit is None:
        commits = summary.get("git_commit", pd.Series(dtype=str)).dropna()
        commit = str(commits.mode().iloc[0]) if len(commits) else "unknown"
    name = str((config or {}).get("name") or run_name)
    claims = final_budget_claims(claims)
    several = "dataset" in claims and claims["dataset"].nunique() > 1
    counts = claims["verdict"].value_counts() if "verdict" in claims else pd.Series(dtype=int)
    tested = int(len(claims) - counts.get(NOT_IN_GRID, 0))
    best = best_cells(summary)
    lead: list[Span] = [_t(f"{int(counts.get(REPRODUCED, 0))} of the {tested} published claims "
                           f"this grid can test reproduce, {int(counts.get(CONTRADICTED, 0))} "
                           f"contradicted, {int(counts.get(INCONCLUSIVE, 0))} inconclusive"
                           + (f" ({_count(int(counts.get(NOT_IN_GRID, 0)), 'more needs', 'more need')}"
                              " cells it lacks)" if counts.get(NOT_IN_GRID, 0) else "") + ".")]
    for i, entry in enumerate(b for b in best if b["metric"] in PIVOT_METRICS):
        cell = entry["cells"].iloc[0]
        lead += [_t(" Best " if i == 0 else "; best "),
                 _t(f"{metric_spec(entry['metric']).name}: "),
                 _b(_cell_name(cell)),
                 _t(f" ({_cell_text(cell, metric_spec(entry['metric']).decimals)})")]
    lead.append(_t(f". Commit {commit[:10]}."))
    sections = (
        ("Published claims (one-sided tests, Holm-adjusted, α = 0.05; every claim with its test "
         "in the Claims table)", _claim_lines(claims, several) or ((_t("no claims tested"),),)),
        ("Best cells (primary sampler setting)", _best_lines(best, len(_datasets(summary)) > 1)
         or ((_t("no FID or NLL values"),),)),
        ("What the grid covered", _coverage_lines(summary, config)),
    )
    return Headline(title=(_t("What the "), _c(name), _t(" grid found")), lead=tuple(lead),
                    sections=sections)


# --------------------------------------------------------------------------- rendering
_RST_SPECIAL = re.compile(r"([\\`*_|])")


def _markdown_span(span: Span) -> str:
    style, text = span
    return {"bold": f"**{text}**", "code": f"`{text}`"}.get(style, text)


def _rst_span(span: Span) -> str:
    style, text = span
    if style == "code":
        return f"``{text}``"
    escaped = _RST_SPECIAL.sub(r"\\\1", text)
    return f"**{escaped}**" if style == "bold" else escaped


def _render(line: Line, span: Any) -> str:
    return "".join(span(s) for s in line)


def headline_markdown(summary: pd.DataFrame, claims: pd.DataFrame,
                      config: Mapping[str, Any] | None = None, *, run_name: str = "results",
                      commit: str | None = None, level: int = 2) -> str:
    """:func:`headline` as Markdown: a ``level`` heading, the lead paragraph, then each section
    as a bold line and a bullet list."""
    return markdown_text(headline(summary, claims, config, run_name=run_name, commit=commit),
                         level)


def markdown_text(head: Headline, level: int = 2) -> str:
    """A :class:`Headline` as Markdown."""
    out = [f"{'#' * level} {_render(head.title, _markdown_span)}", "",
           _render(head.lead, _markdown_span), ""]
    for heading, lines in head.sections:
        out += [f"**{heading}**", "", *(f"- {_render(line, _markdown_span)}" for line in lines), ""]
    return "\n".join(out)


def headline_rst(summary: pd.DataFrame, claims: pd.DataFrame,
                 config: Mapping[str, Any] | None = None, *, run_name: str = "results",
                 commit: str | None = None) -> str:
    """:func:`headline` as reStructuredText (special characters escaped): an ``=``-underlined
    section title, the lead paragraph, then each section as a bold line and a bullet list."""
    return rst_text(headline(summary, claims, config, run_name=run_name, commit=commit))


def rst_text(head: Headline) -> str:
    """A :class:`Headline` as reStructuredText."""
    title = _render(head.title, _rst_span)
    out = [title, "=" * len(title), "", _render(head.lead, _rst_span), ""]
    for heading, lines in head.sections:
        out += [f"**{_rst_span(_t(heading))}**", "",
                *(f"- {_render(line, _rst_span)}" for line in lines), ""]
    return "\n".join(out)


def write_headline(summary_csv: str | Path, claims_csv: str | Path, out_dir: str | Path,
                   config: Mapping[str, Any] | None = None, *, run_name: str = "results"
                   ) -> dict[str, Path]:
    """Write ``headline.md`` and ``headline.rst`` of a grid's ``summary.csv`` and
    ``claims.csv`` into ``out_dir`` (both inputs checked first). Returns ``{file name: path}``."""
    for path, what in ((summary_csv, "summary"), (claims_csv, "claims")):
        if not Path(path).is_file():
            raise FileNotFoundError(f"{what} table not found: {path}")
    head = headline(pd.read_csv(summary_csv), pd.read_csv(claims_csv), config, run_name=run_name)
    paths = {"headline.md": Path(out_dir) / "headline.md",
             "headline.rst": Path(out_dir) / "headline.rst"}
    for name, text in (("headline.md", markdown_text(head)), ("headline.rst", rst_text(head))):
        with atomic_output(paths[name]) as tmp:
            tmp.write_text(text)
    return paths

