"""Snapshots of a training run (``train.snapshots``): their files and bookkeeping.

After each step ``k`` of ``train.snapshots`` below ``train.steps``, :meth:`Trainer.fit
<vdm.training.trainer.Trainer.fit>` saves the whole training state, atomically, as
``snapshots/step<k>.pt`` in the run directory (:meth:`Trainer.save
<vdm.training.trainer.Trainer.save>`, exactly as ``model.pt``, so :func:`load_trained_model
<vdm.training.trainer.load_trained_model>` reads its EMA weights), before the rolling checkpoint
of the same step, so a ``state.pt`` at step ``s`` implies that every snapshot up to ``s`` is
written. A step equal to ``train.steps`` gets no file of its own: ``model.pt`` is that snapshot
(the same state).

What equals what (bitwise on CPU): the LR (linear warm-up, then constant) and the EMA decay
(warm-up ``min(decay, (1 + n) / (10 + n))`` by update count ``n``) do not depend on
``train.steps``, so the snapshot at ``k`` holds the weights, EMA weights, optimizer, LR-scheduler
and RNG states of ``model.pt`` of a run with ``train.steps = k``; only its config, wall-clock
seconds and log rows differ. A resumed run keeps the snapshots written before the kill and writes
the later ones as an uninterrupted run would; a ``state.pt`` past a snapshot whose file is gone
cannot recreate it and is set aside like a foreign checkpoint (:func:`missing_snapshot`: the run
starts over). A run that starts from step 0 first removes the snapshots of an earlier run
(:func:`remove_snapshots`). ``train.json`` lists ``snapshots`` as ``{"step": k, "file": <path
relative to the run directory>}`` for every listed step (:func:`snapshot_files`).

Evaluating a snapshot (by the run's fused ``evaluate`` job, or with split evaluation by an
``evaluate_snapshot`` job of its own): the steps that get a file of their own
(:func:`vdm.core.job_specs.grid_snapshot_steps`, from a grid's ``train`` section) are each
evaluated like ``model.pt``, and their ``metrics.json`` records the training run as it was at
that step (:func:`snapshot_metrics`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vdm.core.config import TrainConfig
from vdm.training.train_log import LOG_COLUMNS

#: the folder of a run directory holding the snapshots (``snapshots/step<k>.pt``)
SNAPSHOT_DIR = "snapshots"


def snapshot_file(step: int) -> str:
    """The path, relative to the run directory, of the snapshot taken after training step
    ``step`` (``snapshots/step<step>.pt``)."""
    return f"{SNAPSHOT_DIR}/step{step}.pt"


def snapshot_steps(train: TrainConfig) -> list[int]:
    """The steps of ``train.snapshots`` that get a file of their own, ascending: those before
    ``train.steps`` (the snapshot at ``train.steps`` is ``model.pt``)."""
    return sorted(step for step in train.snapshots if step < train.steps)


def snapshot_metrics(state: Mapping[str, Any]) -> dict[str, Any]:
    """What a snapshot's ``metrics.json`` records of its training run, from the saved training
    state (:meth:`Trainer.state_dict <vdm.training.trainer.Trainer.state_dict>`):
    ``train_step`` (the step after which the state was saved), ``train_seconds`` (seconds of
    training up to the last logged step at or before it) and ``final_loss`` (the loss logged
    last at or before it: that step's batch loss, as ``train.json``'s ``final_loss`` is the
    final step's; left out when no step was logged yet). ``ValueError`` naming the key when the
    state has no step or log."""
    for key in ("step", "seconds", "log_rows"):
        if key not in state:
            raise ValueError(f"the snapshot is not a training state (no {key!r})")
    out: dict[str, Any] = {"train_step": int(state["step"]),
                           "train_seconds": round(float(state["seconds"]), 3)}
    logged = [row for row in state["log_rows"] if row[LOG_COLUMNS.index("step")] <= state["step"]]
    if logged:
        out["final_loss"] = float(logged[-1][LOG_COLUMNS.index("loss")])
    return out


def snapshot_files(train: TrainConfig) -> dict[int, str]:
    """Every step of ``train.snapshots``, ascending, with the file (relative to the run
    directory) that holds the state after it: :func:`snapshot_file`, or ``model.pt`` for
    ``train.steps``."""
    return {step: snapshot_file(step) if step < train.steps else "model.pt"
            for step in sorted(train.snapshots)}


def missing_snapshot(out_dir: Path, train: TrainConfig, step: int) -> str | None:
    """The first snapshot file (relative path) at or before training step ``step`` that is not
    in ``out_dir``, or None: a state at ``step`` can resume only when there is none."""
    for done in snapshot_steps(train):
        if done <= step and not (out_dir / snapshot_file(done)).is_file():
            return snapshot_file(done)
    return None


def remove_snapshots(out_dir: Path) -> None:
    """Delete ``out_dir/snapshots/step*.pt`` (an earlier run's, when a run starts from step 0)."""
    for path in (out_dir / SNAPSHOT_DIR).glob("step*.pt"):
        path.unlink()


def with_snapshots_key(config: Any) -> Any:
    """A saved run config with ``train.snapshots: []`` added where it has none: a state written
    before the key existed (no snapshots) still resumes the same run."""
    if isinstance(config, dict) and isinstance(config.get("train"), dict) and (
            "snapshots" not in config["train"]):
        return {**config, "train": {**config["train"], "snapshots": []}}
    return config
