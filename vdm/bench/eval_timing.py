"""Evaluation timing: the NLL, sampling and FID, with the model that the first real-trainer repeat
of :mod:`vdm.bench.train_timing` trained.

* NLL: ``nll_seconds_per_eval`` [s], ``nll_seconds_per_1000`` [s per 1000 images]: one
  :func:`vdm.evaluation.evaluate.evaluate_nll` of the ``nll.split`` (digits test: 300 images;
  synthetic: ``Sizes.nll_examples`` or the real split's size) at the config's options (time
  samples, batch, log-SNR sampling), in fp32 (no TF32 on CUDA:
  :func:`vdm.core.provenance.strict_fp32`), with the EMA weights of the model trained by the
  first real-trainer repeat (the config's ``train.steps``, or fewer with ``--quick``); median
  over ``R`` evaluations with seeds ``0 .. R-1``. ``nll_se_bpd`` [bits/dim]: Monte-Carlo
  standard error of the test-set mean, i.e. the standard deviation (ddof 1) over the ``R`` seeds
  of the test-set mean bits/dim: the estimator's own noise, without the spread over test images
  (the images are the same in every repeat). ``nll_se_total_bpd`` [bits/dim]: ``evaluate_nll``'s
  own ``nll_bpd_se`` (spread over images + Monte-Carlo noise), median over the repeats.
  ``nll_mc_se_reported_bpd`` [bits/dim], when ``evaluate_nll`` returns ``nll_bpd_mc_se``, its
  median: a cross-check of ``nll_se_bpd``.
* Sampling: ``sample_images_per_s`` [images/s]: :func:`vdm.model.sampler.sample` at the config's
  sampling settings (``Sizes.sample_steps`` steps when set) with the same model, fp32; median
  over repeats. ``sample_bf16_images_per_s``: the same with the network under bf16 autocast (the
  sampler's own arithmetic stays fp32). bf16 sampling is recommended only if its FID matches
  fp32 within the run-to-run noise: ``sample_fid_seed_noise`` = ``|FID(fp32, seed 0) - FID(fp32,
  seed 1)|``, ``sample_bf16_fid_shift`` = ``|FID(bf16, seed 0) - FID(fp32, seed 0)|`` and
  ``sample.bf16_check.ok`` = shift <= noise (:func:`bf16_sampling_verdict`); without FID (no
  torch-fidelity or extractor weights) the check is not made and fp32 stays.
* FID: ``fid_seconds_cold`` / ``fid_seconds_cached`` [s]:
  :func:`vdm.evaluation.fid.compute_metrics` (FID, KID, precision/recall; the config's
  extractor) of the fp32 samples against the reference split, first with an empty temporary
  ``cache_root`` (reference features extracted), then again with the same cache. Loading the
  data and training the classifier (as ``python -m vdm classifier`` does; fewer steps with
  ``--quick``) are not timed. Skipped with a note (never a crash) when torch-fidelity is not
  installed or the Inception weights are neither configured
  (``fid.feature_extractor_weights_path``) nor in torch's hub cache.

torch-fidelity is optional: :mod:`vdm.evaluation.fid` and :mod:`vdm.evaluation.feature_extractors`
import it, so :func:`measure_fid` imports them when it runs (after :func:`fid_unavailable` said
they can), and the rest of this module runs where only torch is installed.
"""

from __future__ import annotations

import importlib.util
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from vdm.bench.clock import sync
from vdm.core.data import ImageData, load_dataset, load_fid_reference
from vdm.core.dataset_facts import FRESH_REFERENCE, dataset_info
from vdm.core.job_specs import classifier_spec, fid_settings, nll_settings, sampling_settings
from vdm.core.provenance import resolve_device, strict_fp32
from vdm.evaluation.evaluate import evaluate_nll
from vdm.model.sampler import sample
from vdm.training.trainer import load_trained_model


def measure_nll(model_path: str | Path, config: dict[str, Any], repeats: int,
                data: ImageData | None = None) -> dict[str, Any]:
    """``repeats`` evaluations (seeds ``0..repeats-1``) of the config's NLL on its split (or on
    ``data``), in fp32 (:func:`vdm.core.provenance.strict_fp32`).

    Seconds per evaluation (median), seconds per 1000 images, Monte-Carlo SE of the test-set
    mean (std over seeds, bits/dim) and the evaluator's own SE (median, bits/dim)."""
    if repeats < 2:
        raise ValueError("the Monte-Carlo SE needs at least 2 NLL repeats")
    options = nll_settings(config)  # the settings the workflow's nll/evaluate spec gets
    device = resolve_device(config["device"])
    model, run_config = load_trained_model(model_path, device)
    if data is None:
        data = load_dataset(run_config.dataset, options.split, run_config.data_root,
                            run_config.download)
    seconds, means, ses, reported_mc = [], [], [], []
    for seed in range(repeats):
        sync(device)
        started = time.perf_counter()
        with strict_fp32(device):
            result = evaluate_nll(model, data, batch_size=options.batch_size,
                                  num_time_samples=options.num_time_samples, seed=seed,
                                  max_examples=options.max_examples, device=device)
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
        "batch_size": options.batch_size, "repeats": repeats, "precision": "fp32 (no TF32)",
        "per_seed_nll_bpd": means, "per_seed_seconds": seconds,
    }


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
    options = sampling_settings(config)  # the primary setting, as the workflow's sample spec
    method, config_steps = options.method, options.steps
    steps = steps or config_steps
    device = resolve_device(config["device"])
    model, run_config = load_trained_model(model_path, device)
    info = dataset_info(run_config.dataset)

    def draw(eps_fn, seed: int) -> tuple[float, torch.Tensor]:
        started = time.perf_counter()
        out = sample(eps_fn, model.schedule, tuple(info["shape"]), num_samples,
                     info["num_levels"], steps=steps, method=method,
                     batch_size=options.batch_size, seed=seed, device=device)
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
            "method": method, "batch_size": options.batch_size,
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


def fid_unavailable(config: dict[str, Any]) -> str | None:
    """Why FID cannot be computed here (a note), or None: torch-fidelity not installed, or the
    Inception weights neither configured nor in torch's hub cache (offline: no download)."""
    if importlib.util.find_spec("torch_fidelity") is None:
        return "torch-fidelity is not installed (pip install torch-fidelity)"
    features = fid_settings(config).features
    if features.feature_extractor != "inception-v3-compat":
        return None
    weights = features.weights_path
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
    from vdm.evaluation.fid import compute_metrics  # torch-fidelity (optional: module docstring)

    options = fid_settings(config)  # the settings the workflow's fid/evaluate spec gets
    extractor = options.features.feature_extractor
    device = str(resolve_device(config["device"]))
    dataset, split = config["dataset"], options.features.reference_split
    train = train or load_dataset(dataset, "train", config["data_root"], config["download"])
    extra: dict[str, Any] = {}
    weights: Path | None = None
    if extractor == "classifier":
        from vdm.evaluation.feature_extractors import save_classifier, train_classifier  # ditto

        clf = classifier_spec(config)  # the workflow's fid_classifier spec
        test = test or load_dataset(dataset, "test", config["data_root"], config["download"])
        steps = clf.steps if classifier_steps is None else classifier_steps
        started = time.perf_counter()
        model, accuracy = train_classifier(train, test, steps=steps, batch_size=clf.batch_size,
                                           lr=clf.lr, seed=clf.seed, device=device,
                                           num_threads=threads)
        extra = {"classifier_steps": steps, "classifier_accuracy": accuracy,
                 "classifier_seconds": time.perf_counter() - started}
        weights = save_classifier(model, work_dir / "classifier.pt",
                                  {"dataset": dataset, "test_accuracy": accuracy, "steps": steps})
    elif options.features.weights_path:
        weights = Path(options.features.weights_path)
    if split == FRESH_REFERENCE:  # fresh true samples (digits-gmm), as the workflow's jobs
        reference = load_fid_reference(dataset, split, fresh_size=options.features
                                       .fresh_reference_size).pixels_uint8()
    else:
        reference = (train if split == "train" else test or load_dataset(
            dataset, "test", config["data_root"], config["download"])).pixels_uint8()
    cache = work_dir / "fid_cache"
    cache.mkdir(parents=True, exist_ok=False)

    def metrics(images: torch.Tensor, prc: bool) -> dict[str, Any]:
        return compute_metrics(images, reference, dataset=dataset, split=split,
                               extractor=extractor, weights_path=weights, cache_root=cache,
                               device=device, kid_subset_size=options.kid_subset_size,
                               prc=prc, batch_size=options.features.batch_size)

    timings, result = {}, {}
    for label in ("cold", "cached"):
        started = time.perf_counter()
        result = metrics(samples["fp32"], options.prc)
        timings[label] = time.perf_counter() - started
    verdict = bf16_sampling_verdict(result["fid"], metrics(samples["fp32_seed1"], False)["fid"],
                                    metrics(samples["bf16"], False)["fid"])
    return {"fid_seconds_cold": timings["cold"], "fid_seconds_cached": timings["cached"],
            "fid": result["fid"], "kid": result["kid"], "num_samples": result["num_samples"],
            "num_reference": result["num_reference"], "kid_subset_size": result["kid_subset_size"],
            "prc": options.prc, "feature_extractor": result["feature_extractor"],
            "bf16_check": verdict, **extra}
