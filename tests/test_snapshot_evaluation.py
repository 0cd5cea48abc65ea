"""Evaluating training snapshots (issue 20, workflow side): which steps a grid evaluates, what a
snapshot's metrics.json records (train_step, the run's state at that step), the snapshot job's
spec, and the aggregate and plots steps on a summary with several training budgets.

The Snakemake wiring (evaluate_snapshot jobs, their reruns, the tiny grid end to end) is tested in
test_pipeline.py."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from budget_summary import BUDGETS, make_budget_summary
from test_snapshots import snapshot_config

from vdm.core.config import validate_workflow_config
from vdm.core.job_specs import EvaluateSpec, evaluate_spec, grid_snapshot_steps, snapshot_evaluate_spec
from vdm.core.provenance import read_json
from vdm.pipeline.cli import main
from vdm.pipeline.evaluation_commands import snapshot_state
from vdm.pipeline.options import default_workflow_config
from vdm.pipeline.results_commands import collect_metrics
from vdm.reporting import plots
from vdm.reporting.claims_report import claims_report
from vdm.reporting.ranking_stability import ranking_stability_report
from vdm.reporting.summary_columns import SUMMARY_COLUMNS
from vdm.reporting.summary_load import load_metrics, summary_long
from vdm.reporting.table_files import write_tables
from vdm.training.snapshots import snapshot_file, snapshot_metrics
from vdm.training.trainer import LOG_COLUMNS, Trainer, load_trained_model


# --------------------------------------------------------------------------- steps and specs
def test_grid_snapshot_steps_are_the_ones_below_train_steps() -> None:
    assert grid_snapshot_steps({"steps": 300, "snapshots": [300, 50, 150]}) == [50, 150]
    assert grid_snapshot_steps({"steps": 300, "snapshots": [300]}) == []
    assert grid_snapshot_steps({"steps": 300}) == []


def test_snapshot_spec_is_the_primary_evaluation_only() -> None:
    """The final evaluation's samples, ELBO and FID settings; no sweep, ODE or denoiser floor,
    so changing those (or adding guidance weights) leaves the snapshot jobs' params alone."""
    config = json.loads(json.dumps(default_workflow_config()))
    config["sample"].update(methods=["ancestral", "ddim"], steps=[25, 10])
    config["nll"]["ode"]["enabled"] = True
    final, snapshot = evaluate_spec(config, 2), snapshot_evaluate_spec(config, 2)
    assert final.sweep and final.nll.ode is not None and final.denoiser_floor
    assert snapshot.sweep == () and snapshot.nll.ode is None and not snapshot.denoiser_floor
    assert (snapshot.seed, snapshot.sampling, snapshot.fid) == (2, final.sampling, final.fid)
    assert snapshot.nll.num_time_samples == final.nll.num_time_samples
    plain = snapshot_evaluate_spec(default_workflow_config(), 2)
    assert plain.to_json() == snapshot.to_json()
    config["sample"]["num_samples"] = 500  # what every budget's samples share
    assert snapshot_evaluate_spec(config, 2).sampling.num_samples == 500


# --------------------------------------------------------------------------- the run at a step
def _row(step: int, loss: float) -> list[float]:
    row = [0.0] * len(LOG_COLUMNS)
    row[LOG_COLUMNS.index("step")], row[LOG_COLUMNS.index("loss")] = step, loss
    return row


def test_snapshot_metrics_of_a_saved_state() -> None:
    state = {"step": 5, "seconds": 1.23456, "log_rows": [_row(2, 0.9), _row(4, 0.7)]}
    assert snapshot_metrics(state) == {"train_step": 5, "train_seconds": 1.235, "final_loss": 0.7}
    assert snapshot_metrics({**state, "log_rows": []}) == {"train_step": 5, "train_seconds": 1.235}
    with pytest.raises(ValueError, match="not a training state \\(no 'log_rows'\\)"):
        snapshot_metrics({"step": 5, "seconds": 1.0})


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-step learned-schedule run (its log-SNR end points move) logged every 2 steps, with
    snapshots after steps 5 (a file of its own) and 12 (model.pt)."""
    out = tmp_path_factory.mktemp("run")
    Trainer(snapshot_config(snapshots=[5, 12]), out).fit()
    return out


def test_snapshot_state_at_the_final_step_is_train_json(run: Path) -> None:
    """Read from model.pt (the snapshot at train.steps), the fields replace train.json's with
    train.json's own values: the trainer's records and the snapshot's agree."""
    model, _ = load_trained_model(run / "model.pt")
    state = snapshot_state(run / "model.pt", model, 12)
    train = read_json(run / "train.json")
    assert state == {"train_step": 12, **{key: train[key] for key in (
        "train_seconds", "final_loss", "logsnr_max", "logsnr_min")}}


def test_snapshot_state_at_an_earlier_step(run: Path) -> None:
    path = run / snapshot_file(5)
    model, _ = load_trained_model(path)
    state = snapshot_state(path, model, 5)
    with (run / "train_log.csv").open() as f:
        logged = {int(r["step"]): r for r in csv.DictReader(f)}
    assert state["train_step"] == 5
    assert state["final_loss"] == float(logged[4]["loss"])  # the last step logged before 5
    assert 0 < state["train_seconds"] < read_json(run / "train.json")["train_seconds"]
    with pytest.raises(ValueError, match="step5.pt holds the state after training step 5, not "
                                         "after --train-step 8"):
        snapshot_state(path, model, 8)


# --------------------------------------------------------------------------- metrics.json
def _results(tmp: Path, snapshots: list[dict[str, Any]]) -> tuple[Path, Path, Path]:
    provenance = {"git": {"commit": "abc"}, "device": "cpu"}
    train = {"dataset": "digits", "objective": "eps", "schedule": "linear", "seed": 0,
             "steps": 12, "snapshots": snapshots, "train_seconds": 9.0, "wall_seconds": 10.0,
             "num_params": 1, "final_loss": 0.5, "logsnr_max": 7.0, "logsnr_min": -10.0,
             "config": {}, "provenance": provenance}
    nll = {"nll_bpd": 2.0, "nll_bpd_se": 0.01, "num_examples": 3, "split": "test",
           "model": str(tmp / "snapshots/step5.pt"), "wall_seconds": 2.0, "provenance": provenance}
    fid = {"fid": 1.0, "kid": 0.0, "kid_std": 0.0, "feature_extractor": "classifier-digits",
           "num_samples": 8, "wall_seconds": 3.0, "sampling": {"steps": 2, "wall_seconds": 4.0},
           "provenance": provenance}
    paths = tuple(tmp / name for name in ("train.json", "nll.json", "fid.json"))
    for path, data in zip(paths, (train, nll, fid), strict=True):
        path.write_text(json.dumps(data))
    return paths


def test_metrics_json_records_the_training_step(tmp_path: Path) -> None:
    """No train_step without snapshots (metrics.json as before); train.steps for the final
    weights of a run with snapshots; k and the run's state at k for the snapshot's."""
    plain = tmp_path / "plain"
    plain.mkdir()
    collect_metrics(*_results(plain, []), plain / "metrics.json")
    assert "train_step" not in read_json(plain / "metrics.json")

    listed = [{"step": 5, "file": "snapshots/step5.pt"}, {"step": 12, "file": "model.pt"}]
    train, nll, fid = _results(tmp_path, listed)
    collect_metrics(train, nll, fid, tmp_path / "final.json")
    final = read_json(tmp_path / "final.json")
    assert final["train_step"] == 12 and final["final_loss"] == 0.5
    at_step = {"train_step": 5, "train_seconds": 3.0, "logsnr_max": 6.5, "logsnr_min": -9.5}
    collect_metrics(train, nll, fid, tmp_path / "step5.json", snapshot=at_step)
    early = read_json(tmp_path / "step5.json")
    assert {key: early[key] for key in at_step} == at_step
    assert "final_loss" not in early and early["steps"] == 12  # no step logged before 5 here
    assert early["sources"]["snapshot"] == str(tmp_path / "snapshots/step5.pt")
    assert {key: value for key, value in early.items() if key not in (*at_step, "final_loss",
                                                                       "sources")} == \
        {key: value for key, value in final.items() if key not in (*at_step, "final_loss",
                                                                   "sources")}

    summary = summary_long(load_metrics([tmp_path / "final.json", tmp_path / "step5.json"]))
    assert summary["train_step"].tolist() == [5, 12]  # each run's budgets in training order
    columns = [c for c in SUMMARY_COLUMNS if c in summary]
    assert columns[columns.index("steps") + 1] == "train_step"
    assert "train_step" not in load_metrics([plain / "metrics.json"])


# --------------------------------------------------------------------------- aggregate, plots
def test_tables_of_a_grid_with_snapshots(tmp_path: Path) -> None:
    """The ranking-stability files come with budgets; every other table but the claims is the
    final step's, byte for byte; without budgets there are no ranking files."""
    df = make_budget_summary()
    paths = write_tables(df, tmp_path / "all")
    long = summary_long(df)
    assert (paths["ranking_stability.md"].read_text(), paths["ranking_stability.csv"].read_text()) \
        == ranking_stability_report(long)
    assert paths["claims.csv"].read_text() == claims_report(long, run_name="results")[1]
    final = df[df["train_step"] == BUDGETS[-1]].drop(columns="train_step")
    alone = write_tables(final, tmp_path / "final")
    assert "ranking_stability.csv" not in alone
    assert set(paths) == set(alone) | {"ranking_stability.md", "ranking_stability.csv"}
    for name in ("summary.md", "summary.tex", "significance.csv", "sampler_sweep.csv"):
        assert paths[name].read_bytes() == alone[name].read_bytes(), name
    written = pd.read_csv(paths["summary.csv"])
    assert sorted(set(written["train_step"])) == list(BUDGETS) and len(written) == len(df)


def test_plots_of_a_grid_with_snapshots_add_the_learning_curves(tmp_path: Path) -> None:
    """(Without budgets plots_main writes its 7 figures: test_tables_plots.test_plots_main.)"""
    summary = tmp_path / "summary.csv"
    make_budget_summary().to_csv(summary, index=False)
    written = plots.plots_main(summary, {}, {}, tmp_path / "figs")
    for name in ("learning_curve_fid.png", "learning_curve_nll.png"):
        assert tmp_path / "figs" / name in written
        assert (tmp_path / "figs" / name).read_bytes()[:4] == b"\x89PNG"


def test_headline_of_a_grid_with_snapshots_reads_the_final_budget() -> None:
    """claims.csv has a row per claim and budget; the headline counts and lists each claim once,
    with its verdict at the final budget, and names the earlier budgets."""
    import io

    from vdm.reporting.headline import final_budget_claims, headline_markdown

    summary = summary_long(make_budget_summary())
    claims = pd.read_csv(io.StringIO(claims_report(summary, run_name="budget")[1]))
    final = final_budget_claims(claims)
    assert len(claims) == len(BUDGETS) * len(final) and set(final["train_step"]) == {BUDGETS[-1]}
    text = headline_markdown(summary, claims, run_name="budget")
    reproduced = int((final["verdict"] == "reproduced").sum())
    tested = int((final["verdict"] != "not in this grid").sum())
    assert f"{reproduced} of the {tested} published claims" in text
    assert text.count("`kingma-gao-sigmoid-fid`") == 1
    assert "1200 steps per run (also evaluated after 100/300 steps)" in text


# --------------------------------------------------------------------------- fused evaluation
def _workflow_config(snapshots: list[int]) -> dict[str, Any]:
    """A validated workflow config of ``run``'s length (12 steps) with ``snapshots``, small
    evaluation settings."""
    return validate_workflow_config({
        "train": {"steps": 12, "snapshots": snapshots}, "evaluation": {"denoiser_floor": False},
        "sample": {"num_samples": 40, "batch_size": 40, "steps": [4], "methods": ["ancestral"]},
        "nll": {"num_time_samples": 2, "max_examples": 40}, "fid": {"kid_subset_size": 16}})


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("classifier") / "classifier.pt"
    assert main(["classifier", "--set", "steps=30", "--set", "min_accuracy=0", "--threads", "1",
                 "--out", str(path)]) == 0
    return path


def _evaluate(spec: str, model: Path, out: Path, run: Path, classifier: Path,
              *extra: str) -> int:
    return main(["evaluate", "--spec", spec, "--threads", "1", "--model", str(model),
                 "--dataset-classifier", str(classifier), "--cache-root", str(out.parent / "cache"),
                 "--samples-out", str(out / "samples.npz"), "--nll-out", str(out / "nll.json"),
                 "--fid-out", str(out / "fid.json"), "--train-json", str(run / "train.json"),
                 "--metrics-out", str(out / "metrics.json"), *extra])


def test_the_fused_job_evaluates_snapshots_as_their_own_jobs_do(
        run: Path, classifier: Path, tmp_path: Path) -> None:
    """evaluate with the spec's snapshots writes, for each, the files and numbers of
    `evaluate --train-step k` with the snapshot spec (split evaluation's evaluate_snapshot job),
    after the final evaluation's own."""
    config = _workflow_config([5, 12])
    spec = evaluate_spec(config, 3)
    assert spec.snapshots == (5,) and spec.snapshot_spec() == snapshot_evaluate_spec(config, 3)
    fused, own = tmp_path / "fused", tmp_path / "own"
    assert _evaluate(spec.to_json(), run / "model.pt", fused, run, classifier,
                     "--snapshots-out-dir", str(fused / "snapshots")) == 0
    assert _evaluate(snapshot_evaluate_spec(config, 3).to_json(), run / snapshot_file(5), own, run,
                     classifier, "--train-step", "5") == 0
    step5 = fused / "snapshots/step5"
    assert sorted(p.name for p in step5.iterdir()) == [
        "fid.json", "metrics.json", "nll.json", "samples.npz"]
    with np.load(step5 / "samples.npz") as a, np.load(own / "samples.npz") as b:
        assert np.array_equal(a["images"], b["images"])
    with np.load(fused / "samples.npz") as final, np.load(own / "samples.npz") as early:
        assert not np.array_equal(final["images"], early["images"])  # other weights
    a, b = (read_json(d / "metrics.json") for d in (step5, own))
    assert a["train_step"] == b["train_step"] == 5 and read_json(
        fused / "metrics.json")["train_step"] == 12
    for key in ("nll_bpd", "nll_bpd_se", "fid", "kid", "precision", "recall", "final_loss",
                "train_seconds", "logsnr_max", "logsnr_min"):
        assert a[key] == b[key], key
    assert a["sources"]["snapshot"] == b["sources"]["snapshot"] == str(run / snapshot_file(5))


def test_bad_snapshot_options_are_refused_before_any_work(
        run: Path, classifier: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = evaluate_spec(_workflow_config([5, 12]), 3)
    out = tmp_path / "out"
    eight = evaluate_spec(_workflow_config([8, 12]), 3)  # the run saved no step8.pt
    for spec_json, options, error in [
            (spec.to_json(), [], "spec key 'snapshots' lists steps: give --snapshots-out-dir"),
            (spec.snapshot_spec().to_json(), ["--snapshots-out-dir", str(out / "snapshots")],
             "--snapshots-out-dir is given but spec key 'snapshots' is empty"),
            (eight.to_json(), ["--snapshots-out-dir", str(out / "snapshots")],
             f"spec key 'snapshots' lists step 8, but {run / 'snapshots/step8.pt'} does not "
             "exist")]:
        assert _evaluate(spec_json, run / "model.pt", out, run, classifier, *options) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and error in lines[0], lines
    assert not out.exists()  # nothing written
    with pytest.raises(ValueError, match="spec key 'snapshots': \\[5, 5\\] is not ascending "
                                         "without repeats"):
        EvaluateSpec.from_json(json.dumps({**json.loads(spec.to_json()), "snapshots": [5, 5]}))
