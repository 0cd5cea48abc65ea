"""The epsilon-prediction UNet ``eps_hat(z_t, lambda_t)`` (DDPM architecture, sized by config).

Residual blocks with GroupNorm + SiLU, optional self-attention at chosen resolutions, dropout,
and conditioning on the log-SNR ``lambda`` through sinusoidal Fourier features (frequencies
spaced geometrically between ``1/32`` and ``32`` rad per nat of log-SNR) followed by an MLP.
The output layer is zero-initialised, so training starts from ``eps_hat = 0``.

With ``channels=128, channel_mults=(1, 2, 2, 2), num_res_blocks=2, attention_resolutions=(16,)``
on 3x32x32 this is the DDPM CIFAR-10 network (about 35.7M parameters).

Class conditioning (``num_classes=K``, Ho & Salimans 2022): a learned embedding of the label
``y in {0, ..., K}`` is added to the noise-level embedding, index ``K`` being the learned null
("no class") token, so one network gives ``eps_hat(z, lambda, y)`` and ``eps_hat(z, lambda,
null)``. The embedding has PyTorch's default N(0, 1) initialisation (a zero initialisation learned
the conditioning about 4x slower on digits: after 200 steps the samples' class accuracy was at
chance, against 0.85) and is created after every other layer, so the other layers draw the same
random numbers, and an unconditional network (``num_classes=None``, the default) has exactly the
parameters, initialisation and outputs it had before conditioning existed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def log_snr_features(log_snr: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of ``lambda`` ``(B,) -> (B, dim)``: ``[sin(f_j lambda), cos(f_j lambda)]``."""
    half = dim // 2
    freqs = torch.exp(torch.linspace(math.log(1 / 32), math.log(32), half, device=log_snr.device))
    angles = log_snr.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels // 4) if channels >= 8 else 1, channels)


class ResBlock(nn.Module):
    """``x + conv(silu(norm(conv(silu(norm(x))) + emb)))`` with a 1x1 skip when channels change."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.conv2 = _norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Single-head self-attention over spatial positions, residual."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class UNet(nn.Module):
    """``eps_hat = UNet(z_t, lambda_t)`` for images of shape ``(C, H, W)``.

    ``H`` and ``W`` must be divisible by ``2 ** (len(channel_mults) - 1)``.
    """

    def __init__(self, image_shape: Sequence[int], channels: int = 32,
                 channel_mults: Sequence[int] = (1, 2), num_res_blocks: int = 1,
                 attention_resolutions: Sequence[int] = (), dropout: float = 0.0,
                 num_classes: int | None = None) -> None:
        super().__init__()
        c_img, height, width = image_shape
        factor = 2 ** (len(channel_mults) - 1)
        if height % factor or width % factor:
            raise ValueError(f"model.channel_mults: {len(channel_mults)} levels need H, W divisible "
                             f"by {factor}, got {height}x{width}")
        emb_dim = 4 * channels
        self.feature_dim = channels
        self.embed = nn.Sequential(nn.Linear(channels, emb_dim), nn.SiLU(),
                                   nn.Linear(emb_dim, emb_dim))
        self.stem = nn.Conv2d(c_img, channels, 3, padding=1)
        self.down, skips, c, res = nn.ModuleList(), [channels], channels, height
        for level, mult in enumerate(channel_mults):
            for _ in range(num_res_blocks):
                self.down.append(self._block(c, channels * mult, emb_dim, dropout, res,
                                             attention_resolutions))
                c = channels * mult
                skips.append(c)
            if level < len(channel_mults) - 1:
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skips.append(c)
                res //= 2
        self.mid = nn.ModuleList([ResBlock(c, c, emb_dim, dropout), AttentionBlock(c),
                                  ResBlock(c, c, emb_dim, dropout)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mults))):
            for _ in range(num_res_blocks + 1):
                self.up.append(self._block(c + skips.pop(), channels * mult, emb_dim, dropout, res,
                                           attention_resolutions))
                c = channels * mult
            if level > 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                             nn.Conv2d(c, c, 3, padding=1)))
                res *= 2
        self.head = nn.Sequential(_norm(c), nn.SiLU(), nn.Conv2d(c, c_img, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)
        # conditional only, and last: the layers above draw the same random numbers either way
        self.num_classes = None if num_classes is None else int(num_classes)
        if self.num_classes is not None:
            if self.num_classes < 1:
                raise ValueError(f"num_classes must be >= 1, got {num_classes}")
            self.class_embed = nn.Embedding(self.num_classes + 1, emb_dim)  # N(0, 1) init

    @staticmethod
    def _block(c_in: int, c_out: int, emb_dim: int, dropout: float, res: int,
               attention_resolutions: Sequence[int]) -> nn.Module:
        block = ResBlock(c_in, c_out, emb_dim, dropout)
        if res in attention_resolutions:
            return nn.ModuleList([block, AttentionBlock(c_out)])
        return block

    @staticmethod
    def _run_layer(layer: nn.Module, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if isinstance(layer, ResBlock):
            return layer(h, emb)
        if isinstance(layer, nn.ModuleList):
            return layer[1](layer[0](h, emb))
        return layer(h)

    def forward(self, z: torch.Tensor, log_snr: torch.Tensor,
                labels: torch.Tensor | None = None) -> torch.Tensor:
        """``z``: ``(B, C, H, W)``; ``log_snr``: ``(B,)``; ``labels``: int64 ``(B,)`` in
        ``0..num_classes`` (``num_classes`` = the null token), conditional networks only; None on a
        conditional network means all-null. Returns ``eps_hat`` shaped like ``z``."""
        features = log_snr_features(log_snr, self.feature_dim).to(self.stem.weight.dtype)
        emb = self.embed(features)
        if self.num_classes is not None:
            if labels is None:
                labels = torch.full((z.shape[0],), self.num_classes, dtype=torch.int64,
                                    device=z.device)
            check_labels(labels, self.num_classes, allow_null=True, batch=z.shape[0])
            emb = emb + self.class_embed(labels).to(emb.dtype)
        elif labels is not None:
            raise ValueError("labels given to an unconditional network (built without "
                             "num_classes; enable conditioning to train a class-conditional one)")
        emb = emb.to(z.dtype)
        h = self.stem(z)
        hs = [h]
        for layer in self.down:
            h = self._run_layer(layer, h, emb)
            hs.append(h)
        for layer in self.mid:
            h = self._run_layer(layer, h, emb)
        for layer in self.up:
            if isinstance(layer, ResBlock | nn.ModuleList):
                h = torch.cat([h, hs.pop()], dim=1)
            h = self._run_layer(layer, h, emb)
        return self.head(h)


def check_labels(labels: torch.Tensor, num_classes: int, *, allow_null: bool = False,
                 batch: int | None = None, name: str = "labels") -> None:
    """One-line ``ValueError`` naming ``name`` unless ``labels`` is an integer ``(B,)`` tensor of
    classes ``0..num_classes-1`` (``0..num_classes`` with ``allow_null``: index ``num_classes`` is
    the null token) with ``B = batch`` when given.

    The range check reads the values, a host synchronisation on an accelerator: it is done for
    CPU tensors and skipped for others (entry points such as :func:`vdm.model.guidance.sample_guided`
    check their labels on the CPU before moving them), and skipped while ``torch.compile`` traces.
    """
    well_formed = (torch.is_tensor(labels) and labels.dtype in (torch.int64, torch.int32)
                   and labels.dim() == 1 and (batch is None or labels.shape[0] == batch))
    if not well_formed:
        got = (f"{labels.dtype} {tuple(labels.shape)}" if torch.is_tensor(labels)
               else type(labels).__name__)
        raise ValueError(f"{name} must be an int64 tensor of shape ({batch or 'B'},), got {got}")
    if labels.device.type != "cpu" or torch.compiler.is_compiling() or labels.numel() == 0:
        return
    top = num_classes if allow_null else num_classes - 1
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high > top:
        bad = low if low < 0 else high
        raise ValueError(f"{name}: class {bad} is outside the dataset's classes 0..{num_classes - 1}"
                         + (f" (or {num_classes}, the null token)" if allow_null else ""))


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
