"""The training loop reads device values only every ``log_every`` steps, with unchanged results.

On CPU a deferred read cannot be told from an immediate one by timing, so these tests check the
behaviour that must not change (weights, log values, the NaN stop: same step, same message, no
checkpoint after it) and count the device reads the package's own code makes inside a step.
The real host-sync check (``torch.cuda.set_sync_debug_mode``) is in test_gpu.py.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
import torch
from test_trainer import TINY, tiny_config

from vdm.core.config import run_config_from_dict
from vdm.training.trainer import NonFiniteLossError, Trainer, configure_device, make_optimizer

VDM_DIR = str(Path(__file__).resolve().parents[1] / "vdm")


def _log(path: Path) -> list[tuple[str, ...]]:
    """train_log.csv without its timing columns."""
    with path.open() as f:
        return [(r["step"], r["loss"], r["grad_norm"], r["lr"], r["logsnr_max"], r["logsnr_min"])
                for r in csv.DictReader(f)]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, weights_only=True)
    return {**{f"m.{k}": v for k, v in state["model"].items()},
            **{f"e.{k}": v for k, v in state["ema"].items()}}


@pytest.mark.parametrize("schedule", ["cosine", "learned"])
def test_deferred_reads_give_the_values_of_reading_every_step(tmp_path: Path, schedule: str) -> None:
    """log_every=1 reads (and checks) every step, as the loop always did; log_every=4 reads every
    4th: the weights are bitwise the same and the shared log rows are identical."""
    runs = {}
    for every in (1, 4):
        config = tiny_config(schedule=schedule, objective="elbo",
                             train={**TINY["train"], "log_every": every})
        Trainer(config, tmp_path / str(every)).fit()
        runs[every] = tmp_path / str(every)
    a, b = _weights(runs[1] / "model.pt"), _weights(runs[4] / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    every_step, deferred = _log(runs[1] / "train_log.csv"), _log(runs[4] / "train_log.csv")
    assert [row[0] for row in deferred] == ["4", "8", "12"]
    assert deferred == [row for row in every_step if int(row[0]) % 4 == 0]


def _inject(trainer: Trainer, bad_step: int, value: float) -> None:
    """Make the batch loss of step ``bad_step`` (1-based) ``value`` (NaN or inf)."""
    losses = trainer.model.losses

    def patched(x, generator=None):
        out = losses(x, generator=generator)
        if trainer.step + 1 == bad_step:
            out["loss"] = out["loss"] * torch.tensor(value)
        return out

    trainer.model.losses = patched


@pytest.mark.parametrize(("log_every", "value"), [(1, float("nan")), (4, float("nan")),
                                                  (8, float("inf"))])
def test_non_finite_loss_names_its_step_and_is_never_checkpointed(tmp_path: Path, log_every: int,
                                                                  value: float) -> None:
    """Loss NaN/inf at step 6, checkpoints every 4 steps: whatever the log cadence, the error
    names step 6 with the same message, the only checkpoint is step 4's (finite), and the log
    holds only rows before step 6."""
    train = {**TINY["train"], "steps": 12, "log_every": log_every, "checkpoint_every": 4}
    config = tiny_config(objective="eps", schedule="cosine", train=train)
    trainer = Trainer(config, tmp_path)
    _inject(trainer, 6, value)
    with pytest.raises(NonFiniteLossError) as error:
        trainer.fit()
    assert str(error.value) == (
        f"training loss is {value} at step 6 (dataset digits, parameterization eps, objective eps, "
        "schedule cosine, seed 0); lower train.lr (0.003) or set train.grad_clip > 0")
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    assert state["step"] == 4
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    with (tmp_path / "train_log.csv.partial").open() as f:
        steps = [int(row["step"]) for row in csv.DictReader(f)]
    assert steps == [s for s in range(1, 6) if s % log_every == 0]
    assert not (tmp_path / "model.pt").exists()


def test_a_step_reads_no_device_value(tmp_path: Path, monkeypatch) -> None:
    """Within train_step the package's code never converts a tensor to a Python number or bool
    (each would wait for the device on a GPU); fit() reads once per log row and check."""
    reads: list[str] = []
    inside = [False]

    def counting(name):
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if caller.startswith(VDM_DIR):
                reads.append(f"{name} {caller}:{sys._getframe(1).f_lineno} in_step={inside[0]}")
            return original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapper)

    for name in ("__float__", "__int__", "__bool__", "__index__", "item", "tolist", "numpy"):
        counting(name)
    config = tiny_config(schedule="learned", objective="elbo",
                         train={**TINY["train"], "log_every": 6, "checkpoint_every": 100})
    trainer = Trainer(config, tmp_path)
    step = trainer.train_step

    def flagged():
        inside[0] = True
        try:
            return step()
        finally:
            inside[0] = False

    trainer.train_step = flagged
    trainer.fit()
    assert not [r for r in reads if r.endswith("in_step=True")], reads
    assert reads  # the log rows do read (2 rows here)


def test_fused_adamw_only_on_cuda_and_device_settings() -> None:
    trainer_config = tiny_config()
    from vdm.model.diffusion import build_model

    model = build_model((1, 8, 8), 17, "eps", "learned", trainer_config.model.__dict__, -10.0, 7.0)
    assert make_optimizer(model, trainer_config.train, torch.device("cuda")).defaults["fused"] is True
    cpu = make_optimizer(model, trainer_config.train, torch.device("cpu"))
    assert not cpu.defaults["fused"] and len(cpu.param_groups) == 2
    settings = configure_device(run_config_from_dict({"train": {"threads": 1}}), torch.device("cpu"))
    assert settings == {"device": "cpu", "batch_size": 128, "bf16_autocast": False,
                        "torch_compile": False, "fused_adamw": False, "cudnn_benchmark": False,
                        "tf32": False, "torch_threads": 1}
