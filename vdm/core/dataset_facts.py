"""Static facts of the datasets, without loading one: names, splits, shapes, grey levels and
split sizes (:mod:`vdm.core.data` loads them). Standard library only, so that the workflow reads
these while Snakemake parses the Snakefile without importing torch (about a second and a half
per ``snakemake`` call, dry runs included)."""

from __future__ import annotations

from typing import Any

DATASETS: tuple[str, ...] = ("digits", "mnist", "cifar10", "digits-gmm")
SPLITS: tuple[str, ...] = ("train", "test")
#: ``fid.reference_split`` value whose reference is fresh true samples (:func:`load_fid_reference`)
FRESH_REFERENCE = "fresh"
#: The sets of fresh true samples of a dataset with a known distribution (not splits: no model
#: trains or is evaluated on them; each from its own fixed random stream,
#: :data:`vdm.core.digits_gmm.FRESH_SETS`): the FID reference and the FID floor's samples.
FRESH_SETS: tuple[str, ...] = ("fresh-reference", "fresh-floor")

DATASET_INFO: dict[str, dict[str, Any]] = {
    "digits": {"shape": (1, 8, 8), "num_levels": 17, "num_classes": 10},
    "mnist": {"shape": (1, 28, 28), "num_levels": 256, "num_classes": 10},
    "cifar10": {"shape": (3, 32, 32), "num_levels": 256, "num_classes": 10},
    "digits-gmm": {"shape": (1, 8, 8), "num_levels": 17, "num_classes": 10},
}

#: Number of images in each split of the real datasets.
SPLIT_SIZES: dict[str, dict[str, int]] = {
    "digits": {"train": 1497, "test": 300},
    "mnist": {"train": 60000, "test": 10000},
    "cifar10": {"train": 50000, "test": 10000},
    "digits-gmm": {"train": 1497, "test": 2000},  # why 2000: vdm.core.digits_gmm.SPLIT_SIZES
}


def check_dataset_name(name: str) -> None:
    """One-line ``ValueError`` for a name that is not one of :data:`DATASETS`."""
    if name not in DATASET_INFO:
        raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")


def dataset_info(name: str) -> dict[str, Any]:
    """Static facts about dataset ``name`` without loading it.

    Returns ``{"shape": (C, H, W), "num_levels": K, "num_classes": 10}``; shape in pixels.
    Raises ``ValueError`` for an unknown name.
    """
    check_dataset_name(name)
    return dict(DATASET_INFO[name])
