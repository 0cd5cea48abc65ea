"""What the network outputs: the three readings of one denoiser (and v), converted to ``eps_hat``.

With ``z = alpha x + sigma eps`` (``alpha^2 + sigma^2 = 1``) one network output ``f(z, lambda)`` can
be read as (Luo 2022, "Understanding Diffusion Models: A Unified Perspective"; Salimans & Ho 2022
for v):

* ``eps``: the noise, ``eps_hat = f``;
* ``x0``: the clean image, ``x_hat = f`` and ``eps_hat = (z - alpha x_hat) / sigma``;
* ``v = alpha eps - sigma x``: ``eps_hat = sigma z + alpha v_hat``;
* ``score``: ``grad_z log p(z_lambda) = -eps / sigma`` (Tweedie), ``eps_hat = -sigma s_hat``.

Every conversion is exact (no rescaling hidden in the network): a raw parameterization that is
badly conditioned somewhere in ``[lambda_min, lambda_max]`` (x0 at high SNR, where ``1/sigma`` is
large; score at high SNR, where the target ``-eps/sigma`` is large) shows it in the benchmark.
Everything downstream (objectives as weightings of the eps-error, the NLL, the samplers, the
learned schedule's gradients) works on ``eps_hat``, so all parameterizations are comparable.
"""

from __future__ import annotations

import torch

PARAMETERIZATIONS = ("eps", "x0", "v", "score")


def check_parameterization(name: str) -> str:
    """``name`` if it is one of :data:`PARAMETERIZATIONS`, else a one-line ``ValueError``."""
    if name not in PARAMETERIZATIONS:
        raise ValueError(f"unknown parameterization {name!r}; choose one of "
                         f"{list(PARAMETERIZATIONS)}")
    return name


def eps_from_output(output: torch.Tensor, z: torch.Tensor, alpha: torch.Tensor,
                    sigma: torch.Tensor, parameterization: str) -> torch.Tensor:
    """``eps_hat`` from the network's ``output`` read as ``parameterization``.

    ``alpha``, ``sigma`` broadcast against ``z`` (e.g. shape ``(B, 1, 1, 1)``).
    """
    if parameterization == "eps":
        return output
    if parameterization == "x0":
        return (z - alpha * output) / sigma
    if parameterization == "v":
        return sigma * z + alpha * output
    if parameterization == "score":
        return -sigma * output
    raise ValueError(check_parameterization(parameterization))


def output_from_eps(eps: torch.Tensor, z: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor,
                    parameterization: str) -> torch.Tensor:
    """The network output that :func:`eps_from_output` maps to ``eps`` (its exact inverse): the
    target the parameterization's network has to produce."""
    if parameterization == "eps":
        return eps
    if parameterization == "x0":
        return (z - sigma * eps) / alpha
    if parameterization == "v":
        return (eps - sigma * z) / alpha  # = alpha eps - sigma x
    if parameterization == "score":
        return -eps / sigma
    raise ValueError(check_parameterization(parameterization))
