"""The decoder-consistent ODE bound: VDM's likelihood bound with the diffusion part replaced by
the probability-flow ODE's exact density of ``z_0``.

The model of discrete data ``x`` (``K`` levels in ``[-1, 1]``, ``D`` dimensions) that the ELBO of
:mod:`vdm.model.likelihood` bounds is a latent-variable model: ``z_0`` from the model's marginal
at ``t = 0`` (``lambda_max = lambda(0)``), then ``x`` from VDM's discretized decoder
``p(x | z_0)``. Taking ``p_ODE``, the density of ``z_0`` under the probability-flow ODE
(:func:`vdm.model.ode.log_prob`), as that marginal, ``P(x) = int p(x | z_0) p_ODE(z_0) dz_0``, and
Jensen's inequality with the forward process's own ``q(z_0 | x) = N(alpha_0 x, sigma_0^2 I)``
gives (nats per example)

    -log P(x) <= E_{q(z_0|x)}[-log p(x | z_0) + log q(z_0 | x) - log p_ODE(z_0)]
               = L_recon + KL(q(z_0 | x) || p_ODE).

The ELBO is ``L_recon + L_prior + L_diffusion`` with the same ``q``, the same decoder and the same
``lambda_max``, and ``L_prior + L_diffusion`` bounds ``KL(q(z_0|x) || p_SDE)`` (the KL between
the forward and the reverse path measures, which is at least the KL of their ``t = 0``
marginals). The two bounds therefore differ only in the diffusion part, and are compared on the
same images (``nll_ode_vdeq_minus_elbo_bpd``); for a model with the exact score of the data
(``p_ODE = p_SDE`` = the smoothed data), they agree up to the mismatch between ``q(z_1)`` and the
``N(0, I)`` prior.

Estimator (per example, one draw): ``eps ~ N(0, I)``, ``z_0 = alpha_0 x + sigma_0 eps``,

    nats = -log p(x | z_0) + log q(z_0 | x) - log p_ODE(z_0),
    log q(z_0 | x) = -1/2 ||eps||^2 - D/2 log(2 pi) - D log sigma_0,

with ``-log p(x | z_0)`` by :func:`vdm.model.likelihood.decoder_nll_nats` (the ELBO's decoder
term) and ``log p_ODE`` by :func:`vdm.model.ode.log_prob` (dopri5; Hutchinson's trace with
Rademacher probes fixed along the path, which is unbiased for ``log p_ODE(z_0)`` because the
path itself does not depend on the probes). ``log q`` is evaluated in closed form at the drawn
``z_0``; its mean is ``-D/2 log(2 pi e sigma_0^2)`` (minus the entropy), and the draw itself is
kept because ``log q - log p_ODE`` varies much less than ``-log p_ODE`` alone where ``p_ODE`` is
close to ``q`` around ``alpha_0 x``. The estimate is unbiased for the bound up to the solver's
error, which is relative to ``log p_ODE`` (about ``D lambda_max / 2`` nats at sharp data): for
the exact denoiser of ``tests/test_ode_bound.py`` (D = 4, lambda_max = 13.3) rtol = atol = 1e-5
gives about 1e-3 bits/dim too little, 1e-6 less than 1e-4. Reported in bits per dimension,
``nats / (D ln 2)``, per image.

Dequantization, and why this is the ODE number compared with the ELBO. The uniform bound of
:func:`vdm.model.ode.ode_nll` evaluates the ODE density at ``alpha_0 (x + Delta u)``, ``u ~
U(-1/2, 1/2)^D``: it scores a density that was never trained on dequantized data, so what it
costs depends on how sharp the model is at ``lambda_max`` (``sigma_0 / alpha_0`` against the
level spacing ``Delta``), not only on the likelihood. Song et al. 2021 (arXiv:2101.09258,
ScoreFlow) bound the discrete likelihood by uniform dequantization and tighten it with
variational dequantization (a learned ``q(u | x)``, Ho et al. 2019, arXiv:1902.00275); Zheng et al.
2023 (arXiv:2305.03935, i-DODE) name the mismatch between training on discrete data and
evaluating on uniformly dequantized data and replace the uniform noise by a training-free
truncated-normal dequantization that matches the forward process at ``lambda_max``; their code
(github.com/thu-ml/i-DODE, ``model_vdm.py``, built on VDM's) evaluates the bound here as its
``"v"`` dequantization, next to ``"tn"`` (truncated normal) and ``"u"`` (uniform, for which it
starts the ODE at its own lambda = 11.8, their Remark A.2). In the latent-variable view of
dequantization (Hoogeboom et al. 2020, arXiv:2001.11235) the bound here is variational
dequantization with ``q(z_0 | x)`` as the dequantizer and VDM's decoder in place of the bin
indicator of uniform dequantization; no part of it is learned for the evaluation.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vdm.model.likelihood import EpsFn, decoder_nll_nats
from vdm.model.ode import log_prob
from vdm.model.schedules import alpha_sigma, schedule_endpoints


def decoder_consistent_bpd(eps_fn: EpsFn, x: torch.Tensor, schedule: nn.Module, num_levels: int,
                           *, exact_divergence: bool = False, num_probes: int = 1,
                           rtol: float = 1e-5, atol: float = 1e-5,
                           generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Per-example decoder-consistent ODE bound in bits per dimension (module docstring).

    Args:
        eps_fn: ``eps_fn(z_t, log_snr) -> eps_hat`` with ``log_snr`` of shape ``(B,)``.
        x: data ``(B, ...)`` in ``[-1, 1]`` on the ``K = num_levels`` grid.
        schedule: maps ``t`` to ``lambda(t)``; ``lambda(0)`` sets ``q(z_0 | x)`` and the decoder,
            both end points the ODE's range.
        num_levels: ``K``.
        exact_divergence, num_probes, rtol, atol: as :func:`vdm.model.ode.log_prob`.
        generator: draws ``eps`` (first) and then the Hutchinson probes.

    Returns:
        ``{"reconstruction", "latent", "total"}``, tensors ``(B,)`` in bits/dim: ``-log p(x|z_0)``,
        ``log q(z_0|x) - log p_ODE(z_0)`` (a one-draw estimate of ``KL(q(z_0|x) || p_ODE)``) and
        their sum, the bound on ``-log2 P(x) / D``.
    """
    dims = x[0].numel()
    log_snr_0 = schedule_endpoints(schedule)[0].detach().to(x.dtype)
    alpha_0, sigma_0 = alpha_sigma(log_snr_0)
    eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    z_0 = alpha_0 * x + sigma_0 * eps
    with torch.no_grad():
        reconstruction = decoder_nll_nats(x, z_0, log_snr_0, num_levels)
    log_sigma_0 = 0.5 * F.logsigmoid(-log_snr_0)  # log sigma_0, exact for large lambda_0
    log_q = (-0.5 * (eps.flatten(1).square().sum(1) + dims * math.log(2 * math.pi))
             - dims * log_sigma_0)
    log_p = log_prob(eps_fn, z_0, schedule, exact_divergence=exact_divergence,
                     num_probes=num_probes, rtol=rtol, atol=atol, generator=generator)
    nats = {"reconstruction": reconstruction, "latent": log_q - log_p}
    nats["total"] = nats["reconstruction"] + nats["latent"]
    per_dim = dims * math.log(2.0)
    return {name: value.detach() / per_dim for name, value in nats.items()}


def ode_vdeq_nll(model: Any, data: Any, *, max_examples: int | None = None,
                 batch_size: int = 500, num_probes: int = 1, rtol: float = 1e-5,
                 atol: float = 1e-5, seed: int = 0, device: torch.device | str = "cpu",
                 return_per_example: bool = False) -> dict[str, Any]:
    """Test-set decoder-consistent ODE bound on ``-log2 P(x)`` per dimension
    (:func:`decoder_consistent_bpd`) of a :class:`vdm.model.diffusion.DiffusionModel` ``model``
    on the first ``max_examples`` images of :class:`vdm.core.data.ImageData` ``data``, with the
    settings of :func:`vdm.model.ode.ode_nll` (its own generator, seeded with ``seed``).

    The generator is seeded like the ELBO's (:func:`vdm.evaluation.evaluate.evaluate_nll`) and
    both draw the decoder's noise first, so where this function's first batch is a prefix of the
    ELBO's first batch the two bounds use the same ``z_0`` on the CPU (whose shorter draws are
    prefixes of longer ones) and their paired difference is free of the decoder term's noise; the
    estimate does not rely on it.

    Returns ``nll_ode_vdeq_bpd`` (mean over the images), ``nll_ode_vdeq_bpd_se`` (standard
    deviation over images / sqrt(n), ``n > 1``: the spread over images and the noise of ``z_0``
    and of the probes), ``nll_ode_vdeq_reconstruction_bpd`` and ``nll_ode_vdeq_latent_bpd`` (the
    means of the two terms); with ``return_per_example`` also ``per_example_bpd`` (``(n,)``
    float64 tensor of totals).
    """
    n = len(data) if max_examples is None else min(max_examples, len(data))
    generator = torch.Generator(device).manual_seed(seed)
    model.eval()
    terms: dict[str, list[torch.Tensor]] = {}
    for start in range(0, n, batch_size):
        x = data.model_inputs(torch.arange(start, min(start + batch_size, n))).to(device)
        out = decoder_consistent_bpd(model.eps, x, model.schedule, data.num_levels,
                                     num_probes=num_probes, rtol=rtol, atol=atol,
                                     generator=generator)
        for name, value in out.items():
            terms.setdefault(name, []).append(value.double().cpu())
    per_example = {name: torch.cat(values) for name, values in terms.items()}
    total = per_example["total"]
    result: dict[str, Any] = {"nll_ode_vdeq_bpd": float(total.mean())}
    if n > 1:
        result["nll_ode_vdeq_bpd_se"] = float(total.std(unbiased=True) / math.sqrt(n))
    result["nll_ode_vdeq_reconstruction_bpd"] = float(per_example["reconstruction"].mean())
    result["nll_ode_vdeq_latent_bpd"] = float(per_example["latent"].mean())
    if return_per_example:
        result["per_example_bpd"] = total
    return result
