"""vdm.reporting.claims_by_budget: every claim at every training budget, the headline at the final
one and the flag when a verdict changes; byte-identical claims.md / claims.csv without budgets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from budget_summary import BUDGETS, make_budget_summary
from scipy import stats as sps

from vdm.reporting.claim_registry import CLAIMS, Citation, Claim, cell
from vdm.reporting.claims import evaluate_claims
from vdm.reporting.claims_by_budget import (
    BUDGET_CLAIM_COLUMNS,
    claims_by_budget_cells,
    claims_outputs,
    evaluate_claims_by_budget,
)
from vdm.reporting.stats import holm_adjust

DATA = Path(__file__).parent / "data"
GOLDEN_COMMAND = ("python -m vdm claims --summary tests/data/claims_summary.csv "
                  "--run-name synthetic-fixture")


def _golden(summary: pd.DataFrame) -> tuple[str, str]:
    return claims_outputs(summary, run_name="synthetic-fixture", commit="0000000",
                          command=GOLDEN_COMMAND)


def test_without_budgets_claims_md_and_csv_are_byte_identical() -> None:
    summary = pd.read_csv(DATA / "claims_summary.csv")
    expected = ((DATA / "claims.md").read_text(encoding="utf-8"),
                (DATA / "claims.csv").read_text(encoding="utf-8"))
    assert _golden(summary) == expected
    assert _golden(summary.assign(train_step=300)) == expected  # one budget: the same report


def _verdicts(table: pd.DataFrame, claim: str) -> list[str]:
    return list(table.loc[table["claim"] == claim, "verdict"])


def test_every_claim_at_every_budget_with_the_headline_and_the_flag() -> None:
    df = make_budget_summary()
    table = evaluate_claims_by_budget(df)
    assert list(table.columns) == BUDGET_CLAIM_COLUMNS
    assert len(table) == len(CLAIMS) * len(BUDGETS)
    assert list(table["train_step"][:3]) == list(BUDGETS) and set(table["final_step"]) == {1200}
    # min-SNR better at 100 and 300 steps, equal at 1200: the convergence claim flips
    assert _verdicts(table, "min-snr-fid") == ["reproduced", "reproduced", "inconclusive"]
    # eps/cosine beats sigmoid/cosine at 100 steps only
    assert _verdicts(table, "kingma-gao-sigmoid-fid") == ["contradicted", "reproduced",
                                                           "reproduced"]
    per_claim = table.drop_duplicates("claim").set_index("claim")
    assert per_claim.loc["min-snr-fid", "changes_with_budget"]
    assert per_claim.loc["min-snr-fid", "judged_at"] == "every budget"
    assert per_claim.loc["min-snr-fid", "final_verdict"] == "inconclusive"
    assert per_claim.loc["kingma-gao-sigmoid-fid", "changes_with_budget"]
    assert per_claim.loc["kingma-gao-sigmoid-fid", "judged_at"] == "final budget"
    assert _verdicts(table, "ddpm-eps-fid") == ["reproduced"] * 3
    assert not per_claim.loc["ddpm-eps-fid", "changes_with_budget"]
    assert not per_claim.loc["ode-below-elbo", "changes_with_budget"]  # never testable
    # the final budget is what every other table reads
    final = table[table["train_step"] == 1200].reset_index(drop=True)
    pd.testing.assert_frame_equal(final[evaluate_claims(df).columns], evaluate_claims(df))


def test_holm_runs_across_the_claims_of_each_budget() -> None:
    table = evaluate_claims_by_budget(make_budget_summary())
    for _, at_budget in table.groupby("train_step"):
        np.testing.assert_allclose(at_budget["p_holm"], holm_adjust(at_budget["p"].to_numpy()))
    assert table.groupby("train_step")["p"].count().tolist() == [6, 6, 6]


CITE = Citation("A & B", 2000, "0000.00000", "t")


def test_a_hand_made_flip_is_tested_on_each_budgets_rows_only() -> None:
    """eps/cosine beats eps/linear at step 10 and loses at step 20 (paired by seed)."""
    values = {10: ([3.0, 3.6, 3.1], [4.0, 4.5, 4.2]), 20: ([5.0, 5.6, 5.1], [4.0, 4.5, 4.2])}
    rows = [{"dataset": "digits", "objective": "eps", "schedule": schedule, "seed": seed,
             "train_step": step, "primary": True, "fid": v}
            for step, cells in values.items()
            for schedule, seeds in zip(("cosine", "linear"), cells, strict=True)
            for seed, v in enumerate(seeds)]
    claim = Claim("c", CITE, "s", "fid", "lower", "better",
                  a=cell(objective="eps", schedule="cosine"),
                  b=cell(objective="eps", schedule="linear"), requires="r")
    table = evaluate_claims_by_budget(pd.DataFrame(rows), [claim])
    assert list(table["verdict"]) == ["reproduced", "contradicted"]
    for row, (a, b) in zip(table.itertuples(), values.values(), strict=True):
        assert row.p == pytest.approx(sps.ttest_rel(a, b, alternative="less").pvalue)
    assert table["changes_with_budget"].all() and set(table["final_verdict"]) == {"contradicted"}
    cells = claims_by_budget_cells(table)
    assert list(cells.columns) == ["claim", "metric", "10 steps", "20 steps (final)", "headline",
                                   "changes with the budget"]
    assert cells.iloc[0]["10 steps"] == "**reproduced** (−1.00)"
    assert cells.iloc[0]["changes with the budget"] == "**yes**"


def test_claims_md_and_csv_with_budgets() -> None:
    df = make_budget_summary()
    markdown, csv = claims_outputs(df, run_name="budget", commit="abc")
    assert (markdown, csv) == claims_outputs(df, run_name="budget", commit="abc")  # deterministic
    assert "Training budgets: 100, 300 and 1200 steps" in markdown
    assert ("Changing with the budget: `kingma-gao-sigmoid-fid`, `min-snr-fid`."
            in markdown)
    line = next(x for x in markdown.splitlines() if x.startswith("| **min-snr-fid** |"))
    assert line == ("| **min-snr-fid** | `fid` (↓) | **reproduced** (−3.04) | **reproduced** "
                    "(−1.52) | inconclusive (+0.04) | convergence claim, judged at every budget: "
                    "**reproduced** at 100 and 300 steps | **yes** |")
    assert "**At the final budget (1200 steps)**" in markdown
    assert "Holm-adjusted across the 6 claims" in markdown
    header = csv.splitlines()[0].split(",")
    assert header == BUDGET_CLAIM_COLUMNS and len(csv.splitlines()) == 1 + len(CLAIMS) * 3


def test_bad_train_step_is_a_one_line_error() -> None:
    df = make_budget_summary().astype({"train_step": object})
    df.loc[5, "train_step"] = -100
    with pytest.raises(ValueError, match="'train_step': every row needs a whole number"):
        claims_outputs(df, run_name="r", commit="c")
