"""Wall-clock timing on a device that queues its work: synchronise, stamp step starts, and the
rate over a window of steps.

On CUDA a call returns as soon as its work is queued, so a ``time.perf_counter`` stamp counts the
device's work only after :func:`sync`; on the CPU :func:`sync` does nothing. Times are in
seconds, rates in images/s.
"""

from __future__ import annotations

import time

import torch


def sync(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (CUDA only; nothing to wait for on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def window_rate(stamps: list[float], batch_size: int, warmup: int) -> float:
    """Images/s from step-start stamps: ``batch * (S-1-W) / (stamps[S-1] - stamps[W])``."""
    steps = len(stamps) - 1 - warmup
    if steps < 1:
        raise ValueError(f"need more than warm-up + 1 = {warmup + 1} steps, got {len(stamps)}")
    return batch_size * steps / (stamps[-1] - stamps[warmup])


def stamp(stamps: list[float], device: torch.device, steps: int, warmup: int) -> None:
    """Append the start time of the next step; on CUDA synchronise first at stamps 1 (after the
    first, compiling, step), ``W`` and ``S-1`` (the window's ends), and never otherwise."""
    if len(stamps) in (1, warmup, steps - 1):
        sync(device)
    stamps.append(time.perf_counter())
