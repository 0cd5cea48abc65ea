"""Checkpoint files: safe loading (``weights_only=True``) with one-line errors, and RNG states as
plain tensors so that a checkpoint never needs pickled Python objects.

A checkpoint is a ``torch.save`` of nested dicts/lists/tuples of tensors, numbers and strings
only. :func:`load_checkpoint` reads it with ``torch.load(weights_only=True)``: torch's restricted
unpickler, which refuses (and never executes) any other pickled object, so a file carrying a
malicious pickle raises :class:`CheckpointError` instead of running code.
"""

from __future__ import annotations

import pickle
import random
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


class CheckpointError(ValueError):
    """A checkpoint file that is missing, truncated, corrupt or not a plain-tensor checkpoint."""


def load_checkpoint(path: str | Path, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    """Read the checkpoint dict at ``path`` with ``torch.load(weights_only=True)``.

    Raises :class:`CheckpointError` naming the file when it is missing, truncated or corrupt,
    or when it holds anything but tensors and plain containers (nothing in it is executed).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, zipfile.BadZipFile,
            ValueError) as error:
        blocked = _blocked_global(error)
        if blocked:
            raise CheckpointError(f"refusing to load {path}: it holds pickled Python objects that "
                                  f"torch.load(weights_only=True) does not allow (global "
                                  f"{blocked}); nothing in it was executed") from None
        first = re.split(r"(?<=[.:])\s", str(error).strip(), maxsplit=1)[0] or type(error).__name__
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({first.rstrip('.:')})"
                              ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, expected a dict")
    return state


def _blocked_global(error: BaseException) -> str | None:
    """The global that torch's weights-only unpickler refused to load, if that was the error."""
    match = re.search(r"(?:unsupported|Unsupported global:) GLOBAL (\S+)", str(error))
    return match.group(1) if match else None


def capture_rng_states(generator: torch.Generator) -> dict[str, Any]:
    """Every RNG state a training step draws from, as tensors and plain values.

    ``generator``: the trainer's noise/time generator; plus torch's global CPU (and CUDA) RNG
    (dropout), NumPy's legacy global RNG and Python's ``random``.
    """
    kind, keys, position, has_gauss, cached = np.random.get_state()
    version, python_state, gauss = random.getstate()
    return {
        "noise": generator.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)),
                  "position": int(position), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached)},
        "python": {"version": version, "state": torch.tensor(python_state, dtype=torch.int64),
                   "gauss": gauss},
    }


def restore_rng_states(states: dict[str, Any], generator: torch.Generator) -> None:
    """Inverse of :func:`capture_rng_states`."""
    generator.set_state(states["noise"])
    torch.set_rng_state(states["torch"])
    if states["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    numpy_state = states["numpy"]
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32),
                         numpy_state["position"], numpy_state["has_gauss"],
                         numpy_state["cached_gaussian"]))
    python_state = states["python"]
    random.setstate((python_state["version"], tuple(int(v) for v in python_state["state"]),
                     python_state["gauss"]))
