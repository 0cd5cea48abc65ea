"""Shared fixtures: analytic denoisers with closed-form answers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from vdm.model.schedules import alpha_sigma


def gaussian_optimal_eps_fn(s: float):
    """Bayes-optimal epsilon-predictor for x ~ N(0, s^2 I):
    x_hat = alpha s^2 z / (alpha^2 s^2 + sigma^2), eps_hat = (z - alpha x_hat) / sigma."""

    def eps_fn(z: torch.Tensor, log_snr: torch.Tensor) -> torch.Tensor:
        alpha, sigma = (a.view(-1, *[1] * (z.dim() - 1)) for a in alpha_sigma(log_snr))
        x_hat = alpha * s**2 * z / (alpha**2 * s**2 + sigma**2)
        return (z - alpha * x_hat) / sigma

    return eps_fn


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny CPU workloads: one torch thread is fastest and avoids oversubscription."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


def gaussian_full_covariance_eps_fn(covariance: torch.Tensor):
    """Bayes-optimal epsilon-predictor for flattened data x ~ N(0, Sigma):
    E[eps | z] = sigma (alpha^2 Sigma + sigma^2 I)^{-1} z (a non-diagonal Jacobian)."""
    dims = covariance.shape[0]
    eye = torch.eye(dims, dtype=covariance.dtype)

    def eps_fn(z: torch.Tensor, log_snr: torch.Tensor) -> torch.Tensor:
        alpha, sigma = alpha_sigma(log_snr)
        marginal = alpha[:, None, None] ** 2 * covariance + sigma[:, None, None] ** 2 * eye
        flat = torch.linalg.solve(marginal, z.flatten(1).unsqueeze(-1)).squeeze(-1)
        return (sigma[:, None] * flat).view_as(z)

    return eps_fn
