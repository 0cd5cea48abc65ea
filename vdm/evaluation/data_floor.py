"""The floor of FID, KID and precision/recall: true images scored like samples.

A model whose samples were perfect draws from the data distribution would still not score
FID 0: its samples differ from the reference by sampling alone. So the floor is
``compute_metrics(floor images as "samples", reference)`` with the same extractor, weights and
cache as the runs, computed once per dataset × extractor, to be drawn as a reference line next
to the models' FIDs.

Two kinds, by the reference (``fid.reference_split``):

* a split of a real dataset (``train`` or ``test``): the floor is the *other* split's real
  images. Caveat, stated in the result: FID is biased upwards at finite sample size (for
  Gaussian features ``E[FID_hat] - FID ≈ tr(Σ)(1/N_s + 1/N_r)`` plus terms of the same order
  from the covariance square root), so the floor holds for ``num_floor_images`` images. On digits
  the test split has 300 images while runs are scored with ~1000 samples: the floor then
  overstates what 1000 perfect samples would score.
* ``fresh`` (a dataset with a known distribution, ``digits-gmm``): the reference is
  ``fresh_reference_size`` fresh true samples (the ``fresh-reference`` stream) and the floor is
  ``num_floor_images`` further fresh true samples (the ``fresh-floor`` stream), the workflow
  giving the runs' ``sample.num_samples``: exactly what a perfect model's samples would score
  at the runs' N, bias included; its ``fid_se`` is that of the runs' FIDs too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from vdm.core.data import ImageData, load_dataset, load_fid_reference, load_fresh_samples
from vdm.core.dataset_facts import FRESH_REFERENCE
from vdm.core.progress import ProgressCallback
from vdm.evaluation.fid import compute_metrics


def floor_images(reference_split: str, floor_split: str, num_floor_images: int | None,
                 dataset: str, root: str | os.PathLike = "data", download: bool = False
                 ) -> ImageData:
    """The images the floor scores (:class:`vdm.core.data.ImageData`): the real ``floor_split``
    of ``dataset``, or with a fresh reference (``floor_split`` ``fresh``) ``num_floor_images``
    fresh true samples of the ``fresh-floor`` stream. One-line ``ValueError`` when the floor
    images would be the reference's own (FID 0 by construction) or do not fit the reference."""
    fresh = reference_split == FRESH_REFERENCE
    if fresh != (floor_split == FRESH_REFERENCE):
        raise ValueError(f"floor split {floor_split!r} with reference split {reference_split!r}: "
                         "fresh true samples are scored against a fresh reference only, a real "
                         "split against the other split")
    if fresh:
        if num_floor_images is None:
            raise ValueError("a fresh floor needs num_floor_images (the runs' sample.num_samples)")
        return load_fresh_samples(dataset, "fresh-floor", num_floor_images)
    if floor_split == reference_split:
        raise ValueError(f"the floor split must differ from the reference split "
                         f"({reference_split!r}); the FID of a set against itself is 0")
    if num_floor_images is not None:
        raise ValueError(f"num_floor_images ({num_floor_images}) is only for a fresh floor; the "
                         f"{floor_split} split has its own size")
    return load_dataset(dataset, floor_split, root=root, download=download)


def floor_meaning(result: Mapping[str, Any], dataset: str, reference_split: str, floor_split: str
                  ) -> str:
    """One sentence for captions: what the floor's images were and what it means."""
    n, features = int(result["num_samples"]), result["feature_extractor"]
    if floor_split == FRESH_REFERENCE:
        return (f"true-sample floor: {n} fresh true samples of {dataset} (stream fresh-floor) "
                f"scored as if they were samples against {int(result['num_reference'])} fresh "
                f"true samples (stream fresh-reference, {features} features): what a perfect "
                f"model scores with {n} samples, finite-N bias included")
    return (f"real-data floor: the {n} real {floor_split} images scored as if they were samples "
            f"against the {reference_split} split ({features} features); FID is biased upwards "
            f"at small N, so compare with runs at a similar number of samples")



def real_data_floor(
    dataset: str, root: str | os.PathLike = "data", *, reference_split: str = "train",
    floor_split: str = "test", extractor: str, weights_path: str | os.PathLike | None,
    cache_root: str | os.PathLike | None, device: str = "cpu", kid_subset_size: int = 1000,
    prc: bool = True, batch_size: int = 256, download: bool = False, fid_error: bool = True,
    fresh_reference_size: int | None = None, num_floor_images: int | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """FID/KID/precision/recall (and ``fid_se``) of the floor images (:func:`floor_images`)
    against the reference (:func:`vdm.core.data.load_fid_reference`: ``reference_split`` of
    ``dataset``, or ``fresh_reference_size`` fresh true samples for ``fresh``):
    :func:`vdm.evaluation.fid.compute_metrics` with the floor images as the samples.
    Deterministic. ``progress``: as in ``compute_metrics``.

    Returns that result plus ``dataset``, ``reference_split``, ``floor_split``,
    ``num_floor_images`` (= ``num_samples``) and ``meaning`` (one sentence for captions).
    Raises ``ValueError`` (one line, before any feature is extracted) when the floor images
    are the reference's own split or do not fit the reference (:func:`floor_images`).
    """
    held_out = floor_images(reference_split, floor_split, num_floor_images, dataset, root,
                            download)
    reference = load_fid_reference(dataset, reference_split, root, download,
                                   fresh_size=fresh_reference_size)
    result = compute_metrics(
        held_out.pixels_uint8(), reference.pixels_uint8(), dataset=dataset, split=reference_split,
        extractor=extractor, weights_path=weights_path, cache_root=cache_root, device=device,
        kid_subset_size=kid_subset_size, prc=prc, batch_size=batch_size, fid_error=fid_error,
        progress=progress)
    return {
        **result,
        "dataset": dataset,
        "reference_split": reference_split,
        "floor_split": floor_split,
        "num_floor_images": int(result["num_samples"]),
        "meaning": floor_meaning(result, dataset, reference_split, floor_split),
    }
