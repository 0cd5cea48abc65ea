"""Sampling: ancestral (DDPM) or DDIM steps on the uniform time grid ``t_i = i/N``.

With ``x_hat = (z_t - sigma_t eps_hat) / alpha_t`` (clipped to ``[-1, 1]``) and
``c = 1 - SNR(t)/SNR(s) = -expm1(lambda_t - lambda_s)`` for ``s < t``:

* ancestral: ``z_s ~ N(alpha_s [(1 - c) z_t / alpha_t + c x_hat], c sigma_s^2)``, the posterior
  ``q(z_s | z_t, x = x_hat)`` (VDM eq. 28);
* DDIM (eta = 0): ``z_s = alpha_s x_hat + sigma_s eps_hat'`` with ``eps_hat'`` recomputed from the
  clipped ``x_hat``.

The final ``z_0`` is denoised once more and rounded to the nearest of the data's ``K`` levels;
images are returned as uint8 pixels ``0..255`` (``round(k * 255 / (K - 1))``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vdm.data import levels_to_pixels, model_to_levels
from vdm.likelihood import EpsFn
from vdm.provenance import atomic_output
from vdm.schedules import alpha_sigma

SAMPLERS = ("ancestral", "ddim")


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
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """One batch of samples ``(B, C, H, W)``, uint8 pixels ``0..255``."""
    if method not in SAMPLERS:
        raise ValueError(f"sample.method must be one of {SAMPLERS}, got {method!r}")
    times = torch.linspace(1.0, 0.0, steps + 1, device=device)
    log_snrs = schedule(times).float()
    z = torch.randn(shape, generator=generator, device=device)
    for log_snr_t, log_snr_s in zip(log_snrs[:-1], log_snrs[1:], strict=True):
        x_hat, eps_hat = _predict_x(eps_fn, z, log_snr_t, clip)
        alpha_t, _ = alpha_sigma(log_snr_t)
        alpha_s, sigma_s = alpha_sigma(log_snr_s)
        if method == "ddim":
            z = alpha_s * x_hat + sigma_s * eps_hat
        else:
            c = -torch.expm1(log_snr_t - log_snr_s)
            mean = alpha_s * ((1 - c) * z / alpha_t + c * x_hat)
            noise = torch.randn(shape, generator=generator, device=device)
            z = mean + (c.sqrt() * sigma_s) * noise
    x_0, _ = _predict_x(eps_fn, z, log_snrs[-1], clip)
    return levels_to_pixels(model_to_levels(x_0, num_levels), num_levels)


def sample(eps_fn: EpsFn, schedule: nn.Module, image_shape: tuple[int, int, int],
           num_samples: int, num_levels: int, *, steps: int = 100, method: str = "ancestral",
           batch_size: int = 500, seed: int = 0, device: torch.device | str = "cpu",
           clip: bool = True) -> torch.Tensor:
    """``num_samples`` images ``(N, C, H, W)``, uint8 ``0..255``, reproducible from ``seed``."""
    generator = torch.Generator(device).manual_seed(seed)
    batches = []
    for start in range(0, num_samples, batch_size):
        n = min(batch_size, num_samples - start)
        batches.append(sample_batch(eps_fn, schedule, (n, *image_shape), num_levels, steps,
                                    method, clip, generator, device).cpu())
    return torch.cat(batches)


def save_grid(images: torch.Tensor | np.ndarray, path: str | Path, columns: int = 10,
              scale: int | None = None, padding: int = 1) -> Path:
    """Save the first ``columns**2`` uint8 images ``(N, C, H, W)`` as one PNG grid."""
    from PIL import Image  # imported here: sampling itself needs only torch

    images = torch.as_tensor(images)[: columns * columns]
    n, c, h, w = images.shape
    rows = math.ceil(n / columns)
    grid = torch.full((c, rows * (h + padding) + padding, columns * (w + padding) + padding), 255,
                      dtype=torch.uint8)
    for i, image in enumerate(images):
        r, col = divmod(i, columns)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        grid[:, y:y + h, x:x + w] = image
    array = grid.permute(1, 2, 0).numpy()
    picture = Image.fromarray(array[..., 0] if c == 1 else array)
    scale = scale or max(1, 256 // max(h, w))
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    with atomic_output(path) as tmp:
        picture.save(tmp)
    return Path(path)
