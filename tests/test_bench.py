"""vdm.bench: every measurement with tiny sizes, the grid accounting, and the JSON of a run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from vdm import bench
from vdm.provenance import resolve_device

TINY = bench.Sizes(train_steps=6, warmup_steps=2, repeats=2, nll_repeats=2, num_samples=40,
                   sample_repeats=1, classifier_steps=10, run_grid=False)


def _positive(value) -> bool:
    return isinstance(value, float | int) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def config() -> dict:
    return bench.load_pipeline_config()


@pytest.fixture(scope="module")
def quick_json(tmp_path_factory) -> dict:
    """One tiny end-to-end run of ``python -m vdm.bench --quick --json``."""
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    assert bench.main(["--quick", "--json", str(path)], sizes=TINY) == 0
    return json.loads(path.read_text())


def test_config_follows_config_file(config) -> None:
    assert config["model"]["channels"] == 16 and config["train"]["batch_size"] == 128
    run = bench.cell_run_config(config, "eps", "cosine", threads=1, steps=7)
    assert run.model.channel_mults == config["model"]["channel_mults"]
    assert (run.train.steps, run.train.threads, run.train.batch_size) == (7, 1, 128)
    assert run.train.lr == config["train"]["lr"]


def test_window_rate() -> None:
    stamps = [0.0, 5.0, 6.0, 7.0, 8.0]  # warm-up step 0 took 5 s
    assert bench._window_rate(stamps, batch_size=10, warmup=1) == pytest.approx(30 / 3)
    with pytest.raises(ValueError):
        bench._window_rate(stamps[:2], batch_size=10, warmup=1)


def test_quick_json_has_every_key(quick_json, config) -> None:
    expected = {"train_loop_efficiency", "train_loop_efficiency_learned", "train_images_per_s",
                "train_learned_images_per_s", "bare_images_per_s", "train_fit_images_per_s",
                "nll_seconds_per_eval", "nll_seconds_per_1000", "nll_se_bpd", "nll_se_total_bpd",
                "nll_mc_se_reported_bpd", "sample_images_per_s", "fid_seconds_cold", "fid_seconds_cached",
                "bench_wall_seconds"}
    metrics = quick_json["metrics"]
    assert set(metrics) == expected  # --quick: no grid
    for name, value in metrics.items():
        assert _positive(value), (name, value)
    assert quick_json["quick"] is True and quick_json["threads"] == 1
    assert quick_json["torch_num_threads"] == 1
    assert quick_json["device"] == str(resolve_device(config["device"]))
    assert quick_json["torch_version"] and quick_json["provenance"]["git"]
    assert set(quick_json["goals"]) == {"train_loop_efficiency", "nll_se_bpd",
                                        "nll_seconds_per_eval"}
    for name, goal in quick_json["goals"].items():
        assert isinstance(goal["met"], bool), name


def test_efficiency_is_the_ratio_of_measured_throughputs(quick_json) -> None:
    train = quick_json["train"]
    medians = {name: float(np.median([r["images_per_s"] for r in runs]))
               for name, runs in train["per_repeat"].items()}
    assert len(train["per_repeat"]["bare"]) == TINY.repeats
    assert train["bare_images_per_s"] == pytest.approx(medians["bare"])
    assert train["train_images_per_s"] == pytest.approx(medians["cosine"])
    assert train["train_loop_efficiency"] == pytest.approx(medians["cosine"] / medians["bare"])
    assert train["train_loop_efficiency_learned"] == pytest.approx(
        medians["learned"] / medians["bare"])
    for run in train["per_repeat"]["cosine"]:
        assert run["timed_steps"] == TINY.train_steps - 1 - TINY.warmup_steps
        # the whole fit() (warm-up, start and finish included) is never faster than its window
        assert run["fit_images_per_s"] < run["images_per_s"] * 1.05


def test_nll_section(quick_json, config) -> None:
    nll = quick_json["nll"]
    assert nll["num_examples"] == 300
    assert nll["num_time_samples"] == config["nll"]["num_time_samples"] == 128
    assert len(nll["per_seed_nll_bpd"]) == TINY.nll_repeats
    assert nll["nll_se_bpd"] == pytest.approx(np.std(nll["per_seed_nll_bpd"], ddof=1))
    assert nll["nll_seconds_per_1000"] == pytest.approx(nll["nll_seconds_per_eval"] / 300 * 1000)
    assert len(set(nll["per_seed_nll_bpd"])) == TINY.nll_repeats  # seeds differ


def test_sample_and_fid_sections(quick_json) -> None:
    assert quick_json["sample"]["num_samples"] == TINY.num_samples
    assert quick_json["sample"]["steps"] == 25 and quick_json["sample"]["batch_size"] == 1000
    fid = quick_json["fid"]
    assert fid["num_samples"] == TINY.num_samples and fid["num_reference"] == 1497
    assert fid["classifier_steps"] == TINY.classifier_steps
    assert math.isfinite(fid["fid"])


def test_bare_loop_measures_its_window(config) -> None:
    run = bench.cell_run_config(config, "eps", "cosine", threads=1, steps=5)
    out = bench.time_bare_loop(run, (1, 8, 8), steps=5, warmup=1)
    assert out["timed_steps"] == 3 and _positive(out["images_per_s"])


def test_parse_job_stats_and_cores() -> None:
    output = """Building DAG of jobs...
Using shell: /usr/bin/bash
Provided cores: 2
Rules claiming more threads will be scaled down.
Job stats:
job               count
--------------  -------
all                   1
train                36
total                37

Select jobs to execute...
Job stats:
job      count
-----  -------
train        1
"""
    assert bench.parse_job_stats(output) == {"all": 1, "train": 36, "total": 37}
    assert bench.parse_cores(output) == 2
    assert bench.parse_job_stats("Nothing to be done.") == {}
    assert bench.parse_cores("no cores line") is None


def test_compute_seconds_and_overhead(tmp_path) -> None:
    run = tmp_path / "digits" / "runs" / "eps" / "cosine" / "seed0"
    run.mkdir(parents=True)
    (run / "train.json").write_text(json.dumps({"wall_seconds": 10.0, "train_seconds": 9.0}))
    (run / "nll.json").write_text(json.dumps({"wall_seconds": 2.5}))
    (run / "fid.json").write_text(json.dumps({"fid": 1.0}))  # no seconds: counted 0, listed
    np.savez(run / "samples.npz", images=np.zeros((1, 1, 8, 8), np.uint8),
             meta=json.dumps({"wall_seconds": 1.5}))
    old = tmp_path / "digits" / "runs" / "eps" / "linear" / "seed0"
    old.mkdir(parents=True)
    (old / "train.json").write_text(json.dumps({"train_seconds": 4.0}))  # fallback
    out = bench.compute_seconds(tmp_path)
    assert out["seconds"] == pytest.approx(18.0)
    assert out["per_rule"]["train"] == {"files": 2, "seconds": 14.0, "fallback_train_seconds": 1,
                                        "missing": 0}
    assert out["missing"] == ["digits/runs/eps/cosine/seed0/fid.json"]
    assert bench.overhead_share(out["seconds"], wall=12.0, cores=2) == pytest.approx(0.25)


def test_copy_workflow(tmp_path) -> None:
    dest = bench.copy_workflow(tmp_path / "copy")
    assert (dest / "Snakefile").is_file() and (dest / "config" / "config.yaml").is_file()
    assert (dest / "workflow" / "rules" / "train.smk").is_file()
    assert (dest / "profiles" / "default" / "profile.yaml").is_file()  # the default profile
    assert not (dest / "results").exists()


def test_table_lists_metrics_with_units_and_goals(quick_json) -> None:
    table = bench.format_table(quick_json)
    lines = table.splitlines()
    assert lines[1].split()[:5] == ["metric", "value", "unit", "goal", "met?"]
    row = next(line for line in lines if line.startswith("train_loop_efficiency "))
    assert ">= 0.90" in row and row.split()[-1] in ("yes", "NO")
    assert any(line.startswith("fid_seconds_cold") and " s " in line for line in lines)
