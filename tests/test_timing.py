"""vdm.reporting.timing on benchmark files written by Snakemake's own writer, with known content:
every total, share and start-up share has a closed form."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from vdm.reporting import timing
from vdm.reporting.plot_style import fit_titles, title_overflow

benchmark = pytest.importorskip("snakemake.benchmark")

#: rule -> one entry per job: (wall s of each run, CPU s or None = not sampled, peak RSS MiB)
JOBS = {
    "train": [([10.0], 8.0, 100.0), ([20.0], 16.0, 200.0), ([30.0], 24.0, 300.0)],
    "evaluate": [([5.0], 4.0, 50.0), ([15.0], None, None)],
    "aggregate": [([1.0, 1.0], 0.5, 20.0)],  # benchmark: repeat(..., 2): two runs, one job
}
TRAIN_STARTUPS = [2.0, 2.5, 3.0]
EVALUATE_STARTUP = 1.0  # the first evaluate job only; the second wrote no start-up


def write_benchmark(path: Path, walls: list[float], cpu: float | None, rss: float | None) -> Path:
    records = []
    for wall in walls:
        record = benchmark.BenchmarkRecord(running_time=wall, max_rss=rss, max_vms=rss,
                                           max_uss=rss, max_pss=rss, io_in=0.0, io_out=0.0,
                                           cpu_time=cpu)
        record.data_collected = cpu is not None  # False: Snakemake writes NA
        records.append(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    benchmark.write_benchmark_records(records, str(path), False)
    return path


def write_result(path: Path, pid: int, startup: float | None, command: str) -> Path:
    provenance = {"hostname": "node1", "git": {"commit": "abc"}}
    if startup is not None:
        provenance["process"] = {"command": command, "pid": pid, "created": 1e9 + pid,
                                 "startup_seconds": startup}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"provenance": provenance}))
    return path


@pytest.fixture
def grid(tmp_path: Path) -> tuple[list[Path], dict[str, list[Path]]]:
    files = [write_benchmark(tmp_path / "benchmarks" / "digits" / rule / f"job{i}.tsv", *job)
             for rule, jobs in JOBS.items() for i, job in enumerate(jobs)]
    results: dict[str, list[Path]] = {"train": [], "evaluate": []}
    for i, startup in enumerate(TRAIN_STARTUPS):
        train = write_result(tmp_path / f"run{i}" / "train.json", 100 + i, startup, "train")
        metrics = tmp_path / f"run{i}" / "metrics.json"  # copies train.json's provenance
        metrics.write_text(train.read_text())
        results["train"] += [train, metrics]
    for name in ("nll.json", "fid.json"):  # both written by the first evaluate process
        results["evaluate"].append(write_result(tmp_path / "run0" / name, 200, EVALUATE_STARTUP,
                                                "evaluate"))
    results["evaluate"].append(write_result(tmp_path / "run1" / "nll.json", 201, None, "evaluate"))
    return files, results


def test_benchmarks_are_read_per_run_with_rule_and_job(grid) -> None:
    files, _ = grid
    runs = timing.read_benchmarks(files)
    assert len(runs) == 7 and runs["rule"].tolist().count("aggregate") == 2
    assert runs.loc[runs["rule"] == "aggregate", "repeat"].tolist() == [0, 1]
    assert set(runs["dataset"]) == {"digits"} and runs["job"].iloc[0] == "job0"
    assert runs["cpu_s"].isna().sum() == 1 and runs["max_rss_mib"].max() == 300.0


def test_the_table_has_closed_form_totals_and_shares(grid) -> None:
    files, results = grid
    table = timing.timing_table(files, results).set_index("rule")
    total = 60.0 + 20.0 + 2.0
    assert list(table.index) == ["train", "evaluate", "aggregate", timing.ALL_RULES]
    train = table.loc["train"]
    assert (train["jobs"], train["runs"], train["wall_s"]) == (3, 3, 60.0)
    assert train["wall_share"] == pytest.approx(60.0 / total)
    assert train["wall_s_median"] == 20.0 and train["cpu_s"] == 48.0
    assert train["cpu_per_wall"] == pytest.approx(0.8) and train["peak_rss_mib"] == 300.0
    assert train["startup_recorded"] == 3  # metrics.json repeats train.json's process
    assert train["startup_s"] == pytest.approx(np.mean(TRAIN_STARTUPS) * 3)
    assert train["startup_share"] == pytest.approx(7.5 / 60.0)
    evaluate = table.loc["evaluate"]
    assert evaluate["cpu_s"] == 4.0 and evaluate["cpu_per_wall"] == pytest.approx(4.0 / 5.0)
    assert evaluate["startup_recorded"] == 1  # nll.json and fid.json: one process
    assert evaluate["startup_s"] == pytest.approx(EVALUATE_STARTUP * 2)  # mean × runs
    aggregate = table.loc["aggregate"]
    assert (aggregate["jobs"], aggregate["runs"], aggregate["wall_s"]) == (1, 2, 2.0)
    assert math.isnan(aggregate["startup_s"]) and aggregate["startup_recorded"] == 0
    grid_row = table.loc[timing.ALL_RULES]
    assert (grid_row["jobs"], grid_row["runs"], grid_row["wall_s"]) == (6, 7, total)
    assert grid_row["cpu_s"] == pytest.approx(48.0 + 4.0 + 1.0)
    assert grid_row["startup_share"] == pytest.approx((7.5 + 2.0) / total)
    assert table["wall_share"].iloc[:-1].sum() == pytest.approx(1.0)


def test_markdown_names_the_totals_and_the_rules_without_a_start_up(grid) -> None:
    files, results = grid
    text = timing.timing_markdown(timing.timing_table(files, results))
    assert "| train | 3 | 60.0 | 73.2% | 20.0 | 48.0 | 0.80 | 300 | 7.5 | 12.5% |" in text
    assert "| aggregate | 1 | 2.0 | 2.4% | 1.0 | 1.0 | 0.50 | 20 | n/a | n/a |" in text
    assert ("process start-up and imports: 9.5 s (11.6% of the summed wall time; a lower "
            "bound: aggregate recorded none)") in text


def test_jsonl_benchmarks_read_like_tsv(tmp_path: Path) -> None:
    tsv = write_benchmark(tmp_path / "a" / "train" / "j.tsv", [3.0], 2.0, 10.0)
    jsonl = write_benchmark(tmp_path / "b" / "train" / "j.jsonl", [3.0], 2.0, 10.0)
    columns = ["rule", "job", "wall_s", "cpu_s", "max_rss_mib"]
    pd.testing.assert_frame_equal(timing.read_benchmarks([tsv])[columns],
                                  timing.read_benchmarks([jsonl])[columns])


def test_bad_input_is_named_before_anything_is_read(grid, tmp_path: Path) -> None:
    files, results = grid
    with pytest.raises(FileNotFoundError, match="benchmark file not found: .*nope.tsv"):
        timing.read_benchmarks([*files, tmp_path / "nope.tsv"])
    with pytest.raises(ValueError, match="no benchmark files"):
        timing.read_benchmarks([])
    bad = tmp_path / "x" / "train" / "bad.tsv"
    bad.parent.mkdir(parents=True)
    bad.write_text("wall\n3\n")
    with pytest.raises(ValueError, match="bad.tsv: not a Snakemake benchmark file"):
        timing.read_benchmarks([bad])
    with pytest.raises(ValueError, match="rule 'trian', which has no benchmark files"):
        timing.timing_table(files, {"trian": results["train"]})
    with pytest.raises(ValueError, match="listed under rules 'train' and 'collect'"):
        timing.timing_table(files, {"train": results["train"][:1],
                                    "collect": results["train"][1:2]})


def test_write_timing_writes_table_markdown_and_a_figure_that_fits(grid, tmp_path: Path) -> None:
    files, results = grid
    paths = timing.write_timing(files, results, tmp_path / "tables", tmp_path / "plots")
    assert set(paths) == {"timing.csv", "timing.md", "timing.png"}
    table = pd.read_csv(paths["timing.csv"])
    assert list(table.columns) == timing.TABLE_COLUMNS and table["rule"].iloc[-1] == "all rule types"
    assert Image.open(paths["timing.png"]).format == "PNG"
    runs = timing.read_benchmarks(files)
    fig = timing.timing_figure(runs, timing.summarise(runs, timing.read_startups(results)))
    startup_bars = fig.axes[0].patches[:3]  # train, evaluate, aggregate: start-up first
    assert [b.get_width() for b in startup_bars] == pytest.approx([7.5, 2.0, 0.0])
    fit_titles(fig)
    assert title_overflow(fig) == []
