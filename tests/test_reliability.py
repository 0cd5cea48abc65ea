"""Reliability: kill -9 and resume, corrupt or malicious checkpoints, NaN losses, bad result files.

The end-to-end versions (a SIGKILLed Snakemake grid, bad configs through Snakemake) are in
test_pipeline.py.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_trainer import tiny_config

from vdm.core.checkpoint import CheckpointError, load_checkpoint
from vdm.pipeline.cli import main as cli_main
from vdm.pipeline.results_commands import collect_metrics
from vdm.reporting.summary_load import load_metrics
from vdm.training.trainer import NonFiniteLossError, Trainer, load_trained_model

LONGER = {"steps": 40, "batch_size": 32, "log_every": 2, "checkpoint_every": 10,
          "warmup_steps": 3, "threads": 1}


def _weights(path: Path) -> dict[str, torch.Tensor]:
    state = load_checkpoint(path)
    return {**{f"m.{k}": v for k, v in state["model"].items()},
            **{f"e.{k}": v for k, v in state["ema"].items()}}


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def _log_columns(path: Path) -> list[tuple[str, str, str, str]]:
    """The deterministic columns of train_log.csv (timings excluded)."""
    with path.open() as f:
        return [(r["step"], r["loss"], r["grad_norm"], r["lr"]) for r in csv.DictReader(f)]


def test_sigkilled_training_resumes_bitwise(tmp_path: Path) -> None:
    """kill -9 a `python -m vdm train` process after its first checkpoint; the same command
    then finishes with the weights, snapshots and log of an uninterrupted run (the snapshot at
    step 5 is written before the kill, those at 15 and 25 before or after it)."""
    config = tiny_config(schedule="learned", objective="elbo",
                         train={**LONGER, "snapshots": [5, 15, 25, 40]})
    Trainer(config, tmp_path / "straight").fit()
    run = tmp_path / "killed"
    command = [sys.executable, "-m", "vdm", "train", "--config-json", json.dumps(config.to_dict()),
               "--out", str(run)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (run / "state.pt").exists():
        assert process.poll() is None, "training finished before its first checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (run / "model.pt").exists() and not (run / "train_log.csv").exists()
    subprocess.run(command, check=True, capture_output=True)
    _assert_same_weights(tmp_path / "straight" / "model.pt", run / "model.pt")
    for step in (5, 15, 25):
        name = f"snapshots/step{step}.pt"
        _assert_same_weights(tmp_path / "straight" / name, run / name)
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == [
        "step15.pt", "step25.pt", "step5.pt"]
    assert _log_columns(run / "train_log.csv") == _log_columns(tmp_path / "straight" / "train_log.csv")
    summary = json.loads((run / "train.json").read_text())
    assert len(summary["resumed_from"]) == 1 and summary["resumed_from"][0] % 10 == 0
    assert not (run / "state.pt").exists() and not (run / "train_log.csv.partial").exists()


def test_unfinished_run_leaves_nothing_that_looks_complete(tmp_path: Path) -> None:
    Trainer(tiny_config(), tmp_path).fit(stop_at=6)
    assert (tmp_path / "state.pt").exists() and (tmp_path / "train_log.csv.partial").exists()
    for name in ("model.pt", "train.json", "train_log.csv"):
        assert not (tmp_path / name).exists(), name


@pytest.mark.parametrize("damage", ["truncate", "garbage", "other_config"])
def test_bad_rolling_checkpoint_starts_the_run_over(tmp_path: Path, damage: str, capsys) -> None:
    config = tiny_config()
    Trainer(config, tmp_path / "straight").fit()
    run = tmp_path / "damaged"
    if damage == "other_config":
        Trainer(tiny_config(seed=5), run).fit(stop_at=4)
    else:
        Trainer(config, run).fit(stop_at=4)
        state = run / "state.pt"
        raw = state.read_bytes()
        state.write_bytes(raw[: len(raw) // 2] if damage == "truncate" else b"\x00garbage" * 50)
    summary = Trainer(config, run).fit()
    warning = capsys.readouterr().err
    assert "state.pt" in warning and "starting this run over" in warning
    expected = "cannot resume this run" if damage == "other_config" else "truncated or corrupt"
    assert expected in warning, warning
    assert summary["resumed_from"] == []
    assert (run / "state.pt.bad").exists()
    _assert_same_weights(tmp_path / "straight" / "model.pt", run / "model.pt")


def test_checkpoint_that_is_no_training_state_starts_the_run_over(tmp_path: Path, capsys) -> None:
    torch.save({"model": {}, "step": 3}, tmp_path / "state.pt")
    summary = Trainer(tiny_config(), tmp_path).fit()
    warning = capsys.readouterr().err
    assert "cannot resume this run (it is not a training state (no config, seconds" in warning
    assert summary["resumed_from"] == [] and (tmp_path / "state.pt.bad").exists()


def test_a_bug_while_resuming_raises_instead_of_restarting(tmp_path: Path, monkeypatch) -> None:
    """Only foreign or corrupt files restart a run; a programming error surfaces."""
    import vdm.training.trainer

    Trainer(tiny_config(), tmp_path).fit(stop_at=4)

    def broken_restore(states, generator):
        raise TypeError("restore_rng_states() got an unexpected keyword")

    monkeypatch.setattr(vdm.training.trainer, "restore_rng_states", broken_restore)
    with pytest.raises(TypeError, match="unexpected keyword"):
        Trainer(tiny_config(), tmp_path).fit()
    assert (tmp_path / "state.pt").exists() and not (tmp_path / "state.pt.bad").exists()


def test_corrupt_model_checkpoint_is_named(tmp_path: Path, capsys) -> None:
    Trainer(tiny_config(), tmp_path).fit()
    model = tmp_path / "model.pt"
    model.write_bytes(model.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as error:
        load_trained_model(model)
    assert str(model) in str(error.value)
    capsys.readouterr()  # the training's progress lines
    code = cli_main(["sample", "--model", str(model), "--set", "sampling.num_samples=4",
                     "--set", "sampling.steps=2", "--out", str(tmp_path / "s.npz")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and str(model) in err
    assert not (tmp_path / "s.npz").exists()


class _Exploit:
    """Pickles to a call of os.system: what a malicious checkpoint would carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_checkpoint_is_refused_without_running_it(tmp_path: Path) -> None:
    marker, path = tmp_path / "pwned", tmp_path / "model.pt"
    torch.save({"config": {}, "model": {}, "payload": _Exploit(marker)}, path)
    with pytest.raises(CheckpointError, match=r"refusing to load .*\(global (posix|nt).system\)") as error:
        load_trained_model(path)
    assert str(path) in str(error.value)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not marker.exists()
    # the same file is really executable by a plain unpickler: the refusal is what protects
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_rolling_checkpoint_holds_only_plain_data(tmp_path: Path) -> None:
    Trainer(tiny_config(), tmp_path).fit(stop_at=4)
    state = torch.load(tmp_path / "state.pt", weights_only=True)  # raises on any pickled object
    assert state["step"] == 4 and len(state["log_rows"]) == 2
    assert state["data_order"]["permutation"].shape == (1497,)


def test_nan_loss_stops_training_naming_step_objective_schedule(tmp_path: Path, capsys) -> None:
    train = {**LONGER, "lr": 1e6, "grad_clip": 0.0, "warmup_steps": 0}
    config = tiny_config(objective="eps", schedule="sigmoid", train=train)
    with pytest.raises(NonFiniteLossError, match=r"at step \d+ .*objective eps, schedule sigmoid"):
        Trainer(config, tmp_path / "a").fit()
    assert not (tmp_path / "a" / "model.pt").exists()
    code = cli_main(["train", "--config-json", json.dumps(config.to_dict()),
                     "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("vdm train: error: training loss is nan at step")


def _result_files(tmp_path: Path, nll_bpd: float) -> tuple[Path, Path, Path]:
    provenance = {"git": {"commit": "abc"}, "device": "cpu"}
    train = {"dataset": "digits", "objective": "eps", "schedule": "linear", "seed": 0,
             "steps": 1, "train_seconds": 1.0, "wall_seconds": 1.5, "num_params": 1,
             "final_loss": 0.5, "logsnr_max": 7.0, "logsnr_min": -10.0, "config": {},
             "provenance": provenance}
    nll = {"nll_bpd": nll_bpd, "nll_bpd_se": 0.01, "num_examples": 3, "split": "test",
           "wall_seconds": 2.0, "provenance": provenance}
    fid = {"fid": 1.0, "kid": 0.0, "kid_std": 0.0, "precision": 0.5, "recall": 0.5,
           "feature_extractor": "classifier-digits", "num_samples": 8, "wall_seconds": 3.0,
           "sampling": {"steps": 2, "wall_seconds": 4.0}, "provenance": provenance}
    paths = tuple(tmp_path / name for name in ("train.json", "nll.json", "fid.json"))
    for path, data in zip(paths, (train, nll, fid), strict=True):
        path.write_text(json.dumps(data))
    return paths


def test_nan_metric_never_reaches_a_table(tmp_path: Path) -> None:
    train, nll, fid = _result_files(tmp_path, nll_bpd=float("nan"))
    with pytest.raises(ValueError, match="nll.json: nll_bpd is nan"):
        collect_metrics(train, nll, fid, tmp_path / "metrics.json")
    assert not (tmp_path / "metrics.json").exists()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"objective": "eps", "schedule": "linear", "seed": 0,
                               "fid": float("inf")}))
    with pytest.raises(ValueError, match="bad.json: fid is inf"):
        load_metrics([bad])


def test_fid_notes_reach_metrics_json_and_the_log(tmp_path: Path, capsys) -> None:
    train, nll, fid = _result_files(tmp_path, nll_bpd=2.0)
    record = json.loads(fid.read_text())
    del record["precision"]
    record["notes"] = ["precision/recall were requested but torch-fidelity returned precision = "
                       "nan; left out of the results"]
    fid.write_text(json.dumps(record))
    collect_metrics(train, nll, fid, tmp_path / "metrics.json")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert "precision" not in metrics and metrics["recall"] == 0.5
    assert metrics["notes"] == [f"{fid}: {record['notes'][0]}"]
    assert f"vdm collect: warning: {fid}: precision/recall were requested" in capsys.readouterr().err


def test_monte_carlo_se_is_absent_not_nan_for_one_time_sample() -> None:
    from vdm.core.data import load_dataset
    from vdm.evaluation.evaluate import evaluate_nll
    from vdm.model.diffusion import build_model

    model = build_model((1, 8, 8), 17, "eps", "cosine", {"channels": 8}, -10.0, 7.0)
    data = load_dataset("digits", "test")
    one = evaluate_nll(model, data, num_time_samples=1, max_examples=8)
    assert "nll_bpd_mc_se" not in one and math.isfinite(one["nll_bpd_se"])
    two = evaluate_nll(model, data, num_time_samples=2, max_examples=1)
    assert "nll_bpd_se" not in two and math.isfinite(two["nll_bpd_mc_se"])


def test_nan_monte_carlo_se_is_refused(tmp_path: Path) -> None:
    train, nll, fid = _result_files(tmp_path, nll_bpd=2.0)
    nll.write_text(json.dumps({**json.loads(nll.read_text()), "nll_bpd_mc_se": float("nan")}))
    with pytest.raises(ValueError, match="nll.json: nll_bpd_mc_se is nan"):
        collect_metrics(train, nll, fid, tmp_path / "metrics.json")


def test_metrics_record_provenance_and_trace_to_the_table(tmp_path: Path) -> None:
    train, nll, fid = _result_files(tmp_path, nll_bpd=2.0)
    collect_metrics(train, nll, fid, tmp_path / "metrics.json")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["wall_seconds"] == {"train": 1.5, "nll": 2.0, "sample": 4.0, "fid": 3.0}
    assert metrics["feature_extractor"] == "classifier-digits"
    assert {"cpu", "gpu", "this_result"} <= set(metrics["determinism"])
    row = load_metrics([tmp_path / "metrics.json"]).iloc[0]
    assert row["git_commit"] == "abc" and row["metrics_file"] == str(tmp_path / "metrics.json")


def test_malformed_result_json_is_named(tmp_path: Path) -> None:
    train, nll, fid = _result_files(tmp_path, nll_bpd=2.0)
    nll.write_text('{"nll_bpd": 2.0, "nll_')  # truncated by hand
    with pytest.raises(ValueError, match=f"{nll} is not valid JSON"):
        collect_metrics(train, nll, fid, tmp_path / "metrics.json")


def test_yaml_exponent_strings_are_numbers_but_words_are_not() -> None:
    """YAML 1.1 (PyYAML) reads `lr: 1e-4` as a string: it is accepted as the number it spells,
    while a word is still rejected naming the key."""
    from vdm.core.config import apply_overrides, run_config_from_dict

    config = run_config_from_dict(apply_overrides({}, ["train.lr=1e-4"]))
    assert config.train.lr == 1e-4
    with pytest.raises(ValueError, match="config key 'train.lr': 'fast' is not of type 'number'"):
        run_config_from_dict(apply_overrides({}, ["train.lr=fast"]))
