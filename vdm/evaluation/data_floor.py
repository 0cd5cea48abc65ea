"""The real-data floor of FID, KID and precision/recall: held-out real images scored like samples.

A model whose samples were perfect draws from the data distribution would still not score
FID 0: the held-out split differs from the reference split by sampling alone. So the floor is
``compute_metrics(floor split as "samples", reference split)`` with the same extractor,
weights and cache as the runs, computed once per dataset × extractor, to be drawn as a
reference line next to the models' FIDs.

Caveat, stated in the result: FID is biased upwards at finite sample size (the bias falls
roughly like 1/N), so the floor holds for ``num_floor_images`` images. On digits the test split
has 300 images while runs are scored with ~1000 samples: the floor then somewhat overstates
what 1000 perfect samples would score.
"""

from __future__ import annotations

import os
from typing import Any

from vdm.core.data import load_dataset
from vdm.core.progress import ProgressCallback
from vdm.evaluation.fid import compute_metrics


def real_data_floor(
    dataset: str, root: str | os.PathLike = "data", *, reference_split: str = "train",
    floor_split: str = "test", extractor: str, weights_path: str | os.PathLike | None,
    cache_root: str | os.PathLike | None, device: str = "cpu", kid_subset_size: int = 1000,
    prc: bool = True, batch_size: int = 256, download: bool = False, fid_error: bool = True,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """FID/KID/precision/recall (and ``fid_se``) of the real ``floor_split`` images against the
    ``reference_split`` of ``dataset``: :func:`vdm.evaluation.fid.compute_metrics` with the held-out
    images as the samples. Deterministic. ``progress``: as in ``compute_metrics``.

    Returns that result plus ``dataset``, ``reference_split``, ``floor_split``,
    ``num_floor_images`` (= ``num_samples``) and ``meaning`` (one sentence for captions).
    Raises ``ValueError`` when the two splits are the same (the floor would be 0 by
    construction).
    """
    if floor_split == reference_split:
        raise ValueError(f"the floor split must differ from the reference split "
                         f"({reference_split!r}); the FID of a set against itself is 0")
    reference = load_dataset(dataset, reference_split, root=root, download=download)
    held_out = load_dataset(dataset, floor_split, root=root, download=download)
    result = compute_metrics(
        held_out.pixels_uint8(), reference.pixels_uint8(), dataset=dataset, split=reference_split,
        extractor=extractor, weights_path=weights_path, cache_root=cache_root, device=device,
        kid_subset_size=kid_subset_size, prc=prc, batch_size=batch_size, fid_error=fid_error,
        progress=progress)
    n = int(result["num_samples"])
    return {
        **result,
        "dataset": dataset,
        "reference_split": reference_split,
        "floor_split": floor_split,
        "num_floor_images": n,
        "meaning": (f"real-data floor: the {n} real {floor_split} images scored as if they were "
                    f"samples against the {reference_split} split ({result['feature_extractor']}"
                    f" features); FID is biased upwards at small N, so compare with runs at a "
                    f"similar number of samples"),
    }
