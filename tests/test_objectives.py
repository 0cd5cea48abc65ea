"""Objectives as weightings of the epsilon-error: identities checked on explicit predictions."""

from __future__ import annotations

import math

import pytest
import torch

from vdm.model.objectives import OBJECTIVES, get_objective, sample_times
from vdm.model.schedules import alpha_sigma


@pytest.fixture
def prediction_setup():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 4, 4, generator=g) * 2 - 1
    eps = torch.randn(x.shape, generator=g)
    eps_hat = eps + 0.3 * torch.randn(x.shape, generator=g)
    log_snr = torch.linspace(-8, 8, 64)
    alpha, sigma = (a.view(-1, 1, 1, 1) for a in alpha_sigma(log_snr))
    z = alpha * x + sigma * eps
    x_hat = (z - sigma * eps_hat) / alpha
    neg_slope = torch.rand(64, generator=g) * 10 + 0.5
    eps_err = (eps_hat - eps).square().flatten(1).sum(1)
    return dict(x=x, eps=eps, eps_hat=eps_hat, log_snr=log_snr, alpha=alpha, sigma=sigma,
                x_hat=x_hat, neg_slope=neg_slope, eps_err=eps_err)


def _sq(a: torch.Tensor) -> torch.Tensor:
    return a.square().flatten(1).sum(1)


def test_x0_loss_is_exp_minus_lambda_times_eps_loss(prediction_setup) -> None:
    p = prediction_setup
    loss = get_objective("x0").loss(p["eps_err"], p["log_snr"], p["neg_slope"])
    torch.testing.assert_close(loss, _sq(p["x_hat"] - p["x"]), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(loss, torch.exp(-p["log_snr"]) * p["eps_err"])


def test_v_loss_is_one_plus_exp_minus_lambda_times_eps_loss(prediction_setup) -> None:
    p = prediction_setup
    alpha, sigma = p["alpha"], p["sigma"]
    v = alpha * p["eps"] - sigma * p["x"]
    v_hat = alpha * p["eps_hat"] - sigma * p["x_hat"]
    loss = get_objective("v").loss(p["eps_err"], p["log_snr"], p["neg_slope"])
    torch.testing.assert_close(loss, _sq(v_hat - v), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(loss, (1 + torch.exp(-p["log_snr"])) * p["eps_err"])


def test_eps_elbo_sigmoid_min_snr_weights(prediction_setup) -> None:
    p = prediction_setup
    lam, slope, err = p["log_snr"], p["neg_slope"], p["eps_err"]
    torch.testing.assert_close(get_objective("eps").loss(err, lam, slope), err)
    torch.testing.assert_close(get_objective("elbo").loss(err, lam, slope), 0.5 * slope * err)
    torch.testing.assert_close(get_objective("sigmoid", bias=1.5).loss(err, lam, slope),
                               0.5 * torch.sigmoid(1.5 - lam) * slope * err)
    snr = torch.exp(lam)
    min_snr_x0 = torch.minimum(snr, torch.tensor(5.0)) * _sq(p["x_hat"] - p["x"])
    torch.testing.assert_close(get_objective("min_snr").loss(err, lam, slope), min_snr_x0,
                               rtol=1e-4, atol=1e-5)


def test_implied_weights(prediction_setup) -> None:
    p = prediction_setup
    lam, slope = p["log_snr"], p["neg_slope"]
    torch.testing.assert_close(get_objective("elbo").implied_weight(lam, slope),
                               torch.ones_like(lam))
    torch.testing.assert_close(get_objective("eps").implied_weight(lam, slope), 2 / slope)
    torch.testing.assert_close(get_objective("sigmoid", bias=0.0).implied_weight(lam, slope),
                               torch.sigmoid(-lam))


def test_registry_names_and_unknown_name() -> None:
    assert set(OBJECTIVES) == {"eps", "x0", "v", "elbo", "sigmoid", "min_snr", "edm", "flow"}
    with pytest.raises(ValueError, match="unknown objective 'score'"):
        get_objective("score")


def test_antithetic_times_are_stratified_and_uniform() -> None:
    g = torch.Generator().manual_seed(3)
    batch = 128
    t = sample_times(batch, generator=g)
    assert t.shape == (batch,) and (t >= 0).all() and (t < 1).all()
    bins = torch.floor(t * batch).long()
    assert sorted(bins.tolist()) == list(range(batch))  # exactly one time per stratum
    means = torch.stack([sample_times(16, generator=g) for _ in range(2000)])
    assert float(means.mean()) == pytest.approx(0.5, abs=0.01)
    assert float(means[:, 0].std()) == pytest.approx(math.sqrt(1 / 12), rel=0.05)


# ------------------------------------------------------------------ Kingma & Gao 2023, Table 1
# Independent of the multipliers above: the weightings the paper derives in closed form, and the
# expected loss on Gaussian data as a one-dimensional integral over lambda.
def cosine_without_offset():
    """iDDPM's cosine schedule with s = 0, whose log-SNR is lambda(u) = -2 log tan(pi u / 2)."""
    from vdm.model.schedules import get_schedule

    return get_schedule("cosine", s=0.0, logsnr_min=-10.0, logsnr_max=7.0).double()


def _lambda_grid(schedule) -> tuple[torch.Tensor, torch.Tensor]:
    from vdm.model.schedules import log_snr_and_slope

    t = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    with torch.no_grad():
        return log_snr_and_slope(schedule, t)


def test_eps_mse_under_cosine_weights_sech_half_lambda() -> None:
    """K&G Table 1: eps-MSE with the cosine schedule is w(lambda) = sech(lambda/2) up to a
    constant; with the schedule truncated to [u_lo, u_hi] the constant is 1 / (pi (u_hi - u_lo))."""
    schedule = cosine_without_offset()
    lam, neg_slope = _lambda_grid(schedule)
    weight = get_objective("eps").implied_weight(lam, neg_slope)
    expected = 1 / torch.cosh(lam / 2) / (math.pi * (schedule.u_hi - schedule.u_lo))
    torch.testing.assert_close(weight, expected, rtol=1e-6, atol=0)


def test_v_mse_under_cosine_weights_exp_minus_half_lambda() -> None:
    """K&G Table 1: v-MSE with the cosine schedule is w(lambda) = e^{-lambda/2} up to a constant."""
    schedule = cosine_without_offset()
    lam, neg_slope = _lambda_grid(schedule)
    weight = get_objective("v").implied_weight(lam, neg_slope)
    expected = 2 * torch.exp(-lam / 2) / (math.pi * (schedule.u_hi - schedule.u_lo))
    torch.testing.assert_close(weight, expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize("bias", [-1.0, 2.0])
def test_elbo_and_sigmoid_weightings_whatever_the_schedule(bias: float) -> None:
    """K&G: the ELBO is w = 1 and their monotone weighting w = sigmoid(b - lambda), on any
    schedule (both carry the -dlambda/dt factor)."""
    from vdm.model.schedules import get_schedule

    for name in ("linear", "cosine", "learned"):
        lam, neg_slope = _lambda_grid(get_schedule(name).double())
        torch.testing.assert_close(get_objective("elbo").implied_weight(lam, neg_slope),
                                   torch.ones_like(lam))
        torch.testing.assert_close(get_objective("sigmoid", bias=bias).implied_weight(lam, neg_slope),
                                   1 / (1 + torch.exp(lam - bias)))


@pytest.mark.parametrize("name", ["eps", "elbo", "sigmoid"])
def test_expected_loss_on_gaussian_data_is_the_weighted_integral(name: str) -> None:
    """x ~ N(0, I) with its exact eps-predictor: E||eps_hat - eps||^2 / D = sigmoid(lambda), so
    E[L_w] = 1/2 int w(lambda) sigmoid(lambda) dlambda over the schedule's range (K&G eq. 5), with
    the paper's w: 1 (ELBO), sigmoid(2 - lambda) (their sigmoid weighting, b = 2) and
    sech(lambda/2) / (pi (u_hi - u_lo)) (eps-MSE, cosine). The Monte-Carlo side samples t
    uniformly and goes through the schedule's slope and the objective's multiplier."""
    from scipy.integrate import quad

    from vdm.model.schedules import log_snr_and_slope

    schedule = cosine_without_offset()
    closed_form_w = {"elbo": lambda lam: 1.0,
                     "sigmoid": lambda lam: 1 / (1 + math.exp(lam - 2.0)),
                     "eps": lambda lam: 1 / math.cosh(lam / 2) / (
                         math.pi * (schedule.u_hi - schedule.u_lo))}[name]
    expected, _ = quad(lambda lam: 0.5 * closed_form_w(lam) / (1 + math.exp(-lam)), -10.0, 7.0)

    g = torch.Generator().manual_seed(0)
    dims, n = 16, 200_000
    t = torch.rand(n, generator=g, dtype=torch.float64)
    with torch.no_grad():
        lam, neg_slope = log_snr_and_slope(schedule, t)
    alpha, sigma = (a.view(-1, 1) for a in alpha_sigma(lam))
    x, eps = (torch.randn(n, dims, generator=g, dtype=torch.float64) for _ in range(2))
    z = alpha * x + sigma * eps
    eps_hat = sigma * z  # E[eps | z] for unit-variance data (alpha^2 + sigma^2 = 1)
    loss = get_objective(name).loss((eps_hat - eps).square().sum(1) / dims, lam, neg_slope)
    standard_error = float(loss.std() / math.sqrt(n))
    assert float(loss.mean()) == pytest.approx(expected, abs=4 * standard_error)
    assert standard_error < 0.02 * expected


def test_edm_weighting_is_kingma_and_gaos_closed_form() -> None:
    """K&G Table 1: EDM is w(lambda) = N(lambda; 2.4, 2.4^2) (e^{-lambda} + 0.5^2) / 0.5^2 on any
    schedule (EDM's log sigma ~ N(-1.2, 1.2^2) with lambda = -2 log sigma, sigma_data = 0.5)."""
    from vdm.model.schedules import get_schedule

    for name in ("cosine", "flow", "learned"):
        lam, neg_slope = _lambda_grid(get_schedule(name).double())
        density = torch.exp(-0.5 * ((lam - 2.4) / 2.4) ** 2) / (2.4 * math.sqrt(2 * math.pi))
        torch.testing.assert_close(get_objective("edm").implied_weight(lam, neg_slope),
                                   density * (torch.exp(-lam) + 0.25) / 0.25)


def test_edm_loss_is_edms_weighted_denoiser_error() -> None:
    """Per example, EDM's loss lambda(sigma) ||D(x + sigma n) - x||^2 with lambda(sigma) =
    (sigma^2 + sigma_data^2) / (sigma sigma_data)^2, times the density of lambda under EDM's
    sampling over the density under ours (t uniform: 1 / (-dlambda/dt)), halved as every L_w."""
    g = torch.Generator().manual_seed(0)
    lam = torch.linspace(-6, 6, 25, dtype=torch.float64)
    neg_slope = torch.rand(25, generator=g, dtype=torch.float64) * 5 + 0.5
    err = torch.rand(25, generator=g, dtype=torch.float64)  # ||eps_hat - eps||^2
    sigma_ve = torch.exp(-lam / 2)  # EDM's sigma (variance-exploding) at this log-SNR
    denoiser_sq_error = sigma_ve**2 * err  # ||x_hat - x||^2 = e^{-lambda} ||eps_hat - eps||^2
    edm_weight = (sigma_ve**2 + 0.25) / (sigma_ve * 0.5) ** 2
    edm_density = torch.exp(-0.5 * ((lam - 2.4) / 2.4) ** 2) / (2.4 * math.sqrt(2 * math.pi))
    expected = 0.5 * edm_density * neg_slope * edm_weight * denoiser_sq_error
    torch.testing.assert_close(get_objective("edm").loss(err, lam, neg_slope), expected)


def test_flow_matching_loss_on_its_schedule_is_the_velocity_error() -> None:
    """Flow matching, OT path (Lipman et al.): z_fm = (1 - t) x + t eps, u = eps - x. On the
    `flow` schedule (lambda = 2 log((1 - t)/t), untruncated range) the `flow` objective's loss
    equals ||u_hat - u||^2 of the velocity implied by eps_hat, and its weighting is e^{-lambda/2}."""
    from vdm.model.schedules import get_schedule, log_snr_and_slope

    schedule = get_schedule("flow", logsnr_min=-30.0, logsnr_max=30.0).double()
    assert schedule.u_lo == pytest.approx(0, abs=1e-6) and schedule.u_hi == pytest.approx(1, abs=1e-6)
    g = torch.Generator().manual_seed(0)
    t = torch.rand(64, generator=g, dtype=torch.float64) * 0.9 + 0.05
    with torch.no_grad():
        lam, neg_slope = log_snr_and_slope(schedule, t)
    u = schedule.u_lo + (schedule.u_hi - schedule.u_lo) * t  # the flow's own time
    x = torch.rand(64, 16, generator=g, dtype=torch.float64) * 2 - 1
    eps, eps_hat = (torch.randn(64, 16, generator=g, dtype=torch.float64) for _ in range(2))
    z_fm = (1 - u)[:, None] * x + u[:, None] * eps
    x_hat = (z_fm - u[:, None] * eps_hat) / (1 - u)[:, None]
    velocity_error = ((eps_hat - x_hat) - (eps - x)).square().sum(1)
    loss = get_objective("flow").loss((eps_hat - eps).square().sum(1), lam, neg_slope)
    torch.testing.assert_close(loss, velocity_error * (schedule.u_hi - schedule.u_lo), rtol=1e-6,
                               atol=1e-9)
    torch.testing.assert_close(get_objective("flow").implied_weight(lam, neg_slope),
                               torch.exp(-lam / 2))
