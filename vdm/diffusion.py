"""The diffusion model: an epsilon-network, a schedule and an objective, and its training loss.

``z_t = alpha_t x + sigma_t eps`` with ``alpha_t^2 = sigmoid(lambda_t)``; the network predicts
``eps_hat(z_t, lambda_t)``. The training loss of objective ``w`` is, per example and averaged
over the ``D`` data dimensions, ``c(lambda_t, -dlambda/dt) ||eps_hat - eps||^2 / D`` with ``t``
drawn by the antithetic sampler (see :mod:`vdm.objectives`).

Learned schedule (VDM Sec. 3.5). Three gradients are taken from one forward pass:
* network parameters: gradient of the objective's loss;
* schedule end points ``gamma_0, gamma_1``: gradient of the ELBO (reconstruction + prior +
  continuous-time diffusion term, nats per dimension), whatever the objective;
* schedule shape: gradient of the mean squared per-example loss ``E[L^2]``. The expectation of
  every ``L_w`` is invariant to the schedule's shape between fixed end points, so this gradient
  equals that of the estimator's variance ``E[L^2] - E[L]^2``.
"""

from __future__ import annotations

import torch
from torch import nn

from vdm.likelihood import prior_kl_nats, reconstruction_nats
from vdm.network import UNet
from vdm.objectives import Objective, get_objective, sample_times
from vdm.schedules import LearnedSchedule, alpha_sigma, get_schedule, log_snr_and_slope


class DiffusionModel(nn.Module):
    """Holds the epsilon-network and the schedule (both trainable); the objective is static."""

    def __init__(self, network: nn.Module, schedule: nn.Module, objective: Objective,
                 num_levels: int) -> None:
        super().__init__()
        self.network = network
        self.schedule = schedule
        self.objective = objective
        self.num_levels = num_levels  # K, for the learned schedule's reconstruction term

    @property
    def learned_schedule(self) -> bool:
        return isinstance(self.schedule, LearnedSchedule)

    def eps(self, z: torch.Tensor, log_snr: torch.Tensor) -> torch.Tensor:
        """``eps_hat(z, lambda)``; ``log_snr`` has shape ``(B,)``."""
        return self.network(z, log_snr)

    def losses(self, x: torch.Tensor, generator: torch.Generator | None = None
               ) -> dict[str, torch.Tensor]:
        """Per-example losses for a batch ``x`` in ``[-1, 1]``, all per data dimension.

        Returns ``loss`` (the objective's, ``(B,)``) and, for a learned schedule, ``elbo``
        (scalar, nats/dim, batch mean) and ``loss_sq`` (scalar, mean of ``loss^2``).
        """
        batch, dims = x.shape[0], x[0].numel()
        t = sample_times(batch, generator=generator, device=x.device)
        log_snr, neg_slope = log_snr_and_slope(self.schedule, t)
        if not self.learned_schedule:
            log_snr, neg_slope = log_snr.detach(), neg_slope.detach()
        eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        alpha, sigma = (a.view(-1, 1, 1, 1) for a in alpha_sigma(log_snr))
        eps_hat = self.network(alpha * x + sigma * eps, log_snr).float()
        sq_error = (eps_hat - eps).square().flatten(1).sum(1)
        out = {"loss": self.objective.loss(sq_error, log_snr, neg_slope) / dims}
        if self.learned_schedule:
            log_snr_ends = self.schedule(torch.tensor([0.0, 1.0], device=x.device))
            elbo_nats = (reconstruction_nats(x, log_snr_ends[0], self.num_levels, generator)
                         + prior_kl_nats(x, log_snr_ends[1]) + 0.5 * neg_slope * sq_error)
            out["elbo"] = elbo_nats.mean() / dims
            out["loss_sq"] = out["loss"].square().mean()
        return out

    def backward(self, losses: dict[str, torch.Tensor]) -> None:
        """Accumulate the three gradients described in the module docstring."""
        net_params = list(self.network.parameters())
        if not self.learned_schedule:
            losses["loss"].mean().backward(inputs=net_params)
            return
        losses["loss"].mean().backward(inputs=net_params, retain_graph=True)
        losses["elbo"].backward(inputs=self.schedule.endpoint_parameters(), retain_graph=True)
        losses["loss_sq"].backward(inputs=self.schedule.shape_parameters())


def build_model(image_shape: tuple[int, int, int], num_levels: int, objective: str,
                schedule: str, model_kwargs: dict, logsnr_min: float, logsnr_max: float,
                objective_kwargs: dict | None = None) -> DiffusionModel:
    """A :class:`DiffusionModel` from config values."""
    network = UNet(image_shape, **model_kwargs)
    sched = get_schedule(schedule, logsnr_min=logsnr_min, logsnr_max=logsnr_max)
    return DiffusionModel(network, sched, get_objective(objective, **(objective_kwargs or {})),
                          num_levels)
