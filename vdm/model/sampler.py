"""Sampling: ancestral (DDPM), DDIM, Heun and DPM-Solver++(2M) on a log-SNR grid of ``N`` steps.

The grid runs from ``lambda_min = lambda(1)`` to ``lambda_max = lambda(0)``; its *spacing*
(:mod:`vdm.model.step_grids`, :func:`vdm.model.step_grids.log_snr_grid`) places the inner
points: ``time`` (the default) uniform in the schedule's time, ``t_i = 1 - i/N``, ``logsnr``
uniform in ``lambda``, ``karras`` uniform in ``(sigma/alpha)^{1/7}`` (EDM's rho = 7). The
samplers below only see the grid.

With ``x_hat = (z_t - sigma_t eps_hat) / alpha_t`` (clipped to ``[-1, 1]``) and
``c = 1 - SNR(t)/SNR(s) = -expm1(lambda_t - lambda_s)`` for ``s < t``:

* ``ancestral``: ``z_s ~ N(alpha_s [(1 - c) z_t / alpha_t + c x_hat], c sigma_s^2)``, the posterior
  ``q(z_s | z_t, x = x_hat)`` (VDM eq. 28);
* ``ddim`` (eta = 0): ``z_s = alpha_s x_hat + sigma_s eps_hat'`` with ``eps_hat'`` recomputed from
  the clipped ``x_hat``.

The deterministic samplers solve the probability-flow ODE (Song et al. 2021). In the variables
``y = z / alpha`` and ``s = sigma / alpha = e^{-lambda/2}`` it reads ``dy/ds = eps_hat(alpha y,
lambda)`` (Karras et al. 2022, EDM, eq. 4 with the VP scaling taken out), and

* DDIM is its Euler method: ``y_s = y_t + (s_s - s_t) eps_hat_t``;
* ``heun`` is EDM's second-order Heun method (Algorithm 1): an Euler step, then the average of
  the slopes at both ends; two network evaluations per step;
* ``dpmpp2m`` is DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2): a second-order multistep method
  on the data prediction in ``h = (lambda_s - lambda_t) / 2``, one evaluation per step, its first
  step DDIM.

The final ``z_0`` is denoised once more and rounded to the nearest of the data's ``K`` levels;
images are returned as uint8 pixels ``0..255`` (``round(k * 255 / (K - 1))``).
:func:`vdm.model.setting_names.network_evaluations` gives the number of network evaluations
(NFE) of each sampler.

What ``N`` steps count: ``N`` steps on the grid (``lambda(1 - i/N)`` with ``time`` spacing)
from ``lambda(1) = lambda_min`` to ``lambda(0) = lambda_max`` (not to ``sigma = 0``), then the
final denoising at ``lambda_max``: ``N + 1`` evaluations for ancestral, DDIM and
DPM-Solver++(2M) (the N-step samplers of DDPM, DDIM and DPM-Solver++, whose last step lands on
``sigma = 0``, use ``N``) and ``2N + 1`` for Heun, whose last step also makes its correction
(EDM's N-step Heun skips it at ``sigma = 0``: ``2N - 1``).

With ``clip`` (on in every grid; ``vdm sample --no-clip`` turns it off) every step uses the
clipped ``x_hat`` and the ``eps_hat`` recomputed from it, so DDIM, Heun and DPM-Solver++(2M)
integrate ``dy/ds = eps_clip``, the ODE of the clipped denoiser, not the model's own
probability-flow ODE (the two agree while ``x_hat`` stays in ``[-1, 1]``), and the ancestral
sampler draws from ``q(z_s | z_t, x = clip(x_hat))``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vdm.core.data import levels_to_pixels, model_to_levels
from vdm.core.progress import ProgressCallback, counting_calls
from vdm.model.likelihood import EpsFn
from vdm.model.schedules import alpha_sigma
from vdm.model.setting_names import network_evaluations
from vdm.model.step_grids import log_snr_grid


def _predict_x(eps_fn: EpsFn, z: torch.Tensor, log_snr: torch.Tensor, clip: bool
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_hat, eps_hat)`` at a shared noise level ``log_snr`` (scalar tensor)."""
    alpha, sigma = alpha_sigma(log_snr)
    eps_hat = eps_fn(z, log_snr.expand(z.shape[0])).float()
    x_hat = (z - sigma * eps_hat) / alpha
    if clip:
        x_hat = x_hat.clamp(-1.0, 1.0)
        eps_hat = (z - alpha * x_hat) / sigma
    return x_hat, eps_hat


@torch.no_grad()
def sample_batch(eps_fn: EpsFn, schedule: nn.Module, shape: tuple[int, ...], num_levels: int,
                 steps: int = 100, method: str = "ancestral", clip: bool = True,
                 generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu", spacing: str = "time") -> torch.Tensor:
    """One batch of samples ``(B, C, H, W)``, uint8 pixels ``0..255``, with ``steps`` steps of
    ``method`` on the log-SNR grid of ``spacing`` (:func:`vdm.model.step_grids.log_snr_grid`)."""
    network_evaluations(method, steps)  # checks the name
    log_snrs = log_snr_grid(schedule, steps, spacing, device)
    z = torch.randn(shape, generator=generator, device=device)
    if method == "heun":
        z = _heun(eps_fn, z, log_snrs, clip)
    elif method == "dpmpp2m":
        z = _dpmpp_2m(eps_fn, z, log_snrs, clip)
    else:
        z = _ancestral_or_ddim(eps_fn, z, log_snrs, clip, stochastic=method == "ancestral",
                               generator=generator)
    x_0, _ = _predict_x(eps_fn, z, log_snrs[-1], clip)
    return levels_to_pixels(model_to_levels(x_0, num_levels), num_levels)


def _ancestral_or_ddim(eps_fn: EpsFn, z: torch.Tensor, log_snrs: torch.Tensor, clip: bool,
                       stochastic: bool, generator: torch.Generator | None) -> torch.Tensor:
    """Ancestral (``stochastic``) or DDIM steps through ``log_snrs`` (module docstring)."""
    for log_snr_t, log_snr_s in zip(log_snrs[:-1], log_snrs[1:], strict=True):
        x_hat, eps_hat = _predict_x(eps_fn, z, log_snr_t, clip)
        alpha_t, _ = alpha_sigma(log_snr_t)
        alpha_s, sigma_s = alpha_sigma(log_snr_s)
        if not stochastic:
            z = alpha_s * x_hat + sigma_s * eps_hat
        else:
            c = -torch.expm1(log_snr_t - log_snr_s)
            mean = alpha_s * ((1 - c) * z / alpha_t + c * x_hat)
            noise = torch.randn(z.shape, generator=generator, device=z.device)
            z = mean + (c.sqrt() * sigma_s) * noise
    return z


def _heun(eps_fn: EpsFn, z: torch.Tensor, log_snrs: torch.Tensor, clip: bool) -> torch.Tensor:
    """EDM's Heun method for ``dy/ds = eps_hat`` from ``log_snrs[0]`` to ``log_snrs[-1]``; ``z`` in
    and out (``y = z / alpha``, ``s = e^{-lambda/2}``)."""
    y = z / alpha_sigma(log_snrs[0])[0]
    for log_snr_t, log_snr_s in zip(log_snrs[:-1], log_snrs[1:], strict=True):
        s_t, s_s = torch.exp(-0.5 * log_snr_t), torch.exp(-0.5 * log_snr_s)
        _, slope = _predict_x(eps_fn, alpha_sigma(log_snr_t)[0] * y, log_snr_t, clip)
        y_euler = y + (s_s - s_t) * slope
        _, slope_end = _predict_x(eps_fn, alpha_sigma(log_snr_s)[0] * y_euler, log_snr_s, clip)
        y = y + (s_s - s_t) * 0.5 * (slope + slope_end)
    return alpha_sigma(log_snrs[-1])[0] * y


def _dpmpp_2m(eps_fn: EpsFn, z: torch.Tensor, log_snrs: torch.Tensor, clip: bool) -> torch.Tensor:
    """DPM-Solver++(2M): ``z_s = (sigma_s / sigma_t) z_t - alpha_s expm1(-h) D`` with
    ``h = (lambda_s - lambda_t) / 2`` and ``D = (1 + 1/(2r)) x_hat_t - 1/(2r) x_hat_prev``,
    ``r = h_prev / h`` (``D = x_hat_t`` on the first step)."""
    x_prev, h_prev = None, None
    for log_snr_t, log_snr_s in zip(log_snrs[:-1], log_snrs[1:], strict=True):
        x_hat, _ = _predict_x(eps_fn, z, log_snr_t, clip)
        h = 0.5 * (log_snr_s - log_snr_t)
        if x_prev is None:
            data = x_hat
        else:
            r = h_prev / h
            data = (1 + 0.5 / r) * x_hat - (0.5 / r) * x_prev
        (_, sigma_t), (alpha_s, sigma_s) = alpha_sigma(log_snr_t), alpha_sigma(log_snr_s)
        z = (sigma_s / sigma_t) * z - alpha_s * torch.expm1(-h) * data
        x_prev, h_prev = x_hat, h
    return z


def sample(eps_fn: EpsFn, schedule: nn.Module, image_shape: tuple[int, int, int],
           num_samples: int, num_levels: int, *, steps: int = 100, method: str = "ancestral",
           batch_size: int = 500, seed: int = 0, device: torch.device | str = "cpu",
           clip: bool = True, progress: ProgressCallback | None = None,
           spacing: str = "time") -> torch.Tensor:
    """``num_samples`` images ``(N, C, H, W)``, uint8 ``0..255``, reproducible from ``seed``;
    ``spacing``: the step spacing (:mod:`vdm.model.step_grids`).

    ``progress`` (optional, :class:`vdm.core.progress.ProgressCallback`): told the network
    evaluations done of all batches' (:func:`batch_progress`)."""
    generator = torch.Generator(device).manual_seed(seed)
    batches = []
    for index, start in enumerate(range(0, num_samples, batch_size)):
        n = min(batch_size, num_samples - start)
        counted = batch_progress(eps_fn, progress, index, num_samples, batch_size, method, steps)
        batches.append(sample_batch(counted, schedule, (n, *image_shape), num_levels, steps,
                                    method, clip, generator, device, spacing).cpu())
    return torch.cat(batches)


def batch_progress(eps_fn: EpsFn, progress: ProgressCallback | None, index: int,
                   num_samples: int, batch_size: int, method: str, steps: int) -> EpsFn:
    """``eps_fn`` for batch ``index`` (0-based) of a sampling loop, reporting to ``progress``
    after each call: ``progress(done, total, batch="b/B")`` with ``done`` the calls of the
    batches before (``index x NFE``, :func:`~vdm.model.setting_names.network_evaluations`) plus
    this batch's, of ``total = B x NFE`` over the ``B = ceil(num_samples / batch_size)``
    batches, and ``progress(0, total)`` before the first batch. ``eps_fn`` itself without
    ``progress``; the samples do not change."""
    if progress is None:
        return eps_fn
    per_batch = network_evaluations(method, steps)
    num_batches = math.ceil(num_samples / batch_size)
    total, offset, batch = num_batches * per_batch, index * per_batch, f"{index + 1}/{num_batches}"
    if index == 0:
        progress(0, total, batch=batch)
    return counting_calls(eps_fn, lambda calls: progress(offset + calls, total, batch=batch))
