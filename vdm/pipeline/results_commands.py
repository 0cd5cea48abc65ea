"""The commands over results: ``collect`` (one run's metrics.json), ``aggregate`` (tables and
claims), ``claims`` and ``plots``."""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from vdm.core.provenance import (
    determinism_note,
    read_json,
    write_json_atomic,
)
from vdm.reporting.summary_columns import (
    BAYES_SAMPLER_COLUMNS,
    FINITE_METRICS,
    KNOWN_DENSITY_COLUMNS,
    SAMPLE_TRUTH_COLUMNS,
)


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
#: (and ``sample_spacing``, recorded only when it is not ``time``: :func:`evaluation_record`)
EVALUATION_KEYS = ("sampler", "sample_steps", "nfe", "guidance_kind", "guidance_weight", "primary")
FID_KEYS = ("fid", "kid", "kid_std")
#: FID keys present only when computed
OPTIONAL_FID_KEYS = ("fid_se", "class_accuracy", "classifier_test_accuracy",
                     *SAMPLE_TRUTH_COLUMNS, *BAYES_SAMPLER_COLUMNS)


def evaluation_record(fid: dict[str, Any], source: Path, primary: bool) -> dict[str, Any]:
    """One entry of ``metrics.json``'s ``evaluations``: the sampler setting (from the samples'
    meta copied into ``fid.json``), its FID/KID/precision/recall and the source file. The step
    spacing is recorded as ``sample_spacing`` when it is not ``time`` (the uniform time grid;
    so a grid without other spacings has the records, and summary columns, of before). On a
    dataset with a known density also its samples against the truth and, with
    ``evaluation.bayes_samplers``, the exact denoiser's scores (:data:`OPTIONAL_FID_KEYS`). Raises
    ``ValueError`` naming the file when a metric is not finite."""
    sampling = fid.get("sampling", {})
    record = {"sampler": sampling.get("method"), "sample_steps": sampling.get("steps"),
              "nfe": sampling.get("nfe"), "guidance_kind": sampling.get("guidance_kind", "none"),
              "guidance_weight": sampling.get("guidance_weight", 0.0), "primary": primary,
              **{key: fid[key] for key in FID_KEYS},
              **{key: fid[key] for key in ("precision", "recall")
                 if math.isfinite(fid.get(key, math.nan))},
              **{key: fid[key] for key in OPTIONAL_FID_KEYS if fid.get(key) is not None},
              **{key: sampling[key] for key in ("model_range_outside_classifier",)
                 if key in sampling},  # classifier-guided: lambda range beyond the classifier's
              **({"sample_spacing": sampling["spacing"]}
                 if sampling.get("spacing") not in (None, "time") else {}),
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
                    denoiser_floor_json: Path | None = None,
                    snapshot: Mapping[str, Any] | None = None) -> None:
    """Merge one run's ``train.json``, ``nll.json`` and ``fid.json`` into ``metrics.json``.

    Training budgets (``train.snapshots``): when the run saved snapshots (``train.json``'s
    ``snapshots`` lists a step), the record gets ``train_step``, the step whose weights were
    evaluated: ``train.steps`` here, and for the evaluation of an earlier snapshot (``nll.json``
    and ``fid.json`` of ``snapshots/step<k>.pt``) ``snapshot`` holds ``train_step = k`` and the
    run's state at that step (``train_seconds``, ``final_loss``, ``logsnr_max``, ``logsnr_min``:
    :func:`vdm.training.snapshots.snapshot_metrics` and the snapshot's schedule end points),
    which replace the final step's; ``sources`` then names the snapshot file. A run without
    snapshots records no ``train_step`` (its ``metrics.json`` is as before the key existed).

    The file holds the numbers, the seed, the full resolved configuration (training run and
    evaluation settings), ``evaluations``: one record per sampler setting (the primary one of
    ``fid.json`` first, then those of ``sweep_jsons``; :func:`evaluation_record`), provenance
    (git commit, Python/torch/torch-fidelity/snakemake versions, device), wall times of each
    stage (seconds, in-process), the FID feature extractor, what determinism is guaranteed,
    and the source files. Raises ``ValueError``
    naming the file and key when a metric is NaN/infinite (e.g. a diverged model), so that
    nothing non-finite reaches the tables and plots.
    """
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
    metrics.update({key: nll[key] for key in KNOWN_DENSITY_COLUMNS if key in nll})
    if "mixture" in nll:  # the known distribution (digits-gmm): hash, components, H
        metrics["mixture"] = nll["mixture"]
    metrics["nll_num_examples"] = nll["num_examples"]
    if snapshot is not None:  # an earlier step's weights: the run as it was then
        for key in ("train_seconds", "final_loss", "logsnr_max", "logsnr_min"):
            metrics.pop(key)
        metrics.update(snapshot)
        sources["snapshot"] = nll.get("model")
    elif train.get("snapshots"):
        metrics["train_step"] = train["steps"]
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
        if floor.get("kind") == "excess_eps_error":  # a known density: the exact denoiser
            metrics["excess_eps_error"] = {key: floor[key] for key in (
                "target", "log_snrs", "common", "step", "logsnr_min", "logsnr_max", "rows",
                "weighted", "num_examples", "note", "weighting")}
            for split, excess in floor["weighted"].items():  # scalars for summary.csv
                metrics[f"excess_eps_error_{split}"] = excess["excess"]
                metrics[f"excess_eps_error_{split}_se"] = excess["excess_se"]
        else:  # the memorising optimum of the training set
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
                             "train" if key == "final_loss" else
                             "denoiser_floor" if key.startswith(("denoiser_gap", "excess_eps"))
                             else "nll"]
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
    # lazy: reporting (pandas, matplotlib) for this command only; cli imports every command module
    from vdm.reporting.headline import write_headline
    from vdm.reporting.table_files import aggregate_main as write_all_tables  # lazy: as above

    for path in [*args.metrics, *([args.floor] if args.floor else [])]:
        if not path.is_file():
            raise FileNotFoundError(f"{'floor' if path == args.floor else 'metrics'} file not "
                                    f"found: {path}")
    written = write_all_tables(args.metrics, args.out_dir, baseline=parse_baseline(args.baseline),
                               floor=read_json(args.floor) if args.floor else None,
                               run_name=args.run_name)
    written.update(write_headline(written["summary.csv"], written["claims.csv"], args.out_dir,
                                  run_name=args.run_name))  # the report's landing page
    print("tables: " + ", ".join(str(p) for p in written.values()))


def claims_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--summary", required=True, type=Path, help="a grid's summary.csv")
    parser.add_argument("--run-name", default="results", help="the grid's name, for the header")
    parser.add_argument("--commit", help="commit the summary was produced at (default: the "
                                         "runs' git_commit column)")


def claims_main(args: argparse.Namespace) -> None:
    """Print ``claims.md`` of a ``summary.csv`` (:func:`vdm.reporting.claims.evaluate_claims`): which
    published findings reproduce in that grid; the same text as the grid's own claims.md."""
    # lazy: reporting (pandas, scipy) for this command only
    from vdm.reporting.claims_report import claims_report

    if not args.summary.is_file():
        raise FileNotFoundError(f"summary table not found: {args.summary}")
    import pandas as pd  # lazy: pandas for this command only (0.2 s per job otherwise)

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
    tables' :func:`vdm.reporting.summary_rows.display_frame`)."""
    keys = {path: run_key(path) for path in paths}
    varying = [i for i in (0, 1) if len({key[i] for key in keys.values()}) > 1]
    return {path: (" / ".join([*(key[i] for i in varying), key[2]]), key[3], key[4])
            for path, key in keys.items()}


def setting_of(samples: Path) -> str:
    """The evaluation setting of a ``samples.npz``: the folder name below ``sweep/``, or the
    setting recorded in the primary samples' meta."""
    if samples.parent.parent.name == "sweep":
        return samples.parent.name
    # lazy: torch-fidelity (absent on the GPU machines; 1.3 s)
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
    parser.add_argument("--excess-eps-error", type=Path,
                        help="excess_eps_error.csv of vdm aggregate (a dataset with a known "
                             "density): the excess ε-error figure")
    parser.add_argument("--out-dir", required=True, type=Path)


def plots_main(args: argparse.Namespace) -> None:
    # lazy: matplotlib and seaborn for this command only
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
                       read_json(args.floor) if args.floor else None, args.denoiser_floor,
                       args.excess_eps_error)
    print("plots: " + ", ".join(str(p) for p in written))
