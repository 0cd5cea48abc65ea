"""Validation of torch-fidelity's cache files before torch-fidelity reads them.

torch-fidelity trusts its cache: an existing ``<name>-<extractor>-features-<layer>.pt`` or
``<name>-<extractor>-stat-fid-<layer>.pt`` is loaded as is, so a truncated or garbled one (a kill
or a full disk during a write by an older torch-fidelity, a copy cut short, a bad disk) makes
every later FID job fail with a raw ``PytorchStreamReader failed reading zip archive``
traceback until someone deletes it by hand. :func:`set_aside_corrupt` checks each existing
file first, the way a corrupt ``state.pt`` is handled: a bad one is renamed to
``<file>.bad`` with a one-line warning on stderr, and torch-fidelity then recomputes it (a
missing feature file makes it recompute the whole group).

A file is valid when ``torch.load(weights_only=True)`` reads it (nothing in it is executed;
numpy arrays are allowed for the statistics) and it holds what torch-fidelity writes:

* features: a 2-D floating tensor, one finite row per reference image;
* FID statistics: ``{"mu": (D,) array, "sigma": (D, D) array}``, finite.

Files found valid are remembered per (path, size, modification time), so a process that
computes many FIDs against one reference reads each large cache file once for the check.
"""

from __future__ import annotations

import os
import pickle
import re
import sys
import zipfile
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

_valid_memo: set[tuple[str, int, int]] = set()


def _numpy_safe_globals() -> list[Any]:
    """What ``torch.load(weights_only=True)`` must allow to read pickled numpy arrays."""
    dtypes = {type(np.dtype(t)) for t in ("float16", "float32", "float64", "int64")}
    return [np.ndarray, np.dtype, _reconstruct, *dtypes]


def _load(path: str) -> Any:
    with torch.serialization.safe_globals(_numpy_safe_globals()):
        return torch.load(path, map_location="cpu", weights_only=True)


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines() or [""]
    text = re.split(r"(?<=[.:])\s", lines[0].strip(), maxsplit=1)[0]
    return (text or type(error).__name__).rstrip(".:")


def _check_features(obj: Any, num_reference: int | None) -> str | None:
    if not torch.is_tensor(obj) or obj.dim() != 2 or not obj.is_floating_point():
        return f"expected a 2-D float tensor of features, got {type(obj).__name__}"
    if num_reference is not None and obj.shape[0] != num_reference:
        return f"{obj.shape[0]} feature rows for {num_reference} reference images"
    if not bool(torch.isfinite(obj).all()):
        return "non-finite features"
    return None


def _check_statistics(obj: Any) -> str | None:
    if not isinstance(obj, dict) or set(obj) != {"mu", "sigma"}:
        return "expected a dict with 'mu' and 'sigma'"
    mu, sigma = (np.asarray(obj[k]) for k in ("mu", "sigma"))
    if mu.ndim != 1 or sigma.shape != (mu.size, mu.size):
        return f"mu {mu.shape} and sigma {sigma.shape} do not fit"
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        return "non-finite statistics"
    return None


def cache_file_problem(path: str | os.PathLike, num_reference: int | None = None) -> str | None:
    """Why the torch-fidelity cache file ``path`` cannot be used, or None when it is fine.

    The kind of file is told by its name (``-features-`` or ``-stat-fid-``); ``num_reference``,
    if given, is the number of rows a features file must have.
    """
    path = os.fspath(path)
    try:
        obj = _load(path)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, zipfile.BadZipFile,
            ValueError, AttributeError, TypeError) as error:
        return f"unreadable: {_first_line(error)}"
    name = os.path.basename(path)
    if "-stat-fid-" in name:
        return _check_statistics(obj)
    if "-features-" in name:
        return _check_features(obj, num_reference)
    return None


def set_aside_corrupt(paths: Iterable[str | os.PathLike],
                      num_reference: int | None = None) -> list[str]:
    """Check each existing cache file of ``paths``; move a bad one to ``<path>.bad`` (replacing
    an older ``.bad``) with a one-line warning on stderr. Returns the paths set aside.

    Missing files are skipped (torch-fidelity computes them). Safe when several processes
    check the same cache: a file another process already moved aside is ignored.
    """
    moved = []
    for path in map(os.fspath, paths):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
        if key in _valid_memo:
            continue
        problem = cache_file_problem(path, num_reference)
        if problem is None:
            _valid_memo.add(key)
            continue
        try:
            os.replace(path, path + ".bad")
        except FileNotFoundError:
            continue
        print(f"vdm fid: warning: corrupt torch-fidelity cache file {path} ({problem}); moved "
              f"aside to {os.path.basename(path)}.bad, recomputing it", file=sys.stderr)
        moved.append(path)
    return moved
