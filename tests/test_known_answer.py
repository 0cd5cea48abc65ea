"""The known-answer table and the true-entropy line (vdm.reporting.known_answer, cell_plots) on a
synthetic digits-gmm summary with closed-form cell means and CIs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from vdm.reporting import cell_plots
from vdm.reporting.known_answer import known_answer_cells, true_entropy
from vdm.reporting.table_files import write_tables

H, H_SE, TRUE_NLL = 2.1654, 0.0006, 2.1672
T975_DOF2 = 0.95 / math.sqrt(2 * 0.975 * 0.025)  # t_{0.975,2} = 4.30265 (closed form for ν=2)
#: per cell and seed: (network gap, schedule + decoder gap) in bits/dim
GAPS = {("eps", "cosine"): [(0.20, 0.010), (0.22, 0.012), (0.24, 0.014)],
        ("eps", "learned"): [(0.10, 0.030), (0.11, 0.031), (0.12, 0.032)],
        ("elbo", "cosine"): [(0.15, 0.010), (0.16, 0.012), (0.17, 0.014)],
        ("elbo", "learned"): [(0.05, 0.030), (0.07, 0.031), (0.09, 0.032)]}


def summary(dataset: str = "digits-gmm", ode: bool = False) -> pd.DataFrame:
    rows = []
    for (objective, schedule), seeds in GAPS.items():
        for seed, (network, schedule_gap) in enumerate(seeds):
            row = {"dataset": dataset, "objective": objective, "schedule": schedule,
                   "seed": seed, "logsnr_min": -10.0, "logsnr_max": 7.0,
                   "nll_bpd": TRUE_NLL + network + schedule_gap, "nll_bpd_se": 0.01,
                   "fid": 3.0 + seed, "feature_extractor": "classifier-digits-gmm",
                   "num_fid_samples": 1000, "nll_num_examples": 2000}
            if dataset == "digits-gmm":
                row.update({
                    "true_entropy_bpd": H, "true_entropy_bpd_se": H_SE, "true_nll_bpd": TRUE_NLL,
                    "nll_minus_entropy_bpd": network + schedule_gap,
                    "bayes_bound_bpd": TRUE_NLL + schedule_gap,
                    "nll_minus_bayes_bound_bpd": network,
                    "bayes_bound_minus_entropy_bpd": schedule_gap})
                if ode:
                    row.update({"nll_ode_vdeq_bpd": TRUE_NLL + 2 * network,
                                "nll_ode_vdeq_minus_entropy_bpd": 2 * network,
                                "bayes_ode_vdeq_bpd": TRUE_NLL,
                                "nll_ode_vdeq_minus_bayes_ode_vdeq_bpd": 2 * network,
                                "bayes_ode_vdeq_minus_entropy_bpd": 0.0})
            rows.append(row)
    return pd.DataFrame(rows)


def mean_ci(values: list[float]) -> str:
    s = float(np.std(values, ddof=1))
    return f"{np.mean(values):.3f} ± {T975_DOF2 * s / math.sqrt(len(values)):.3f}"


def test_table_has_each_cells_mean_and_ci_and_the_gaps_add_up(tmp_path) -> None:
    paths = write_tables(summary(), tmp_path)
    md = paths["summary.md"].read_text()
    assert "### Against the known answer" in md and f"H = {H:.4f} ± {H_SE:.4f}" in md
    assert f"2000 test images, whose exact mean −log2 P(x)/D is {TRUE_NLL:.3f}" in md
    network = [g for g, _ in GAPS["eps", "learned"]]
    schedule_gap = [s for _, s in GAPS["eps", "learned"]]
    row = next(line for line in md.splitlines() if line.startswith("| eps | learned |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2:] == [mean_ci([TRUE_NLL + n + s for n, s in GAPS["eps", "learned"]]),
                         f"{H:.3f}",
                         mean_ci([n + s for n, s in GAPS["eps", "learned"]]),
                         mean_ci([TRUE_NLL + s for s in schedule_gap]), mean_ci(network),
                         mean_ci(schedule_gap)]
    tex = paths["summary.tex"].read_text()
    assert "tab:digits-gmm-known-answer" in tex and tex.isascii()
    csv = pd.read_csv(paths["summary.csv"])
    assert {"true_entropy_bpd", "nll_minus_entropy_bpd", "bayes_bound_bpd"} <= set(csv.columns)


def test_ode_columns_join_the_table_only_when_present() -> None:
    assert "ODE NLL − H" not in known_answer_cells(summary())
    cells = known_answer_cells(summary(ode=True))
    assert list(cells.columns[-5:]) == ["ODE NLL", "ODE NLL − H", "ODE Bayes bound",
                                        "ODE network gap", "ODE schedule + decoder gap"]


def test_a_dataset_without_a_known_density_gets_no_table_and_no_line(tmp_path) -> None:
    plain = summary("digits")
    assert true_entropy(plain) is None
    assert "known answer" not in write_tables(plain, tmp_path)["summary.md"].read_text()
    figure = cell_plots.bars_figure(plain, "nll_bpd", entropy_bpd=true_entropy(plain))
    assert not any("entropy" in t.get_text() for ax in figure.axes for t in ax.texts)


@pytest.mark.parametrize("ode", [False, True])
def test_nll_figures_draw_and_name_the_true_entropy(ode: bool) -> None:
    df = summary(ode=ode)
    entropy, entropy_se = true_entropy(df)
    assert (entropy, entropy_se) == (H, H_SE)
    bars = cell_plots.bars_figure(df, "nll_bpd", entropy_bpd=entropy)
    for ax in bars.axes:  # one panel per objective, each with the line inside its y range
        assert [list(line.get_ydata()) for line in ax.lines if line.get_linestyle() == "--"] \
            == [[H, H]]
        assert ax.get_ylim()[0] < H < ax.get_ylim()[1]
    fid_bars = cell_plots.bars_figure(df, "fid", entropy_bpd=entropy)
    assert not any(line.get_linestyle() == "--" for ax in fid_bars.axes for line in ax.lines)
    heatmap = cell_plots.heatmap_figure(df, "nll_bpd", entropy)
    assert f"true entropy H = {H:.3f} bits/dim" in heatmap.axes[0].get_title()
    tradeoff = cell_plots.tradeoff_figure(df, entropy_bpd=entropy)
    assert [list(line.get_xdata()) for line in tradeoff.axes[0].lines
            if line.get_linestyle() == "--"] == [[H, H]]
