"""Probability-flow ODE likelihood against closed forms (Gaussian data with its exact eps)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import gaussian_full_covariance_eps_fn, gaussian_optimal_eps_fn

from vdm.model.ode import log_prob, ode_nll
from vdm.model.schedules import alpha_sigma, get_schedule, schedule_endpoints

DIMS = 4


def correlated_covariance() -> torch.Tensor:
    """A fixed full-rank covariance with strong correlations (non-diagonal Jacobian of eps)."""
    a = torch.randn(DIMS, DIMS, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    return 0.3 * a @ a.T / DIMS + 0.05 * torch.eye(DIMS, dtype=torch.float64)


def model_log_density(z_0: torch.Tensor, covariance: torch.Tensor, schedule) -> torch.Tensor:
    """Closed form of log_prob's target: the marginal covariances C_t = alpha_t^2 Sigma +
    sigma_t^2 I share eigenvectors, the exact flow is z_1 = A z_0 with A = C_1^{1/2} C_0^{-1/2},
    and the model's density at t = 0 is log N(A z_0; 0, I) + log det A."""
    lam_0, lam_1 = (float(v.detach()) for v in schedule_endpoints(schedule))
    eigenvalues, vectors = torch.linalg.eigh(covariance)
    variances = [torch.sigmoid(torch.tensor(lam, dtype=torch.float64)) * eigenvalues
                 + torch.sigmoid(-torch.tensor(lam, dtype=torch.float64)) for lam in (lam_0, lam_1)]
    scale = torch.sqrt(variances[1] / variances[0])
    z_1 = (z_0 @ vectors) * scale
    return (-0.5 * (z_1.square().sum(1) + DIMS * math.log(2 * math.pi))
            + torch.log(scale).sum())


@pytest.mark.parametrize("schedule_name", ["cosine", "learned"])
def test_exact_divergence_matches_the_closed_form(schedule_name: str) -> None:
    covariance = correlated_covariance()
    schedule = get_schedule(schedule_name).double()
    lam_0 = schedule_endpoints(schedule)[0].detach()
    marginal = torch.sigmoid(lam_0) * covariance + torch.sigmoid(-lam_0) * torch.eye(DIMS)
    z_0 = torch.randn(64, DIMS, generator=torch.Generator().manual_seed(0),
                      dtype=torch.float64) @ torch.linalg.cholesky(marginal).T
    expected = model_log_density(z_0, covariance, schedule)
    got = log_prob(gaussian_full_covariance_eps_fn(covariance), z_0.view(64, 1, 2, 2), schedule,
                   exact_divergence=True)
    assert float((got - expected).abs().max()) < 1e-3 * float(expected.abs().mean())


def test_hutchinson_estimate_is_unbiased_and_within_one_percent() -> None:
    """One Rademacher probe per example: noisy per example (non-diagonal Jacobian), within 1% of
    the exact log density on average over 512 examples."""
    covariance = correlated_covariance()
    schedule = get_schedule("cosine").double()
    z_0 = torch.randn(512, DIMS, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    z_0 = z_0 * 0.6
    expected = model_log_density(z_0, covariance, schedule)
    eps_fn = gaussian_full_covariance_eps_fn(covariance)
    got = log_prob(eps_fn, z_0.view(512, 1, 2, 2), schedule,
                   generator=torch.Generator().manual_seed(2))
    assert float((got - expected).abs().max()) > 1e-3  # the probe noise is there ...
    assert float(got.mean()) == pytest.approx(float(expected.mean()), rel=0.01)  # ... unbiased
    exact = log_prob(eps_fn, z_0.view(512, 1, 2, 2), schedule, exact_divergence=True)
    torch.testing.assert_close(exact, expected, rtol=1e-3, atol=1e-3)


def test_isotropic_gaussian_is_the_data_log_density_up_to_the_prior_mismatch() -> None:
    """x ~ N(0, s^2 I): log_prob(z_0) is the true marginal log N(z_0; 0, v_0 I) plus the tiny
    mismatch between N(0, v_1 I) at t = 1 and the N(0, I) prior (v_t = alpha^2 s^2 + sigma^2)."""
    s, schedule = 0.5, get_schedule("cosine").double()
    lam_0, lam_1 = (v.detach() for v in schedule_endpoints(schedule))
    v_0, v_1 = (float(torch.sigmoid(lam) * s**2 + torch.sigmoid(-lam)) for lam in (lam_0, lam_1))
    z_0 = torch.randn(128, 1, 2, 2, generator=torch.Generator().manual_seed(0),
                      dtype=torch.float64) * math.sqrt(v_0)
    true_marginal = -0.5 * (z_0.flatten(1).square().sum(1) / v_0
                            + DIMS * math.log(2 * math.pi * v_0))
    got = log_prob(gaussian_optimal_eps_fn(s), z_0, schedule)
    assert abs(v_1 - 1) < 1e-4
    assert float((got - true_marginal).abs().max()) < 1e-3


def test_ode_nll_bounds_the_discrete_likelihood_of_a_dequantized_gaussian() -> None:
    """Bits/dim of K-level data under an exact continuous model: for data that is a discretized
    N(0, s^2), the bound from uniform dequantization is close to the discrete entropy computed
    directly (the Gaussian mass of each bin), from above on average."""
    from vdm.core.data import ImageData

    s, num_levels = 0.4, 17
    g = torch.Generator().manual_seed(0)
    x = (s * torch.randn(400, 1, 2, 2, generator=g)).clamp(-1, 1)
    levels = torch.round((x + 1) * (num_levels - 1) / 2).to(torch.uint8)
    data = ImageData(images=levels, labels=torch.zeros(400, dtype=torch.int64),
                     num_levels=num_levels, name="gaussian", split="test")
    schedule = get_schedule("cosine", logsnr_max=10.0)

    class ExactModel(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.schedule = schedule

        def eps(self, z: torch.Tensor, log_snr: torch.Tensor) -> torch.Tensor:
            return gaussian_optimal_eps_fn(s)(z, log_snr)

    result = ode_nll(ExactModel(), data, num_probes=1, seed=0)
    spacing = 2 / (num_levels - 1)
    centres = torch.linspace(-1, 1, num_levels, dtype=torch.float64)
    normal = torch.distributions.Normal(0.0, s)
    mass = normal.cdf(centres + spacing / 2) - normal.cdf(centres - spacing / 2)
    discrete_nats = -torch.log(mass[levels.long().flatten()]).mean()
    discrete_bpd = float(discrete_nats) / math.log(2)
    assert result["nll_ode_num_examples"] == 400 and result["nll_ode_bpd_se"] < 0.05
    assert result["nll_ode_bpd"] == pytest.approx(discrete_bpd, abs=3 * result["nll_ode_bpd_se"])
    assert alpha_sigma(torch.tensor(10.0))[0] > 0.99
