"""The exponential moving average of a model's weights that every evaluation uses (``model.pt``'s
``ema`` state; the raw weights only with ``ema: false``)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Exponential moving average of all floating-point parameters and buffers of a module.

    After ``n`` updates the decay is ``min(decay, (1 + n) / (10 + n))`` (warm-up), so that short
    runs are not dominated by the initial weights. The update is one fused ``_foreach_lerp_``
    over the (cached) lists of floating-point tensors; integer buffers are copied.
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = copy.deepcopy(module).eval().requires_grad_(False)
        self._pairs: tuple[nn.Module, list[torch.Tensor], list[torch.Tensor],
                           list[tuple[torch.Tensor, torch.Tensor]]] | None = None

    def _tensors(self, module: nn.Module):
        """(floating live, floating shadow, other (live, shadow) pairs) of ``module``, cached:
        ``state_dict`` returns the same tensor objects until parameters are replaced, and
        ``load_state_dict`` copies into them in place."""
        if self._pairs is None or self._pairs[0] is not module:
            live, shadow = module.state_dict(), self.shadow.state_dict()
            floats = [name for name, value in live.items() if value.dtype.is_floating_point]
            others = [(live[name], shadow[name]) for name in live if name not in set(floats)]
            self._pairs = (module, [live[n] for n in floats], [shadow[n] for n in floats], others)
        return self._pairs[1:]

    @torch.no_grad()
    def update(self, module: nn.Module, num_updates: int) -> None:
        decay = min(self.decay, (1 + num_updates) / (10 + num_updates))
        live, shadow, others = self._tensors(module)
        torch._foreach_lerp_(shadow, live, 1.0 - decay)
        for value, target in others:
            target.copy_(value)
