"""UNet shapes and sampler output format."""

from __future__ import annotations

import pytest
import torch
from conftest import gaussian_full_covariance_eps_fn, gaussian_optimal_eps_fn

from vdm.model.network import UNet, count_parameters
from vdm.model.sampler import sample
from vdm.model.schedules import alpha_sigma, get_schedule


@pytest.mark.parametrize(("shape", "mults"), [((1, 8, 8), (1, 2)), ((1, 28, 28), (1, 2, 2)),
                                              ((3, 32, 32), (1, 2, 2, 2))])
def test_unet_shapes(shape, mults) -> None:
    net = UNet(shape, channels=16, channel_mults=mults, attention_resolutions=(shape[1] // 2,))
    z = torch.randn(2, *shape)
    out = net(z, torch.tensor([-3.0, 5.0]))
    assert out.shape == z.shape
    assert torch.count_nonzero(out) == 0  # zero-initialised head: training starts at eps_hat = 0


def test_ddpm_cifar_network_size() -> None:
    net = UNet((3, 32, 32), channels=128, channel_mults=(1, 2, 2, 2), num_res_blocks=2,
               attention_resolutions=(16,), dropout=0.1)
    assert 35.0e6 < count_parameters(net) < 36.5e6  # DDPM CIFAR-10: 35.7M


def test_unet_rejects_indivisible_resolution() -> None:
    with pytest.raises(ValueError, match="channel_mults"):
        UNet((1, 28, 28), channel_mults=(1, 2, 2, 2))


def test_unet_conditions_on_log_snr() -> None:
    torch.manual_seed(0)
    net = UNet((1, 8, 8), channels=16)
    for p in net.parameters():  # leave the zero init to see the conditioning
        torch.nn.init.normal_(p, std=0.1)
    z = torch.randn(1, 1, 8, 8).repeat(2, 1, 1, 1)
    out = net(z, torch.tensor([0.0, 1.0]))
    assert not torch.allclose(out[0], out[1])


@pytest.mark.parametrize("method", ["ancestral", "ddim", "heun", "dpmpp2m"])
def test_sampler_returns_uint8_on_the_level_grid(method: str) -> None:
    eps_fn = gaussian_optimal_eps_fn(0.5)
    images = sample(eps_fn, get_schedule("cosine"), (1, 8, 8), 10, 17, steps=20, method=method,
                    batch_size=4, seed=0)
    assert images.shape == (10, 1, 8, 8) and images.dtype == torch.uint8
    allowed = {round(k * 255 / 16) for k in range(17)}
    assert set(images.unique().tolist()) <= allowed
    again = sample(eps_fn, get_schedule("cosine"), (1, 8, 8), 10, 17, steps=20, method=method,
                   batch_size=4, seed=0)
    assert torch.equal(images, again)


def test_ancestral_sampler_reproduces_gaussian_variance() -> None:
    """With the optimal denoiser for N(0, s^2) the sampler must produce std ~ s (no clipping)."""
    s = 0.3
    x = sample(gaussian_optimal_eps_fn(s), get_schedule("cosine", logsnr_max=9.0), (1, 8, 8), 400,
               256, steps=200, batch_size=400, seed=1, clip=False)
    values = x.double() / 255 * 2 - 1
    assert float(values.std()) == pytest.approx(s, rel=0.05)


def _gaussian_flow_endpoint(z_1: torch.Tensor, log_snrs: torch.Tensor, s: float) -> torch.Tensor:
    """Exact probability-flow ODE solution for x ~ N(0, s^2 I): in y = z/alpha, the marginal of y
    at noise level e^{-lambda/2} is N(0, s^2 + e^{-lambda}) and the flow scales y linearly."""
    lam_1, lam_0 = log_snrs[0].double(), log_snrs[-1].double()
    y_0 = z_1 / alpha_sigma(lam_1)[0] * torch.sqrt((s**2 + torch.exp(-lam_0))
                                                    / (s**2 + torch.exp(-lam_1)))
    return alpha_sigma(lam_0)[0] * y_0


@pytest.mark.parametrize(("method", "order"), [("ddim", 1), ("heun", 2), ("dpmpp2m", 2)])
def test_ode_samplers_converge_to_the_exact_flow_at_their_order(method: str, order: int) -> None:
    """Gaussian data, exact eps: the error against the closed-form ODE solution falls like
    N^-order when the steps double (DDIM is Euler's method of the same ODE)."""
    from vdm.model.sampler import _ancestral_or_ddim, _dpmpp_2m, _heun

    s, schedule = 0.5, get_schedule("cosine").double()
    z_1 = torch.randn(256, 1, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    solvers = {"ddim": lambda z, lam: _ancestral_or_ddim(gaussian_optimal_eps_fn(s), z, lam,
                                                          False, False, None),
               "heun": lambda z, lam: _heun(gaussian_optimal_eps_fn(s), z, lam, False),
               "dpmpp2m": lambda z, lam: _dpmpp_2m(gaussian_optimal_eps_fn(s), z, lam, False)}
    errors = []
    for steps in (40, 80):
        log_snrs = schedule(torch.linspace(1, 0, steps + 1, dtype=torch.float64))
        exact = _gaussian_flow_endpoint(z_1, log_snrs, s)
        errors.append(float((solvers[method](z_1, log_snrs) - exact).abs().max()))
    assert errors[0] / errors[1] == pytest.approx(2**order, rel=0.25), errors


def test_heun_and_ddim_with_many_steps_agree_on_the_same_noise() -> None:
    """Both solve the same probability-flow ODE: with many steps their samples coincide."""
    eps_fn = gaussian_optimal_eps_fn(0.5)
    kwargs = {"batch_size": 64, "seed": 3, "clip": False}
    heun = sample(eps_fn, get_schedule("cosine"), (1, 8, 8), 64, 256, steps=200, method="heun",
                  **kwargs)
    ddim = sample(eps_fn, get_schedule("cosine"), (1, 8, 8), 64, 256, steps=1000, method="ddim",
                  **kwargs)
    assert float((heun.float() - ddim.float()).abs().max()) <= 1  # at most one grey level apart


@pytest.mark.parametrize("method", ["ancestral", "ddim", "heun", "dpmpp2m"])
def test_network_evaluations_are_counted(method: str) -> None:
    from vdm.model.setting_names import network_evaluations

    calls = []
    eps_fn = gaussian_optimal_eps_fn(0.5)

    def counting(z: torch.Tensor, log_snr: torch.Tensor) -> torch.Tensor:
        calls.append(z.shape[0])
        return eps_fn(z, log_snr)

    sample(counting, get_schedule("cosine"), (1, 8, 8), 4, 17, steps=7, method=method,
           batch_size=4, seed=0)
    assert len(calls) == network_evaluations(method, 7)



@pytest.mark.parametrize(("method", "nfe"), [("ancestral", 8), ("ddim", 8), ("dpmpp2m", 8),
                                             ("heun", 15)])
def test_what_n_steps_count(method: str, nfe: int) -> None:
    """``N = 7`` steps are ``N`` steps on the grid ``lambda(i/N)`` from ``lambda(1)`` to
    ``lambda(0) = lambda_max``, then one denoising evaluation at ``lambda_max``: ``N + 1``
    network evaluations, ``2N + 1`` for Heun (its last step's correction is made, at
    ``lambda_max``; EDM's N-step Heun ends at sigma = 0 and skips it, 2N - 1). The exact
    noise level of every call, in order."""
    from vdm.model.setting_names import network_evaluations

    schedule, steps = get_schedule("cosine"), 7
    grid = schedule(torch.linspace(1.0, 0.0, steps + 1)).float()
    calls: list[float] = []
    eps_fn = gaussian_optimal_eps_fn(0.5)

    def recording(z: torch.Tensor, log_snr: torch.Tensor) -> torch.Tensor:
        calls.append(float(log_snr[0]))
        return eps_fn(z, log_snr)

    sample(recording, schedule, (1, 8, 8), 4, 17, steps=steps, method=method, batch_size=4, seed=0)
    if method == "heun":
        expected = [float(v) for i in range(steps) for v in (grid[i], grid[i + 1])]
    else:
        expected = [float(v) for v in grid[:-1]]
    expected.append(float(grid[-1]))  # the final denoising, at lambda_max
    assert network_evaluations(method, steps) == nfe == len(calls)
    assert calls == pytest.approx(expected, abs=1e-6)
    assert calls[-1] == pytest.approx(7.0, abs=1e-5) and calls[0] == pytest.approx(-10.0, abs=1e-5)


def test_with_clip_the_ode_samplers_solve_the_clipped_denoisers_ode(one_thread: None) -> None:
    """``clip`` replaces ``x_hat`` by ``clip(x_hat)`` and ``eps_hat`` by the one recomputed from
    it inside every step, so DDIM, Heun and DPM-Solver++(2M) integrate ``dy/ds = eps_clip``, the
    ODE of the clipped denoiser, not the model's probability-flow ODE. With many steps the three
    converge to that ODE's solution (one grey level of 256 apart), and to another, the model's
    own, without clip. Exact denoiser of correlated Gaussian data (SD 0.4-0.7, so ``x_hat``
    leaves [-1, 1] at times); measured: up to 10 levels between the two ODEs."""
    a = torch.randn(16, 16, generator=torch.Generator().manual_seed(0))
    eps_fn = gaussian_full_covariance_eps_fn(0.3 * a @ a.T / 16 + 0.05 * torch.eye(16))
    kwargs = {"batch_size": 64, "seed": 3}

    def run(method: str, steps: int, clip: bool) -> torch.Tensor:
        return sample(eps_fn, get_schedule("cosine"), (1, 4, 4), 64, 256, steps=steps,
                      method=method, clip=clip, **kwargs).float()

    clipped = {m: run(m, n, True) for m, n in (("heun", 100), ("dpmpp2m", 200), ("ddim", 1000))}
    own = {m: run(m, n, False) for m, n in (("heun", 100), ("dpmpp2m", 200))}
    for other in ("dpmpp2m", "ddim"):
        assert float((clipped["heun"] - clipped[other]).abs().max()) <= 1, other
    assert float((own["heun"] - own["dpmpp2m"]).abs().max()) <= 1
    assert float((clipped["heun"] - own["heun"]).abs().max()) >= 5

def test_unknown_sampler_is_refused() -> None:
    with pytest.raises(ValueError, match="must be one of"):
        sample(gaussian_optimal_eps_fn(0.5), get_schedule("cosine"), (1, 8, 8), 2, 17, steps=2,
               method="euler")
