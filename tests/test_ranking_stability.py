"""vdm.reporting.ranking_stability: each budget's ranking of the cells, Kendall's τ against the final
one and the significant pairs, on hand-made summaries with answers worked out by hand."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pandas as pd
import pytest
from budget_summary import make_budget_summary
from scipy import stats as sps

from vdm.reporting.ranking_stability import (
    STABILITY_COLUMNS,
    ranking_stability,
    ranking_stability_csv,
    ranking_stability_markdown,
    ranking_stability_report,
)
from vdm.reporting.stats import holm_adjust

#: per-seed deviations shared by no two cells (so that paired differences have spread)
NOISE = {"a": (0.0, 0.02, -0.02), "b": (0.01, -0.01, 0.0), "c": (-0.02, 0.0, 0.02),
         "d": (0.02, -0.02, 0.0)}
#: per-seed offset common to every cell (common random numbers: cancelled by pairing)
OFFSET = (0.0, 0.5, -0.3)


def _summary(means: dict[int, dict[str, float]]) -> pd.DataFrame:
    """Primary rows of cells a..d (objectives on the linear schedule), seeds 0-2, at each step
    of ``means`` ({step: {cell: mean}}); value = mean + OFFSET[seed] + NOISE[cell][seed]."""
    rows = [{"dataset": "digits", "objective": cell, "schedule": "linear", "seed": seed,
             "train_step": step, "primary": True,
             "fid": mean + OFFSET[seed] + NOISE[cell][seed]}
            for step, cells in means.items() for cell, mean in cells.items()
            for seed in range(3)]
    return pd.DataFrame(rows)


FINAL = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}
#: step 10: a and b swapped (and 0.05 apart: not significant); step 5: the reverse order
MEANS = {5: {"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0},
         10: {"a": 2.05, "b": 2.0, "c": 3.0, "d": 4.0}, 40: FINAL}


def test_one_swap_gives_tau_two_thirds_and_the_reverse_minus_one() -> None:
    table = ranking_stability(_summary(MEANS), "fid")
    assert list(table.columns) == STABILITY_COLUMNS
    assert list(table["train_step"]) == [5, 10, 40] and set(table["final_step"]) == {40}
    early, swap, final = (table.iloc[i] for i in range(3))
    # 4 cells, 6 pairs; one discordant pair (a, b): τ = (C − D) / 6 = (5 − 1) / 6
    assert swap["kendall_tau"] == pytest.approx(2 / 3)
    assert swap["n_flipped"] == 1 and swap["n_pairs"] == 6 and swap["n_common"] == 4
    assert early["kendall_tau"] == pytest.approx(-1.0) and early["n_flipped"] == 6
    assert final["kendall_tau"] == pytest.approx(1.0) and final["n_flipped"] == 0
    assert swap["ranking"] == ("b/linear (2.07) < a/linear (2.12) < c/linear (3.07) < "
                               "d/linear (4.07)")
    assert final["ranking"].startswith("a/linear (1.07) < b/linear (2.07)")
    assert swap["kendall_p"] == pytest.approx(sps.kendalltau([2.05, 2.0, 3, 4], [1, 2, 3, 4]).pvalue)


def test_significant_pairs_are_paired_by_seed_and_holm_adjusted_per_budget() -> None:
    df = _summary(MEANS)
    table = ranking_stability(df, "fid").set_index("train_step")
    at_10 = df[df["train_step"] == 10]
    p = [sps.ttest_rel(at_10.loc[at_10["objective"] == x, "fid"],
                       at_10.loc[at_10["objective"] == y, "fid"]).pvalue
         for x, y in itertools.combinations("abcd", 2)]
    expected = holm_adjust(np.array(p)) < 0.05
    assert table.loc[10, "n_significant"] == expected.sum() == 5  # all but the a-b swap
    assert table.loc[10, "n_tested"] == 6
    assert table.loc[10, "n_flipped_significant"] == 0  # the swap is within the noise
    assert table.loc[5, "n_flipped_significant"] == table.loc[5, "n_significant"] == 6


def test_a_cell_missing_at_a_budget_and_unpaired_seeds() -> None:
    df = _summary(MEANS)
    df = df[~((df["train_step"] == 10) & (df["objective"] == "d"))]  # d not evaluated at 10
    df = df[~((df["objective"] == "c") & (df["seed"] == 2))]  # c trained on seeds 0, 1 only
    row = ranking_stability(df, "fid").set_index("train_step").loc[10]
    assert row["n_cells"] == row["n_common"] == 3 and row["n_pairs"] == 3
    assert row["kendall_tau"] == pytest.approx(1 / 3)  # (2 − 1) / 3 over a, b, c
    assert "d/linear" not in row["ranking"]
    assert row["n_tested"] == 3  # c against a, b by Welch (different seeds)


def test_higher_is_better_and_bad_input() -> None:
    df = _summary(MEANS)
    row = ranking_stability(df, "fid", direction="higher").iloc[-1]
    assert row["ranking"].startswith("d/linear (4.07) > c/linear (3.07)")
    assert row["kendall_tau"] == pytest.approx(1.0)  # τ does not depend on the direction
    with pytest.raises(ValueError, match="direction"):
        ranking_stability(df, "fid", direction="smaller")
    with pytest.raises(ValueError, match="no column 'nll_bpd'"):
        ranking_stability(df, "nll_bpd")
    with pytest.raises(ValueError, match="train_step"):
        ranking_stability(df.drop(columns="train_step"), "fid")


def test_synthetic_grid_ranking_settles_only_at_the_final_budget() -> None:
    table = ranking_stability(make_budget_summary(), "fid")
    assert list(table["train_step"]) == [100, 300, 1200]
    # final order: sigmoid/cosine, eps/cosine, eps/linear, min_snr/linear, elbo/cosine,
    # elbo/linear; at 100 min_snr/linear leads and eps/cosine beats sigmoid/cosine:
    # discordant pairs (min_snr, sigmoid), (min_snr, eps/cos), (min_snr, eps/lin),
    # (eps/cos, sigmoid): τ = (11 − 4) / 15; at 300 only the three min_snr pairs: (12 − 3) / 15
    assert list(table["n_flipped"]) == [4, 3, 0]
    np.testing.assert_allclose(table["kendall_tau"], [7 / 15, 9 / 15, 1.0])
    assert table.iloc[0]["ranking"].startswith("min_snr/linear (9.14) < eps/cosine (11.20)")


def test_csv_and_markdown() -> None:
    table = ranking_stability(_summary(MEANS), "fid")
    csv = ranking_stability_csv(table)
    assert csv == ranking_stability_csv(ranking_stability(_summary(MEANS), "fid"))
    assert csv.splitlines()[0] == ",".join(STABILITY_COLUMNS)
    markdown = ranking_stability_markdown(table)
    rows = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| training steps | ranking (best first, mean over seeds) |")
    assert rows[2] == ("| 10 | b/linear (2.07) < a/linear (2.12) < c/linear (3.07) < d/linear "
                       "(4.07) | 0.67 | 5 / 6 | 1 (0) |")
    assert rows[3].startswith("| 40 (final) |")
    assert "Holm-adjusted across that budget's pairs" in markdown


def test_report_covers_fid_and_nll_and_names_a_missing_metric() -> None:
    df = make_budget_summary()
    markdown, csv = ranking_stability_report(df)
    assert "## FID" in markdown and "## NLL (bits/dim)" in markdown
    frame = pd.read_csv(io.StringIO(csv))
    assert list(frame["metric"]) == ["fid"] * 3 + ["nll_bpd"] * 3
    np.testing.assert_allclose(frame["kendall_tau"][:3], [7 / 15, 9 / 15, 1.0], rtol=1e-5)
    markdown, csv = ranking_stability_report(df.drop(columns="fid"))
    assert "No `fid` values in this grid." in markdown
    assert set(pd.read_csv(io.StringIO(csv))["metric"]) == {"nll_bpd"}
