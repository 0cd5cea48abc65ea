"""Snapshots (``train.snapshots``): the training state saved after chosen steps of one run.

Bitwise on CPU: the snapshot at step k is the ``model.pt`` of a run with ``train.steps = k`` (the
LR is warm-up then constant and the EMA warm-up counts updates, so nothing depends on
``train.steps``); a run resumed across a snapshot, before or after it, writes the same snapshots.
Bad values fail with one line naming the key; a grid without snapshots keeps its cells' run
configs (the train jobs' Snakemake params) byte for byte. The SIGKILL version is in
test_reliability.py, the Snakemake one-line errors in test_pipeline.py.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from test_trainer import tiny_config

from vdm.core import schema as schema_module
from vdm.core.checkpoint import load_checkpoint
from vdm.core.config import (
    RunConfig,
    check_snapshots,
    grid_name,
    load_config_file,
    run_config_from_dict,
    validate_workflow_config,
    workflow_cell,
)
from vdm.pipeline.cli import main as cli_main
from vdm.training.snapshots import snapshot_file, snapshot_files
from vdm.training.trainer import Trainer, load_trained_model

REPO = Path(__file__).resolve().parents[1]
TRAIN = {"steps": 12, "batch_size": 32, "log_every": 2, "checkpoint_every": 4, "warmup_steps": 3,
         "threads": 1}
#: 5: neither a log nor a checkpoint step; 8: a checkpoint step; 12: the last step (model.pt)
SNAPSHOTS = [5, 8, 12]
#: the entries of a saved training state that do not depend on the wall clock or the log cadence
#: (``seconds``, ``log_rows`` and ``resumed_from`` do; ``config`` names the run's own steps)
DETERMINISTIC = ("step", "model", "ema", "optimizer", "lr_schedule", "rng", "data_order")


def snapshot_config(steps: int = 12, snapshots: list[int] | None = None) -> RunConfig:
    """A learned schedule (its own optimizer group) with dropout (torch's global RNG)."""
    return tiny_config(schedule="learned", objective="elbo",
                       model={"channels": 8, "channel_mults": [1, 2], "dropout": 0.1},
                       train={**TRAIN, "steps": steps,
                              "snapshots": SNAPSHOTS if snapshots is None else snapshots})


def assert_equal(a: Any, b: Any, where: str) -> None:
    """``a`` and ``b`` equal bitwise: tensors by ``torch.equal`` (and dtype), containers by item."""
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_equal(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_state(a: Path, b: Path) -> None:
    """The saved training states ``a`` and ``b`` agree bitwise in :data:`DETERMINISTIC`."""
    sa, sb = load_checkpoint(a), load_checkpoint(b)
    for key in DETERMINISTIC:
        assert_equal(sa[key], sb[key], f"{a.name}:{key}")


def log_columns(path: Path) -> list[tuple[str, str, str, str]]:
    """The deterministic columns of train_log.csv (timings excluded)."""
    with path.open() as f:
        return [(r["step"], r["loss"], r["grad_norm"], r["lr"]) for r in csv.DictReader(f)]


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted 12-step run with snapshots at 5, 8 and 12, into a run directory that
    holds a snapshot of an earlier run (step 3), which the fresh run must remove."""
    run = tmp_path_factory.mktemp("straight")
    (run / "snapshots").mkdir()
    (run / "snapshots" / "step3.pt").write_bytes(b"an earlier run's snapshot")
    Trainer(snapshot_config(), run).fit()
    return run


def test_snapshot_is_the_model_of_a_run_stopped_at_that_step(straight: Path,
                                                              tmp_path: Path) -> None:
    """snapshots/step<k>.pt == model.pt of a run with train.steps = k (and no snapshots), for
    every k, bitwise; the last one is model.pt itself, and saving snapshots changes nothing."""
    summary = json.loads((straight / "train.json").read_text())
    assert summary["snapshots"] == [{"step": 5, "file": "snapshots/step5.pt"},
                                    {"step": 8, "file": "snapshots/step8.pt"},
                                    {"step": 12, "file": "model.pt"}]
    assert sorted(p.name for p in (straight / "snapshots").iterdir()) == ["step5.pt", "step8.pt"]
    config = snapshot_config()
    for step, name in snapshot_files(config.train).items():
        short = tmp_path / f"steps{step}"
        Trainer(snapshot_config(steps=step, snapshots=[]), short).fit()
        assert_same_state(straight / name, short / "model.pt")
        snapshot, snapshot_config_read = load_trained_model(straight / name)
        model, _ = load_trained_model(short / "model.pt")
        assert snapshot_config_read == config  # the snapshot records its own run's config
        assert_equal(snapshot.state_dict(), model.state_dict(), f"EMA weights at step {step}")
        assert load_checkpoint(straight / name)["step"] == step


def test_resume_across_a_snapshot_is_bitwise(straight: Path, tmp_path: Path) -> None:
    """Killed after the snapshot at step 5: resumed from the checkpoint after it (step 6) the
    snapshot is kept as it was; from the checkpoint before it (step 4) it is written again, the
    same. Either way every snapshot, model.pt and the log equal the uninterrupted run's."""
    config = snapshot_config()
    before, after = tmp_path / "from4", tmp_path / "from6"
    Trainer(config, after).fit(stop_at=4)
    checkpoint4 = (after / "state.pt").read_bytes()
    assert not (after / "snapshots").exists()
    assert Trainer(config, after).fit(stop_at=6) == {}
    first = after / snapshot_file(5)
    assert load_checkpoint(first)["step"] == 5 and not (after / snapshot_file(8)).exists()
    shutil.copytree(after, before)
    (before / "state.pt").write_bytes(checkpoint4)  # the kill came before the checkpoint at 6
    written = first.stat()

    Trainer(config, after).fit()
    kept = first.stat()
    assert (kept.st_ino, kept.st_mtime_ns) == (written.st_ino, written.st_mtime_ns)
    Trainer(config, before).fit()
    assert (before / snapshot_file(5)).stat().st_ino != written.st_ino  # written again

    for run, resumed in ((after, [4, 6]), (before, [4])):
        for name in (snapshot_file(5), snapshot_file(8), "model.pt"):
            assert_same_state(straight / name, run / name)
        assert log_columns(run / "train_log.csv") == log_columns(straight / "train_log.csv")
        summary = json.loads((run / "train.json").read_text())
        assert summary["resumed_from"] == resumed
        assert summary["snapshots"] == json.loads((straight / "train.json").read_text())["snapshots"]
        assert not (run / "state.pt").exists()


def test_a_checkpoint_past_a_missing_snapshot_starts_the_run_over(
        straight: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A state.pt after a snapshot whose file is gone could never write it: it is set aside
    with a one-line warning and the run starts over, writing every snapshot."""
    config = snapshot_config()
    Trainer(config, tmp_path).fit(stop_at=6)
    (tmp_path / snapshot_file(5)).unlink()
    capsys.readouterr()
    Trainer(config, tmp_path).fit()
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warnings == [f"vdm train: warning: checkpoint {tmp_path / 'state.pt'} cannot resume "
                        "this run (it is at step 6, past the snapshot snapshots/step5.pt, which is "
                        "missing); moved it to state.pt.bad, starting this run over"]
    assert (tmp_path / "state.pt.bad").exists()
    assert json.loads((tmp_path / "train.json").read_text())["resumed_from"] == []
    for name in (snapshot_file(5), snapshot_file(8), "model.pt"):
        assert_same_state(straight / name, tmp_path / name)


def test_a_state_written_before_the_key_existed_still_resumes(straight: Path,
                                                               tmp_path: Path) -> None:
    """A state.pt whose config has no train.snapshots (an older version's, mid-run when the
    package was updated) resumes a run without snapshots instead of starting it over."""
    config = snapshot_config(snapshots=[])
    Trainer(config, tmp_path).fit(stop_at=4)
    state = load_checkpoint(tmp_path / "state.pt")
    del state["config"]["train"]["snapshots"]
    torch.save(state, tmp_path / "state.pt")
    assert Trainer(config, tmp_path).fit()["resumed_from"] == [4]
    assert_same_state(straight / "model.pt", tmp_path / "model.pt")


# ----- configuration -----------------------------------------------------------------------
@pytest.mark.parametrize(("snapshots", "message"), [
    ([4, 13], "invalid config key 'train.snapshots': step 13 is above train.steps (12); a snapshot "
              "must be a step from 1 to train.steps"),
    ([5, 8, 5], "invalid config key 'train.snapshots': [5, 8, 5] has non-unique elements"),
    ([0, 5], "invalid config key 'train.snapshots.0': 0 is less than the minimum of 1"),
    ([2.5], "invalid config key 'train.snapshots.0': 2.5 is not of type 'integer'"),
    (5, "invalid config key 'train.snapshots': 5 is not of type 'array'"),
])
def test_bad_snapshots_are_one_line_naming_the_key(snapshots: Any, message: str) -> None:
    with pytest.raises(ValueError) as error:
        run_config_from_dict({"train": {**TRAIN, "snapshots": snapshots}})
    assert str(error.value) == message


def test_bad_snapshots_of_a_grid_are_one_line_naming_the_key() -> None:
    """The grid check (validate_workflow_config, the Snakefile's check_workflow_config) bounds
    the snapshots by the grid's train.steps, also when that is the default (300)."""
    with pytest.raises(ValueError) as error:
        validate_workflow_config({"train": {"snapshots": [100, 301]}})
    assert str(error.value) == ("invalid config key 'train.snapshots': step 301 is above "
                                "train.steps (300); a snapshot must be a step from 1 to train.steps")
    with pytest.raises(ValueError, match=r"^invalid config key 'train.snapshots': \[100, 100\] "
                                         r"has non-unique elements$"):
        validate_workflow_config({"train": {"steps": 1200, "snapshots": [100, 100]}})
    assert validate_workflow_config({"train": {"snapshots": [300, 100]}})["train"]["snapshots"] == [
        300, 100]


@pytest.mark.parametrize(("snapshots", "message"), [
    ([3, 3], "step 3 is listed twice"),
    ([0], "step 0 is below 1 (a snapshot is taken after a training step)"),
    ([13], "step 13 is above train.steps (12); a snapshot must be a step from 1 to train.steps"),
    (["3"], "'3' is not a whole number of training steps"),
    ([True], "True is not a whole number of training steps"),
    ("3", "expected a list of training steps, got '3'"),
])
def test_snapshot_check_without_the_schema(snapshots: Any, message: str) -> None:
    """check_snapshots alone (what holds where the schema cannot be read: the GPU machines)."""
    with pytest.raises(ValueError) as error:
        check_snapshots(snapshots, 12)
    assert str(error.value) == f"invalid config key 'train.snapshots': {message}"
    check_snapshots([12, 1, 7], 12)
    check_snapshots([500], None)  # no train.steps to bound them


@pytest.fixture
def without_yaml_and_jsonschema(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As on the GPU-check machines: PyYAML and jsonschema cannot be imported."""
    caches = (schema_module._workflow_schema, schema_module.run_schema_view)
    for cache in caches:
        cache.cache_clear()
    monkeypatch.setitem(sys.modules, "yaml", None)
    monkeypatch.setitem(sys.modules, "jsonschema", None)
    yield
    for cache in caches:
        cache.cache_clear()


def test_bad_snapshots_fail_without_the_schema_too(request: pytest.FixtureRequest) -> None:
    complete = json.loads(json.dumps(snapshot_config().to_dict()))
    request.getfixturevalue("without_yaml_and_jsonschema")
    assert run_config_from_dict(complete).train.snapshots == SNAPSHOTS
    complete["train"]["snapshots"] = [5, 5]
    with pytest.raises(ValueError, match=r"^invalid config key 'train.snapshots': step 5 is "
                                         r"listed twice$"):
        run_config_from_dict(complete)


def test_train_command_refuses_bad_snapshots_before_training(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m vdm train` with a snapshot past train.steps: one line, nothing written."""
    args = ["train", "--config-json", json.dumps({"train": TRAIN}), "--set",
            "train.snapshots=[4, 20]", "--out", str(tmp_path / "run")]
    assert cli_main(args) == 2
    assert capsys.readouterr().err.strip() == (
        "vdm train: error: invalid config key 'train.snapshots': step 20 is above train.steps "
        "(12); a snapshot must be a step from 1 to train.steps")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["config.yaml", "perspectives.yaml", "mnist.yaml"])
def test_a_grid_without_snapshots_keeps_its_cells_and_name(name: str) -> None:
    """Without snapshots (the default []) a cell's run config, as common.smk's run_config turns it
    into the train job's params, is byte for byte the one of a grid whose train section has no
    snapshots key (as before the key existed), and so is the grid's name; with snapshots both
    change (adding a snapshot step reruns training; an unnamed grid gets another name)."""
    grid = validate_workflow_config(load_config_file(REPO / "config" / name))
    assert grid["train"]["snapshots"] == []
    before = json.loads(json.dumps(grid))
    del before["train"]["snapshots"]
    default = validate_workflow_config(load_config_file(REPO / "config" / "config.yaml"))
    assert grid_name(grid, default) == grid_name(before, default)
    with_snapshots = json.loads(json.dumps(grid))
    with_snapshots["train"]["snapshots"] = [100]
    if not grid["name"]:  # a named grid keeps its name; the others are named by their settings
        assert grid_name(with_snapshots, default) not in (grid_name(grid, default), "default")
    for objective in grid["objectives"]:
        for schedule in grid["schedules"]:
            cell = workflow_cell(grid, objective, schedule, 0)
            assert "snapshots" not in cell["train"]
            assert (json.dumps(cell, sort_keys=True)
                    == json.dumps(workflow_cell(before, objective, schedule, 0), sort_keys=True))
            assert run_config_from_dict(cell).train.snapshots == []
            listed = workflow_cell(with_snapshots, objective, schedule, 0)
            assert listed["train"]["snapshots"] == [100]
            assert run_config_from_dict(listed).train.snapshots == [100]
