"""End to end: the real Snakemake workflow on the tiny config, in a temporary copy of the repo."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pandas as pd
import pytest
from workflow_copy import copy_workflow, venv_environment

from vdm.reporting.summary_columns import KNOWN_DENSITY_COLUMNS, SUMMARY_COLUMNS

T = TypeVar("T")
TINY_CELLS = 2 * 2 * 2  # config/test.yaml: objectives x schedules x seeds
PLOT_NAMES = ("fid_heatmap", "nll_heatmap", "fid_bars", "nll_bars", "fid_vs_nll", "loss_curves",
              "samples_montage", "denoiser_floor")


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = venv_environment()
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir, env=env,
                          capture_output=True, text=True, check=check, timeout=1200)


def _at_once(calls: list[Callable[[], T]]) -> list[T]:
    """The results of ``calls``, run in threads at once: each starts a Snakemake process, whose
    second or two of startup is one core's work (the suite itself runs one test at a time)."""
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1)) as pool:
        return list(pool.map(lambda call: call(), calls))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return copy_workflow(tmp_path_factory.mktemp("pipeline"))


@pytest.fixture(scope="module")
def finished(workdir: Path) -> Path:
    result = snakemake(workdir, "--cores", "2", "--configfile", "config/test.yaml", check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir


@pytest.mark.slow
def test_summary_table(finished: Path) -> None:
    summary = pd.read_csv(finished / "results/test/tables/summary.csv")
    assert len(summary) == TINY_CELLS
    for column in ("objective", "schedule", "seed", "fid", "kid", "nll_bpd", "nll_bpd_se",
                   "train_seconds", "steps", "feature_extractor"):
        assert column in summary.columns, column
    assert set(summary["objective"]) == {"eps", "elbo"}
    assert set(summary["schedule"]) == {"linear", "learned"}
    assert (summary["steps"] == 150).all()
    # 150 steps are enough to beat the uniform bound log2(17) = 4.087 bits/dim in every cell
    assert (summary["nll_bpd"] + 2 * summary["nll_bpd_se"] < math.log2(17)).all(), summary["nll_bpd"]
    terms = summary[["nll_reconstruction_bpd", "nll_prior_bpd", "nll_diffusion_bpd"]]
    assert (terms > 0).all().all()
    assert (terms.sum(axis=1) - summary["nll_bpd"]).abs().max() < 1e-6  # float32 terms
    assert summary["fid"].notna().all() and (summary["fid"] > 0).all()
    assert (summary["fid_se"] > 0).all() and (summary["fid_se"] < summary["fid"]).all()
    assert summary["denoiser_gap_train"].notna().all() and summary["denoiser_gap_test"].notna().all()
    assert (summary["feature_extractor"] == "classifier-digits").all()


@pytest.mark.slow
def test_formatted_tables_and_plots(finished: Path) -> None:
    markdown = (finished / "results/test/tables/summary.md").read_text()
    assert "±" in markdown and "**" in markdown and "classifier-digits" in markdown
    assert "\\textbf" in (finished / "results/test/tables/summary.tex").read_text()
    significance = pd.read_csv(finished / "results/test/tables/significance.csv")
    assert {"p", "p_holm", "diff", "test"} <= set(significance.columns)
    assert set(significance["test"].dropna()) == {"paired t"}  # every cell has seeds 0 and 1
    for text in ("Real-data floor", "FID sampling error of one run", "optimal denoiser",
                 "Holm-adjusted"):
        assert text in markdown, text
    claims = pd.read_csv(finished / "results/test/tables/claims.csv")
    assert len(claims) >= 10 and set(claims["verdict"]) <= {
        "reproduced", "contradicted", "inconclusive", "not in this grid"}
    assert "Regenerate with `python -m vdm claims" in (
        finished / "results/test/tables/claims.md").read_text()
    floor = json.loads((finished / "results/digits/fid/classifier/floor.json").read_text())
    assert floor["num_floor_images"] == 300 and 0 < floor["fid"] < 5
    for name in PLOT_NAMES:
        png = finished / f"results/test/plots/{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    timing = pd.read_csv(finished / "results/test/tables/timing.csv")  # where the time went
    rules = dict(zip(timing["rule"], timing["jobs"], strict=True))
    assert rules["train"] == rules["evaluate"] == TINY_CELLS and rules["all rule types"] > 2 * TINY_CELLS
    assert timing["wall_share"].iloc[:-1].sum() == pytest.approx(1.0)
    assert timing.set_index("rule").loc["train", "startup_recorded"] == TINY_CELLS
    headline = (finished / "results/test/tables/headline.md").read_text()
    assert "reproduce" in headline and "seeds" in headline


@pytest.mark.slow
def test_run_files_record_provenance(finished: Path) -> None:
    run = finished / "results/digits/runs/uncond/eps/elbo/learned/seed1"
    for name in ("model.pt", "train_log.csv", "samples.png", "samples.npz", "nll.json",
                 "fid.json", "metrics.json"):
        assert (run / name).is_file(), name
    assert not (run / "state.pt").exists()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["seed"] == 1 and metrics["config"]["schedule"] == "learned"
    assert {"git", "packages", "python"} <= set(metrics["provenance"])


@pytest.fixture(scope="module")
def finished_axes(tmp_path_factory) -> Path:
    """The tiny grid with every further axis: config/test.yaml + config/test_axes.yaml."""
    work = copy_workflow(tmp_path_factory.mktemp("axes"))
    result = snakemake(work, "--cores", "2", "--configfile", "config/test.yaml",
                       "config/test_axes.yaml", check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    return work


AXES_SETTINGS = {f"{sampler}-8{spacing}{guidance}" for sampler in ("ancestral", "heun")
                 for spacing in ("", "-karras")
                 for guidance in ("", "-cfg-2", "-classifier-2", "-oracle-2")}


@pytest.mark.slow
def test_parameterization_sampler_and_guidance_axes_reach_the_tables(finished_axes: Path) -> None:
    every_step = pd.read_csv(finished_axes / "results/test-axes/tables/summary.csv")
    summary = every_step[every_step["train_step"] == 150]  # final weights (snapshots: below)
    models = summary.drop_duplicates(["parameterization", "seed"])
    assert len(models) == 4 and set(summary["parameterization"]) == {"eps", "x0"}
    assert (summary["conditioning"] == "class").all()
    names = {f"{r.sampler}-{r.sample_steps}" + ("" if r.sample_spacing == "time" else
                                              f"-{r.sample_spacing}")
             + ("" if r.guidance_kind == "none" else f"-{r.guidance_kind}-{r.guidance_weight:g}")
             for r in summary.itertuples()}
    assert names == AXES_SETTINGS and len(summary) == 4 * len(AXES_SETTINGS)
    assert summary["primary"].sum() == 4
    assert set(summary.loc[summary["primary"], "sampler"]) == {"ancestral"}
    assert set(summary.loc[summary["primary"], "sample_spacing"]) == {"time"}
    heun = summary[summary["sampler"] == "heun"]
    assert set(heun["nfe"]) == {17, 34}  # 2 N + 1, doubled by classifier-free guidance
    assert set(heun.loc[heun["guidance_kind"] == "oracle", "nfe"]) == {17}  # not a network
    assert summary["class_accuracy"].between(0, 1).all() and summary["fid"].gt(0).all()
    for column in ("nll_ode_bpd", "nll_ode_minus_elbo_bpd", "nll_ode_vdeq_bpd",
                   "nll_ode_vdeq_minus_elbo_bpd", "nll_cond_bpd", *KNOWN_DENSITY_COLUMNS):
        assert summary[column].notna().all(), column
    # digits-gmm: each run against the truth; the gaps add up per image, so in the means too
    gaps = summary["nll_minus_bayes_bound_bpd"] + summary["bayes_bound_minus_entropy_bpd"]
    assert (gaps - summary["nll_minus_entropy_bpd"]).abs().max() < 1e-9
    assert (summary["nll_bpd"] - summary["true_nll_bpd"] - summary["nll_minus_entropy_bpd"]
            ).abs().max() < 1e-6
    assert summary["true_entropy_bpd"].nunique() == 1
    # digits-gmm: the floor is the exact denoiser's (excess ε-error), not the memorising optimum
    assert summary["excess_eps_error_test"].notna().all() and "denoiser_gap_test" not in summary
    excess = pd.read_csv(finished_axes / "results/test-axes/tables/excess_eps_error.csv")
    assert set(excess["split"]) == {"train", "test"} and (excess["n"] == 2).all()
    assert (finished_axes / "results/test-axes/plots/excess_eps_error.png").is_file()
    assert "### Excess ε-error over the exact denoiser" in (
        finished_axes / "results/test-axes/tables/summary.md").read_text()
    # every sample set against the truth; the exact denoiser per unguided setting (snapshots too)
    for column in ("sample_nll_bpd", "sample_nll_minus_entropy_bpd", "sample_bayes_confidence",
                   "bayes_class_accuracy", "bayes_accuracy"):
        assert every_step[column].notna().all(), column
    unguided = every_step["guidance_kind"] == "none"
    assert every_step.loc[unguided, "bayes_fid"].notna().all()
    assert every_step.loc[~unguided, "bayes_fid"].isna().all()
    assert every_step.loc[unguided, "bayes_sample_nll_bpd"].notna().all()
    runs = sorted(finished_axes.glob("results/digits-gmm/runs/class/*/eps/cosine/seed0/"
                                     "metrics.json"))
    assert len(runs) == 2  # eps and x0 parameterizations
    for path in [*runs, finished_axes / "results/digits-gmm/data.json"]:
        mixture = json.loads(path.read_text())["mixture"]
        assert mixture["num_components"] == 40 and len(mixture["sha256"]) == 64, path
    # cosine spans the classifier's range; the oracle is exact at every lambda
    guided = summary["guidance_kind"].isin(["classifier", "oracle"])
    flag = summary["model_range_outside_classifier"].astype(str)
    assert flag[guided].eq("False").all() and summary.loc[~guided, flag.name].isna().all()
    sweep = pd.read_csv(finished_axes / "results/test-axes/tables/sampler_sweep.csv")
    assert set(sweep["sampler"]) == {"ancestral", "heun"} and len(sweep) == 8
    assert set(sweep["spacing"]) == {"time", "karras"}
    guidance = pd.read_csv(finished_axes / "results/test-axes/tables/guidance.csv")
    assert list(dict.fromkeys(guidance["guidance_kind"])) == ["cfg", "classifier", "oracle"]
    assert set(guidance["guidance_weight"]) == {0.0, 2.0}
    markdown = (finished_axes / "results/test-axes/tables/summary.md").read_text()
    for text in ("| parameterization / objective |", "### Samplers and steps", "### Guidance",
                 "ODE", "-log p(x | y)", "### Against the known answer", "| ODE network gap |",
                 "oracle guidance, classifier guidance with the exact p(y | z_lambda)",
                 "True-sample floor", "fresh true samples, N = 100", "FID of exact ε*",
                 "Bayes class accuracy"):
        assert text in markdown, text
    oracle = json.loads((finished_axes / "results/digits-gmm/runs/class/eps/eps/cosine/seed0/"
                         "sweep/heun-8-oracle-2/fid.json").read_text())["sampling"]
    # exact at every lambda: no classifier range
    assert oracle["classifier_lambda_range"] is None and oracle["nfe"] == 17
    # FID against fresh true samples (test_axes.yaml): the floor is 100 more, as many as the runs'
    floor = json.loads((finished_axes / "results/digits-gmm/fid/classifier/"
                        "floor-fresh2000-n100.json").read_text())  # its reference's own file
    assert floor["floor_split"] == floor["reference_split"] == "fresh"
    assert (floor["num_floor_images"], floor["num_reference"]) == (100, 2000) and floor["fid"] > 0
    assert (summary["num_fid_samples"] == 100).all()
    assert "known-answer" in (finished_axes / "results/test-axes/tables/summary.tex").read_text()
    for name in ("fid_vs_nfe", "nll_ode_vs_elbo", "fid_vs_guidance", "accuracy_vs_guidance",
                 "precision_recall_guidance", "guidance_samples"):
        png = finished_axes / f"results/test-axes/plots/{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


AXES_MODELS = 4  # config/test_axes.yaml: parameterizations x seeds
SNAPSHOT_STEPS = (50, 100)  # its train.snapshots below train.steps (150)


@pytest.mark.slow
def test_snapshots_reach_summary_tables_plots_and_timing(finished_axes: Path) -> None:
    """train.snapshots [50, 100, 150]: every model is also evaluated after 50 and 100 steps (its
    primary setting, ELBO and FID) from snapshots/step<k>.pt; summary.csv has a row per snapshot
    and a train_step column; ranking stability, learning curves, claims per budget and the
    timing of the snapshot jobs follow."""
    tables, plots = (finished_axes / f"results/test-axes/{name}" for name in ("tables", "plots"))
    summary = pd.read_csv(tables / "summary.csv")
    early = summary[summary["train_step"] < 150]
    assert sorted(early["train_step"].value_counts().items()) == [
        (step, AXES_MODELS) for step in SNAPSHOT_STEPS]
    assert early["primary"].all() and set(early["sampler"]) == {"ancestral"}
    assert (early["guidance_kind"] == "none").all() and (summary["steps"] == 150).all()
    assert early["fid"].gt(0).all() and early["nll_bpd"].gt(0).all()
    assert early["nll_ode_bpd"].isna().all() and early["class_accuracy"].between(0, 1).all()
    final = summary[summary["train_step"] == 150]
    assert len(final) == AXES_MODELS * len(AXES_SETTINGS) and final["nll_ode_bpd"].notna().any()
    for run in finished_axes.glob("results/digits/runs/*/*/*/*/seed*"):
        assert sorted(p.name for p in (run / "snapshots").glob("*.pt")) == [
            "step100.pt", "step50.pt"]  # 150 is model.pt
        for step in SNAPSHOT_STEPS:
            metrics = json.loads((run / f"snapshots/step{step}/metrics.json").read_text())
            assert metrics["train_step"] == step and metrics["steps"] == 150
            assert metrics["sources"]["snapshot"].endswith(f"snapshots/step{step}.pt")
            assert [e["primary"] for e in metrics["evaluations"]] == [True]
        assert json.loads((run / "metrics.json").read_text())["train_step"] == 150
    stability = pd.read_csv(tables / "ranking_stability.csv")
    assert set(stability["metric"]) == {"fid", "nll_bpd"}
    assert sorted(set(stability["train_step"])) == [*SNAPSHOT_STEPS, 150]
    assert (stability.loc[stability["train_step"] == 150, "kendall_tau"] == 1).all()
    assert "# Ranking stability across training budgets" in (
        tables / "ranking_stability.md").read_text()
    claims = pd.read_csv(tables / "claims.csv")
    assert sorted(set(claims["train_step"])) == [*SNAPSHOT_STEPS, 150]
    for name in ("learning_curve_fid", "learning_curve_nll"):
        assert (plots / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    timing = pd.read_csv(tables / "timing.csv").set_index("rule")
    # fused evaluation: each run's evaluate job evaluated its snapshots (one process per run)
    assert "evaluate_snapshot" not in timing.index
    assert timing.loc["evaluate", "jobs"] == timing.loc["evaluate", "startup_recorded"] == (
        AXES_MODELS)
    assert "also evaluated after 50/100 steps" in (tables / "headline.md").read_text()


@pytest.mark.slow
def test_axes_report_has_every_new_table_and_plot(finished_axes: Path) -> None:
    result = snakemake(finished_axes, "--configfile", "config/test.yaml", "config/test_axes.yaml",
                       "--report", "results/test-axes/report.html", check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    html = (finished_axes / "results/test-axes/report.html").read_text(errors="replace")
    for name in ("sampler_sweep.csv", "guidance.csv", "fid_vs_nfe.png", "nll_ode_vs_elbo.png",
                 "fid_vs_guidance.png", "accuracy_vs_guidance.png",
                 "precision_recall_guidance.png", "guidance_samples.png",
                 "ranking_stability.csv", "learning_curve_fid.png", "learning_curve_nll.png",
                 "excess_eps_error.csv", "excess_eps_error.png"):
        assert name in html, name
    assert "true entropy" in html and "bayes_bound_bpd" in html  # digits-gmm's captions


@pytest.mark.slow
def test_changing_sampler_or_guidance_settings_retrains_nothing(finished_axes: Path) -> None:
    """The sampler and guidance axes reuse the trained models: adding settings plans only
    evaluation jobs (the per-model evaluate job, tables), never training, and no snapshot's
    evaluation (they use the primary setting only)."""
    result = snakemake(finished_axes, "--cores", "2", "--configfile", "config/test.yaml",
                       "config/test_axes.yaml", "--config",
                       "sample={'num_samples':100,'methods':['ancestral','heun','ddim'],"
                       "'steps':[8,4],'batch_size':100}",
                       "guidance={'kinds':['cfg','classifier','oracle'],'weights':[0,1,2],"
                       "'classifier':{'steps':200}}", "-n")
    assert result.returncode == 0, result.stderr[-3000:]
    planned = {line.split()[0] for line in result.stdout.splitlines()
               if line and line.split()[0] in ("train", "noisy_classifier", "sweep", "evaluate")}
    assert planned == {"evaluate"}, result.stdout[-3000:]


@pytest.mark.slow
def test_adding_a_snapshot_step_retrains_and_a_sample_count_does_not(finished_axes: Path) -> None:
    """A new snapshot step changes the cells' run configs: every model retrains (and so every
    evaluation, whose fused job evaluates the snapshots too, reruns); the number of samples,
    which the snapshot evaluations share, reruns the evaluations only."""
    config = ["--configfile", "config/test.yaml", "config/test_axes.yaml", "--config"]
    step = snakemake(finished_axes, "-n", "--cores", "2", *config,
                     "train={'snapshots':[50,100,120,150]}")
    assert _job_counts(step.stdout) == {
        "train": AXES_MODELS, "evaluate": AXES_MODELS, "aggregate": 1, "plots": 1, "timing": 1,
        "all": 1}, step.stdout[-3000:]
    samples = snakemake(finished_axes, "-n", "--cores", "2", *config,
                        "sample={'num_samples':50,'methods':['ancestral','heun'],'steps':[8],"
                        "'batch_size':100}")
    assert _job_counts(samples.stdout) == {  # test_axes.yaml's fresh FID reference: its floor
        "evaluate": AXES_MODELS, "fid_floor": 1,  # scores as many fresh true samples as the runs' samples
        "aggregate": 1, "plots": 1, "timing": 1, "all": 1}, samples.stdout[-3000:]


@pytest.mark.slow
def test_adding_a_seed_reruns_only_the_new_cells(finished: Path) -> None:
    models = sorted(finished.glob("results/digits/runs/*/*/*/*/seed*/model.pt"))
    before = {p: p.stat().st_mtime_ns for p in models}
    result = snakemake(finished, "--cores", "2", "--configfile", "config/test.yaml",
                       "--config", "seeds=[0,1,2]", "-n")
    planned = {line.split()[-1] for line in result.stdout.splitlines() if line.startswith("train ")}
    assert planned == {"4"}, result.stdout[-3000:]  # the job-stats rows: 4 new train jobs
    assert {p: p.stat().st_mtime_ns for p in models} == before


@pytest.mark.slow
def test_html_report(finished: Path) -> None:
    result = snakemake(finished, "--configfile", "config/test.yaml", "--report",
                       "results/test/report.html", check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    html = (finished / "results/test/report.html").read_text(errors="replace")
    for name in [*(f"{plot}.png" for plot in PLOT_NAMES), "summary.csv", "significance.csv",
                 "claims.csv", "denoiser_floor.csv", "timing.csv", "timing.png"]:
        assert name in html, name  # every plot and table of the report, by name
    assert "What the" in html and "grid found" in html  # the landing page leads with the headline
    for run in finished.glob("results/digits/runs/*/*/*/*/seed*"):  # each run's samples and log
        cell = "/".join(run.relative_to(finished).parts)
        assert f"{cell}/samples.png" in html and f"{cell}/train_log.csv" in html, cell


BENCHMARK_COLUMNS = ["s", "h:m:s", "max_rss", "max_vms", "max_uss", "max_pss", "io_in", "io_out",
                     "mean_load", "cpu_time"]  # Snakemake's benchmark file


@pytest.mark.slow
def test_every_job_wrote_its_benchmark(finished: Path) -> None:
    """results/benchmarks/<dataset>/<rule>/<run or job name>.tsv for every job but the local
    ones (aggregate, plots): wall seconds, CPU seconds and memory of the job's processes."""
    root = finished / "results/benchmarks/digits"
    written = {str(p.relative_to(root)) for p in root.rglob("*.tsv")}
    runs = {p.parent.relative_to(finished / "results/digits/runs") for p in
            finished.glob("results/digits/runs/*/*/*/*/seed*/model.pt")}
    names = {"-".join(run.parts[:-1]) + f"-{run.parts[-1]}" for run in runs}
    assert len(names) == TINY_CELLS
    assert written == {"prepare_data/data.tsv", "fid_classifier/classifier.tsv",
                       "fid_reference/classifier.tsv", "fid_floor/classifier.tsv",
                       *(f"{rule}/{name}.tsv" for rule in ("train", "evaluate") for name in names)}
    for path in root.rglob("*.tsv"):
        table = pd.read_csv(path, sep="\t")
        assert list(table.columns) == BENCHMARK_COLUMNS and len(table) == 1, path
        assert table["s"].iloc[0] > 0, path


def _dry_run_jobs(output: str) -> list[tuple[str, dict[str, str]]]:
    """``(rule, {"output": ..., "log": ..., "benchmark": ..., "input": ...})`` of every job of
    a dry run's output."""
    jobs = re.findall(r"^(?:local)?rule (\w+):\n(.*?)(?=^\S|\Z)", output, re.M | re.S)
    return [(rule, dict(re.findall(r"^\s+(input|output|log|benchmark): (.*)$", body, re.M)))
            for rule, body in jobs]


def _job_counts(output: str) -> dict[str, int]:
    """The first "Job stats" table of Snakemake's output as {rule: count} (no total)."""
    table = output.split("Job stats:", 1)[1].split("total", 1)[0]
    return {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", table, re.M)}


LOCAL_RULES = {"aggregate", "plots", "collect", "timing", "all"}
PER_MODEL_RULES = {"train", "evaluate", "sample", "nll", "fid", "sweep", "evaluate_snapshot"}


@pytest.mark.parametrize("fused", [True, False])
def test_benchmarks_name_every_job_of_the_grid(tmp_path: Path, fused: bool) -> None:
    """BENCHMARKS (common.smk) lists one benchmark file per job the grid runs (local rules
    aside), each at results/benchmarks/<dataset>/<rule>/<run or job name>.tsv; a rule that takes
    them as input (as the aggregate rule will) plans exactly the grid's jobs."""
    work = copy_workflow(tmp_path)
    (work / "benchmarks.smk").write_text(
        'include: "Snakefile"\n\n\nrule benchmarks:\n    input:\n        BENCHMARKS,\n')
    config = ["--configfile", "config/test.yaml", "config/test_axes.yaml",
              "--config", f"evaluation={{'fused':{fused}}}"]
    grid = snakemake(work, "-n", "--cores", "1", *config).stdout
    listed = snakemake(work, "-n", "--cores", "1", "-s", "benchmarks.smk", "benchmarks",
                       *config).stdout
    jobs = [(rule, files) for rule, files in _dry_run_jobs(grid) if rule not in LOCAL_RULES]
    assert {rule for rule, _ in jobs} == {  # test_axes.yaml has snapshots: split evaluation
        "prepare_data", "fid_classifier", "fid_reference", "fid_floor", "noisy_classifier",
        "train",  # evaluates each in an evaluate_snapshot job, fused in the run's evaluate job
        *(["evaluate"] if fused else ["sample", "nll", "fid", "sweep", "evaluate_snapshot"])}
    for rule, files in jobs:
        assert files["benchmark"].startswith(f"results/benchmarks/digits-gmm/{rule}/"), files
        if rule in PER_MODEL_RULES:  # named as the log: the run's name
            assert Path(files["benchmark"]).stem == Path(files["log"]).stem, files
    benchmarks = dict(_dry_run_jobs(listed))["benchmarks"]["input"].split(", ")
    assert sorted(benchmarks) == sorted(files["benchmark"] for _, files in jobs)
    counts = _job_counts(listed)
    assert counts.pop("benchmarks") == 1
    assert counts == {rule: n for rule, n in _job_counts(grid).items() if rule not in LOCAL_RULES}


@pytest.fixture(scope="module", params=[True, False], ids=["fused", "split"])
def touched(request, tmp_path_factory) -> tuple[Path, list[str]]:
    """A copy of the workflow in which every job of the tiny grid (one seed) looks done: empty
    output and benchmark files, recorded with their params by `snakemake --touch`, so dry runs
    show what a changed setting reruns without running any job."""
    work = copy_workflow(tmp_path_factory.mktemp("touched"))
    config = ["--configfile", "config/test.yaml", "--config", "seeds=[0]",
              f"evaluation={{'fused':{request.param}}}"]
    for _, files in _dry_run_jobs(snakemake(work, "-n", "--cores", "1", *config).stdout):
        for path in [*files.get("output", "").split(", "), files.get("benchmark", "")]:
            if path:
                (work / path).parent.mkdir(parents=True, exist_ok=True)
                (work / path).touch()
    snakemake(work, "--touch", "--forceall", "--cores", "1", *config)
    assert "Nothing to be done" in snakemake(work, "-n", "--cores", "1", *config).stdout
    return work, config


DOWNSTREAM = {"aggregate": 1, "plots": 1, "timing": 1, "all": 1}
SPEC_CHANGES = {  # --config item -> the jobs planned (4 cells), fused / split evaluation
    "fid={'kid_subset_size':16}": ({"evaluate": 4, "fid_floor": 1},
                                   {"fid": 4, "fid_floor": 1, "collect": 4}),
    "nll={'num_time_samples':8}": ({"evaluate": 4}, {"nll": 4, "collect": 4}),
    "sample={'num_samples':32}": ({"evaluate": 4}, {"sample": 4, "fid": 4, "collect": 4}),
    "fid={'batch_size':128}": ({"fid_reference": 1, "fid_floor": 1, "evaluate": 4},
                               {"fid_reference": 1, "fid_floor": 1, "fid": 4, "collect": 4}),
    "evaluation={'denoiser_floor':False}": ({"evaluate": 4}, {"nll": 4, "collect": 4}),
    # a setting the grid gains: new outputs without recorded params, requested by aggregate
    "sample={'methods':['ancestral','ddim']}": ({"evaluate": 4}, {"sweep": 4, "collect": 4}),
}


@pytest.mark.slow
@pytest.mark.parametrize("change", sorted(SPEC_CHANGES))
def test_a_changed_setting_reruns_exactly_the_jobs_whose_spec_changed(
        touched: tuple[Path, list[str]], change: str) -> None:
    """Snakemake's params trigger on the specs: a changed setting plans the jobs whose spec it
    changes (and what reads their outputs), never training or the other evaluation jobs."""
    work, config = touched
    fused = "evaluation={'fused':True}" in config
    expected = {**SPEC_CHANGES[change][0 if fused else 1], **DOWNSTREAM}
    if change.startswith("evaluation="):  # keeps the fused/split choice of the fixture
        change = change[:-1] + f",'fused':{fused}}}"
    result = snakemake(work, "-n", "--cores", "1", *config, change)
    assert _job_counts(result.stdout) == expected, result.stdout[-3000:]


@pytest.mark.slow
def test_resources_and_unused_settings_rerun_nothing(touched: tuple[Path, list[str]]) -> None:
    """Settings no job uses here (resources, the ODE's tolerances while it is off, Inception
    weights with the classifier extractor) plan nothing."""
    work, config = touched
    (work / "unused.yaml").write_text(  # a file: --config cannot type resources' values
        "resources: {evaluate: {mem_mb: 100}, fid: {runtime: 5}}\n"
        "nll: {ode: {rtol: 0.001}}\nfid: {feature_extractor_weights_path: w.pth}\n")
    result = snakemake(work, "-n", "--cores", "1", *config[:2], "unused.yaml", *config[2:])
    assert "Nothing to be done" in result.stdout, result.stdout[-3000:]


def _planned_outputs(work: Path, *args: str) -> set[str]:
    """The files a dry run of ``snakemake *args`` would write."""
    result = snakemake(work, "-n", "--cores", "1", *args)
    return {path for line in re.findall(r"output: (.*)", result.stdout) for path in line.split(", ")}


def test_grids_with_other_fid_references_keep_their_own_reference_and_floor(
        workdir: Path) -> None:
    """The train split keeps reference.json and floor.json; a test-split or fresh reference (and
    the fresh floor's N) gets its own files, so such grids never rerun each other's jobs."""
    gmm = ["--config", "dataset=digits-gmm"]
    plain, fresh, fewer = _at_once([  # three dry runs at once
        lambda: _planned_outputs(workdir, *gmm),
        lambda: _planned_outputs(workdir, *gmm[:1], "dataset=digits-gmm",
                                 "fid={'reference_split':'fresh','fresh_reference_size':2000}"),
        lambda: _planned_outputs(workdir, *gmm[:1], "dataset=digits-gmm",
                                 "sample={'num_samples':500}",
                                 "fid={'reference_split':'fresh','fresh_reference_size':2000}")])
    root = "results/digits-gmm/fid/classifier"
    assert {f"{root}/reference.json", f"{root}/floor.json"} <= plain
    assert {f"{root}/reference-fresh2000.json", f"{root}/floor-fresh2000-n1000.json"} <= fresh
    assert f"{root}/floor-fresh2000-n500.json" in fewer
    ours = {p for p in fresh if p.startswith(f"{root}/")}  # the classifier itself is shared
    assert ours and not ours & {p for p in plain if p.startswith(f"{root}/")}


def test_grids_of_other_settings_never_overwrite_each_other(workdir: Path) -> None:
    """The default grid writes results/default/; the README's example of a changed grid writes
    results/grid-<hash>/ (its own tables, plots and report) and shares the trained runs."""
    default = _planned_outputs(workdir)
    assert "results/default/tables/summary.csv" in default
    example = _planned_outputs(workdir, "--config", "objectives=[eps,v]", "seeds=[0]")
    tables = {p for p in example if "/tables/" in p}
    assert tables and not tables & default
    names = {p.split("/")[1] for p in tables}
    assert len(names) == 1 and names.pop().startswith("grid-")
    shared = "results/digits/runs/uncond/eps/eps/linear/seed0/model.pt"
    assert shared in default and shared in example  # the same run serves both grids
    again = _planned_outputs(workdir, "--config", "seeds=[0]", "objectives=[eps,v]")
    assert {p for p in again if "/tables/" in p} == tables  # a stable name


def test_the_default_grid_plans_no_snapshot_job(workdir: Path) -> None:
    """Without train.snapshots: no snapshot evaluation, no ranking-stability table or learning
    curve, and no train job's run config (its params, printed in its command) names snapshots;
    config/budget.yaml plans one evaluate job per run, which evaluates its snapshots below 1200
    steps (with split evaluation: one evaluate_snapshot job per run and step)."""
    default = snakemake(workdir, "-n", "-p", "--cores", "1").stdout
    assert "evaluate_snapshot" not in default and "--train-step" not in default
    assert "--snapshots-out-dir" not in default and '"snapshots"' not in default
    assert "ranking_stability" not in default and "learning_curve" not in default
    commands = [line for line in default.splitlines() if "python -m vdm train " in line]
    assert len(commands) == 36 and not any("snapshots" in line for line in commands)
    budget = snakemake(workdir, "-n", "-p", "--cores", "1", "--configfile",
                       "config/budget.yaml").stdout
    counts = _job_counts(budget)
    assert counts["train"] == counts["evaluate"] == 18 and "evaluate_snapshot" not in counts
    evaluations = [line for line in budget.splitlines() if "python -m vdm evaluate " in line]
    assert len(evaluations) == 18 and all(
        '"snapshots": [150, 300, 600]' in line and "--snapshots-out-dir" in line
        for line in evaluations)
    split = _job_counts(snakemake(workdir, "-n", "--cores", "1", "--configfile",
                                  "config/budget.yaml", "--config",
                                  "evaluation={'fused':False}").stdout)
    assert split["evaluate_snapshot"] == 3 * 18 and "evaluate" not in split


@pytest.mark.parametrize("config", [[], ["--configfile", "config/budget.yaml"]],
                         ids=["default", "budget"])  # budget: with the evaluate_snapshot rule
def test_lint_is_clean(workdir: Path, config: list[str]) -> None:
    result = snakemake(workdir, "--lint", *config, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


BAD_CONFIGS = [  # (YAML of the config file, what the one-line error must say)
    ("objectives: [eps, score]",
     "invalid config key 'objectives.1': 'score' is not one of ['eps', 'x0', 'v', 'elbo'"),
    ("schedules: [cosine, quadratic]",
     "invalid config key 'schedules.1': 'quadratic' is not one of ['linear', 'cosine', 'sigmoid', "
     "'flow', 'learned']"),
    ("dataset: imagenet", "invalid config key 'dataset': 'imagenet' is not one of ['digits', "),
    ("train: {learning_rat: 0.001}",
     "invalid config key 'train.learning_rat': unknown key; allowed keys of 'train': adam_beta2"),
    ("logsnr_max: high", "invalid config key 'logsnr_max': 'high' is not of type 'number'"),
    ("train: {steps: 0}", "invalid config key 'train.steps': 0 is less than the minimum of 1"),
    ("train: {steps: -5}", "invalid config key 'train.steps': -5 is less than the minimum of 1"),
    ("seeds: []", "invalid config key 'seeds': [] should be non-empty"),
    ("seeds: [0, 1.5]", "invalid config key 'seeds.1': 1.5 is not of type 'integer'"),
    ("nll: {num_time_samples: 1}",
     "invalid config key 'nll.num_time_samples': 1 is less than the minimum of 2"),
    ("parameterizations: [eps, mu]",
     "invalid config key 'parameterizations.1': 'mu' is not one of ['eps', 'x0', 'v', 'score']"),
    ("parameterizations: []", "invalid config key 'parameterizations': [] should be non-empty"),
    ("sample: {methods: [euler]}", "invalid config key 'sample.methods.0': 'euler' is not one of"),
    ("sample: {steps: [25, 0]}", "invalid config key 'sample.steps.1': 0 is less than the minimum of 1"),
    ("sample: {methods: []}", "invalid config key 'sample.methods': [] should be non-empty"),
    ("guidance: {kinds: [cfg]}", "invalid config key 'guidance.kinds': ['cfg'] needs "
     "class-conditional models (conditioning.enabled: true)"),
    ("conditioning: {enabled: true}\nguidance: {kinds: [cfg], weights: [0, -1]}",
     "invalid config key 'guidance.weights.1': -1 is less than the minimum of 0"),
    ("guidance: {weights: [0, 2]}", "invalid config key 'guidance.weights': [0, 2] has weights > 0 "
     "but guidance.kinds is empty"),
    ("baseline: {objective: eps}", "invalid config key 'baseline': 'schedule' is a required property"),
    ("train: {snapshots: [100, 400]}", "invalid config key 'train.snapshots': step 400 is above "
     "train.steps (300); a snapshot must be a step from 1 to train.steps"),
    ("train: {snapshots: [100, 100]}",
     "invalid config key 'train.snapshots': [100, 100] has non-unique elements"),
    ("train: {snapshots: [0, 100]}",
     "invalid config key 'train.snapshots.0': 0 is less than the minimum of 1"),
]


@pytest.fixture(scope="module")
def bad_config_runs(tmp_path_factory) -> dict[str, tuple[Path, subprocess.CompletedProcess]]:
    """``snakemake --cores 1 --configfile bad.yaml`` for each of BAD_CONFIGS, each in its own
    copy of the workflow (run at once): {YAML text: (the copy, the finished process)}."""
    works = []
    for yaml_text, _ in BAD_CONFIGS:
        work = copy_workflow(tmp_path_factory.mktemp("bad_config"))
        (work / "bad.yaml").write_text(yaml_text + "\n")
        works.append(work)
    results = _at_once([lambda work=work: snakemake(work, "--cores", "1", "--configfile",
                                                    "bad.yaml", check=False) for work in works])
    runs = {yaml_text: (work, result) for (yaml_text, _), work, result in
            zip(BAD_CONFIGS, works, results, strict=True)}
    assert len(runs) == len(BAD_CONFIGS)  # one per YAML text
    return runs


@pytest.mark.parametrize(("yaml_text", "message"), BAD_CONFIGS)
def test_bad_config_fails_before_any_job(bad_config_runs, yaml_text: str, message: str) -> None:
    work, result = bad_config_runs[yaml_text]
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("Invalid config: ")]
    assert errors == ["Invalid config: " + errors[0].removeprefix("Invalid config: ")]
    assert message in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr
    assert not (work / "results").exists()  # no job ran


def test_command_line_values_are_typed_by_the_schema(tmp_path: Path) -> None:
    work = copy_workflow(tmp_path)
    result = snakemake(work, "--cores", "1", "--config", "train={'steps':0}", check=False)
    assert "Invalid config: invalid config key 'train.steps': 0 is less than the minimum of 1" in (
        result.stderr)


def test_default_profile_is_found(workdir: Path) -> None:
    result = snakemake(workdir, "-n", "--configfile", "config/test.yaml")
    assert "workflow specific profile profiles/default" in result.stdout + result.stderr
    assert (workdir / "profiles/default/profile.yaml").resolve() == (
        workdir / "workflow/profiles/default/profile.yaml").resolve()


TIMING_COLUMNS = ("train_seconds",)
RESUMED_SEEDS = [0]  # the killed grid: config/test.yaml's cells of these seeds


@pytest.mark.slow
@pytest.mark.parametrize("moment", [
    "training",
    # ~100 s each, so outside the default run (pytest -m extended); the default run covers resume
    # at the training moment, and test_fid / test_reliability cover the half-written evaluation
    # files and truncated reference caches these two moments leave, one unit at a time.
    pytest.param("evaluation", marks=pytest.mark.extended),
    pytest.param("reference", marks=pytest.mark.extended),
])
def test_sigkilled_grid_resumes_to_identical_numbers(finished: Path, tmp_path: Path,
                                                     moment: str) -> None:
    """kill -9 the whole Snakemake process group while a model trains past its first checkpoint,
    while a model's evaluation has written its samples but not yet its FID, or while the FID
    reference statistics are being cached (their files are then truncated, as a kill during
    their write would leave them); `snakemake --unlock` and the same command then finish the
    grid with the numbers of the uninterrupted run (`finished`): a second run of the same cells
    also shows that two runs with the same seeds give identical summary.csv numbers. The killed
    grid is the tiny grid's seed 0 (RESUMED_SEEDS: half the jobs; the kill still lands while
    its models train), compared with exactly those rows of `finished`, the two-seed grid."""
    work = copy_workflow(tmp_path)
    runs = "results/digits/runs/*/*/*/*/seed*"
    cache = "results/digits/fid/classifier/cache"
    trigger = {"training": f"{runs}/state.pt", "evaluation": f"{runs}/samples.npz",
               "reference": f"{cache}/*.pt"}[moment]
    grid = ["--configfile", "config/test.yaml", "--config", f"seeds={RESUMED_SEEDS}"]
    command = [sys.executable, "-m", "snakemake", "--cores", "2", *grid]
    process = subprocess.Popen(command, cwd=work, env=venv_environment(), start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 900
    while not list(work.glob(trigger)):
        assert process.poll() is None, f"the grid ended before any {trigger} was written"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    interrupted = [p.parent for p in work.glob(f"{runs}/state.pt")]
    half_evaluated = [p.parent for p in work.glob(f"{runs}/samples.npz")
                      if not (p.parent / "fid.json").exists()]
    cached = sorted(work.glob(f"{cache}/*.pt"))
    for path in cached if moment == "reference" else []:  # a write cut short
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert {"training": interrupted, "evaluation": half_evaluated, "reference": cached}[moment]
    assert not (work / "results/test/tables/summary.csv").exists()
    snakemake(work, "--unlock")
    result = snakemake(work, "--cores", "2", *grid, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    for run in interrupted:  # resumed from the (last) checkpoint that survived the kill
        resumed = json.loads((run / "train.json").read_text())["resumed_from"]
        assert len(resumed) == 1 and resumed[0] % 10 == 0 and 10 <= resumed[0] < 150, (run, resumed)
    if moment == "reference":  # the truncated cache files were set aside and recomputed
        assert {p.name + ".bad" for p in cached} <= {p.name for p in work.glob(f"{cache}/*.bad")}
    before = pd.read_csv(finished / "results/test/tables/summary.csv")
    after = pd.read_csv(work / "results/test/tables/summary.csv")
    assert sorted(set(after["seed"])) == RESUMED_SEEDS
    assert len(after) == TINY_CELLS // 2 * len(RESUMED_SEEDS)  # config/test.yaml has 2 seeds
    before = before[before["seed"].isin(RESUMED_SEEDS)].reset_index(drop=True)  # the same cells
    deterministic = [c for c in SUMMARY_COLUMNS if c in before and c not in TIMING_COLUMNS]
    assert list(after.columns) == list(before.columns)
    before, after = before[deterministic], after[deterministic]
    pd.testing.assert_frame_equal(before, after, check_exact=True)
