"""The claims files of a grid: ``claims.md`` and ``claims.csv`` of its ``summary.csv``.

Which published claims reproduce is decided by :mod:`vdm.reporting.claims` (per training budget
by :mod:`vdm.reporting.claims_by_budget` when the summary has snapshots); this module names the
run, the commit and the command that regenerates the report.
"""

from __future__ import annotations

import pandas as pd

from vdm.reporting.claims_by_budget import claims_outputs


def claims_report(summary: pd.DataFrame, *, run_name: str, commit: str | None = None
                  ) -> tuple[str, str]:
    """``(claims.md, claims.csv)`` text of a summary (:mod:`vdm.reporting.claims`); ``commit`` defaults to
    the runs' most common ``git_commit``."""
    if commit is None:
        commits = summary.get("git_commit", pd.Series(dtype=str)).dropna()
        commit = str(commits.mode().iloc[0]) if len(commits) else "unknown"
    command = (f"python -m vdm claims --summary results/{run_name}/tables/summary.csv "
               f"--run-name {run_name}")
    return claims_outputs(summary, run_name=run_name, commit=commit, command=command)
