"""Samples against the truth: a set of samples scored with the exact distribution ``P`` of a
dataset with a known density (``digits-gmm``, :mod:`vdm.core.digits_gmm`), and the exact
denoiser that draws samples without network error.

For samples ``x_1..x_N`` (uint8 pixels, mapped back to the data's ``L`` level indices), with
``D`` dimensions per image, every column is a mean over the samples with its standard error
(standard deviation over ``sqrt(N)``):

* ``sample_nll_bpd``: ``mean_i -log2 P(x_i) / D`` in **bits per dimension** (exact; nats
  ``/ (D ln 2)``). For samples drawn from ``P`` itself its expectation is the true entropy
  ``H = E_P[-log2 P(x)] / D``.
* ``sample_nll_minus_entropy_bpd``: that minus ``H`` (bits/dim; ``H`` from
  :func:`vdm.evaluation.known_density.mixture_record`, 100k fresh samples; its SE adds
  ``H``'s in quadrature). 0 in expectation for perfect samples. Samples off the support of
  ``P`` or at low-density points score high; but it is *not* a divergence: mode-collapsed samples
  that sit on high-density points score *below* ``H`` (a sampler that always returned the
  mode would score ``-log2 max_x P(x) / D < H``), so read it next to FID.
* ``sample_bayes_confidence``: ``mean_i max_c p(c | x_i)``, the Bayes classifier's confidence
  (a fraction). For samples from ``P``: ``E_P[max_c p(c | x)]`` = the Bayes accuracy.
* ``bayes_class_accuracy`` (class-conditional samples, requested label ``y_i``): the fraction
  with ``argmax_c p(c | x_i) = y_i``. For perfect conditional samples, ``x ~ P(x | y)`` with
  the labels balanced as the data's classes are (``y ~ p(y)``), it has expectation
  ``sum_x sum_y p(y) P(x | y) [argmax_c p(c | x) = y] = sum_x P(x) p(c*(x) | x)
  = E_P[max_c p(c | x)]``, the Bayes accuracy, exactly (with ``c*(x)`` the argmax; ``p(y) P(x |
  y) = P(x) p(y | x)`` by Bayes' rule). With class-balanced labels (image ``i`` of class
  ``i mod C``) instead of ``p(y)`` it is ``(1/C) sum_y P_y(argmax = y)``, the same to within the
  classes' weights' spread times the per-class error rates (on digits-gmm, Bayes accuracy
  0.999996, far below any SE here).
* ``bayes_accuracy`` (+ ``_se``): the mixture's Bayes accuracy ``E_P[max_c p(c | x)]``
  (:func:`vdm.core.digits_gmm.describe`), the value both of the above reach for perfect samples.

:func:`exact_denoiser` is the model whose samples have no network error: the Bayes denoiser
``eps*`` of the mixture on a run's own schedule, class-conditional for a conditional run
(:class:`vdm.model.bayes_denoiser.BayesDenoiser`). :func:`prefixed` names its columns
``bayes_<column>`` (``bayes_fid``, ``bayes_sample_nll_bpd``, ...).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy.special import logsumexp

from vdm.core.data import pixels_to_levels
from vdm.core.digits_gmm import GaussianMixtureData
from vdm.evaluation.known_density import mixture_record
from vdm.model.bayes_denoiser import BayesDenoiser
from vdm.model.diffusion import DiffusionModel

#: the per-setting columns of :func:`sample_truth` (each ``*_se`` present with its mean)
SAMPLE_TRUTH_KEYS: tuple[str, ...] = (
    "sample_nll_bpd", "sample_nll_bpd_se", "sample_nll_minus_entropy_bpd",
    "sample_nll_minus_entropy_bpd_se", "sample_bayes_confidence", "sample_bayes_confidence_se",
    "bayes_class_accuracy", "bayes_class_accuracy_se", "bayes_accuracy", "bayes_accuracy_se")
#: the scores of the exact denoiser's samples (:func:`prefixed`) that a row records: FID with its
#: SE and the truth columns of its samples (not the mixture's own ``bayes_accuracy``)
PREFIXED_KEYS: tuple[str, ...] = ("fid", "fid_se", *SAMPLE_TRUTH_KEYS[:8])
BAYES_SAMPLER_KEYS: tuple[str, ...] = tuple(f"bayes_{key}" for key in PREFIXED_KEYS)


def _mean_se(values: np.ndarray, name: str) -> dict[str, float]:
    values = np.asarray(values, dtype=np.float64)
    out = {name: float(values.mean())}
    if values.size > 1:
        out[f"{name}_se"] = float(values.std(ddof=1) / math.sqrt(values.size))
    return out


def sample_truth(mixture: GaussianMixtureData, pixels: torch.Tensor | np.ndarray,
                 labels: torch.Tensor | np.ndarray | None = None) -> dict[str, float]:
    """The truth columns of samples (module docstring): ``pixels`` uint8 ``(N, *shape)``
    (``0..255``, the mixture's levels as :func:`vdm.core.data.levels_to_pixels` writes them),
    ``labels`` the requested classes of conditional samples (None: no ``bayes_class_accuracy``).
    One-line ``ValueError`` when the images are not of the mixture's shape, a pixel is not one
    of its levels, or there are fewer than 2 samples."""
    pixels = torch.as_tensor(pixels)
    if pixels.dim() < 2 or tuple(pixels.shape[1:]) != tuple(mixture.shape) or len(pixels) < 2:
        raise ValueError(f"samples: expected (N >= 2, {tuple(mixture.shape)}) images of the "
                         f"mixture, got {tuple(pixels.shape)}")
    levels = pixels_to_levels(pixels, mixture.num_levels).numpy()
    joint = mixture.log_joint(levels)
    log_prob = logsumexp(joint, axis=1)
    bits = -log_prob / (mixture.num_dims * math.log(2.0))
    posterior = np.exp(mixture._class_log_posterior(joint))  # (N, C)
    record = mixture_record(mixture)
    entropy, entropy_se = record["true_entropy_bpd"], record["true_entropy_bpd_se"]
    out = {**_mean_se(bits, "sample_nll_bpd"),
           **_mean_se(bits - entropy, "sample_nll_minus_entropy_bpd")}
    out["sample_nll_minus_entropy_bpd_se"] = math.hypot(out["sample_nll_bpd_se"], entropy_se)
    out.update(_mean_se(posterior.max(axis=1), "sample_bayes_confidence"))
    if labels is not None:
        labels = np.asarray(torch.as_tensor(labels).cpu().numpy(), dtype=np.int64)
        if labels.shape != (len(pixels),):
            raise ValueError(f"sample labels: expected ({len(pixels)},), got {labels.shape}")
        out.update(_mean_se((posterior.argmax(axis=1) == labels).astype(np.float64),
                            "bayes_class_accuracy"))
    out.update(bayes_accuracy=record["bayes_accuracy"],
               bayes_accuracy_se=record["bayes_accuracy_se"])
    return out


def prefixed(scores: dict[str, Any], prefix: str = "bayes_") -> dict[str, Any]:
    """The exact denoiser's columns: :data:`PREFIXED_KEYS` of ``scores`` (a ``fid.json``-style
    mapping of its samples) renamed ``<prefix><key>`` (those present)."""
    return {f"{prefix}{key}": scores[key] for key in PREFIXED_KEYS if key in scores}


def exact_denoiser(model: DiffusionModel, mixture: GaussianMixtureData,
                   device: torch.device | str = "cpu") -> BayesDenoiser:
    """The Bayes denoiser ``eps*`` of ``mixture`` on ``model``'s own schedule module (learned
    end points included), class-conditional exactly when ``model`` is (then ``eps*(z, c) =
    (z - alpha E[x | z, c]) / sigma`` for the same labels), on ``device`` (the model's): sampled
    like ``model`` from the same seed, its samples differ from the model's by the network error
    alone."""
    return BayesDenoiser(mixture, model.schedule,
                         conditional=model.num_classes is not None).to(device)
