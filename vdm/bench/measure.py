"""Performance benchmark of the pipeline's hot paths, on any device.

Run: ``python -m vdm.bench [--quick] [--json FILE] [--threads N] [--config PATH] [--device
{auto,cpu,cuda}] [--synthetic] [--set KEY=VALUE ...] [--variants V,...] [--no-grid]
[--grid-config PATH]``.

Everything is measured in one process, one run, on the configuration of ``config/config.yaml``
(or ``--config``: e.g. ``config/cifar10.yaml``), validated against ``config/schema.yaml`` with
its defaults filled in, exactly as the Snakefile does (without Snakemake or PyYAML installed, as
on the GPU machines, the resolved copy in ``vdm/bench/resolved_configs.json`` is used, checked against
the file's SHA-256), then ``--set`` overrides. ``--device`` replaces the config's ``device``
(default: the config's, ``auto`` = CUDA when present). ``--threads`` torch intra-op CPU threads
(default 1, what the pipeline's jobs use; ``torch.get_num_threads()`` is recorded).
``--synthetic`` trains and evaluates on random images of the dataset's shape and level count
(:func:`vdm.core.data.synthetic_dataset`; the training set has the real split's size, at most 8192
images; no download, so the numbers measure compute, not data). ``--quick`` uses fewer steps
and repeats (never a smaller batch or network) and skips the grid run.

Metrics (units in brackets):

1. ``train_loop_efficiency`` [ratio] = ``train_images_per_s`` / ``bare_images_per_s``, at the
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
     reference for the trainer's overhead, not a hardware limit (that is the peak below).
   * ``train_loop_efficiency_learned`` [ratio]: the same with the learned schedule (extra
     schedule gradients), over the same bare loop (skipped when ``Sizes.learned`` is false).

   Repeats are interleaved (real cosine, bare, real learned, real cosine, bare, ...) and the
   medians over repeats are taken; the efficiency is the ratio of the medians.

   Precision variants ``fp32`` (eager), ``bf16`` (eager, bf16 autocast) and ``bf16-compile``
   (bf16 autocast + ``torch.compile``; ``--variants`` picks them): the same measurement (real
   cosine and bare loop, ``Sizes.variant_repeats`` interleaved repeats; the config's own
   variant is the one above) gives ``train_images_per_s_<v>``, ``train_loop_efficiency_<v>``
   and ``mfu_<v>``; for compiled variants ``compile_seconds`` [s] = wall time of the first
   step (which compiles; device synchronised after it) minus the steady-state step time
   ``batch / train_images_per_s``.
2. Model FLOPs utilisation. ``flops_per_image`` [FLOP]: one training step of the network,
   forward + backward, counted by ``torch.utils.flop_counter.FlopCounterMode`` on the meta
   device (no compute) at batch 2 and divided by 2: the matmul, convolution and attention FLOPs
   (2 per multiply-add; elementwise operations, normalisation and the optimizer are not
   counted, as usual for MFU). ``peak_flops`` [FLOP/s]: the device's attainable peak measured
   in the same run: the best of ``2 n^3 / t`` over timed ``n x n`` matmuls (bf16 on CUDA,
   ``n = 8192``; fp32 on CPU, ``n = 1024``, at the run's thread count); both dtypes are measured
   and recorded (``peak_flops_bf16``, ``peak_flops_fp32``; fp32 on CUDA with the trainer's TF32
   setting). ``mfu`` [fraction] = ``train_images_per_s * flops_per_image / peak_flops`` at the
   config's precision; ``bare_mfu`` the same for the bare loop.
3. ``nll_seconds_per_eval`` [s], ``nll_seconds_per_1000`` [s per 1000 images]: one
   :func:`vdm.evaluation.evaluate.evaluate_nll` of the ``nll.split`` (digits test: 300 images; synthetic:
   ``Sizes.nll_examples`` or the real split's size) at the config's options (time samples,
   batch, log-SNR sampling), in fp32 (no TF32 on CUDA: :func:`vdm.core.provenance.strict_fp32`),
   with the EMA weights of the model trained by the first real-trainer repeat (the config's
   ``train.steps``, or fewer with ``--quick``); median over ``R`` evaluations with seeds
   ``0 .. R-1``. ``nll_se_bpd`` [bits/dim]: Monte-Carlo standard error of the test-set mean,
   i.e. the standard deviation (ddof 1) over the ``R`` seeds of the test-set mean bits/dim: the
   estimator's own noise, without the spread over test images (the images are the same in every
   repeat). ``nll_se_total_bpd`` [bits/dim]: ``evaluate_nll``'s own ``nll_bpd_se`` (spread over
   images + Monte-Carlo noise), median over the repeats. ``nll_mc_se_reported_bpd`` [bits/dim],
   when ``evaluate_nll`` returns ``nll_bpd_mc_se``, its median: a cross-check of ``nll_se_bpd``.
4. ``sample_images_per_s`` [images/s]: :func:`vdm.model.sampler.sample` at the config's sampling
   settings (``Sizes.sample_steps`` steps when set) with the same model, fp32; median over
   repeats. ``sample_bf16_images_per_s``: the same with the network under bf16 autocast (the
   sampler's own arithmetic stays fp32). bf16 sampling is recommended only if its FID matches
   fp32 within the run-to-run noise: ``sample_fid_seed_noise`` = ``|FID(fp32, seed 0) -
   FID(fp32, seed 1)|``, ``sample_bf16_fid_shift`` = ``|FID(bf16, seed 0) - FID(fp32, seed
   0)|`` and ``sample.bf16_check.ok`` = shift <= noise (:func:`bf16_sampling_verdict`); without
   FID (no torch-fidelity or extractor weights) the check is not made and fp32 stays.
5. ``fid_seconds_cold`` / ``fid_seconds_cached`` [s]: :func:`vdm.evaluation.fid.compute_metrics` (FID, KID,
   precision/recall; the config's extractor) of the fp32 samples against the reference split,
   first with an empty temporary ``cache_root`` (reference features extracted), then again with
   the same cache. Loading the data and training the classifier (as ``python -m vdm
   classifier`` does; fewer steps with ``--quick``) are not timed. Skipped with a note (never
   a crash) when torch-fidelity is not installed or the Inception weights are neither
   configured (``fid.feature_extractor_weights_path``) nor in torch's hub cache.
6. Without ``--quick`` (or with ``--grid-config``), never with ``--synthetic``:
   ``grid_seconds`` [s]: wall time of ``python -m snakemake --cores all`` in a temporary copy of
   the workflow (fresh results), and ``grid_overhead_share`` [fraction] = ``1 - compute / (wall *
   cores)``, where ``compute`` is the sum over jobs of the in-process seconds recorded in their
   result files (``wall_seconds`` of train.json, falling back to ``train_seconds``, of nll.json,
   fid.json, the ``meta`` of samples.npz, and of data.json, classifier.json and reference.json; a
   file without it counts 0 and is listed under ``grid.compute.missing``). Overhead therefore
   includes interpreter and import start-up of every job, Snakemake's own scheduling, the jobs
   that record no seconds (collect, aggregate, plots) and idle cores. ``default_grid_seconds``
   is ``grid_seconds`` when the grid config is the repository's ``config/config.yaml``.
   Snakemake's per-rule job counts (its "Job stats" table) are recorded under
   ``grid.job_counts``.

Imports beyond torch and numpy (Snakemake, PyYAML, torch-fidelity, scikit-learn) happen only in
the measurements that need them, so ``--synthetic`` runs where only torch is installed.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import importlib.util
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from vdm.core.config import RunConfig, apply_overrides, load_config_file, run_config_from_dict
from vdm.core.data import SPLIT_SIZES, ImageData, dataset_info, synthetic_dataset
from vdm.core.provenance import provenance, read_json, resolve_device, strict_fp32, write_json_atomic
from vdm.core.schema import SCHEMA_FILE

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO / "config" / "config.yaml"
SCHEMA = SCHEMA_FILE  # package data: also there when the package is installed
RESOLVED_CONFIGS = Path(__file__).with_name("resolved_configs.json")
RESOLVED_CONFIG_FILES = ("config.yaml", "mnist.yaml", "cifar10.yaml")
WORKFLOW_FILES = ("Snakefile", "workflow", "config")
PROFILE_LINK = "profiles"  # -> workflow/profiles: where Snakemake finds the default profile
SYNTHETIC_MAX_TRAIN = 8192  # images in a synthetic training set (at most)
VARIANTS = ("fp32", "bf16", "bf16-compile")


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much work each measurement does (never the batch size or the network).

    ``train_steps``: steps ``S`` of every timed ``fit()`` (None: the config's ``train.steps``);
    ``warmup_steps``: ``W`` steps excluded from timing on both sides; ``repeats``: interleaved
    repeats of each training measurement at the config's precision; ``nll_repeats``:
    evaluations (seeds) for the NLL; ``num_samples`` / ``sample_repeats``: sampling;
    ``classifier_steps``: FID classifier training steps (None: the config's); ``run_grid``: run
    the Snakemake grid; ``variants``: precision variants measured besides the config's own
    (:data:`VARIANTS`), ``variant_repeats`` repeats each; ``sample_steps``: sampling steps (None:
    the config's); ``nll_examples``: NLL images (None: the whole split); ``learned``: also time
    the trainer with the learned schedule; ``peak_size``: matmul side ``n`` for the peak (None:
    8192 on CUDA, 1024 on CPU).
    """

    train_steps: int | None
    warmup_steps: int
    repeats: int
    nll_repeats: int
    num_samples: int
    sample_repeats: int
    classifier_steps: int | None
    run_grid: bool
    variants: tuple[str, ...] = VARIANTS
    variant_repeats: int = 1
    sample_steps: int | None = None
    nll_examples: int | None = None
    learned: bool = True
    peak_size: int | None = None


FULL = Sizes(train_steps=None, warmup_steps=20, repeats=3, nll_repeats=20, num_samples=1000,
             sample_repeats=2, classifier_steps=None, run_grid=True, variant_repeats=2)
QUICK = Sizes(train_steps=80, warmup_steps=10, repeats=5, nll_repeats=8, num_samples=1000,
              sample_repeats=1, classifier_steps=150, run_grid=False)


def goals(device_type: str, default_grid: bool) -> dict[str, tuple[str, Callable[[float], bool]]]:
    """The goals that apply: trainer efficiency (>= 0.90 on CPU, >= 0.95 on CUDA), MFU >= 0.35
    on CUDA (of the measured bf16 matmul peak), and on the default digits grid (real data) the
    NLL's precision and time."""
    out: dict[str, tuple[str, Callable[[float], bool]]] = {}
    if device_type == "cuda":
        out["train_loop_efficiency"] = (">= 0.95", lambda v: v >= 0.95)
        out["mfu"] = (">= 0.35", lambda v: v >= 0.35)
    else:
        out["train_loop_efficiency"] = (">= 0.90", lambda v: v >= 0.90)
    if default_grid:
        out["nll_se_bpd"] = ("<= 0.01", lambda v: v <= 0.01)
        out["nll_seconds_per_eval"] = ("<= 60", lambda v: v <= 60.0)
    return out


UNITS = {
    "train_loop_efficiency": "ratio", "train_loop_efficiency_learned": "ratio",
    "train_images_per_s": "images/s", "train_learned_images_per_s": "images/s",
    "bare_images_per_s": "images/s", "train_fit_images_per_s": "images/s",
    "mfu": "fraction", "bare_mfu": "fraction", "flops_per_image": "FLOP",
    "peak_flops": "FLOP/s", "peak_flops_fp32": "FLOP/s", "peak_flops_bf16": "FLOP/s",
    "compile_seconds": "s",
    "nll_seconds_per_eval": "s", "nll_seconds_per_1000": "s/1000 images", "nll_se_bpd": "bits/dim",
    "nll_se_total_bpd": "bits/dim", "nll_mc_se_reported_bpd": "bits/dim", "nll_bpd": "bits/dim",
    "sample_images_per_s": "images/s", "sample_bf16_images_per_s": "images/s",
    "sample_fid_seed_noise": "FID", "sample_bf16_fid_shift": "FID",
    "fid_seconds_cold": "s", "fid_seconds_cached": "s", "grid_seconds": "s",
    "default_grid_seconds": "s", "grid_overhead_share": "fraction", "bench_wall_seconds": "s",
}
for _variant in VARIANTS:
    _key = _variant.replace("-", "_")
    UNITS.update({f"train_images_per_s_{_key}": "images/s", f"mfu_{_key}": "fraction",
                  f"train_loop_efficiency_{_key}": "ratio"})


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_pipeline_config(path: str | Path = DEFAULT_CONFIG) -> dict[str, Any]:
    """The pipeline config at ``path`` with the schema's defaults filled in (as the Snakefile).

    Without Snakemake or PyYAML (the GPU machines have neither), or where a shipped config is not
    there (an installed package has no ``config/``): the resolved copy of a file of the same name in
    ``vdm/bench/resolved_configs.json`` (:func:`resolved_config_copy`).
    """
    if not Path(path).is_file() and Path(path).name in RESOLVED_CONFIG_FILES:
        return resolved_config_copy(path)
    try:
        import yaml  # noqa: F401  (load_config_file needs it for YAML files)
        from snakemake.utils import validate
    except ImportError:
        return resolved_config_copy(path)
    config = load_config_file(path)
    validate(config, str(SCHEMA))
    return config


def resolved_config_copy(path: str | Path) -> dict[str, Any]:
    """The schema-resolved copy of ``config/<name>`` stored in ``vdm/bench/resolved_configs.json``,
    used only while ``path``'s SHA-256 is the one recorded with it (``ValueError`` otherwise)."""
    path = Path(path)
    copies = json.loads(RESOLVED_CONFIGS.read_text())
    entry = copies.get(path.name)
    regenerate = "regenerate it with `python -m vdm.bench --write-resolved-configs` (needs Snakemake)"
    if entry is None:
        raise ValueError(f"{path}: Snakemake or PyYAML is not installed and {RESOLVED_CONFIGS} "
                         f"holds no resolved copy of {path.name!r} (only {sorted(copies)})")
    if path.is_file() and _sha256(path) != entry["sha256"]:
        raise ValueError(f"{path} changed since its resolved copy in {RESOLVED_CONFIGS} was "
                         f"written and Snakemake or PyYAML is not installed to read it; {regenerate}")
    return json.loads(json.dumps(entry["config"]))


def write_resolved_configs(names: tuple[str, ...] = RESOLVED_CONFIG_FILES) -> Path:
    """Write ``vdm/bench/resolved_configs.json``: each ``config/<name>`` resolved against the schema
    (needs Snakemake and PyYAML), with the file's SHA-256."""
    copies = {name: {"sha256": _sha256(REPO / "config" / name),
                     "config": load_pipeline_config(REPO / "config" / name)} for name in names}
    write_json_atomic(RESOLVED_CONFIGS, copies)
    return RESOLVED_CONFIGS


def cell_run_config(config: dict[str, Any], objective: str, schedule: str, seed: int = 0,
                    threads: int | None = None, steps: int | None = None) -> RunConfig:
    """The :class:`RunConfig` of one grid cell, built like ``run_config`` in common.smk;
    ``threads`` / ``steps`` override ``train.threads`` / ``train.steps`` when given."""
    from vdm.core.config import workflow_cell

    cell = workflow_cell(config, objective, schedule, seed)
    # complete: an unconditional cell leaves label_dropout to the schema, unread without PyYAML
    cell["conditioning"] = {**config.get("conditioning", {}), **cell["conditioning"]}
    cell["train"] = dict(cell["train"])
    if threads is not None:
        cell["train"]["threads"] = threads
    if steps is not None:
        cell["train"]["steps"] = steps
    return run_config_from_dict(cell)


def variant_name(bf16: bool, compile: bool) -> str:
    """``fp32`` / ``bf16``, with ``-compile`` when ``torch.compile`` is on."""
    return ("bf16" if bf16 else "fp32") + ("-compile" if compile else "")


def with_variant(run_config: RunConfig, variant: str) -> RunConfig:
    """``run_config`` with ``train.bf16`` / ``train.compile`` set as ``variant`` names them."""
    precision, _, rest = variant.partition("-")
    if precision not in ("fp32", "bf16") or rest not in ("", "compile"):
        raise ValueError(f"unknown precision variant {variant!r}; use fp32, bf16, fp32-compile "
                         "or bf16-compile")
    train = dataclasses.replace(run_config.train, bf16=precision == "bf16",
                                compile=rest == "compile")
    return dataclasses.replace(run_config, train=train)


def _window_rate(stamps: list[float], batch_size: int, warmup: int) -> float:
    """Images/s from step-start stamps: ``batch * (S-1-W) / (stamps[S-1] - stamps[W])``."""
    steps = len(stamps) - 1 - warmup
    if steps < 1:
        raise ValueError(f"need more than warm-up + 1 = {warmup + 1} steps, got {len(stamps)}")
    return batch_size * steps / (stamps[-1] - stamps[warmup])


def _stamp(stamps: list[float], device: torch.device, steps: int, warmup: int) -> None:
    """Append the start time of the next step; on CUDA synchronise first at stamps 1 (after the
    first, compiling, step), ``W`` and ``S-1`` (the window's ends), and never otherwise."""
    if device.type == "cuda" and len(stamps) in (1, warmup, steps - 1):
        torch.cuda.synchronize(device)
    stamps.append(time.perf_counter())


# --------------------------------------------------------------------------------------------
# 1. Training throughput: the real trainer and the bare loop of the same model
# --------------------------------------------------------------------------------------------


def time_real_trainer(run_config: RunConfig, out_dir: Path, warmup: int,
                      train_data: Any = None) -> dict[str, Any]:
    """One ``Trainer(run_config, out_dir).fit()``; rates in images/s, times in s (see module
    docstring). Construction (model build) is not timed; ``train_data`` avoids reloading data."""
    from vdm.training.trainer import Trainer

    trainer = Trainer(run_config, out_dir, train_data=train_data)
    stamps: list[float] = []
    step = trainer.train_step
    cfg = run_config.train

    def stamped_step() -> dict[str, torch.Tensor]:
        _stamp(stamps, trainer.device, cfg.steps, warmup)
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
        "images_per_s": _window_rate(stamps, cfg.batch_size, warmup),
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
        from vdm.model.diffusion import build_model
        from vdm.training.trainer import compile_network, configure_device, make_optimizer, seed_everything

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
        _stamp(stamps, loop.device, steps, warmup)
        loop.step()
    if loop.device.type == "cuda":
        torch.cuda.synchronize(loop.device)
    return {"images_per_s": _window_rate(stamps, run_config.train.batch_size, warmup),
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
        from vdm.core.data import load_dataset

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


# --------------------------------------------------------------------------------------------
# 2. Model FLOPs utilisation
# --------------------------------------------------------------------------------------------


def count_training_flops(run_config: RunConfig, image_shape: tuple[int, int, int],
                         batch: int = 2) -> dict[str, Any]:
    """FLOPs of one training step of the network per image: forward + backward of
    ``network(z, log_snr)`` (``z`` needs no gradient, as in training), counted by
    ``torch.utils.flop_counter.FlopCounterMode`` on the meta device (shapes only, no compute).
    Matmuls, convolutions and attention at 2 FLOPs per multiply-add; ``by_op`` per aten op."""
    from torch.utils.flop_counter import FlopCounterMode

    from vdm.model.network import UNet

    with torch.device("meta"):
        network = UNet(image_shape, **dataclasses.asdict(run_config.model)).train()
        z, log_snr = torch.zeros(batch, *image_shape), torch.zeros(batch)
    counter = FlopCounterMode(display=False)
    with counter:
        network(z, log_snr).square().mean().backward()
    by_op = {str(op): count / batch for op, count in counter.get_flop_counts()["Global"].items()}
    return {"flops_per_image": counter.get_total_flops() / batch, "by_op": by_op,
            "counted_batch": batch}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_matmul_peak(device: torch.device, dtype: torch.dtype, n: int,
                        repeats: int = 5, inner: int | None = None) -> dict[str, Any]:
    """Attainable matmul rate [FLOP/s] of ``device``: the best over ``repeats`` timings of
    ``inner`` back-to-back ``(n x n) @ (n x n)`` products (``2 n^3`` FLOPs each) after a
    warm-up, synchronised before and after each timing."""
    inner = inner or (10 if device.type == "cuda" else 1)
    generator = torch.Generator(device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=generator)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=generator)
    for _ in range(2):
        a @ b
    best = math.inf
    for _ in range(repeats):
        _sync(device)
        started = time.perf_counter()
        for _ in range(inner):
            a @ b
        _sync(device)
        best = min(best, (time.perf_counter() - started) / inner)
    return {"flops_per_s": 2 * n**3 / best, "n": n, "dtype": str(dtype).removeprefix("torch."),
            "best_seconds": best, "repeats": repeats, "inner": inner}


def reference_dtype(device: torch.device) -> torch.dtype:
    """The dtype of the peak MFU is quoted against: bf16 on CUDA, fp32 elsewhere."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def mfu(images_per_s: float, flops_per_image: float, peak_flops_per_s: float) -> float:
    """Model FLOPs utilisation ``images/s * FLOPs/image / peak FLOP/s`` (a fraction)."""
    return images_per_s * flops_per_image / peak_flops_per_s


def measure_mfu(config: dict[str, Any], train: dict[str, Any], sizes: Sizes,
                device: torch.device, image_shape: tuple[int, int, int]) -> dict[str, Any]:
    """FLOPs per image, the measured peaks, and the MFU of every measured variant (adds
    ``mfu``, ``bare_mfu`` and ``mfu_<variant>`` to ``train``'s metrics as well)."""
    flops = count_training_flops(cell_run_config(config, "eps", "cosine"), image_shape)
    n = sizes.peak_size or (8192 if device.type == "cuda" else 1024)
    peaks = {name: measure_matmul_peak(device, dtype, n)
             for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    reference = "bf16" if reference_dtype(device) == torch.bfloat16 else "fp32"
    peak = peaks[reference]["flops_per_s"]
    per_image = flops["flops_per_image"]
    out = {"flops_per_image": per_image, "peak_flops": peak, "peak_dtype": reference,
           "peak_flops_fp32": peaks["fp32"]["flops_per_s"],
           "peak_flops_bf16": peaks["bf16"]["flops_per_s"],
           "mfu": mfu(train["train_images_per_s"], per_image, peak),
           "bare_mfu": mfu(train["bare_images_per_s"], per_image, peak),
           "flops": flops, "peaks": peaks}
    for variant, summary in train["variants"].items():
        key = variant.replace("-", "_")
        summary["mfu"] = mfu(summary["train_images_per_s"], per_image, peak)
        summary["bare_mfu"] = mfu(summary["bare_images_per_s"], per_image, peak)
        out[f"mfu_{key}"] = summary["mfu"]
    return out


# --------------------------------------------------------------------------------------------
# 3. NLL
# --------------------------------------------------------------------------------------------


def measure_nll(model_path: str | Path, config: dict[str, Any], repeats: int,
                data: ImageData | None = None) -> dict[str, Any]:
    """``repeats`` evaluations (seeds ``0..repeats-1``) of the config's NLL on its split (or on
    ``data``), in fp32 (:func:`vdm.core.provenance.strict_fp32`).

    Seconds per evaluation (median), seconds per 1000 images, Monte-Carlo SE of the test-set
    mean (std over seeds, bits/dim) and the evaluator's own SE (median, bits/dim)."""
    from vdm.evaluation.evaluate import evaluate_nll
    from vdm.training.trainer import load_trained_model

    if repeats < 2:
        raise ValueError("the Monte-Carlo SE needs at least 2 NLL repeats")
    options = config["nll"]
    device = resolve_device(config["device"])
    model, run_config = load_trained_model(model_path, device)
    if data is None:
        from vdm.core.data import load_dataset

        data = load_dataset(run_config.dataset, options["split"], run_config.data_root,
                            run_config.download)
    seconds, means, ses, reported_mc = [], [], [], []
    for seed in range(repeats):
        _sync(device)
        started = time.perf_counter()
        with strict_fp32(device):
            result = evaluate_nll(model, data, batch_size=options["batch_size"],
                                  num_time_samples=options["num_time_samples"], seed=seed,
                                  max_examples=options.get("max_examples"), device=device)
        seconds.append(time.perf_counter() - started)  # evaluate_nll reads its results: synced
        means.append(result["nll_bpd"])
        if "nll_bpd_se" in result:
            ses.append(result["nll_bpd_se"])
        if "nll_bpd_mc_se" in result:
            reported_mc.append(result["nll_bpd_mc_se"])
    per_eval = statistics.median(seconds)
    optional = {}
    if ses:
        optional["nll_se_total_bpd"] = statistics.median(ses)
    if reported_mc:
        optional["nll_mc_se_reported_bpd"] = statistics.median(reported_mc)
    return {
        "nll_seconds_per_eval": per_eval,
        "nll_seconds_per_1000": per_eval / result["num_examples"] * 1000.0,
        "nll_se_bpd": statistics.stdev(means),
        **optional,
        "nll_bpd": statistics.fmean(means),
        "num_examples": result["num_examples"], "split": result["split"],
        "num_time_samples": result["num_time_samples"], "time_sampling": result["time_sampling"],
        "batch_size": options["batch_size"], "repeats": repeats, "precision": "fp32 (no TF32)",
        "per_seed_nll_bpd": means, "per_seed_seconds": seconds,
    }


# --------------------------------------------------------------------------------------------
# 4. Sampling
# --------------------------------------------------------------------------------------------


def bf16_eps(eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], device: torch.device
             ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``eps_fn`` run under bf16 autocast (the sampler casts its output back to fp32)."""

    def eps(z: torch.Tensor, log_snr: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            return eps_fn(z, log_snr)

    return eps


def measure_sampling(model_path: str | Path, config: dict[str, Any], num_samples: int,
                     repeats: int = 1, steps: int | None = None
                     ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Images/s of :func:`vdm.model.sampler.sample` at the config's settings (``steps`` sampling steps
    when given), fp32 and with the network under bf16 autocast (median over ``repeats``, seeds
    ``0..``); also returns samples (uint8 ``(N, C, H, W)``) for the FID check: ``fp32`` (seed 0),
    ``fp32_seed1`` and ``bf16`` (seed 0)."""
    from vdm.model.sampler import sample
    from vdm.training.trainer import load_trained_model

    options = config["sample"]
    method, config_steps = options["methods"][0], options["steps"][0]  # the primary setting
    steps = steps or config_steps
    device = resolve_device(config["device"])
    model, run_config = load_trained_model(model_path, device)
    info = dataset_info(run_config.dataset)

    def draw(eps_fn, seed: int) -> tuple[float, torch.Tensor]:
        started = time.perf_counter()
        out = sample(eps_fn, model.schedule, tuple(info["shape"]), num_samples,
                     info["num_levels"], steps=steps, method=method,
                     batch_size=options["batch_size"], seed=seed, device=device)
        return num_samples / (time.perf_counter() - started), out  # .cpu() in sample() synced

    images: dict[str, torch.Tensor] = {}
    rates: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for name, eps_fn in (("fp32", model.eps), ("bf16", bf16_eps(model.eps, device))):
        for seed in range(repeats):
            rate, out = draw(eps_fn, seed)
            rates[name].append(rate)
            images.setdefault(name, out)
    images["fp32_seed1"] = draw(model.eps, 1)[1]
    return {"sample_images_per_s": statistics.median(rates["fp32"]),
            "sample_bf16_images_per_s": statistics.median(rates["bf16"]),
            "num_samples": num_samples, "steps": steps, "config_steps": config_steps,
            "method": method, "batch_size": options["batch_size"],
            "repeats": repeats, "per_repeat_images_per_s": rates["fp32"],
            "per_repeat_bf16_images_per_s": rates["bf16"]}, images


def bf16_sampling_verdict(fid_fp32: float, fid_fp32_seed1: float, fid_bf16: float
                          ) -> dict[str, Any]:
    """Whether bf16 sampling changes FID by no more than the run-to-run noise: ``shift =
    |FID(bf16, seed 0) - FID(fp32, seed 0)|`` against ``noise = |FID(fp32, seed 0) - FID(fp32,
    seed 1)|`` (another seed, same model); ``ok`` when ``shift <= noise``."""
    shift, noise = abs(fid_bf16 - fid_fp32), abs(fid_fp32 - fid_fp32_seed1)
    return {"fid_fp32": fid_fp32, "fid_fp32_seed1": fid_fp32_seed1, "fid_bf16": fid_bf16,
            "sample_bf16_fid_shift": shift, "sample_fid_seed_noise": noise, "ok": shift <= noise,
            "recommended": "bf16" if shift <= noise else "fp32"}


# --------------------------------------------------------------------------------------------
# 5. FID
# --------------------------------------------------------------------------------------------


def fid_unavailable(config: dict[str, Any]) -> str | None:
    """Why FID cannot be computed here (a note), or None: torch-fidelity not installed, or the
    Inception weights neither configured nor in torch's hub cache (offline: no download)."""
    if importlib.util.find_spec("torch_fidelity") is None:
        return "torch-fidelity is not installed (pip install torch-fidelity)"
    options = config["fid"]
    if options.get("feature_extractor", "classifier") != "inception-v3-compat":
        return None
    weights = options.get("feature_extractor_weights_path")
    if weights:
        return None if Path(weights).is_file() else f"Inception weights not found: {weights}"
    cached = Path(torch.hub.get_dir()) / "checkpoints" / "weights-inception-2015-12-05-6726825d.pth"
    if cached.is_file():
        return None
    return ("Inception weights not configured (fid.feature_extractor_weights_path; offline: "
            "`python -m vdm inception-weights`) and not in torch's hub cache")


def measure_fid(samples: dict[str, torch.Tensor], config: dict[str, Any], work_dir: Path,
                threads: int, classifier_steps: int | None = None,
                train: ImageData | None = None, test: ImageData | None = None) -> dict[str, Any]:
    """Seconds of :func:`vdm.evaluation.fid.compute_metrics` (the config's extractor) with a cold, then a
    warm, torch-fidelity cache (the dataset classifier is trained first, untimed, as the
    pipeline does); then, with the warm cache, the FIDs behind :func:`bf16_sampling_verdict`.
    ``train`` / ``test`` replace the dataset's splits (synthetic data)."""
    from vdm.core.data import load_dataset
    from vdm.evaluation.fid import compute_metrics

    options = config["fid"]
    extractor = options.get("feature_extractor", "classifier")
    device = str(resolve_device(config["device"]))
    dataset, split = config["dataset"], options["reference_split"]
    train = train or load_dataset(dataset, "train", config["data_root"], config["download"])
    extra: dict[str, Any] = {}
    weights: Path | None = None
    if extractor == "classifier":
        from vdm.evaluation.feature_extractors import save_classifier, train_classifier

        clf = options["classifier"]
        test = test or load_dataset(dataset, "test", config["data_root"], config["download"])
        steps = clf["steps"] if classifier_steps is None else classifier_steps
        started = time.perf_counter()
        model, accuracy = train_classifier(train, test, steps=steps, batch_size=clf["batch_size"],
                                           lr=clf["lr"], seed=clf["seed"], device=device,
                                           num_threads=threads)
        extra = {"classifier_steps": steps, "classifier_accuracy": accuracy,
                 "classifier_seconds": time.perf_counter() - started}
        weights = save_classifier(model, work_dir / "classifier.pt",
                                  {"dataset": dataset, "test_accuracy": accuracy, "steps": steps})
    elif options.get("feature_extractor_weights_path"):
        weights = Path(options["feature_extractor_weights_path"])
    reference = (train if split == "train" else test or load_dataset(
        dataset, "test", config["data_root"], config["download"])).pixels_uint8()
    cache = work_dir / "fid_cache"
    cache.mkdir(parents=True, exist_ok=False)

    def metrics(images: torch.Tensor, prc: bool) -> dict[str, Any]:
        return compute_metrics(images, reference, dataset=dataset, split=split,
                               extractor=extractor, weights_path=weights, cache_root=cache,
                               device=device, kid_subset_size=options["kid_subset_size"],
                               prc=prc, batch_size=options["batch_size"])

    timings, result = {}, {}
    for label in ("cold", "cached"):
        started = time.perf_counter()
        result = metrics(samples["fp32"], options["prc"])
        timings[label] = time.perf_counter() - started
    verdict = bf16_sampling_verdict(result["fid"], metrics(samples["fp32_seed1"], False)["fid"],
                                    metrics(samples["bf16"], False)["fid"])
    return {"fid_seconds_cold": timings["cold"], "fid_seconds_cached": timings["cached"],
            "fid": result["fid"], "kid": result["kid"], "num_samples": result["num_samples"],
            "num_reference": result["num_reference"], "kid_subset_size": result["kid_subset_size"],
            "prc": options["prc"], "feature_extractor": result["feature_extractor"],
            "bf16_check": verdict, **extra}


# --------------------------------------------------------------------------------------------
# 5. The Snakemake grid
# --------------------------------------------------------------------------------------------


def copy_workflow(dest: Path) -> Path:
    """Copy Snakefile, workflow/, config/ and the ``profiles`` link into ``dest`` (the vdm
    package is the installed one)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, dest / name)
        else:
            shutil.copy(source, dest / name)
    (dest / PROFILE_LINK).symlink_to(os.readlink(REPO / PROFILE_LINK))
    return dest


def venv_environment() -> dict[str, str]:
    """This environment with this interpreter's bin directory first (rules call ``python``)."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def parse_job_stats(output: str) -> dict[str, int]:
    """Per-rule job counts from the first "Job stats:" table of Snakemake's output
    (``{"train": 36, ..., "total": 180}``); empty when there is none."""
    lines = [line.strip() for line in output.splitlines()]
    if "Job stats:" not in lines:
        return {}
    counts: dict[str, int] = {}
    for row in lines[lines.index("Job stats:") + 1:]:
        match = re.fullmatch(r"(\S+)\s+(\d+)", row)
        if match:
            counts[match.group(1)] = int(match.group(2))
        elif counts:  # the first line after the table's rows ends it (header lines come before)
            break
    return counts


def parse_cores(output: str) -> int | None:
    """The core count Snakemake reports ("Provided cores: N"), or None."""
    match = re.search(r"Provided cores:\s*(\d+)", output)
    return int(match.group(1)) if match else None


def _result_seconds(path: Path) -> tuple[float | None, str | None]:
    """``(seconds, key used)`` recorded in a result file, ``(None, None)`` when absent."""
    from vdm.evaluation.fid import load_samples_meta

    meta = load_samples_meta(path) if path.suffix == ".npz" else read_json(path)
    keys = ("wall_seconds", "train_seconds") if path.name == "train.json" else ("wall_seconds",)
    for key in keys:
        if isinstance(meta.get(key), int | float):
            return float(meta[key]), key
    return None, None


RUN_GLOB = "*/runs/*/*/*/*/seed*"  # <dataset>/runs/<cond>/<param>/<objective>/<schedule>/seed<k>
RESULT_PATTERNS = {"train": f"{RUN_GLOB}/train.json", "sample": f"{RUN_GLOB}/samples.npz",
                   "nll": f"{RUN_GLOB}/nll.json", "fid": f"{RUN_GLOB}/fid.json",
                   "sweep_sample": f"{RUN_GLOB}/sweep/*/samples.npz",
                   "sweep_fid": f"{RUN_GLOB}/sweep/*/fid.json",
                   "prepare_data": "*/data.json", "fid_classifier": "*/fid/classifier.json",
                   "fid_reference": "*/fid/*/reference.json",
                   "noisy_classifier": "*/guidance/noisy-classifier-*.json"}


def compute_seconds(results_dir: Path) -> dict[str, Any]:
    """Sum of in-process job seconds recorded under ``results_dir`` (see module docstring),
    per rule: files found, seconds, files that fell back to ``train_seconds``, files without."""
    per_rule: dict[str, dict[str, Any]] = {}
    missing: list[str] = []
    for rule, pattern in RESULT_PATTERNS.items():
        entry = {"files": 0, "seconds": 0.0, "fallback_train_seconds": 0, "missing": 0}
        for path in sorted(results_dir.glob(pattern)):
            seconds, key = _result_seconds(path)
            entry["files"] += 1
            if seconds is None:
                entry["missing"] += 1
                missing.append(str(path.relative_to(results_dir)))
            else:
                entry["seconds"] += seconds
                entry["fallback_train_seconds"] += key == "train_seconds"
        per_rule[rule] = entry
    return {"seconds": sum(e["seconds"] for e in per_rule.values()), "per_rule": per_rule,
            "missing": missing}


def overhead_share(compute: float, wall: float, cores: int) -> float:
    """``1 - compute / (wall * cores)``: the share of the cores' time not spent in job compute."""
    return 1.0 - compute / (wall * cores)


def measure_grid(grid_config: Path | None, work_dir: Path) -> dict[str, Any]:
    """Run the whole workflow once (``--cores all``) in a fresh copy; seconds and overhead."""
    workdir = copy_workflow(work_dir / "workflow_copy")
    command = [sys.executable, "-m", "snakemake", "--cores", "all"]
    if grid_config is not None:
        command += ["--configfile", str(Path(grid_config).resolve())]
    started = time.perf_counter()
    process = subprocess.run(command, cwd=workdir, env=venv_environment(), text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        tail = "\n".join(process.stdout.splitlines()[-30:])
        raise RuntimeError(f"snakemake failed (exit {process.returncode}):\n{tail}")
    cores = parse_cores(process.stdout) or os.cpu_count() or 1
    compute = compute_seconds(workdir / "results")
    is_default = grid_config is None or Path(grid_config).resolve() == DEFAULT_CONFIG.resolve()
    out = {"grid_seconds": wall, "grid_overhead_share": overhead_share(compute["seconds"], wall,
                                                                       cores),
           "cores": cores, "config_file": str(grid_config or DEFAULT_CONFIG),
           "is_default_grid": is_default, "job_counts": parse_job_stats(process.stdout),
           "compute": compute}
    if is_default:
        out["default_grid_seconds"] = wall
    return out



# --------------------------------------------------------------------------------------------
# Driver, table, command line
# --------------------------------------------------------------------------------------------

METRIC_ORDER = ("train_loop_efficiency", "train_loop_efficiency_learned", "train_images_per_s",
                "train_learned_images_per_s", "bare_images_per_s", "train_fit_images_per_s",
                "mfu", "bare_mfu", "flops_per_image", "peak_flops", "peak_flops_fp32",
                "peak_flops_bf16",
                *(f"{prefix}_{variant.replace('-', '_')}" for variant in VARIANTS
                  for prefix in ("train_images_per_s", "train_loop_efficiency", "mfu")),
                "compile_seconds",
                "nll_seconds_per_eval", "nll_seconds_per_1000", "nll_se_bpd", "nll_se_total_bpd",
                "nll_mc_se_reported_bpd", "sample_images_per_s", "sample_bf16_images_per_s",
                "sample_fid_seed_noise", "sample_bf16_fid_shift", "fid_seconds_cold",
                "fid_seconds_cached", "grid_seconds", "default_grid_seconds", "grid_overhead_share")


def bench_data(config: dict[str, Any], synthetic: bool, sizes: Sizes) -> dict[str, ImageData | None]:
    """Training and NLL data: random images of the dataset's shape with ``synthetic`` (train:
    the real split's size, at most :data:`SYNTHETIC_MAX_TRAIN`; NLL: ``sizes.nll_examples`` or
    the real split's size), else None (each measurement loads the real splits)."""
    if not synthetic:
        return {"train": None, "test": None}
    name = config["dataset"]
    train = synthetic_dataset(name, "train", min(SPLIT_SIZES[name]["train"], SYNTHETIC_MAX_TRAIN))
    test = synthetic_dataset(name, config["nll"]["split"],
                             sizes.nll_examples or SPLIT_SIZES[name][config["nll"]["split"]])
    return {"train": train, "test": test}


def _result(sections: dict[str, dict[str, Any]], context: dict[str, Any],
            started: float) -> dict[str, Any]:
    metrics = {name: section[name] for name in METRIC_ORDER for section in sections.values()
               if name in section and isinstance(section[name], int | float)}
    metrics["bench_wall_seconds"] = time.perf_counter() - started
    applicable = goals(context["device_type"], context["default_grid"])
    return {**{k: v for k, v in context.items() if k not in ("device_type", "default_grid")},
            "torch_num_threads": torch.get_num_threads(), "metrics": metrics,
            "goals": {name: {"goal": goal, "met": bool(check(metrics[name]))}
                      for name, (goal, check) in applicable.items() if name in metrics},
            **sections}


def run_bench(sizes: Sizes, threads: int = 1, config_path: str | Path = DEFAULT_CONFIG,
              grid_config: Path | None = None, quick: bool = False, device: str | None = None,
              synthetic: bool = False, overrides: tuple[str, ...] | list[str] = (),
              progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Every measurement, in order, in a temporary directory; the JSON-able result.

    ``device`` replaces the config's; ``overrides`` are ``key=value`` settings applied to the
    pipeline config (as ``--set``); ``progress`` is called with the result so far after every
    section (the GPU check writes it, so a section that hangs loses none before it).
    """
    started = time.perf_counter()
    torch.set_num_threads(threads)
    config = apply_overrides(load_pipeline_config(config_path), list(overrides))
    if device is not None:
        config["device"] = device
    resolved = resolve_device(config["device"])
    notes: list[str] = []
    is_default = Path(config_path).resolve() == DEFAULT_CONFIG.resolve()
    context = {"quick": quick, "threads": threads, "torch_version": torch.__version__,
               "device": str(resolved), "device_type": resolved.type,
               "device_name": (torch.cuda.get_device_name(resolved) if resolved.type == "cuda"
                               else "cpu"),
               "config_file": str(config_path), "overrides": list(overrides),
               "synthetic": synthetic, "sizes": dataclasses.asdict(sizes), "notes": notes,
               "load_average_at_start": list(os.getloadavg()),  # other processes' CPU demand
               "default_grid": is_default and not synthetic and not overrides}
    if importlib.util.find_spec("snakemake") is None or importlib.util.find_spec("yaml") is None:
        notes.append(f"config: the resolved copy in {RESOLVED_CONFIGS.name} (no Snakemake/PyYAML)")
    sections: dict[str, dict[str, Any]] = {}

    def report() -> dict[str, Any]:
        result = _result(sections, context, started)
        if progress is not None:
            progress(result)
        return result

    data = bench_data(config, synthetic, sizes)
    image_shape = tuple(dataset_info(config["dataset"])["shape"])
    with tempfile.TemporaryDirectory(prefix="vdm-bench-") as tmp:
        work = Path(tmp)
        def partial_train(section: dict[str, Any]) -> None:
            sections["train"] = section
            report()

        sections["train"] = measure_train_efficiency(config, sizes, work / "train", threads,
                                                     data["train"], progress=partial_train)
        sections["mfu"] = measure_mfu(config, sections["train"], sizes, resolved, image_shape)
        report()
        model_path = sections["train"]["model_path"]
        sections["nll"] = measure_nll(model_path, config, sizes.nll_repeats, data["test"])
        report()
        sections["sample"], images = measure_sampling(model_path, config, sizes.num_samples,
                                                      sizes.sample_repeats, sizes.sample_steps)
        report()
        why_not = fid_unavailable(config)
        if why_not is None:
            sections["fid"] = measure_fid(images, config, work / "fid", threads,
                                          sizes.classifier_steps, data["train"], data["test"])
            check = sections["fid"]["bf16_check"]
            sections["sample"].update({key: check[key] for key in (
                "sample_bf16_fid_shift", "sample_fid_seed_noise")}, bf16_check=check)
        else:
            notes.append(f"FID skipped: {why_not}")
            sections["sample"]["bf16_check"] = {"ok": None, "recommended": "fp32",
                                                "note": f"not checked: {why_not}"}
        report()
        if synthetic and (sizes.run_grid or grid_config is not None):
            notes.append("grid skipped: --synthetic measures compute only")
        elif sizes.run_grid or grid_config is not None:
            sections["grid"] = measure_grid(grid_config, work / "grid")
    result = report()
    result["load_average_at_end"] = list(os.getloadavg())
    result["provenance"] = provenance(resolved)
    return result


def _format_value(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else str(value)


def format_table(result: dict[str, Any]) -> str:
    """Plain-text table: metric, value, unit, goal, met?"""
    rows = [("metric", "value", "unit", "goal", "met?")]
    for name, value in result["metrics"].items():
        goal = result["goals"].get(name)
        rows.append((name, _format_value(value), UNITS.get(name, ""),
                     goal["goal"] if goal else "-",
                     ("yes" if goal["met"] else "NO") if goal else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    data = "synthetic data" if result.get("synthetic") else "real data"
    header = (f"vdm.bench.measure ({'quick' if result['quick'] else 'full'}): torch {result['torch_version']}"
              f", device {result['device']} ({result.get('device_name', '')}), "
              f"{result['torch_num_threads']} thread(s), {data}, {Path(result['config_file']).name}")
    return "\n".join([header, *lines, *(f"note: {note}" for note in result.get("notes", []))])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vdm.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer steps and repeats (same batch and network); no grid run")
    parser.add_argument("--json", type=Path, help="write the results here (atomically)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help="pipeline config to benchmark (default config/config.yaml)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"],
                        help="device (default: the config's `device`, auto = CUDA if present)")
    parser.add_argument("--synthetic", action="store_true",
                        help="random images of the dataset's shape: no data files or download")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. train.batch_size=64 (repeatable)")
    parser.add_argument("--variants",
                        help="precision variants besides the config's own (comma-separated; "
                             f"default {','.join(VARIANTS)}; '' for none)")
    parser.add_argument("--grid-config", type=Path,
                        help="run the Snakemake grid with this --configfile (also with --quick)")
    parser.add_argument("--no-grid", action="store_true", help="skip the Snakemake grid run")
    parser.add_argument("--write-resolved-configs", action="store_true",
                        help=f"rewrite {RESOLVED_CONFIGS.name} from config/ (needs Snakemake) and exit")
    return parser


def main(argv: list[str] | None = None, sizes: Sizes | None = None) -> int:
    """Command line entry point; ``sizes`` (internal, for tests) overrides the --quick sizes
    (``--variants``, when given, still replaces its variants)."""
    args = build_parser().parse_args(argv)
    if args.write_resolved_configs:
        print(f"-> {write_resolved_configs()}")
        return 0
    if args.threads < 1:
        raise SystemExit("--threads must be >= 1")
    chosen = sizes or (QUICK if args.quick else FULL)
    if args.variants is not None:
        variants = tuple(v for v in args.variants.split(",") if v)
        for variant in variants:
            with_variant(RunConfig(), variant)  # a bad name fails before any work
        chosen = dataclasses.replace(chosen, variants=variants)
    if args.no_grid:
        chosen = dataclasses.replace(chosen, run_grid=False)
    result = run_bench(chosen, args.threads, args.config,
                       None if args.no_grid else args.grid_config, quick=args.quick,
                       device=args.device, synthetic=args.synthetic, overrides=args.overrides)
    print(format_table(result))
    if args.json:
        write_json_atomic(args.json, result)
        print(f"-> {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
