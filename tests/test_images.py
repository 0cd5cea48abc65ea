"""The sample grid PNG: layout in closed form, the title band, an atomic write."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vdm.core.images import TITLE_BAND, image_grid, save_grid


def test_grid_layout_is_row_major_with_white_padding() -> None:
    """Image i sits at row i // columns, column i % columns, offset p + k (H + p); the rest is 255."""
    h, w, p = 3, 4, 1
    images = torch.arange(7, dtype=torch.uint8).view(7, 1, 1, 1).expand(7, 1, h, w) * 10
    grid = image_grid(images, columns=3, padding=p)
    assert grid.shape == (1, 3 * (h + p) + p, 3 * (w + p) + p) and grid.dtype == torch.uint8
    expected = torch.full_like(grid, 255)
    for i in range(7):
        r, c = divmod(i, 3)
        expected[:, p + r * (h + p):p + r * (h + p) + h, p + c * (w + p):p + c * (w + p) + w] = 10 * i
    assert torch.equal(grid, expected)
    assert image_grid(torch.zeros(500, 3, 2, 2, dtype=torch.uint8), columns=10).shape == (3, 31, 31)


def test_grid_rejects_what_is_not_uint8_images() -> None:
    with pytest.raises(ValueError, match="uint8 images"):
        image_grid(torch.zeros(4, 2, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8 images"):
        image_grid(torch.zeros(4, 1, 8, 8))


def test_save_grid(tmp_path) -> None:
    images = torch.randint(0, 256, (12, 3, 8, 8), dtype=torch.uint8)
    path = save_grid(images, tmp_path / "grid.png", columns=4, scale=2)
    picture = Image.open(path)
    assert picture.size == ((4 * 9 + 1) * 2, (3 * 9 + 1) * 2) and picture.mode == "RGB"
    pixels = torch.from_numpy(np.array(picture))
    assert torch.equal(pixels[2:18:2, 2:18:2].permute(2, 0, 1), images[0])  # first image, scaled
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png"]  # no temporary left
    titled = Image.open(save_grid(images[:, :1], tmp_path / "titled.png", columns=4, scale=2,
                                  title="eps/elbo/cosine seed 0, ancestral-25"))
    assert titled.size == ((4 * 9 + 1) * 2, (3 * 9 + 1) * 2 + TITLE_BAND) and titled.mode == "L"
    band = torch.from_numpy(np.array(titled))[:TITLE_BAND]
    assert (band < 128).any() and (band == 255).any()  # dark text on a white band
