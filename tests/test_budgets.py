"""Training budgets (issue 20, reporting side): the final-step selection every table, plot and claim
reads (vdm.reporting.summary_rows), the per-budget values (vdm.reporting.budgets) and the learning
curves (vdm.reporting.learning_curves), on hand-made frames and tests/budget_summary.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from budget_summary import BUDGETS, FID, SEEDS, make_budget_summary
from scipy import stats as sps

from vdm.reporting import plots, sampler_plots
from vdm.reporting.aggregation import sampler_sweep_cells
from vdm.reporting.budgets import has_budgets, seed_values, training_budgets
from vdm.reporting.claims import evaluate_claims
from vdm.reporting.learning_curves import (
    learning_curve_cells,
    learning_curve_figure,
    plot_learning_curves,
)
from vdm.reporting.summary_rows import final_step_rows, primary_rows
from vdm.reporting.table_files import write_tables
from vdm.reporting.table_text import pivot_table_markdown

DATA = Path(__file__).parent / "data"


def _final(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["train_step"] == BUDGETS[-1]]


# --------------------------------------------------------------------------- final-step rows
def test_without_train_step_nothing_changes() -> None:
    default = pd.read_csv(DATA / "default_summary.csv")
    assert "train_step" not in default
    assert final_step_rows(default) is default
    flag = default["primary"].astype(str).str.lower().isin(["true", "1", "1.0"])
    pd.testing.assert_frame_equal(primary_rows(default), default[flag | default["primary"].isna()])


def test_final_step_rows_keep_each_runs_largest_step() -> None:
    df = make_budget_summary()
    final = final_step_rows(df)
    assert set(final["train_step"]) == {BUDGETS[-1]} and len(final) == 2 * len(FID) * len(SEEDS)
    primary = primary_rows(df)
    assert len(primary) == len(FID) * len(SEEDS) and primary["primary"].all()
    assert set(primary["train_step"]) == {BUDGETS[-1]}
    # a run whose last evaluated step is 300 keeps its 300 rows; a row without a step is final
    def run(frame: pd.DataFrame) -> pd.Series:
        return (frame["objective"] == "eps") & (frame["schedule"] == "linear") & \
            (frame["seed"] == 0)

    cut = df[~(run(df) & (df["train_step"] == BUDGETS[-1]))]
    kept = primary_rows(cut)
    assert list(kept[run(kept)]["train_step"]) == [300] and len(kept) == len(primary)
    unknown = df.astype({"train_step": float})
    unknown.loc[run(df) & (df["train_step"] == 100), "train_step"] = np.nan
    kept = primary_rows(unknown)
    assert kept[run(kept)]["train_step"].isna().all() and len(kept) == len(primary)


def test_tables_and_claims_read_the_final_step_only() -> None:
    df = make_budget_summary()
    pd.testing.assert_frame_equal(evaluate_claims(df), evaluate_claims(_final(df)))
    for metric in ("fid", "nll_bpd"):
        assert pivot_table_markdown(primary_rows(df), metric) == \
            pivot_table_markdown(primary_rows(_final(df)), metric)


def test_write_tables_sampler_sweep_reads_the_final_step_only(tmp_path: Path) -> None:
    df = make_budget_summary()
    sweep = pd.read_csv(write_tables(df, tmp_path)["sampler_sweep.csv"])
    expected = sampler_sweep_cells(_final(df))
    np.testing.assert_allclose(sweep["mean"], expected["mean"])
    assert sweep["primary"].tolist() == expected["primary"].tolist()


def test_plots_main_reads_the_final_step_only(tmp_path: Path, monkeypatch) -> None:
    """The sampler-sweep figure (all evaluation settings of ``summary.csv``) sees no snapshot."""
    seen: list[pd.DataFrame] = []
    real = sampler_plots.plot_fid_vs_nfe

    def recording(every: pd.DataFrame, out_dir: Path) -> Path:
        seen.append(every)
        return real(every, out_dir)

    monkeypatch.setattr(plots, "plot_fid_vs_nfe", recording)
    summary = tmp_path / "summary.csv"
    make_budget_summary().to_csv(summary, index=False)
    written = plots.plots_main(summary, {}, {}, tmp_path / "figs")
    assert (tmp_path / "figs" / "fid_vs_nfe.png") in written
    assert len(seen) == 1 and set(seen[0]["train_step"]) == {BUDGETS[-1]}


# --------------------------------------------------------------------------- budgets
def test_budgets_and_bad_train_steps_are_one_line_errors() -> None:
    df = make_budget_summary()
    assert training_budgets(df) == list(BUDGETS) and has_budgets(df)
    assert not has_budgets(_final(df)) and not has_budgets(df.drop(columns="train_step"))
    with pytest.raises(ValueError, match="no 'train_step' column"):
        training_budgets(df.drop(columns="train_step"))
    for bad in (0, 2.5, np.nan, "late"):
        broken = df.astype({"train_step": object})
        broken.loc[3, "train_step"] = bad
        with pytest.raises(ValueError, match=r"'train_step': every row needs a whole number"):
            seed_values(broken, "fid")
    with pytest.raises(ValueError, match="no column 'kid'"):
        seed_values(df, "kid")


def _hand_frame() -> pd.DataFrame:
    """Two cells, steps 10 and 40, seeds 0-2 (and a non-primary row that must not count)."""
    rows = []
    values = {("eps", "linear"): {10: [1.0, 2.0, 3.0], 40: [0.5, 0.7, np.nan]},
              ("elbo", "linear"): {10: [4.0, 4.0, 4.0], 40: [2.0, 2.2, 2.4]}}
    for (objective, schedule), by_step in values.items():
        for step, seeds in by_step.items():
            for seed, value in enumerate(seeds):
                rows.append({"dataset": "digits", "objective": objective, "schedule": schedule,
                             "seed": seed, "train_step": step, "primary": True, "fid": value})
    rows.append({**rows[0], "primary": False, "fid": 100.0})
    return pd.DataFrame(rows)


def test_learning_curve_cells_are_t_intervals_over_seeds() -> None:
    cells = learning_curve_cells(_hand_frame(), "fid")
    assert list(cells["cell"]) == ["eps/linear"] * 2 + ["elbo/linear"] * 2
    assert list(cells["train_step"]) == [10, 40, 10, 40]
    first = cells.iloc[0]  # [1, 2, 3]: mean 2, s = 1
    assert first["mean"] == pytest.approx(2.0) and first["n"] == 3
    assert first["ci"] == pytest.approx(sps.t.ppf(0.975, 2) / np.sqrt(3))
    second = cells.iloc[1]  # NaN dropped: [0.5, 0.7], s = 0.1414
    assert second["mean"] == pytest.approx(0.6) and second["n"] == 2
    assert second["ci"] == pytest.approx(sps.t.ppf(0.975, 1) * np.std([0.5, 0.7], ddof=1)
                                         / np.sqrt(2))
    assert cells.iloc[2]["ci"] == 0.0  # equal values: a zero-width interval


def test_learning_curve_figure_log_steps_one_line_per_cell(tmp_path: Path) -> None:
    df = make_budget_summary()
    fig = learning_curve_figure(df, "fid")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert list(ax.get_xticks()) == list(BUDGETS)
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(s) for s in BUDGETS]
    assert len(ax.get_lines()) == len(FID)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [f"{o}/{s}" for o, s in FID]
    eps_linear = ax.get_lines()[0]
    expected = learning_curve_cells(df, "fid").query("cell == 'eps/linear'")["mean"]
    np.testing.assert_allclose(eps_linear.get_ydata(), expected.to_numpy())
    assert fig.get_suptitle().startswith("FID (classifier-digits) vs training steps")
    paths = plot_learning_curves(df, tmp_path)
    assert [p.name for p in paths] == ["learning_curve_fid.png", "learning_curve_nll.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
    # a grid without FID still gets its figure, saying so
    assert plot_learning_curves(df.drop(columns="fid"), tmp_path / "nofid", ["fid"])[0].exists()
