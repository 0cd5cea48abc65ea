"""Likelihood against the truth: a run's bounds on ``-log2 P(x) / D`` next to the exact value, on
a dataset whose probability is known (``digits-gmm``, :mod:`vdm.core.digits_gmm`).

Every number here is in **bits per dimension** (``nats / (D ln 2)``, per image, then averaged
over the evaluated test images), like ``nll_bpd``. For a test image ``x`` (the first ``n`` of the
split, the images the ELBO was evaluated on):

* ``true_nll_bpd``: the mean of the exact ``-log2 P(x) / D`` over those images (what the true
  distribution scores on them), and ``true_entropy_bpd``: the true entropy
  ``H = E_P[-log2 P(x)] / D``, estimated on 100k fresh exact samples
  (:func:`vdm.core.digits_gmm.describe`; SE about 0.0006 bits/dim). ``H`` is reported, and
  drawn as the line in the plots, because it is the distribution's own number, the same for
  every run and grid; the test images' mean has a spread of about 0.19 / sqrt(n) bits/dim
  around it (0.004 at the 2000 test images, 0.024 at 64) and moves with ``nll.max_examples``.
  It is ``true_nll_bpd`` that the paired differences below subtract, image by image.
* ``nll_minus_entropy_bpd``: ``mean_x [ELBO(x) - (-log2 P(x) / D)]``, the run's ELBO minus the
  exact value, paired per image; its SE is the standard deviation of the per-image differences
  over ``sqrt(n)``, free of the spread between images. Its expectation over test images is
  ``E_P[ELBO] - H``: how far the run is from the physical limit. It equals
  ``nll_bpd - true_nll_bpd``.
* ``bayes_bound_bpd``: the ELBO of the Bayes-optimal denoiser ``eps*``
  (:class:`vdm.model.bayes_denoiser.BayesDenoiser`) with the run's own schedule (its ``lambda``
  range: the fixed schedule's truncation, or the learned end points of this run) on the same
  images, with the same settings and the same seed, so the same noise levels and noise
  (common random numbers). ``eps*`` minimises the expected diffusion term at every ``lambda``
  over all functions, so in expectation no network reaches below it with that ``lambda`` range
  and VDM's decoder; its expected excess over ``H`` is ``KL(q(z_1) || N(0, I))`` of the forward
  process's marginal at ``lambda_min`` plus the decoder's mismatch
  ``E KL(q(x | z_0) || p_dec(x | z_0))`` at ``lambda_max``, which vanishes as ``lambda_max``
  grows.
* ``nll_minus_bayes_bound_bpd`` (the **network gap**: the run's ELBO minus the Bayes bound,
  paired per image; only the diffusion term differs, the reconstruction and prior terms are the
  same numbers) and ``bayes_bound_minus_entropy_bpd`` (the **schedule and decoder gap**: the
  Bayes bound minus the exact value, paired). Per image, network gap + schedule gap = the run's
  gap to the truth, so the three means add up exactly.
* With the ODE bound on, the same for the decoder-consistent ODE bound on its images (the first
  ``nll.ode.max_examples``; :func:`vdm.model.ode_bound.ode_vdeq_nll`, same seed, so the same
  ``z_0`` and Hutchinson probes): ``nll_ode_vdeq_minus_entropy_bpd``, ``bayes_ode_vdeq_bpd``,
  ``nll_ode_vdeq_minus_bayes_ode_vdeq_bpd`` and ``bayes_ode_vdeq_minus_entropy_bpd``.

Each ``*_se`` is a standard deviation over images divided by ``sqrt(n)`` (absent for ``n < 2``).
The oracle computes in float64 (:class:`vdm.model.bayes_denoiser.BayesEpsNetwork`); the exact
``log P`` is float64 numpy. Nothing is cached across jobs; the mixture's description (100k
samples, 1-3 s) is computed once per process.

:func:`known_mixture` says which datasets have a known density: the metrics are computed
whenever the dataset has one (no switch), so no setting can ask for them on a dataset without.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from functools import cache
from typing import Any

import torch
from torch import nn

from vdm.core.data import ImageData
from vdm.core.digits_gmm import GaussianMixtureData, describe, load_mixture
from vdm.core.known_density_settings import require_known_density
from vdm.core.progress import ProgressCallback
from vdm.evaluation.evaluate import evaluate_nll
from vdm.model.bayes_denoiser import BayesDenoiser, BayesNoisyClassifier
from vdm.model.diffusion import DiffusionModel
from vdm.model.ode_bound import ode_vdeq_nll

#: Datasets whose exact distribution is known, and how to load it.
KNOWN_DENSITIES: dict[str, Callable[[], GaussianMixtureData]] = {"digits-gmm": load_mixture}


def known_mixture(dataset: str) -> GaussianMixtureData | None:
    """The exact distribution of ``dataset`` (None for a dataset without a known density)."""
    load = KNOWN_DENSITIES.get(dataset)
    return None if load is None else load()


def oracle_classifier(dataset: str, device: torch.device | str = "cpu"
                      ) -> BayesNoisyClassifier:
    """The exact noise-conditional classifier ``p(c | z_lambda)`` of ``dataset``'s known
    distribution, on ``device``: what ``oracle`` guidance uses
    (:func:`vdm.model.guidance.guided_eps_fn`). One-line ``ValueError`` for a dataset without a
    known density (:func:`vdm.core.known_density_settings.require_known_density`)."""
    require_known_density(dataset, "oracle guidance (the exact noisy-class posterior p(c | z))")
    return BayesNoisyClassifier(known_mixture(dataset)).to(device)


def mixture_record(mixture: GaussianMixtureData) -> dict[str, Any]:
    """What a run records about the distribution (:func:`vdm.core.digits_gmm.describe`: sha256
    of the parameters, components, classes, levels, shape, ``H`` and the Bayes accuracy with
    their SEs, from 100k fresh samples), computed once per process and mixture (a fresh copy
    each call)."""
    return copy.deepcopy(_described(mixture))


@cache
def _described(mixture: GaussianMixtureData) -> dict[str, Any]:
    return describe(mixture)


def true_bits_per_dim(mixture: GaussianMixtureData, data: ImageData, n: int) -> torch.Tensor:
    """``(n,)`` float64 exact ``-log2 P(x) / D`` (bits/dim) of the first ``n`` images of
    ``data``; a one-line ``ValueError`` when the images are not of the mixture's shape and
    levels."""
    if data.shape != tuple(mixture.shape) or data.num_levels != mixture.num_levels:
        raise ValueError(f"{data.name} {data.split}: images {data.shape} with {data.num_levels} "
                         f"levels, the mixture's are {tuple(mixture.shape)} with "
                         f"{mixture.num_levels}")
    return torch.from_numpy(mixture.bits_per_dim(data.images[:n].numpy()))


def mean_se(values: torch.Tensor, name: str) -> dict[str, float]:
    """``{name: mean, name_se: std / sqrt(n)}`` of per-image values (the SE absent for
    ``n < 2``), in the values' units."""
    values = values.double()
    n = len(values)
    return {name: float(values.mean()),
            **({f"{name}_se": float(values.std(unbiased=True) / math.sqrt(n))} if n > 1 else {})}


def paired_mean(first: torch.Tensor, second: torch.Tensor, name: str) -> dict[str, float]:
    """:func:`mean_se` of the per-image differences ``first - second`` over the first
    ``n = min(len(first), len(second))`` images (the same images in both): the mean difference
    and its SE, free of the spread between images."""
    n = min(len(first), len(second))
    return mean_se(first[:n].double() - second[:n].double(), name)


def bayes_model(mixture: GaussianMixtureData, schedule: nn.Module,
                device: torch.device | str = "cpu") -> BayesDenoiser:
    """The exact denoiser ``eps*`` of ``mixture`` on ``schedule`` (a run's own schedule module,
    already on ``device``: its end points are the run's ``lambda`` range), on ``device``."""
    return BayesDenoiser(mixture, schedule).to(device)


def bayes_bound(mixture: GaussianMixtureData, schedule: nn.Module, data: ImageData, *,
                max_examples: int | None, batch_size: int, num_time_samples: int,
                time_sampling: str = "logsnr", discrete_steps: int | None = None,
                seed: int = 0, device: torch.device | str = "cpu",
                progress: ProgressCallback | None = None) -> dict[str, Any]:
    """The Bayes bound: :func:`vdm.evaluation.evaluate.evaluate_nll` (bits/dim, with
    ``per_example_bpd``) of :func:`bayes_model` on the first ``max_examples`` images of ``data``,
    with the ELBO settings given (a run's: then the same noise levels and noise as its ELBO)."""
    return evaluate_nll(bayes_model(mixture, schedule, device), data, batch_size=batch_size,
                        num_time_samples=num_time_samples, time_sampling=time_sampling,
                        discrete_steps=discrete_steps, seed=seed, max_examples=max_examples,
                        device=device, return_per_example=True, progress=progress)


def against_the_truth(model: DiffusionModel, data: ImageData, mixture: GaussianMixtureData, *,
                      elbo_bpd: torch.Tensor, batch_size: int,
                      num_time_samples: int, time_sampling: str = "logsnr",
                      discrete_steps: int | None = None, seed: int = 0,
                      device: torch.device | str = "cpu",
                      ode: dict[str, Any] | None = None,
                      ode_vdeq_bpd: torch.Tensor | None = None,
                      progress: ProgressCallback | None = None) -> dict[str, Any]:
    """The known-answer metrics of a run (module docstring), bits/dim.

    ``elbo_bpd``: the run's per-image ELBO on the first ``n = len(elbo_bpd)`` images of
    ``data`` (:func:`vdm.evaluation.evaluate.evaluate_nll` with ``return_per_example``), computed
    with the ELBO settings given here (``batch_size`` ... ``seed``), which the Bayes bound reuses.
    ``ode`` (keywords of :func:`vdm.model.ode_bound.ode_vdeq_nll`) with ``ode_vdeq_bpd`` (the
    run's per-image decoder-consistent ODE bound): also the ODE columns. Returns the scalar
    columns and ``mixture`` (:func:`mixture_record`).
    """
    if (ode is None) != (ode_vdeq_bpd is None):
        raise ValueError("the ODE columns need both ode (settings) and ode_vdeq_bpd")
    n = len(elbo_bpd)
    record = mixture_record(mixture)
    bayes = bayes_bound(mixture, model.schedule, data, max_examples=n, batch_size=batch_size,
                        num_time_samples=num_time_samples, time_sampling=time_sampling,
                        discrete_steps=discrete_steps, seed=seed, device=device,
                        progress=progress)
    bayes_bpd = bayes.pop("per_example_bpd")
    n_ode = 0 if ode_vdeq_bpd is None else len(ode_vdeq_bpd)
    truth = true_bits_per_dim(mixture, data, max(n, n_ode))
    out: dict[str, Any] = {
        "true_entropy_bpd": record["true_entropy_bpd"],
        "true_entropy_bpd_se": record["true_entropy_bpd_se"],
        **mean_se(truth[:n], "true_nll_bpd"),
        **paired_mean(elbo_bpd, truth, "nll_minus_entropy_bpd"),
        **mean_se(bayes_bpd, "bayes_bound_bpd"),
        **({"bayes_bound_bpd_mc_se": bayes["nll_bpd_mc_se"]} if "nll_bpd_mc_se" in bayes else {}),
        **paired_mean(elbo_bpd, bayes_bpd, "nll_minus_bayes_bound_bpd"),
        **paired_mean(bayes_bpd, truth, "bayes_bound_minus_entropy_bpd"),
    }
    if ode is not None:
        bayes_ode = ode_vdeq_nll(bayes_model(mixture, model.schedule, device), data, seed=seed,
                                 device=device, return_per_example=True, **ode)["per_example_bpd"]
        out.update({
            **paired_mean(ode_vdeq_bpd, truth, "nll_ode_vdeq_minus_entropy_bpd"),
            **mean_se(bayes_ode, "bayes_ode_vdeq_bpd"),
            **paired_mean(ode_vdeq_bpd, bayes_ode, "nll_ode_vdeq_minus_bayes_ode_vdeq_bpd"),
            **paired_mean(bayes_ode, truth, "bayes_ode_vdeq_minus_entropy_bpd"),
        })
    out["mixture"] = record
    return out
