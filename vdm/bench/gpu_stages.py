"""The three stages of the GPU check (:mod:`vdm.bench.gpu_check`) and what they run with.

Each stage runs in its own process (``python -m vdm.bench.gpu_check --stage NAME``, body
:func:`run_stage_in_process`) and hands its result so far to ``emit`` after every part, which
writes it, so a stage that hangs or crashes loses nothing it had:

1. ``bench``: :func:`vdm.bench.measure.run_bench` on ``config/cifar10.yaml`` with synthetic data
   (:data:`BENCH_SIZES`): images/s of the real trainer in fp32, bf16 and bf16 +
   ``torch.compile`` (compile time apart), FLOPs per image, the measured bf16 matmul peak,
   MFU (goal >= 0.35 on H100/H200), trainer / bare-loop efficiency (goal >= 0.95), sampling
   images/s (fp32, bf16) and NLL seconds per 1000 images (fp32). Written after every section.
2. ``train``: the MNIST-size UNet of ``config/mnist.yaml`` (its model, batch, LR; dropout 0 so
   that eager and compiled runs see the same arithmetic) on synthetic MNIST-shaped data, for
   every objective with the cosine and the learned schedule, bf16 + ``torch.compile``,
   ``--train-steps`` steps each: every logged loss finite; with the trained weights, the
   per-example losses of one batch computed by the eager and by the compiled model agree
   within ``--agree-rtol`` (relative to the largest; :func:`eager_vs_compiled`);
   on CUDA, ``torch.cuda.set_sync_debug_mode("error")`` around training steps between log rows
   (after warm-up) proves that no step waits for the device. Written after every cell.
3. ``sample_nll``: the eps/cosine model of stage 2 (an untrained one if stage 2 left none):
   sampling images/s in fp32 and under bf16 autocast, NLL seconds per 1000 images in fp32
   without TF32; all values finite.

:class:`CheckOptions` says what the check runs (the parent passes it to each stage as JSON).
Like the whole check, this imports nothing beyond PyTorch and numpy (the configs come from the
resolved copies where PyYAML/Snakemake are missing: :mod:`vdm.bench.configs`).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from vdm.bench.configs import REPO, cell_run_config, load_pipeline_config
from vdm.bench.eval_timing import bf16_eps
from vdm.bench.measure import run_bench
from vdm.bench.sizes import Sizes
from vdm.bench.train_timing import time_real_trainer
from vdm.core.config import apply_overrides
from vdm.core.data import synthetic_dataset
from vdm.core.dataset_facts import dataset_info
from vdm.core.provenance import resolve_device, strict_fp32, write_json_atomic
from vdm.evaluation.evaluate import evaluate_nll
from vdm.model.diffusion import build_model
from vdm.model.objectives import OBJECTIVES
from vdm.model.sampler import sample
from vdm.training.trainer import NonFiniteLossError, Trainer, load_trained_model

STAGES = ("bench", "train", "sample_nll")
SCHEDULES = ("cosine", "learned")

#: bench sizes on a GPU: one repeat of each variant, 50 steps (10 warm-up); 500 samples of 20
#: steps; NLL of 1000 images twice; no learned-schedule timing (stage 2 covers it)
BENCH_SIZES = Sizes(train_steps=50, warmup_steps=10, repeats=1, nll_repeats=2, num_samples=500,
                    sample_repeats=1, classifier_steps=None, run_grid=False, sample_steps=20,
                    nll_examples=1000, learned=False)
TINY_BENCH_SIZES = Sizes(train_steps=6, warmup_steps=2, repeats=1, nll_repeats=2, num_samples=8,
                         sample_repeats=1, classifier_steps=10, run_grid=False, sample_steps=3,
                         nll_examples=16, learned=False, peak_size=256)
#: ``--tiny``: the configs' structure with a small network and batch (tests, smoke runs)
TINY_OVERRIDES = {
    "cifar10": ["model.channels=8", "model.channel_mults=[1, 2]", "model.num_res_blocks=1",
                "model.attention_resolutions=[16]", "train.batch_size=8", "nll.batch_size=16",
                "sample.batch_size=16"],
    "mnist": ["model.channels=8", "model.channel_mults=[1, 2]", "model.num_res_blocks=1",
              "model.attention_resolutions=[14]", "train.batch_size=8", "nll.batch_size=16",
              "sample.batch_size=16"],
}


@dataclasses.dataclass
class CheckOptions:
    """What the check runs (see :func:`vdm.bench.gpu_check.add_arguments` for each option's meaning)."""

    out: str
    device: str = "auto"
    budget_s: float = 280.0
    stages: tuple[str, ...] = STAGES
    objectives: tuple[str, ...] = tuple(OBJECTIVES)
    schedules: tuple[str, ...] = SCHEDULES
    compile: bool = True
    tiny: bool = False
    threads: int = 1
    train_steps: int = 200
    agree_rtol: float = 0.05
    samples: int = 256
    sample_steps: int = 50
    nll_examples: int = 1000

    def sized(self) -> CheckOptions:
        """With ``tiny``: tiny step and sample counts (the networks shrink via overrides)."""
        if not self.tiny:
            return self
        return dataclasses.replace(self, train_steps=min(self.train_steps, 6),
                                   samples=min(self.samples, 8),
                                   sample_steps=min(self.sample_steps, 3),
                                   nll_examples=min(self.nll_examples, 16))


def _config(name: str, options: CheckOptions, extra: list[str] | None = None) -> dict[str, Any]:
    config = load_pipeline_config(REPO / "config" / f"{name}.yaml")
    overrides = (TINY_OVERRIDES[name] if options.tiny else []) + (extra or [])
    config = apply_overrides(config, overrides)
    config["device"] = options.device
    return config


def stage_bench(options: CheckOptions, work: Path, deadline: float,
                emit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """:func:`vdm.bench.measure.run_bench` on the CIFAR-10 config, synthetic data."""
    sizes = TINY_BENCH_SIZES if options.tiny else BENCH_SIZES
    overrides = list(TINY_OVERRIDES["cifar10"] if options.tiny else [])
    if not options.compile:
        sizes = dataclasses.replace(sizes, variants=tuple(
            v for v in sizes.variants if not v.endswith("compile")))
        overrides.append("train.compile=false")
    return run_bench(sizes, options.threads, REPO / "config" / "cifar10.yaml", quick=True,
                     device=options.device, synthetic=True, overrides=overrides, progress=emit)


def _losses(trainer_dir: Path) -> list[float]:
    with (trainer_dir / "train_log.csv").open() as f:
        return [float(row["loss"]) for row in csv.DictReader(f)]


def check_no_sync(run_config: Any, data: Any, out_dir: Path, steps: int = 4) -> dict[str, Any]:
    """On CUDA: after 3 warm-up steps (compilation, cuDNN autotuning), ``steps`` training steps
    under ``torch.cuda.set_sync_debug_mode("error")``: any host-device sync raises. Then one
    :meth:`Trainer.check_finite` (the deferred read, outside the guarded region)."""
    trainer = Trainer(run_config, out_dir, train_data=data)
    for _ in range(3):
        trainer.train_step()
    trainer.check_finite()
    torch.cuda.synchronize()
    error = None
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(steps):
            trainer.train_step()
    except RuntimeError as caught:
        error = str(caught).strip().splitlines()[0]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    trainer.check_finite()
    return {"ok": error is None, "steps": steps, "error": error}


def eager_vs_compiled(run_config: Any, data: Any, weights: dict[str, torch.Tensor],
                      rtol: float, seed: int = 0) -> dict[str, Any]:
    """Per-example training losses of one batch (the first ``batch_size`` training images, time
    steps and noise from ``seed``) under the run's autocast, with ``weights`` loaded into an
    eager and into a ``torch.compile``d model (train mode, gradients on: the graph training
    compiled). ``max_rel_diff`` = ``max_i |l_c,i - l_e,i| / max_i |l_e,i|``; ``ok`` when it is
    at most ``rtol``."""
    losses = {}
    for label, compiled in (("eager", False), ("compiled", True)):
        run = dataclasses.replace(run_config, train=dataclasses.replace(run_config.train,
                                                                        compile=compiled))
        trainer = Trainer(run, "/nonexistent-unused", train_data=data)
        assert (trainer.model.network._compiled_call_impl is not None) == compiled
        trainer.model.load_state_dict(weights)
        trainer.model.train()
        x = trainer.x_train[:run.train.batch_size]
        generator = torch.Generator(trainer.device).manual_seed(seed)
        with torch.autocast(trainer.device.type, dtype=torch.bfloat16, enabled=run.train.bf16):
            losses[label] = trainer.model.losses(x, generator=generator)["loss"].detach().float().cpu()
    scale = float(losses["eager"].abs().max())
    rel = float((losses["compiled"] - losses["eager"]).abs().max()) / max(scale, 1e-12)
    return {"eager_mean_loss": float(losses["eager"].mean()),
            "compiled_mean_loss": float(losses["compiled"].mean()), "max_rel_diff": rel,
            "rtol": rtol, "ok": rel <= rtol, "batch": len(losses["eager"])}


def stage_train(options: CheckOptions, work: Path, deadline: float,
                emit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Every objective x schedule on the MNIST-size config, bf16 (+ compile); see module doc."""
    options = options.sized()
    device = resolve_device(options.device)
    config = _config("mnist", options, ["model.dropout=0.0", "train.bf16=true",
                                        f"train.compile={str(options.compile).lower()}"])
    data = synthetic_dataset("mnist", "train", 64 if options.tiny else 4096)
    log_every = max(1, options.train_steps // 4)
    warmup = min(10, options.train_steps - 2)
    result: dict[str, Any] = {"config": {"model": config["model"], "batch_size":
                                         config["train"]["batch_size"], "lr": config["train"]["lr"]},
                              "steps": options.train_steps, "compile": options.compile,
                              "cells": [], "skipped": [], "no_sync": {}}
    cells = [(o, s) for s in options.schedules for o in options.objectives]
    cells.sort(key=lambda cell: (cell[0] != "eps", cell[1] != "cosine"))  # eps first
    for objective, schedule in cells:
        name = f"{objective}-{schedule}"
        if time.time() > deadline:
            result["skipped"].append(name)
            emit(result)
            continue
        run = cell_run_config(config, objective, schedule, 0, options.threads, options.train_steps)
        run = dataclasses.replace(run, train=dataclasses.replace(
            run.train, log_every=log_every, checkpoint_every=10**9))
        cell: dict[str, Any] = {"objective": objective, "schedule": schedule}
        try:
            timing = time_real_trainer(run, work / name, warmup, data)
            losses = _losses(work / name)
            cell.update(images_per_s=timing["images_per_s"],
                        first_step_seconds=timing["first_step_seconds"],
                        fit_seconds=timing["fit_seconds"], losses=losses,
                        finite=all(math.isfinite(v) for v in losses))
        except NonFiniteLossError as error:
            cell.update(finite=False, error=str(error))
        if options.compile and cell.get("finite") and time.time() < deadline:
            state = torch.load(work / name / "model.pt", map_location=device, weights_only=True)
            cell["agreement"] = eager_vs_compiled(run, data, state["model"], options.agree_rtol)
        if device.type == "cuda" and schedule not in result["no_sync"] and time.time() < deadline:
            result["no_sync"][schedule] = check_no_sync(run, data, work / f"{name}-nosync")
        result["cells"].append(cell)
        emit(result)
    return result


def stage_sample_nll(options: CheckOptions, work: Path, deadline: float,
                     emit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Sampling (fp32, bf16) and NLL (fp32) of the eps/cosine model on the device."""
    options = options.sized()
    device = resolve_device(options.device)
    config = _config("mnist", options, ["model.dropout=0.0"])
    info = dataset_info("mnist")
    path = work / "eps-cosine" / "model.pt"
    if path.is_file():
        model, _ = load_trained_model(path, device)
        source = "eps/cosine trained in stage train"
    else:
        torch.manual_seed(0)
        model = build_model(tuple(info["shape"]), info["num_levels"], "eps", "cosine",
                            config["model"], config["logsnr_min"], config["logsnr_max"])
        model = model.to(device).eval()
        source = "untrained eps/cosine (stage train left no model)"
    result: dict[str, Any] = {"model": source, "num_samples": options.samples,
                              "sample_steps": options.sample_steps}
    images = {}
    for label, eps_fn in (("fp32", model.eps), ("bf16", bf16_eps(model.eps, device))):
        sample(eps_fn, model.schedule, tuple(info["shape"]), 2, info["num_levels"], steps=2,
               seed=0, device=device)  # warm-up (cuDNN autotuning)
        started = time.perf_counter()
        images[label] = sample(eps_fn, model.schedule, tuple(info["shape"]), options.samples,
                               info["num_levels"], steps=options.sample_steps,
                               batch_size=options.samples, seed=0, device=device)
        result[f"sample_{label}_images_per_s"] = options.samples / (time.perf_counter() - started)
        emit(result)
    changed = (images["fp32"].int() - images["bf16"].int()).abs() > 8
    result["bf16_pixels_changed_fraction"] = float(changed.float().mean())  # > 8 of 255 levels
    result["samples_valid"] = all(v.dtype == torch.uint8 and v.shape[0] == options.samples
                                  for v in images.values())
    data = synthetic_dataset("mnist", "test", options.nll_examples)
    seconds, values = [], []
    for seed in range(2):
        started = time.perf_counter()
        with strict_fp32(device):
            nll = evaluate_nll(model, data, batch_size=config["nll"]["batch_size"],
                               num_time_samples=config["nll"]["num_time_samples"], seed=seed,
                               device=device)
        seconds.append(time.perf_counter() - started)
        values.append(nll["nll_bpd"])
    result.update(nll_bpd=values, nll_examples=options.nll_examples,
                  nll_num_time_samples=config["nll"]["num_time_samples"],
                  nll_seconds_per_1000=statistics.median(seconds) / options.nll_examples * 1000,
                  nll_precision="fp32 (no TF32)",
                  finite=all(math.isfinite(v) for v in values) and result["samples_valid"])
    return result


STAGE_FUNCTIONS = {"bench": stage_bench, "train": stage_train, "sample_nll": stage_sample_nll}


def run_stage_in_process(stage: str, options: CheckOptions, out: Path, work: Path,
                         deadline: float) -> int:
    """Child process body: run one stage, writing ``out`` after every partial result; on an
    exception write the traceback's last lines as ``error`` and return 1."""
    partial: dict[str, Any] = {}

    def emit(result: dict[str, Any]) -> None:
        partial.clear()
        partial.update(result)
        write_json_atomic(out, {"complete": False, "result": partial})

    torch.set_num_threads(options.threads)
    try:
        result = STAGE_FUNCTIONS[stage](options, work, deadline, emit)
    except Exception:  # report anything: the parent records it and goes on
        lines = traceback.format_exc().strip().splitlines()
        write_json_atomic(out, {"complete": False, "result": partial, "error": "\n".join(lines[-15:])})
        print("\n".join(lines), file=sys.stderr)
        return 1
    write_json_atomic(out, {"complete": True, "result": result})
    return 0
