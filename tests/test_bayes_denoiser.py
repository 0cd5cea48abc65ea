"""The exact Bayes denoiser eps* of a quantised Gaussian mixture: against enumeration over the
25 points of a tiny mixture, finite differences, the ELBO, the ODE and the samplers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gmm_cases import all_points, brute_joint, brute_posterior, tiny_mixture
from scipy.stats import chisquare

from vdm.core.digits_gmm import load_mixture
from vdm.model.bayes_denoiser import BayesDenoiser, BayesEpsNetwork, BayesNoisyClassifier
from vdm.model.guidance import classifier_log_prob_grad, sample_guided
from vdm.model.likelihood import elbo_bpd
from vdm.model.ode import log_prob
from vdm.model.sampler import sample_batch
from vdm.model.schedules import alpha_sigma, get_schedule
from vdm.model.setting_names import Guidance

LOG_SNRS = (-8.0, -2.0, 0.0, 3.0, 7.0, 12.0)
pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: one thread is fastest


def _noisy_points(mixture, log_snr: float, n: int, seed: int) -> torch.Tensor:
    """``z = alpha x + sigma eps`` for ``x ~ P``, plus points off the data (uniform in a box),
    float64 ``(2n, D)``."""
    levels = mixture.sample(n, seed=seed)[0].reshape(n, mixture.num_dims)
    rng = np.random.default_rng(seed)
    alpha, sigma = (float(v) for v in alpha_sigma(torch.tensor(log_snr, dtype=torch.float64)))
    on = alpha * mixture.level_values[levels] + sigma * rng.standard_normal(levels.shape)
    off = rng.uniform(-1.5, 1.5, levels.shape)
    return torch.tensor(np.concatenate([on, off]))


@pytest.mark.parametrize("log_snr", LOG_SNRS)
def test_eps_star_and_class_quantities_equal_enumeration(log_snr: float) -> None:
    mixture = tiny_mixture()
    net = BayesEpsNetwork(mixture)
    z = _noisy_points(mixture, log_snr, 20, seed=int(log_snr) + 20)
    mean, class_posterior, log_marginal = brute_posterior(mixture, z.numpy(), log_snr)
    alpha, sigma = (float(v) for v in alpha_sigma(torch.tensor(log_snr, dtype=torch.float64)))
    np.testing.assert_allclose(net.posterior_mean(z, log_snr).numpy(), mean, rtol=0, atol=1e-10)
    np.testing.assert_allclose(net.eps_star(z, log_snr).numpy(), (z.numpy() - alpha * mean) / sigma,
                               rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(net.class_log_posterior(z, log_snr).exp().numpy(), class_posterior,
                               rtol=0, atol=1e-10)
    np.testing.assert_allclose(net.log_marginal(z, log_snr).numpy(), log_marginal, rtol=1e-12)
    for label in range(mixture.num_classes):
        mean_c, _, _ = brute_posterior(mixture, z.numpy(), log_snr, label)
        labels = torch.full((len(z),), label)
        np.testing.assert_allclose(net.posterior_mean(z, log_snr, labels).numpy(), mean_c,
                                   rtol=0, atol=1e-10)
    null = torch.full((len(z),), mixture.num_classes)  # the null label: unconditional
    np.testing.assert_allclose(net.posterior_mean(z, log_snr, null).numpy(), mean, atol=1e-10)


def test_fast_path_equals_the_log_space_path_on_digits_gmm() -> None:
    """Including rows far from every component at high SNR (recomputed in log space)."""
    net = BayesEpsNetwork(load_mixture())
    generator = torch.Generator().manual_seed(0)
    levels, _ = load_mixture().sample(16, seed=5)
    x = torch.tensor(load_mixture().level_values[levels])
    for log_snr in (-10.0, 0.0, 7.0, 13.0):
        alpha, sigma = alpha_sigma(torch.tensor(log_snr, dtype=torch.float64))
        z = torch.cat([alpha * x + sigma * torch.randn(x.shape, generator=generator,
                                                       dtype=torch.float64),
                       torch.randn((4, 1, 8, 8), generator=generator, dtype=torch.float64)])
        joint, means = net.component_terms(z, log_snr)
        exact_joint, exact_means = net.exact_component_terms(z, log_snr)
        posterior, exact_posterior = torch.softmax(joint, 1), torch.softmax(exact_joint, 1)
        torch.testing.assert_close(posterior, exact_posterior, rtol=0, atol=1e-12)
        torch.testing.assert_close(torch.einsum("bk,bkd->bd", posterior, means),
                                   torch.einsum("bk,bkd->bd", exact_posterior, exact_means),
                                   rtol=0, atol=1e-12)
        assert torch.isfinite(net.eps_star(z, log_snr)).all()


def test_tweedie_score_is_minus_eps_star_over_sigma() -> None:
    """``grad_z log p_lambda(z) = -eps*(z) / sigma``: autograd of the exact marginal density."""
    mixture = tiny_mixture()
    net = BayesEpsNetwork(mixture)
    for log_snr in (-3.0, 1.0, 6.0):
        z = _noisy_points(mixture, log_snr, 10, seed=3).requires_grad_(True)
        (score,) = torch.autograd.grad(net.log_marginal(z, log_snr).sum(), z)
        sigma = float(alpha_sigma(torch.tensor(log_snr, dtype=torch.float64))[1])
        torch.testing.assert_close(score, -net.eps_star(z.detach(), log_snr) / sigma,
                                   rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("log_snr", (-4.0, 0.0, 4.0))
def test_class_log_prob_grad_matches_central_differences(log_snr: float) -> None:
    mixture = tiny_mixture()
    net = BayesEpsNetwork(mixture)
    z = _noisy_points(mixture, log_snr, 6, seed=9)
    labels = torch.arange(len(z)) % mixture.num_classes
    grad = net.class_log_prob_grad(z, log_snr, labels)
    step = 1e-5
    for d in range(z.shape[1]):
        shift = torch.zeros_like(z)
        shift[:, d] = step

        def chosen(points: torch.Tensor) -> torch.Tensor:
            return net.class_log_posterior(points, log_snr).gather(1, labels[:, None])[:, 0]

        numeric = (chosen(z + shift) - chosen(z - shift)) / (2 * step)
        torch.testing.assert_close(grad[:, d], numeric, rtol=1e-6, atol=1e-7)
    # the classifier-guidance path (autograd through the exact noisy classifier) agrees
    classifier = BayesNoisyClassifier(net)
    through_guidance = classifier_log_prob_grad(classifier, z, torch.full((len(z),), log_snr),
                                                labels)
    torch.testing.assert_close(through_guidance, grad, rtol=1e-9, atol=1e-9)


def test_elbo_with_eps_star_bounds_the_true_nll_and_its_gap_shrinks_with_logsnr_max() -> None:
    """``E_P[ELBO] >= H`` (within the standard error), and the gap (the decoder's mismatch)
    falls as ``lambda_max`` grows; the same images and random numbers for every range."""
    mixture = tiny_mixture()
    levels, _ = mixture.sample(2000, seed=11)
    x = torch.tensor(mixture.level_values[levels])
    true_bpd = torch.tensor(mixture.bits_per_dim(levels))
    gaps = []
    for logsnr_max in (0.0, 2.0, 4.0):
        model = BayesDenoiser(mixture, get_schedule("cosine", logsnr_min=-10.0,
                                                    logsnr_max=logsnr_max))
        out = elbo_bpd(model.eps, x, model.schedule, mixture.num_levels, num_time_samples=64,
                       generator=torch.Generator().manual_seed(0))
        gap = out["total"] - true_bpd
        assert gap.mean() > -3 * gap.std() / math.sqrt(len(gap))
        gaps.append(gap)
    for wider, narrower in zip(gaps[1:], gaps[:-1], strict=True):
        shrink = narrower - wider
        assert shrink.mean() > 3 * shrink.std() / math.sqrt(len(shrink))


def test_ode_log_density_with_eps_star_equals_the_exact_density() -> None:
    """The probability-flow ODE with the exact score maps ``p_lambda_max`` onto ``p_lambda_min``,
    which at ``lambda_min = -20`` is ``N(0, I)`` to within ``alpha |z| ~ 1e-4`` nats: its
    ``log p_0(z)`` is the exact ``log p_lambda_max(z)``."""
    mixture = tiny_mixture()
    model = BayesDenoiser(mixture, get_schedule("cosine", logsnr_min=-20.0, logsnr_max=3.0))
    z = _noisy_points(mixture, 3.0, 2, seed=2)
    ode = log_prob(model.eps, z, model.schedule, exact_divergence=True, rtol=1e-6, atol=1e-6)
    exact = model.network.log_marginal(z, 3.0)
    torch.testing.assert_close(ode, exact, rtol=0, atol=2e-4)


def _level_counts(pixels: torch.Tensor, num_levels: int) -> np.ndarray:
    levels = torch.round(pixels.double() * (num_levels - 1) / 255).long().flatten(1).numpy()
    return np.bincount(levels[:, 0] * num_levels + levels[:, 1], minlength=num_levels**2)


def _chi_square_p(counts: np.ndarray, probs: np.ndarray) -> float:
    expected = counts.sum() * probs
    keep = expected > 5  # pool the sparse cells
    return chisquare(np.append(counts[keep], counts[~keep].sum()),
                     np.append(expected[keep], expected[~keep].sum())).pvalue


@pytest.mark.parametrize("method", ["ancestral", "ddim"])
def test_sampling_with_eps_star_reproduces_p(method: str) -> None:
    mixture = tiny_mixture()
    model = BayesDenoiser(mixture, get_schedule("cosine", logsnr_min=-10.0, logsnr_max=7.0))
    probs = np.exp(mixture.log_prob(all_points(mixture)))
    pixels = sample_batch(model.eps, model.schedule, (4000, 1, 1, 2), mixture.num_levels, steps=200,
                          method=method, generator=torch.Generator().manual_seed(1))
    assert _chi_square_p(_level_counts(pixels, 5), probs) > 1e-3
    # the test has power: two steps are far off
    coarse = sample_batch(model.eps, model.schedule, (4000, 1, 1, 2), mixture.num_levels, steps=2,
                          method=method, generator=torch.Generator().manual_seed(1))
    assert _chi_square_p(_level_counts(coarse, 5), probs) < 1e-6


def test_conditional_oracle_samples_each_class_and_guides() -> None:
    """A conditional Bayes denoiser in the guided sampler: the samples of class ``c`` follow
    ``P(x | c)`` (chi-square); classifier guidance with the exact noisy classifier runs."""
    mixture = tiny_mixture()
    model = BayesDenoiser(mixture, get_schedule("cosine", logsnr_min=-10.0, logsnr_max=7.0),
                          conditional=True)
    images, labels = sample_guided(model, Guidance(), num_samples=4000, num_classes=2,
                                   image_shape=mixture.shape, num_levels=5, steps=200,
                                   method="ddim")
    joint = brute_joint(mixture)
    for c, members in enumerate(([0, 1], [2])):
        class_probs = joint[:, members].sum(1) / joint[:, members].sum()
        assert _chi_square_p(_level_counts(images[labels == c], 5), class_probs) > 1e-3
    guided, _ = sample_guided(model, Guidance("classifier", 2.0), num_samples=40, num_classes=2,
                              image_shape=mixture.shape, num_levels=5, steps=10, method="ddim",
                              classifier=model.noisy_classifier())
    assert guided.shape == (40, 1, 1, 2)
    x = torch.tensor(mixture.level_values[mixture.sample(8, seed=0)[0]])
    assert model.losses(x)["loss"].shape == (8,)


def test_ddim_samples_of_digits_gmm_have_the_true_entropy() -> None:
    """Mean ``-log2 P(sample) / D`` of 256 DDIM samples (200 steps) with eps* is ``H``."""
    mixture = load_mixture()
    model = BayesDenoiser(mixture, get_schedule("cosine", logsnr_min=-10.0, logsnr_max=10.0))
    pixels = sample_batch(model.eps, model.schedule, (256, 1, 8, 8), 17, steps=200, method="ddim",
                          generator=torch.Generator().manual_seed(1))
    bpd = mixture.bits_per_dim(torch.round(pixels.double() * 16 / 255).long().numpy())
    entropy, entropy_se = mixture.entropy_bits_per_dim(20_000, seed=4)
    se = math.hypot(bpd.std(ddof=1) / math.sqrt(bpd.size), entropy_se)
    assert abs(bpd.mean() - entropy) < 3 * se
