"""The variational bound on ``-log p(x)`` in bits per dimension (VDM, Kingma et al. 2021).

For discrete data ``x`` with ``K`` levels (mapped to ``[-1, 1]``) and ``D`` dimensions:

    -log p(x) <= L_recon + L_prior + L_diffusion                       (nats per example)

1. RECONSTRUCTION ``L_recon = E_{q(z_0|x)}[-log p(x|z_0)]`` with VDM's discretized decoder,
   factorised over dimensions: ``p(x_i = v_k | z_0) = softmax_k(-e^{lambda_0} (z_0,i/alpha_0 - v_k)^2
   / 2)`` over the ``K`` level values ``v_k = 2k/(K-1) - 1``.
2. PRIOR ``L_prior = KL(q(z_1|x) || N(0, I)) = 1/2 sum_i (alpha_1^2 x_i^2 + sigma_1^2 - 1
   - log sigma_1^2)``.
3. DIFFUSION, continuous time: ``L_diffusion = 1/2 E_{t, eps}[(-dlambda/dt) ||eps - eps_hat||^2]
   = 1/2 int_{lambda_1}^{lambda_0} E_eps ||eps - eps_hat(z_lambda, lambda)||^2 dlambda``.
   The default estimator samples ``lambda`` uniformly on ``[lambda_1, lambda_0]`` (stratified
   across the batch), which removes the ``-dlambda/dt`` factor whose heavy tails at the steep ends
   of the linear/cosine/sigmoid schedules make the ``t``-uniform estimator unreliable; the
   integrand is then bounded. ``time_sampling="t"`` gives the ``t``-uniform estimator, and
   ``discrete_steps=T`` the discrete-time bound ``T/2 E_i[(e^{lambda_s - lambda_t} - 1)
   ||eps - eps_hat||^2]``, ``s = (i-1)/T``, ``t = i/T`` (VDM eq. 13).

Everything is returned per example in bits per dimension: nats / (D ln 2).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from vdm.model.objectives import sample_times
from vdm.model.schedules import alpha_sigma, log_snr_and_slope, schedule_endpoints

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


#: Default draws of the noise level per example for the diffusion term. On the 300 digits test
#: images this gives a Monte-Carlo standard error of 0.0063 bits/dim (measured by ``python -m
#: vdm.bench.measure``: standard deviation of the test-set mean over 20 evaluation seeds) in ~4 s on one
#: core (16 draws: ~0.02); large test sets need fewer (the error falls like 1/sqrt(n K)).
DEFAULT_NUM_TIME_SAMPLES = 128


def level_values(num_levels: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The ``K`` data values ``v_k = 2k/(K-1) - 1`` in ``[-1, 1]``."""
    return torch.linspace(-1.0, 1.0, num_levels, device=device)


def discretized_decoder_log_probs(z_0: torch.Tensor, log_snr_0: torch.Tensor,
                                  num_levels: int) -> torch.Tensor:
    """``log p(x_i = v_k | z_0)`` for every dimension and level, shape ``(*z_0.shape, K)``.

    ``log_snr_0`` is a scalar or broadcastable to ``z_0``. Normalised over ``k`` (nats).
    """
    alpha_0, _ = alpha_sigma(log_snr_0)
    z_rescaled = (z_0 / alpha_0).unsqueeze(-1)
    logits = -0.5 * torch.exp(log_snr_0).unsqueeze(-1) * (z_rescaled - level_values(
        num_levels, z_0.device)) ** 2
    return torch.log_softmax(logits, dim=-1)


def data_to_level_index(x: torch.Tensor, num_levels: int) -> torch.Tensor:
    """Level index ``k`` of data ``x = 2k/(K-1) - 1`` (int64)."""
    return torch.round((x.clamp(-1, 1) + 1) * (num_levels - 1) / 2).long()


def reconstruction_nats(x: torch.Tensor, log_snr_0: torch.Tensor, num_levels: int,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """``-log p(x | z_0)`` with one ``z_0 ~ q(z_0|x)``, nats per example ``(B,)``."""
    alpha_0, sigma_0 = alpha_sigma(log_snr_0)
    eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return decoder_nll_nats(x, alpha_0 * x + sigma_0 * eps, log_snr_0, num_levels)


def decoder_nll_nats(x: torch.Tensor, z_0: torch.Tensor, log_snr_0: torch.Tensor,
                     num_levels: int) -> torch.Tensor:
    """``-log p(x | z_0)`` under the discretized decoder at ``z_0``, nats per example ``(B,)``."""
    log_probs = discretized_decoder_log_probs(z_0, log_snr_0, num_levels)
    index = data_to_level_index(x, num_levels).unsqueeze(-1)
    return -log_probs.gather(-1, index).squeeze(-1).flatten(1).sum(1)


def prior_kl_nats(x: torch.Tensor, log_snr_1: torch.Tensor) -> torch.Tensor:
    """``KL(q(z_1|x) || N(0, I))`` in nats per example ``(B,)`` (closed form)."""
    alpha_1, sigma_1 = alpha_sigma(log_snr_1)
    var_1 = sigma_1**2
    kl = 0.5 * (alpha_1**2 * x**2 + var_1 - 1.0 - torch.log(var_1))
    return kl.flatten(1).sum(1)


def _eps_sq_error(eps_fn: EpsFn, x: torch.Tensor, log_snr: torch.Tensor,
                  generator: torch.Generator | None) -> torch.Tensor:
    """``||eps - eps_hat(z_lambda, lambda)||^2`` per example for ``lambda`` of shape ``(B,)``."""
    eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    alpha, sigma = (a.view(-1, *[1] * (x.dim() - 1)) for a in alpha_sigma(log_snr))
    eps_hat = eps_fn(alpha * x + sigma * eps, log_snr)
    return (eps - eps_hat).square().flatten(1).sum(1)


def diffusion_nats(eps_fn: EpsFn, x: torch.Tensor, schedule: nn.Module, *,
                   num_time_samples: int = DEFAULT_NUM_TIME_SAMPLES, time_sampling: str = "logsnr",
                   discrete_steps: int | None = None,
                   generator: torch.Generator | None = None,
                   return_draws: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Monte-Carlo estimate of the diffusion term, nats per example ``(B,)``.

    Averages ``num_time_samples`` (``K``) draws per example; draw ``k`` stratifies the noise
    levels across the batch (see module docstring for the estimators), so the ``K`` batch means
    of the draws are independent replicates. With ``return_draws``, also the draws themselves,
    ``(B, K)`` nats (for the Monte-Carlo error, see :func:`vdm.evaluation.evaluate.evaluate_nll`).
    """
    batch = x.shape[0]
    draws = []
    logsnr_max, logsnr_min = (e.detach().to(x.dtype) for e in schedule_endpoints(schedule))
    for _ in range(num_time_samples):
        u = sample_times(batch, generator=generator, device=x.device).to(x.dtype)
        if discrete_steps is not None:
            steps = discrete_steps
            i = torch.floor(u * steps) + 1
            log_snr_t = schedule(i / steps).detach()
            log_snr_s = schedule((i - 1) / steps).detach()
            weight = 0.5 * steps * torch.expm1(log_snr_s - log_snr_t)
            draw = weight * _eps_sq_error(eps_fn, x, log_snr_t, generator)
        elif time_sampling == "logsnr":
            log_snr = logsnr_min + (logsnr_max - logsnr_min) * u
            draw = 0.5 * (logsnr_max - logsnr_min) * _eps_sq_error(eps_fn, x, log_snr, generator)
        elif time_sampling == "t":
            log_snr, neg_slope = log_snr_and_slope(schedule, u)
            draw = 0.5 * neg_slope.detach() * _eps_sq_error(eps_fn, x, log_snr.detach(), generator)
        else:
            raise ValueError(f"time_sampling must be 'logsnr' or 't', got {time_sampling!r}")
        draws.append(draw)
    stacked = torch.stack(draws, dim=1)
    mean = stacked.mean(dim=1)
    return (mean, stacked) if return_draws else mean


def elbo_bpd(eps_fn: EpsFn, x: torch.Tensor, schedule: nn.Module, num_levels: int, *,
             num_time_samples: int = DEFAULT_NUM_TIME_SAMPLES, time_sampling: str = "logsnr",
             discrete_steps: int | None = None,
             generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Per-example variational bound in bits per dimension.

    Args:
        eps_fn: ``eps_fn(z_t, log_snr) -> eps_hat``; ``log_snr`` has shape ``(B,)``.
        x: data ``(B, C, H, W)`` in ``[-1, 1]`` on the ``K = num_levels`` grid.
        schedule: maps ``t`` to ``lambda(t)``; only its end points matter for the default
            continuous-time estimator.
        num_levels: ``K``, the number of grey levels of the data (17 for digits, 256 for 8-bit).
        num_time_samples: Monte-Carlo draws of the noise level per example.
        time_sampling: ``"logsnr"`` (default, low variance) or ``"t"``.
        discrete_steps: if given, the discrete-time bound with ``T`` steps instead.
        generator: optional ``torch.Generator`` on ``x.device`` for reproducible estimates.

    Returns:
        ``{"reconstruction", "prior", "diffusion", "total"}``: tensors of shape ``(B,)``, bits/dim;
        and ``"diffusion_draws"``: the ``K`` draws behind ``diffusion``, ``(B, K)`` bits/dim.
    """
    with torch.no_grad():
        logsnr_max, logsnr_min = (e.to(x.dtype) for e in schedule_endpoints(schedule))
        nats = {  # in this order: the generator's draws, hence the numbers, depend on it
            "reconstruction": reconstruction_nats(x, logsnr_max, num_levels, generator),
            "prior": prior_kl_nats(x, logsnr_min),
        }
        nats["diffusion"], draws = diffusion_nats(
            eps_fn, x, schedule, num_time_samples=num_time_samples, time_sampling=time_sampling,
            discrete_steps=discrete_steps, generator=generator, return_draws=True)
    nats["total"] = nats["reconstruction"] + nats["prior"] + nats["diffusion"]
    per_dim = x[0].numel() * math.log(2.0)
    out = {name: value / per_dim for name, value in nats.items()}
    out["diffusion_draws"] = draws / per_dim
    return out
