"""The score view: likelihood by the probability-flow ODE (Song et al. 2021, Sec. 4.3 and App. D.2).

For the variance-preserving process ``z_t = alpha_t x + sigma_t eps`` (``alpha_t^2 = sigmoid(
lambda_t)``) the forward SDE has drift ``f(t) z`` with ``f = d log alpha / dt = 1/2 sigma^2
lambda'`` and diffusion ``g^2 = d sigma^2/dt - 2 f sigma^2 = -sigma^2 lambda'`` (``lambda' =
dlambda/dt < 0``). With the score ``grad log p_t(z) = -eps_hat / sigma`` its probability-flow ODE
is

    dz/dt = f z - 1/2 g^2 grad log p_t = 1/2 lambda' (sigma^2 z - sigma eps_hat(z, lambda_t)),

which maps the model's marginal at ``t = 0`` to the one at ``t = 1``, taken to be ``N(0, I)``. By
the instantaneous change of variables ``d log p(z_t)/dt = -div dz/dt``, so

    log p_0(z_0) = log N(z_1; 0, I) + int_0^1 div(dz/dt) dt.

The ODE is integrated in ``lambda`` itself, from ``lambda_max = lambda(0)`` down to
``lambda_min = lambda(1)``: with ``dt = dlambda / lambda'`` the schedule's slope cancels,

    dz/dlambda = 1/2 (sigma^2 z - sigma eps_hat(z, lambda)),
    log p_0(z_0) = log N(z_1; 0, I)
                   + int_{lambda_max}^{lambda_min} 1/2 (D sigma^2 - sigma div_z eps_hat) dlambda,

so, like the continuous-time ELBO, the result depends on the schedule only through its end points,
and the adaptive solver does not have to follow the steep ends of ``lambda(t)``.

``div_z eps_hat`` is computed exactly (``D`` vector-Jacobian products; small ``D`` only) or by
Hutchinson's estimator ``E_v[v^T (d eps_hat / dz) v]`` with Rademacher probes ``v`` held fixed along
the trajectory. The ODE is solved by torchdiffeq's adaptive Dormand-Prince (dopri5) method.

:func:`ode_nll` turns this into a bound on the negative log-likelihood of ``K``-level data in
bits/dim with uniform dequantization (Song et al. 2021; Ho et al. 2019): ``x~ = x + Delta u``,
``u ~ U(-1/2, 1/2)^D``, ``Delta = 2 / (K - 1)`` (the spacing of the levels in ``[-1, 1]``), and
``-log P(x) <= E_u[-log p(x~)] - D log Delta``. The model density of the data is that of ``z_0``
rescaled: ``log p(x~) = log p_0(alpha_0 x~) + D log alpha_0`` (``alpha_0`` at ``lambda_max``;
``p_0`` is the data smoothed by ``N(0, sigma_0^2)``, the usual approximation at the ODE's end).
What this costs depends on how sharp the model is at ``lambda_max``; the bound that is compared
with the ELBO is the decoder-consistent one of :mod:`vdm.model.ode_bound`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torchdiffeq import odeint

from vdm.core.progress import ProgressCallback, counting_calls
from vdm.model.likelihood import EpsFn
from vdm.model.schedules import alpha_sigma, schedule_endpoints


def _divergence_of_eps(eps_hat: torch.Tensor, z: torch.Tensor, probes: torch.Tensor | None
                       ) -> torch.Tensor:
    """``div_z eps_hat`` per example ``(B,)``: exact when ``probes`` is None, else the mean over
    the Hutchinson probes ``(P, *z.shape)`` of ``v^T J v``."""
    if probes is None:
        flat_eps = eps_hat.flatten(1)
        total = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
        for d in range(flat_eps.shape[1]):
            (grad,) = torch.autograd.grad(flat_eps[:, d].sum(), z, retain_graph=True)
            total = total + grad.flatten(1)[:, d]
        return total
    estimates = []
    for probe in probes:
        (grad,) = torch.autograd.grad(eps_hat, z, grad_outputs=probe, retain_graph=True)
        estimates.append((grad * probe).flatten(1).sum(1))
    return torch.stack(estimates).mean(0)


def log_prob(eps_fn: EpsFn, z: torch.Tensor, schedule: nn.Module, *,
             exact_divergence: bool = False, num_probes: int = 1, rtol: float = 1e-5,
             atol: float = 1e-5, generator: torch.Generator | None = None) -> torch.Tensor:
    """``log p_0(z)`` in nats per example ``(B,)`` under the model's marginal at ``t = 0``, by
    integrating the probability-flow ODE from ``t = 0`` to ``t = 1`` (module docstring).

    Args:
        eps_fn: ``eps_fn(z_t, log_snr) -> eps_hat`` with ``log_snr`` of shape ``(B,)``.
        z: points ``(B, ...)`` at ``t = 0``.
        schedule: maps ``t`` to ``lambda(t)``.
        exact_divergence: ``D`` vector-Jacobian products per evaluation instead of Hutchinson.
        num_probes: Rademacher probes of the Hutchinson estimator (fixed along the path).
        rtol, atol: tolerances of the adaptive dopri5 solver.
        generator: for the probes.
    """
    batch, dims = z.shape[0], z[0].numel()
    probes = None if exact_divergence else (
        torch.randint(0, 2, (num_probes, *z.shape), generator=generator, device=z.device
                      ).to(z.dtype) * 2 - 1)

    log_snr_max, log_snr_min = (float(v.detach()) for v in schedule_endpoints(schedule))

    def dynamics(log_snr: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            z_t = state[0].detach().requires_grad_(True)
            log_snrs = log_snr.reshape(1).expand(batch).to(z_t.dtype)
            alpha, sigma = alpha_sigma(log_snrs)
            eps_hat = eps_fn(z_t, log_snrs).to(z_t.dtype)
            div_eps = _divergence_of_eps(eps_hat, z_t, probes)
        sigma_ = sigma.view(-1, *[1] * (z_t.dim() - 1))
        drift = 0.5 * (sigma_**2 * z_t - sigma_ * eps_hat)
        divergence = 0.5 * (dims * sigma**2 - sigma * div_eps)
        return drift.detach(), divergence.detach()

    grid = torch.tensor([log_snr_max, log_snr_min], dtype=z.dtype, device=z.device)
    start = (z, torch.zeros(batch, dtype=z.dtype, device=z.device))
    z_path, integral_path = odeint(dynamics, start, grid, rtol=rtol, atol=atol, method="dopri5")
    z_1, integral = z_path[-1], integral_path[-1]
    prior = -0.5 * (z_1.flatten(1).square().sum(1) + dims * math.log(2 * math.pi))
    return prior + integral


def ode_nll(model: Any, data: Any, *, max_examples: int | None = None, batch_size: int = 500,
            num_probes: int = 1, rtol: float = 1e-5, atol: float = 1e-5, seed: int = 0,
            device: torch.device | str = "cpu", return_per_example: bool = False,
            progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Test-set bound on ``-log2 P(x)`` per dimension from :func:`log_prob` with uniform
    dequantization (module docstring), for a :class:`vdm.model.diffusion.DiffusionModel` ``model`` and
    :class:`vdm.core.data.ImageData` ``data``.

    Returns ``nll_ode_bpd`` (mean over the first ``max_examples`` images), ``nll_ode_bpd_se``
    (standard deviation over images / sqrt(n): it holds the spread over images and the noise
    of the dequantization and of the Hutchinson probes), and the settings; with
    ``return_per_example`` also ``per_example_bpd`` (``(n,)`` float64 tensor). ``progress``
    (optional, :class:`vdm.core.progress.ProgressCallback`): told the batches done of
    ``ceil(n / batch_size)``, and after each network evaluation of the adaptive solver (their
    number is not known in advance) the batch's evaluations so far, field ``evals``.
    """
    n = len(data) if max_examples is None else min(max_examples, len(data))
    generator = torch.Generator(device).manual_seed(seed)
    num_levels = data.num_levels
    spacing = 2.0 / (num_levels - 1)
    model.eval()
    with torch.no_grad():
        log_snr_0 = model.schedule(torch.zeros((), device=device)).detach()
    alpha_0 = float(alpha_sigma(log_snr_0)[0])
    values = []
    num_batches = math.ceil(n / batch_size)
    for done, start in enumerate(range(0, n, batch_size)):
        x = data.model_inputs(torch.arange(start, min(start + batch_size, n))).to(device)
        dims = x[0].numel()
        u = torch.rand(x.shape, generator=generator, device=device) - 0.5
        x_tilde = x + spacing * u
        eps_fn = model.eps
        if progress is not None:
            progress(done, num_batches, evals=0)
            eps_fn = counting_calls(model.eps, lambda k, d=done: progress(d, num_batches, evals=k))
        log_p = log_prob(eps_fn, alpha_0 * x_tilde, model.schedule, num_probes=num_probes,
                         rtol=rtol, atol=atol, generator=generator)
        nats = -(log_p + dims * math.log(alpha_0)) - dims * math.log(spacing)
        values.append((nats / (dims * math.log(2))).double().cpu())
        if progress is not None:
            progress(done + 1, num_batches)
    bpd = torch.cat(values)
    result = {"nll_ode_bpd": float(bpd.mean()), "nll_ode_num_examples": n,
              "nll_ode_num_probes": num_probes, "nll_ode_rtol": rtol, "nll_ode_atol": atol,
              "nll_ode_seed": seed}
    if n > 1:
        result["nll_ode_bpd_se"] = float(bpd.std(unbiased=True) / math.sqrt(n))
    if return_per_example:
        result["per_example_bpd"] = bpd
    return result
