"""The bench's result and its table: the metrics in a fixed order (:data:`METRIC_ORDER`), their
units (:data:`UNITS`) and the goals that apply (:func:`goals`).

:func:`collect_result` turns the measured sections (``train``, ``mfu``, ``nll``, ``sample``,
``fid``, ``grid``: each a dict whose numbers are described in its module's docstring) into the
JSON-able result: the run's context, ``metrics`` (every number of :data:`METRIC_ORDER` that a
section holds, plus ``bench_wall_seconds`` [s]), ``goals`` (each applicable goal with ``met``)
and the sections themselves. :func:`format_table` prints it as plain text.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from vdm.bench.configs import VARIANTS

METRIC_ORDER = ("train_loop_efficiency", "train_loop_efficiency_learned", "train_images_per_s",
                "train_learned_images_per_s", "bare_images_per_s", "train_fit_images_per_s",
                "mfu", "bare_mfu", "flops_per_image", "peak_flops", "peak_flops_fp32",
                "peak_flops_bf16",
                *(f"{prefix}_{variant.replace('-', '_')}" for variant in VARIANTS
                  for prefix in ("train_images_per_s", "train_loop_efficiency", "mfu")),
                "compile_seconds",
                "nll_seconds_per_eval", "nll_seconds_per_1000", "nll_se_bpd", "nll_se_total_bpd",
                "nll_mc_se_reported_bpd", "sample_images_per_s", "sample_bf16_images_per_s",
                "sample_fid_seed_noise", "sample_bf16_fid_shift", "fid_seconds_cold",
                "fid_seconds_cached", "grid_seconds", "default_grid_seconds", "grid_overhead_share")


def goals(device_type: str, default_grid: bool) -> dict[str, tuple[str, Callable[[float], bool]]]:
    """The goals that apply: trainer efficiency (>= 0.90 on CPU, >= 0.95 on CUDA), MFU >= 0.35
    on CUDA (of the measured bf16 matmul peak), and on the default digits grid (real data) the
    NLL's precision and time."""
    out: dict[str, tuple[str, Callable[[float], bool]]] = {}
    if device_type == "cuda":
        out["train_loop_efficiency"] = (">= 0.95", lambda v: v >= 0.95)
        out["mfu"] = (">= 0.35", lambda v: v >= 0.35)
    else:
        out["train_loop_efficiency"] = (">= 0.90", lambda v: v >= 0.90)
    if default_grid:
        out["nll_se_bpd"] = ("<= 0.01", lambda v: v <= 0.01)
        out["nll_seconds_per_eval"] = ("<= 60", lambda v: v <= 60.0)
    return out


UNITS = {
    "train_loop_efficiency": "ratio", "train_loop_efficiency_learned": "ratio",
    "train_images_per_s": "images/s", "train_learned_images_per_s": "images/s",
    "bare_images_per_s": "images/s", "train_fit_images_per_s": "images/s",
    "mfu": "fraction", "bare_mfu": "fraction", "flops_per_image": "FLOP",
    "peak_flops": "FLOP/s", "peak_flops_fp32": "FLOP/s", "peak_flops_bf16": "FLOP/s",
    "compile_seconds": "s",
    "nll_seconds_per_eval": "s", "nll_seconds_per_1000": "s/1000 images", "nll_se_bpd": "bits/dim",
    "nll_se_total_bpd": "bits/dim", "nll_mc_se_reported_bpd": "bits/dim", "nll_bpd": "bits/dim",
    "sample_images_per_s": "images/s", "sample_bf16_images_per_s": "images/s",
    "sample_fid_seed_noise": "FID", "sample_bf16_fid_shift": "FID",
    "fid_seconds_cold": "s", "fid_seconds_cached": "s", "grid_seconds": "s",
    "default_grid_seconds": "s", "grid_overhead_share": "fraction", "bench_wall_seconds": "s",
}
for _variant in VARIANTS:
    _key = _variant.replace("-", "_")
    UNITS.update({f"train_images_per_s_{_key}": "images/s", f"mfu_{_key}": "fraction",
                  f"train_loop_efficiency_{_key}": "ratio"})


def collect_result(sections: dict[str, dict[str, Any]], context: dict[str, Any],
                   started: float) -> dict[str, Any]:
    """The result of a run from its ``sections`` so far and its ``context`` (``device_type`` and
    ``default_grid`` choose the goals and are left out); ``started`` is the run's
    ``time.perf_counter()`` at its start."""
    metrics = {name: section[name] for name in METRIC_ORDER for section in sections.values()
               if name in section and isinstance(section[name], int | float)}
    metrics["bench_wall_seconds"] = time.perf_counter() - started
    applicable = goals(context["device_type"], context["default_grid"])
    return {**{k: v for k, v in context.items() if k not in ("device_type", "default_grid")},
            "torch_num_threads": torch.get_num_threads(), "metrics": metrics,
            "goals": {name: {"goal": goal, "met": bool(check(metrics[name]))}
                      for name, (goal, check) in applicable.items() if name in metrics},
            **sections}


def _format_value(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else str(value)


def format_table(result: dict[str, Any]) -> str:
    """Plain-text table: metric, value, unit, goal, met?"""
    rows = [("metric", "value", "unit", "goal", "met?")]
    for name, value in result["metrics"].items():
        goal = result["goals"].get(name)
        rows.append((name, _format_value(value), UNITS.get(name, ""),
                     goal["goal"] if goal else "-",
                     ("yes" if goal["met"] else "NO") if goal else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    data = "synthetic data" if result.get("synthetic") else "real data"
    header = (f"vdm.bench.measure ({'quick' if result['quick'] else 'full'}): torch {result['torch_version']}"
              f", device {result['device']} ({result.get('device_name', '')}), "
              f"{result['torch_num_threads']} thread(s), {data}, {Path(result['config_file']).name}")
    return "\n".join([header, *lines, *(f"note: {note}" for note in result.get("notes", []))])
