"""Training loop: AdamW with linear warm-up, gradient clipping, EMA, exact resumption.

Determinism: the model is initialised from ``seed``; minibatch ``b`` is the ``b``-th slice of a
permutation of the training set drawn from ``(seed, epoch)`` alone; time steps and noise come
from a dedicated ``torch.Generator``; dropout uses torch's global RNG. A checkpoint stores model,
EMA, optimizer, LR scheduler, step, elapsed time, every RNG state, the data order (the current
epoch's permutation, checked on resume) and the log rows so far, so ``N/2 steps + kill + resume
+ N/2 steps`` gives bitwise the same weights and log as ``N`` steps on CPU.

Files in the run directory: ``state.pt`` (rolling checkpoint every ``checkpoint_every`` steps,
removed when training ends; not a Snakemake output, so a rerun of an incomplete job resumes from
it), ``model.pt`` (final checkpoint, written last and atomically), ``train_log.csv`` (one row
every ``log_every`` steps: step, loss, grad_norm, lr, images_per_sec, ...; written atomically at
the end, while ``train_log.csv.partial`` grows during training), ``train.json`` (summary),
and ``snapshots/step<k>.pt``, the state after each step ``k < train.steps`` of
``train.snapshots``, in ``model.pt``'s format (:mod:`vdm.training.snapshots`).
A loss that is NaN or infinite stops training with :class:`NonFiniteLossError` naming the first
such step.

No host sync per step. A training step only queues work on the device: its loss and gradient
norm stay device tensors, and nothing reads a device value (``float``, ``item``, ``bool``) until
the next log row (every ``log_every`` steps), checkpoint or the end of ``fit()`` (and a progress
line, which reads the loss it shows). There the losses of all steps since the previous check are
read at once (one sync): the first non-finite one is reported with its own step number, before
anything is logged or saved, so the log, the error message and the checkpoints are those of a
loop that checked every step (tested on CPU, where the two are also bitwise identical in weights
and log values). On CUDA the trainer also
turns on cuDNN autotuning and TF32 matmuls/convolutions, uses the fused AdamW and keeps the
training set and each epoch's permutation on the device (see :func:`configure_device`; the
settings are recorded in every result's provenance).

Progress: :meth:`Trainer.fit` writes a line to stderr every ``VDM_PROGRESS_SECONDS`` (default
10 s; :mod:`vdm.core.progress`) with steps done of the target, images/s and ETA (averages since
the first step), elapsed time and the loss of the step just queued (read then: one sync per
line, none in between), and a final line; a tqdm bar instead on a terminal.
"""

from __future__ import annotations

import csv
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vdm.core.checkpoint import CheckpointError, capture_rng_states, load_checkpoint, restore_rng_states
from vdm.core.config import RunConfig, TrainConfig, run_config_from_dict
from vdm.core.data import ImageData, load_dataset
from vdm.core.dataset_facts import dataset_info
from vdm.core.progress import Progress
from vdm.core.provenance import (
    atomic_output,
    determinism_note,
    provenance,
    resolve_device,
    save_torch_atomic,
    write_json_atomic,
)
from vdm.model.diffusion import DiffusionModel, build_model
from vdm.model.network import check_labels, count_parameters
from vdm.model.schedules import schedule_endpoints
from vdm.training.ema import EMA
from vdm.training.snapshots import (
    missing_snapshot,
    remove_snapshots,
    snapshot_file,
    snapshot_files,
    snapshot_steps,
    with_snapshots_key,
)
from vdm.training.train_log import LOG_COLUMNS


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


class IncompatibleCheckpoint(ValueError):
    """A readable ``state.pt`` that is not a training state of this run (another config, another
    data order, or not a training state at all)."""


#: the entries of a training state (:meth:`Trainer.state_dict`)
STATE_KEYS = ("config", "step", "seconds", "model", "ema", "optimizer", "lr_schedule", "rng",
              "data_order", "log_rows", "resumed_from")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_permutation(epoch: int, num_examples: int, seed: int) -> torch.Tensor:
    """The order in which epoch ``epoch`` visits the training set (a function of seed and epoch)."""
    return torch.randperm(num_examples, generator=torch.Generator().manual_seed(
        seed * 1_000_003 + epoch))


def epoch_and_position(step: int, num_examples: int, batch_size: int) -> tuple[int, int]:
    """``(epoch, minibatch index within the epoch)`` of training step ``step``."""
    per_epoch = num_examples // batch_size
    if per_epoch == 0:
        raise ValueError(f"train.batch_size ({batch_size}) exceeds the training set "
                         f"({num_examples} examples)")
    return divmod(step, per_epoch)


def make_optimizer(model: DiffusionModel, cfg: TrainConfig,
                   device: torch.device | str | None = None) -> torch.optim.AdamW:
    """AdamW over the network (and, with its own LR and no weight decay, the learned schedule).

    On a CUDA ``device`` the fused implementation (one kernel for every parameter, step counts
    kept on the device: no host sync); elsewhere torch's default, so CPU results are unchanged.
    """
    fused = {"fused": True} if device is not None and torch.device(device).type == "cuda" else {}
    groups = [{"params": list(model.network.parameters()), "lr": cfg.lr}]
    schedule_params = list(model.schedule.parameters())
    if schedule_params:
        groups.append({"params": schedule_params, "lr": cfg.schedule_lr or cfg.lr,
                       "weight_decay": 0.0})
    return torch.optim.AdamW(groups, betas=(0.9, cfg.adam_beta2), weight_decay=cfg.weight_decay,
                             **fused)


def configure_device(config: RunConfig, device: torch.device) -> dict[str, Any]:
    """Apply the process-wide settings a training loop on ``device`` runs with; return them.

    CPU: ``train.threads`` intra-op threads when set (nothing else changes, so CPU numbers stay
    bitwise those of earlier versions). CUDA: ``cudnn.benchmark`` (autotuned convolution
    algorithms for the fixed batch shape) and TF32 for fp32 matmuls and convolutions (10-bit
    mantissa products, fp32 accumulation; the bf16 configs run their matmuls in bf16 anyway).
    Returned: everything that decides the loop's speed besides the model (device, batch size,
    bf16 autocast, torch.compile, fused AdamW, cuDNN/TF32 flags, torch threads), so the bench's
    bare loop can run with, and be checked to run with, exactly the trainer's settings.
    """
    cuda = device.type == "cuda"
    if config.train.threads and device.type == "cpu":
        torch.set_num_threads(config.train.threads)
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return {"device": str(device), "batch_size": config.train.batch_size,
            "bf16_autocast": config.train.bf16, "torch_compile": config.train.compile,
            "fused_adamw": cuda, "cudnn_benchmark": cuda and torch.backends.cudnn.benchmark,
            "tf32": cuda and torch.backends.cuda.matmul.allow_tf32,
            "torch_threads": torch.get_num_threads()}


def compile_network(network: nn.Module) -> None:
    """``torch.compile`` the network in place (``nn.Module.compile``), specialised to static
    shapes (``dynamic=False``): a training run never changes its batch shape, and another shape
    (e.g. a second model size in the same process) recompiles instead of switching to
    dynamic-shape kernels."""
    network.compile(dynamic=False)


def warmup_factor(warmup_steps: int):
    return lambda step: min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0


class Trainer:
    """Trains one :class:`DiffusionModel` described by a :class:`RunConfig` into ``out_dir``."""

    def __init__(self, config: RunConfig, out_dir: str | Path,
                 train_data: ImageData | None = None) -> None:
        self.config, self.out_dir = config, Path(out_dir)
        self.device = resolve_device(config.device)
        self.settings = configure_device(config, self.device)
        self.data = train_data or load_dataset(config.dataset, "train", config.data_root,
                                               config.download)
        epoch_and_position(0, len(self.data), config.train.batch_size)  # batch size fits
        seed_everything(config.seed)
        self.model = build_model(self.data.shape, self.data.num_levels, config.objective,
                                 config.schedule, config.model.__dict__, config.logsnr_min,
                                 config.logsnr_max, config.objective_kwargs,
                                 config.parameterization, model_num_classes(config)
                                 ).to(self.device)
        self.ema = EMA(self.model, config.train.ema_decay)
        self.optimizer = make_optimizer(self.model, config.train, self.device)
        self.lr_schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_factor(config.train.warmup_steps))
        self.noise = torch.Generator(self.device).manual_seed(config.seed + 1)
        self.step, self.seconds = 0, 0.0
        self.log_rows: list[list[float]] = []
        self.resumed_from: list[int] = []
        self._epoch, self._permutation = -1, torch.empty(0, dtype=torch.int64)
        self._device_order: tuple[int, torch.Tensor | None] = (-1, None)  # epoch, permutation
        self._unchecked: list[tuple[int, torch.Tensor]] = []  # (step, loss) not yet checked
        self.x_train = self.data.model_inputs().to(self.device)
        self.y_train: torch.Tensor | None = None
        if config.conditioning.enabled:
            check_labels(self.data.labels, self.model.num_classes, name="training labels")
            self.y_train = self.data.labels.to(self.device)
        if config.train.compile:
            compile_network(self.model.network)

    # ----- data order --------------------------------------------------------------------
    def permutation(self, epoch: int) -> torch.Tensor:
        """The visiting order of epoch ``epoch`` (cached: drawn once per epoch)."""
        if epoch != self._epoch:
            self._epoch = epoch
            self._permutation = epoch_permutation(epoch, len(self.data), self.config.seed)
        return self._permutation

    def batch_index(self) -> torch.Tensor:
        """Indices (on the device) of minibatch ``self.step``: slice ``position`` of the
        permutation of epoch ``step // (N // B)`` (:func:`epoch_and_position`,
        :func:`epoch_permutation`)."""
        batch_size = self.config.train.batch_size
        epoch, position = epoch_and_position(self.step, len(self.data), batch_size)
        if self._device_order[0] != epoch:  # one host-to-device copy per epoch, not per step
            self._device_order = (epoch, self.permutation(epoch).to(self.device))
        order = self._device_order[1]
        assert order is not None
        return order[position * batch_size:(position + 1) * batch_size]

    def batch(self) -> torch.Tensor:
        """Model inputs of minibatch ``self.step`` (:meth:`batch_index`)."""
        return self.x_train[self.batch_index()]

    def conditioning(self) -> dict[str, Any]:
        """Extra arguments of :meth:`DiffusionModel.losses` for minibatch ``self.step``: its labels
        (same indices as :meth:`batch`) and the label dropout for a conditional run; ``{}`` for an
        unconditional one."""
        if self.y_train is None:
            return {}
        return {"labels": self.y_train[self.batch_index()],
                "label_dropout": self.config.conditioning.label_dropout}

    # ----- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        epoch, _ = epoch_and_position(self.step, len(self.data), self.config.train.batch_size)
        return {
            "config": self.config.to_dict(),
            "step": self.step,
            "seconds": self.seconds,
            "model": self.model.state_dict(),
            "ema": self.ema.shadow.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_schedule": self.lr_schedule.state_dict(),
            "rng": capture_rng_states(self.noise),
            "data_order": {"epoch": epoch, "permutation": self.permutation(epoch).clone()},
            "log_rows": [list(row) for row in self.log_rows],
            "resumed_from": list(self.resumed_from),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; :class:`IncompatibleCheckpoint` if it is not a training
        state of this run. Anything else that goes wrong (a bug) raises as it is."""
        missing = [key for key in STATE_KEYS if key not in state]
        if missing:
            raise IncompatibleCheckpoint(f"it is not a training state (no {', '.join(missing)})")
        if with_snapshots_key(state["config"]) != self.config.to_dict():
            raise IncompatibleCheckpoint("it was written with a different config")
        order = state["data_order"]
        if not (isinstance(order, dict) and torch.is_tensor(order.get("permutation"))
                and torch.equal(order["permutation"], epoch_permutation(
                    order.get("epoch", -1), len(self.data), self.config.seed))):
            raise IncompatibleCheckpoint("its data order differs from this torch version's")
        self.model.load_state_dict(state["model"])
        self.ema.shadow.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_schedule.load_state_dict(state["lr_schedule"])
        self.step, self.seconds = state["step"], state["seconds"]
        self.log_rows = [list(row) for row in state["log_rows"]]
        self.resumed_from = list(state["resumed_from"])
        restore_rng_states(state["rng"], self.noise)

    def save(self, name: str) -> Path:
        path = self.out_dir / name
        save_torch_atomic(self.state_dict(), path)
        return path

    def resume(self) -> bool:
        """Load ``out_dir/state.pt`` if it exists and belongs to this run.

        An unreadable, corrupt or foreign checkpoint (:class:`CheckpointError`,
        :class:`IncompatibleCheckpoint`) is moved aside (``state.pt.bad``) with a one-line
        warning and the run starts over, so one bad file never stops a grid. Any other error
        while restoring is a bug and is raised, never turned into a silent restart.
        """
        path = self.out_dir / "state.pt"
        if not path.exists():
            return False
        try:
            state = load_checkpoint(path, self.device)
            if isinstance(state.get("step"), int) and (
                    missing := missing_snapshot(self.out_dir, self.config.train, state["step"])):
                raise IncompatibleCheckpoint(f"it is at step {state['step']}, past the snapshot "
                                             f"{missing}, which is missing")
            self.load_state_dict(state)
        except (CheckpointError, IncompatibleCheckpoint) as error:
            reason = str(error) if isinstance(error, CheckpointError) else (
                f"checkpoint {path} cannot resume this run ({error})")
            path.replace(path.with_name("state.pt.bad"))
            print(f"vdm train: warning: {reason}; moved it to state.pt.bad, starting this run "
                  "over", file=sys.stderr)
            return False
        self.resumed_from.append(self.step)
        return True

    # ----- training ----------------------------------------------------------------------
    def train_step(self) -> dict[str, torch.Tensor]:
        """One optimisation step (step number ``self.step + 1``), queued on the device.

        Returns the step's batch-mean loss and its gradient norm before clipping (L2 over all
        parameters) as 0-dim device tensors: reading them (``float``) waits for the device, so
        :meth:`fit` does it only every ``log_every`` steps. The loss is also kept for
        :meth:`check_finite`; a non-finite loss is reported there, naming this step.
        """
        cfg = self.config.train
        self.model.train()
        x = self.batch()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            losses = self.model.losses(x, generator=self.noise, **self.conditioning())
        loss = losses["loss"].detach().mean()
        self._unchecked.append((self.step + 1, loss))
        self.optimizer.zero_grad(set_to_none=True)
        self.model.backward(losses)
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(),
                                             cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
        self.optimizer.step()
        self.lr_schedule.step()
        self.ema.update(self.model, self.step)
        self.step += 1
        return {"loss": loss, "grad_norm": grad_norm}

    def check_finite(self) -> None:
        """Raise :class:`NonFiniteLossError` naming the first step, among those run since the
        last check, whose batch-mean loss was NaN or infinite; one host sync for all of them.

        The steps after it have run too (on NaN weights), but nothing of them is logged or
        saved: :meth:`fit` checks before every log row and every checkpoint.
        """
        if not self._unchecked:
            return
        steps = [step for step, _ in self._unchecked]
        values = torch.stack([loss for _, loss in self._unchecked]).float().cpu()
        self._unchecked = []
        bad = (~torch.isfinite(values)).nonzero()
        if len(bad):
            first = int(bad[0, 0])
            c, cfg = self.config, self.config.train
            raise NonFiniteLossError(
                f"training loss is {float(values[first])} at step {steps[first]} (dataset "
                f"{c.dataset}, parameterization {c.parameterization}, objective {c.objective}, "
                f"schedule {c.schedule}, seed {c.seed}); lower train.lr ({cfg.lr}) or set "
                "train.grad_clip > 0")

    def _log_row(self, metrics: dict[str, float], images_per_sec: float) -> list[float]:
        with torch.no_grad():
            logsnr_max, logsnr_min = (float(v) for v in schedule_endpoints(self.model.schedule))
        return [self.step, metrics["loss"], metrics["grad_norm"],
                self.optimizer.param_groups[0]["lr"], images_per_sec, round(self.seconds, 3),
                logsnr_max, logsnr_min]

    def _write_log(self, path: Path) -> None:
        with atomic_output(path) as tmp, tmp.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(LOG_COLUMNS)
            writer.writerows(self.log_rows)

    def fit(self, stop_at: int | None = None) -> dict[str, Any]:
        """Train until ``train.steps`` (or ``stop_at``, leaving ``state.pt`` to resume from).

        Resumes from ``out_dir/state.pt`` when it exists (see :meth:`resume`); a run that
        starts from step 0 removes earlier snapshots, and every step of
        :func:`snapshot_steps` reached is saved as :func:`snapshot_file`. Returns the
        ``train.json`` summary, or ``{}`` when stopped early. Raises
        :class:`NonFiniteLossError` when the loss becomes NaN or infinite.
        """
        started = time.perf_counter()
        cfg = self.config.train
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if not self.resume():
            remove_snapshots(self.out_dir)  # an earlier run's: this one writes its own
        target = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
        snapshots = set(snapshot_steps(cfg))
        partial_log = self.out_dir / "train_log.csv.partial"
        self._write_log(partial_log)
        metrics = {"loss": float("nan")}  # the last logged step's values (floats)
        with partial_log.open("a", newline="") as log_file:
            writer = csv.writer(log_file)
            progress = Progress(f"train {self._description()}", "steps",
                                rate_unit="images", rate_scale=cfg.batch_size)
            tick, images = time.perf_counter(), 0
            while self.step < target:
                queued = self.train_step()  # device tensors: no sync here
                images += cfg.batch_size
                # the loss is read (a sync) only when a progress line is written
                progress(self.step, target, loss=lambda loss=queued["loss"]: float(loss))
                if self.step % cfg.log_every == 0 or self.step == target:
                    self.check_finite()  # waits for the queued steps
                    metrics = {name: float(value) for name, value in queued.items()}
                    now = time.perf_counter()
                    self.seconds += now - tick
                    row = self._log_row(metrics, images / max(now - tick, 1e-9))
                    self.log_rows.append(row)
                    writer.writerow(row)
                    log_file.flush()
                    tick, images = now, 0
                if self.step in snapshots:  # before state.pt: a checkpoint implies its snapshots
                    self.check_finite()  # never a snapshot with NaN weights
                    self.save(snapshot_file(self.step))
                if self.step % cfg.checkpoint_every == 0 and self.step < cfg.steps:
                    self.check_finite()  # never a checkpoint with NaN weights
                    self.save("state.pt")
            progress.close()
        self.check_finite()
        if self.step < cfg.steps:
            self.save("state.pt")
            return {}
        return self._finish(metrics, time.perf_counter() - started)

    def _description(self) -> str:
        c = self.config
        return f"{c.dataset} {c.parameterization}/{c.objective}/{c.schedule} seed {c.seed}"

    def _finish(self, metrics: dict[str, float], wall_seconds: float) -> dict[str, Any]:
        with torch.no_grad():
            logsnr_max, logsnr_min = (float(v) for v in schedule_endpoints(self.ema.shadow.schedule))
        summary = {
            "dataset": self.config.dataset, "parameterization": self.config.parameterization,
            "objective": self.config.objective, "schedule": self.config.schedule,
            "seed": self.config.seed,
            "steps": self.step,
            "snapshots": [{"step": step, "file": name}
                          for step, name in snapshot_files(self.config.train).items()],
            "train_seconds": round(self.seconds, 3),
            "wall_seconds": round(wall_seconds, 3), "resumed_from": self.resumed_from,
            "final_loss": metrics["loss"], "num_params": count_parameters(self.model.network),
            "logsnr_max": logsnr_max, "logsnr_min": logsnr_min,
            "config": self.config.to_dict(), "provenance": provenance(self.device),
            "determinism": determinism_note(self.device),
        }
        self._write_log(self.out_dir / "train_log.csv")
        self.save("model.pt")
        write_json_atomic(self.out_dir / "train.json", summary)
        (self.out_dir / "state.pt").unlink(missing_ok=True)
        (self.out_dir / "train_log.csv.partial").unlink(missing_ok=True)
        return summary


def model_num_classes(config: RunConfig) -> int | None:
    """Classes of the dataset for a conditional run (``conditioning.enabled``), else None."""

    return dataset_info(config.dataset)["num_classes"] if config.conditioning.enabled else None


def load_trained_model(path: str | Path, device: torch.device | str = "cpu",
                       use_ema: bool = True) -> tuple[DiffusionModel, RunConfig]:
    """Load ``model.pt`` (safely, see :func:`vdm.core.checkpoint.load_checkpoint`): the EMA weights
    by default, in eval mode. Raises :class:`CheckpointError` naming the file if it is missing,
    corrupt or not a model checkpoint."""

    path = Path(path)
    try:
        state = load_checkpoint(path, device)
    except CheckpointError as error:
        if "truncated or corrupt" not in str(error):
            raise
        raise CheckpointError(f"{error}; rerun the job that wrote it") from None
    try:
        config = run_config_from_dict(state["config"])
        info = dataset_info(config.dataset)
        model = build_model(tuple(info["shape"]), info["num_levels"], config.objective,
                            config.schedule, config.model.__dict__, config.logsnr_min,
                            config.logsnr_max, config.objective_kwargs, config.parameterization,
                            model_num_classes(config))
        model.load_state_dict(state["ema"] if use_ema else state["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise CheckpointError(f"{path} is not a vdm model checkpoint ({first})") from None
    return model.to(device).eval(), config
