"""vdm.reporting.headline on the stored default summary and the synthetic claims summary: the
numbers it leads with are recomputed here from the runs, and the report's landing page
(workflow/report/workflow.rst) renders the generated headline first."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from vdm.reporting import headline as hl
from vdm.reporting.claims_report import claims_report

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
jinja2 = pytest.importorskip("jinja2")
docutils_core = pytest.importorskip("docutils.core")


@pytest.fixture(scope="module")
def default() -> tuple[pd.DataFrame, pd.DataFrame]:
    summary = pd.read_csv(DATA / "default_summary.csv")
    return summary, pd.read_csv(io.StringIO(claims_report(summary, run_name="default")[1]))


def mean_ci(values: pd.Series) -> tuple[float, float]:
    """Mean and 95% Student-t half-width, computed here from the seeds."""
    n = len(values)
    return values.mean(), stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n)


def test_best_cells_are_the_lowest_cell_means_with_their_t_intervals(default) -> None:
    summary, claims = default
    text = hl.headline_markdown(summary, claims, run_name="default")
    for metric, decimals in (("fid", 2), ("nll_bpd", 3)):
        by_cell = summary.groupby(["objective", "schedule"])[metric]
        ranked = by_cell.mean().sort_values()
        (obj, sched), (obj2, sched2) = ranked.index[:2]
        mean, ci = mean_ci(by_cell.get_group((obj, sched)))
        mean2, ci2 = mean_ci(by_cell.get_group((obj2, sched2)))
        assert (f"**{obj} / {sched}** {mean:.{decimals}f} ± {ci:.{decimals}f}; next {obj2} / "
                f"{sched2} {mean2:.{decimals}f} ± {ci2:.{decimals}f} (mean ± 95% CI over 3 seeds; "
                f"12 cells)") in text
        assert f"**{obj} / {sched}** ({mean:.{decimals}f} ± {ci:.{decimals}f})" in text  # lead


def test_claims_lead_with_their_verdicts_effects_and_the_winning_p(default) -> None:
    summary, claims = default
    text = hl.headline_markdown(summary, claims, run_name="default")
    counts = claims["verdict"].value_counts()
    tested = len(claims) - counts.get("not in this grid", 0)
    assert text.startswith("## What the `default` grid found\n\n"
                           f"{counts['reproduced']} of the {tested} published claims this grid "
                           f"can test reproduce, {counts['contradicted']} contradicted")
    for row in claims.itertuples():
        if row.verdict == "reproduced":
            line = next(x for x in text.splitlines() if f"`{row.claim}`" in x)
            assert line.startswith("- **reproduced**") and f"p (Holm) = {row.p_holm:.3g}" in line
        elif row.verdict == "contradicted":
            line = next(x for x in text.splitlines() if f"`{row.claim}`" in x)
            assert f"opposite direction, p (Holm) = {row.p_opposite_holm:.3g}" in line
            assert f"{row.effect:+.3f}".replace("-", "−") in line
    not_tested = claims.loc[claims["verdict"] == "not in this grid", "claim"]
    assert "- not in this grid: " + ", ".join(f"`{c}`" for c in not_tested) in text


def test_coverage_names_axes_seeds_steps_and_evaluation(default) -> None:
    summary, claims = default
    config = {"name": "default", "objectives": ["x0", "eps", "elbo", "v"],
              "schedules": ["linear", "cosine", "sigmoid", "learned"], "seeds": [0, 1, 2],
              "parameterizations": ["eps"]}
    text = hl.headline_markdown(summary, claims, config)
    assert ("- 36 runs = 3 objectives (x0, eps, elbo) × 4 schedules (linear, cosine, sigmoid, "
            "learned) × 3 seeds (0, 1, 2); all eps output, unconditional.") in text
    assert "- 36 of the 48 runs the config plans are here." in text
    assert "- Data: digits; training: 300 steps per run." in text
    assert ("- Evaluation: ancestral sampler, 25 steps (NFE 26); FID (classifier-digits) on 1000 "
            "samples; NLL (ELBO, bits/dim) on 300 test images.") in text


def test_an_incomplete_grid_with_guidance_says_so() -> None:
    summary = pd.read_csv(DATA / "claims_summary.csv")
    claims = pd.read_csv(DATA / "claims.csv")
    text = hl.headline_markdown(summary, claims, run_name="synthetic")
    runs = summary[summary["primary"]].drop_duplicates(
        ["conditioning", "objective", "schedule", "seed"])
    assert f"{len(runs)} runs over 4 objectives" in text
    assert f"(not every combination: {len(runs)} of {4 * 3 * 2 * 3})" in text
    assert "cfg guidance at w = 1, 3" in text and "2–3 seeds" in text  # min_snr has 2


def test_one_seed_has_no_interval(default) -> None:
    summary, claims = default
    text = hl.headline_markdown(summary[summary["seed"] == 0], claims.iloc[0:0])
    assert "(mean ± one seed: no CI; 12 cells)" in text and "- no claims tested" in text


def test_rst_escapes_markup_and_renders_without_docutils_messages(default) -> None:
    summary, claims = default
    claims = claims.assign(statement=claims["statement"] + " Uses p(x|y), a*b and x_ref_.")
    rst = hl.headline_rst(summary, claims, run_name="default")
    assert rst.splitlines()[1] == "=" * len(rst.splitlines()[0])
    html = docutils_core.publish_parts(rst, writer="html",
                                       settings_overrides={"report_level": 1})["html_body"]
    assert "system-message" not in html and "Uses p(x|y), a*b and x_ref_." in html
    markdown = hl.headline_markdown(summary, claims, run_name="default")
    best = next(x for x in markdown.splitlines() if x.startswith("- FID"))
    assert best.replace("**", "<strong>", 1).replace("**", "</strong>", 1)[2:] in html


def render_landing_page(files: list[object], workdir: Path) -> str:
    """workflow/report/workflow.rst rendered as Snakemake ≥ 9 renders a report's landing page
    (snakemake/report/__init__.py, auto_report): Jinja2 with trim_blocks and lstrip_blocks over
    ``snakemake.config``, ``categories`` and ``files``, then docutils' ``html_body``, in the
    workflow's working directory."""
    class Snakemake:
        config = {"dataset": "digits"}

    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    text = (REPO / "workflow" / "report" / "workflow.rst").read_text()
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        rst = env.from_string(text).render(snakemake=Snakemake, categories={}, files=files)
        return docutils_core.publish_parts(rst, writer="html")["html_body"]
    finally:
        os.chdir(cwd)


class FileRecord:
    """The two attributes of Snakemake's report FileRecord the landing page reads."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.name = self.path.name


def test_the_landing_page_leads_with_the_generated_headline(default, tmp_path: Path) -> None:
    summary, claims = default
    tables = tmp_path / "results" / "default" / "tables"
    tables.mkdir(parents=True)
    summary.to_csv(tables / "summary.csv", index=False)
    claims.to_csv(tables / "claims.csv", index=False)
    written = hl.write_headline(tables / "summary.csv", tables / "claims.csv", tables,
                                run_name="default")
    assert set(written) == {"headline.md", "headline.rst"}
    files = [FileRecord("results/default/tables/summary.csv"),
             FileRecord("results/default/tables/headline.rst")]
    html = render_landing_page(files, tmp_path)
    assert "system-message" not in html
    assert html.index("grid found</h1>") < html.index("About the benchmark")
    assert "<strong>eps / cosine</strong> (0.76 ± 0.40)" in html
    without = render_landing_page(files[:1], tmp_path)  # before the aggregate step ran
    assert "grid found" not in without and "About the benchmark" in without


def test_bad_input_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="summary table not found: .*nope.csv"):
        hl.write_headline(tmp_path / "nope.csv", tmp_path / "claims.csv", tmp_path)
    with pytest.raises(ValueError, match="no runs"):
        hl.headline(pd.DataFrame(columns=["objective"]), pd.DataFrame())


def test_snapshot_rows_are_budgets_not_further_sampler_settings(default) -> None:
    """A grid with train.snapshots has a row per run and training step: the earlier steps are
    budgets (named under training), never "further sampler settings"."""
    summary, claims = default
    final = summary.assign(train_step=300)
    early = summary.assign(train_step=150)
    text = hl.headline_markdown(pd.concat([early, final], ignore_index=True), claims)
    assert "further sampler settings" not in text
    assert "also evaluated after 150 steps" in text
