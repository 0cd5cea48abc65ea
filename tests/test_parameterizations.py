"""What the network outputs (eps, x0, v, score): exact conversions to eps_hat and training."""

from __future__ import annotations

import math

import pytest
import torch

from vdm.core.config import run_config_from_dict
from vdm.model.diffusion import DiffusionModel, build_model
from vdm.model.network import UNet
from vdm.model.objectives import OBJECTIVES
from vdm.model.parameterizations import (
    PARAMETERIZATIONS,
    check_parameterization,
    eps_from_output,
    output_from_eps,
)
from vdm.model.schedules import alpha_sigma, get_schedule
from vdm.training.trainer import Trainer, load_trained_model


@pytest.fixture
def noisy() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(32, 1, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(x.shape, generator=g, dtype=torch.float64)
    log_snr = torch.linspace(-10, 7, 32, dtype=torch.float64)
    alpha, sigma = (a.view(-1, 1, 1, 1) for a in alpha_sigma(log_snr))
    return {"x": x, "eps": eps, "alpha": alpha, "sigma": sigma, "z": alpha * x + sigma * eps}


def test_targets_are_the_published_quantities(noisy) -> None:
    """The output each parameterization must produce for the true eps is x, v = alpha eps -
    sigma x (Salimans & Ho 2022) and the score of q(z|x) = -eps/sigma (Tweedie)."""
    x, eps, alpha, sigma, z = (noisy[k] for k in ("x", "eps", "alpha", "sigma", "z"))
    expected = {"eps": eps, "x0": x, "v": alpha * eps - sigma * x, "score": -eps / sigma}
    for name, target in expected.items():
        torch.testing.assert_close(output_from_eps(eps, z, alpha, sigma, name), target)


@pytest.mark.parametrize("name", PARAMETERIZATIONS)
def test_conversions_round_trip(name: str, noisy) -> None:
    z, alpha, sigma = noisy["z"], noisy["alpha"], noisy["sigma"]
    output = torch.randn(z.shape, generator=torch.Generator().manual_seed(1), dtype=z.dtype)
    eps_hat = eps_from_output(output, z, alpha, sigma, name)
    torch.testing.assert_close(output_from_eps(eps_hat, z, alpha, sigma, name), output)
    torch.testing.assert_close(eps_from_output(output_from_eps(noisy["eps"], z, alpha, sigma,
                                                               name), z, alpha, sigma, name),
                               noisy["eps"])


def test_x0_error_is_amplified_by_one_over_sigma(noisy) -> None:
    """x0-prediction's conditioning, shown not hidden: an x_hat error d becomes an eps_hat error
    alpha d / sigma (about 33 d at lambda = 7)."""
    z, alpha, sigma = noisy["z"], noisy["alpha"], noisy["sigma"]
    error = 1e-3 * torch.ones_like(z)
    shift = (eps_from_output(noisy["x"] + error, z, alpha, sigma, "x0")
             - eps_from_output(noisy["x"], z, alpha, sigma, "x0"))
    torch.testing.assert_close(shift, -alpha / sigma * error)
    assert float((alpha / sigma).max()) == pytest.approx(math.exp(3.5), rel=1e-6)


def test_unknown_parameterization_is_one_line() -> None:
    with pytest.raises(ValueError, match=r"unknown parameterization 'mu'; choose one of \['eps'"):
        check_parameterization("mu")
    with pytest.raises(ValueError, match="parameterization"):
        build_model((1, 8, 8), 17, "eps", "cosine", {"channels": 8}, -10.0, 7.0,
                    parameterization="mu")


@pytest.mark.parametrize("name", PARAMETERIZATIONS)
def test_model_eps_reads_the_network_output(name: str, noisy) -> None:
    """DiffusionModel.eps applies the parameterization to whatever the network returns."""
    network = UNet((1, 4, 4), channels=8, channel_mults=(1,))
    for p in network.parameters():
        torch.nn.init.normal_(p, std=0.1)
    network = network.double()
    model = DiffusionModel(network, get_schedule("cosine"), OBJECTIVES["eps"](), 17, name)
    log_snr = torch.linspace(-10, 7, 32, dtype=torch.float64)
    z = noisy["z"]
    expected = eps_from_output(network(z, log_snr), z, noisy["alpha"], noisy["sigma"], name)
    torch.testing.assert_close(model.eps(z, log_snr), expected)


TINY = {"model": {"channels": 8, "channel_mults": [1, 2]},
        "train": {"steps": 3, "batch_size": 16, "log_every": 1, "checkpoint_every": 10,
                  "warmup_steps": 1, "threads": 1}}


@pytest.mark.parametrize("parameterization", PARAMETERIZATIONS)
def test_every_parameterization_trains_with_every_objective(parameterization: str,
                                                           tmp_path) -> None:
    """A few steps of every objective (and the learned schedule) per parameterization: finite
    losses, and the checkpoint gives back the parameterization."""
    for objective in OBJECTIVES:
        for schedule in ("cosine", "learned") if objective in ("eps", "elbo") else ("cosine",):
            config = run_config_from_dict({**TINY, "objective": objective, "schedule": schedule,
                                           "parameterization": parameterization})
            out = tmp_path / f"{objective}-{schedule}"
            summary = Trainer(config, out).fit()
            assert math.isfinite(summary["final_loss"]), (objective, schedule)
            assert summary["parameterization"] == parameterization
    model, loaded = load_trained_model(out / "model.pt")
    assert loaded.parameterization == parameterization
    assert model.parameterization == parameterization
