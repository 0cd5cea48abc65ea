"""Performance benchmark of the pipeline's hot paths on the default digits configuration.

Run: ``python -m vdm.bench [--quick] [--json FILE] [--threads N] [--grid-config PATH]``.

Everything is measured in one process, one run, on the configuration of ``config/config.yaml``
(validated against ``config/schema.yaml`` with its defaults filled in, exactly as the Snakefile
does; ``--config`` picks another file), with ``--threads`` torch intra-op CPU threads (default 1,
what the pipeline's jobs use; ``torch.get_num_threads()`` is recorded). ``--quick`` uses fewer
steps and repeats (never a smaller batch or network) and skips the grid run.

Metrics (units in brackets):

1. ``train_loop_efficiency`` [ratio] = ``train_images_per_s`` / ``bare_images_per_s``.

   * ``train_images_per_s`` [images/s]: the real :class:`vdm.trainer.Trainer` (objective eps,
     schedule cosine), ``Trainer(...).fit()`` of ``S`` steps in a temporary directory, with
     everything the trainer does per step: data indexing, t and noise sampling, the objective,
     backward, gradient clipping, AdamW, LR schedule, EMA, CSV logging, progress bar and the
     checkpoint cadence of the config (``state.pt`` at ``checkpoint_every``; with the default 300
     steps the timed window contains the step-250 checkpoint, with ``--quick`` it contains none).
     Timing: ``train_step`` is wrapped (in the instance only) to record a ``perf_counter``
     stamp when each step starts; the rate is ``batch * (S - 1 - W) / (stamp[S-1] - stamp[W])``,
     i.e. the wall time from the start of step ``W`` to the start of the last step, which
     contains steps ``W .. S-2`` and all the bookkeeping ``fit()`` does after each of them.
     Nothing is subtracted. The first ``W`` (warm-up) steps are excluded, as are the
     once-per-``fit()`` costs (resume check, final ``model.pt``/``train.json``/log writing); those
     are reported separately as ``train_fit_images_per_s`` [images/s] = ``batch * S /`` wall time
     of the whole ``fit()`` call. The median of the trainer's own ``train_log.csv``
     ``images_per_sec`` column (rows after warm-up) is recorded as a cross-check.
   * ``bare_images_per_s`` [images/s]: the same UNet (same constructor and config, same
     batch size, device and threads), fixed random ``z``, ``log_snr`` and target drawn once,
     and per step only ``network(z, log_snr)``, MSE, ``zero_grad``, ``backward`` and an AdamW
     step; timed over the same window (same ``S`` and ``W``).
   * ``train_loop_efficiency_learned`` [ratio]: the same with the learned schedule (extra
     schedule gradients), over the same bare loop.

   Repeats are interleaved (real cosine, bare, real learned, real cosine, bare, ...) and the
   medians over repeats are taken; the efficiency is the ratio of the medians.
2. ``nll_seconds_per_eval`` [s], ``nll_seconds_per_1000`` [s per 1000 images]: one
   :func:`vdm.evaluate.evaluate_nll` of the whole ``nll.split`` (digits test: 300 images) at the
   config's options (128 time samples, batch 500, log-SNR sampling), with the EMA weights of the
   model trained by the first real-trainer repeat (the config's ``train.steps`` = 300, or fewer
   with ``--quick``); median over ``R`` evaluations with seeds ``0 .. R-1``.
   ``nll_se_bpd`` [bits/dim]: Monte-Carlo standard error of the test-set mean, i.e. the standard
   deviation (ddof 1) over the ``R`` seeds of the test-set mean bits/dim: the estimator's own
   noise, without the spread over test images (the images are the same in every repeat).
   ``nll_se_total_bpd`` [bits/dim]: ``evaluate_nll``'s own ``nll_bpd_se`` (spread over images +
   Monte-Carlo noise), median over the repeats. ``nll_mc_se_reported_bpd`` [bits/dim], when
   ``evaluate_nll`` returns ``nll_bpd_mc_se`` (its single-run estimate of the Monte-Carlo SE from
   the replicate means of its time draws), its median: a cross-check of ``nll_se_bpd``.
3. ``sample_images_per_s`` [images/s]: :func:`vdm.sampler.sample` at the config's sampling
   settings (25 steps, ancestral, batch 1000) with the same model; median over repeats.
4. ``fid_seconds_cold`` / ``fid_seconds_cached`` [s]: :func:`vdm.fid.compute_metrics` (FID, KID,
   precision/recall; classifier extractor) of the sampled images against the reference split
   (digits train), first with an empty temporary ``cache_root`` (reference features extracted),
   then again with the same cache. Loading the data and training the classifier (as
   ``python -m vdm classifier`` does; fewer steps with ``--quick``) are not timed.
5. Without ``--quick`` (or with ``--grid-config``): ``grid_seconds`` [s]: wall time of
   ``python -m snakemake --cores all`` in a temporary copy of the workflow (fresh results), and
   ``grid_overhead_share`` [fraction] = ``1 - compute / (wall * cores)``, where ``compute`` is
   the sum over jobs of the in-process seconds recorded in their result files (``wall_seconds``
   of train.json, falling back to ``train_seconds``, of nll.json, fid.json, the ``meta`` of
   samples.npz, and of data.json, classifier.json and reference.json; a file without it counts
   0 and is listed under ``grid.compute.missing``). Overhead therefore includes interpreter and
   import start-up of every job, Snakemake's own scheduling, the jobs that record no seconds
   (collect, aggregate, plots) and idle cores. ``default_grid_seconds`` is ``grid_seconds``
   when the grid config is the repository's ``config/config.yaml``. Snakemake's per-rule job
   counts (its "Job stats" table) are recorded under ``grid.job_counts``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
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

from vdm.config import RunConfig, load_config_file, run_config_from_dict
from vdm.provenance import provenance, read_json, resolve_device, write_json_atomic

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "config" / "config.yaml"
SCHEMA = REPO / "config" / "schema.yaml"
WORKFLOW_FILES = ("Snakefile", "workflow", "config")
PROFILE_LINK = "profiles"  # -> workflow/profiles: where Snakemake finds the default profile


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much work each measurement does (never the batch size or the network).

    ``train_steps``: steps ``S`` of every timed ``fit()`` (None: the config's ``train.steps``);
    ``warmup_steps``: ``W`` steps excluded from timing on both sides; ``repeats``: interleaved
    repeats of each training variant; ``nll_repeats``: evaluations (seeds) for the NLL;
    ``num_samples`` / ``sample_repeats``: sampling; ``classifier_steps``: FID classifier training
    steps (None: the config's); ``run_grid``: run the Snakemake grid.
    """

    train_steps: int | None
    warmup_steps: int
    repeats: int
    nll_repeats: int
    num_samples: int
    sample_repeats: int
    classifier_steps: int | None
    run_grid: bool


FULL = Sizes(train_steps=None, warmup_steps=20, repeats=3, nll_repeats=20, num_samples=1000,
             sample_repeats=2, classifier_steps=None, run_grid=True)
QUICK = Sizes(train_steps=80, warmup_steps=10, repeats=5, nll_repeats=8, num_samples=1000,
              sample_repeats=1, classifier_steps=150, run_grid=False)

GOALS: dict[str, tuple[str, Callable[[float], bool]]] = {
    "train_loop_efficiency": (">= 0.90", lambda v: v >= 0.90),
    "nll_se_bpd": ("<= 0.01", lambda v: v <= 0.01),
    "nll_seconds_per_eval": ("<= 60", lambda v: v <= 60.0),
}
UNITS = {
    "train_loop_efficiency": "ratio", "train_loop_efficiency_learned": "ratio",
    "train_images_per_s": "images/s", "train_learned_images_per_s": "images/s",
    "bare_images_per_s": "images/s", "train_fit_images_per_s": "images/s",
    "nll_seconds_per_eval": "s", "nll_seconds_per_1000": "s/1000 images", "nll_se_bpd": "bits/dim",
    "nll_se_total_bpd": "bits/dim", "nll_mc_se_reported_bpd": "bits/dim", "nll_bpd": "bits/dim",
    "sample_images_per_s": "images/s",
    "fid_seconds_cold": "s", "fid_seconds_cached": "s", "grid_seconds": "s",
    "default_grid_seconds": "s", "grid_overhead_share": "fraction", "bench_wall_seconds": "s",
}


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


def load_pipeline_config(path: str | Path = DEFAULT_CONFIG) -> dict[str, Any]:
    """The pipeline config at ``path`` with the schema's defaults filled in (as the Snakefile)."""
    from snakemake.utils import validate

    config = load_config_file(path)
    validate(config, str(SCHEMA))
    return config


def cell_run_config(config: dict[str, Any], objective: str, schedule: str, seed: int = 0,
                    threads: int | None = None, steps: int | None = None) -> RunConfig:
    """The :class:`RunConfig` of one grid cell, built like ``run_config`` in common.smk;
    ``threads`` / ``steps`` override ``train.threads`` / ``train.steps`` when given."""
    train = dict(config["train"])
    if threads is not None:
        train["threads"] = threads
    if steps is not None:
        train["steps"] = steps
    return run_config_from_dict({
        "dataset": config["dataset"], "data_root": config["data_root"],
        "download": config["download"], "device": config["device"], "objective": objective,
        "schedule": schedule, "seed": seed, "logsnr_min": config["logsnr_min"],
        "logsnr_max": config["logsnr_max"],
        "objective_kwargs": config["objective_kwargs"].get(objective, {}),
        "model": config["model"], "train": train,
    })


def _window_rate(stamps: list[float], batch_size: int, warmup: int) -> float:
    """Images/s from step-start stamps: ``batch * (S-1-W) / (stamps[S-1] - stamps[W])``."""
    steps = len(stamps) - 1 - warmup
    if steps < 1:
        raise ValueError(f"need more than warm-up + 1 = {warmup + 1} steps, got {len(stamps)}")
    return batch_size * steps / (stamps[-1] - stamps[warmup])


# --------------------------------------------------------------------------------------------
# 1. Training loop efficiency
# --------------------------------------------------------------------------------------------


def time_real_trainer(run_config: RunConfig, out_dir: Path, warmup: int,
                      train_data: Any = None) -> dict[str, Any]:
    """One ``Trainer(run_config, out_dir).fit()``; rates in images/s, times in s (see module
    docstring). Construction (model build) is not timed; ``train_data`` avoids reloading data."""
    from vdm.trainer import Trainer

    trainer = Trainer(run_config, out_dir, train_data=train_data)
    stamps: list[float] = []
    step = trainer.train_step

    def stamped_step() -> dict[str, float]:
        stamps.append(time.perf_counter())
        return step()

    trainer.train_step = stamped_step  # type: ignore[method-assign]
    started = time.perf_counter()
    trainer.fit()
    fit_seconds = time.perf_counter() - started
    del trainer.train_step
    cfg = run_config.train
    if len(stamps) != cfg.steps:
        raise RuntimeError(f"Trainer.fit() ran {len(stamps)} train_step calls for {cfg.steps} "
                           "steps: the bench's timing hook no longer matches the trainer")
    return {
        "images_per_s": _window_rate(stamps, cfg.batch_size, warmup),
        "fit_images_per_s": cfg.batch_size * cfg.steps / fit_seconds,
        "fit_seconds": fit_seconds,
        "log_images_per_s": _log_rate(out_dir / "train_log.csv", warmup),
        "timed_steps": len(stamps) - 1 - warmup,
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


def time_bare_loop(run_config: RunConfig, image_shape: tuple[int, int, int], steps: int,
                   warmup: int) -> dict[str, Any]:
    """The bare loop (forward, MSE, backward, AdamW; nothing else) on the trainer's UNet with
    the trainer's batch size and device; images/s over the same window as the real trainer."""
    from vdm.network import UNet

    device = resolve_device(run_config.device)
    cfg = run_config.train
    torch.manual_seed(run_config.seed)
    network = UNet(image_shape, **dataclasses.asdict(run_config.model)).to(device).train()
    optimizer = torch.optim.AdamW(network.parameters(), lr=cfg.lr, betas=(0.9, cfg.adam_beta2),
                                  weight_decay=cfg.weight_decay)
    generator = torch.Generator(device).manual_seed(run_config.seed)
    shape = (cfg.batch_size, *image_shape)
    z = torch.randn(shape, generator=generator, device=device)
    target = torch.randn(shape, generator=generator, device=device)
    log_snr = run_config.logsnr_min + (run_config.logsnr_max - run_config.logsnr_min) * torch.rand(
        cfg.batch_size, generator=generator, device=device)
    stamps: list[float] = []
    for _ in range(steps):
        if device.type == "cuda":  # the trainer syncs every step too (float(loss))
            torch.cuda.synchronize(device)
        stamps.append(time.perf_counter())
        loss = F.mse_loss(network(z, log_snr), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return {"images_per_s": _window_rate(stamps, cfg.batch_size, warmup),
            "timed_steps": steps - 1 - warmup}


def measure_train_efficiency(config: dict[str, Any], sizes: Sizes, work_dir: Path,
                             threads: int) -> dict[str, Any]:
    """Interleaved repeats of real trainer (cosine), bare loop, real trainer (learned).

    Returns the metrics (images/s and ratios), the per-repeat numbers and ``model_path``: the
    ``model.pt`` of the first cosine repeat (trained for the config's steps, or ``sizes``')."""
    from vdm.data import load_dataset

    data = load_dataset(config["dataset"], "train", config["data_root"], config["download"])
    variants = {"cosine": cell_run_config(config, "eps", "cosine", 0, threads, sizes.train_steps),
                "learned": cell_run_config(config, "eps", "learned", 0, threads, sizes.train_steps)}
    steps = variants["cosine"].train.steps
    runs: dict[str, list[dict[str, Any]]] = {"cosine": [], "bare": [], "learned": []}
    for repeat in range(sizes.repeats):
        runs["cosine"].append(time_real_trainer(variants["cosine"], work_dir / f"cosine{repeat}",
                                                sizes.warmup_steps, data))
        runs["bare"].append(time_bare_loop(variants["cosine"], data.shape, steps,
                                           sizes.warmup_steps))
        runs["learned"].append(time_real_trainer(variants["learned"],
                                                 work_dir / f"learned{repeat}",
                                                 sizes.warmup_steps, data))
    median = {name: statistics.median(r["images_per_s"] for r in rs) for name, rs in runs.items()}
    return {
        "train_images_per_s": median["cosine"],
        "train_learned_images_per_s": median["learned"],
        "bare_images_per_s": median["bare"],
        "train_loop_efficiency": median["cosine"] / median["bare"],
        "train_loop_efficiency_learned": median["learned"] / median["bare"],
        "train_fit_images_per_s": statistics.median(r["fit_images_per_s"] for r in runs["cosine"]),
        "steps": steps, "warmup_steps": sizes.warmup_steps, "repeats": sizes.repeats,
        "batch_size": variants["cosine"].train.batch_size,
        "per_repeat": runs,
        "model_path": str(work_dir / "cosine0" / "model.pt"),
    }


# --------------------------------------------------------------------------------------------
# 2. NLL
# --------------------------------------------------------------------------------------------


def measure_nll(model_path: str | Path, config: dict[str, Any], repeats: int) -> dict[str, Any]:
    """``repeats`` evaluations (seeds ``0..repeats-1``) of the config's NLL on its split.

    Seconds per evaluation (median), seconds per 1000 images, Monte-Carlo SE of the test-set
    mean (std over seeds, bits/dim) and the evaluator's own SE (median, bits/dim)."""
    from vdm.data import load_dataset
    from vdm.evaluate import evaluate_nll
    from vdm.trainer import load_trained_model

    if repeats < 2:
        raise ValueError("the Monte-Carlo SE needs at least 2 NLL repeats")
    options = config["nll"]
    device = resolve_device(config["device"])
    model, run_config = load_trained_model(model_path, device)
    data = load_dataset(run_config.dataset, options["split"], run_config.data_root,
                        run_config.download)
    seconds, means, ses, reported_mc = [], [], [], []
    for seed in range(repeats):
        started = time.perf_counter()
        result = evaluate_nll(model, data, batch_size=options["batch_size"],
                              num_time_samples=options["num_time_samples"], seed=seed,
                              max_examples=options.get("max_examples"), device=device)
        seconds.append(time.perf_counter() - started)
        means.append(result["nll_bpd"])
        ses.append(result["nll_bpd_se"])
        if "nll_bpd_mc_se" in result:
            reported_mc.append(result["nll_bpd_mc_se"])
    per_eval = statistics.median(seconds)
    reported = {"nll_mc_se_reported_bpd": statistics.median(reported_mc)} if reported_mc else {}
    return {
        "nll_seconds_per_eval": per_eval,
        "nll_seconds_per_1000": per_eval / result["num_examples"] * 1000.0,
        "nll_se_bpd": statistics.stdev(means),
        "nll_se_total_bpd": statistics.median(ses),
        **reported,
        "nll_bpd": statistics.fmean(means),
        "num_examples": result["num_examples"], "split": result["split"],
        "num_time_samples": result["num_time_samples"], "time_sampling": result["time_sampling"],
        "batch_size": options["batch_size"], "repeats": repeats,
        "per_seed_nll_bpd": means, "per_seed_seconds": seconds,
    }


# --------------------------------------------------------------------------------------------
# 3. Sampling
# --------------------------------------------------------------------------------------------


def measure_sampling(model_path: str | Path, config: dict[str, Any], num_samples: int,
                     repeats: int = 1) -> tuple[dict[str, Any], torch.Tensor]:
    """Images/s of :func:`vdm.sampler.sample` at the config's settings (median over
    ``repeats``, seeds ``0..``); also returns the samples of seed 0 (uint8 ``(N, C, H, W)``)."""
    from vdm.data import dataset_info
    from vdm.sampler import sample
    from vdm.trainer import load_trained_model

    options = config["sample"]
    device = resolve_device(config["device"])
    model, run_config = load_trained_model(model_path, device)
    info = dataset_info(run_config.dataset)
    rates, images = [], None
    for seed in range(repeats):
        started = time.perf_counter()
        out = sample(model.eps, model.schedule, tuple(info["shape"]), num_samples,
                     info["num_levels"], steps=options["steps"], method=options["method"],
                     batch_size=options["batch_size"], seed=seed, device=device)
        rates.append(num_samples / (time.perf_counter() - started))
        images = out if images is None else images
    assert images is not None
    return {"sample_images_per_s": statistics.median(rates), "num_samples": num_samples,
            "steps": options["steps"], "method": options["method"],
            "batch_size": options["batch_size"], "repeats": repeats,
            "per_repeat_images_per_s": rates}, images


# --------------------------------------------------------------------------------------------
# 4. FID
# --------------------------------------------------------------------------------------------


def measure_fid(samples: torch.Tensor, config: dict[str, Any], work_dir: Path, threads: int,
                classifier_steps: int | None = None) -> dict[str, Any]:
    """Seconds of :func:`vdm.fid.compute_metrics` (classifier extractor) with a cold, then a
    warm, torch-fidelity cache; the classifier is trained first (untimed) as the pipeline does."""
    from vdm.data import load_dataset
    from vdm.feature_extractors import save_classifier, train_classifier
    from vdm.fid import compute_metrics

    options, clf = config["fid"], config["fid"]["classifier"]
    device = str(resolve_device(config["device"]))
    dataset, split = config["dataset"], options["reference_split"]
    train = load_dataset(dataset, "train", config["data_root"], config["download"])
    test = load_dataset(dataset, "test", config["data_root"], config["download"])
    steps = clf["steps"] if classifier_steps is None else classifier_steps
    started = time.perf_counter()
    model, accuracy = train_classifier(train, test, steps=steps, batch_size=clf["batch_size"],
                                       lr=clf["lr"], seed=clf["seed"], device=device,
                                       num_threads=threads)
    classifier_seconds = time.perf_counter() - started
    weights = save_classifier(model, work_dir / "classifier.pt",
                              {"dataset": dataset, "test_accuracy": accuracy, "steps": steps})
    reference = (train if split == "train" else test).pixels_uint8()
    cache = work_dir / "fid_cache"
    cache.mkdir(parents=True, exist_ok=False)
    timings, result = {}, {}
    for label in ("cold", "cached"):
        started = time.perf_counter()
        result = compute_metrics(samples, reference, dataset=dataset, split=split,
                                 extractor="classifier", weights_path=weights, cache_root=cache,
                                 device=device, kid_subset_size=options["kid_subset_size"],
                                 prc=options["prc"], batch_size=options["batch_size"])
        timings[label] = time.perf_counter() - started
    return {"fid_seconds_cold": timings["cold"], "fid_seconds_cached": timings["cached"],
            "fid": result["fid"], "kid": result["kid"], "num_samples": result["num_samples"],
            "num_reference": result["num_reference"], "kid_subset_size": result["kid_subset_size"],
            "prc": options["prc"], "feature_extractor": result["feature_extractor"],
            "classifier_steps": steps, "classifier_accuracy": accuracy,
            "classifier_seconds": classifier_seconds}


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
    from vdm.fid import load_samples_meta

    meta = load_samples_meta(path) if path.suffix == ".npz" else read_json(path)
    keys = ("wall_seconds", "train_seconds") if path.name == "train.json" else ("wall_seconds",)
    for key in keys:
        if isinstance(meta.get(key), int | float):
            return float(meta[key]), key
    return None, None


RESULT_PATTERNS = {"train": "*/runs/*/*/seed*/train.json", "sample": "*/runs/*/*/seed*/samples.npz",
                   "nll": "*/runs/*/*/seed*/nll.json", "fid": "*/runs/*/*/seed*/fid.json",
                   "prepare_data": "*/data.json", "fid_classifier": "*/fid/classifier.json",
                   "fid_reference": "*/fid/*/reference.json"}


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
                "nll_seconds_per_eval", "nll_seconds_per_1000", "nll_se_bpd", "nll_se_total_bpd",
                "nll_mc_se_reported_bpd", "sample_images_per_s", "fid_seconds_cold",
                "fid_seconds_cached", "grid_seconds", "default_grid_seconds", "grid_overhead_share")


def run_bench(sizes: Sizes, threads: int = 1, config_path: str | Path = DEFAULT_CONFIG,
              grid_config: Path | None = None, quick: bool = False) -> dict[str, Any]:
    """Every measurement, in order, in a temporary directory; the JSON-able result."""
    started = time.perf_counter()
    torch.set_num_threads(threads)
    config = load_pipeline_config(config_path)
    device = resolve_device(config["device"])
    sections: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="vdm-bench-") as tmp:
        work = Path(tmp)
        sections["train"] = measure_train_efficiency(config, sizes, work / "train", threads)
        model_path = sections["train"]["model_path"]
        sections["nll"] = measure_nll(model_path, config, sizes.nll_repeats)
        sections["sample"], images = measure_sampling(model_path, config, sizes.num_samples,
                                                      sizes.sample_repeats)
        sections["fid"] = measure_fid(images, config, work / "fid", threads,
                                      sizes.classifier_steps)
        if sizes.run_grid or grid_config is not None:
            sections["grid"] = measure_grid(grid_config, work / "grid")
    threads_after = torch.get_num_threads()
    metrics = {name: section[name] for name in METRIC_ORDER for section in sections.values()
               if name in section}
    metrics["bench_wall_seconds"] = time.perf_counter() - started
    return {
        "quick": quick, "threads": threads, "torch_num_threads": threads_after,
        "torch_version": torch.__version__, "device": str(device),
        "config_file": str(config_path), "sizes": dataclasses.asdict(sizes),
        "metrics": metrics,
        "goals": {name: {"goal": goal, "met": bool(check(metrics[name]))}
                  for name, (goal, check) in GOALS.items() if name in metrics},
        **sections,
        "provenance": provenance(device),
    }


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
    header = (f"vdm.bench ({'quick' if result['quick'] else 'full'}): torch {result['torch_version']}"
              f", device {result['device']}, {result['torch_num_threads']} thread(s)")
    return "\n".join([header, *lines])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vdm.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer steps and repeats (same batch and network); no grid run")
    parser.add_argument("--json", type=Path, help="write the results here (atomically)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help="pipeline config to benchmark (default config/config.yaml)")
    parser.add_argument("--grid-config", type=Path,
                        help="run the Snakemake grid with this --configfile (also with --quick)")
    parser.add_argument("--no-grid", action="store_true", help="skip the Snakemake grid run")
    return parser


def main(argv: list[str] | None = None, sizes: Sizes | None = None) -> int:
    """Command line entry point; ``sizes`` (internal, for tests) overrides the --quick sizes."""
    args = build_parser().parse_args(argv)
    if args.threads < 1:
        raise SystemExit("--threads must be >= 1")
    chosen = sizes or (QUICK if args.quick else FULL)
    if args.no_grid:
        chosen = dataclasses.replace(chosen, run_grid=False)
    result = run_bench(chosen, args.threads, args.config,
                       None if args.no_grid else args.grid_config, quick=args.quick)
    print(format_table(result))
    if args.json:
        write_json_atomic(args.json, result)
        print(f"-> {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
