"""Schedules against their published formulas; monotone and finite on the closed interval."""

from __future__ import annotations

import math

import pytest
import torch

from vdm.model.schedules import (
    SCHEDULES,
    get_schedule,
    log_snr_and_slope,
    schedule_endpoints,
)

T = torch.linspace(0.0, 1.0, 2001, dtype=torch.float64)


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def published_alpha_bar(name: str, u: float) -> float:
    """The papers' alpha_bar(u), written out independently of vdm.model.schedules."""
    if name == "linear":  # Ho et al. 2020 as the VP-SDE (Song et al. 2021), beta 0.1 -> 20
        return math.exp(-(0.1 * u + 0.5 * (20 - 0.1) * u * u))
    if name == "cosine":  # Nichol & Dhariwal 2021
        s = 0.008
        return math.cos(math.pi / 2 * (u + s) / (1 + s)) ** 2 / math.cos(
            math.pi / 2 * s / (1 + s)) ** 2
    if name == "sigmoid":  # Chen 2023, start -3, end 3, tau 1
        sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
        return (sig(3) - sig(u * 6 - 3)) / (sig(3) - sig(-3))
    raise KeyError(name)


@pytest.mark.parametrize("name", ["linear", "cosine", "sigmoid"])
def test_fixed_schedule_matches_published_formula(name: str) -> None:
    sched = get_schedule(name, logsnr_min=-10.0, logsnr_max=7.0)
    for t in torch.linspace(0, 1, 97, dtype=torch.float64):
        u = sched.u_lo + (sched.u_hi - sched.u_lo) * float(t)
        expected = logit(published_alpha_bar(name, u))
        assert float(sched(t)) == pytest.approx(expected, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("name", ["linear", "cosine", "sigmoid"])
def test_fixed_schedule_truncation_hits_requested_range(name: str) -> None:
    sched = get_schedule(name, logsnr_min=-10.0, logsnr_max=7.0)
    lam_max, lam_min = schedule_endpoints(sched)
    assert float(lam_max) == pytest.approx(7.0, abs=1e-6)
    natural_min = logit(published_alpha_bar(name, 1.0)) if name == "linear" else -math.inf
    assert float(lam_min) == pytest.approx(max(-10.0, natural_min), abs=1e-6)


def test_linear_schedule_keeps_its_natural_end_when_inside_the_range() -> None:
    sched = get_schedule("linear", logsnr_min=-12.0, logsnr_max=7.0)
    assert sched.u_hi == 1.0
    assert float(sched(torch.tensor(1.0))) == pytest.approx(-math.log(math.expm1(10.05)), rel=1e-6)


def test_linear_continuous_form_matches_discrete_ddpm_betas() -> None:
    """alpha_bar of the VP-SDE at t = i/T is within 1% (in log) of prod(1 - beta_j), beta 1e-4..0.02."""
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    log_alpha_bar = torch.cumsum(torch.log1p(-betas), 0)
    for i in (100, 500, 900, 1000):
        cont = math.log(published_alpha_bar("linear", i / 1000))
        assert cont == pytest.approx(float(log_alpha_bar[i - 1]), rel=0.01)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_finite_and_strictly_decreasing(name: str) -> None:
    sched = get_schedule(name).double()
    lam = sched(T).detach()
    assert torch.isfinite(lam).all()
    assert (lam[1:] < lam[:-1]).all()
    assert lam.shape == T.shape
    # same shape for any batch shape
    assert sched(torch.rand(3, 4, dtype=torch.float64)).shape == (3, 4)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_slope_matches_finite_differences(name: str) -> None:
    sched = get_schedule(name).double()
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    _, neg_slope = log_snr_and_slope(sched, t)
    h = 1e-6
    fd = (sched(t + h) - sched(t - h)).detach() / (2 * h)
    torch.testing.assert_close(neg_slope.detach(), -fd, rtol=1e-5, atol=1e-5)
    assert (neg_slope > 0).all()


def test_learned_schedule_initialised_linear_between_vdm_end_points() -> None:
    sched = get_schedule("learned")
    lam = sched(T.float()).detach()
    expected = 13.3 + (-5.0 - 13.3) * T.float()  # gamma from -13.3 to 5, lambda = -gamma
    torch.testing.assert_close(lam, expected, rtol=0, atol=1e-3)


def test_learned_schedule_stays_monotone_with_random_parameters() -> None:
    torch.manual_seed(0)
    sched = get_schedule("learned", hidden=64).double()
    with torch.no_grad():
        for p in sched.shape_parameters():
            p.normal_(0.0, 3.0)
    lam = sched(T).detach()
    assert torch.isfinite(lam).all() and (lam[1:] < lam[:-1]).all()
    assert float(lam[0]) == pytest.approx(13.3) and float(lam[-1]) == pytest.approx(-5.0)


def test_learned_schedule_parameter_groups() -> None:
    sched = get_schedule("learned")
    ends, shape = sched.endpoint_parameters(), sched.shape_parameters()
    assert len(ends) == 2 and len(shape) == 6
    assert {id(p) for p in ends}.isdisjoint({id(p) for p in shape})


def test_unknown_schedule_and_bad_range_fail_clearly() -> None:
    with pytest.raises(ValueError, match="unknown schedule 'quadratic'"):
        get_schedule("quadratic")
    with pytest.raises(ValueError, match="logsnr_min"):
        get_schedule("cosine", logsnr_min=5.0, logsnr_max=1.0)


def test_slope_works_under_no_grad() -> None:
    sched = get_schedule("learned")
    with torch.no_grad():
        lam, neg_slope = log_snr_and_slope(sched, torch.rand(8))
    assert not lam.requires_grad and not neg_slope.requires_grad
    torch.testing.assert_close(neg_slope, torch.full((8,), 18.3), rtol=1e-5, atol=1e-4)


def test_flow_schedule_is_the_ot_paths_log_snr() -> None:
    """Flow matching's z = (1 - u) x + u eps has SNR ((1 - u)/u)^2: lambda = 2 log((1 - u)/u)."""
    sched = get_schedule("flow", logsnr_min=-10.0, logsnr_max=7.0)
    for t in torch.linspace(0, 1, 41, dtype=torch.float64):
        u = sched.u_lo + (sched.u_hi - sched.u_lo) * float(t)
        assert float(sched(t)) == pytest.approx(2 * math.log((1 - u) / u), rel=1e-9, abs=1e-9)
    lam_max, lam_min = schedule_endpoints(sched)
    assert (float(lam_max), float(lam_min)) == pytest.approx((7.0, -10.0), abs=1e-6)
