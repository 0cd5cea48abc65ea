"""Tests for vdm.evaluation.feature_extractors and vdm.evaluation.fid (offline FID/KID/PRC with
torch-fidelity)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch_fidelity.utils as tf_utils
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from vdm.evaluation import fid
from vdm.evaluation.feature_extractors import (
    CLASSIFIER_EXTRACTOR_NAME,
    ClassifierFeatureExtractor,
    DatasetClassifier,
    convert_fid_helper_inception,
    load_classifier,
    load_fid_helper_model,
    pixels_to_inputs,
    register_classifier_extractor,
    save_classifier,
    train_classifier,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

TRAIN_KW: dict[str, Any] = {"steps": 200, "batch_size": 64, "lr": 3e-3, "seed": 0,
                            "num_threads": 1}




@pytest.fixture(scope="module")
def digits() -> tuple[Any, Any]:
    from vdm.core.data import load_dataset  # only needed at run time

    return load_dataset("digits", "train"), load_dataset("digits", "test")


@pytest.fixture(scope="module")
def classifier(digits: tuple[Any, Any], tmp_path_factory: pytest.TempPathFactory
               ) -> tuple[DatasetClassifier, float, Path]:
    """A digits classifier trained once for the module, and its saved file."""
    train, test = digits
    model, acc = train_classifier(train, test, **TRAIN_KW)
    path = tmp_path_factory.mktemp("clf") / "classifier-digits.pt"
    save_classifier(model, path, {"dataset": "digits", "accuracy": acc, "seed": 0})
    return model, acc, path


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert_fid_helper_inception(tmp_path_factory.mktemp("incep") / "inception.pth")


def _metrics(samples: torch.Tensor, reference: torch.Tensor, weights: Path, cache: Path,
             **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"dataset": "digits", "split": "train", "extractor": "classifier",
                            "weights_path": weights, "cache_root": cache, "device": "cpu",
                            "kid_subset_size": 200, "batch_size": 256}
    args.update(kw)
    return fid.compute_metrics(samples, reference, **args)


# ------------------------------------------------------------------------------ classifier


def test_classifier_reaches_95_percent_on_digits(classifier: tuple) -> None:
    _, acc, _ = classifier
    assert acc >= 0.95


def test_classifier_training_is_deterministic(digits: tuple[Any, Any]) -> None:
    kw = dict(TRAIN_KW, steps=20)
    m1, a1 = train_classifier(*digits, **kw)
    m2, a2 = train_classifier(*digits, **kw)
    assert a1 == a2
    for (k, v1), v2 in zip(m1.state_dict().items(), m2.state_dict().values(), strict=True):
        assert torch.equal(v1, v2), k


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_classifier_shapes(shape: tuple[int, int, int]) -> None:
    model = DatasetClassifier(shape[0], shape[1])
    x = torch.zeros(2, *shape)
    assert model(x).shape == (2, 10)
    assert model.features(x).shape == (2, 128)


def test_save_load_roundtrip(classifier: tuple, tmp_path: Path) -> None:
    model, acc, _ = classifier
    path = save_classifier(model, tmp_path / "sub" / "c.pt", {"dataset": "digits", "acc": acc})
    assert [p.name for p in path.parent.iterdir()] == ["c.pt"]  # no temp file left behind
    loaded = load_classifier(path)
    assert loaded.meta == {"dataset": "digits", "acc": acc}
    assert loaded.arch_args() == model.arch_args()
    x = torch.rand(5, 1, 8, 8) * 2 - 1
    assert torch.equal(loaded.features(x), model.features(x))
    assert float(loaded.feature_scale) == float(model.feature_scale) != 1.0


def test_load_classifier_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_classifier(tmp_path / "nope.pt")


def test_registration_is_idempotent() -> None:
    assert register_classifier_extractor() == CLASSIFIER_EXTRACTOR_NAME
    assert register_classifier_extractor() == CLASSIFIER_EXTRACTOR_NAME
    assert FEATURE_EXTRACTORS_REGISTRY[CLASSIFIER_EXTRACTOR_NAME] is ClassifierFeatureExtractor


def test_extractor_matches_classifier_on_repeated_gray(classifier: tuple, digits: tuple) -> None:
    model, _, path = classifier
    ext = ClassifierFeatureExtractor(CLASSIFIER_EXTRACTOR_NAME, ["penultimate", "logits"],
                                     feature_extractor_weights_path=str(path))
    pixels = digits[1].pixels_uint8()[:16]
    feats, logits = ext(pixels.repeat(1, 3, 1, 1))
    with torch.no_grad():
        x = pixels_to_inputs(pixels)
        assert torch.allclose(feats, model.features(x), atol=1e-5)
        assert torch.allclose(logits, model(x), atol=1e-5)
    assert feats.shape == (16, 128)
    with pytest.raises(ValueError, match="native resolution"):
        ext(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))


# ------------------------------------------------------------------------------ names/hashes


def test_labels_never_confuse_classifier_with_inception() -> None:
    assert fid.FEATURE_EXTRACTORS == ("classifier", "inception-v3-compat")
    assert fid.extractor_label("classifier", dataset="digits") == "classifier-digits"
    assert fid.extractor_label("inception-v3-compat", dataset="digits") == "inception-v3-compat"
    with pytest.raises(ValueError):
        fid.extractor_label("classifier")
    with pytest.raises(ValueError):
        fid.extractor_label("inception")


def test_content_hash_and_cache_name() -> None:
    a = np.arange(2 * 1 * 4 * 4, dtype=np.uint8).reshape(2, 1, 4, 4)
    h = fid.content_hash(a)
    assert len(h) == 16 and int(h, 16) >= 0
    assert fid.content_hash(torch.from_numpy(a)) == h
    assert fid.content_hash(a.reshape(1, 2, 4, 4)) != h  # same bytes, other shape
    b = a.copy()
    b[0, 0, 0, 0] += 1
    assert fid.content_hash(b) != h
    name = fid.reference_cache_name("digits", "train", "classifier", h, weights_hash="ab12")
    assert h in name and "ab12" in name and "/" not in name


# ------------------------------------------------------------------------------ metrics


def test_fid_kid_prc_ordering(classifier: tuple, digits: tuple, tmp_path: Path) -> None:
    _, _, weights = classifier
    train, test = digits
    reference = train.pixels_uint8()
    gen = torch.Generator().manual_seed(0)
    real = test.pixels_uint8()
    noise = torch.randint(0, 256, real.shape, generator=gen, dtype=torch.uint8)
    blurred = (real.float() * 0.5 + torch.randn(real.shape, generator=gen) * 60)
    corrupted = blurred.clamp(0, 255).to(torch.uint8)
    same = _metrics(reference, reference, weights, tmp_path)
    good = _metrics(real, reference, weights, tmp_path)
    bad = _metrics(corrupted, reference, weights, tmp_path)
    worst = _metrics(noise, reference, weights, tmp_path)
    assert abs(same["fid"]) < 1e-3 and abs(same["kid"]) < 1e-2
    assert good["fid"] < 2.0 and good["precision"] > 0.8 and good["recall"] > 0.8
    assert bad["fid"] > 10 * good["fid"] and worst["fid"] > 10 * good["fid"]
    assert good["kid"] < 0.05 < bad["kid"] and worst["kid"] > 0.05
    assert worst["precision"] < 0.5 and bad["precision"] < 0.5
    assert good["feature_extractor"] == "classifier-digits"
    assert (good["num_samples"], good["num_reference"]) == (len(real), len(reference))
    for key in ("fid", "kid", "kid_std", "precision", "recall"):
        assert isinstance(good[key], float) and math.isfinite(good[key])


def test_identical_calls_identical_numbers(classifier: tuple, digits: tuple,
                                           tmp_path: Path) -> None:
    _, _, weights = classifier
    reference, samples = digits[0].pixels_uint8(), digits[1].pixels_uint8()
    first = _metrics(samples, reference, weights, tmp_path / "a")
    second = _metrics(samples, reference, weights, tmp_path / "a")  # reference from the cache
    third = _metrics(samples, reference, weights, tmp_path / "b")  # fresh cache
    assert first == second == third


def test_reference_cache_is_reused(classifier: tuple, digits: tuple, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, weights = classifier
    reference, samples = digits[0].pixels_uint8(), digits[1].pixels_uint8()
    kw = {"dataset": "digits", "split": "train", "extractor": "classifier",
          "weights_path": weights, "cache_root": tmp_path}
    info = fid.compute_reference_statistics(reference, **kw)
    assert info["cached"] is False and info["num_reference"] == len(reference)
    assert info["feature_extractor"] == "classifier-digits"
    assert info["content_hash"] in info["cache_name"]
    assert info["weights_hash"] in info["cache_name"]
    assert all(Path(f).is_file() for f in info["cache_files"])
    mtimes = [Path(f).stat().st_mtime_ns for f in info["cache_files"]]
    assert fid.compute_reference_statistics(reference, **kw)["cached"] is True

    extracted: list[int] = []
    original = tf_utils.extract_featuresdict_from_input_id

    def spy(input_id: int, *args: Any, **kwargs: Any) -> Any:
        extracted.append(input_id)
        return original(input_id, *args, **kwargs)

    monkeypatch.setattr(tf_utils, "extract_featuresdict_from_input_id", spy)
    out = _metrics(samples, reference, weights, tmp_path)
    assert extracted == [1]  # only the samples went through the network
    assert out["reference_cache_name"] == info["cache_name"]
    assert [Path(f).stat().st_mtime_ns for f in info["cache_files"]] == mtimes


def test_other_weights_get_another_cache_entry(classifier: tuple, digits: tuple,
                                               tmp_path: Path) -> None:
    model, acc, weights = classifier
    other = save_classifier(model, tmp_path / "other.pt", {"dataset": "digits", "note": "x"})
    reference = digits[1].pixels_uint8()
    kw = {"dataset": "digits", "split": "test", "extractor": "classifier",
          "cache_root": tmp_path / "cache"}
    a = fid.compute_reference_statistics(reference, weights_path=weights, **kw)
    b = fid.compute_reference_statistics(reference, weights_path=other, **kw)
    assert a["cache_name"] != b["cache_name"] and b["cached"] is False


def test_kid_subset_size_is_lowered(classifier: tuple, digits: tuple, tmp_path: Path) -> None:
    _, _, weights = classifier
    reference, samples = digits[0].pixels_uint8(), digits[1].pixels_uint8()[:50]
    out = _metrics(samples, reference, weights, tmp_path, kid_subset_size=1000, prc=False)
    assert out["kid_subset_size"] == 50 and math.isfinite(out["kid"])
    assert "precision" not in out and "recall" not in out  # not requested: absent, not NaN
    assert out["prc_requested"] is False and out["notes"] == []


def test_missing_weights_fail_fast(tmp_path: Path) -> None:
    missing = tmp_path / "missing-weights.pt"
    bad_images = torch.zeros(3, 3)  # would fail later: the weights check must come first
    with pytest.raises(FileNotFoundError, match="missing-weights.pt"):
        _metrics(bad_images, bad_images, missing, tmp_path)
    with pytest.raises(FileNotFoundError, match="missing-weights.pt"):
        fid.compute_reference_statistics(bad_images, dataset="digits", split="train",
                                         extractor="inception-v3-compat",
                                         weights_path=missing, cache_root=tmp_path)


def test_classifier_of_another_dataset_is_rejected(classifier: tuple, digits: tuple,
                                                    tmp_path: Path) -> None:
    _, _, weights = classifier
    images = digits[1].pixels_uint8()
    with pytest.raises(ValueError, match="trained on 'digits'"):
        _metrics(images, images, weights, tmp_path, dataset="mnist")


def test_classifier_without_a_dataset_is_refused(classifier: tuple, digits: tuple,
                                                 tmp_path: Path) -> None:
    model, _, _ = classifier
    anonymous = save_classifier(model, tmp_path / "anonymous.pt", {"accuracy": 0.9})
    images = digits[1].pixels_uint8()
    with pytest.raises(ValueError, match=r"anonymous.pt does not record the dataset"):
        _metrics(images, images, anonymous, tmp_path)


def test_requested_precision_recall_that_come_back_nan_are_noted(
        classifier: tuple, digits: tuple, tmp_path: Path, monkeypatch, capsys) -> None:
    real = fid.prc_featuresdict_to_metric

    def nan_prc(*args: Any, **kwargs: Any) -> dict[str, float]:
        return {**real(*args, **kwargs), "precision": float("nan")}

    monkeypatch.setattr(fid, "prc_featuresdict_to_metric", nan_prc)  # as fid.py looks it up
    _, _, weights = classifier
    images = digits[1].pixels_uint8()
    out = _metrics(images[:60], images, weights, tmp_path, prc=True)
    assert "precision" not in out and math.isfinite(out["recall"]) and out["prc_requested"]
    assert out["notes"] == ["precision/recall were requested but torch-fidelity returned "
                            "precision = nan; left out of the results"]
    assert "vdm fid: warning: precision/recall were requested" in capsys.readouterr().err


def test_bad_images_are_rejected(classifier: tuple, digits: tuple, tmp_path: Path) -> None:
    _, _, weights = classifier
    reference = digits[1].pixels_uint8()
    with pytest.raises(ValueError, match="uint8"):
        _metrics(reference.float(), reference, weights, tmp_path)
    with pytest.raises(ValueError, match="differ"):
        _metrics(torch.zeros(10, 1, 4, 4, dtype=torch.uint8), reference, weights, tmp_path)


def test_load_samples_npz(tmp_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 256, (4, 1, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "samples.npz", images=images)
    loaded = fid.load_samples(tmp_path / "samples.npz")
    assert loaded.dtype == torch.uint8 and torch.equal(loaded, torch.from_numpy(images))


# ------------------------------------------------------------------------------ issue 12


def test_numbers_are_torch_fidelitys_and_fid_error_changes_nothing(
        classifier: tuple, digits: tuple, tmp_path: Path) -> None:
    """compute_metrics runs torch-fidelity's steps itself (to reuse the sample features for the
    FID error): the numbers are exactly those of torch_fidelity.calculate_metrics."""
    import torch_fidelity

    _, _, weights = classifier
    reference, samples = digits[0].pixels_uint8(), digits[1].pixels_uint8()[:200]
    out = _metrics(samples, reference, weights, tmp_path, kid_subset_size=100)
    plain = _metrics(samples, reference, weights, tmp_path, kid_subset_size=100, fid_error=False)
    kwargs = fid._fidelity_kwargs("classifier", weights, tmp_path, "cpu", 256)
    ref = torch_fidelity.calculate_metrics(
        input1=fid.Uint8ImageDataset(samples), input2=fid.Uint8ImageDataset(reference),
        input2_cache_name=out["reference_cache_name"], fid=True, kid=True, prc=True,
        kid_subset_size=100, **kwargs)
    for key, src in fid._METRIC_KEYS.items():
        assert out[key] == plain[key] == float(ref[src]), key
    assert "fid_se" not in plain and {k: v for k, v in out.items() if not k.startswith("fid_se")
                                      } == plain
    assert out["fid_se_method"] == "bootstrap" and out["fid_se_resamples"] == 50


def test_fid_sampling_error_is_small_next_to_real_differences(
        classifier: tuple, digits: tuple, tmp_path: Path) -> None:
    """Samples = a random half of the train split, reference = the train split: the bootstrap
    error is positive and far below the FID gap to a clearly different sample set."""
    _, _, weights = classifier
    train = digits[0].pixels_uint8()
    half = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:748]]
    gen = torch.Generator().manual_seed(1)
    blurred = (half.float() * 0.5 + torch.randn(half.shape, generator=gen) * 60)
    corrupted = blurred.clamp(0, 255).to(torch.uint8)
    good = _metrics(half, train, weights, tmp_path)
    bad = _metrics(corrupted, train, weights, tmp_path)
    assert 0 < good["fid_se"] < 0.1 * (bad["fid"] - good["fid"])
    assert 0 < bad["fid_se"] < 0.1 * (bad["fid"] - good["fid"])
    assert _metrics(half, train, weights, tmp_path)["fid_se"] == good["fid_se"]  # deterministic


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_reference_cache_is_set_aside_and_recomputed(
        classifier: tuple, digits: tuple, tmp_path: Path, capsys, damage: str) -> None:
    """A truncated (as a kill during its write leaves it) or garbled cached statistics or
    features file: torch-fidelity alone fails with a raw traceback; compute_metrics warns in one
    line, moves it to <file>.bad and gives the numbers of a clean cache."""
    import torch_fidelity

    _, _, weights = classifier
    reference, samples = digits[0].pixels_uint8(), digits[1].pixels_uint8()[:150]
    clean = _metrics(samples, reference, weights, tmp_path / "clean", kid_subset_size=100)
    info = fid.compute_reference_statistics(reference, dataset="digits", split="train",
                                            extractor="classifier", weights_path=weights,
                                            cache_root=tmp_path / "cache")
    for victim in info["cache_files"]:  # the statistics file, then the features file
        raw = Path(victim).read_bytes()
        Path(victim).write_bytes(raw[: len(raw) // 3] if damage == "truncate"
                                 else b"\x00garbage" * 50)
        kwargs = fid._fidelity_kwargs("classifier", weights, tmp_path / "cache", "cpu", 256)
        with pytest.raises(Exception):  # noqa: B017 - raw zip/unpickling/OS errors, as the issue says
            torch_fidelity.calculate_metrics(
                input1=fid.Uint8ImageDataset(samples), input2=fid.Uint8ImageDataset(reference),
                input2_cache_name=info["cache_name"], fid=True, kid=True, prc=True,
                kid_subset_size=100, **kwargs)
        capsys.readouterr()
        again = _metrics(samples, reference, weights, tmp_path / "cache", kid_subset_size=100)
        err = capsys.readouterr().err
        assert err.count("corrupt torch-fidelity cache file") == 1 and victim in err
        assert Path(victim + ".bad").is_file() and Path(victim).is_file()  # set aside, recomputed
        assert again == clean
    # the reference-statistics step (fid-reference job) heals the cache the same way
    Path(info["cache_files"][0]).write_bytes(b"")
    healed = fid.compute_reference_statistics(reference, dataset="digits", split="train",
                                              extractor="classifier", weights_path=weights,
                                              cache_root=tmp_path / "cache")
    assert healed["cached"] is False and "moved aside" in capsys.readouterr().err


def test_corrupt_classifier_weights_name_the_file_and_the_job(
        classifier: tuple, digits: tuple, tmp_path: Path) -> None:
    from vdm.core.checkpoint import CheckpointError

    _, _, weights = classifier
    broken = tmp_path / "classifier.pt"
    broken.write_bytes(weights.read_bytes()[:500])
    images = digits[1].pixels_uint8()
    with pytest.raises(CheckpointError) as error:
        _metrics(images, images, broken, tmp_path)
    message = str(error.value)
    assert "\n" not in message and str(broken) in message and "truncated or corrupt" in message
    assert "rule fid_classifier" in message


def test_real_data_floor_is_the_test_split_scored_as_samples(
        classifier: tuple, digits: tuple, tmp_path: Path) -> None:
    from vdm.evaluation.data_floor import real_data_floor

    _, _, weights = classifier
    kw = {"extractor": "classifier", "weights_path": weights, "cache_root": tmp_path,
          "kid_subset_size": 100}
    floor = real_data_floor("digits", **kw)
    direct = _metrics(digits[1].pixels_uint8(), digits[0].pixels_uint8(), weights, tmp_path,
                      kid_subset_size=100)
    assert {k: floor[k] for k in direct} == direct
    assert floor["num_floor_images"] == 300 and floor["floor_split"] == "test"
    assert floor["reference_split"] == "train" and "300 real test images" in floor["meaning"]
    assert 0 < floor["fid"] < 2.0 and floor["fid_se"] > 0
    with pytest.raises(ValueError, match="must differ"):
        real_data_floor("digits", floor_split="train", **kw)


# ------------------------------------------------------------------------------ inception


def _fidelity_inception(weights: Path) -> FeatureExtractorInceptionV3:
    return FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                       feature_extractor_weights_path=str(weights))


def test_converted_inception_matches_fid_helper(inception_weights: Path) -> None:
    ours = _fidelity_inception(inception_weights)
    theirs = load_fid_helper_model()
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (2, 3, 299, 299), generator=gen, dtype=torch.uint8)
    with torch.no_grad():
        a = ours(x)[0]
        b = theirs((x.float() - 128) / 128)  # fid-helper's input range [-1, 0.9921875]
    assert a.shape == b.shape == (2, 2048)
    assert (a - b).abs().max() < 1e-3 and a.abs().max() > 0.1


def test_converted_inception_matches_on_upsampled_small_images(inception_weights: Path) -> None:
    ours = _fidelity_inception(inception_weights)
    theirs = load_fid_helper_model()
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (2, 1, 32, 32), generator=gen, dtype=torch.uint8).repeat(1, 3, 1, 1)
    with torch.no_grad():
        a = ours(x)[0]  # torch-fidelity resizes to 299 internally (TF1-style bilinear)
        big = interpolate_bilinear_2d_like_tensorflow1x(x.float(), size=(299, 299),
                                                        align_corners=False)
        b = theirs((big - 128) / 128)
    assert (a - b).abs().max() < 1e-3


@pytest.mark.slow
def test_inception_fid_runs_offline(inception_weights: Path, digits: tuple,
                                    tmp_path: Path) -> None:
    images = digits[1].pixels_uint8()
    reference, samples = images[:20], images[20:40]
    kw = {"dataset": "digits", "split": "test", "extractor": "inception-v3-compat",
          "weights_path": inception_weights, "cache_root": tmp_path, "batch_size": 20}
    out = fid.compute_metrics(samples, reference, kid_subset_size=20, **kw)
    assert out["feature_extractor"] == "inception-v3-compat"
    assert out["kid_subset_size"] == 20 and out["num_samples"] == 20
    assert math.isfinite(out["fid"]) and out["fid"] > 0
    same = fid.compute_metrics(reference, reference, kid_subset_size=20, **kw)
    assert abs(same["fid"]) < 1e-2 < out["fid"]
