"""Performance benchmark of the pipeline's hot paths, on any device: :func:`run_bench` runs every
measurement, in order, in one process and one run, and returns the JSON-able result
(``python -m vdm.bench``, :mod:`vdm.bench.cli`).

Everything is measured on the configuration of ``config/config.yaml`` (or ``--config``: e.g.
``config/cifar10.yaml``), read as the Snakefile reads it (:mod:`vdm.bench.configs`), then
``--set`` overrides. ``--device`` replaces the config's ``device`` (default: the config's,
``auto`` = CUDA when present). ``--threads`` torch intra-op CPU threads (default 1, what the
pipeline's jobs use; ``torch.get_num_threads()`` is recorded). ``--synthetic`` trains and
evaluates on random images of the dataset's shape and level count
(:func:`vdm.core.data.synthetic_dataset`; the training set has the real split's size, at most
8192 images; no download, so the numbers measure compute, not data). ``--quick`` uses fewer
steps and repeats (never a smaller batch or network; :mod:`vdm.bench.sizes`) and skips the grid
run.

The measurements, in the order they run (each module's docstring gives the method and units):

1. :mod:`vdm.bench.train_timing`: ``train_loop_efficiency`` [ratio] = images/s of the real
   trainer over those of the bare PyTorch loop of the same model, at the config's precision and
   for each precision variant, with ``compile_seconds`` [s] for compiled ones.
2. :mod:`vdm.bench.flops`: ``flops_per_image`` [FLOP] of a training step, the measured matmul
   ``peak_flops`` [FLOP/s] and ``mfu`` [fraction].
3. :mod:`vdm.bench.eval_timing`: ``nll_seconds_per_eval`` [s] and the NLL's Monte-Carlo SE
   ``nll_se_bpd`` [bits/dim]; ``sample_images_per_s`` [images/s] in fp32 and bf16, and whether
   bf16 sampling keeps FID within the run-to-run noise; ``fid_seconds_cold`` /
   ``fid_seconds_cached`` [s].
4. :mod:`vdm.bench.grid` (without ``--quick``, never with ``--synthetic``): ``grid_seconds`` [s]
   of the whole Snakemake workflow and ``grid_overhead_share`` [fraction].

The result (``metrics``, their units and goals): :mod:`vdm.bench.report`. Imports beyond torch
and numpy (Snakemake, PyYAML, torch-fidelity, scikit-learn) happen only in the measurements that
need them, so ``--synthetic`` runs where only torch is installed.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from vdm.bench.configs import DEFAULT_CONFIG, RESOLVED_CONFIGS, load_pipeline_config
from vdm.bench.eval_timing import fid_unavailable, measure_fid, measure_nll, measure_sampling
from vdm.bench.flops import measure_mfu
from vdm.bench.grid import measure_grid
from vdm.bench.report import collect_result
from vdm.bench.sizes import Sizes
from vdm.bench.train_timing import measure_train_efficiency
from vdm.core.config import apply_overrides
from vdm.core.data import ImageData, synthetic_dataset
from vdm.core.dataset_facts import SPLIT_SIZES, dataset_info
from vdm.core.provenance import provenance, resolve_device

SYNTHETIC_MAX_TRAIN = 8192  # images in a synthetic training set (at most)


def bench_data(config: dict[str, Any], synthetic: bool, sizes: Sizes) -> dict[str, ImageData | None]:
    """Training and NLL data: random images of the dataset's shape with ``synthetic`` (train:
    the real split's size, at most :data:`SYNTHETIC_MAX_TRAIN`; NLL: ``sizes.nll_examples`` or
    the real split's size), else None (each measurement loads the real splits)."""
    if not synthetic:
        return {"train": None, "test": None}
    name = config["dataset"]
    train = synthetic_dataset(name, "train", min(SPLIT_SIZES[name]["train"], SYNTHETIC_MAX_TRAIN))
    test = synthetic_dataset(name, config["nll"]["split"],
                             sizes.nll_examples or SPLIT_SIZES[name][config["nll"]["split"]])
    return {"train": train, "test": test}


def run_bench(sizes: Sizes, threads: int = 1, config_path: str | Path = DEFAULT_CONFIG,
              grid_config: Path | None = None, quick: bool = False, device: str | None = None,
              synthetic: bool = False, overrides: tuple[str, ...] | list[str] = (),
              progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Every measurement, in order, in a temporary directory; the JSON-able result.

    ``device`` replaces the config's; ``overrides`` are ``key=value`` settings applied to the
    pipeline config (as ``--set``); ``progress`` is called with the result so far after every
    section (the GPU check writes it, so a section that hangs loses none before it).
    """
    started = time.perf_counter()
    torch.set_num_threads(threads)
    config = apply_overrides(load_pipeline_config(config_path), list(overrides))
    if device is not None:
        config["device"] = device
    resolved = resolve_device(config["device"])
    notes: list[str] = []
    is_default = Path(config_path).resolve() == DEFAULT_CONFIG.resolve()
    context = {"quick": quick, "threads": threads, "torch_version": torch.__version__,
               "device": str(resolved), "device_type": resolved.type,
               "device_name": (torch.cuda.get_device_name(resolved) if resolved.type == "cuda"
                               else "cpu"),
               "config_file": str(config_path), "overrides": list(overrides),
               "synthetic": synthetic, "sizes": dataclasses.asdict(sizes), "notes": notes,
               "load_average_at_start": list(os.getloadavg()),  # other processes' CPU demand
               "default_grid": is_default and not synthetic and not overrides}
    if importlib.util.find_spec("snakemake") is None or importlib.util.find_spec("yaml") is None:
        notes.append(f"config: the resolved copy in {RESOLVED_CONFIGS.name} (no Snakemake/PyYAML)")
    sections: dict[str, dict[str, Any]] = {}

    def report() -> dict[str, Any]:
        result = collect_result(sections, context, started)
        if progress is not None:
            progress(result)
        return result

    data = bench_data(config, synthetic, sizes)
    image_shape = tuple(dataset_info(config["dataset"])["shape"])
    with tempfile.TemporaryDirectory(prefix="vdm-bench-") as tmp:
        work = Path(tmp)
        def partial_train(section: dict[str, Any]) -> None:
            sections["train"] = section
            report()

        sections["train"] = measure_train_efficiency(config, sizes, work / "train", threads,
                                                     data["train"], progress=partial_train)
        sections["mfu"] = measure_mfu(config, sections["train"], sizes, resolved, image_shape)
        report()
        model_path = sections["train"]["model_path"]
        sections["nll"] = measure_nll(model_path, config, sizes.nll_repeats, data["test"])
        report()
        sections["sample"], images = measure_sampling(model_path, config, sizes.num_samples,
                                                      sizes.sample_repeats, sizes.sample_steps)
        report()
        why_not = fid_unavailable(config)
        if why_not is None:
            sections["fid"] = measure_fid(images, config, work / "fid", threads,
                                          sizes.classifier_steps, data["train"], data["test"])
            check = sections["fid"]["bf16_check"]
            sections["sample"].update({key: check[key] for key in (
                "sample_bf16_fid_shift", "sample_fid_seed_noise")}, bf16_check=check)
        else:
            notes.append(f"FID skipped: {why_not}")
            sections["sample"]["bf16_check"] = {"ok": None, "recommended": "fp32",
                                                "note": f"not checked: {why_not}"}
        report()
        if synthetic and (sizes.run_grid or grid_config is not None):
            notes.append("grid skipped: --synthetic measures compute only")
        elif sizes.run_grid or grid_config is not None:
            sections["grid"] = measure_grid(grid_config, work / "grid")
    result = report()
    result["load_average_at_end"] = list(os.getloadavg())
    result["provenance"] = provenance(resolved)
    return result
