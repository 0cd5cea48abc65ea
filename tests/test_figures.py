"""Figures a reader can take in (vdm.reporting.plot_style and its use in the figure modules):
titles that fit, NFE axes ticked at the measured values, a one-seed grid's sampling errors as error
bars, nothing drawn past a figure's edge."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure
from PIL import Image
from scipy import stats

from vdm.reporting import cell_plots, plots, sampler_plots
from vdm.reporting.plot_style import (
    MeasuredTicks,
    fit_titles,
    one_seed_errors,
    tick_at_values,
    title_overflow,
)

Z95 = stats.norm.ppf(0.975)
T95_2 = stats.t.ppf(0.975, 2)
#: NFE of each (sampler, steps): N + 1 network evaluations for ancestral, 2N + 1 for Heun
NFE = {("ancestral", 10): 11, ("ancestral", 25): 26, ("heun", 4): 9, ("heun", 19): 39}
CELLS = [("eps", "linear"), ("eps", "cosine"), ("elbo", "linear"), ("elbo", "cosine")]


def summary(seeds: int = 3) -> pd.DataFrame:
    """A display-frame summary: 2 objectives × 2 schedules × ``seeds`` seeds, each run at four
    sampler settings (ancestral-25 primary); FID, NLL and their sampling errors vary by run;
    ODE likelihoods on the primary rows."""
    rows = []
    for i, (objective, schedule) in enumerate(CELLS):
        for seed in range(seeds):
            for (sampler, steps), nfe in NFE.items():
                primary = (sampler, steps) == ("ancestral", 25)
                rows.append({
                    "dataset": "digits", "conditioning": "uncond", "parameterization": "eps",
                    "objective": objective, "schedule": schedule, "seed": seed,
                    "sampler": sampler, "sample_steps": steps, "nfe": nfe, "guidance_kind": "none",
                    "guidance_weight": 0.0, "primary": primary,
                    "fid": 2.0 + i + 0.1 * seed + 10.0 / nfe, "fid_se": 0.1 + 0.01 * i + 0.001 * seed,
                    "nll_bpd": 2.0 + 0.1 * i + 0.01 * seed, "nll_bpd_se": 0.02 + 0.001 * i,
                    "nll_ode_bpd": 1.9 + 0.1 * i + 0.01 * seed if primary else np.nan,
                    "nll_elbo_bpd_on_ode_examples": 2.0 + 0.1 * i if primary else np.nan,
                    "nll_ode_num_examples": 64 if primary else np.nan,
                    "feature_extractor": "classifier-digits", "num_fid_samples": 1000})
    return pd.DataFrame(rows)


def primary(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["primary"]]


def blank_figure(width: float = 4.0) -> Figure:
    fig = Figure(figsize=(width, 5.0), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


# --------------------------------------------------------------------------- titles
def test_titles_are_wrapped_to_their_room_keeping_words_and_line_breaks() -> None:
    fig = blank_figure(6.0)
    left, right = fig.subplots(1, 2)
    words = " ".join(f"word{i}" for i in range(40))
    fig.suptitle(f"First line stays first\n{words}")
    left.set_title(words[:80])
    right.set_title("short")
    assert len(title_overflow(fig)) == 2  # the suptitle and the left title are too wide
    fit_titles(fig)
    assert title_overflow(fig) == []
    text = fig._suptitle.get_text()
    assert text.split("\n")[0] == "First line stays first"
    assert " ".join(text.split("\n")[1:]).split() == words.split()  # every word, in order
    assert left.get_title().count("\n") >= 1 and right.get_title() == "short"


def test_a_word_wider_than_the_room_shrinks_the_font() -> None:
    fig = blank_figure(1.5)
    fig.suptitle("x" * 24, fontsize=10)  # about 1.3 times the room at 10 pt
    fit_titles(fig)
    assert title_overflow(fig) == [] and fig._suptitle.get_fontsize() < 10


def test_the_ode_title_that_was_cut_off_now_fits() -> None:
    fig = Figure(figsize=(7.0, 5.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.set_title("Likelihood bounds per cell (mean ± 95% CI (Student t over seeds)); ODE on 256 "
                 "test images; lower is better", fontsize=9)  # plot_ode_vs_elbo's title
    assert title_overflow(fig)
    fit_titles(fig)
    assert title_overflow(fig) == []


# --------------------------------------------------------------------------- NFE ticks
def test_nfe_axis_is_ticked_at_the_measured_values() -> None:
    fig = sampler_plots.fid_vs_nfe_figure(summary())
    fig.draw_without_rendering()
    measured = [f"{v:g}" for v in sorted(NFE.values())]
    panels = [ax for ax in fig.axes if ax.get_xscale() == "log"]
    assert len(panels) == len(CELLS)
    for ax in panels:
        assert [t.get_text() for t in ax.get_xticklabels()] == measured
        assert list(ax.xaxis.get_minorticklocs()) == []


def test_measured_ticks_leave_out_a_label_that_would_overlap() -> None:
    fig = blank_figure(2.0)
    ax = fig.subplots()
    ax.set_xscale("log")
    ax.set_xlim(10, 100)
    tick_at_values(ax.xaxis, [25, 26, 50, 12.5])
    fig.draw_without_rendering()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["12.5", "25", "50"]
    assert MeasuredTicks([3, np.nan, 3.0, 1]).values == [1.0, 3.0]


# --------------------------------------------------------------------------- one-seed error bars
def errorbar_halves(collection) -> np.ndarray:
    """Half-lengths of the error-bar segments of a LineCollection."""
    return np.array([np.abs(np.diff(seg, axis=0)).max() / 2 for seg in collection.get_segments()])


def error_bars(ax) -> list[ErrorbarContainer]:
    return [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


def test_one_seed_bars_show_the_runs_sampling_interval() -> None:
    one = primary(summary(seeds=1))
    fig = cell_plots.bars_figure(one, "fid")
    for ax, objective in zip(fig.axes, ["eps", "elbo"], strict=False):
        (bars,) = error_bars(ax)
        expected = [Z95 * one.loc[(one["objective"] == objective) & (one["schedule"] == s),
                                  "fid_se"].item() for s in ("linear", "cosine")]
        np.testing.assert_allclose(errorbar_halves(bars.lines[2][0]), expected, rtol=1e-9)
    assert "1.96 × fid_se" in fig._suptitle.get_text()


def test_several_seeds_keep_the_t_interval_over_seeds() -> None:
    df = primary(summary(seeds=3))
    fig = cell_plots.bars_figure(df, "nll_bpd")
    seeds = df.loc[(df["objective"] == "eps") & (df["schedule"] == "linear"), "nll_bpd"]
    expected = T95_2 * seeds.std(ddof=1) / math.sqrt(3)
    assert errorbar_halves(error_bars(fig.axes[0])[0].lines[2][0])[0] == pytest.approx(
        expected, rel=1e-9)
    assert "Student t over seeds" in fig._suptitle.get_text()


def test_one_seed_tradeoff_and_heatmap_show_sampling_intervals_on_both_metrics() -> None:
    one = primary(summary(seeds=1))
    fig = cell_plots.tradeoff_figure(one, uniform_bpd=math.log2(17))
    ax = fig.axes[0]
    containers = [c for c in error_bars(ax) if c.has_xerr and c.has_yerr]
    assert len(containers) == len(CELLS)
    for container, (_, run) in zip(containers, one.iterrows(), strict=True):
        x_bars, y_bars = container.lines[2]
        assert errorbar_halves(x_bars)[0] == pytest.approx(Z95 * run["nll_bpd_se"], rel=1e-9)
        assert errorbar_halves(y_bars)[0] == pytest.approx(Z95 * run["fid_se"], rel=1e-9)
    assert "uniform bound 4.09 to the right" in [t.get_text() for t in ax.texts]
    heatmap = cell_plots.heatmap_figure(one, "fid")
    labels = [t.get_text() for t in heatmap.axes[0].texts]
    first = one.iloc[0]
    assert f"{first['fid']:.2f}\n±{Z95 * first['fid_se']:.2f}" in labels


def test_one_seed_errors_need_one_seed_and_the_error_column() -> None:
    cells = pd.DataFrame({"objective": ["a"], "schedule": ["s"], "mean": [1.0], "ci": [np.nan],
                          "n": [1]})
    rows = pd.DataFrame({"objective": ["a"], "schedule": ["s"], "fid": [1.0], "fid_se": [0.5]})
    out, text = one_seed_errors(cells, rows, "fid")
    assert out["ci"].item() == pytest.approx(Z95 * 0.5) and "fid_se" in text
    assert one_seed_errors(cells.assign(n=3), rows, "fid")[1] is None  # several seeds: t-CI
    assert one_seed_errors(cells, rows.drop(columns="fid_se"), "fid")[1] is None
    assert one_seed_errors(cells, rows, "precision")[1] is None  # no sampling error known


# --------------------------------------------------------------------------- whole figures
def test_no_figure_draws_past_its_edge(tmp_path: Path) -> None:
    """Every figure of ``plots_main`` on a grid with a sampler sweep and ODE likelihoods, with
    one seed and with three: the outermost pixel frame of each PNG is blank (a title or label
    cut off at the edge would touch it)."""
    floor = {"fid": 1.5, "num_floor_images": 300, "floor_split": "test", "dataset": "digits"}
    for seeds in (1, 3):
        summary_csv = tmp_path / f"summary{seeds}.csv"
        summary(seeds).to_csv(summary_csv, index=False)
        written = plots.plots_main(summary_csv, {}, {}, tmp_path / f"plots{seeds}", floor=floor)
        names = {p.name for p in written}
        assert {"fid_vs_nfe.png", "nll_ode_vs_elbo.png", "fid_bars.png"} <= names
        for path in written:
            pixels = np.asarray(Image.open(path).convert("L"))
            frame = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
            assert (frame > 250).all(), path.name
