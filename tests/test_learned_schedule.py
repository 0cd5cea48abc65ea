"""The learned schedule's shape gradient is VDM's for every objective (Kingma et al. 2021, Sec. 3.5).

Gaussian data ``x ~ N(0, I)`` with its exact optimal epsilon-network (no parameters) make every
expectation a one-dimensional integral over ``t``: given ``lambda``, each of the ``D`` components of
``eps_hat - eps`` is ``N(0, m(lambda))`` with ``m(lambda) = sigmoid(lambda)``, so the per-dimension
squared error ``e`` has ``E[e^2 | lambda] = m^2 (1 + 2/D)``. Hence

* the ELBO diffusion term's per-example estimate ``L = 1/2 (-dlambda/dt) e`` has
  ``Var[L] = 1/4 (1 + 2/D) int_0^1 lambda'(t)^2 m(lambda(t))^2 dt - E[L]^2``, where ``E[L]`` does
  not depend on the shape (VDM): the shape gradient must be the gradient of this variance;
* the eps-loss ``e`` has ``E[e^2] = (1 + 2/D) int_0^1 m(lambda(t))^2 dt``: the old design's target,
  which a correct shape gradient must not follow.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from vdm.model.diffusion import DiffusionModel
from vdm.model.objectives import get_objective
from vdm.model.schedules import LearnedSchedule, alpha_sigma, get_schedule, log_snr_and_slope

DIMS = 4
IMAGE = (1, 2, 2)


class GaussianOptimalEps(nn.Module):
    """``eps_hat = sigma z / (alpha^2 + sigma^2)`` = E[eps | z] for ``x ~ N(0, I)``."""

    def forward(self, z: torch.Tensor, log_snr: torch.Tensor) -> torch.Tensor:
        alpha, sigma = (a.view(-1, 1, 1, 1) for a in alpha_sigma(log_snr))
        return sigma * z / (alpha**2 + sigma**2)


def curved_schedule() -> LearnedSchedule:
    """A learned schedule on [-10, 7] whose shape is far from linear (random sigmoid branch)."""
    schedule = get_schedule("learned", logsnr_min=-10.0, logsnr_max=7.0, hidden=8).double()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        schedule.l2.weight.copy_(torch.randn(8, 1, generator=g, dtype=torch.float64) * 6)
        schedule.l2.bias.copy_(torch.randn(8, generator=g, dtype=torch.float64) * 3)
        schedule.l3.weight.copy_(torch.rand(1, 8, generator=g, dtype=torch.float64) * 0.5)
    return schedule


def exact_second_moments(schedule: nn.Module, points: int = 256) -> tuple[float, float]:
    """``(E[L_elbo^2], E[e^2])`` by Gauss-Legendre quadrature in ``t`` (see module docstring)."""
    nodes, weights = np.polynomial.legendre.leggauss(points)
    t = torch.tensor((nodes + 1) / 2)
    w = torch.tensor(weights / 2)
    with torch.no_grad():
        log_snr, neg_slope = log_snr_and_slope(schedule, t)
    m = torch.sigmoid(log_snr)
    factor = 1 + 2 / DIMS
    return (float(0.25 * factor * (w * neg_slope**2 * m**2).sum()),
            float(factor * (w * m**2).sum()))


def finite_difference_gradients(schedule: LearnedSchedule, h: float = 1e-6
                                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences of both second moments w.r.t. every shape parameter (flattened)."""
    grads: list[tuple[float, float]] = []
    for param in schedule.shape_parameters():
        flat = param.data.view(-1)
        for i in range(flat.numel()):
            original = float(flat[i])
            flat[i] = original + h
            plus = exact_second_moments(schedule)
            flat[i] = original - h
            minus = exact_second_moments(schedule)
            flat[i] = original
            grads.append(tuple((a - b) / (2 * h) for a, b in zip(plus, minus, strict=True)))
    elbo_var, eps_sq = torch.tensor(grads, dtype=torch.float64).T
    return elbo_var, eps_sq


def monte_carlo_shape_gradient(objective: str, batches: int = 12, batch: int = 4096
                               ) -> torch.Tensor:
    """The shape gradient that :meth:`DiffusionModel.backward` accumulates, averaged over batches."""
    schedule = curved_schedule()
    model = DiffusionModel(GaussianOptimalEps(), schedule, get_objective(objective), num_levels=256)
    g = torch.Generator().manual_seed(1)
    model.zero_grad()
    for _ in range(batches):
        x = torch.randn(batch, *IMAGE, generator=g, dtype=torch.float64)
        model.backward(model.losses(x, generator=g))
    return torch.cat([p.grad.view(-1) for p in schedule.shape_parameters()]) / batches


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


@pytest.fixture(scope="module")
def exact_gradients() -> tuple[torch.Tensor, torch.Tensor]:
    return finite_difference_gradients(curved_schedule())


def test_quadrature_matches_the_elbo_closed_form() -> None:
    """Sanity of the integrals: E[L] = 1/2 (softplus(lambda_0) - softplus(lambda_1)) per dim."""
    nodes, weights = np.polynomial.legendre.leggauss(256)
    t, w = torch.tensor((nodes + 1) / 2), torch.tensor(weights / 2)
    with torch.no_grad():
        log_snr, neg_slope = log_snr_and_slope(curved_schedule(), t)
    mean = float(0.5 * (w * neg_slope * torch.sigmoid(log_snr)).sum())
    expected = 0.5 * (float(nn.functional.softplus(torch.tensor(7.0)))
                      - float(nn.functional.softplus(torch.tensor(-10.0))))
    assert mean == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("objective", ["eps", "x0", "elbo"])
def test_shape_gradient_is_the_elbo_estimator_variance_gradient(objective, exact_gradients) -> None:
    """For every objective the accumulated shape gradient matches the finite-difference gradient
    of Var[L_elbo] (within Monte-Carlo noise) and not that of E[e^2] of the eps-loss, which
    points the other way on this schedule (the design this replaced)."""
    elbo_variance_grad, eps_square_grad = exact_gradients
    assert _cosine(elbo_variance_grad, eps_square_grad) < 0  # the two designs really differ here
    mc = monte_carlo_shape_gradient(objective)
    assert _cosine(mc, elbo_variance_grad) > 0.99
    assert float((mc - elbo_variance_grad).norm() / elbo_variance_grad.norm()) < 0.15
    assert _cosine(mc, eps_square_grad) < 0.5


def test_shape_gradient_does_not_depend_on_the_objective() -> None:
    """Same draws, different objectives: identical shape and end-point gradients."""
    grads = {}
    for objective in ("eps", "min_snr"):
        schedule = curved_schedule()
        model = DiffusionModel(GaussianOptimalEps(), schedule, get_objective(objective), 256)
        g = torch.Generator().manual_seed(3)
        x = torch.randn(512, *IMAGE, generator=g, dtype=torch.float64)
        model.backward(model.losses(x, generator=g))
        grads[objective] = torch.cat([p.grad.view(-1) for p in schedule.parameters()])
    torch.testing.assert_close(grads["eps"], grads["min_snr"], rtol=1e-9, atol=1e-12)
