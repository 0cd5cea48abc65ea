"""FID / KID / precision-recall of generated samples with torch-fidelity, offline-capable.

Two feature extractors (:data:`FEATURE_EXTRACTORS`):

* ``"classifier"`` -- penultimate features of a small CNN trained on the dataset itself
  (:mod:`vdm.evaluation.feature_extractors`). Its FID is **not** Inception FID; it is always labelled
  ``"classifier-<dataset>"`` (:func:`extractor_label`) and must be reported under that label.
* ``"inception-v3-compat"`` -- torch-fidelity's TF-2015 FID Inception (pool3, 2048-d), with
  weights from a local file (e.g. made offline by
  :func:`vdm.evaluation.feature_extractors.convert_fid_helper_inception`).

Images everywhere are uint8 ``(N, C, H, W)`` pixels in ``0..255`` (``C`` = 1 or 3), at native
resolution; grayscale is repeated to 3 channels for torch-fidelity.

Reference features and FID statistics are cached with torch-fidelity's own file cache in
``cache_root``. Its key is only a name, so :func:`reference_cache_name` puts a hash of the
reference pixels and a hash of the extractor weights file into it: changing either gives a new
cache entry instead of silently reusing stale features. Samples are never cached. Before
torch-fidelity reads an existing cache file it is checked (:mod:`vdm.evaluation.fid_cache`): a truncated
or corrupt one is moved aside to ``<file>.bad`` with a one-line warning and recomputed. A
corrupt extractor weights file is an error naming the file and how to rebuild it.

FID sampling error: :func:`compute_metrics` also returns ``fid_se``, the standard deviation of
the FID over bootstrap resamples of the generated samples' features (:mod:`vdm.evaluation.fid_error`), so
that sampling noise can be told from seed-to-seed spread.

KID subset size: if fewer than ``kid_subset_size`` samples or reference images are given, the
subset size is lowered to ``min(n_samples, n_reference)`` and the value actually used is
returned under ``"kid_subset_size"`` (at least 2 images on each side are required).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.hub
from torch.utils.data import Dataset
from torch_fidelity.metric_fid import fid_featuresdict_to_statistics_cached, fid_statistics_to_metric
from torch_fidelity.metric_kid import kid_featuresdict_to_metric
from torch_fidelity.metric_prc import prc_featuresdict_to_metric
from torch_fidelity.utils import (
    create_feature_extractor,
    extract_featuresdict_from_input_id_cached,
    resolve_feature_layer_for_metric,
)

from vdm.core.checkpoint import CheckpointError, load_checkpoint
from vdm.core.progress import ProgressCallback
from vdm.evaluation.feature_extractors import CLASSIFIER_EXTRACTOR_NAME, register_classifier_extractor
from vdm.evaluation.fid_cache import set_aside_corrupt
from vdm.evaluation.fid_error import DEFAULT_RESAMPLES, FID_SE_METHOD, fid_bootstrap_se

FEATURE_EXTRACTORS: tuple[str, ...] = ("classifier", "inception-v3-compat")
"""Extractor names accepted by this module."""

_FIDELITY_NAMES = {"classifier": CLASSIFIER_EXTRACTOR_NAME,
                   "inception-v3-compat": "inception-v3-compat"}
_METRIC_KEYS = {"fid": "frechet_inception_distance", "kid": "kernel_inception_distance_mean",
                "kid_std": "kernel_inception_distance_std", "precision": "precision",
                "recall": "recall"}
_HASH_LEN = 16
_file_hash_memo: dict[tuple[str, int, int], str] = {}
_weights_ok: set[tuple[str, int, int]] = set()


# --------------------------------------------------------------------------------------------
# Names, labels and hashes
# --------------------------------------------------------------------------------------------


def _check_extractor(extractor: str) -> None:
    if extractor not in FEATURE_EXTRACTORS:
        raise ValueError(f"unknown feature extractor {extractor!r}; expected one of "
                         f"{FEATURE_EXTRACTORS}")


def extractor_label(extractor: str, dataset: str | None = None) -> str:
    """Display label of an extractor for tables: ``"classifier-<dataset>"`` or
    ``"inception-v3-compat"``. Classifier FID must never be shown as Inception FID."""
    _check_extractor(extractor)
    if extractor == "classifier":
        if not dataset:
            raise ValueError("the classifier extractor label needs the dataset name")
        return f"classifier-{dataset}"
    return extractor


def content_hash(images_uint8: torch.Tensor | np.ndarray) -> str:
    """First 16 hex chars of sha256 over the array's shape and raw bytes (C order)."""
    arr = images_uint8.detach().cpu().numpy() if torch.is_tensor(images_uint8) else images_uint8
    arr = np.ascontiguousarray(arr)
    digest = hashlib.sha256()
    digest.update(f"{arr.dtype.str}{tuple(arr.shape)}".encode())
    digest.update(memoryview(arr).cast("B"))
    return digest.hexdigest()[:_HASH_LEN]


def file_hash(path: str | os.PathLike) -> str:
    """First 16 hex chars of sha256 of a file's contents (memoised per path, size, mtime)."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key not in _file_hash_memo:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        _file_hash_memo[key] = digest.hexdigest()[:_HASH_LEN]
    return _file_hash_memo[key]


def _safe(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9._]+", "_", str(part))


def reference_cache_name(
    dataset: str, split: str, extractor: str, content_hash: str, *, weights_hash: str | None = None
) -> str:
    """torch-fidelity cache name (``input2_cache_name``) of a reference set.

    ``vdm-<dataset>-<split>-<extractor>-d<content_hash>[-w<weights_hash>]``; the content hash
    (and the weights hash, always passed by this module) make the name a faithful cache key.
    """
    _check_extractor(extractor)
    name = f"vdm-{_safe(dataset)}-{_safe(split)}-{extractor}-d{_safe(content_hash)}"
    return name if weights_hash is None else f"{name}-w{_safe(weights_hash)}"


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


class Uint8ImageDataset(Dataset):
    """torch Dataset over uint8 ``(N, C, H, W)`` images yielding uint8 ``3 x H x W`` tensors."""

    def __init__(self, images_uint8: torch.Tensor | np.ndarray) -> None:
        self.images = as_uint8_images(images_uint8)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> torch.Tensor:
        image = self.images[index]
        return image.repeat(3, 1, 1) if image.shape[0] == 1 else image


def as_uint8_images(images: torch.Tensor | np.ndarray, what: str = "images") -> torch.Tensor:
    """Validate and return a CPU uint8 tensor ``(N, C, H, W)`` with ``C`` in {1, 3}, N >= 1."""
    t = torch.as_tensor(images).detach().cpu()
    if t.dtype != torch.uint8 or t.dim() != 4 or t.shape[1] not in (1, 3) or t.shape[0] < 1:
        raise ValueError(f"{what} must be uint8 (N, C, H, W) with C in (1, 3) and N >= 1, got "
                         f"{t.dtype} {tuple(t.shape)}")
    return t.contiguous()


def load_samples(path: str | os.PathLike) -> torch.Tensor:
    """Read ``samples.npz`` (key ``images``: uint8 ``(N, C, H, W)``, 0..255) as a tensor."""
    with np.load(path) as npz:
        if "images" not in npz:
            raise KeyError(f"{path} has no 'images' array (keys: {list(npz.keys())})")
        return as_uint8_images(npz["images"], what=f"{path}['images']")


def load_samples_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The ``meta`` JSON stored next to the images in ``samples.npz`` ({} if there is none)."""
    with np.load(path) as npz:
        return json.loads(str(npz["meta"])) if "meta" in npz else {}


def load_sample_labels(path: str | os.PathLike) -> torch.Tensor | None:
    """The int64 class ``labels`` stored next to the images in ``samples.npz`` (conditional
    samples), or None when there are none."""
    with np.load(path) as npz:
        if "labels" not in npz:
            return None
        labels = torch.from_numpy(np.asarray(npz["labels"], dtype=np.int64))
        if "images" in npz and labels.shape != npz["images"].shape[:1]:
            raise ValueError(f"{path}: {labels.numel()} labels for {len(npz['images'])} images")
        return labels


DOWNLOADED_INCEPTION = "tf2015-download"
"""Weights tag when torch-fidelity downloads the standard Inception weights itself."""


def check_extractor_weights(extractor: str, weights_path: str | os.PathLike | None,
                   dataset: str) -> Path | None:
    """Fail fast (one line, naming the path) when the extractor weights are unusable.

    ``None`` is allowed for Inception only: torch-fidelity then downloads the standard weights.
    """
    _check_extractor(extractor)
    if weights_path is None:
        if extractor == "inception-v3-compat":
            return None
        raise ValueError(f"weights_path is required for the {extractor!r} extractor")
    path = Path(weights_path)
    if not path.is_file():
        raise FileNotFoundError(f"{extractor} feature extractor weights not found: {path}")
    state = _load_weights(path, extractor)
    if extractor == "classifier":
        meta = state.get("meta", {})
        trained_on = meta.get("dataset") if isinstance(meta, dict) else None
        if trained_on is None:
            raise ValueError(f"classifier {path} does not record the dataset it was trained on "
                             f"(no meta['dataset']); retrain it with `python -m vdm classifier`")
        if trained_on != dataset:
            raise ValueError(f"classifier {path} was trained on {trained_on!r}, not {dataset!r}")
    return path


_REBUILD = {
    "classifier": "the workflow writes it atomically (rule fid_classifier, `python -m vdm "
                  "classifier`), so it was damaged afterwards: delete it and rerun the workflow "
                  "to retrain it",
    "inception-v3-compat": "recreate it with `python -m vdm inception-weights --out <path>`",
}


def _load_weights(path: Path, extractor: str) -> dict[str, Any]:
    """The extractor weights file read safely (:func:`vdm.core.checkpoint.load_checkpoint`); a
    truncated or corrupt file raises :class:`~vdm.core.checkpoint.CheckpointError` in one line naming
    it and how to rebuild it (weights are never set aside and recomputed silently: they define
    the feature space of every FID already reported)."""
    st = path.stat()
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if extractor != "classifier" and key in _weights_ok:  # large Inception file: check once
        return {}
    try:
        state = load_checkpoint(path)
    except CheckpointError as error:
        raise CheckpointError(f"{extractor} feature extractor weights: {error}; "
                              f"{_REBUILD[extractor]}") from None
    _weights_ok.add(key)
    return state


# --------------------------------------------------------------------------------------------
# torch-fidelity plumbing
# --------------------------------------------------------------------------------------------


def _fidelity_kwargs(
    extractor: str, weights_path: Path | None, cache_root: str | os.PathLike | None, device: str,
    batch_size: int,
) -> dict[str, Any]:
    """Keyword arguments common to every torch-fidelity call made here."""
    register_classifier_extractor()
    return {
        "feature_extractor": _FIDELITY_NAMES[extractor],
        "feature_extractor_weights_path": None if weights_path is None else str(weights_path),
        "cuda": torch.device(device).type == "cuda",
        "batch_size": int(batch_size),
        "cache": True,
        "cache_root": None if cache_root is None else str(cache_root),
        "save_cpu_ram": True,  # in-memory tensors: no DataLoader workers, chunked PRC distances
        "verbose": False,
        "rng_seed": 2020,
    }


def _feature_layers(kwargs: dict[str, Any], prc: bool = True) -> dict[str, str]:
    """Feature layer per metric (fid, kid[, prc]) for the configured extractor."""
    metrics = ("fid", "kid", "prc") if prc else ("fid", "kid")
    return {m: resolve_feature_layer_for_metric(m, **kwargs) for m in metrics}


def _cache_files(cache_root: str | None, name: str, fidelity_name: str,
                 layers: dict[str, str]) -> list[str]:
    """Paths of torch-fidelity's cache files for the reference features and FID statistics."""
    root = cache_root or os.path.join(torch.hub._get_torch_home(), "fidelity_cache")  # tf default
    files = {f"{name}-{fidelity_name}-features-{layer}.pt" for layer in layers.values()}
    files.add(f"{name}-{fidelity_name}-stat-fid-{layers['fid']}.pt")
    return sorted(os.path.join(root, f) for f in files)


def _reference_name(reference: torch.Tensor, dataset: str, split: str, extractor: str,
                    weights: Path | None) -> tuple[str, str, str]:
    data_hash = content_hash(reference)
    weights_hash = DOWNLOADED_INCEPTION if weights is None else file_hash(weights)
    name = reference_cache_name(dataset, split, extractor, data_hash, weights_hash=weights_hash)
    return name, data_hash, weights_hash


def feature_batches(num_images: int, batch_size: int) -> int:
    """Batches torch-fidelity extracts ``num_images`` in: ``ceil(N / min(batch_size, N))``."""
    return math.ceil(num_images / min(int(batch_size), num_images)) if num_images > 0 else 0


@contextlib.contextmanager
def reporting_batches(extractor: torch.nn.Module, progress: ProgressCallback | None, total: int
                      ) -> Iterator[None]:
    """While open, ``progress(k, total)`` after the ``k``-th batch through ``extractor`` (a
    forward hook: torch-fidelity calls the extractor once per batch; nothing else changes), and
    ``progress(0, total)`` at the start. Nothing without ``progress``."""
    if progress is None:
        yield
        return
    counter = itertools.count(1)
    progress(0, total)
    handle = extractor.register_forward_hook(lambda *_: progress(next(counter), total))
    try:
        yield
    finally:
        handle.remove()


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def compute_reference_statistics(
    reference_images_uint8: torch.Tensor | np.ndarray, *, dataset: str, split: str,
    extractor: str, weights_path: str | os.PathLike | None, cache_root: str | os.PathLike | None,
    device: str = "cpu", batch_size: int = 256, progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Extract and cache the reference-side features (fid/kid/prc layers) and FID statistics.

    Uses torch-fidelity's cache in ``cache_root`` under :func:`reference_cache_name`, so later
    :func:`compute_metrics` calls with the same reference, extractor and weights only extract
    sample features. A no-op (apart from hashing) when the cache is already complete.
    Returns a JSON-able description of the reference (``cached`` tells whether it was
    already in the cache before this call). ``progress`` (optional): told the feature batches
    done of the reference's (:func:`reporting_batches`), when they are extracted.
    """
    weights = check_extractor_weights(extractor, weights_path, dataset)
    reference = as_uint8_images(reference_images_uint8, what="reference images")
    name, data_hash, weights_hash = _reference_name(reference, dataset, split, extractor, weights)
    kwargs = _fidelity_kwargs(extractor, weights, cache_root, device, batch_size)
    layers = _feature_layers(kwargs)
    files = _cache_files(kwargs["cache_root"], name, kwargs["feature_extractor"], layers)
    set_aside_corrupt(files, num_reference=len(reference))
    cached = all(os.path.isfile(f) for f in files)
    if not cached:
        kwargs.update(input1=Uint8ImageDataset(reference), input1_cache_name=name)
        feat_extractor = create_feature_extractor(
            kwargs["feature_extractor"], sorted(set(layers.values())), **kwargs
        )
        with reporting_batches(feat_extractor, progress,
                               feature_batches(len(reference), batch_size)):
            features = extract_featuresdict_from_input_id_cached(1, feat_extractor, **kwargs)
        fid_featuresdict_to_statistics_cached(features, name, feat_extractor, layers["fid"],
                                              **kwargs)
    return {
        "cache_name": name,
        "cache_files": files,
        "cached": cached,
        "content_hash": data_hash,
        "weights_hash": weights_hash,
        "weights_path": None if weights is None else str(weights),
        "num_reference": int(reference.shape[0]),
        "image_shape": [int(s) for s in reference.shape[1:]],
        "dataset": dataset,
        "split": split,
        "extractor": extractor,
        "feature_extractor": extractor_label(extractor, dataset),
        "feature_layers": layers,
    }


def compute_metrics(
    sample_images_uint8: torch.Tensor | np.ndarray,
    reference_images_uint8: torch.Tensor | np.ndarray, *, dataset: str, split: str,
    extractor: str, weights_path: str | os.PathLike | None, cache_root: str | os.PathLike | None,
    device: str = "cpu", kid_subset_size: int = 1000, prc: bool = True, batch_size: int = 256,
    fid_error: bool = True, fid_error_resamples: int = DEFAULT_RESAMPLES,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """FID, KID (mean, std) and precision/recall of samples against a reference set.

    Both inputs are uint8 ``(N, C, H, W)`` pixels of the same ``(C, H, W)``. The reference
    features come from (or go to) torch-fidelity's cache (see
    :func:`compute_reference_statistics`); corrupt cache files are set aside and recomputed
    first (:func:`vdm.evaluation.fid_cache.set_aside_corrupt`). Deterministic for fixed inputs (KID
    subsets and the FID bootstrap use fixed seeds). ``kid_subset_size`` is lowered to
    ``min(n_samples, n_reference)`` when needed; the value used is returned.

    The metrics are torch-fidelity's own functions (the steps of its ``calculate_metrics``,
    run here so that the sample features are extracted once and can be reused), so the numbers
    are exactly those of ``torch_fidelity.calculate_metrics`` with the same arguments.

    Returns ``{"fid", "kid", "kid_std", "precision", "recall", "prc_requested", "notes",
    "feature_extractor", "num_samples", "num_reference", "kid_subset_size",
    "reference_cache_name"}`` and, with ``fid_error``, ``"fid_se"`` (the FID's sampling error
    from the generated side: standard deviation over ``fid_error_resamples`` bootstrap
    resamples of the sample features, :mod:`vdm.evaluation.fid_error`), ``"fid_se_method"`` and
    ``"fid_se_resamples"``. ``precision``/``recall`` are present only when requested (``prc``)
    and finite: a requested value that comes back non-finite is left out, with a line in
    ``notes`` and a warning on stderr, never silently.

    ``progress`` (optional, :class:`vdm.core.progress.ProgressCallback`): told the feature
    batches done (:func:`reporting_batches`) of the samples' and, when not cached, the
    reference's (:func:`feature_batches` each); the numbers do not change.
    """
    weights = check_extractor_weights(extractor, weights_path, dataset)
    samples = as_uint8_images(sample_images_uint8, what="sample images")
    reference = as_uint8_images(reference_images_uint8, what="reference images")
    if samples.shape[1:] != reference.shape[1:]:
        raise ValueError(f"samples {tuple(samples.shape[1:])} and reference "
                         f"{tuple(reference.shape[1:])} image shapes differ")
    subset = min(int(kid_subset_size), len(samples), len(reference))
    if subset < 2 or (prc and subset < 4):  # PRC needs 3 neighbours + the point itself
        raise ValueError(f"too few images for KID/PRC: {len(samples)} samples, "
                         f"{len(reference)} reference")
    name, _, _ = _reference_name(reference, dataset, split, extractor, weights)
    kwargs = _fidelity_kwargs(extractor, weights, cache_root, device, batch_size)
    kwargs.update(input1=Uint8ImageDataset(samples), input2=Uint8ImageDataset(reference),
                  input2_cache_name=name, fid=True, kid=True, prc=prc, kid_subset_size=subset)
    layers = _feature_layers(kwargs, prc)
    files = _cache_files(kwargs["cache_root"], name, kwargs["feature_extractor"], layers)
    set_aside_corrupt(files, num_reference=len(reference))
    reference_cached = all(os.path.isfile(f) for f in files if "-features-" in os.path.basename(f))
    batches = feature_batches(len(samples), batch_size) + (
        0 if reference_cached else feature_batches(len(reference), batch_size))
    raw, sample_features, reference_stats = _fidelity_metrics(kwargs, layers, progress, batches)
    out: dict[str, Any] = {key: float(raw.get(src, float("nan")))
                           for key, src in _METRIC_KEYS.items()}
    notes = []
    missing = {key: out.pop(key) for key in ("precision", "recall")
               if not (prc and math.isfinite(out[key]))}
    if prc and missing:
        values = ", ".join(f"{key} = {value}" for key, value in missing.items())
        notes.append(f"precision/recall were requested but torch-fidelity returned {values}; "
                     "left out of the results")
        print(f"vdm fid: warning: {notes[-1]}", file=sys.stderr)
    if fid_error:
        out.update(fid_se=fid_bootstrap_se(sample_features, reference_stats["mu"],
                                           reference_stats["sigma"],
                                           n_resamples=fid_error_resamples, seed=0,
                                           device=device),
                   fid_se_method=FID_SE_METHOD, fid_se_resamples=int(fid_error_resamples))
    out.update(
        prc_requested=prc,
        notes=notes,
        feature_extractor=extractor_label(extractor, dataset),
        num_samples=int(len(samples)),
        num_reference=int(len(reference)),
        kid_subset_size=subset,
        reference_cache_name=name,
    )
    return out


def _fidelity_metrics(kwargs: dict[str, Any], layers: dict[str, str],
                      progress: ProgressCallback | None = None, batches: int = 0
                      ) -> tuple[dict[str, float], torch.Tensor, dict[str, np.ndarray]]:
    """torch-fidelity's ``calculate_metrics`` for one feature extractor (fid, kid[, prc]), step by
    step with its own functions: returns its metrics dict, the samples' FID-layer features
    ``(N, D)`` and the reference FID statistics (``mu``, ``sigma``, from the cache).
    ``progress``: told the feature batches done of ``batches`` (:func:`reporting_batches`)."""
    extractor = create_feature_extractor(kwargs["feature_extractor"], sorted(set(layers.values())),
                                         **kwargs)
    with reporting_batches(extractor, progress, batches):
        samples = extract_featuresdict_from_input_id_cached(1, extractor, **kwargs)  # never cached
        reference = extract_featuresdict_from_input_id_cached(2, extractor, **kwargs)
    stats = [fid_featuresdict_to_statistics_cached(features, cache_name, extractor, layers["fid"],
                                                   **kwargs)
             for features, cache_name in ((samples, None), (reference, kwargs["input2_cache_name"]))]
    metrics = dict(fid_statistics_to_metric(stats[0], stats[1], False))
    metrics.update(kid_featuresdict_to_metric(samples, reference, layers["kid"], **kwargs))
    if "prc" in layers and kwargs.get("prc"):
        metrics.update(prc_featuresdict_to_metric(samples, reference, layers["prc"], **kwargs))
    return metrics, samples[layers["fid"]], stats[1]
