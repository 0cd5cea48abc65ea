"""Objectives as weightings of the epsilon-error: identities checked on explicit predictions."""

from __future__ import annotations

import math

import pytest
import torch

from vdm.objectives import OBJECTIVES, get_objective, sample_times
from vdm.schedules import alpha_sigma


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
    assert set(OBJECTIVES) == {"eps", "x0", "v", "elbo", "sigmoid", "min_snr"}
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
