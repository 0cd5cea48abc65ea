"""Training objectives as weightings of the epsilon-error over noise levels.

Kingma & Gao (2023): every objective is, up to a constant,
``L_w = 1/2 E_{t ~ U(0,1), eps}[ w(lambda_t) (-dlambda/dt) ||eps_hat - eps||^2 ]``.
An :class:`Objective` returns the per-example multiplier ``c(lambda, -dlambda/dt)`` of the
summed squared epsilon-error, so that the per-example loss is ``c * ||eps_hat - eps||^2``
(nats-like units for ``elbo``; arbitrary units for the others). The implied weighting is
``w(lambda) = 2 c / (-dlambda/dt)``; for the objectives defined without the slope factor it
depends on the schedule, which is what the schedule ablation measures.

Identities used (``x_hat = (z - sigma eps_hat) / alpha``, ``v = alpha eps - sigma x``):
``||x_hat - x||^2 = e^{-lambda} ||eps_hat - eps||^2`` and
``||v_hat - v||^2 = (1 + e^{-lambda}) ||eps_hat - eps||^2``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Objective:
    """Base class: per-example loss ``multiplier(lambda, slope) * ||eps_hat - eps||^2``."""

    name: str = "base"

    def multiplier(self, log_snr: torch.Tensor, neg_slope: torch.Tensor) -> torch.Tensor:
        """``c(lambda, -dlambda/dt)`` with shape ``(B,)``."""
        raise NotImplementedError

    def loss(self, eps_sq_error: torch.Tensor, log_snr: torch.Tensor,
             neg_slope: torch.Tensor) -> torch.Tensor:
        """Per-example loss from the summed squared epsilon-error ``||eps_hat - eps||^2``, ``(B,)``."""
        return self.multiplier(log_snr, neg_slope) * eps_sq_error

    def implied_weight(self, log_snr: torch.Tensor, neg_slope: torch.Tensor) -> torch.Tensor:
        """Kingma & Gao's ``w(lambda) = 2 c / (-dlambda/dt)``."""
        return 2.0 * self.multiplier(log_snr, neg_slope) / neg_slope


@dataclass(frozen=True)
class EpsObjective(Objective):
    """``||eps_hat - eps||^2`` (DDPM ``L_simple``); implied ``w = 2 / (-dlambda/dt)``."""

    name: str = "eps"

    def multiplier(self, log_snr: torch.Tensor, neg_slope: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(log_snr)


@dataclass(frozen=True)
class X0Objective(Objective):
    """``||x_hat - x||^2 = e^{-lambda} ||eps_hat - eps||^2`` (predict the clean image)."""

    name: str = "x0"

    def multiplier(self, log_snr: torch.Tensor, neg_slope: torch.Tensor) -> torch.Tensor:
        return torch.exp(-log_snr)


@dataclass(frozen=True)
class VObjective(Objective):
    """``||v_hat - v||^2 = (1 + e^{-lambda}) ||eps_hat - eps||^2`` (Salimans & Ho 2022)."""

    name: str = "v"

    def multiplier(self, log_snr: torch.Tensor, neg_slope: torch.Tensor) -> torch.Tensor:
        return 1.0 + torch.exp(-log_snr)


@dataclass(frozen=True)
class ElboObjective(Objective):
    """``w = 1``: ``1/2 (-dlambda/dt) ||eps_hat - eps||^2``, the continuous-time ELBO's diffusion
    term in nats per example (VDM eq. 17); its expectation is schedule-shape invariant."""

    name: str = "elbo"

    def multiplier(self, log_snr: torch.Tensor, neg_slope: torch.Tensor) -> torch.Tensor:
        return 0.5 * neg_slope


@dataclass(frozen=True)
class SigmoidObjective(Objective):
    """``w = sigmoid(b - lambda)`` (Kingma & Gao 2023), a monotone weighting: the loss is an
    ELBO of Gaussian-noise-augmented data. ``bias`` is ``b``."""

    name: str = "sigmoid"
    bias: float = 2.0

    def multiplier(self, log_snr: torch.Tensor, neg_slope: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.sigmoid(self.bias - log_snr) * neg_slope


@dataclass(frozen=True)
class MinSnrObjective(Objective):
    """Min-SNR-gamma (Hang et al. 2023) for epsilon-prediction:
    ``min(SNR, gamma) / SNR * ||eps_hat - eps||^2 = min(SNR, gamma) ||x_hat - x||^2``."""

    name: str = "min_snr"
    gamma: float = 5.0

    def multiplier(self, log_snr: torch.Tensor, neg_slope: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.gamma * torch.exp(-log_snr), max=1.0)


@dataclass(frozen=True)
class EdmObjective(Objective):
    """EDM's loss (Karras et al. 2022) as a weighting (Kingma & Gao 2023, Table 1):
    ``w(lambda) = N(lambda; 2 p_mean', p_std'^2) (e^{-lambda} + sigma_data^2) / sigma_data^2``.

    EDM samples ``log sigma ~ N(p_mean, p_std^2)`` (-1.2, 1.2) and weights ``||D(x + sigma n) -
    x||^2`` by ``(sigma^2 + sigma_data^2) / (sigma sigma_data)^2``; with ``lambda = -2 log sigma``
    that is ``lambda ~ N(-2 p_mean, (2 p_std)^2) = N(2.4, 2.4^2)`` and ``||x_hat - x||^2 =
    e^{-lambda} ||eps_hat - eps||^2``. Here ``t`` is uniform on the model's schedule, so the
    density of ``lambda`` enters as part of the weight (an importance-weighted form of EDM's
    sampling; identical in expectation). ``sigma_data = 0.5`` for data in [-1, 1].
    """

    name: str = "edm"
    p_mean: float = -1.2
    p_std: float = 1.2
    sigma_data: float = 0.5

    def weight(self, log_snr: torch.Tensor) -> torch.Tensor:
        """Kingma & Gao's ``w(lambda)`` of EDM (a function of ``lambda`` only)."""
        mean, std = -2.0 * self.p_mean, 2.0 * self.p_std
        density = torch.exp(-0.5 * ((log_snr - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))
        return density * (torch.exp(-log_snr) + self.sigma_data**2) / self.sigma_data**2

    def multiplier(self, log_snr: torch.Tensor, neg_slope: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.weight(log_snr) * neg_slope


@dataclass(frozen=True)
class FlowObjective(Objective):
    """Flow matching with the optimal-transport path (Lipman et al. 2023; rectified flow):
    ``z = (1 - t) x + t eps``, velocity ``u = eps - x``, loss ``||u_hat - u||^2``. Written on the
    eps-error it is ``||eps_hat - eps||^2 / (1 - t)^2`` on its own schedule
    ``lambda = 2 log((1 - t) / t)`` (schedule ``flow``), i.e. the weighting
    ``w(lambda) = e^{-lambda/2}`` (Kingma & Gao 2023), which is what this objective applies on any
    schedule: ``c = 1/2 e^{-lambda/2} (-dlambda/dt)``."""

    name: str = "flow"

    def multiplier(self, log_snr: torch.Tensor, neg_slope: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.exp(-0.5 * log_snr) * neg_slope


OBJECTIVES: dict[str, type[Objective]] = {
    cls.name: cls
    for cls in (EpsObjective, X0Objective, VObjective, ElboObjective, SigmoidObjective,
                MinSnrObjective, EdmObjective, FlowObjective)
}


def get_objective(name: str, **kw: float) -> Objective:
    """Build an objective by name: ``eps``, ``x0``, ``v``, ``elbo``, ``sigmoid``, ``min_snr``,
    ``edm``, ``flow``."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; choose one of {sorted(OBJECTIVES)}")
    return OBJECTIVES[name](**kw)


def sample_times(batch_size: int, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu", antithetic: bool = True) -> torch.Tensor:
    """Times ``t`` in ``[0, 1)`` for one batch, shape ``(B,)``.

    With ``antithetic`` (VDM's low-discrepancy sampler) ``t_i = (u + i/B) mod 1`` for one
    ``u ~ U(0, 1)``: every ``t_i`` is marginally uniform and the batch is stratified, which
    lowers the variance of the batch-mean loss.
    """
    if antithetic:
        u = torch.rand((), generator=generator, device=device)
        return torch.remainder(u + torch.arange(batch_size, device=device) / batch_size, 1.0)
    return torch.rand(batch_size, generator=generator, device=device)
