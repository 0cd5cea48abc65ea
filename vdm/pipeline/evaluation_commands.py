"""The commands that evaluate a trained model: ``sample``, ``nll``, ``fid``, ``fid-floor``,
``evaluate`` (sample + nll + fid in one process) and ``sweep`` (further sampler and guidance
settings)."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from vdm.core.progress import Progress
from vdm.core.provenance import (
    atomic_output,
    provenance,
    resolve_device,
    strict_fp32,
    write_json_atomic,
)
from vdm.model.likelihood import DEFAULT_NUM_TIME_SAMPLES
from vdm.model.sampler import SAMPLERS as SAMPLER_METHODS
from vdm.pipeline.options import (
    common_eval_arguments,
    fid_common_arguments,
    guidance_arguments,
    model_fid_arguments,
    ode_arguments,
    ode_options,
    set_threads,
)


# ----- sample -----------------------------------------------------------------------------
def sample_arguments(parser: argparse.ArgumentParser) -> None:
    common_eval_arguments(parser)
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=100, help="sampling steps N")
    parser.add_argument("--method", default="ancestral", choices=SAMPLER_METHODS)
    guidance_arguments(parser)
    parser.add_argument("--no-clip", action="store_true", help="do not clip x_hat to [-1, 1]")
    parser.add_argument("--out", required=True, type=Path, help="samples.npz (uint8 images)")
    parser.add_argument("--grid", type=Path, help="sample grid PNG")


def write_samples(model, config, device, *, model_path: Path, setting, num_samples: int,
                  batch_size: int, seed: int, ema: bool, clip: bool, out: Path,
                  grid: Path | None, started: float, noisy_classifier: Path | None = None) -> None:
    """Draw samples of a loaded model with an :class:`vdm.model.guidance.EvaluationSetting` (sampler,
    steps, guidance); a conditional model's samples are class-balanced (image ``i`` of class
    ``i mod K``). Writes ``samples.npz`` (uint8 ``images``, int64 ``labels`` when there are
    classes, and a meta JSON with the setting and ``wall_seconds`` since ``started``; with
    classifier guidance also :func:`vdm.model.guidance.classifier_range_check`'s ranges, and a
    warning line on stderr when the model's leaves the classifier's) and optionally the grid
    PNG, atomically."""
    from vdm.core.data import dataset_info
    from vdm.core.images import save_grid
    from vdm.model.guidance import classifier_range_check, classifier_range_warning, sample_guided

    info = dataset_info(config.dataset)
    classifier = None
    if setting.guidance.kind == "classifier":
        from vdm.training.noisy_classifier import load_noisy_classifier

        if noisy_classifier is None:
            raise ValueError("classifier guidance needs --noisy-classifier (vdm noisy-classifier)")
        classifier = load_noisy_classifier(noisy_classifier, config.dataset, device)
    ranges = ({} if classifier is None or setting.guidance.weight == 0
              else classifier_range_check(model, classifier))
    if warning := classifier_range_warning(ranges):  # learned end points may have moved
        print(f"vdm sample: warning: {setting.name}: {warning}", file=sys.stderr)
    classes = model.num_classes is not None or setting.guidance.kind != "none"
    images, labels = sample_guided(
        model, setting.guidance, num_samples=num_samples,
        num_classes=info["num_classes"] if classes else None, image_shape=tuple(info["shape"]),
        num_levels=info["num_levels"], steps=setting.steps, method=setting.method,
        batch_size=batch_size, seed=seed, device=device, clip=clip, classifier=classifier,
        progress=Progress(f"sample {setting.name}", "evals"))
    meta = {"model": str(model_path), "num_samples": num_samples, "setting": setting.name,
            "steps": setting.steps, "method": setting.method, "nfe": setting.nfe,
            "guidance_kind": setting.guidance.kind, "guidance_weight": setting.guidance.weight,
            "conditional": model.num_classes is not None, "seed": seed, "ema": ema,
            "noisy_classifier": None if classifier is None else str(noisy_classifier), **ranges,
            "run_config": config.to_dict(), "provenance": provenance(device),
            "wall_seconds": round(time.perf_counter() - started, 3)}
    arrays = {"images": images.numpy()} | ({} if labels is None else {"labels": labels.numpy()})
    with atomic_output(out) as tmp:
        np.savez_compressed(tmp, **arrays, meta=json.dumps(meta, default=str))
    if grid:
        save_grid(images, grid, title=f"{config.parameterization}/{config.objective}/"
                                      f"{config.schedule} seed {config.seed}, {setting.name}")
    print(f"{len(images)} samples ({setting.name}) -> {out}")


def sample_main(args: argparse.Namespace) -> None:
    from vdm.model.guidance import EvaluationSetting, Guidance
    from vdm.training.trainer import load_trained_model

    started = time.perf_counter()
    setting = EvaluationSetting(args.method, args.steps, Guidance(args.guidance,
                                                                  args.guidance_weight))
    set_threads(args.threads)
    device = resolve_device(args.device)
    model, config = load_trained_model(args.model, device, use_ema=not args.no_ema)
    write_samples(model, config, device, model_path=args.model, setting=setting,
                  num_samples=args.num_samples, batch_size=args.batch_size, seed=args.seed,
                  ema=not args.no_ema, clip=not args.no_clip, out=args.out, grid=args.grid,
                  started=started, noisy_classifier=args.noisy_classifier)


# ----- nll --------------------------------------------------------------------------------
def nll_arguments(parser: argparse.ArgumentParser) -> None:
    common_eval_arguments(parser)
    parser.add_argument("--split", default="test", choices=["train", "test"])
    parser.add_argument("--num-time-samples", type=int, default=DEFAULT_NUM_TIME_SAMPLES)
    parser.add_argument("--time-sampling", default="logsnr", choices=["logsnr", "t"])
    parser.add_argument("--discrete-steps", type=int, help="discrete-time bound with T steps")
    parser.add_argument("--max-examples", type=int, help="evaluate only the first N examples")
    ode_arguments(parser)
    parser.add_argument("--out", required=True, type=Path, help="nll.json")
    parser.add_argument("--denoiser-floor-out", type=Path,
                        help="also the gap to the training set's optimal denoiser -> this JSON")


def ode_bound_vs_elbo(ode_bpd, elbo_bpd, name: str = "nll_ode") -> dict[str, float]:
    """Paired comparison of the two bounds on the images both were computed on (the first
    ``len(ode_bpd)``): ``nll_elbo_bpd_on_ode_examples`` and ``<name>_minus_elbo_bpd`` (mean of
    the per-image differences; negative = the ODE bound is lower) with its standard error
    (``name``: ``nll_ode``, uniform dequantization, or ``nll_ode_vdeq``, decoder-consistent)."""
    m = min(len(ode_bpd), len(elbo_bpd))
    difference = ode_bpd[:m] - elbo_bpd[:m]
    out = {"nll_elbo_bpd_on_ode_examples": float(elbo_bpd[:m].mean()),
           f"{name}_minus_elbo_bpd": float(difference.mean())}
    if m > 1:
        out[f"{name}_minus_elbo_bpd_se"] = float(difference.std(unbiased=True) / math.sqrt(m))
    return out


def write_nll(model, config, device, *, model_path: Path, split: str, num_time_samples: int,
              time_sampling: str, discrete_steps: int | None, batch_size: int,
              max_examples: int | None, seed: int, ema: bool, out: Path, started: float,
              ode: dict[str, Any] | None = None) -> None:
    """Test-set bits/dim of a loaded model (:func:`vdm.evaluation.evaluate.evaluate_nll`) -> ``nll.json``;
    with ``ode`` (keywords of :func:`vdm.model.ode.ode_nll`) also the probability-flow ODE bounds,
    uniform dequantization ``nll_ode_bpd`` and decoder-consistent ``nll_ode_vdeq_bpd``
    (:func:`vdm.model.ode_bound.ode_vdeq_nll`), each paired with the ELBO on the same images
    (their seconds together in ``ode_wall_seconds``)."""
    from vdm.core.data import load_dataset
    from vdm.evaluation.evaluate import evaluate_nll

    data = load_dataset(config.dataset, split, config.data_root, config.download)
    with strict_fp32(device):  # fp32 without TF32 on CUDA: the bounds are measurements
        result = evaluate_nll(model, data, batch_size=batch_size,
                              num_time_samples=num_time_samples, time_sampling=time_sampling,
                              discrete_steps=discrete_steps, seed=seed, max_examples=max_examples,
                              device=device, return_per_example=True,
                              progress=Progress(f"nll {split}", "draws"))
        elbo = result.pop("per_example_bpd")
        if model.num_classes is not None:  # also -log p(x | y) with the true label, same seed
            conditional = evaluate_nll(model, data, batch_size=batch_size,
                                       num_time_samples=num_time_samples,
                                       time_sampling=time_sampling, discrete_steps=discrete_steps,
                                       seed=seed, max_examples=max_examples, device=device,
                                       conditional=True,
                                       progress=Progress(f"nll {split} conditional", "draws"))
            result.update({f"nll_cond_{key.removeprefix('nll_')}": conditional[key]
                           for key in ("nll_bpd", "nll_bpd_se") if key in conditional})
        if ode is not None:
            from vdm.model.ode import ode_nll
            from vdm.model.ode_bound import ode_vdeq_nll

            ode_started = time.perf_counter()
            ode_result = ode_nll(model, data, seed=seed, device=device, return_per_example=True,
                                 progress=Progress(f"ode nll {split}", "batches"), **ode)
            result.update(ode_bound_vs_elbo(ode_result.pop("per_example_bpd"), elbo))
            result.update(ode_result)
            vdeq = ode_vdeq_nll(model, data, seed=seed, device=device, return_per_example=True,
                                **ode)
            result.update(ode_bound_vs_elbo(vdeq.pop("per_example_bpd"), elbo, "nll_ode_vdeq"))
            result.update(vdeq)
            result["ode_wall_seconds"] = round(time.perf_counter() - ode_started, 3)
    result.update({"model": str(model_path), "ema": ema, "run_config": config.to_dict(),
                   "provenance": provenance(device),
                   "wall_seconds": round(time.perf_counter() - started, 3)})
    write_json_atomic(out, result)
    print(f"{result['nll_bpd']:.4f} +- {result.get('nll_bpd_se', math.nan):.4f} bits/dim "
          f"({result['split']}, n={result['num_examples']}) -> {out}")


def nll_main(args: argparse.Namespace) -> None:
    from vdm.training.trainer import load_trained_model

    started = time.perf_counter()
    set_threads(args.threads)
    device = resolve_device(args.device)
    model, config = load_trained_model(args.model, device, use_ema=not args.no_ema)
    write_nll(model, config, device, model_path=args.model, split=args.split,
              num_time_samples=args.num_time_samples, time_sampling=args.time_sampling,
              discrete_steps=args.discrete_steps, batch_size=args.batch_size,
              max_examples=args.max_examples, seed=args.seed, ema=not args.no_ema, out=args.out,
              started=started, ode=ode_options(args))
    if args.denoiser_floor_out:
        write_denoiser_floor(args.model, seed=args.seed, device=device, ema=not args.no_ema,
                             out=args.denoiser_floor_out)


def fid_arguments(parser: argparse.ArgumentParser) -> None:
    fid_common_arguments(parser)
    parser.add_argument("--samples", required=True, type=Path, help="samples.npz")
    parser.add_argument("--kid-subset-size", type=int, default=1000)
    parser.add_argument("--no-prc", action="store_true", help="skip precision/recall")
    parser.add_argument("--dataset-classifier", type=Path,
                        help="dataset classifier (vdm classifier) for the class accuracy of "
                             "labelled (conditional) samples")
    parser.add_argument("--out", required=True, type=Path, help="fid.json")


def write_fid(samples_path: Path, *, dataset: str, root: str | Path, split: str,
              extractor: str, weights: Path | None, cache_root: Path, device,
              kid_subset_size: int, prc: bool, batch_size: int, out: Path,
              started: float, dataset_classifier: Path | None = None) -> None:
    """FID/KID/precision-recall of ``samples.npz`` against ``split`` of ``dataset`` -> fid.json
    (with the sampling settings and wall time copied from the samples' meta). Samples with
    class labels (conditional models) also get their ``class_accuracy`` under the
    ``dataset_classifier`` (with that classifier's own ``classifier_test_accuracy``) and the
    per-class FID (``per_class_fid``, or ``per_class_fid_skipped`` with the reason)."""
    from vdm.core.data import load_dataset
    from vdm.evaluation.fid import compute_metrics, load_sample_labels, load_samples, load_samples_meta
    from vdm.model.guidance import CLASSIFIER_RANGE_KEYS

    samples = load_samples(samples_path)
    reference_data = load_dataset(dataset, split, root)
    reference = reference_data.pixels_uint8()
    result = compute_metrics(
        samples, reference, dataset=dataset, split=split, extractor=extractor,
        weights_path=weights, cache_root=cache_root, device=str(device),
        kid_subset_size=kid_subset_size, prc=prc, batch_size=batch_size,
        progress=Progress("fid features", "batches"))
    labels = load_sample_labels(samples_path)
    if labels is not None:
        from vdm.evaluation.conditional_metrics import class_accuracy, classifier_test_accuracy, per_class_fid

        if dataset_classifier is None:
            raise ValueError(f"{samples_path} has class labels: class accuracy needs "
                             "--dataset-classifier (vdm classifier)")
        result["class_accuracy"] = class_accuracy(samples, labels, dataset_classifier,
                                                  dataset=dataset, device=device)
        result["classifier_test_accuracy"] = classifier_test_accuracy(dataset_classifier)
        per_class, reason = per_class_fid(
            samples, labels, reference, reference_data.labels, dataset=dataset, split=split,
            extractor=extractor, weights_path=weights, cache_root=cache_root, device=str(device),
            batch_size=batch_size)
        result.update({"per_class_fid": {str(k): v for k, v in per_class.items()}}
                      if per_class else {"per_class_fid_skipped": reason})
    sampling = load_samples_meta(samples_path)
    result.update({"samples": str(samples_path), "reference_split": split,
                   "sampling": {key: sampling.get(key) for key in (
                       "num_samples", "setting", "steps", "method", "nfe", "guidance_kind",
                       "guidance_weight", "conditional", "seed", "ema", "wall_seconds")}
                   | {key: sampling[key] for key in CLASSIFIER_RANGE_KEYS if key in sampling},
                   "provenance": provenance(device),
                   "wall_seconds": round(time.perf_counter() - started, 3)})
    write_json_atomic(out, result)
    print(f"FID ({result['feature_extractor']}) {result['fid']:.3f} -> {out}")


def fid_main(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    set_threads(args.threads)
    write_fid(args.samples, dataset=args.dataset, root=args.root, split=args.split,
              extractor=args.extractor, weights=args.weights, cache_root=args.cache_root,
              device=resolve_device(args.device), kid_subset_size=args.kid_subset_size,
              prc=not args.no_prc, batch_size=args.batch_size, out=args.out, started=started,
              dataset_classifier=args.dataset_classifier)


def fid_floor_arguments(parser: argparse.ArgumentParser) -> None:
    fid_common_arguments(parser)
    parser.add_argument("--floor-split", default="test",
                        help="the held-out split scored as if it were samples")
    parser.add_argument("--kid-subset-size", type=int, default=1000)
    parser.add_argument("--no-prc", action="store_true", help="skip precision/recall")
    parser.add_argument("--out", required=True, type=Path, help="floor.json")


def fid_floor_main(args: argparse.Namespace) -> None:
    """The real-data floor (:func:`vdm.evaluation.data_floor.real_data_floor`): FID/KID/precision/recall of
    the held-out split against the reference split, with the runs' extractor and cache."""
    from vdm.evaluation.data_floor import real_data_floor

    started = time.perf_counter()
    set_threads(args.threads)
    device = resolve_device(args.device)
    result = real_data_floor(args.dataset, args.root, reference_split=args.split,
                             floor_split=args.floor_split, extractor=args.extractor,
                             weights_path=args.weights, cache_root=args.cache_root,
                             device=str(device), kid_subset_size=args.kid_subset_size,
                             prc=not args.no_prc, batch_size=args.batch_size,
                             progress=Progress("fid-floor features", "batches"))
    result.update({"provenance": provenance(device),
                   "wall_seconds": round(time.perf_counter() - started, 3)})
    write_json_atomic(args.out, result)
    print(f"real-data floor ({result['feature_extractor']}): FID {result['fid']:.3f} of the "
          f"{result['num_floor_images']} {args.floor_split} images -> {args.out}")


# ----- evaluate: sample + nll + fid in one process ----------------------------------------
def evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, type=Path, help="trained model.pt")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    parser.add_argument("--seed", type=int, default=0, help="seed of sampling and NLL noise")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-ema", action="store_true", help="use raw instead of EMA weights")
    group = parser.add_argument_group("sampling (as `vdm sample`)")
    group.add_argument("--num-samples", type=int, default=1000)
    group.add_argument("--sample-steps", type=int, default=100)
    group.add_argument("--method", default="ancestral", choices=SAMPLER_METHODS)
    group.add_argument("--sample-batch-size", type=int, default=1000)
    group.add_argument("--samples-out", required=True, type=Path, help="samples.npz")
    group.add_argument("--grid", type=Path, help="sample grid PNG")
    group = parser.add_argument_group("likelihood (as `vdm nll`)")
    group.add_argument("--split", default="test", choices=["train", "test"])
    group.add_argument("--num-time-samples", type=int, default=DEFAULT_NUM_TIME_SAMPLES)
    group.add_argument("--time-sampling", default="logsnr", choices=["logsnr", "t"])
    group.add_argument("--nll-batch-size", type=int, default=500)
    group.add_argument("--max-examples", type=int, help="evaluate only the first N examples")
    ode_arguments(group)
    group.add_argument("--nll-out", required=True, type=Path, help="nll.json")
    model_fid_arguments(parser)
    parser.add_argument("--fid-out", required=True, type=Path, help="fid.json")
    parser.add_argument("--denoiser-floor-out", type=Path,
                        help="also the gap to the training set's optimal denoiser "
                             "(vdm.evaluation.optimal_denoiser) -> this JSON")
    group = parser.add_argument_group("further settings and the run's metrics.json (as `vdm "
                                      "sweep` and `vdm collect`)")
    group.add_argument("--sweep-settings", nargs="*", default=[],
                       help="further evaluation settings <method>-<steps>[-<guidance>-<weight>]")
    group.add_argument("--sweep-out-dir", type=Path,
                       help="writes <dir>/<setting>/samples.npz and fid.json")
    group.add_argument("--noisy-classifier", type=Path,
                       help="noise-conditional classifier for classifier-guided settings")
    group.add_argument("--train-json", type=Path, help="the run's train.json (for --metrics-out)")
    group.add_argument("--metrics-out", type=Path,
                       help="also merge everything into the run's metrics.json (vdm collect)")


def evaluate_main(args: argparse.Namespace) -> None:
    """``sample`` + ``nll`` + ``fid`` (+ ``sweep`` and ``collect``) of one model in one process:
    the interpreter, torch, the model and the data are loaded once. Writes the same files, with
    the same numbers, as the separate commands."""
    from vdm.model.guidance import EvaluationSetting, parse_setting

    started = time.perf_counter()
    settings = [parse_setting(name) for name in args.sweep_settings]
    if settings and args.sweep_out_dir is None:
        raise ValueError("--sweep-settings needs --sweep-out-dir")
    if args.metrics_out and args.train_json is None:
        raise ValueError("--metrics-out needs --train-json")
    model, config, device = load_checked_model(args, settings)
    ema = not args.no_ema
    write_samples(model, config, device, model_path=args.model,
                  setting=EvaluationSetting(args.method, args.sample_steps),
                  num_samples=args.num_samples, batch_size=args.sample_batch_size, seed=args.seed,
                  ema=ema, clip=True, out=args.samples_out, grid=args.grid, started=started)
    started = time.perf_counter()
    write_nll(model, config, device, model_path=args.model, split=args.split,
              num_time_samples=args.num_time_samples, time_sampling=args.time_sampling,
              discrete_steps=None, batch_size=args.nll_batch_size,
              max_examples=args.max_examples, seed=args.seed, ema=ema, out=args.nll_out,
              started=started, ode=ode_options(args))
    write_fid(args.samples_out, dataset=config.dataset, root=config.data_root,
              split=args.reference_split, extractor=args.extractor, weights=args.weights,
              cache_root=args.cache_root, device=device, kid_subset_size=args.kid_subset_size,
              prc=not args.no_prc, batch_size=args.fid_batch_size, out=args.fid_out,
              started=time.perf_counter(), dataset_classifier=args.dataset_classifier)
    if args.denoiser_floor_out:
        write_denoiser_floor(model, config, seed=args.seed, device=device,
                             out=args.denoiser_floor_out)
    sweep = run_sweep(model, config, device, args, settings, args.sweep_out_dir) if settings else []
    if args.metrics_out:
        from vdm.pipeline.results_commands import collect_metrics

        collect_metrics(args.train_json, args.nll_out, args.fid_out, args.metrics_out, sweep,
                        args.denoiser_floor_out)


def write_denoiser_floor(model, config, *, seed: int, device, out: Path) -> None:
    """The gap of a loaded model (the weights the other metrics used) to the training set's
    optimal denoiser (:func:`vdm.evaluation.optimal_denoiser.model_denoiser_floor`) -> ``out``
    (JSON)."""
    from vdm.evaluation.optimal_denoiser import model_denoiser_floor

    floor = model_denoiser_floor(model, config, seed=seed, device=str(device))
    floor.update({"provenance": provenance(device), "wall_seconds": round(floor["wall_seconds"], 3)})
    write_json_atomic(out, floor)
    print(f"optimal-denoiser gap -> {out}")


def _check_dataset_classifier(model, path: Path | None, dataset: str) -> None:
    """Before any sampling: a conditional model's samples need the dataset classifier for their
    class accuracy (one-line error naming the option or the file)."""
    if model.num_classes is None:
        return
    if path is None:
        raise ValueError("a class-conditional model: its class accuracy needs "
                         "--dataset-classifier (vdm classifier)")
    from vdm.evaluation.fid import check_extractor_weights

    check_extractor_weights("classifier", path, dataset)


# ----- sweep: more sampler settings of one model, without retraining ----------------------
def sweep_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, type=Path, help="trained model.pt")
    parser.add_argument("--settings", required=True, nargs="+",
                        help="evaluation settings <method>-<steps>[-<guidance>-<weight>], e.g. "
                             "ddim-10 heun-12 ancestral-25-cfg-2 ddim-25-classifier-1")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    parser.add_argument("--seed", type=int, default=0,
                        help="sampling seed: the same initial noise for every setting")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-ema", action="store_true", help="use raw instead of EMA weights")
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--sample-batch-size", type=int, default=1000)
    parser.add_argument("--out-dir", required=True, type=Path,
                        help="writes <out-dir>/<setting>/samples.npz and fid.json")
    parser.add_argument("--noisy-classifier", type=Path,
                        help="noise-conditional classifier for classifier-guided settings")
    model_fid_arguments(parser)


def sweep_main(args: argparse.Namespace) -> None:
    """Samples and FID/KID/precision/recall (and the class accuracy of conditional samples) of
    one model for each evaluation setting, in one process (the model is loaded once). Every
    setting starts from the same seed, so differences between settings are paired (common random
    numbers); guided settings are checked against the model before any sampling."""
    from vdm.model.guidance import parse_setting

    settings = [parse_setting(name) for name in args.settings]  # before any work
    model, config, device = load_checked_model(args, settings)
    run_sweep(model, config, device, args, settings, args.out_dir)


def load_checked_model(args: argparse.Namespace, settings) -> tuple[Any, Any, Any]:
    """``(model, config, device)`` of ``evaluate`` and ``sweep``: threads and device set, the
    model loaded (EMA weights unless ``--no-ema``), and before any sampling the FID extractor's
    weights, a conditional model's dataset classifier and every guided setting checked."""
    from vdm.evaluation.fid import check_extractor_weights
    from vdm.training.trainer import load_trained_model

    set_threads(args.threads)
    device = resolve_device(args.device)
    model, config = load_trained_model(args.model, device, use_ema=not args.no_ema)
    check_extractor_weights(args.extractor, args.weights, config.dataset)
    _check_dataset_classifier(model, args.dataset_classifier, config.dataset)
    check_sweep_settings(settings, model, args.noisy_classifier)
    return model, config, device


def check_sweep_settings(settings, model, noisy_classifier: Path | None) -> None:
    """Before any sampling: every guided setting can be applied to ``model``."""
    from vdm.model.guidance import check_guidance

    for setting in settings:
        if setting.guidance.kind == "classifier" and noisy_classifier is None:
            raise ValueError(f"setting {setting.name}: classifier guidance needs "
                             "--noisy-classifier")
        if setting.guidance.kind == "cfg":
            check_guidance(setting.guidance, model)


def run_sweep(model, config, device, args: argparse.Namespace, settings, out_dir: Path
              ) -> list[Path]:
    """Samples and FID of a loaded model for each evaluation setting -> ``out_dir/<setting>/``
    (``samples.npz``, ``fid.json``); the same seed for every setting (paired). Returns the
    ``fid.json`` paths. ``args`` holds the sampling and FID options of ``sweep``/``evaluate``."""
    written = []
    for setting in settings:
        started = time.perf_counter()
        samples = out_dir / setting.name / "samples.npz"
        write_samples(model, config, device, model_path=args.model, setting=setting,
                      num_samples=args.num_samples, batch_size=args.sample_batch_size,
                      seed=args.seed, ema=not args.no_ema, clip=True, out=samples, grid=None,
                      started=started, noisy_classifier=args.noisy_classifier)
        written.append(out_dir / setting.name / "fid.json")
        write_fid(samples, dataset=config.dataset, root=config.data_root,
                  split=args.reference_split, extractor=args.extractor, weights=args.weights,
                  cache_root=args.cache_root, device=device,
                  kid_subset_size=args.kid_subset_size, prc=not args.no_prc,
                  batch_size=args.fid_batch_size, out=written[-1],
                  started=time.perf_counter(), dataset_classifier=args.dataset_classifier)
    return written
