"""Noise-conditional classifier ``p_phi(y | z_lambda, lambda)`` for classifier guidance.

Dhariwal & Nichol (2021) guide sampling with a classifier trained on *noisy* images: ``z =
alpha x + sigma eps`` with ``alpha^2 = sigmoid(lambda)``, ``sigma^2 = sigmoid(-lambda)``. Here
``lambda`` is drawn uniformly on ``[logsnr_min, logsnr_max]`` (the log-SNR range of the diffusion
models it will guide; trained once per dataset and range, whatever the schedule's shape, since
a fixed schedule only reparameterises time inside that range; a learned schedule's end points
move in training, which :func:`vdm.model.guidance.classifier_range_check` records and warns
about), ``x`` in ``[-1, 1]`` are the model inputs of :mod:`vdm.core.data` and ``eps ~ N(0, I)``;
the loss is the cross-entropy.

The network is a small ResNet built from the UNet's pieces (:class:`vdm.model.network.ResBlock`:
GroupNorm + SiLU, no batch statistics, so each example's gradient ``grad_z log p(y | z)`` is its
own) conditioned on ``lambda`` through the UNet's sinusoidal features and an MLP; stride-2
convolutions down to at most 4x4, a global mean and a linear head. It is smooth in ``z``
(SiLU, no max-pooling), which guidance gradients want.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vdm.core.checkpoint import load_checkpoint
from vdm.core.data import ImageData
from vdm.core.progress import ProgressCallback
from vdm.core.provenance import save_torch_atomic
from vdm.model.network import ResBlock, _norm, log_snr_features
from vdm.model.schedules import alpha_sigma

FORMAT = "vdm-noisy-classifier-v1"


class NoisyClassifier(nn.Module):
    """``logits = NoisyClassifier(z, lambda)``, ``(B, num_classes)``, for images ``(C, H, W)``.

    Stem convolution, then per resolution level one :class:`ResBlock` with ``channels * min(2^l,
    4)`` channels followed by a stride-2 convolution while the resolution exceeds 4, a final
    ResBlock, GroupNorm + SiLU, the spatial mean and a linear layer. ``lambda`` enters every
    ResBlock through ``MLP(log_snr_features(lambda, channels))``.
    """

    def __init__(self, image_shape: Sequence[int], num_classes: int = 10,
                 channels: int = 16) -> None:
        super().__init__()
        c_img, height, _ = (int(s) for s in image_shape)
        self.image_shape = [int(s) for s in image_shape]
        self.num_classes, self.channels = int(num_classes), int(channels)
        emb_dim = 4 * channels
        self.embed = nn.Sequential(nn.Linear(channels, emb_dim), nn.SiLU(),
                                   nn.Linear(emb_dim, emb_dim))
        self.stem = nn.Conv2d(c_img, channels, 3, padding=1)
        self.blocks = nn.ModuleList()
        c, res, level = channels, height, 0
        while res > 4:
            c_out = channels * min(2**level, 4)
            self.blocks.append(ResBlock(c, c_out, emb_dim, 0.0))
            self.blocks.append(nn.Conv2d(c_out, c_out, 3, stride=2, padding=1))
            c, res, level = c_out, (res + 1) // 2, level + 1
        self.blocks.append(ResBlock(c, c, emb_dim, 0.0))
        self.head = nn.Sequential(_norm(c), nn.SiLU())
        self.out = nn.Linear(c, self.num_classes)

    def arch_args(self) -> dict[str, Any]:
        """Constructor arguments (enough to rebuild the architecture)."""
        return {"image_shape": list(self.image_shape), "num_classes": self.num_classes,
                "channels": self.channels}

    def forward(self, z: torch.Tensor, log_snr: torch.Tensor) -> torch.Tensor:
        """``z``: ``(B, C, H, W)``; ``log_snr``: ``(B,)``. Returns logits ``(B, num_classes)``."""
        features = log_snr_features(log_snr, self.channels).to(self.stem.weight.dtype)
        emb = self.embed(features).to(z.dtype)
        h = self.stem(z)
        for block in self.blocks:
            h = block(h, emb) if isinstance(block, ResBlock) else block(h)
        return self.out(self.head(h).mean(dim=(2, 3)))


def noisy_inputs(x: torch.Tensor, log_snr: torch.Tensor, generator: torch.Generator | None
                 ) -> torch.Tensor:
    """``z = alpha x + sigma eps`` for ``log_snr`` of shape ``(B,)``, ``eps`` from ``generator``."""
    eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    alpha, sigma = (a.view(-1, 1, 1, 1).to(x.dtype) for a in alpha_sigma(log_snr))
    return alpha * x + sigma * eps


@torch.no_grad()
def noisy_accuracy(model: NoisyClassifier, data: ImageData, log_snr: float | None, *,
                   logsnr_min: float, logsnr_max: float, seed: int = 0,
                   device: torch.device | str = "cpu", batch_size: int = 500) -> float:
    """Top-1 accuracy on ``data`` noised at ``log_snr`` (None: ``lambda`` uniform on the range,
    one draw per image), with noise from a generator seeded by ``seed`` (deterministic)."""
    generator = torch.Generator(device).manual_seed(seed)
    model.eval()
    correct = 0
    for start in range(0, len(data), batch_size):
        index = torch.arange(start, min(start + batch_size, len(data)))
        x = data.model_inputs(index).to(device)
        if log_snr is None:
            lam = logsnr_min + (logsnr_max - logsnr_min) * torch.rand(
                len(index), generator=generator, device=device)
        else:
            lam = torch.full((len(index),), float(log_snr), device=device)
        logits = model(noisy_inputs(x, lam, generator), lam)
        correct += int((logits.argmax(1).cpu() == data.labels[index]).sum())
    return correct / max(1, len(data))


def evaluation_log_snrs(logsnr_min: float, logsnr_max: float) -> list[float]:
    """The noise levels the accuracy is reported at: ``lambda_max``, 0, -5, ``lambda_min``
    (those inside the range, in decreasing order)."""
    values = {float(logsnr_max), float(logsnr_min)}
    values.update(v for v in (0.0, -5.0) if logsnr_min <= v <= logsnr_max)
    return sorted(values, reverse=True)


def train_noisy_classifier(train: ImageData, test: ImageData, *, logsnr_min: float,
                           logsnr_max: float, steps: int = 1000, batch_size: int = 128,
                           lr: float = 3e-3, channels: int = 16, seed: int = 0,
                           device: torch.device | str = "cpu", num_threads: int | None = None,
                           progress: ProgressCallback | None = None
                           ) -> tuple[NoisyClassifier, dict[str, Any]]:
    """Train a :class:`NoisyClassifier` (module docstring); returns it (eval mode, on ``device``)
    and its metrics.

    AdamW (weight decay 1e-4) with cosine decay of ``lr``; minibatch indices, ``lambda`` and the
    noise come from one generator seeded with ``seed``, the initialisation from ``seed`` too:
    deterministic on CPU. ``num_threads`` sets torch's CPU threads for the call. Metrics:
    ``accuracy_by_logsnr`` (test accuracy at :func:`evaluation_log_snrs`, keys ``"%g"`` of
    ``lambda``), ``accuracy_uniform_logsnr`` (``lambda`` uniform on the range), ``train_seconds``.
    ``progress`` (optional, :class:`vdm.core.progress.ProgressCallback`): told the steps done of
    ``steps``, with the step's loss (read only when shown).
    """
    if not logsnr_min < logsnr_max:
        raise ValueError(f"--logsnr-min ({logsnr_min}) must be below --logsnr-max ({logsnr_max})")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"--steps and --batch-size must be >= 1, got {steps}, {batch_size}")
    num_classes = int(train.labels.max()) + 1
    previous = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(int(num_threads))
    try:
        started = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = NoisyClassifier(train.shape, num_classes, channels).to(device)
        x_train = train.model_inputs().to(device)
        y_train = train.labels.to(device)
        generator = torch.Generator(device).manual_seed(seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        model.train()
        for step in range(steps):
            index = torch.randint(0, len(train), (min(batch_size, len(train)),),
                                  generator=generator, device=device)
            lam = logsnr_min + (logsnr_max - logsnr_min) * torch.rand(
                len(index), generator=generator, device=device)
            loss = F.cross_entropy(model(noisy_inputs(x_train[index], lam, generator), lam),
                                   y_train[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if progress is not None:
                progress(step + 1, steps, loss=lambda value=loss: float(value.detach()))
        model.eval()
        train_seconds = time.perf_counter() - started
        kwargs = {"logsnr_min": logsnr_min, "logsnr_max": logsnr_max, "seed": seed + 1,
                  "device": device}
        metrics = {
            "accuracy_by_logsnr": {f"{lam:g}": noisy_accuracy(model, test, lam, **kwargs)
                                   for lam in evaluation_log_snrs(logsnr_min, logsnr_max)},
            "accuracy_uniform_logsnr": noisy_accuracy(model, test, None, **kwargs),
            "final_loss": float(loss.detach()),
            "train_seconds": round(train_seconds, 3),
        }
    finally:
        torch.set_num_threads(previous)
    if not math.isfinite(metrics["final_loss"]):
        raise FloatingPointError(f"noisy classifier training diverged (loss "
                                 f"{metrics['final_loss']}); lower --lr ({lr})")
    return model.requires_grad_(False), metrics


def save_noisy_classifier(model: NoisyClassifier, path: str | os.PathLike,
                          meta: Mapping[str, Any]) -> Path:
    """Save weights, architecture and ``meta`` atomically. ``meta`` must name the ``dataset``
    and the ``logsnr_min``/``logsnr_max`` range it was trained on; ``num_classes`` and the
    format tag are added."""
    missing = [key for key in ("dataset", "logsnr_min", "logsnr_max") if key not in meta]
    if missing:
        raise ValueError(f"noisy classifier meta lacks {', '.join(missing)}")
    payload = {"format": FORMAT, "arch": model.arch_args(),
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "meta": {**dict(meta), "num_classes": model.num_classes, "format": FORMAT}}
    return save_torch_atomic(payload, path)


def load_noisy_classifier(path: str | os.PathLike, dataset: str | None = None,
                          map_location: torch.device | str = "cpu") -> NoisyClassifier:
    """Load a :func:`save_noisy_classifier` file (``weights_only``; eval mode, no gradients to
    its parameters), its ``meta`` attached as ``model.meta``. One-line ``ValueError`` when it is
    not such a file, records no dataset, or was trained on another ``dataset`` than the one
    given (:class:`vdm.core.checkpoint.CheckpointError`, a ``ValueError``, when missing/corrupt)."""
    payload = load_checkpoint(path, map_location)
    if payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} checkpoint (train one with `python -m vdm "
                         "noisy-classifier`)")
    meta = payload.get("meta")
    trained_on = meta.get("dataset") if isinstance(meta, dict) else None
    if trained_on is None:
        raise ValueError(f"noisy classifier {path} does not record the dataset it was trained on "
                         "(no meta['dataset']); retrain it with `python -m vdm noisy-classifier`")
    if dataset is not None and trained_on != dataset:
        raise ValueError(f"noisy classifier {path} was trained on {trained_on!r}, not {dataset!r}")
    model = NoisyClassifier(**payload["arch"])
    model.load_state_dict(payload["state_dict"])
    model.meta = dict(meta)
    return model.to(map_location).requires_grad_(False).eval()
