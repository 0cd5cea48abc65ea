"""Tests for vdm.core.data: digits split, level maps, and MNIST/CIFAR-10 readers on tiny files."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from vdm.core.data import ImageData, levels_to_model, levels_to_pixels, load_dataset, model_to_levels
from vdm.core.dataset_facts import DATASETS, dataset_info


# ----------------------------------------------------------------------------- digits
@pytest.fixture(scope="module")
def digits() -> dict[str, ImageData]:
    return {s: load_dataset("digits", s) for s in ("train", "test")}


def test_digits_shapes_and_dtypes(digits: dict[str, ImageData]) -> None:
    tr, te = digits["train"], digits["test"]
    assert len(tr) == 1497
    assert len(te) == 300
    for d in (tr, te):
        assert d.images.dtype == torch.uint8
        assert d.labels.dtype == torch.int64
        assert d.images.shape[1:] == (1, 8, 8)
        assert d.shape == (1, 8, 8)
        assert d.num_dims == 64
        assert d.num_levels == 17
        assert int(d.images.min()) == 0
        assert int(d.images.max()) == 16
        assert set(d.labels.tolist()) == set(range(10))
    assert dataset_info("digits") == {"shape": (1, 8, 8), "num_levels": 17, "num_classes": 10}


def test_digits_match_scikit_learn_loader_and_splitter(digits: dict[str, ImageData]) -> None:
    """The stored split and the direct CSV read equal load_digits + train_test_split exactly
    (same images, same order), so nothing changes for results made with scikit-learn's loader."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from vdm.core.data import DIGITS_SEED, DIGITS_TEST_SIZE

    bunch = load_digits()
    train_idx, test_idx = train_test_split(np.arange(len(bunch.target)), test_size=DIGITS_TEST_SIZE,
                                           random_state=DIGITS_SEED, stratify=bunch.target)
    for split, idx in (("train", train_idx), ("test", test_idx)):
        expected = np.rint(bunch.images[idx]).astype(np.uint8)[:, None]
        assert np.array_equal(digits[split].images.numpy(), expected), split
        assert np.array_equal(digits[split].labels.numpy(), bunch.target[idx]), split


def test_digits_content_hashes_are_those_of_earlier_runs(digits: dict[str, ImageData]) -> None:
    """data.json's content_hash of each split, which also names the cached FID reference
    statistics: every earlier version read these exact images (from scikit-learn's CSV)."""
    from vdm.evaluation.fid import content_hash

    assert content_hash(digits["train"].images) == "8c4efb9a976cafc0"
    assert content_hash(digits["test"].images) == "12bf501a6b48e29f"
    assert content_hash(digits["test"].labels) == "beb3d8af1abc29bb"


def test_digits_split_disjoint_and_deterministic(digits: dict[str, ImageData]) -> None:
    from sklearn.datasets import load_digits

    def keys(images: torch.Tensor, labels: torch.Tensor) -> list[tuple[int, ...]]:
        return [
            (*tuple(r), int(y))
            for r, y in zip(images.reshape(len(images), -1).tolist(), labels.tolist(), strict=True)
        ]

    bunch = load_digits()
    full = keys(torch.from_numpy(bunch.images.astype(np.uint8)), torch.from_numpy(bunch.target))
    tr = keys(digits["train"].images, digits["train"].labels)
    te = keys(digits["test"].images, digits["test"].labels)
    # disjoint partition: the two splits together are exactly the full set (as a multiset)
    assert sorted(tr + te) == sorted(full)
    again = load_dataset("digits", "test", root="/nonexistent", download=True)
    assert torch.equal(again.images, digits["test"].images)
    assert torch.equal(again.labels, digits["test"].labels)
    # stratified: every class appears in the test split ~30 times
    counts = torch.bincount(digits["test"].labels, minlength=10)
    assert counts.min() >= 28
    assert counts.max() <= 32


def test_digits_model_inputs_and_pixels(digits: dict[str, ImageData]) -> None:
    d = digits["train"]
    x = d.model_inputs()
    assert x.dtype == torch.float32
    assert x.shape == d.images.shape
    assert float(x.min()) == -1.0
    assert float(x.max()) == 1.0
    assert torch.unique(x).numel() == 17
    assert torch.equal(model_to_levels(x, 17), d.images)
    assert torch.equal(d.model_inputs(torch.tensor([3, 5])), x[[3, 5]])
    px = d.pixels_uint8()
    assert px.dtype == torch.uint8
    assert px.shape == d.images.shape
    assert int(px.min()) == 0
    assert int(px.max()) == 255


@pytest.mark.parametrize("k_levels", [2, 17, 256])
def test_level_maps_round_trip(k_levels: int) -> None:
    k = torch.arange(k_levels, dtype=torch.uint8 if k_levels <= 256 else torch.int64)
    x = levels_to_model(k, k_levels)
    assert x.dtype == torch.float32
    assert x[0] == -1.0
    assert x[-1] == 1.0
    assert torch.allclose(x, 2 * k.float() / (k_levels - 1) - 1, atol=1e-6)
    assert torch.equal(model_to_levels(x, k_levels), k)
    # small perturbations and out-of-range values snap back / clip
    half = 0.49 * 2 / (k_levels - 1)
    assert torch.equal(model_to_levels(x + half, k_levels), k)
    assert torch.equal(model_to_levels(x - half, k_levels), k)
    assert model_to_levels(torch.tensor([-5.0, 5.0]), k_levels).tolist() == [0, k_levels - 1]
    x_before = x.clone()
    model_to_levels(x, k_levels)
    assert torch.equal(x, x_before)  # input untouched
    px = levels_to_pixels(k, k_levels)
    expected = torch.round(k.double() * 255 / (k_levels - 1)).to(torch.uint8)
    assert px.dtype == torch.uint8
    assert torch.equal(px, expected)


def test_pixels_identity_for_256_levels() -> None:
    k = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(levels_to_pixels(k, 256), k)


# ----------------------------------------------------------------------------- mnist
def _write_idx(path: Path, magic: int, arr: np.ndarray) -> None:
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in arr.shape)
    path.write_bytes(header + arr.astype(np.uint8).tobytes())


def _make_mnist(root: Path, n_train: int = 20, n_test: int = 10) -> dict[str, tuple]:
    rng = np.random.default_rng(0)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        imgs = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labs = rng.integers(0, 10, size=n, dtype=np.uint8)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", 2051, imgs)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", 2049, labs)
        out[split] = (imgs, labs)
    return out


@pytest.mark.parametrize("split", ["train", "test"])
def test_mnist_reads_idx_files(tmp_path: Path, split: str) -> None:
    truth = _make_mnist(tmp_path)[split]
    d = load_dataset("mnist", split, root=tmp_path)
    assert d.name == "mnist"
    assert d.split == split
    assert d.num_levels == 256
    assert d.shape == (1, 28, 28)
    assert d.num_dims == 784
    assert d.images.dtype == torch.uint8
    assert d.labels.dtype == torch.int64
    assert torch.equal(d.images, torch.from_numpy(truth[0])[:, None])
    assert torch.equal(d.labels, torch.from_numpy(truth[1]).long())
    assert torch.equal(d.pixels_uint8(), d.images)


def test_mnist_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("mnist", "train", root=tmp_path)
    msg = str(err.value)
    assert "\n" not in msg
    assert "download: true" in msg
    assert "data_root" in msg
    assert str(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte") in msg


def test_mnist_corrupt_file(tmp_path: Path) -> None:
    _make_mnist(tmp_path)
    bad = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    bad.write_bytes(bad.read_bytes()[:-5])  # truncated
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte"):
        load_dataset("mnist", "test", root=tmp_path)
    bad.write_bytes(b"\x00")
    with pytest.raises(ValueError, match="not a valid IDX"):
        load_dataset("mnist", "test", root=tmp_path)


# ----------------------------------------------------------------------------- cifar10
def _make_cifar(root: Path, per_batch: int = 4) -> dict[str, tuple]:
    rng = np.random.default_rng(1)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    out: dict[str, list] = {"train": [[], []], "test": [[], []]}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=per_batch).tolist()
        batch = {
            b"batch_label": name.encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": [f"{name}_{i}.png".encode() for i in range(per_batch)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
        split = "test" if name == "test_batch" else "train"
        out[split][0].append(data)
        out[split][1].extend(labels)
    meta = {
        b"label_names": [b"c%d" % i for i in range(10)],
        b"num_cases_per_batch": per_batch,
        b"num_vis": 3072,
    }
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f)
    return {s: (np.concatenate(v[0]), np.array(v[1])) for s, v in out.items()}


@pytest.mark.parametrize(("split", "n"), [("train", 20), ("test", 4)])
def test_cifar10_reads_pickles(tmp_path: Path, split: str, n: int) -> None:
    rows, labels = _make_cifar(tmp_path)[split]
    d = load_dataset("cifar10", split, root=tmp_path)
    assert len(d) == n
    assert d.shape == (3, 32, 32)
    assert d.num_dims == 3072
    assert d.num_levels == 256
    assert torch.equal(d.labels, torch.from_numpy(labels).long())
    # channel order: row = R plane | G plane | B plane, each 32x32 row-major
    for i in range(n):
        for c in range(3):
            plane = rows[i, c * 1024 : (c + 1) * 1024].reshape(32, 32)
            assert torch.equal(d.images[i, c], torch.from_numpy(plane))
    assert d.images[0, 1, 2, 3] == rows[0, 1024 + 2 * 32 + 3]


def test_cifar10_missing_batch(tmp_path: Path) -> None:
    _make_cifar(tmp_path)
    missing = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    missing.unlink()
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("cifar10", "train", root=tmp_path)
    msg = str(err.value)
    assert "\n" not in msg
    assert str(missing) in msg
    assert "download: true" in msg
    load_dataset("cifar10", "test", root=tmp_path)  # the test split is still readable


@pytest.mark.parametrize("damage", ["truncated", "garbage", "wrong_dict", "wrong_rows"])
def test_cifar10_malformed_batch_is_named(tmp_path: Path, damage: str) -> None:
    _make_cifar(tmp_path)
    bad = tmp_path / "cifar-10-batches-py" / "test_batch"
    if damage == "truncated":
        bad.write_bytes(bad.read_bytes()[:100])
    elif damage == "garbage":
        bad.write_bytes(b"this is not a pickle")
    else:
        batch = ({b"images": np.zeros((2, 3072), np.uint8)} if damage == "wrong_dict" else
                 {b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]})
        bad.write_bytes(pickle.dumps(batch))
    with pytest.raises(ValueError) as err:
        load_dataset("cifar10", "test", root=tmp_path)
    message = str(err.value)
    assert "\n" not in message and str(bad) in message and "3072" in message


# ----------------------------------------------------------------------------- errors
def test_unknown_name_and_split() -> None:
    with pytest.raises(ValueError, match="'svhn'"):
        load_dataset("svhn", "train")
    with pytest.raises(ValueError, match="'svhn'"):
        dataset_info("svhn")
    with pytest.raises(ValueError, match="'valid'"):
        load_dataset("digits", "valid")


def test_dataset_info_matches_all() -> None:
    assert DATASETS == ("digits", "mnist", "cifar10", "digits-gmm")
    assert dataset_info("mnist")["shape"] == (1, 28, 28)
    assert dataset_info("cifar10") == {"shape": (3, 32, 32), "num_levels": 256, "num_classes": 10}
