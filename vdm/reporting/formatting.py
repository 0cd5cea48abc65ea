"""Text rendering helpers for the result tables: numbers, Markdown and LaTeX.

Pure string functions with no knowledge of the benchmark's columns; :mod:`vdm.reporting.table_text` builds
the tables and uses these to print them. Captions are written once in Markdown flavour
(Unicode symbols such as ``±``, ``λ``, ``−`` and `` `code` ``) and converted for LaTeX by
:func:`latex_text`, so ``summary.tex`` is plain ASCII and needs only ``booktabs``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import pandas as pd

MISSING = "n/a"

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
_LATEX_UNICODE = {
    "±": r"$\pm$",
    "λ": r"$\lambda$",
    "Δ": r"$\Delta$",
    "ε": r"$\varepsilon$",
    "−": r"$-$",
    "–": "--",
    "—": "---",
    "≤": r"$\leq$",
    "≥": r"$\geq$",
    "<": r"$<$",
    ">": r"$>$",
    "√": r"$\surd$",
    "·": r"$\cdot$",
}


def is_missing(x: object) -> bool:
    """True for ``None`` and float NaN."""
    return x is None or (isinstance(x, float) and math.isnan(x))


def fmt_num(x: float, decimals: int) -> str:
    """Fixed-point number, or ``n/a`` for a missing value."""
    return MISSING if is_missing(x) else f"{x:.{decimals}f}"


def fmt_mean_ci(mean: float, ci: float, decimals: int, *, latex: bool = False,
                bold: bool = False) -> str:
    """``"mean ± ci"`` (just ``"mean"`` when the CI is NaN, e.g. one seed), optionally bold.

    Bold is ``**…**`` in Markdown and ``\\textbf{…}`` in LaTeX.
    """
    if is_missing(mean):
        return MISSING
    text = fmt_num(mean, decimals)
    if not is_missing(ci):
        pm = r" $\pm$ " if latex else " ± "
        text += pm + fmt_num(ci, decimals)
    if bold:
        text = rf"\textbf{{{text}}}" if latex else f"**{text}**"
    return text


def fmt_p(p: float) -> str:
    """p-value with three significant digits (``<0.0001`` below that)."""
    if is_missing(p):
        return MISSING
    return "<0.0001" if p < 1e-4 else f"{p:.3g}"


def latex_escape(text: str) -> str:
    """Escape LaTeX special characters (``_``, ``&``, ``%``, …) in plain text."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def latex_text(text: str) -> str:
    """Convert a Markdown-flavoured caption to LaTeX.

    Escapes special characters, turns `` `code` `` into ``\\texttt{code}``, ``**b**`` into
    ``\\textbf{b}`` and maps the Unicode symbols used in captions to math-mode commands.
    """
    out = latex_escape(text)
    out = re.sub(r"`([^`]*)`", r"\\texttt{\1}", out)
    out = re.sub(r"\*\*([^*]*)\*\*", r"\\textbf{\1}", out)
    return "".join(_LATEX_UNICODE.get(ch, ch) for ch in out)


def markdown_table(df: pd.DataFrame) -> str:
    """Render a DataFrame of strings as a GitHub-flavoured Markdown table (no index)."""
    def cell(x: object) -> str:
        return (MISSING if is_missing(x) else str(x)).replace("|", r"\|")

    header = "| " + " | ".join(cell(c) for c in df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(cell(x) for x in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def markdown_block(caption: str, table: str) -> str:
    """A table preceded by its caption as an italic paragraph."""
    return f"*{caption}*\n\n{table}\n"


def latex_table(df: pd.DataFrame, caption: str, label: str, label_cols: int = 1,
                midrule_before: str | None = None) -> str:
    """Render a DataFrame of LaTeX-ready strings as a booktabs ``table`` float.

    ``caption`` is Markdown-flavoured and converted by :func:`latex_text`; column headers are
    converted the same way; cell contents are used verbatim. The first ``label_cols``
    columns are left-aligned, the rest right-aligned. If ``midrule_before`` is given,
    a ``\\midrule`` is inserted before the row whose first cell equals it.
    """
    out = df.copy()
    out.columns = [latex_text(str(c)) for c in out.columns]
    n_left = min(label_cols, out.shape[1])
    column_format = "l" * n_left + "r" * (out.shape[1] - n_left)
    tex = out.to_latex(index=False, escape=False, caption=latex_text(caption), label=label,
                       column_format=column_format, position="htbp", na_rep=MISSING)
    tex = tex.replace("\\begin{table}[htbp]\n", "\\begin{table}[htbp]\n\\centering\n", 1)
    if midrule_before is not None:
        tex = tex.replace(f"\n{midrule_before} &", f"\n\\midrule\n{midrule_before} &", 1)
    return tex


def floor_images(floor: Mapping[str, Any]) -> str:
    """What the FID floor (``floor.json``, :func:`vdm.evaluation.data_floor.real_data_floor`)
    scored, for legends and tables: ``"fresh true samples, N = 1000"`` (a fresh reference's
    floor: as many true samples as the runs' samples) or ``"300 test images"`` (a real split)."""
    n = int(floor["num_floor_images"])
    if floor.get("floor_split") == "fresh":
        return f"fresh true samples, N = {n}"
    return f"{n} {floor['floor_split']} images"


def floor_name(floor: Mapping[str, Any]) -> str:
    """The floor in a legend: ``"FID floor: fresh true samples, N = 1000"`` or
    ``"real-data FID floor"`` (a held-out real split)."""
    if floor.get("floor_split") == "fresh":
        return f"FID floor: {floor_images(floor)}"
    return "real-data FID floor"


def lambda_label(latex: bool) -> str:
    """First cell of the λ-range row of a pivot table."""
    return r"$\lambda$ range" if latex else "λ range"


def lambda_cell(row: pd.Series | None, latex: bool) -> str:
    """``[logsnr_min, logsnr_max]`` of one schedule (``row`` holds both), or ``n/a``."""
    if row is None or is_missing(row["logsnr_min"]) or is_missing(row["logsnr_max"]):
        return MISSING
    text = f"[{row['logsnr_min']:.2f}, {row['logsnr_max']:.2f}]"
    return f"${text}$" if latex else text


def significance_cells(sig: pd.DataFrame, decimals: int, latex: bool = False) -> pd.DataFrame:
    """Formatted strings, with short headers, of a ``vdm.reporting.significance.significance_table`` frame."""
    esc = latex_escape if latex else str
    return pd.DataFrame({
        "objective": [esc(v) for v in sig["objective"]],
        "schedule": [esc(v) for v in sig["schedule"]],
        "n": [str(v) for v in sig["n"]],
        "pairs": [MISSING if pd.isna(v) else str(v) for v in sig["n_pairs"]],
        "mean": [fmt_num(v, decimals) for v in sig["mean"]],
        "Δ vs base": [fmt_num(v, decimals) for v in sig["diff"]],
        "95% CI of Δ": [MISSING if is_missing(lo) else
                        f"[{fmt_num(lo, decimals)}, {fmt_num(hi, decimals)}]"
                        for lo, hi in zip(sig["ci_low"], sig["ci_high"], strict=True)],
        "test": [esc(v) if v else MISSING for v in sig["test"]],
        "t": [fmt_num(v, 2) for v in sig["t"]],
        "dof": [fmt_num(v, 1) for v in sig["dof"]],
        "p": [latex_text(p) if latex else p for p in map(fmt_p, sig["p"])],
        "p (Holm)": [latex_text(p) if latex else p for p in map(fmt_p, sig["p_holm"])],
        "sig": list(sig["mark"]),
    }, dtype=object)


# --------------------------------------------------------------------------- caption texts
NLL_SENTENCE = ("Test NLL (ELBO bound) in bits/dim; lower is better. The continuous-time ELBO "
                "depends on the schedule only through its end points (last row).")


def fid_sentence(extractors: list[str], samples: list[int]) -> str:
    """First caption sentence of an FID table, naming the feature extractor(s) verbatim.

    A classifier FID is stated as such so it is never mistaken for Inception FID.
    """
    space = " / ".join(f"`{n}`" for n in extractors) or "an unrecorded"
    inception = any("inception" in n.lower() for n in extractors)
    kind = "" if inception else " (a classifier FID, not Inception-v3)"
    per_run = f", {'/'.join(map(str, samples))} generated samples per run" if samples else ""
    return f"FID in the {space} feature space{kind}{per_run}; lower is better."


def pivot_caption_text(metric_sentence: str, seed_text: str, confidence: float) -> str:
    """Caption of an objective × schedule pivot table."""
    return (f"{metric_sentence} Cells: mean ± {100 * confidence:g}% CI half-width over seeds "
            f"(Student t, n − 1 dof; {seed_text}); **bold** = best cell (lowest mean). "
            "Last row: each schedule's range [min, max] of λ = log SNR (mean over runs).")


def significance_caption_text(name: str, unit: str, baseline: tuple[str, str] | None, why: str,
                              tests: list[str], comparisons: int, alpha: float) -> str:
    """Caption of a significance table: the baseline and why, the tests, the correction."""
    unit = f" ({unit})" if unit else ""
    base = f"(`{baseline[0]}`, `{baseline[1]}`), {why}" if baseline else "(none: no cells)"
    used = " and ".join(tests) if tests else "no test (too few seeds)"
    return (f"{name} of each cell vs the baseline {base}: Δ = cell − baseline{unit} with its "
            "95% CI. Two-sided tests over seeds: paired t where the cell and the baseline were "
            "trained on the same seeds (they share initial weights, data order, training noise "
            "and evaluation seed: common random numbers), over the seeds where both have a value "
            "(pairs; Δ = the mean difference over them, which is cell mean − baseline mean when "
            "no value is missing); Welch t (Δ = cell mean − baseline mean) only where they were "
            f"trained on different seeds; used here: {used}. p (Holm) = Holm-adjusted across the "
            f"{comparisons} comparisons of this table; * = Holm-adjusted p < {alpha:g}; n/a "
            "where a cell has < 2 seeds (or pairs) or zero variance.")
