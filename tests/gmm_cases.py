"""A tiny quantised Gaussian mixture (D = 2 as one 1x2 image, L = 5, 3 components, 2 classes) and brute-force
enumeration over its 25 points, shared by the digits-gmm and Bayes-denoiser tests."""

from __future__ import annotations

import itertools

import numpy as np
from scipy.special import logsumexp
from scipy.stats import norm

from vdm.core.digits_gmm import GaussianMixtureData


def tiny_mixture() -> GaussianMixtureData:
    """Three components over two dimensions with five levels: a broad one, a narrow one near a
    corner (tail probabilities down to ~1e-200) and one of another class."""
    return GaussianMixtureData(
        weights=np.array([0.5, 0.2, 0.3]),
        means=np.array([[-0.6, 0.3], [0.8, -0.9], [0.1, 0.9]]),
        stds=np.array([[0.3, 0.5], [0.05, 0.2], [0.7, 0.15]]),
        component_class=np.array([0, 0, 1]),
        num_levels=5,
        shape=(1, 1, 2),
    )


def all_points(mixture: GaussianMixtureData) -> np.ndarray:
    """Every level-index vector, ``(L^D, D)`` int64, in lexicographic order."""
    return np.array(list(itertools.product(range(mixture.num_levels), repeat=mixture.num_dims)))


def direct_level_probs(mixture: GaussianMixtureData) -> np.ndarray:
    """``(K, D, L)`` ``p_kd(l)`` straight from the definition with scipy's normal CDF (upper-tail
    intervals through the survival function)."""
    x = mixture.level_values
    edges = np.concatenate([[-np.inf], (x[1:] + x[:-1]) / 2, [np.inf]])
    mu, s = mixture.means[..., None], mixture.stds[..., None]
    lo, hi = (edges[:-1] - mu) / s, (edges[1:] - mu) / s
    return np.where(lo > 0, norm.sf(lo) - norm.sf(hi), norm.cdf(hi) - norm.cdf(lo))


def brute_joint(mixture: GaussianMixtureData) -> np.ndarray:
    """``(L^D, K)`` ``pi_k prod_d p_kd(x_d)`` for every point of :func:`all_points`."""
    probs = direct_level_probs(mixture)
    points = all_points(mixture)
    per_dim = probs[:, np.arange(mixture.num_dims), points]  # (K, N, D)
    return mixture.weights * per_dim.prod(-1).T


def brute_posterior(mixture: GaussianMixtureData, z: np.ndarray, log_snr: float,
                    label: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """By enumeration over the 25 points, for ``z (B, D)``: ``E[x | z]`` (or ``E[x | z, c]``),
    ``p(c | z)`` ``(B, C)`` and ``log p_lambda(z)`` ``(B,)`` (nats)."""
    alpha, sigma2 = np.sqrt(1 / (1 + np.exp(-log_snr))), 1 / (1 + np.exp(log_snr))
    joint = brute_joint(mixture)  # (N, K)
    values = mixture.level_values[all_points(mixture)]  # (N, D)
    log_lik = (-0.5 * ((z[:, None, :] - alpha * values[None]) ** 2).sum(-1) / sigma2
               - 0.5 * mixture.num_dims * np.log(2 * np.pi * sigma2))  # (B, N)
    classes = [joint[:, mixture.component_class == c].sum(1) for c in range(mixture.num_classes)]
    class_terms = np.stack([np.log(p) + log_lik for p in classes], axis=-1)  # (B, N, C)
    log_marginal = logsumexp(class_terms, axis=(1, 2))
    class_posterior = np.exp(logsumexp(class_terms, axis=1) - log_marginal[:, None])
    terms = logsumexp(class_terms, axis=2) if label is None else class_terms[..., label]
    weights = np.exp(terms - logsumexp(terms, axis=1, keepdims=True))
    return weights @ values, class_posterior, log_marginal
