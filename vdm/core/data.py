"""Datasets as integer grey levels, and the maps between levels, model inputs and pixels.

Every dataset is held as *level indices* ``k in {0, ..., K-1}`` (``K = num_levels``):

* ``digits``  -- scikit-learn's 8x8 hand-written digits, ``K = 17`` (grey levels 0..16);
* ``digits-gmm`` -- exact samples of a Gaussian mixture fitted to digits, same shape and ``K``,
  with a known probability (:mod:`vdm.core.digits_gmm`);
* ``mnist``   -- 28x28 MNIST, ``K = 256``;
* ``cifar10`` -- 32x32 RGB CIFAR-10, ``K = 256``.

Three representations of one image are used in the package:

* levels ``k``: ``uint8`` in ``[0, K-1]`` (what the discrete likelihood is defined on);
* model inputs ``x = 2k/(K-1) - 1``: ``float32`` in ``[-1, 1]`` (what the network sees);
* pixels ``round(k * 255/(K-1))``: ``uint8`` in ``[0, 255]`` (what FID and PNG files see).

MNIST and CIFAR-10 are read directly from their standard on-disk formats (IDX files and
python pickles); torchvision is only used to *download* them when ``download=True``.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vdm.core.dataset_facts import (
    DATASET_INFO,
    FRESH_REFERENCE,
    FRESH_SETS,
    SPLIT_SIZES,
    SPLITS,
    check_dataset_name,
)
from vdm.core.known_density_settings import KNOWN_DENSITY_DATASETS, has_known_density

#: Fixed digits split: ``train_test_split(test_size=300, random_state=0, stratify=labels)``.
DIGITS_TEST_SIZE = 300
DIGITS_SEED = 0

_HINT = "set `download: true` or point `data_root` at a directory holding the files"


def levels_to_model(levels: torch.Tensor, num_levels: int) -> torch.Tensor:
    """Map level indices ``k`` (any integer dtype) to model inputs ``2k/(K-1) - 1`` (float32).

    Computed as ``(2k - (K-1)) / (K-1)`` so that the endpoints are exactly -1 and +1.
    Stays on the input's device; in-place on a fresh copy to keep large datasets cheap.
    """
    x = torch.as_tensor(levels).to(torch.float32, copy=True)
    return x.mul_(2.0).sub_(num_levels - 1).div_(num_levels - 1)


def model_to_levels(x: torch.Tensor, num_levels: int) -> torch.Tensor:
    """Inverse of :func:`levels_to_model`: clip ``x`` to [-1, 1] and round to the nearest level.

    Returns ``uint8`` level indices in ``[0, K-1]`` (``int64`` if ``K > 256``); the input is
    not modified. Exact ties round half to even (``torch.round``).
    """
    k = torch.as_tensor(x).to(torch.float32).clamp(-1.0, 1.0)  # clamp makes a new tensor
    k.add_(1.0).mul_((num_levels - 1) / 2.0).round_().clamp_(0, num_levels - 1)
    return k.to(torch.uint8 if num_levels <= 256 else torch.int64)


def levels_to_pixels(levels: torch.Tensor, num_levels: int) -> torch.Tensor:
    """Map level indices to 8-bit pixels ``round(k * 255 / (K-1))`` (uint8, 0..255, a copy).

    Exact integer arithmetic (ties round up); a plain copy when ``K = 256``.
    """
    if num_levels == 256:
        return torch.as_tensor(levels).to(torch.uint8, copy=True)
    k = torch.as_tensor(levels).to(torch.int64)
    d = num_levels - 1
    return ((2 * 255 * k + d) // (2 * d)).clamp(0, 255).to(torch.uint8)


def pixels_to_levels(pixels: torch.Tensor, num_levels: int) -> torch.Tensor:
    """Inverse of :func:`levels_to_pixels`: 8-bit pixels ``round(k * 255 / (K-1))`` back to the
    level indices ``k = round(p (K-1) / 255)`` (uint8, int64 if ``K > 256``). One-line
    ``ValueError`` when a pixel is not exactly the image of a level (not samples of a
    ``K``-level dataset)."""
    p = torch.as_tensor(pixels)
    if p.dtype != torch.uint8:
        raise ValueError(f"pixels: expected uint8 0..255, got {p.dtype}")
    d = num_levels - 1
    k = (2 * d * p.to(torch.int64) + 255) // 510  # round(p d / 255), ties up
    if not torch.equal(levels_to_pixels(k, num_levels), p):
        bad = p[levels_to_pixels(k, num_levels) != p].unique()[:5].tolist()
        raise ValueError(f"pixels: values {bad} are not among the {num_levels} levels' pixels "
                         f"round(k * 255 / {d})")
    return k.to(torch.uint8 if num_levels <= 256 else torch.int64)


@dataclass(frozen=True, eq=False)
class ImageData:
    """One split of one dataset, held in memory as level indices.

    Frozen (fields cannot be reassigned) with identity equality (``eq=False``): comparing
    tensors field-by-field is ambiguous, so compare ``images``/``labels`` explicitly.

    Attributes:
        name: dataset name, one of :data:`vdm.core.dataset_facts.DATASETS`.
        split: ``"train"`` or ``"test"``.
        images: ``uint8`` tensor ``(N, C, H, W)`` of level indices in ``[0, num_levels-1]``.
        labels: ``int64`` tensor ``(N,)`` of class labels in ``0..9``.
        num_levels: number of grey levels ``K`` per channel (17 for digits, else 256).
    """

    name: str
    split: str
    images: torch.Tensor
    labels: torch.Tensor
    num_levels: int

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                f"images must be uint8 (N, C, H, W), got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(
                f"labels must be int64 ({self.images.shape[0]},), got "
                f"{self.labels.dtype} {tuple(self.labels.shape)}"
            )

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape ``(C, H, W)`` of one image, in channels and pixels."""
        c, h, w = self.images.shape[1:]
        return (int(c), int(h), int(w))

    @property
    def num_dims(self) -> int:
        """Number of dimensions ``C*H*W`` of one image (the 'per dimension' in bits/dim)."""
        c, h, w = self.shape
        return c * h * w

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def model_inputs(self, index: Any = None) -> torch.Tensor:
        """Model inputs ``x = 2k/(K-1) - 1`` (float32 in [-1, 1]); only rows ``index`` if given."""
        levels = self.images if index is None else self.images[index]
        return levels_to_model(levels, self.num_levels)

    def pixels_uint8(self) -> torch.Tensor:
        """All images as 8-bit pixels ``round(k * 255/(K-1))``, uint8 ``(N, C, H, W)``."""
        return levels_to_pixels(self.images, self.num_levels)


def load_dataset(
    name: str, split: str, root: str | os.PathLike = "data", download: bool = False
) -> ImageData:
    """Load split ``split`` ("train" or "test") of dataset ``name`` as :class:`ImageData`.

    ``root`` is the data directory holding ``MNIST/raw/`` or ``cifar-10-batches-py/``; if the
    files are missing and ``download`` is true they are fetched with torchvision first.
    ``digits`` ships with scikit-learn and ``digits-gmm`` with this package (fixed exact
    samples); both ignore ``root`` and ``download``.
    Raises ``ValueError`` (bad name/split) or ``FileNotFoundError`` (missing files).
    """
    check_dataset_name(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} for dataset {name!r}; expected one of {SPLITS}")
    root = Path(root)
    if name == "digits":
        images, labels = _load_digits(split)
    elif name == "digits-gmm":
        from vdm.core.digits_gmm import load_split  # lazy: scipy (optional: not on GPU machines)

        images, labels = load_split(split)
    elif name == "mnist":
        images, labels = _load_mnist(root, split, download)
    else:
        images, labels = _load_cifar10(root, split, download)
    return ImageData(
        name=name,
        split=split,
        images=torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8)),
        labels=torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64)),
        num_levels=DATASET_INFO[name]["num_levels"],
    )


def load_fresh_samples(name: str, which: str, num_images: int) -> ImageData:
    """``num_images`` fresh true samples of dataset ``name`` (one with a known distribution,
    :mod:`vdm.core.known_density_settings`: ``digits-gmm``) from the fixed random stream of the
    set ``which`` (:data:`FRESH_SETS`; disjoint from the splits' streams): the same images on
    every call, labelled with their component's class; ``split`` is ``which``.
    One-line ``ValueError`` for an unknown set or a dataset without a known distribution."""
    check_dataset_name(name)
    if which not in FRESH_SETS:
        raise ValueError(f"unknown set of fresh samples {which!r}; expected one of {FRESH_SETS}")
    if not has_known_density(name):
        raise ValueError(f"dataset {name!r} has no known distribution to draw fresh true samples "
                         f"from (fid.reference_split: {FRESH_REFERENCE} needs one: "
                         f"{', '.join(KNOWN_DENSITY_DATASETS)})")
    from vdm.core.digits_gmm import load_mixture  # lazy: scipy (optional: not on GPU machines)

    images, labels = load_mixture().fresh_set(which, num_images)
    return ImageData(name=name, split=which,
                     images=torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8)),
                     labels=torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64)),
                     num_levels=DATASET_INFO[name]["num_levels"])


def load_fid_reference(name: str, split: str, root: str | os.PathLike = "data",
                       download: bool = False, *, fresh_size: int | None = None) -> ImageData:
    """The FID reference images of ``fid.reference_split``: ``train`` / ``test`` of ``name``
    (:func:`load_dataset`), or for ``fresh`` (:data:`FRESH_REFERENCE`) ``fresh_size`` fresh
    true samples, the ``fresh-reference`` set (:func:`load_fresh_samples`). One-line
    ``ValueError`` when ``fresh_size`` is missing with ``fresh`` or given with a split.

    The fresh reference's size (``fid.fresh_reference_size``, default 10 000): FID's upward bias
    from finite sets goes like ``1/N_samples + 1/N_reference`` (for Gaussian features the mean
    term is exactly ``tr(Σ) (1/N_s + 1/N_r)``, the covariance term of the same order), so at 10×
    the default 1000 samples the reference adds about 1/10 of the samples' part: on digits-gmm
    with the classifier features about 0.02 (the floor of 1000 true samples is 0.21 against
    2000, 0.12 against 10 000, 0.11 against 20 000, each ± 0.07-0.10), a third of one run's
    ``fid_se``. What is left of it, and the reference's own sampling noise, is one fixed offset
    shared by every run and by the floor (one fixed set), so it cancels to first order in
    ``fid - floor``. More is not free: precision/recall's k-NN radii over the reference cost
    ``O(N_r^2)`` in every FID job (on 1 thread about 5 s at 10 000, 25 s at 20 000)."""
    if split != FRESH_REFERENCE:
        if fresh_size is not None:
            raise ValueError(f"fresh_size ({fresh_size}) is only for reference split "
                             f"{FRESH_REFERENCE!r}, not {split!r}")
        return load_dataset(name, split, root=root, download=download)
    if fresh_size is None:
        raise ValueError(f"reference split {FRESH_REFERENCE!r} needs its size "
                         "(fid.fresh_reference_size)")
    return load_fresh_samples(name, "fresh-reference", fresh_size)


def synthetic_dataset(name: str, split: str, num_examples: int | None = None,
                      seed: int = 0) -> ImageData:
    """Random images with the shape and level count of dataset ``name`` (nothing is read).

    Level indices i.i.d. uniform on ``{0, ..., K-1}``, labels uniform on ``0..9``, drawn from
    ``torch.Generator().manual_seed(seed)`` (a different stream per split); ``num_examples``
    defaults to the real split's size (:data:`vdm.core.dataset_facts.SPLIT_SIZES`). For
    measuring compute (the bench, the GPU check) where the images' content does not matter and
    no download is possible.
    """
    check_dataset_name(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} for dataset {name!r}; expected one of {SPLITS}")
    n = SPLIT_SIZES[name][split] if num_examples is None else num_examples
    info = DATASET_INFO[name]
    generator = torch.Generator().manual_seed(seed * 2 + SPLITS.index(split))
    images = torch.randint(0, info["num_levels"], (n, *info["shape"]), generator=generator,
                           dtype=torch.uint8)
    labels = torch.randint(0, info["num_classes"], (n,), generator=generator)
    return ImageData(name=name, split=split, images=images, labels=labels,
                     num_levels=info["num_levels"])


#: The fixed split as index arrays into scikit-learn's digits, in the order
#: ``train_test_split(arange(1797), test_size=300, random_state=0, stratify=labels)`` returns
#: them (tests/test_data.py checks that it still does). Stored so that loading digits needs no
#: splitter (a change of scikit-learn's splitting could not move images between the splits).
DIGITS_SPLIT_FILE = Path(__file__).with_name("digits_split.npz")


def _load_digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn digits (:func:`sklearn.datasets.load_digits`: 1797 images of 8x8 grey levels
    0..16 and their labels 0..9) with the fixed stratified split: 1497 train / 300 test images,
    as level indices (uint8) and labels (int64)."""
    try:
        from sklearn.datasets import load_digits  # lazy: scikit-learn (optional; 1 s)
    except ImportError:
        raise FileNotFoundError("digits ship with scikit-learn, which is not installed "
                                "(pip install scikit-learn)") from None
    pixels, labels = load_digits(return_X_y=True)
    if pixels.shape != (1797, 64) or not np.array_equal(pixels, np.clip(np.rint(pixels), 0, 16)):
        raise ValueError("sklearn.datasets.load_digits returned something other than 1797 images "
                         f"of 64 grey levels 0..16 (shape {pixels.shape})")
    with np.load(DIGITS_SPLIT_FILE) as split_indices:
        idx = split_indices[split].astype(np.int64)
    images = pixels[idx].reshape(-1, 1, 8, 8).astype(np.uint8)  # levels 0..16
    return images, labels[idx].astype(np.int64)


def _missing(name: str, path: Path) -> FileNotFoundError:
    return FileNotFoundError(f"{name} data file not found: {path}; {_HINT}")


def _download(name: str, root: Path, split: str) -> None:
    """Fetch ``name`` into ``root`` with torchvision, turning failures into one-line errors."""
    import torchvision  # lazy: torchvision (optional; 1.3 s), only to download

    cls = torchvision.datasets.MNIST if name == "mnist" else torchvision.datasets.CIFAR10
    try:
        cls(str(root), train=(split == "train"), download=True)
    except Exception as exc:  # network/IO errors of any kind
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RuntimeError(
            f"downloading {name} into {root} failed ({first}); "
            f"point `data_root` at existing files instead"
        ) from exc


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """Read an uncompressed IDX file of unsigned bytes (big-endian header) with ``magic``."""
    raw = path.read_bytes()
    ndim = magic & 0xFF  # 2051 = 0x803: ubyte, 3 dims; 2049 = 0x801: ubyte, 1 dim
    off = 4 * (1 + ndim)  # header: magic, then one uint32 per dimension
    header = [int(v) for v in np.frombuffer(raw[:off].ljust(off, b"\0"), dtype=">u4")]
    dims = tuple(header[1:])
    if header[0] != magic or len(raw) != off + int(np.prod(dims)):
        raise ValueError(f"{path} is not a valid IDX file (expected magic {magic}); re-download it")
    return np.frombuffer(raw, dtype=np.uint8, offset=off).reshape(dims).copy()


def _load_mnist(root: Path, split: str, download: bool) -> tuple[np.ndarray, np.ndarray]:
    """MNIST from ``root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``."""
    raw = root / "MNIST" / "raw"
    prefix = "train" if split == "train" else "t10k"
    paths = [raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"]
    if download and not all(p.is_file() for p in paths):
        _download("mnist", root, split)
    for p in paths:
        if not p.is_file():
            raise _missing("mnist", p)
    images, labels = _read_idx(paths[0], 2051), _read_idx(paths[1], 2049)
    if labels.shape != images.shape[:1]:
        raise ValueError(f"mnist: {len(images)} images but {len(labels)} labels in {raw}")
    return images[:, None, :, :], labels


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch: a pickled dict with ``b"data"`` (N x 3072 uint8) and
    ``b"labels"`` (N ints in 0..9). Anything else raises ``ValueError`` naming the file."""
    expected = "a CIFAR-10 python batch (pickled dict with b'data' N x 3072 and b'labels')"
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        rows = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except Exception as error:  # unpickling, missing keys, wrong types: all mean a bad file
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"{path} is not {expected}: {type(error).__name__}: {first}; "
                         "re-download it") from None
    if rows.ndim != 2 or rows.shape[1] != 3072:
        raise ValueError(f"{path}: expected {expected}, got data of shape {rows.shape}")
    if labels.shape != rows.shape[:1] or (labels.size and not 0 <= labels.min() <= labels.max() <= 9):
        raise ValueError(f"{path}: expected {len(rows)} labels in 0..9, got shape {labels.shape}")
    return rows, labels


def _load_cifar10(root: Path, split: str, download: bool) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 from the python pickles ``root/cifar-10-batches-py/{data_batch_1..5,test_batch}``.

    Each 3072-byte row is the R plane, then G, then B, each 32x32 row-major, so a plain
    reshape to ``(N, 3, 32, 32)`` gives channels-first images.
    """
    folder = root / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    paths = [folder / n for n in names]
    if download and not all(p.is_file() for p in paths):
        _download("cifar10", root, split)
    data, labels = [], []
    for p in paths:
        if not p.is_file():
            raise _missing("cifar10", p)
        rows, batch_labels = _read_cifar_batch(p)
        data.append(rows)
        labels.append(batch_labels)
    images = np.concatenate(data).reshape(-1, 3, 32, 32)
    return images, np.concatenate(labels)
