"""Training loop: AdamW with linear warm-up, gradient clipping, EMA, exact resumption.

Determinism: the model is initialised from ``seed``; minibatch ``b`` is the ``b``-th slice of a
permutation of the training set drawn from ``(seed, epoch)`` alone (so data order needs no
state); time steps and noise come from a dedicated ``torch.Generator``; dropout uses torch's
global RNG. A checkpoint stores model, EMA, optimizer, LR scheduler, step, elapsed time and every
RNG state, so ``N/2 steps + resume + N/2 steps`` gives bitwise the same weights as ``N`` steps on
CPU.

Files in the run directory: ``state.pt`` (rolling checkpoint, removed when training ends),
``model.pt`` (final checkpoint, written last and atomically), ``train_log.csv`` (one row every
``log_every`` steps: step, loss, grad_norm, lr, images_per_sec, ...), ``train.json`` (summary).
"""

from __future__ import annotations

import copy
import csv
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from vdm.config import RunConfig, TrainConfig
from vdm.data import ImageData, load_dataset
from vdm.diffusion import DiffusionModel, build_model
from vdm.network import count_parameters
from vdm.provenance import provenance, resolve_device, save_torch_atomic, write_json_atomic
from vdm.schedules import schedule_endpoints

LOG_COLUMNS = ["step", "loss", "grad_norm", "lr", "images_per_sec", "seconds", "logsnr_max",
               "logsnr_min"]


class EMA:
    """Exponential moving average of all floating-point parameters and buffers of a module.

    After ``n`` updates the decay is ``min(decay, (1 + n) / (10 + n))`` (warm-up), so that short
    runs are not dominated by the initial weights.
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = copy.deepcopy(module).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, module: nn.Module, num_updates: int) -> None:
        decay = min(self.decay, (1 + num_updates) / (10 + num_updates))
        shadow = self.shadow.state_dict()
        for name, value in module.state_dict().items():
            if value.dtype.is_floating_point:
                shadow[name].lerp_(value, 1.0 - decay)
            else:
                shadow[name].copy_(value)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def batch_indices(step: int, num_examples: int, batch_size: int, seed: int) -> torch.Tensor:
    """Indices of minibatch ``step``: slice of the permutation of epoch ``step // (N // B)``."""
    per_epoch = num_examples // batch_size
    if per_epoch == 0:
        raise ValueError(f"train.batch_size ({batch_size}) exceeds the training set "
                         f"({num_examples} examples)")
    epoch, position = divmod(step, per_epoch)
    perm = torch.randperm(num_examples, generator=torch.Generator().manual_seed(
        seed * 1_000_003 + epoch))
    return perm[position * batch_size:(position + 1) * batch_size]


def make_optimizer(model: DiffusionModel, cfg: TrainConfig) -> torch.optim.AdamW:
    groups = [{"params": list(model.network.parameters()), "lr": cfg.lr}]
    schedule_params = list(model.schedule.parameters())
    if schedule_params:
        groups.append({"params": schedule_params, "lr": cfg.schedule_lr or cfg.lr,
                       "weight_decay": 0.0})
    return torch.optim.AdamW(groups, betas=(0.9, cfg.adam_beta2), weight_decay=cfg.weight_decay)


def warmup_factor(warmup_steps: int):
    return lambda step: min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0


class Trainer:
    """Trains one :class:`DiffusionModel` described by a :class:`RunConfig` into ``out_dir``."""

    def __init__(self, config: RunConfig, out_dir: str | Path,
                 train_data: ImageData | None = None) -> None:
        self.config, self.out_dir = config, Path(out_dir)
        self.device = resolve_device(config.device)
        if config.train.threads and self.device.type == "cpu":
            torch.set_num_threads(config.train.threads)
        self.data = train_data or load_dataset(config.dataset, "train", config.data_root,
                                               config.download)
        seed_everything(config.seed)
        self.model = build_model(self.data.shape, self.data.num_levels, config.objective,
                                 config.schedule, config.model.__dict__, config.logsnr_min,
                                 config.logsnr_max, config.objective_kwargs).to(self.device)
        self.ema = EMA(self.model, config.train.ema_decay)
        self.optimizer = make_optimizer(self.model, config.train)
        self.lr_schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_factor(config.train.warmup_steps))
        self.noise = torch.Generator(self.device).manual_seed(config.seed + 1)
        self.step, self.seconds = 0, 0.0
        self.x_train = self.data.model_inputs().to(self.device)
        if config.train.compile:
            self.model.network.compile()

    # ----- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "step": self.step,
            "seconds": self.seconds,
            "model": self.model.state_dict(),
            "ema": self.ema.shadow.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_schedule": self.lr_schedule.state_dict(),
            "rng": {
                "noise": self.noise.get_state(),
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "numpy": np.random.get_state(),
                "python": random.getstate(),
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["config"] != self.config.to_dict():
            raise ValueError("checkpoint was written with a different config; "
                             f"delete {self.out_dir / 'state.pt'} to start afresh")
        self.model.load_state_dict(state["model"])
        self.ema.shadow.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_schedule.load_state_dict(state["lr_schedule"])
        self.step, self.seconds = state["step"], state["seconds"]
        rng = state["rng"]
        self.noise.set_state(rng["noise"])
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])

    def save(self, name: str) -> Path:
        path = self.out_dir / name
        save_torch_atomic(self.state_dict(), path)
        return path

    # ----- training ----------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        cfg = self.config.train
        self.model.train()
        index = batch_indices(self.step, len(self.data), cfg.batch_size, self.config.seed)
        x = self.x_train[index.to(self.device)]
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            losses = self.model.losses(x, generator=self.noise)
        self.optimizer.zero_grad(set_to_none=True)
        self.model.backward(losses)
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(),
                                             cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
        self.optimizer.step()
        self.lr_schedule.step()
        self.ema.update(self.model, self.step)
        self.step += 1
        return {"loss": float(losses["loss"].detach().mean()), "grad_norm": float(grad_norm)}

    def _log_row(self, metrics: dict[str, float], images_per_sec: float) -> list[Any]:
        with torch.no_grad():
            logsnr_max, logsnr_min = (float(v) for v in schedule_endpoints(self.model.schedule))
        return [self.step, metrics["loss"], metrics["grad_norm"],
                self.optimizer.param_groups[0]["lr"], images_per_sec, round(self.seconds, 3),
                logsnr_max, logsnr_min]

    def _open_log(self):
        path = self.out_dir / "train_log.csv"
        rows = []
        if self.step > 0 and path.exists():
            with path.open() as f:
                rows = [r for r in csv.reader(f)][1:]
            rows = [r for r in rows if int(r[0]) <= self.step]
        f = path.open("w", newline="")
        writer = csv.writer(f)
        writer.writerow(LOG_COLUMNS)
        writer.writerows(rows)
        return f, writer

    def fit(self, stop_at: int | None = None) -> dict[str, Any]:
        """Train until ``train.steps`` (or ``stop_at``, leaving ``state.pt`` to resume from).

        Resumes from ``out_dir/state.pt`` when it exists. Returns the ``train.json`` summary, or
        ``{}`` when stopped early.
        """
        cfg = self.config.train
        self.out_dir.mkdir(parents=True, exist_ok=True)
        state_path = self.out_dir / "state.pt"
        if state_path.exists():
            self.load_state_dict(torch.load(state_path, map_location=self.device,
                                            weights_only=False))
        target = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
        log_file, writer = self._open_log()
        metrics = {"loss": float("nan")}
        try:
            bar = tqdm(total=target, initial=self.step, desc=self._description(), disable=None,
                       mininterval=2.0)
            tick, images = time.perf_counter(), 0
            while self.step < target:
                metrics = self.train_step()
                images += cfg.batch_size
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == target:
                    now = time.perf_counter()
                    self.seconds += now - tick
                    writer.writerow(self._log_row(metrics, images / max(now - tick, 1e-9)))
                    log_file.flush()
                    bar.set_postfix(loss=f"{metrics['loss']:.4f}")
                    tick, images = now, 0
                if self.step % cfg.checkpoint_every == 0 and self.step < cfg.steps:
                    self.save("state.pt")
            bar.close()
        finally:
            log_file.close()
        if self.step < cfg.steps:
            self.save("state.pt")
            return {}
        return self._finish(metrics)

    def _description(self) -> str:
        c = self.config
        return f"{c.dataset} {c.objective}/{c.schedule} seed {c.seed}"

    def _finish(self, metrics: dict[str, float]) -> dict[str, Any]:
        with torch.no_grad():
            logsnr_max, logsnr_min = (float(v) for v in schedule_endpoints(self.ema.shadow.schedule))
        summary = {
            "dataset": self.config.dataset, "objective": self.config.objective,
            "schedule": self.config.schedule, "seed": self.config.seed,
            "steps": self.step, "train_seconds": round(self.seconds, 3),
            "final_loss": metrics["loss"], "num_params": count_parameters(self.model.network),
            "logsnr_max": logsnr_max, "logsnr_min": logsnr_min,
            "config": self.config.to_dict(), "provenance": provenance(self.device),
        }
        self.save("model.pt")
        write_json_atomic(self.out_dir / "train.json", summary)
        (self.out_dir / "state.pt").unlink(missing_ok=True)
        return summary


def load_trained_model(path: str | Path, device: torch.device | str = "cpu",
                       use_ema: bool = True) -> tuple[DiffusionModel, RunConfig]:
    """Load ``model.pt``: the EMA weights by default, in eval mode."""
    from vdm.config import run_config_from_dict
    from vdm.data import dataset_info

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    state = torch.load(path, map_location=device, weights_only=False)
    config = run_config_from_dict(state["config"])
    info = dataset_info(config.dataset)
    model = build_model(tuple(info["shape"]), info["num_levels"], config.objective,
                        config.schedule, config.model.__dict__, config.logsnr_min,
                        config.logsnr_max, config.objective_kwargs)
    model.load_state_dict(state["ema"] if use_ema else state["model"])
    return model.to(device).eval(), config
