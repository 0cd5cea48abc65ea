"""One-command GPU check: ``python3 -m vdm gpu-check --out DIR [--budget-s 280]``.

Built for machines lent for minutes with only PyTorch and numpy installed (no Snakemake, PyYAML,
torch-fidelity, tqdm or internet): everything here imports nothing else, and the configs are read
from the resolved copies in ``vdm/bench/resolved_configs.json`` when PyYAML/Snakemake are missing.
Three stages, each in its own subprocess with its own time limit (a share of ``--budget-s``;
time a stage leaves unused goes to the next ones), each writing its result as soon as it has
one, so a stage that hangs or crashes loses nothing of the others:

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

Output (a few small files): ``DIR/gpu_check.json`` (rewritten after every stage: device, torch
and CUDA versions, each stage's status, seconds, limit and result, the checks and the goals),
``DIR/summary.txt`` (the same in a few lines), ``DIR/stages/<stage>.json`` and
``DIR/stages/<stage>.log`` (the stage's output, its last 64 KB). Training runs go to a temporary
directory that is removed at the end. Exit status 0 when every stage finished and every check
passed. ``--device cpu --tiny`` runs the same code with tiny sizes (the tests do).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from vdm.bench.configs import REPO, cell_run_config, load_pipeline_config
from vdm.bench.measure import run_bench
from vdm.bench.sizes import Sizes
from vdm.core.config import apply_overrides
from vdm.core.provenance import provenance, resolve_device, strict_fp32, write_json_atomic
from vdm.model.objectives import OBJECTIVES

STAGES = ("bench", "train", "sample_nll")
#: each stage's share of the time budget (of what is left when it starts)
SHARES = {"bench": 0.55, "train": 0.33, "sample_nll": 0.12}
SCHEDULES = ("cosine", "learned")
LOG_TAIL_BYTES = 64 * 1024

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
    """What the check runs (see :func:`add_arguments` for each option's meaning)."""

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


# --------------------------------------------------------------------------------------------
# Stages (each runs in its own process; ``emit`` writes its result so far)
# --------------------------------------------------------------------------------------------


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
    import csv

    with (trainer_dir / "train_log.csv").open() as f:
        return [float(row["loss"]) for row in csv.DictReader(f)]


def check_no_sync(run_config: Any, data: Any, out_dir: Path, steps: int = 4) -> dict[str, Any]:
    """On CUDA: after 3 warm-up steps (compilation, cuDNN autotuning), ``steps`` training steps
    under ``torch.cuda.set_sync_debug_mode("error")``: any host-device sync raises. Then one
    :meth:`Trainer.check_finite` (the deferred read, outside the guarded region)."""
    from vdm.training.trainer import Trainer

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
    from vdm.training.trainer import Trainer

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
    from vdm.bench.train_timing import time_real_trainer
    from vdm.core.data import synthetic_dataset
    from vdm.training.trainer import NonFiniteLossError

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
    from vdm.bench.eval_timing import bf16_eps
    from vdm.core.data import dataset_info, synthetic_dataset
    from vdm.evaluation.evaluate import evaluate_nll
    from vdm.model.diffusion import build_model
    from vdm.model.sampler import sample
    from vdm.training.trainer import load_trained_model

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


# --------------------------------------------------------------------------------------------
# The parent: time limits, results, checks, summary
# --------------------------------------------------------------------------------------------


def _tail(path: Path, limit: int = LOG_TAIL_BYTES) -> str:
    """Keep only the last ``limit`` bytes of ``path``; return its last 20 lines."""
    if not path.is_file():
        return ""
    raw = path.read_bytes()
    if len(raw) > limit:
        raw = raw[-limit:]
        path.write_bytes(raw)
    return "\n".join(raw.decode(errors="replace").strip().splitlines()[-20:])


def run_stage(stage: str, options: CheckOptions, limit: float, work: Path) -> dict[str, Any]:
    """Run ``stage`` in a subprocess for at most ``limit`` seconds (then its process group is
    killed); the stage's own deadline is 10% (at most 15 s) earlier, so it can stop between
    cells and write what it has."""
    stages_dir = Path(options.out) / "stages"
    stages_dir.mkdir(parents=True, exist_ok=True)
    out, log = stages_dir / f"{stage}.json", stages_dir / f"{stage}.log"
    out.unlink(missing_ok=True)
    started = time.time()
    deadline = started + limit - min(15.0, 0.1 * limit)
    command = [sys.executable, "-m", "vdm.bench.gpu_check", "--stage", stage, "--options",
               json.dumps(dataclasses.asdict(options)), "--stage-out", str(out), "--work",
               str(work), "--deadline", repr(deadline)]
    package_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH"))
                                         if p)}
    with log.open("wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
        try:
            code: int | None = process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the stage and its compile workers
            process.wait()
            code = None
    seconds = time.time() - started
    written = json.loads(out.read_text()) if out.is_file() else {}
    status = ("ok" if code == 0 and written.get("complete") else
              f"timed out after {limit:.0f} s" if code is None else f"failed (exit {code})")
    entry = {"status": status, "seconds": round(seconds, 1), "limit_s": round(limit, 1),
             "result": written.get("result", {})}
    if written.get("error"):
        entry["error"] = written["error"]
    if status != "ok":
        entry["log_tail"] = _tail(log)
    else:
        _tail(log)
    return entry


def evaluate_checks(stages: dict[str, dict[str, Any]], requested: tuple[str, ...],
                    device_type: str) -> dict[str, bool | None]:
    """The pass/fail checks (None: not applicable or not run): every stage finished; every
    training loss finite and every cell ran; eager and compiled losses agree; no host sync
    between log rows (CUDA only); sampling and NLL finite."""
    checks: dict[str, bool | None] = {
        "stages_completed": all(stages.get(s, {}).get("status") == "ok" for s in requested)}
    train = stages.get("train", {}).get("result", {})
    if "train" in requested:
        cells = train.get("cells", [])
        checks["train_losses_finite"] = bool(cells) and not train.get("skipped") and all(
            c.get("finite") for c in cells)
        agreements = [c["agreement"]["ok"] for c in cells if "agreement" in c]
        checks["eager_compiled_agree"] = (all(agreements) and len(agreements) == len(cells)
                                          if train.get("compile") else None)
        no_sync = train.get("no_sync", {})
        checks["no_host_sync_between_logs"] = (
            bool(no_sync) and all(v["ok"] for v in no_sync.values())
            if device_type == "cuda" else None)
    if "sample_nll" in requested:
        checks["sample_nll_finite"] = bool(stages.get("sample_nll", {}).get("result", {}).get(
            "finite"))
    return checks


def _fmt(value: Any, spec: str = ".3g") -> str:
    return format(value, spec) if isinstance(value, int | float) else "n/a"


def summary_lines(result: dict[str, Any]) -> list[str]:
    """The few lines of ``summary.txt``."""
    lines = [f"vdm gpu-check on {result['device_name']} ({result['device']}), torch "
             f"{result['torch_version']}, CUDA {result['cuda_version']}; budget "
             f"{result['budget_s']:.0f} s, used {result.get('seconds', 0):.0f} s"]
    for stage, entry in result["stages"].items():
        res = entry.get("result", {})
        head = f"{stage}: {entry['status']} in {entry['seconds']:.0f} s (limit {entry['limit_s']:.0f} s)"
        if stage == "bench":
            m, g = res.get("metrics", {}), res.get("goals", {})
            goal = {k: ("yes" if v["met"] else "NO") for k, v in g.items()}
            peak = res.get("mfu", {}).get("peak_dtype", "")
            head += (f"; variant {res.get('train', {}).get('variant', 'n/a')}: "
                     f"{_fmt(m.get('train_images_per_s'))} images/s, MFU {_fmt(m.get('mfu'))} "
                     f"(goal >= 0.35: {goal.get('mfu', 'n/a')}), trainer/bare "
                     f"{_fmt(m.get('train_loop_efficiency'))} (goal: "
                     f"{goal.get('train_loop_efficiency', 'n/a')}), compile (s) "
                     f"{_fmt(m.get('compile_seconds'))}; fp32 "
                     f"{_fmt(m.get('train_images_per_s_fp32'))}, bf16 "
                     f"{_fmt(m.get('train_images_per_s_bf16'))} images/s; peak {peak} "
                     f"{_fmt(m.get('peak_flops'))} FLOP/s; {_fmt(m.get('flops_per_image'))} "
                     f"FLOP/image; sampling {_fmt(m.get('sample_images_per_s'))} (bf16 "
                     f"{_fmt(m.get('sample_bf16_images_per_s'))}) images/s; NLL "
                     f"{_fmt(m.get('nll_seconds_per_1000'))} s/1000")
        elif stage == "train":
            cells = res.get("cells", [])
            rel = [c["agreement"]["max_rel_diff"] for c in cells if "agreement" in c]
            head += (f"; {sum(bool(c.get('finite')) for c in cells)}/{len(cells)} cells finite"
                     f" ({len(res.get('skipped', []))} skipped); eager vs compiled max rel diff "
                     f"{_fmt(max(rel) if rel else None)}; no-sync "
                     f"{ {k: v['ok'] for k, v in res.get('no_sync', {}).items()} or 'n/a'}")
        elif stage == "sample_nll":
            head += (f"; sampling fp32 {_fmt(res.get('sample_fp32_images_per_s'))}, bf16 "
                     f"{_fmt(res.get('sample_bf16_images_per_s'))} images/s; NLL "
                     f"{_fmt(res.get('nll_seconds_per_1000'))} s/1000 images, finite "
                     f"{res.get('finite')}")
        lines.append(head)
        if entry.get("error"):
            lines.append(f"  error: {entry['error'].splitlines()[-1]}")
    failed = [name for name, ok in result["checks"].items() if ok is False]
    lines.append("checks: " + ("all passed" if not failed else "FAILED " + ", ".join(failed))
                 + "; " + ", ".join(f"{k}={v}" for k, v in result["checks"].items()))
    return lines


def run_check(options: CheckOptions) -> dict[str, Any]:
    """All requested stages within ``options.budget_s``; writes and returns the result."""
    started = time.time()
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(options.device)
    result: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, "-m", "vdm", *sys.argv[1:]]),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch_version": torch.__version__, "cuda_version": torch.version.cuda,
        "budget_s": options.budget_s, "options": dataclasses.asdict(options), "stages": {},
        "checks": {}, "provenance": provenance(device)}
    work = Path(tempfile.mkdtemp(prefix="vdm-gpu-check-"))
    try:
        for index, stage in enumerate(options.stages):
            remaining = options.budget_s - (time.time() - started)
            share = SHARES[stage] / sum(SHARES[s] for s in options.stages[index:])
            result["stages"][stage] = run_stage(stage, options, max(remaining * share, 1.0), work)
            result["checks"] = evaluate_checks(result["stages"], options.stages, device.type)
            result["seconds"] = round(time.time() - started, 1)
            write_json_atomic(out / "gpu_check.json", result)
            (out / "summary.txt").write_text("\n".join(summary_lines(result)) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="output directory (small files)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--budget-s", type=float, default=280.0,
                        help="total seconds for all stages (default 280)")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"subset of {','.join(STAGES)}")
    parser.add_argument("--objectives", default=",".join(OBJECTIVES), help="training stage")
    parser.add_argument("--schedules", default=",".join(SCHEDULES), help="training stage")
    parser.add_argument("--no-compile", action="store_true", help="eager only (no torch.compile)")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny networks, batches and step counts (tests, smoke runs)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--train-steps", type=int, default=200, help="steps per training cell")
    parser.add_argument("--agree-rtol", type=float, default=0.05,
                        help="largest relative loss difference eager vs compiled (bf16)")


def options_from_args(args: argparse.Namespace) -> CheckOptions:
    def names(text: str, allowed, what: str) -> tuple[str, ...]:
        chosen = tuple(item for item in text.split(",") if item)
        unknown = [item for item in chosen if item not in allowed]
        if unknown or not chosen:
            raise ValueError(f"--{what}: unknown or empty {unknown or text!r}; choose from "
                             f"{', '.join(allowed)}")
        return chosen

    return CheckOptions(out=str(args.out), device=args.device, budget_s=args.budget_s,
                        stages=names(args.stages, STAGES, "stages"),
                        objectives=names(args.objectives, tuple(OBJECTIVES), "objectives"),
                        schedules=names(args.schedules, SCHEDULES, "schedules"),
                        compile=not args.no_compile, tiny=args.tiny, threads=args.threads,
                        train_steps=args.train_steps, agree_rtol=args.agree_rtol)


def main(args: argparse.Namespace) -> int:
    """``python -m vdm gpu-check``: run, print the summary; 0 when every check passed."""
    options = options_from_args(args)
    device = resolve_device(options.device)  # --device cuda without CUDA fails here, in one line
    if options.device == "auto" and device.type != "cuda" and not options.tiny:
        raise ValueError("no CUDA GPU found; the full-size check would take hours on a CPU (use "
                         "--device cpu --tiny for a smoke run of the same code)")
    result = run_check(options)
    print((Path(options.out) / "summary.txt").read_text(), end="")
    print(f"-> {Path(options.out) / 'gpu_check.json'}")
    return 0 if all(ok is not False for ok in result["checks"].values()) else 1


def _stage_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vdm.bench.gpu_check",
                                     description="one stage of the GPU check (internal)")
    parser.add_argument("--stage", required=True, choices=STAGES)
    parser.add_argument("--options", required=True, help="CheckOptions as JSON")
    parser.add_argument("--stage-out", required=True, type=Path)
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument("--deadline", required=True, type=float, help="time.time() to stop by")
    args = parser.parse_args(argv)
    raw = json.loads(args.options)
    options = CheckOptions(**{key: tuple(value) if isinstance(value, list) else value
                              for key, value in raw.items()})
    work = args.work / args.stage if args.stage != "sample_nll" else args.work / "train"
    work.mkdir(parents=True, exist_ok=True)
    return run_stage_in_process(args.stage, options, args.stage_out, work, args.deadline)


if __name__ == "__main__":
    sys.exit(_stage_main())
