"""UNet shapes and sampler output format."""

from __future__ import annotations

import pytest
import torch
from conftest import gaussian_optimal_eps_fn
from PIL import Image

from vdm.network import UNet, count_parameters
from vdm.sampler import sample, save_grid
from vdm.schedules import get_schedule


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


@pytest.mark.parametrize("method", ["ancestral", "ddim"])
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


def test_save_grid(tmp_path) -> None:
    images = torch.randint(0, 256, (12, 3, 8, 8), dtype=torch.uint8)
    path = save_grid(images, tmp_path / "grid.png", columns=4, scale=2)
    picture = Image.open(path)
    assert picture.size == ((4 * 9 + 1) * 2, (3 * 9 + 1) * 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png"]  # no temporary left
