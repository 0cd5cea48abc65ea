"""The result tables (vdm.reporting.summary_load, aggregation, significance, table_text,
table_files) and the figures (vdm.reporting.cell_plots, guidance_plots, plots) on a synthetic
2 objectives × 2 schedules × 3 seeds benchmark."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats as sps

from vdm.reporting import cell_plots, guidance_plots, plots
from vdm.reporting.aggregation import cell_summary
from vdm.reporting.significance import significance_table
from vdm.reporting.summary_columns import OPTIONAL_COLUMNS, SUMMARY_COLUMNS
from vdm.reporting.summary_load import load_metrics, summary_long
from vdm.reporting.table_files import aggregate_main, write_tables
from vdm.reporting.table_text import (
    guidance_markdown,
    pivot_table_latex,
    pivot_table_markdown,
    significance_caption,
    significance_table_markdown,
)

# Objectives / schedules deliberately listed in non-alphabetical order.
OBJECTIVES = ["eps", "elbo"]
SCHEDULES = ["linear", "cosine"]
# Per cell: three seeds, each evenly spaced so that s is exact.
NLL = {("eps", "linear"): [2.70, 2.72, 2.74], ("eps", "cosine"): [2.66, 2.67, 2.68],
       ("elbo", "linear"): [2.60, 2.62, 2.64], ("elbo", "cosine"): [2.55, 2.57, 2.59]}
FID = {("eps", "linear"): [3.0, 3.2, 3.4], ("eps", "cosine"): [2.9, 3.0, 3.1],
       ("elbo", "linear"): [5.0, 5.5, 6.0], ("elbo", "cosine"): [4.0, 4.4, 4.8]}
LAMBDA = {"linear": (7.0, -10.0), "cosine": (6.0, -9.0)}
T975_DOF2 = 0.95 / math.sqrt(2 * 0.975 * 0.025)  # t_{0.975,2} = 4.30265 (closed form for ν=2)


def make_records() -> list[dict]:
    """metrics.json-like records in config order (objective, schedule, seed)."""
    records = []
    for obj in OBJECTIVES:
        for sched in SCHEDULES:
            for seed in range(3):
                records.append({
                    "dataset": "digits", "objective": obj, "schedule": sched, "seed": seed,
                    "steps": 2000, "train_seconds": 30.0 + seed, "num_params": 150000,
                    "final_loss": 0.05, "logsnr_max": LAMBDA[sched][0],
                    "logsnr_min": LAMBDA[sched][1], "nll_bpd": NLL[obj, sched][seed],
                    "nll_bpd_se": 0.03, "nll_reconstruction_bpd": 0.1, "nll_prior_bpd": 1e-4,
                    "nll_diffusion_bpd": 2.5, "fid": FID[obj, sched][seed], "kid": 0.01,
                    "kid_std": 0.002, "precision": 0.8, "recall": 0.7,
                    "feature_extractor": "classifier-digits", "num_fid_samples": 1000,
                    "config": {"lr": 1e-3}, "provenance": {"git_commit": "abc"},
                })
    return records


@pytest.fixture
def df() -> pd.DataFrame:
    return pd.DataFrame(make_records()).drop(columns=["config", "provenance"])


def write_metrics(tmp_path: Path) -> list[Path]:
    paths = []
    for i, rec in enumerate(make_records()):
        path = tmp_path / "runs" / f"run{i}" / "metrics.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(rec))
        paths.append(path)
    return paths


def is_png(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 1000 and \
        path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def table_rows(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith("|")]


# --------------------------------------------------------------------------- tables
def test_load_metrics_flattens_scalars(tmp_path: Path) -> None:
    paths = write_metrics(tmp_path)
    rec = json.loads(paths[0].read_text())
    del rec["fid"]  # a run without FID
    paths[0].write_text(json.dumps(rec))
    loaded = load_metrics(paths)
    assert len(loaded) == 12
    assert "config" not in loaded and "provenance" not in loaded
    assert set(SUMMARY_COLUMNS) - set(OPTIONAL_COLUMNS) <= set(loaded.columns)
    assert "nll_ode_bpd" not in loaded  # optional columns no run has stay out
    assert loaded["primary"].all() and loaded["parameterization"].eq("eps").all()
    assert math.isnan(loaded.loc[0, "fid"]) and loaded.loc[1, "fid"] == 3.2


def test_summary_long_order_and_columns(df: pd.DataFrame) -> None:
    shuffled = df.sample(frac=1.0, random_state=0)
    long = summary_long(shuffled, objective_order=OBJECTIVES, schedule_order=SCHEDULES)
    assert list(long.columns[:6]) == ["dataset", "conditioning", "parameterization", "objective",
                                      "schedule", "seed"]
    expected = [(o, s, k) for o in OBJECTIVES for s in SCHEDULES for k in range(3)]
    assert list(zip(long["objective"], long["schedule"], long["seed"], strict=True)) == expected


def test_cell_summary_matches_hand_ci(df: pd.DataFrame) -> None:
    cells = cell_summary(df, "nll_bpd")
    assert list(zip(cells["objective"], cells["schedule"], strict=True)) == \
        [(o, s) for o in OBJECTIVES for s in SCHEDULES]
    row = cells.iloc[0]  # eps/linear: [2.70, 2.72, 2.74] → mean 2.72, s = 0.02
    assert row["mean"] == pytest.approx(2.72)
    assert row["ci"] == pytest.approx(T975_DOF2 * 0.02 / math.sqrt(3))  # = 0.049683
    assert row["n"] == 3


def test_pivot_markdown_marks_best_and_keeps_order(df: pd.DataFrame) -> None:
    nll = pivot_table_markdown(df, "nll_bpd")
    rows = table_rows(nll)
    assert rows[0] == "| objective | linear | cosine |"
    assert [r.split("|")[1].strip() for r in rows[2:]] == ["eps", "elbo", "λ range"]
    # elbo/cosine mean 2.57, half-width 4.30265·0.02/√3 = 0.04968 → "0.050"
    assert "**2.570 ± 0.050**" in nll
    assert sum(r.count("**") for r in rows) == 2  # exactly one bold cell
    assert "bits/dim" in nll and "[-10.00, 7.00]" in nll and "[-9.00, 6.00]" in nll
    fid = pivot_table_markdown(df, "fid")
    # eps/cosine mean 3.0, s = 0.1 → half-width 0.24841 → "0.25"
    assert "**3.00 ± 0.25**" in fid
    assert "classifier-digits" in fid and "not Inception" in fid


def test_pivot_explicit_order(df: pd.DataFrame) -> None:
    md = pivot_table_markdown(df, "fid", objective_order=["elbo"],
                                     schedule_order=["cosine", "linear"])
    rows = table_rows(md)
    assert rows[0] == "| objective | cosine | linear |"
    assert rows[2].startswith("| elbo |")


def test_pivot_latex_bold_escaped_ascii(df: pd.DataFrame) -> None:
    df = df.assign(objective=df["objective"].replace({"elbo": "min_snr"}))
    tex = pivot_table_latex(df, "nll_bpd", label="tab:nll")
    assert r"\textbf{2.570 $\pm$ 0.050}" in tex
    assert r"min\_snr" in tex and r"\begin{tabular}" in tex and r"\toprule" in tex
    assert r"\label{tab:nll}" in tex and "bits/dim" in tex
    assert tex.isascii()
    assert tex.count("{") == tex.count("}")
    assert tex.count("$") % 2 == 0


def test_significance_is_paired_by_seed_and_holm_adjusted(df: pd.DataFrame) -> None:
    """Every cell has seeds 0, 1, 2: paired t-tests against the baseline, Holm across cells."""
    noisy = df.assign(fid=df["fid"] + np.where(df["seed"] == 1, 0.05, 0.0)
                      * np.where(df["objective"] == "elbo", 1, -1))
    sig = significance_table(noisy, "fid").set_index(["objective", "schedule"])
    values = {k: noisy.loc[(noisy["objective"] == k[0]) & (noisy["schedule"] == k[1]), "fid"]
              .to_numpy() for k in FID}
    raw = {k: sps.ttest_rel(values[k], values["eps", "linear"]).pvalue
           for k in FID if k != ("eps", "linear")}
    for key, p in raw.items():
        assert sig.loc[key, "test"] == "paired t" and sig.loc[key, "p"] == pytest.approx(p)
    ordered = sorted(raw.values())  # Holm: k-th smallest times (m - k + 1), monotone, capped
    holm = np.minimum(1, np.maximum.accumulate([p * (3 - i) for i, p in enumerate(ordered)]))
    assert sorted(sig["p_holm"].dropna()) == pytest.approx(list(holm))
    row = sig.loc[("elbo", "linear")]
    differences = values["elbo", "linear"] - values["eps", "linear"]
    half = sps.t.ppf(0.975, 2) * differences.std(ddof=1) / math.sqrt(3)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((differences.mean() - half,
                                                             differences.mean() + half))
    assert bool(row["significant"]) == (row["p_holm"] < 0.05)
    assert sig.loc[("eps", "linear"), "mark"] == "base"
    caption = significance_caption(noisy, "fid")
    assert "paired t" in caption and "Holm" in caption and "the DDPM baseline" in caption


def test_significance_falls_back_to_welch_when_seeds_differ(df: pd.DataFrame) -> None:
    uneven = df[~((df["objective"] == "elbo") & (df["schedule"] == "linear") & (df["seed"] == 2))]
    sig = significance_table(uneven, "fid").set_index(["objective", "schedule"])
    ref = sps.ttest_ind(FID["elbo", "linear"][:2], FID["eps", "linear"], equal_var=False)
    assert sig.loc[("elbo", "linear"), "test"] == "Welch t"
    assert sig.loc[("elbo", "linear"), "p"] == pytest.approx(ref.pvalue)
    assert pd.isna(sig.loc[("elbo", "linear"), "n_pairs"])
    assert sig.loc[("eps", "cosine"), "test"] == "paired t"
    assert sig.loc[("eps", "cosine"), "n_pairs"] == 3


def test_significance_pairs_around_a_missing_value(df: pd.DataFrame) -> None:
    """A NaN (a failed FID) on seed 2 of elbo/linear: the runs were trained on the baseline's
    seeds, so the test stays paired, on the 2 seeds left, and says so (n_pairs, caption)."""
    failed = df.assign(fid=df["fid"].where(~((df["objective"] == "elbo")
                                              & (df["schedule"] == "linear")
                                              & (df["seed"] == 2))))
    sig = significance_table(failed, "fid").set_index(["objective", "schedule"])
    row = sig.loc[("elbo", "linear")]
    ref = sps.ttest_rel(FID["elbo", "linear"][:2], FID["eps", "linear"][:2])
    assert row["test"] == "paired t" and row["n"] == 2 and row["n_pairs"] == 2
    assert row["p"] == pytest.approx(ref.pvalue)
    # Δ is the tested difference (over the pairs), centred in its CI: (5.0 − 3.0 + 5.5 − 3.2)/2
    assert row["diff"] == pytest.approx(2.15) == pytest.approx((row["ci_low"] + row["ci_high"]) / 2)
    assert row["mean"] - row["baseline_mean"] == pytest.approx(5.25 - 3.2)  # all values
    markdown = significance_table_markdown(failed, "fid")
    assert "| pairs |" in markdown and "over the seeds where both have a value" in markdown
    line = next(r for r in markdown.splitlines() if r.startswith("| elbo | linear |"))
    assert line.split("|")[3:5] == [" 2 ", " 2 "]  # n, pairs


def test_significance_baseline_without_eps_linear_is_stated_and_configurable(df) -> None:
    """A grid without ε + linear compares against its first cell, named in the caption; a
    configured baseline wins when present."""
    no_ddpm = df[~((df["objective"] == "eps") & (df["schedule"] == "linear"))]
    sig = significance_table(no_ddpm, "nll_bpd")
    assert len(sig) == 3 and sig["p"].notna().sum() == 2
    assert sig.loc[sig["mark"] == "base", ["objective", "schedule"]].values.tolist() == [
        ["eps", "cosine"]]
    assert "the grid's first cell (the grid has no ε + linear cell)" in \
        significance_caption(no_ddpm, "nll_bpd")
    chosen = {"objective": "elbo", "schedule": "cosine"}
    configured = significance_table(df, "nll_bpd", baseline=chosen)
    assert configured.loc[configured["mark"] == "base", "objective"].tolist() == ["elbo"]
    assert "the configured baseline" in significance_caption(df, "nll_bpd", chosen)


def test_write_tables_files(df: pd.DataFrame, tmp_path: Path) -> None:
    paths = write_tables(df, tmp_path / "out")
    assert set(paths) == {"summary.csv", "summary.md", "summary.tex", "significance.csv",
                          "claims.md", "claims.csv"}
    summary = pd.read_csv(paths["summary.csv"])
    for col in ["dataset", "objective", "schedule", "seed", "fid", "kid", "nll_bpd",
                "nll_bpd_se", "train_seconds", "steps", "logsnr_min", "feature_extractor"]:
        assert col in summary.columns
    sig = pd.read_csv(paths["significance.csv"])
    assert {"dataset", "metric", "objective", "schedule", "n", "n_pairs", "diff", "ci_low",
            "ci_high", "test", "t", "dof", "p", "p_holm"} <= set(sig.columns)
    assert set(sig.loc[sig["test"] == "paired t", "n_pairs"]) == {3}
    assert len(sig) == 8
    md = paths["summary.md"].read_text()
    assert "**2.570 ± 0.050**" in md and "paired t" in md and "| Δ vs base |" in md
    tex = paths["summary.tex"].read_text()
    assert tex.count(r"\begin{table}") == 4 and r"\textbf{" in tex and tex.isascii()


def test_aggregate_main(tmp_path: Path) -> None:
    paths = aggregate_main(write_metrics(tmp_path), tmp_path / "agg")
    assert all(p.stat().st_size > 0 for p in paths.values())


def test_tables_one_seed_and_missing_fid(df: pd.DataFrame, tmp_path: Path) -> None:
    one = df[df["seed"] == 0].assign(fid=np.nan)
    md = pivot_table_markdown(one, "nll_bpd")
    assert "**2.550**" in md and "±" not in table_rows(md)[2]
    assert "n/a" in pivot_table_markdown(one, "fid")
    sig = significance_table(one, "nll_bpd")
    assert sig["p"].isna().all() and not sig["significant"].any()
    paths = write_tables(one, tmp_path)
    assert paths["summary.tex"].read_text().isascii()


# --------------------------------------------------------------------------- plots
@pytest.mark.parametrize("variant", ["full", "one_seed", "no_fid"])
def test_summary_plots(df: pd.DataFrame, tmp_path: Path, variant: str) -> None:
    if variant == "one_seed":
        df = df[df["seed"] == 0]
    elif variant == "no_fid":
        df = df.assign(fid=np.nan, feature_extractor=np.nan)
    written = [*cell_plots.plot_heatmaps(df, tmp_path), *cell_plots.plot_bars(df, tmp_path),
               cell_plots.plot_tradeoff(df, tmp_path)]
    names = {p.name for p in written}
    assert names == {"fid_heatmap.png", "nll_heatmap.png", "fid_bars.png", "nll_bars.png",
                     "fid_vs_nll.png"}
    assert all(is_png(p) for p in written)


def write_logs(tmp_path: Path) -> dict[tuple[str, str, int], Path]:
    logs = {}
    steps = np.arange(0, 200, 10)
    for obj in OBJECTIVES:
        for sched in SCHEDULES:
            for seed in range(2):
                path = tmp_path / f"log_{obj}_{sched}_{seed}.csv"
                pd.DataFrame({"step": steps, "loss": 1.0 / (1 + steps) + 0.01 * (seed + 1),
                              "grad_norm": 1.0, "lr": 1e-3, "images_per_sec": 500.0,
                              "ema_loss": 0.5}).to_csv(path, index=False)
                logs[obj, sched, seed] = path
    return logs


def write_grids(tmp_path: Path) -> dict[tuple[str, str], Path]:
    grids = {}
    rng = np.random.default_rng(0)
    # grey and RGB grids; elbo/cosine missing on purpose
    for obj, sched, shape in [("eps", "linear", (16, 16)), ("eps", "cosine", (16, 16, 3)),
                              ("elbo", "linear", (16, 16))]:
        path = tmp_path / f"grid_{obj}_{sched}.png"
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
        grids[obj, sched] = path
    return grids


def test_loss_curves_and_montage(tmp_path: Path) -> None:
    assert is_png(cell_plots.plot_loss_curves(write_logs(tmp_path), tmp_path / "figs"))
    assert is_png(cell_plots.plot_sample_montage(write_grids(tmp_path), tmp_path / "figs"))
    assert is_png(cell_plots.plot_loss_curves({}, tmp_path / "empty"))
    assert is_png(cell_plots.plot_sample_montage({}, tmp_path / "empty"))


def test_plots_main(df: pd.DataFrame, tmp_path: Path) -> None:
    summary = write_tables(df, tmp_path)["summary.csv"]
    written = plots.plots_main(summary, write_logs(tmp_path), write_grids(tmp_path),
                               tmp_path / "figs")
    assert len(written) == 7 and all(is_png(p) for p in written)


def test_guidance_table_means_cis_and_the_classifiers_own_accuracy() -> None:
    """One row per cell and one column per guidance weight; w = 0 (no guidance) opens every
    kind's curve; the class-accuracy caption names the dataset classifier's test accuracy."""
    accuracy = {0.0: [0.90, 0.92, 0.94], 2.0: [0.97, 0.98, 0.99]}
    records = []
    for seed in range(3):
        for kind, weight in (("none", 0.0), ("cfg", 2.0)):
            records.append({
                "dataset": "digits", "conditioning": "class", "parameterization": "eps",
                "objective": "eps", "schedule": "cosine", "seed": seed, "sampler": "ancestral",
                "sample_steps": 25, "nfe": 26 if kind == "none" else 52,
                "primary": kind == "none", "guidance_kind": kind, "guidance_weight": weight,
                "fid": 1.0 + weight + seed, "class_accuracy": accuracy[weight][seed],
                "classifier_test_accuracy": 0.977, "feature_extractor": "classifier-digits",
                "num_fid_samples": 1000})
    text = guidance_markdown(pd.DataFrame(records))
    assert "classifier-free guidance, eps~ = (1 + w) eps(z, c) - w eps(z, null)" in text
    assert "its own accuracy on the real test images: 0.977" in text
    unguided, guided = (T975_DOF2 * s / math.sqrt(3) for s in (0.02, 0.01))  # SDs of the seeds
    assert f"| eps | cosine | 0.920 ± {unguided:.3f} | 0.980 ± {guided:.3f} |" in text
    assert "| eps | cosine | 2.00 ± " in text and "| 4.00 ± " in text  # FID 1+w+seed


def test_guidance_sample_panels_show_no_guidance_once_then_best_and_largest_per_kind() -> None:
    rows = [("cfg", 0.0, 0.2), ("cfg", 0.5, 0.5), ("cfg", 4.0, 3.3),
            ("classifier", 0.0, 0.2), ("classifier", 2.0, 0.1), ("classifier", 4.0, 0.4)]
    cells = pd.DataFrame([{"objective": "eps", "schedule": "cosine", "guidance_kind": kind,
                           "guidance_weight": weight, "fid_mean": fid}
                          for kind, weight, fid in rows])
    panels = guidance_plots.guidance_sample_panels(cells, ("eps", "cosine"))
    assert [(kind, weight) for kind, weight, _ in panels] == [
        ("none", 0.0), ("cfg", 0.5), ("cfg", 4.0), ("classifier", 2.0), ("classifier", 4.0)]
    titles = [title for *_, title in panels]
    assert titles[0].endswith("best FID of classifier-free guidance")  # classifier: w = 2 wins
    assert "best FID of w > 0 (and overall)" in titles[3] and "(and overall)" not in titles[1]
