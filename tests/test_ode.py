"""Probability-flow ODE likelihood against closed forms (Gaussian data with its exact eps)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import gaussian_full_covariance_eps_fn, gaussian_optimal_eps_fn

from vdm.model.ode import log_prob, ode_nll
from vdm.model.schedules import get_schedule, schedule_endpoints

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


def _dequantized_gaussian_model(s: float, schedule) -> float:
    """Standard deviation ``tau`` of the exact model's density of the dequantized data ``x~``.

    For ``x ~ N(0, s^2 I)`` the exact flow maps ``z_0 ~ N(0, v_0 I)`` linearly to ``N(0, v_1 I)``
    (``v_t = alpha_t^2 s^2 + sigma_t^2``), so :func:`log_prob` is ``log N(z_0; 0, (v_0 / v_1) I)``
    (the prior mismatch included) and ``log p(x~) = log p_0(alpha_0 x~) + D log alpha_0`` is
    ``log N(x~; 0, tau^2 I)`` with ``tau^2 = v_0 / (v_1 alpha_0^2) = (s^2 + e^{-lambda_max}) /
    v_1``: the data smoothed by the noise left at ``lambda_max``."""
    lam_0, lam_1 = (float(v.detach()) for v in schedule_endpoints(schedule))
    v_1 = 1 / (1 + math.exp(-lam_1)) * s**2 + 1 / (1 + math.exp(lam_1))
    return math.sqrt((s**2 + math.exp(-lam_0)) / v_1)


@pytest.mark.parametrize("logsnr_max", [10.0, 2.0])
def test_ode_nll_bounds_the_discrete_likelihood_of_a_dequantized_gaussian(
        logsnr_max: float) -> None:
    """Bits/dim of ``K = 17``-level data (a discretized ``N(0, s^2)``) under the exact model,
    whose density of ``x~`` is ``N(0, tau^2)`` (:func:`_dequantized_gaussian_model`).

    Closed forms per example, nats: the expectation over the dequantization noise of the
    uniform-dequantization bound, ``sum_i [1/2 log(2 pi tau^2) + (x_i^2 + Delta^2/12) /
    (2 tau^2)] - D log Delta`` (``Delta = 2/(K-1)``), and the discrete ``-log P(x) = -sum_i
    log(Phi((x_i + Delta/2)/tau) - Phi((x_i - Delta/2)/tau))``; the first is above the second
    for every example (Jensen). ``ode_nll`` must match the expected bound, paired per example:
    its only noise is the dequantization's (the Hutchinson estimate is exact for this
    isotropic model), SE ~0.003 bits/dim, so a tolerance of 4 SE rejects ``log K`` in place of
    ``log(K - 1)`` (0.0875 bits/dim) and, at ``lambda_max = 2``, a missing ``D log alpha_0``
    (0.092 bits/dim; 3e-5 at ``lambda_max = 10``). Data and dequantization noise come from
    independent generators."""
    from vdm.core.data import ImageData

    s, num_levels, n = 0.4, 17, 1000
    x = (s * torch.randn(n, 1, 2, 2, generator=torch.Generator().manual_seed(20240518))).clamp(
        -1, 1)
    levels = torch.round((x + 1) * (num_levels - 1) / 2).to(torch.uint8)
    data = ImageData(images=levels, labels=torch.zeros(n, dtype=torch.int64),
                     num_levels=num_levels, name="gaussian", split="test")
    schedule = get_schedule("cosine", logsnr_max=logsnr_max)

    class ExactModel(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.schedule = schedule

        def eps(self, z: torch.Tensor, log_snr: torch.Tensor) -> torch.Tensor:
            return gaussian_optimal_eps_fn(s)(z, log_snr)

    result = ode_nll(ExactModel(), data, num_probes=1, seed=0, return_per_example=True)
    got = result["per_example_bpd"]

    tau = _dequantized_gaussian_model(s, schedule)
    spacing = 2 / (num_levels - 1)
    values = data.model_inputs().double().flatten(1)
    expected_nats = (0.5 * math.log(2 * math.pi * tau**2)
                     + (values.square() + spacing**2 / 12) / (2 * tau**2)).sum(1) \
        - DIMS * math.log(spacing)
    normal = torch.distributions.Normal(torch.zeros((), dtype=torch.float64), tau)
    discrete_nats = -torch.log(normal.cdf(values + spacing / 2)
                               - normal.cdf(values - spacing / 2)).sum(1)
    expected, discrete = (v / (DIMS * math.log(2)) for v in (expected_nats, discrete_nats))
    assert bool((expected > discrete).all())  # the bound is above -log P for every example

    difference = got - expected
    se = float(difference.std() / math.sqrt(n))
    offsets = {"log K for log(K - 1)": math.log2(num_levels / (num_levels - 1)),
               "D log alpha_0 left out": -0.5 * math.log2(torch.sigmoid(
                   torch.tensor(logsnr_max, dtype=torch.float64)).item())}
    assert 4 * se < offsets["log K for log(K - 1)"] / 2, se  # the test can see the log K slip
    if logsnr_max <= 2:
        assert 4 * se < offsets["D log alpha_0 left out"] / 2, se  # ... and the Jacobian
    assert abs(float(difference.mean())) < 4 * se, (float(difference.mean()), se, offsets)
    assert float(got.mean()) - float(discrete.mean()) > -4 * se  # above -log P on average
    assert result["nll_ode_num_examples"] == n
    assert float(result["nll_ode_bpd"]) == pytest.approx(float(got.mean()))
