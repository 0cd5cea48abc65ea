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

from vdm.core.data import dataset_info, load_dataset
from vdm.core.job_specs import FidSettings, OdeSettings, SamplingSettings
from vdm.core.progress import Progress
from vdm.core.provenance import (
    atomic_output,
    provenance,
    resolve_device,
    strict_fp32,
    write_json_atomic,
)
from vdm.evaluation.evaluate import evaluate_nll
from vdm.model.guidance import (
    CLASSIFIER_RANGE_KEYS,
    EvaluationSetting,
    Guidance,
    check_guidance,
    classifier_range_check,
    classifier_range_warning,
    parse_setting,
    sample_guided,
)
from vdm.pipeline.options import (
    check_output,
    extractor_weights,
    file_arguments,
    read_spec,
    set_threads,
    spec_arguments,
)
from vdm.pipeline.results_commands import collect_metrics
from vdm.training.noisy_classifier import load_noisy_classifier
from vdm.training.trainer import load_trained_model


# ----- sample -----------------------------------------------------------------------------
def sample_arguments(parser: argparse.ArgumentParser) -> None:
    spec_arguments(parser, "sample")
    files = file_arguments(parser)
    files.add_argument("--model", required=True, type=Path, metavar="FILE", help="trained model.pt")
    files.add_argument("--noisy-classifier", type=Path, metavar="FILE",
                       help="noise-conditional classifier (vdm noisy-classifier), for "
                            "sampling.guidance_kind classifier")
    files.add_argument("--out", required=True, type=Path, metavar="FILE", help="samples.npz (uint8 images)")
    files.add_argument("--grid", type=Path, metavar="FILE", help="sample grid PNG")


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
    from vdm.core.images import save_grid  # lazy: torchvision + PIL (optional; 1.3 s)

    info = dataset_info(config.dataset)
    classifier = None
    if setting.guidance.kind == "classifier":
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


def evaluation_setting(sampling: SamplingSettings):
    """The :class:`vdm.model.guidance.EvaluationSetting` of a spec's sampling settings."""
    return EvaluationSetting(sampling.method, sampling.steps,
                             Guidance(sampling.guidance_kind, sampling.guidance_weight))


def sample_main(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    spec = read_spec(args)
    setting = evaluation_setting(spec.sampling)
    set_threads(args.threads)
    device = resolve_device(spec.device)
    model, config = load_trained_model(args.model, device, use_ema=spec.ema)
    write_samples(model, config, device, model_path=args.model, setting=setting,
                  num_samples=spec.sampling.num_samples, batch_size=spec.sampling.batch_size,
                  seed=spec.seed, ema=spec.ema, clip=spec.sampling.clip, out=args.out,
                  grid=args.grid, started=started, noisy_classifier=args.noisy_classifier)


# ----- nll --------------------------------------------------------------------------------
def nll_arguments(parser: argparse.ArgumentParser) -> None:
    spec_arguments(parser, "nll")
    files = file_arguments(parser)
    files.add_argument("--model", required=True, type=Path, metavar="FILE", help="trained model.pt")
    files.add_argument("--out", required=True, type=Path, metavar="FILE", help="nll.json")
    files.add_argument("--denoiser-floor-out", type=Path, metavar="FILE",
                       help="the gap to the training set's optimal denoiser (spec key "
                            "denoiser_floor) -> this JSON")


def ode_keywords(ode: OdeSettings | None) -> dict[str, Any] | None:
    """A spec's ODE settings as :func:`vdm.model.ode.ode_nll` keywords (None: no ODE bound)."""
    return None if ode is None else ode.to_dict()


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
    (their seconds together in ``ode_wall_seconds``). On a dataset with a known density
    (digits-gmm) also the bounds against the exact ``-log2 P(x) / D`` and the Bayes bound
    (:func:`vdm.evaluation.known_density.against_the_truth`; ``mixture`` names the
    distribution; seconds in ``known_density_wall_seconds``)."""
    # lazy: scipy, via the digits-gmm mixture (optional on the GPU machines; 0.5 s)
    from vdm.evaluation.known_density import against_the_truth, known_mixture

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
            # lazy: torchdiffeq imports scipy (optional; 0.5 s)
            from vdm.model.ode import ode_nll
            from vdm.model.ode_bound import ode_vdeq_nll  # lazy: imports vdm.model.ode, as above

            ode_started = time.perf_counter()
            ode_result = ode_nll(model, data, seed=seed, device=device, return_per_example=True,
                                 progress=Progress(f"ode nll {split}", "batches"), **ode)
            result.update(ode_bound_vs_elbo(ode_result.pop("per_example_bpd"), elbo))
            result.update(ode_result)
            vdeq = ode_vdeq_nll(model, data, seed=seed, device=device, return_per_example=True,
                                **ode)
            vdeq_bpd = vdeq.pop("per_example_bpd")
            result.update(ode_bound_vs_elbo(vdeq_bpd, elbo, "nll_ode_vdeq"))
            result.update(vdeq)
            result["ode_wall_seconds"] = round(time.perf_counter() - ode_started, 3)
        if (mixture := known_mixture(config.dataset)) is not None:  # against the exact P(x)
            truth_started = time.perf_counter()
            result.update(against_the_truth(
                model, data, mixture, elbo_bpd=elbo, batch_size=batch_size,
                num_time_samples=num_time_samples, time_sampling=time_sampling,
                discrete_steps=discrete_steps, seed=seed, device=device, ode=ode,
                ode_vdeq_bpd=None if ode is None else vdeq_bpd,
                progress=Progress(f"bayes bound {split}", "draws")))
            result["known_density_wall_seconds"] = round(time.perf_counter() - truth_started, 3)
    result.update({"model": str(model_path), "ema": ema, "run_config": config.to_dict(),
                   "provenance": provenance(device),
                   "wall_seconds": round(time.perf_counter() - started, 3)})
    write_json_atomic(out, result)
    print(f"{result['nll_bpd']:.4f} +- {result.get('nll_bpd_se', math.nan):.4f} bits/dim "
          f"({result['split']}, n={result['num_examples']}) -> {out}")


def nll_main(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    spec = read_spec(args)
    check_output(spec.denoiser_floor, args.denoiser_floor_out, "denoiser_floor",
                 "--denoiser-floor-out")
    set_threads(args.threads)
    device = resolve_device(spec.device)
    model, config = load_trained_model(args.model, device, use_ema=spec.ema)
    nll = spec.nll
    write_nll(model, config, device, model_path=args.model, split=nll.split,
              num_time_samples=nll.num_time_samples, time_sampling=nll.time_sampling,
              discrete_steps=nll.discrete_steps, batch_size=nll.batch_size,
              max_examples=nll.max_examples, seed=spec.seed, ema=spec.ema, out=args.out,
              started=started, ode=ode_keywords(nll.ode))
    if spec.denoiser_floor:
        write_denoiser_floor(model, config, seed=spec.seed, device=device,
                             out=args.denoiser_floor_out)


def fid_file_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The files of every command that computes FID: the dataset classifier and the cache."""
    files = file_arguments(parser)
    files.add_argument("--dataset-classifier", type=Path, metavar="FILE",
                       help="the dataset classifier (vdm classifier): the feature extractor's "
                            "weights when fid.features.feature_extractor is classifier, and the "
                            "judge of labelled (conditional) samples' class")
    files.add_argument("--cache-root", type=Path, metavar="DIR", required=True,
                       help="torch-fidelity cache of the reference features")
    return files


def fid_arguments(parser: argparse.ArgumentParser) -> None:
    spec_arguments(parser, "fid")
    files = fid_file_arguments(parser)
    files.add_argument("--samples", required=True, type=Path, metavar="FILE", help="samples.npz")
    files.add_argument("--out", required=True, type=Path, metavar="FILE", help="fid.json")


def write_fid(samples_path: Path, *, dataset: str, root: str | Path, split: str,
              extractor: str, weights: Path | None, cache_root: Path, device,
              kid_subset_size: int, prc: bool, batch_size: int, out: Path,
              started: float, dataset_classifier: Path | None = None) -> None:
    """FID/KID/precision-recall of ``samples.npz`` against ``split`` of ``dataset`` -> fid.json
    (with the sampling settings and wall time copied from the samples' meta). Samples with
    class labels (conditional models) also get their ``class_accuracy`` under the
    ``dataset_classifier`` (with that classifier's own ``classifier_test_accuracy``) and the
    per-class FID (``per_class_fid``, or ``per_class_fid_skipped`` with the reason)."""
    # lazy: torch-fidelity (optional; 1.3 s)
    from vdm.evaluation.fid import compute_metrics, load_sample_labels, load_samples, load_samples_meta

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
        # lazy: torch-fidelity (optional; 1.3 s)
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


def score_samples(samples: Path, fid: FidSettings, *, dataset: str, root: str | Path, device,
                  args: argparse.Namespace, out: Path, started: float) -> None:
    """:func:`write_fid` with a spec's FID settings and the command's files
    (``--dataset-classifier``, ``--cache-root``)."""
    features = fid.features
    write_fid(samples, dataset=dataset, root=root, split=features.reference_split,
              extractor=features.feature_extractor,
              weights=extractor_weights(features, args.dataset_classifier),
              cache_root=args.cache_root, device=device, kid_subset_size=fid.kid_subset_size,
              prc=fid.prc, batch_size=features.batch_size, out=out, started=started,
              dataset_classifier=args.dataset_classifier)


def fid_main(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    spec = read_spec(args)
    set_threads(args.threads)
    score_samples(args.samples, spec.fid, dataset=spec.dataset, root=spec.data_root,
                  device=resolve_device(spec.device), args=args, out=args.out, started=started)


def fid_floor_arguments(parser: argparse.ArgumentParser) -> None:
    spec_arguments(parser, "fid-floor")
    files = fid_file_arguments(parser)
    files.add_argument("--out", required=True, type=Path, metavar="FILE", help="floor.json")


def fid_floor_main(args: argparse.Namespace) -> None:
    """The real-data floor (:func:`vdm.evaluation.data_floor.real_data_floor`): FID/KID/precision/recall of
    the held-out split against the reference split, with the runs' extractor and cache."""
    from vdm.evaluation.data_floor import real_data_floor  # lazy: torch-fidelity (optional; 1.3 s)

    started = time.perf_counter()
    spec = read_spec(args)
    features = spec.fid.features
    weights = extractor_weights(features, args.dataset_classifier)
    set_threads(args.threads)
    device = resolve_device(spec.device)
    result = real_data_floor(spec.dataset, spec.data_root,
                             reference_split=features.reference_split,
                             floor_split=spec.floor_split,
                             extractor=features.feature_extractor, weights_path=weights,
                             cache_root=args.cache_root, device=str(device),
                             kid_subset_size=spec.fid.kid_subset_size, prc=spec.fid.prc,
                             batch_size=features.batch_size,
                             progress=Progress("fid-floor features", "batches"))
    result.update({"provenance": provenance(device),
                   "wall_seconds": round(time.perf_counter() - started, 3)})
    write_json_atomic(args.out, result)
    print(f"real-data floor ({result['feature_extractor']}): FID {result['fid']:.3f} of the "
          f"{result['num_floor_images']} {spec.floor_split} images -> {args.out}")


# ----- evaluate: sample + nll + fid in one process ----------------------------------------
def evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    spec_arguments(parser, "evaluate")
    files = fid_file_arguments(parser)
    files.add_argument("--model", required=True, type=Path, metavar="FILE", help="trained model.pt")
    files.add_argument("--train-json", type=Path, metavar="FILE",
                       help="the run's train.json (needed for --metrics-out)")
    files.add_argument("--noisy-classifier", type=Path, metavar="FILE",
                       help="noise-conditional classifier for classifier-guided settings")
    files.add_argument("--samples-out", required=True, type=Path, metavar="FILE", help="samples.npz")
    files.add_argument("--grid", type=Path, metavar="FILE", help="sample grid PNG")
    files.add_argument("--nll-out", required=True, type=Path, metavar="FILE", help="nll.json")
    files.add_argument("--fid-out", required=True, type=Path, metavar="FILE", help="fid.json")
    files.add_argument("--denoiser-floor-out", type=Path, metavar="FILE",
                       help="the gap to the training set's optimal denoiser (spec key "
                            "denoiser_floor) -> this JSON")
    files.add_argument("--sweep-out-dir", type=Path, metavar="DIR",
                       help="<dir>/<setting>/samples.npz and fid.json of the spec's sweep settings")
    files.add_argument("--metrics-out", type=Path, metavar="FILE",
                       help="also merge everything into the run's metrics.json (as vdm collect)")
    files.add_argument("--train-step", type=int, metavar="K",
                       help="--model is the run's snapshot after training step K "
                            "(snapshots/step<K>.pt, train.snapshots; checked): --metrics-out "
                            "records train_step K and the run's state at that step")


def evaluate_main(args: argparse.Namespace) -> None:
    """``sample`` + ``nll`` + ``fid`` (+ ``sweep`` and ``collect``) of one model in one process:
    the interpreter, torch, the model and the data are loaded once. Writes the same files, with
    the same numbers, as the separate commands."""
    started = time.perf_counter()
    spec = read_spec(args)
    primary = evaluation_setting(spec.sampling)
    settings = [parse_setting(name) for name in spec.sweep]
    if settings and args.sweep_out_dir is None:
        raise ValueError("spec key 'sweep' lists settings: give --sweep-out-dir")
    if args.metrics_out and args.train_json is None:
        raise ValueError("--metrics-out needs --train-json")
    if args.train_step is not None and args.metrics_out is None:
        raise ValueError("--train-step is recorded in metrics.json: give --metrics-out")
    check_output(spec.denoiser_floor, args.denoiser_floor_out, "denoiser_floor",
                 "--denoiser-floor-out")
    model, config, device = load_checked_model(args, spec, [primary, *settings])
    snapshot = (None if args.train_step is None else
                snapshot_state(args.model, model, args.train_step))  # before any sampling
    write_samples(model, config, device, model_path=args.model, setting=primary,
                  num_samples=spec.sampling.num_samples, batch_size=spec.sampling.batch_size,
                  seed=spec.seed, ema=spec.ema, clip=spec.sampling.clip, out=args.samples_out,
                  grid=args.grid, started=started, noisy_classifier=args.noisy_classifier)
    started = time.perf_counter()
    nll = spec.nll
    write_nll(model, config, device, model_path=args.model, split=nll.split,
              num_time_samples=nll.num_time_samples, time_sampling=nll.time_sampling,
              discrete_steps=nll.discrete_steps, batch_size=nll.batch_size,
              max_examples=nll.max_examples, seed=spec.seed, ema=spec.ema, out=args.nll_out,
              started=started, ode=ode_keywords(nll.ode))
    score_samples(args.samples_out, spec.fid, dataset=config.dataset, root=config.data_root,
                  device=device, args=args, out=args.fid_out, started=time.perf_counter())
    if spec.denoiser_floor:
        write_denoiser_floor(model, config, seed=spec.seed, device=device,
                             out=args.denoiser_floor_out)
    sweep = run_sweep(model, config, device, args, settings, seed=spec.seed, ema=spec.ema,
                      num_samples=spec.sampling.num_samples,
                      batch_size=spec.sampling.batch_size, fid=spec.fid,
                      out_dir=args.sweep_out_dir) if settings else []
    if args.metrics_out:
        collect_metrics(args.train_json, args.nll_out, args.fid_out, args.metrics_out, sweep,
                        args.denoiser_floor_out, snapshot)


def snapshot_state(path: Path, model, train_step: int) -> dict[str, Any]:
    """The training run at the snapshot ``path`` (``snapshots/step<k>.pt``) whose EMA weights
    ``model`` holds: :func:`vdm.training.snapshots.snapshot_metrics` of its saved state plus the
    log-SNR end points of its (EMA) schedule, ``logsnr_max`` = λ(0) and ``logsnr_min`` = λ(1)
    (a learned schedule moves them during training). ``ValueError`` naming the file when it
    holds the state after another step than ``train_step``."""
    import torch

    from vdm.core.checkpoint import load_checkpoint
    from vdm.model.schedules import schedule_endpoints
    from vdm.training.snapshots import snapshot_metrics

    fields = snapshot_metrics(load_checkpoint(path, "cpu"))
    if fields["train_step"] != train_step:
        raise ValueError(f"{path} holds the state after training step {fields['train_step']}, "
                         f"not after --train-step {train_step}")
    with torch.no_grad():
        logsnr_max, logsnr_min = (float(v) for v in schedule_endpoints(model.schedule))
    return {**fields, "logsnr_max": logsnr_max, "logsnr_min": logsnr_min}


def write_denoiser_floor(model, config, *, seed: int, device, out: Path) -> None:
    """The gap of a loaded model (the weights the other metrics used) to the training set's
    optimal denoiser (:func:`vdm.evaluation.optimal_denoiser.model_denoiser_floor`) -> ``out``
    (JSON)."""
    from vdm.evaluation.optimal_denoiser import model_denoiser_floor  # lazy: pandas (optional; 0.2 s)

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
    from vdm.evaluation.fid import check_extractor_weights  # lazy: torch-fidelity (optional; 1.3 s)

    check_extractor_weights("classifier", path, dataset)


# ----- sweep: more sampler settings of one model, without retraining ----------------------
def sweep_arguments(parser: argparse.ArgumentParser) -> None:
    spec_arguments(parser, "sweep")
    files = fid_file_arguments(parser)
    files.add_argument("--model", required=True, type=Path, metavar="FILE", help="trained model.pt")
    files.add_argument("--noisy-classifier", type=Path, metavar="FILE",
                       help="noise-conditional classifier for classifier-guided settings")
    files.add_argument("--out-dir", required=True, type=Path, metavar="DIR",
                       help="writes <out-dir>/<setting>/samples.npz and fid.json")


def sweep_main(args: argparse.Namespace) -> None:
    """Samples and FID/KID/precision/recall (and the class accuracy of conditional samples) of
    one model for each evaluation setting, in one process (the model is loaded once). Every
    setting starts from the same seed, so differences between settings are paired (common random
    numbers); guided settings are checked against the model before any sampling."""
    spec = read_spec(args)
    settings = [parse_setting(name) for name in spec.settings]  # before any work
    if not settings:
        raise ValueError("spec key 'settings' is empty: nothing to sweep")
    model, config, device = load_checked_model(args, spec, settings)
    run_sweep(model, config, device, args, settings, seed=spec.seed, ema=spec.ema,
              num_samples=spec.num_samples, batch_size=spec.batch_size, fid=spec.fid,
              out_dir=args.out_dir)


def load_checked_model(args: argparse.Namespace, spec, settings) -> tuple[Any, Any, Any]:
    """``(model, config, device)`` of ``evaluate`` and ``sweep``: threads and device set, the
    model loaded (EMA weights unless the spec's ``ema`` is false), and before any sampling the
    FID extractor's weights, a conditional model's dataset classifier and every guided setting
    checked."""
    from vdm.evaluation.fid import check_extractor_weights  # lazy: torch-fidelity (optional; 1.3 s)

    features = spec.fid.features
    weights = extractor_weights(features, args.dataset_classifier)
    set_threads(args.threads)
    device = resolve_device(spec.device)
    model, config = load_trained_model(args.model, device, use_ema=spec.ema)
    check_extractor_weights(features.feature_extractor, weights, config.dataset)
    _check_dataset_classifier(model, args.dataset_classifier, config.dataset)
    check_sweep_settings(settings, model, args.noisy_classifier)
    return model, config, device


def check_sweep_settings(settings, model, noisy_classifier: Path | None) -> None:
    """Before any sampling: every guided setting can be applied to ``model``."""
    for setting in settings:
        if setting.guidance.kind == "classifier" and noisy_classifier is None:
            raise ValueError(f"setting {setting.name}: classifier guidance needs "
                             "--noisy-classifier")
        if setting.guidance.kind == "cfg":
            check_guidance(setting.guidance, model)


def run_sweep(model, config, device, args: argparse.Namespace, settings, *, seed: int,
              ema: bool, num_samples: int, batch_size: int, fid: FidSettings, out_dir: Path
              ) -> list[Path]:
    """Samples and FID of a loaded model for each evaluation setting -> ``out_dir/<setting>/``
    (``samples.npz``, ``fid.json``); the same seed for every setting (paired). Returns the
    ``fid.json`` paths. ``args`` holds the files of ``sweep``/``evaluate`` (model, noisy and
    dataset classifier, FID cache)."""
    written = []
    for setting in settings:
        started = time.perf_counter()
        samples = out_dir / setting.name / "samples.npz"
        write_samples(model, config, device, model_path=args.model, setting=setting,
                      num_samples=num_samples, batch_size=batch_size, seed=seed, ema=ema,
                      clip=True, out=samples, grid=None, started=started,
                      noisy_classifier=args.noisy_classifier)
        written.append(out_dir / setting.name / "fid.json")
        score_samples(samples, fid, dataset=config.dataset, root=config.data_root, device=device,
                      args=args, out=written[-1], started=time.perf_counter())
    return written
