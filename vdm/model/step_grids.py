"""The log-SNR grids the samplers step through: where the ``N`` steps of a sampler are placed.

Every sampler of :mod:`vdm.model.sampler` walks a grid ``lambda_0 < lambda_1 < ... < lambda_N``
from ``lambda_0 = lambda(1) = lambda_min`` to ``lambda_N = lambda(0) = lambda_max``, the
schedule's end points (a learned schedule's trained ones), and then denoises once more at
``lambda_max``. The *spacing* says where the inner points lie (``i = 0..N``, natural-log
log-SNR ``lambda``; ``s = sigma / alpha = e^{-lambda/2}``, EDM's ``sigma``):

* ``time`` (the default): uniform in the schedule's time, ``lambda_i = lambda(1 - i/N)``; its
  density in ``lambda`` is the schedule's (cosine: dense in the middle, sparse at both ends);
* ``logsnr``: uniform in log-SNR, ``lambda_i = lambda_min + (i/N) (lambda_max - lambda_min)``,
  the same for every schedule with these end points;
* ``karras``: Karras et al. 2022 (EDM, eq. 5) with ``rho = 7``, uniform in ``s^{1/rho}``:
  ``s_i = (s_max^{1/rho} + (i/N) (s_min^{1/rho} - s_max^{1/rho}))^rho`` with
  ``s_max = e^{-lambda_min/2}``, ``s_min = e^{-lambda_max/2}``, and ``lambda_i = -2 log s_i``;
  its steps in ``s`` shrink towards ``s_min``, its steps in ``lambda`` grow towards
  ``lambda_max`` (``d lambda = -2 rho d log s^{1/rho}``).

Example, the default cosine schedule (``lambda`` in ``[-10, 7]``), ``N = 10``: the first step
goes from ``s = 148.4`` to 6.20 (``time``), 63.4 (``logsnr``), 89.1 (``karras``); the last from
0.188 (``time``), 0.0707 (``logsnr``), 0.134 (``karras``) to ``s = 0.0302``. In ``lambda``:
``time`` jumps from -10 to -3.65 in its first step, ``logsnr`` steps by 1.7, ``karras`` by 1.02
first and 2.98 last.

All three start and end at exactly the same two values (the ``time`` grid's first and last
points, :func:`log_snr_grid`), so the final denoising is the same; only the inner points move.
The grids are computed in float64 and returned as float32, as the samplers use them.
"""

from __future__ import annotations

import torch
from torch import nn

from vdm.model.setting_names import check_spacing

#: EDM's exponent of the ``karras`` spacing (Karras et al. 2022, eq. 5 and Table 1)
KARRAS_RHO = 7.0


def log_snr_grid(schedule: nn.Module, steps: int, spacing: str = "time",
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """The ``steps + 1`` log-SNRs (float32, natural log, increasing) a sampler steps through:
    ``lambda_0 = lambda(1) = lambda_min`` to ``lambda_N = lambda(0) = lambda_max`` with the
    inner points placed by ``spacing`` (module docstring).

    ``time`` is ``schedule(linspace(1, 0, N + 1))`` itself (bit for bit what the samplers used
    before the other spacings existed); ``logsnr`` and ``karras`` take their end points from
    that grid and set them exactly, so all spacings share ``lambda_0`` and ``lambda_N``."""
    check_spacing(spacing)
    if steps < 1:
        raise ValueError(f"sample steps must be >= 1, got {steps}")
    times = torch.linspace(1.0, 0.0, steps + 1, device=device)
    uniform_time = schedule(times).float()
    if spacing == "time":
        return uniform_time
    low, high = uniform_time[0].double(), uniform_time[-1].double()
    fraction = torch.arange(steps + 1, device=uniform_time.device, dtype=torch.float64) / steps
    if spacing == "logsnr":
        grid = low + fraction * (high - low)
    else:  # karras: uniform in s^(1/rho), s = e^(-lambda/2)
        root_max = torch.exp(-low / (2 * KARRAS_RHO))  # s_max^(1/rho)
        root_min = torch.exp(-high / (2 * KARRAS_RHO))  # s_min^(1/rho)
        grid = -2 * KARRAS_RHO * torch.log(root_max + fraction * (root_min - root_max))
    grid = grid.float()
    grid[0], grid[-1] = uniform_time[0], uniform_time[-1]
    return grid
