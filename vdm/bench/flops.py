"""Model FLOPs utilisation (MFU) of the training step.

``flops_per_image`` [FLOP]: one training step of the network, forward + backward, counted by
``torch.utils.flop_counter.FlopCounterMode`` on the meta device (no compute) at batch 2 and
divided by 2: the matmul, convolution and attention FLOPs (2 per multiply-add; elementwise
operations, normalisation and the optimizer are not counted, as usual for MFU). ``peak_flops``
[FLOP/s]: the device's attainable peak measured in the same run: the best of ``2 n^3 / t`` over
timed ``n x n`` matmuls (bf16 on CUDA, ``n = 8192``; fp32 on CPU, ``n = 1024``, at the run's
thread count); both dtypes are measured and recorded (``peak_flops_bf16``, ``peak_flops_fp32``;
fp32 on CUDA with the trainer's TF32 setting). ``mfu`` [fraction] =
``train_images_per_s * flops_per_image / peak_flops`` at the config's precision; ``bare_mfu``
the same for the bare loop.

Per precision variant (:mod:`vdm.bench.train_timing`): ``mfu_<v>`` [fraction], the same ratio
with that variant's ``train_images_per_s``, always against the same peak.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import torch

from vdm.bench.clock import sync
from vdm.bench.configs import cell_run_config
from vdm.bench.sizes import Sizes
from vdm.core.config import RunConfig
from vdm.model.network import UNet


def count_training_flops(run_config: RunConfig, image_shape: tuple[int, int, int],
                         batch: int = 2) -> dict[str, Any]:
    """FLOPs of one training step of the network per image: forward + backward of
    ``network(z, log_snr)`` (``z`` needs no gradient, as in training), counted by
    ``torch.utils.flop_counter.FlopCounterMode`` on the meta device (shapes only, no compute).
    Matmuls, convolutions and attention at 2 FLOPs per multiply-add; ``by_op`` per aten op."""
    from torch.utils.flop_counter import FlopCounterMode  # imports triton (torch.compile's): only here

    with torch.device("meta"):
        network = UNet(image_shape, **dataclasses.asdict(run_config.model)).train()
        z, log_snr = torch.zeros(batch, *image_shape), torch.zeros(batch)
    counter = FlopCounterMode(display=False)
    with counter:
        network(z, log_snr).square().mean().backward()
    by_op = {str(op): count / batch for op, count in counter.get_flop_counts()["Global"].items()}
    return {"flops_per_image": counter.get_total_flops() / batch, "by_op": by_op,
            "counted_batch": batch}


def measure_matmul_peak(device: torch.device, dtype: torch.dtype, n: int,
                        repeats: int = 5, inner: int | None = None) -> dict[str, Any]:
    """Attainable matmul rate [FLOP/s] of ``device``: the best over ``repeats`` timings of
    ``inner`` back-to-back ``(n x n) @ (n x n)`` products (``2 n^3`` FLOPs each) after a
    warm-up, synchronised before and after each timing."""
    inner = inner or (10 if device.type == "cuda" else 1)
    generator = torch.Generator(device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=generator)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=generator)
    for _ in range(2):
        a @ b
    best = math.inf
    for _ in range(repeats):
        sync(device)
        started = time.perf_counter()
        for _ in range(inner):
            a @ b
        sync(device)
        best = min(best, (time.perf_counter() - started) / inner)
    return {"flops_per_s": 2 * n**3 / best, "n": n, "dtype": str(dtype).removeprefix("torch."),
            "best_seconds": best, "repeats": repeats, "inner": inner}


def reference_dtype(device: torch.device) -> torch.dtype:
    """The dtype of the peak MFU is quoted against: bf16 on CUDA, fp32 elsewhere."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def mfu(images_per_s: float, flops_per_image: float, peak_flops_per_s: float) -> float:
    """Model FLOPs utilisation ``images/s * FLOPs/image / peak FLOP/s`` (a fraction)."""
    return images_per_s * flops_per_image / peak_flops_per_s


def measure_mfu(config: dict[str, Any], train: dict[str, Any], sizes: Sizes,
                device: torch.device, image_shape: tuple[int, int, int]) -> dict[str, Any]:
    """FLOPs per image, the measured peaks, and the MFU of every measured variant (adds
    ``mfu``, ``bare_mfu`` and ``mfu_<variant>`` to ``train``'s metrics as well)."""
    flops = count_training_flops(cell_run_config(config, "eps", "cosine"), image_shape)
    n = sizes.peak_size or (8192 if device.type == "cuda" else 1024)
    peaks = {name: measure_matmul_peak(device, dtype, n)
             for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    reference = "bf16" if reference_dtype(device) == torch.bfloat16 else "fp32"
    peak = peaks[reference]["flops_per_s"]
    per_image = flops["flops_per_image"]
    out = {"flops_per_image": per_image, "peak_flops": peak, "peak_dtype": reference,
           "peak_flops_fp32": peaks["fp32"]["flops_per_s"],
           "peak_flops_bf16": peaks["bf16"]["flops_per_s"],
           "mfu": mfu(train["train_images_per_s"], per_image, peak),
           "bare_mfu": mfu(train["bare_images_per_s"], per_image, peak),
           "flops": flops, "peaks": peaks}
    for variant, summary in train["variants"].items():
        key = variant.replace("-", "_")
        summary["mfu"] = mfu(summary["train_images_per_s"], per_image, peak)
        summary["bare_mfu"] = mfu(summary["bare_images_per_s"], per_image, peak)
        out[f"mfu_{key}"] = summary["mfu"]
    return out
