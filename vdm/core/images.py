"""Image files: a grid of uint8 images as one PNG (the sample grid of each run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torchvision.utils import make_grid

from vdm.core.provenance import atomic_output

TITLE_BAND = 14
"""Height in pixels of the white band that holds a grid's title."""


def image_grid(images: torch.Tensor | np.ndarray, columns: int = 10, padding: int = 1
               ) -> torch.Tensor:
    """The first ``columns**2`` uint8 images ``(N, C, H, W)``, ``C`` in {1, 3}, tiled row by row
    into one uint8 image ``(C, rows (H + p) + p, min(N, columns) (W + p) + p)`` with ``p =
    padding`` white (255) pixels around and between them (``torchvision.utils.make_grid``)."""
    images = torch.as_tensor(images)[: columns * columns]
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"a grid needs uint8 images (N, C, H, W) with C in (1, 3), got "
                         f"{images.dtype} {tuple(images.shape)}")
    grid = make_grid(images, nrow=columns, padding=padding, pad_value=255)
    return grid[:1] if images.shape[1] == 1 else grid  # make_grid repeats one channel to three


def save_grid(images: torch.Tensor | np.ndarray, path: str | Path, columns: int = 10,
              scale: int | None = None, padding: int = 1, title: str | None = None) -> Path:
    """Save :func:`image_grid` of ``images`` as a PNG (greyscale or RGB, like the images),
    enlarged ``scale`` times by nearest neighbour (default ``max(1, 256 // max(H, W))``: about
    256 pixels per image side), with an optional one-line ``title`` in black on a white band of
    :data:`TITLE_BAND` pixels above it; written atomically. Returns ``path``."""
    grid = image_grid(images, columns, padding)
    channels, height, width = (int(s) for s in torch.as_tensor(images).shape[1:])
    array = grid.permute(1, 2, 0).numpy()
    picture = Image.fromarray(array[..., 0] if channels == 1 else array)
    scale = scale or max(1, 256 // max(height, width))
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    if title:
        white, black = (255, 0) if channels == 1 else ((255, 255, 255), (0, 0, 0))
        titled = Image.new(picture.mode, (picture.width, picture.height + TITLE_BAND), white)
        titled.paste(picture, (0, TITLE_BAND))
        ImageDraw.Draw(titled).text((2, 1), title, fill=black)
        picture = titled
    with atomic_output(path) as tmp:
        picture.save(tmp)
    return Path(path)
