"""End to end: the real Snakemake workflow on the tiny config, in a temporary copy of the repo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from workflow_copy import copy_workflow, venv_environment

TINY_CELLS = 2 * 2 * 2  # config/test.yaml: objectives x schedules x seeds


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = venv_environment()
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir, env=env,
                          capture_output=True, text=True, check=check, timeout=1200)


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
    summary = pd.read_csv(finished / "results/tables/summary.csv")
    assert len(summary) == TINY_CELLS
    for column in ("objective", "schedule", "seed", "fid", "kid", "nll_bpd", "nll_bpd_se",
                   "train_seconds", "steps", "feature_extractor"):
        assert column in summary.columns, column
    assert set(summary["objective"]) == {"eps", "elbo"}
    assert set(summary["schedule"]) == {"linear", "learned"}
    assert (summary["steps"] == 20).all()
    assert summary["nll_bpd"].between(0, 20).all() and summary["fid"].notna().all()
    assert (summary["feature_extractor"] == "classifier-digits").all()


@pytest.mark.slow
def test_formatted_tables_and_plots(finished: Path) -> None:
    markdown = (finished / "results/tables/summary.md").read_text()
    assert "±" in markdown and "**" in markdown and "classifier-digits" in markdown
    assert "\\textbf" in (finished / "results/tables/summary.tex").read_text()
    significance = pd.read_csv(finished / "results/tables/significance.csv")
    assert {"p", "diff"} <= set(significance.columns)
    for name in ("fid_heatmap", "nll_heatmap", "fid_bars", "nll_bars", "fid_vs_nll",
                 "loss_curves", "samples_montage"):
        png = finished / f"results/plots/{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


@pytest.mark.slow
def test_run_files_record_provenance(finished: Path) -> None:
    run = finished / "results/digits/runs/elbo/learned/seed1"
    for name in ("model.pt", "train_log.csv", "samples.png", "samples.npz", "nll.json",
                 "fid.json", "metrics.json"):
        assert (run / name).is_file(), name
    assert not (run / "state.pt").exists()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["seed"] == 1 and metrics["config"]["schedule"] == "learned"
    assert {"git", "packages", "python"} <= set(metrics["provenance"])


@pytest.mark.slow
def test_adding_a_seed_reruns_only_the_new_cells(finished: Path) -> None:
    models = sorted(finished.glob("results/digits/runs/*/*/seed*/model.pt"))
    before = {p: p.stat().st_mtime_ns for p in models}
    result = snakemake(finished, "--cores", "2", "--configfile", "config/test.yaml",
                       "--config", "seeds=[0,1,2]", "-n")
    planned = {line.split()[-1] for line in result.stdout.splitlines() if line.startswith("train ")}
    assert planned == {"4"}, result.stdout[-3000:]  # the job-stats rows: 4 new train jobs
    assert {p: p.stat().st_mtime_ns for p in models} == before


@pytest.mark.slow
def test_html_report(finished: Path) -> None:
    result = snakemake(finished, "--configfile", "config/test.yaml", "--report",
                       "results/report.html", check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    html = (finished / "results/report.html").read_text(errors="replace")
    assert len(html) > 100_000 and "fid_heatmap" in html


def test_lint_is_clean(workdir: Path) -> None:
    result = snakemake(workdir, "--lint", check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.parametrize(("override", "message"), [
    ("objectives=[eps,score]", "invalid config key 'objectives.1': 'score' is not one of"),
    ("train={'stepz':3}", "invalid config key 'train': Additional properties are not allowed"),
    ("logsnr_max=high", "invalid config key 'logsnr_max': 'high' is not of type 'number'"),
])
def test_bad_config_fails_before_any_job(tmp_path: Path, override: str, message: str) -> None:
    work = copy_workflow(tmp_path)
    result = snakemake(work, "--cores", "1", "--config", override, check=False)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert not (work / "results").exists()  # no job ran
