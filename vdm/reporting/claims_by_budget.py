"""Published claims at every training budget: does a verdict hold beyond the number of steps a
grid happens to train?

A grid with ``train.snapshots`` evaluates each run at several training steps (the budgets,
:mod:`vdm.reporting.budgets`). Every claim of :mod:`vdm.reporting.claim_registry` is evaluated
at each budget ``s`` with :func:`vdm.reporting.claims.evaluate_claims` on the rows of step
``s`` only (the same tests as the single-budget report); **Holm's correction runs across all
claims (and datasets) tested at that budget**, separately per budget, as it does in a grid
without snapshots. There is no correction across budgets: the per-budget verdicts describe one
trajectory and are not pooled into one decision.

The **headline** verdict of a claim is its verdict at the final budget (the largest step: every
run's final weights, the rows every other table reads). A claim is **flagged** when its
verdict changes with the budget, i.e. when the budgets at which it could be tested (verdict not
``not in this grid``) do not all give the same verdict. A *convergence* claim
(:attr:`~vdm.reporting.claim_registry.Claim.convergence`, ``min-snr-fid``: "better FID after
the same number of steps") is about every budget, not only the final one: it is reported as
judged at every budget, with the budgets at which it reproduces.

Without budgets (no ``train_step`` column, or a single value of it) :func:`claims_outputs`
gives exactly today's ``claims.md`` / ``claims.csv``.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from vdm.reporting import formatting
from vdm.reporting.budgets import has_budgets, training_budgets
from vdm.reporting.claim_registry import CLAIMS, Claim
from vdm.reporting.claims import (
    CLAIM_COLUMNS,
    CONTRADICTED,
    METRIC_DECIMALS,
    NOT_IN_GRID,
    REPRODUCED,
    VERDICTS,
    claims_caption,
    claims_csv,
    claims_markdown,
    claims_table_cells,
    evaluate_claims,
)
from vdm.reporting.summary_rows import TRAIN_STEP

EVERY_BUDGET = "every budget"
FINAL_BUDGET = "final budget"
BUDGET_CLAIM_COLUMNS: list[str] = [
    "train_step", "final_step", *CLAIM_COLUMNS, "judged_at", "final_verdict",
    "changes_with_budget",
]
"""Columns of :func:`evaluate_claims_by_budget` (and of its ``claims.csv``): the budget, the
claim's final budget, :data:`~vdm.reporting.claims.CLAIM_COLUMNS` at that budget, then per
claim: ``judged_at`` (``every budget`` for a convergence claim, else ``final budget``),
``final_verdict`` (the headline: the verdict at ``final_step``) and ``changes_with_budget``."""


def evaluate_claims_by_budget(summary: pd.DataFrame, registry: Sequence[Claim] = CLAIMS,
                              alpha: float = 0.05) -> pd.DataFrame:
    """Every claim of ``registry`` at every training budget of ``summary`` (all rows of
    ``summary.csv``, with a ``train_step`` column): :func:`~vdm.reporting.claims.evaluate_claims`
    on the rows of each budget (Holm across the claims tested at that budget).

    One row per (dataset, claim, budget) with :data:`BUDGET_CLAIM_COLUMNS`, in dataset (first
    appearance), registry and budget (ascending) order. ``ValueError`` (one line) for a missing
    or bad ``train_step`` (:func:`vdm.reporting.budgets.training_budgets`).
    """
    budgets = training_budgets(summary)
    steps = pd.to_numeric(summary[TRAIN_STEP])
    frames = [evaluate_claims(summary[steps == step], registry, alpha).assign(train_step=step)
              for step in budgets]
    out = pd.concat(frames, ignore_index=True)
    datasets = list(dict.fromkeys(out["dataset"]))
    order = {claim.id: i for i, claim in enumerate(registry)}
    out = out.assign(_d=out["dataset"].map(datasets.index), _c=out["claim"].map(order))
    out = out.sort_values(["_d", "_c", TRAIN_STEP], kind="stable").drop(columns=["_d", "_c"])
    convergence = {claim.id for claim in registry if claim.convergence}
    groups = out.groupby(["dataset", "claim"], sort=False)
    out["final_step"] = groups[TRAIN_STEP].transform("max")
    final = out[out[TRAIN_STEP] == out["final_step"]].set_index(["dataset", "claim"])["verdict"]
    out["final_verdict"] = [final[key] for key in zip(out["dataset"], out["claim"], strict=True)]
    out["changes_with_budget"] = groups["verdict"].transform(
        lambda v: v[v != NOT_IN_GRID].nunique() > 1).astype(bool)
    out["judged_at"] = [EVERY_BUDGET if c in convergence else FINAL_BUDGET for c in out["claim"]]
    return out[BUDGET_CLAIM_COLUMNS].reset_index(drop=True)


def claims_by_budget_csv(table: pd.DataFrame) -> str:
    """``claims.csv`` text of :func:`evaluate_claims_by_budget` (floats to 6 significant digits,
    ``\\n`` line ends: byte-for-byte reproducible)."""
    return claims_csv(table)


def _verdict_cell(row: pd.Series) -> str:
    """``**reproduced** (−2.96)``: the verdict at a budget with the effect A − B there."""
    verdict = f"**{row['verdict']}**" if row["verdict"] in (REPRODUCED, CONTRADICTED) \
        else str(row["verdict"])
    if row["verdict"] == NOT_IN_GRID or formatting.is_missing(row["effect"]):
        return verdict
    decimals = METRIC_DECIMALS.get(str(row["metric"]), 3)
    return f"{verdict} ({row['effect']:+.{decimals}f})".replace("-", "−")


def _steps_text(steps: Sequence[int]) -> str:
    steps = [str(s) for s in steps]
    return steps[0] if len(steps) == 1 else f"{', '.join(steps[:-1])} and {steps[-1]}"


def _headline(rows: pd.DataFrame) -> str:
    """A claim's headline cell: its final verdict; for a convergence claim, the budgets at
    which it reproduces (and is contradicted)."""
    final = str(rows["final_verdict"].iloc[0])
    if rows["judged_at"].iloc[0] != EVERY_BUDGET:
        return f"**{final}**" if final in (REPRODUCED, CONTRADICTED) else final
    parts = []
    for verdict in (REPRODUCED, CONTRADICTED):
        steps = [int(s) for s in rows.loc[rows["verdict"] == verdict, TRAIN_STEP]]
        if steps:
            parts.append(f"**{verdict}** at {_steps_text(steps)} steps")
    tested = rows[rows["verdict"] != NOT_IN_GRID]
    if not parts:
        parts.append("reproduced at no budget" if len(tested) else NOT_IN_GRID)
    return "convergence claim, judged at every budget: " + "; ".join(parts)


def claims_by_budget_cells(table: pd.DataFrame) -> pd.DataFrame:
    """The formatted strings of the per-budget verdict table: one row per claim (and dataset),
    one column per budget, then the headline and the flag."""
    budgets = sorted(int(s) for s in table[TRAIN_STEP].unique())
    last = max(budgets)
    multi = table["dataset"].nunique() > 1
    rows = []
    for (dataset, claim), group in table.groupby(["dataset", "claim"], sort=False):
        by_step = {int(r[TRAIN_STEP]): r for _, r in group.iterrows()}
        first = group.iloc[0]
        row = {**({"dataset": dataset} if multi else {}),
               "claim": f"**{claim}**",
               "metric": f"`{first['metric']}` ({'↓' if first['direction'] == 'lower' else '↑'})"}
        for step in budgets:
            name = f"{step} steps" + (" (final)" if step == last else "")
            row[name] = _verdict_cell(by_step[step]) if step in by_step else formatting.MISSING
        row["headline"] = _headline(group)
        row["changes with the budget"] = "**yes**" if first["changes_with_budget"] else "no"
        rows.append(row)
    return pd.DataFrame(rows, dtype=object)


def claims_by_budget_caption(table: pd.DataFrame, alpha: float = 0.05) -> str:
    """What the per-budget verdict table shows (one paragraph)."""
    tested = table.groupby(TRAIN_STEP)["p"].count()
    counts = ", ".join(f"{n} at {s} steps" for s, n in tested.items())
    return (
        "Verdict of each claim at each training budget (the EMA weights at that step, primary "
        "sampler setting), evaluated exactly as in the final-budget table below on the rows of "
        "that budget only; in brackets the effect A − B at that budget in the metric's units. "
        f"Holm's correction runs across the claims tested at each budget ({counts}), "
        f"separately per budget (none across budgets); verdicts at α = {alpha:g}. Headline: "
        "the verdict at the final budget, except for a convergence claim (better after the "
        "same number of steps), which is judged at every budget: the headline names the "
        "budgets where it reproduces. Changes with the budget: the budgets at which the claim "
        "could be tested do not all give the same verdict."
    )


def claims_by_budget_markdown(table: pd.DataFrame, *, run_name: str, commit: str,
                              command: str | None = None, alpha: float = 0.05) -> str:
    """``claims.md`` of a grid with training budgets: a header naming the run, commit and
    budgets, the per-budget verdict table (:func:`claims_by_budget_cells`), then the full claims
    table at the final budget (:func:`vdm.reporting.claims.claims_table_cells`) and one note
    per claim on how it is judged. Deterministic for a given ``table``."""
    final = table[table[TRAIN_STEP] == table["final_step"]]
    budgets = sorted(int(s) for s in table[TRAIN_STEP].unique())
    flagged = final.loc[final["changes_with_budget"], "claim"].drop_duplicates()
    counts = final["verdict"].value_counts()
    lines = [
        "# Published claims: do they reproduce here, and at which training budget?", "",
        f"Generated by `vdm.reporting.claims_by_budget` from run `{run_name}` at commit "
        f"`{commit}`; do not edit by hand." + (f" Regenerate with `{command}`." if command
                                              else ""), "",
        f"Training budgets: {_steps_text(budgets)} steps (each run's EMA weights at that step; "
        f"{max(budgets)} is the final one).", "",
        "Verdicts at the final budget: " + ", ".join(
            f"{int(counts.get(v, 0))} {v}" for v in VERDICTS) + ". "
        + (f"Changing with the budget: {', '.join(f'`{c}`' for c in flagged)}." if len(flagged)
           else "No verdict changes with the budget."), "",
        "**Verdict per training budget**", "",
        formatting.markdown_block(claims_by_budget_caption(table, alpha),
                                  formatting.markdown_table(claims_by_budget_cells(table))),
        f"**At the final budget ({max(budgets)} steps)**", "",
        formatting.markdown_block(claims_caption(final, alpha),
                                  formatting.markdown_table(claims_table_cells(final))),
    ]
    notes = [f"- **{r.claim}**: {r.note}."
             for r in final.drop_duplicates(["claim", "note"]).itertuples() if r.note]
    if notes:
        lines += ["How each claim is judged here:", "", *notes, ""]
    return "\n".join(lines)


def claims_outputs(summary: pd.DataFrame, *, run_name: str, commit: str,
                   command: str | None = None, alpha: float = 0.05) -> tuple[str, str]:
    """``(claims.md, claims.csv)`` text of ``summary`` (all rows of ``summary.csv``): per
    training budget (:func:`claims_by_budget_markdown`, :func:`claims_by_budget_csv`) when it
    has more than one (:func:`vdm.reporting.budgets.has_budgets`); otherwise exactly the
    single-budget report (:func:`vdm.reporting.claims.claims_markdown`,
    :func:`vdm.reporting.claims.claims_csv`), byte for byte."""
    if not has_budgets(summary):
        claims = evaluate_claims(summary, alpha=alpha)
        return (claims_markdown(claims, run_name=run_name, commit=commit, command=command,
                                alpha=alpha), claims_csv(claims))
    table = evaluate_claims_by_budget(summary, alpha=alpha)
    return (claims_by_budget_markdown(table, run_name=run_name, commit=commit, command=command,
                                      alpha=alpha), claims_by_budget_csv(table))
