"""Training throughput: the real trainer against the bare PyTorch loop of the same model.

``train_loop_efficiency`` [ratio] = ``train_images_per_s`` / ``bare_images_per_s``, at the
config's own precision (``train.bf16``, ``train.compile``).

* ``train_images_per_s`` [images/s]: the real :class:`vdm.training.trainer.Trainer` (objective eps,
  schedule cosine), ``Trainer(...).fit()`` of ``S`` steps in a temporary directory, with
  everything the trainer does per step: data indexing, t and noise sampling, the objective,
  backward, gradient clipping, AdamW, LR schedule, EMA, the NaN check, CSV logging, progress
  bar and the checkpoint cadence of the config (with the digits config's 300 steps the timed
  window contains the step-250 checkpoint, with ``--quick`` none). Timing:
  ``train_step`` is wrapped (in the instance only) to record a ``perf_counter`` stamp when
  each step starts; the rate is ``batch * (S - 1 - W) / (stamp[S-1] - stamp[W])``, i.e. the
  wall time from the start of step ``W`` to the start of the last step, which contains steps
  ``W .. S-2`` and all the bookkeeping ``fit()`` does after each of them. On CUDA, where a
  step only queues work, the device is synchronised right before stamps ``1``, ``W`` and
  ``S-1`` (and never otherwise), so the window holds the device's work of those steps.
  Nothing is subtracted. The first ``W`` (warm-up) steps are excluded, as are the
  once-per-``fit()`` costs (resume check, final ``model.pt``/``train.json``/log writing); those
  are reported separately as ``train_fit_images_per_s`` [images/s] = ``batch * S /`` wall time
  of the whole ``fit()`` call. The median of the trainer's own ``train_log.csv``
  ``images_per_sec`` column (rows after warm-up) is recorded as a cross-check.
* ``bare_images_per_s`` [images/s]: the plain PyTorch loop of the same model
  (:class:`BareLoop`): the trainer's network (same constructor, config and initial weights)
  with exactly the trainer's settings (:func:`vdm.training.trainer.configure_device`: device, batch
  size, bf16 autocast, ``torch.compile``, the trainer's AdamW (fused on CUDA), cuDNN/TF32
  flags, threads; a test asserts they are equal), fixed random ``z``, ``log_snr`` and target
  drawn once, and per step only ``network(z, log_snr)``, MSE, ``zero_grad``, ``backward`` and
  an AdamW step; timed over the same window (same ``S``, ``W`` and synchronisation). It is a
  reference for the trainer's overhead, not a hardware limit (that is the matmul peak of
  :mod:`vdm.bench.flops`).
* ``train_loop_efficiency_learned`` [ratio]: the same with the learned schedule (extra
  schedule gradients), over the same bare loop (skipped when ``Sizes.learned`` is false).

Repeats are interleaved (real cosine, bare, real learned, real cosine, bare, ...) and the
medians over repeats are taken; the efficiency is the ratio of the medians.

Precision variants ``fp32`` (eager), ``bf16`` (eager, bf16 autocast) and ``bf16-compile`` (bf16
autocast + ``torch.compile``; ``--variants`` picks them): the same measurement (real cosine and
bare loop, ``Sizes.variant_repeats`` interleaved repeats; the config's own variant is the one
above) gives ``train_images_per_s_<v>``, ``train_loop_efficiency_<v>`` (and ``mfu_<v>``,
:mod:`vdm.bench.flops`); for compiled variants ``compile_seconds`` [s] = wall time of the first
step (which compiles; device synchronised after it) minus the steady-state step time
``batch / train_images_per_s``.
"""

from __future__ import annotations

import csv
import dataclasses
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from vdm.bench.clock import stamp, sync, window_rate
from vdm.bench.configs import cell_run_config, variant_name, with_variant
from vdm.bench.sizes import Sizes
from vdm.core.config import RunConfig
from vdm.core.data import ImageData, load_dataset
from vdm.core.provenance import resolve_device
from vdm.model.diffusion import build_model
from vdm.training.trainer import (
    Trainer,
    compile_network,
    configure_device,
    make_optimizer,
    seed_everything,
)


def time_real_trainer(run_config: RunConfig, out_dir: Path, warmup: int,
                      train_data: Any = None) -> dict[str, Any]:
    """One ``Trainer(run_config, out_dir).fit()``; rates in images/s, times in s (see module
    docstring). Construction (model build) is not timed; ``train_data`` avoids reloading data."""
    trainer = Trainer(run_config, out_dir, train_data=train_data)
    stamps: list[float] = []
    step = trainer.train_step
    cfg = run_config.train

    def stamped_step() -> dict[str, torch.Tensor]:
        stamp(stamps, trainer.device, cfg.steps, warmup)
        return step()

    trainer.train_step = stamped_step  # type: ignore[method-assign]
    started = time.perf_counter()
    trainer.fit()
    fit_seconds = time.perf_counter() - started
    del trainer.train_step
    if len(stamps) != cfg.steps:
        raise RuntimeError(f"Trainer.fit() ran {len(stamps)} train_step calls for {cfg.steps} "
                           "steps: the bench's timing hook no longer matches the trainer")
    return {
        "images_per_s": window_rate(stamps, cfg.batch_size, warmup),
        "fit_images_per_s": cfg.batch_size * cfg.steps / fit_seconds,
        "fit_seconds": fit_seconds,
        "first_step_seconds": stamps[1] - stamps[0],
        "log_images_per_s": _log_rate(out_dir / "train_log.csv", warmup),
        "timed_steps": len(stamps) - 1 - warmup,
        "settings": trainer.settings,
    }


def _log_rate(path: Path, warmup: int) -> float | None:
    """Median ``images_per_sec`` of train_log.csv rows logged after step ``warmup`` (None if no
    such rows or no file)."""
    if not path.is_file():
        return None
    with path.open() as f:
        rates = [float(row["images_per_sec"]) for row in csv.DictReader(f)
                 if int(row["step"]) > warmup]
    return statistics.median(rates) if rates else None


class BareLoop:
    """The plain PyTorch training loop of the trainer's model, with the trainer's settings.

    Built like :class:`vdm.training.trainer.Trainer` builds its model:
    :func:`vdm.training.trainer.configure_device`
    (threads, cuDNN/TF32 flags), the seed, :func:`vdm.model.diffusion.build_model`, the trainer's
    :func:`vdm.training.trainer.make_optimizer` (fused AdamW on CUDA) and
    :func:`vdm.training.trainer.compile_network` when ``train.compile`` is on. One :meth:`step`:
    ``network(z, log_snr)`` under bf16 autocast when ``train.bf16`` is on, MSE against a fixed
    target (in fp32), ``zero_grad``, ``backward``, AdamW step; ``z``, ``log_snr`` (uniform on the
    config's range) and the target are drawn once.
    """

    def __init__(self, run_config: RunConfig, image_shape: tuple[int, int, int],
                 num_levels: int = 256) -> None:
        self.config, cfg = run_config, run_config.train
        self.device = resolve_device(run_config.device)
        self.settings = configure_device(run_config, self.device)
        seed_everything(run_config.seed)
        model = build_model(image_shape, num_levels, "eps", "cosine",
                            dataclasses.asdict(run_config.model), run_config.logsnr_min,
                            run_config.logsnr_max).to(self.device)
        self.network = model.network.train()
        self.optimizer = make_optimizer(model, cfg, self.device)
        if cfg.compile:
            compile_network(self.network)
        generator = torch.Generator(self.device).manual_seed(run_config.seed)
        shape = (cfg.batch_size, *image_shape)
        self.z = torch.randn(shape, generator=generator, device=self.device)
        self.target = torch.randn(shape, generator=generator, device=self.device)
        span = run_config.logsnr_max - run_config.logsnr_min
        self.log_snr = run_config.logsnr_min + span * torch.rand(
            cfg.batch_size, generator=generator, device=self.device)

    def step(self) -> torch.Tensor:
        """One training step; returns the loss (a device tensor, not read)."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16,
                            enabled=self.config.train.bf16):
            eps_hat = self.network(self.z, self.log_snr)
        loss = F.mse_loss(eps_hat.float(), self.target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()


def time_bare_loop(run_config: RunConfig, image_shape: tuple[int, int, int], steps: int,
                   warmup: int, num_levels: int = 256) -> dict[str, Any]:
    """:class:`BareLoop` for ``steps`` steps; images/s over the same window (and the same
    synchronisation) as :func:`time_real_trainer`."""
    loop = BareLoop(run_config, image_shape, num_levels)
    stamps: list[float] = []
    for _ in range(steps):
        stamp(stamps, loop.device, steps, warmup)
        loop.step()
    sync(loop.device)
    return {"images_per_s": window_rate(stamps, run_config.train.batch_size, warmup),
            "first_step_seconds": stamps[1] - stamps[0],
            "timed_steps": steps - 1 - warmup, "settings": loop.settings}


def _variant_summary(runs: dict[str, list[dict[str, Any]]], batch_size: int) -> dict[str, Any]:
    """Medians over repeats (images/s) and their ratio; compile time of the first step (s)."""
    median = {name: statistics.median(r["images_per_s"] for r in rs) for name, rs in runs.items()
              if rs}
    out = {"train_images_per_s": median["cosine"], "bare_images_per_s": median["bare"],
           "train_loop_efficiency": median["cosine"] / median["bare"],
           "train_fit_images_per_s": statistics.median(r["fit_images_per_s"]
                                                       for r in runs["cosine"]),
           "first_step_seconds": runs["cosine"][0]["first_step_seconds"],
           "compile_seconds": runs["cosine"][0]["first_step_seconds"] - batch_size / median["cosine"],
           "repeats": len(runs["cosine"]), "per_repeat": runs,
           "settings": runs["cosine"][0]["settings"]}
    if "learned" in median:
        out["train_learned_images_per_s"] = median["learned"]
        out["train_loop_efficiency_learned"] = median["learned"] / median["bare"]
    return out


def measure_train_efficiency(config: dict[str, Any], sizes: Sizes, work_dir: Path,
                             threads: int, data: ImageData | None = None,
                             progress: Callable[[dict[str, Any]], None] | None = None
                             ) -> dict[str, Any]:
    """Interleaved repeats of real trainer (cosine), bare loop, real trainer (learned) at the
    config's precision, then the other precision variants (see module docstring).

    Returns the metrics (images/s and ratios), per-variant summaries with the per-repeat numbers,
    and ``model_path``: the ``model.pt`` of the first cosine repeat at the config's precision
    (trained for the config's steps, or ``sizes``'). ``progress`` gets the same for the variants
    measured so far, after each one."""
    if data is None:
        data = load_dataset(config["dataset"], "train", config["data_root"], config["download"])
    base = {"cosine": cell_run_config(config, "eps", "cosine", 0, threads, sizes.train_steps),
            "learned": cell_run_config(config, "eps", "learned", 0, threads, sizes.train_steps)}
    own = variant_name(base["cosine"].train.bf16, base["cosine"].train.compile)
    steps, batch = base["cosine"].train.steps, base["cosine"].train.batch_size
    variants: dict[str, dict[str, Any]] = {}
    for variant in [own, *(v for v in sizes.variants if v != own)]:
        runs: dict[str, list[dict[str, Any]]] = {"cosine": [], "bare": [], "learned": []}
        cosine = with_variant(base["cosine"], variant)
        for repeat in range(sizes.repeats if variant == own else sizes.variant_repeats):
            runs["cosine"].append(time_real_trainer(cosine, work_dir / f"{variant}-cosine{repeat}",
                                                    sizes.warmup_steps, data))
            runs["bare"].append(time_bare_loop(cosine, data.shape, steps, sizes.warmup_steps,
                                               data.num_levels))
            if variant == own and sizes.learned:
                runs["learned"].append(time_real_trainer(
                    with_variant(base["learned"], variant), work_dir / f"{variant}-learned{repeat}",
                    sizes.warmup_steps, data))
        variants[variant] = _variant_summary(runs, batch)
        if progress is not None:
            progress(_train_section(variants, own, sizes, steps, batch, work_dir))
    return _train_section(variants, own, sizes, steps, batch, work_dir)


def _train_section(variants: dict[str, dict[str, Any]], own: str, sizes: Sizes, steps: int,
                   batch: int, work_dir: Path) -> dict[str, Any]:
    """The train section from the variants measured so far (the config's own first)."""
    head = variants[own]
    metrics = {key: head[key] for key in (
        "train_images_per_s", "train_learned_images_per_s", "bare_images_per_s",
        "train_loop_efficiency", "train_loop_efficiency_learned", "train_fit_images_per_s")
        if key in head}
    for variant, summary in variants.items():
        key = variant.replace("-", "_")
        metrics[f"train_images_per_s_{key}"] = summary["train_images_per_s"]
        metrics[f"train_loop_efficiency_{key}"] = summary["train_loop_efficiency"]
    compiled = [v for v in variants if v.endswith("-compile")]
    if compiled:
        metrics["compile_seconds"] = variants[compiled[0]]["compile_seconds"]
    return {
        **metrics, "variant": own, "steps": steps, "warmup_steps": sizes.warmup_steps,
        "repeats": sizes.repeats, "batch_size": batch, "variants": variants,
        "per_repeat": head["per_repeat"],
        "model_path": str(work_dir / f"{own}-cosine0" / "model.pt"),
    }
