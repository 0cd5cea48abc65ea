"""Metrics of class-conditional samples: class accuracy under the dataset classifier and
per-class FID.

* Class accuracy: the fraction of samples generated for class ``y`` that the dataset classifier
  (:class:`vdm.evaluation.feature_extractors.DatasetClassifier`, the one the classifier FID uses; trained on
  real images, its own test accuracy is in its ``meta['test_accuracy']``) assigns to ``y``
  (argmax of its logits). It measures fidelity to the requested class: guidance should raise it.
* Per-class FID: FID between the samples of class ``y`` and the reference images of class
  ``y``, for every class; each class's reference subset has its own content hash, hence its own
  torch-fidelity cache entry. FID is biased upwards at small sample sizes (roughly by
  ``tr(Sigma) / N`` terms), so per-class values are only comparable between settings with the same
  number of images per class, and are skipped below ``min_per_class``.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from vdm.evaluation.feature_extractors import classifier_accuracy, load_classifier
from vdm.evaluation.fid import check_extractor_weights, compute_metrics

#: Default smallest number of samples (and reference images) per class for per-class FID.
MIN_PER_CLASS = 100


def class_accuracy(images_uint8: torch.Tensor, labels: torch.Tensor,
                   classifier_path: str | os.PathLike, *, dataset: str | None = None,
                   device: torch.device | str = "cpu", batch_size: int = 512) -> float:
    """Top-1 accuracy (fraction in ``[0, 1]``) of the dataset classifier at ``classifier_path``
    on uint8 pixel images ``(N, C, H, W)`` with their requested classes ``labels`` (int64
    ``(N,)``). With ``dataset``, a classifier trained on another dataset (or not saying which) is
    a one-line ``ValueError``."""
    images_uint8, labels = torch.as_tensor(images_uint8), torch.as_tensor(labels)
    if images_uint8.dtype != torch.uint8 or images_uint8.dim() != 4:
        raise ValueError(f"images must be uint8 (N, C, H, W), got {images_uint8.dtype} "
                         f"{tuple(images_uint8.shape)}")
    if labels.shape != images_uint8.shape[:1]:
        raise ValueError(f"labels: expected shape ({len(images_uint8)},), got {tuple(labels.shape)}")
    if dataset is not None:
        check_extractor_weights("classifier", classifier_path, dataset)
    model = load_classifier(classifier_path, map_location=str(device))
    return classifier_accuracy(model, images_uint8.cpu(), labels.cpu().long(), device=str(device),
                               batch_size=batch_size)


def classifier_test_accuracy(classifier_path: str | os.PathLike) -> float | None:
    """The dataset classifier's own test accuracy, as recorded by ``vdm classifier`` in its
    ``meta['test_accuracy']`` (None when the file does not record it)."""
    value = load_classifier(classifier_path).meta.get("test_accuracy")
    return None if value is None else float(value)


def per_class_fid(samples: torch.Tensor, sample_labels: torch.Tensor, reference: torch.Tensor,
                  reference_labels: torch.Tensor, *, dataset: str, split: str = "train",
                  extractor: str = "classifier", weights_path: str | os.PathLike | None,
                  cache_root: str | os.PathLike | None, device: str = "cpu",
                  min_per_class: int = MIN_PER_CLASS, batch_size: int = 256
                  ) -> tuple[dict[int, float], str | None]:
    """FID of each class's samples against the same class of the reference set.

    ``samples``/``reference``: uint8 ``(N, C, H, W)``; ``*_labels``: int64 ``(N,)``. Uses
    :func:`vdm.evaluation.fid.compute_metrics` per class (no precision/recall), the class subset as the
    reference so that its torch-fidelity cache name (content hash) differs per class; the split
    is recorded as ``<split>-class<y>``. Returns ``({class: fid}, None)``, or ``({}, reason)``
    when some class of the reference has fewer than ``min_per_class`` samples or reference
    images (nothing is computed then).
    """
    sample_labels, reference_labels = (torch.as_tensor(t).cpu() for t in (sample_labels,
                                                                         reference_labels))
    if sample_labels.shape != samples.shape[:1] or reference_labels.shape != reference.shape[:1]:
        raise ValueError("per_class_fid: labels must have one entry per image")
    if min_per_class < 4:
        raise ValueError(f"min_per_class must be >= 4 (KID needs a few images), got {min_per_class}")
    classes = sorted(int(c) for c in torch.unique(reference_labels))
    counts = {c: (int((sample_labels == c).sum()), int((reference_labels == c).sum()))
              for c in classes}
    short = {c: n for c, n in counts.items() if min(n) < min_per_class}
    if short:
        c, (n_samples, n_reference) = next(iter(short.items()))
        return {}, (f"per-class FID skipped: class {c} has {n_samples} samples and {n_reference} "
                    f"reference images, fewer than min_per_class = {min_per_class}")
    result: dict[int, float] = {}
    for c in classes:
        metrics: dict[str, Any] = compute_metrics(
            samples[sample_labels == c], reference[reference_labels == c], dataset=dataset,
            split=f"{split}-class{c}", extractor=extractor, weights_path=weights_path,
            cache_root=cache_root, device=device, prc=False, batch_size=batch_size)
        result[c] = float(metrics["fid"])
    return result, None
