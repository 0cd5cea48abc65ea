"""The bits/dim evaluator against closed forms (Gaussian data with its optimal denoiser)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import gaussian_optimal_eps_fn
from scipy.special import logsumexp

from vdm.model.likelihood import (
    diffusion_nats,
    discretized_decoder_log_probs,
    elbo_bpd,
    prior_kl_nats,
    reconstruction_nats,
)
from vdm.model.schedules import SCHEDULES, alpha_sigma, get_schedule, schedule_endpoints

SHAPE = (2048, 1, 8, 8)


def expected_diffusion_bpd(schedule, s: float) -> float:
    """1/2 [ln(1 + SNR(0) s^2) - ln(1 + SNR(1) s^2)] nats per dimension, in bits."""
    lam0, lam1 = (float(v.detach()) for v in schedule_endpoints(schedule))
    nats = 0.5 * (math.log1p(math.exp(lam0) * s**2) - math.log1p(math.exp(lam1) * s**2))
    return nats / math.log(2)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
@pytest.mark.parametrize("s", [0.5, 1.0])
def test_diffusion_term_matches_gaussian_closed_form(name: str, s: float, generator) -> None:
    schedule = get_schedule(name)
    x = s * torch.randn(SHAPE, generator=generator)
    out = elbo_bpd(gaussian_optimal_eps_fn(s), x, schedule, num_levels=256,
                   num_time_samples=16, generator=generator)
    expected = expected_diffusion_bpd(schedule, s)
    assert float(out["diffusion"].mean()) == pytest.approx(expected, rel=0.01)


def test_t_uniform_estimator_is_unbiased_but_noisier(generator) -> None:
    schedule = get_schedule("cosine")
    s = 1.0
    x = s * torch.randn(SHAPE, generator=generator)
    eps_fn = gaussian_optimal_eps_fn(s)
    by_t = diffusion_nats(eps_fn, x, schedule, time_sampling="t", num_time_samples=16,
                          generator=generator)
    by_lam = diffusion_nats(eps_fn, x, schedule, time_sampling="logsnr", num_time_samples=16,
                            generator=generator)
    expected_nats = expected_diffusion_bpd(schedule, s) * math.log(2) * 64
    assert float(by_t.mean()) == pytest.approx(expected_nats, rel=0.1)
    assert float(by_t.std()) > 1.5 * float(by_lam.std())


def test_discrete_bound_converges_to_continuous_from_above(generator) -> None:
    schedule = get_schedule("linear")
    s = 1.0
    x = s * torch.randn(SHAPE, generator=generator)
    eps_fn = gaussian_optimal_eps_fn(s)
    continuous = expected_diffusion_bpd(schedule, s) * math.log(2) * 64
    bounds = [float(diffusion_nats(eps_fn, x, schedule, discrete_steps=steps,
                                   generator=generator).mean()) for steps in (5, 50, 1000)]
    assert bounds[0] > bounds[1] > bounds[2] > continuous
    assert bounds[2] == pytest.approx(continuous, rel=0.05)


def test_prior_term_equals_closed_form_kl(generator) -> None:
    schedule = get_schedule("cosine", logsnr_min=-4.0)
    x = torch.rand(16, 1, 8, 8, generator=generator) * 2 - 1
    _, lam1 = schedule_endpoints(schedule)
    alpha_1, sigma_1 = alpha_sigma(lam1)
    q = torch.distributions.Normal(alpha_1 * x, sigma_1)
    p = torch.distributions.Normal(torch.zeros_like(x), torch.ones_like(x))
    expected = torch.distributions.kl_divergence(q, p).flatten(1).sum(1)
    torch.testing.assert_close(prior_kl_nats(x, lam1), expected, rtol=1e-5, atol=1e-6)
    out = elbo_bpd(gaussian_optimal_eps_fn(1.0), x, schedule, 17, generator=generator)
    torch.testing.assert_close(out["prior"], expected / (64 * math.log(2)), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("num_levels", [2, 17, 256])
@pytest.mark.parametrize("log_snr_0", [-2.0, 5.0, 13.3])
def test_discretized_decoder_is_normalised(num_levels: int, log_snr_0: float, generator) -> None:
    z0 = torch.randn(4, 3, 5, 5, generator=generator) * 1.5
    log_probs = discretized_decoder_log_probs(z0, torch.tensor(log_snr_0), num_levels)
    assert log_probs.shape == (4, 3, 5, 5, num_levels)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(4, 3, 5, 5))


def test_reconstruction_is_near_zero_at_high_snr_and_log_k_at_low_snr(generator) -> None:
    levels = torch.randint(0, 17, (32, 1, 8, 8), generator=generator)
    x = levels.float() * 2 / 16 - 1
    sharp = reconstruction_nats(x, torch.tensor(12.0), 17, generator) / 64
    assert float(sharp.max()) < 1e-3
    blurred = reconstruction_nats(torch.zeros(4, 1, 8, 8), torch.tensor(-20.0), 17, generator) / 64
    torch.testing.assert_close(blurred, torch.full((4,), math.log(17)), rtol=1e-4, atol=1e-4)


def test_total_is_sum_of_terms_and_works_under_no_grad(generator) -> None:
    schedule = get_schedule("learned")
    x = torch.rand(8, 1, 8, 8, generator=generator) * 2 - 1
    with torch.no_grad():
        out = elbo_bpd(gaussian_optimal_eps_fn(0.6), x, schedule, 17, num_time_samples=2,
                       generator=generator)
    assert set(out) == {"reconstruction", "prior", "diffusion", "total", "diffusion_draws"}
    assert out.pop("diffusion_draws").shape == (8, 2)
    for value in out.values():
        assert value.shape == (8,) and not value.requires_grad
    torch.testing.assert_close(out["total"], out["reconstruction"] + out["prior"] + out["diffusion"])


def test_diffusion_term_vanishes_for_an_exact_eps_predictor(generator) -> None:
    """Data with a single value: the optimal eps-predictor knows x exactly, so the diffusion term
    (the only one that depends on the network) is zero."""
    x = torch.full((64, 1, 4, 4), 0.25)

    def eps_fn(z: torch.Tensor, log_snr: torch.Tensor) -> torch.Tensor:
        alpha, sigma = (a.view(-1, 1, 1, 1) for a in alpha_sigma(log_snr))
        return (z - alpha * 0.25) / sigma

    out = elbo_bpd(eps_fn, x, get_schedule("cosine"), 17, generator=generator)
    torch.testing.assert_close(out["diffusion"], torch.zeros(64), atol=1e-4, rtol=0)


def discretized_gaussian_data(num: int, num_levels: int = 17, scale: float = 0.5) -> torch.Tensor:
    """``N(0, scale^2)`` rounded to the ``K`` levels of ``[-1, 1]``, shape ``(num, 1, 2, 2)``
    (drawn from its own seed: never from the evaluator's generator)."""
    x = (scale * torch.randn(num, 1, 2, 2, generator=torch.Generator().manual_seed(12345),
                             dtype=torch.float64)).clamp(-1, 1)
    return torch.round((x + 1) * (num_levels - 1) / 2) * 2 / (num_levels - 1) - 1


def reconstruction_nats_by_quadrature(level: float, log_snr_0: float, num_levels: int) -> float:
    """``E_{z_0 ~ N(alpha_0 v, sigma_0^2)}[-log p(v | z_0)]`` for one dimension at level ``v``,
    VDM's decoder ``p(v_k | z_0) = softmax_k(-e^{lambda_0} (z_0/alpha_0 - v_k)^2 / 2)`` written
    out in NumPy, expectation by 80-point Gauss-Hermite quadrature."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)  # weight exp(-u^2/2)
    weights = weights / weights.sum()
    alpha, sigma = math.sqrt(1 / (1 + math.exp(-log_snr_0))), math.sqrt(1 / (1 + math.exp(log_snr_0)))
    levels = np.linspace(-1, 1, num_levels)
    z = alpha * level + sigma * nodes
    logits = -0.5 * math.exp(log_snr_0) * (z[:, None] / alpha - levels[None]) ** 2
    log_prob = logits[:, np.argmin(abs(levels - level))] - logsumexp(logits, axis=1)
    return float(-(weights * log_prob).sum())


def test_every_term_and_the_total_match_closed_forms() -> None:
    """Discretized Gaussian data with the linear (Gaussian-optimal) eps-predictor for its second
    moment ``m2``: E||eps - c z||^2 per dimension is alpha^2 m2 / (alpha^2 m2 + sigma^2) for any
    zero-mean-noise data with E[x^2] = m2, so the diffusion term is
    ``1/2 [ln(1 + e^lambda_0 m2) - ln(1 + e^lambda_1 m2)]``; the prior is the Gaussian KL at
    ``lambda_1``; the reconstruction is computed by quadrature per level. All nats/dim -> bits."""
    num_levels, log_snr_0, log_snr_1 = 17, 4.0, -6.0
    x = discretized_gaussian_data(4096, num_levels)
    m2 = float(x.square().mean())
    schedule = get_schedule("cosine", logsnr_min=log_snr_1, logsnr_max=log_snr_0).double()
    out = elbo_bpd(gaussian_optimal_eps_fn(math.sqrt(m2)), x, schedule, num_levels,
                   num_time_samples=16, generator=torch.Generator().manual_seed(0))
    alpha_1_sq = 1 / (1 + math.exp(-log_snr_1))
    sigma_1_sq = 1 - alpha_1_sq
    levels, counts = torch.unique(x, return_counts=True)
    expected_nats = {
        "reconstruction": sum(int(c) * reconstruction_nats_by_quadrature(float(v), log_snr_0,
                                                                         num_levels)
                              for v, c in zip(levels, counts, strict=True)) / x.numel(),
        "prior": 0.5 * (alpha_1_sq * m2 + sigma_1_sq - 1 - math.log(sigma_1_sq)),
        "diffusion": 0.5 * (math.log1p(math.exp(log_snr_0) * m2)
                            - math.log1p(math.exp(log_snr_1) * m2)),
    }
    expected_nats["total"] = sum(expected_nats.values())
    assert 0.05 < expected_nats["reconstruction"] < math.log(num_levels)  # not negligible here
    for term, nats in expected_nats.items():
        assert float(out[term].mean()) == pytest.approx(nats / math.log(2), rel=0.01), term


def test_monte_carlo_se_covers_the_reconstruction_draw() -> None:
    """With a blurry decoder (lambda_0 = 1) most of the rerun-to-rerun noise of the test-set mean
    comes from the one-draw reconstruction term: the reported Monte-Carlo SE covers it (it is an
    upper bound: it also holds the spread over images), the diffusion draws alone do not."""
    from vdm.evaluation.evaluate import monte_carlo_se

    x = discretized_gaussian_data(64).float()
    schedule = get_schedule("cosine", logsnr_min=-10.0, logsnr_max=1.0)
    eps_fn = gaussian_optimal_eps_fn(float(x.square().mean().sqrt()))
    totals, reported, diffusion_only = [], [], []
    for seed in range(200):
        out = elbo_bpd(eps_fn, x, schedule, 17, num_time_samples=8,
                       generator=torch.Generator().manual_seed(seed))
        totals.append(float(out["total"].mean()))
        reported.append(monte_carlo_se(out["diffusion_draws"], out["reconstruction"]) ** 2)
        diffusion_only.append(monte_carlo_se(out["diffusion_draws"], torch.zeros(64)) ** 2)
    rerun_variance = float(torch.tensor(totals, dtype=torch.float64).var())
    assert 0.85 < sum(reported) / len(reported) / rerun_variance < 1.6
    assert sum(diffusion_only) / len(diffusion_only) / rerun_variance < 0.5


@pytest.mark.parametrize("time_sampling", ["logsnr", "t"])
def test_monte_carlo_se_matches_rerun_spread(time_sampling: str) -> None:
    """The replicate-based Monte-Carlo variance of a test-set mean (columns of the draws) equals,
    on average, the spread of that mean over reruns with other seeds (same data)."""
    from vdm.evaluation.evaluate import monte_carlo_se

    x = torch.randn((64, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    eps_fn, schedule = gaussian_optimal_eps_fn(1.0), get_schedule("cosine")
    means, estimated = [], []
    for seed in range(300):
        mean, draws = diffusion_nats(eps_fn, x, schedule, num_time_samples=4,
                                     time_sampling=time_sampling, return_draws=True,
                                     generator=torch.Generator().manual_seed(seed))
        assert draws.shape == (64, 4) and torch.allclose(draws.mean(1), mean)
        means.append(float(mean.mean()))
        estimated.append(monte_carlo_se(draws, torch.zeros(64)) ** 2)
    rerun_variance = torch.tensor(means, dtype=torch.float64).var()
    assert float(torch.tensor(estimated).mean() / rerun_variance) == pytest.approx(1.0, abs=0.2)
