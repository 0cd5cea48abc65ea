"""FID against a fresh reference of true samples (``fid.reference_split: fresh``, digits-gmm) and
its floor: fresh true samples as many as the runs' samples."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from vdm.core.config import apply_overrides, grid_name, validate_workflow_config
from vdm.core.data import levels_to_pixels, load_dataset, load_fid_reference, load_fresh_samples
from vdm.core.dataset_facts import FRESH_SETS
from vdm.core.digits_gmm import FRESH_SETS as GMM_FRESH_SETS
from vdm.core.digits_gmm import FRESH_STREAM, SPLIT_SEED, SPLIT_STREAMS, _rng, load_mixture
from vdm.core.job_settings import FeatureSettings
from vdm.core.job_specs import FidFloorSpec, job_spec

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

DEFAULT = validate_workflow_config({})
FRESH = validate_workflow_config({"dataset": "digits-gmm", "fid": {"reference_split": "fresh"}})


# ------------------------------------------------------------------------------ the streams
def test_fresh_streams_never_overlap_the_splits_or_the_seeded_samples() -> None:
    """Brute force over the raw uniform draws: the first 20 000 of each stream (train, test,
    fresh-reference, fresh-floor, and fresh samples of seeds 0..2) share no value, so no set's
    draws are a shifted copy of another's."""
    draws = {name: _rng(SPLIT_SEED, stream).random(20_000) for name, stream in SPLIT_STREAMS.items()}
    draws |= {f"seed{s}": _rng(s, FRESH_STREAM).random(20_000) for s in range(3)}
    assert FRESH_SETS == GMM_FRESH_SETS and set(FRESH_SETS) < set(SPLIT_STREAMS)
    for (a, x), (b, y) in itertools.combinations(draws.items(), 2):
        assert np.intersect1d(x, y).size == 0, (a, b)


def test_fresh_sets_are_the_same_images_every_time_and_not_a_split() -> None:
    mixture = load_mixture()
    first = load_fresh_samples("digits-gmm", "fresh-reference", 600)
    again = load_fresh_samples("digits-gmm", "fresh-reference", 600)
    assert torch.equal(first.images, again.images) and torch.equal(first.labels, again.labels)
    levels, labels = mixture.fresh_set("fresh-reference", 600)
    assert torch.equal(first.images, torch.from_numpy(levels))
    assert first.split == "fresh-reference" and first.images.shape == (600, 1, 8, 8)
    assert first.images.dtype == torch.uint8 and int(first.images.max()) <= 16
    assert set(labels.tolist()) == set(range(10))
    floor = load_fresh_samples("digits-gmm", "fresh-floor", 600)
    train = load_dataset("digits-gmm", "train")
    for other in (floor, train, load_dataset("digits-gmm", "test")):
        assert not torch.equal(first.images, other.images[:600])
    # the same seed gives the same draw: equal to a seeded sample of the same stream and size
    np.testing.assert_array_equal(
        mixture.sample(600, _rng(SPLIT_SEED, SPLIT_STREAMS["fresh-floor"]))[0],
        floor.images.numpy())


def test_fresh_reference_sizes_and_one_line_errors() -> None:
    assert len(load_fid_reference("digits-gmm", "fresh", fresh_size=123)) == 123
    assert len(load_fid_reference("digits-gmm", "train")) == 1497
    cases = [
        (lambda: load_fid_reference("digits-gmm", "fresh"), "fid.fresh_reference_size"),
        (lambda: load_fid_reference("digits-gmm", "train", fresh_size=10), "only for reference"),
        (lambda: load_fid_reference("digits", "fresh", fresh_size=10), "'digits' has no known"),
        (lambda: load_fresh_samples("digits-gmm", "fresh-test", 10), "unknown set"),
        (lambda: load_fresh_samples("digits-gmm", "fresh-floor", 0), ">= 1"),
    ]
    for call, text in cases:
        with pytest.raises(ValueError) as error:
            call()
        assert text in str(error.value) and "\n" not in str(error.value)


# ------------------------------------------------------------------------------ config and specs
def test_fresh_reference_on_digits_is_a_one_line_config_error() -> None:
    with pytest.raises(ValueError) as error:
        validate_workflow_config({"fid": {"reference_split": "fresh"}})
    message = str(error.value)
    assert "'fid.reference_split'" in message and "digits-gmm" in message and "\n" not in message
    assert FRESH["fid"]["fresh_reference_size"] == 10_000  # the schema's default
    with pytest.raises(ValueError, match="fresh_reference_size"):
        validate_workflow_config({"dataset": "digits-gmm", "fid": {
            "reference_split": "fresh", "fresh_reference_size": 3}})


#: The default grid's FID specs as they were before the fresh reference existed (settings, not
#: results): the new keys must not reach them, or every FID job of a finished grid would rerun.
DEFAULT_FID_REFERENCE = (
    '{"data_root": "data", "dataset": "digits", "device": "auto", "features": {"batch_size": '
    '256, "feature_extractor": "classifier", "reference_split": "train", "weights_path": null}}')
DEFAULT_FID_FLOOR = (
    '{"data_root": "data", "dataset": "digits", "device": "auto", "fid": {"features": '
    '{"batch_size": 256, "feature_extractor": "classifier", "reference_split": "train", '
    '"weights_path": null}, "kid_subset_size": 100, "prc": true}, "floor_split": "test"}')


def test_default_grid_fid_specs_are_byte_for_byte_unchanged() -> None:
    assert job_spec("fid-reference", DEFAULT).to_json() == DEFAULT_FID_REFERENCE
    assert job_spec("fid-floor", DEFAULT).to_json() == DEFAULT_FID_FLOOR
    for command in ("fid", "sweep", "evaluate"):
        assert "fresh" not in job_spec(command, DEFAULT).to_json()
    changed = validate_workflow_config({"fid": {"fresh_reference_size": 500}})
    for command in ("fid-reference", "fid-floor", "fid", "sweep", "evaluate"):
        assert job_spec(command, changed).to_json() == job_spec(command, DEFAULT).to_json()
    assert grid_name(changed, DEFAULT) == "default"  # unused: not part of the grid's name


def test_fresh_specs_carry_the_reference_size_and_the_floor_size() -> None:
    config = validate_workflow_config(apply_overrides(FRESH, ["sample.num_samples=640",
                                                              "fid.fresh_reference_size=5000"]))
    floor = job_spec("fid-floor", config)
    assert floor.floor_split == "fresh" and floor.num_floor_images == 640
    assert floor.fid.features.reference_split == "fresh"
    assert floor.fid.features.fresh_reference_size == 5000
    assert job_spec("fid-reference", config).features == floor.fid.features
    assert job_spec("evaluate", config, 1).fid == floor.fid
    for command in ("fid-reference", "fid-floor", "fid", "sweep", "evaluate"):
        spec = job_spec(command, config)
        assert type(spec).from_json(spec.to_json()) == spec
    # a test-split reference gets the train split as its floor (not itself: FID 0)
    test_reference = validate_workflow_config({"fid": {"reference_split": "test"}})
    assert job_spec("fid-floor", test_reference).floor_split == "train"
    assert grid_name(config, DEFAULT) != grid_name(
        validate_workflow_config(apply_overrides(config, ["fid.fresh_reference_size=6000"])),
        DEFAULT)


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d["fid"]["features"].pop("fresh_reference_size"),
     "spec key 'fid.features.fresh_reference_size': required with reference_split 'fresh'"),
    (lambda d: d.pop("num_floor_images"),
     "spec key 'num_floor_images': required with floor_split 'fresh'"),
    (lambda d: d.update(floor_split="test"), "spec key 'floor_split': 'test' with"),
    (lambda d: d["fid"]["features"].update(fresh_reference_size=2),
     "spec key 'fid.features.fresh_reference_size': 2 is less than the minimum of 4"),
])
def test_bad_fresh_floor_spec_is_one_line_naming_the_key(mutate, message: str) -> None:
    data = job_spec("fid-floor", FRESH).to_dict()
    mutate(data)
    with pytest.raises(ValueError) as error:
        FidFloorSpec.from_dict(data)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_split_reference_refuses_a_fresh_size() -> None:
    data = job_spec("fid-reference", DEFAULT).to_dict()["features"]
    with pytest.raises(ValueError, match="'fresh_reference_size': required with reference_split "
                                         "'fresh' and only then"):
        FeatureSettings.from_dict({**data, "fresh_reference_size": 100})


# ------------------------------------------------------------------------------ the metrics
@pytest.fixture(scope="module")
def gmm_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A digits-gmm classifier (the FID feature extractor of a digits-gmm grid), trained once."""
    from vdm.evaluation.feature_extractors import save_classifier, train_classifier

    model, accuracy = train_classifier(load_dataset("digits-gmm", "train"),
                                       load_dataset("digits-gmm", "test"), steps=200,
                                       batch_size=64, lr=3e-3, seed=0, num_threads=1)
    path = tmp_path_factory.mktemp("clf") / "classifier.pt"
    save_classifier(model, path, {"dataset": "digits-gmm", "test_accuracy": accuracy, "seed": 0})
    return path


def _floor(weights: Path, cache: Path, n: int, size: int = 2000) -> dict[str, Any]:
    from vdm.evaluation.data_floor import real_data_floor

    return real_data_floor("digits-gmm", reference_split="fresh", floor_split="fresh",
                           fresh_reference_size=size, num_floor_images=n, extractor="classifier",
                           weights_path=weights, cache_root=cache, kid_subset_size=100)


def test_true_samples_score_the_floor_and_it_falls_with_n(gmm_classifier: Path,
                                                          tmp_path: Path) -> None:
    """The floor is fresh-floor scored against fresh-reference (exactly compute_metrics of the
    two sets); an independent set of true samples of the same N scores the same within the
    sampling errors; uniform noise scores far above; and the floor falls with N (FID's
    finite-sample bias ~ 1/N)."""
    from vdm.evaluation.fid import compute_metrics

    floor = _floor(gmm_classifier, tmp_path, 300)
    reference = load_fid_reference("digits-gmm", "fresh", fresh_size=2000).pixels_uint8()
    kw: dict[str, Any] = {"dataset": "digits-gmm", "split": "fresh", "extractor": "classifier",
                          "weights_path": gmm_classifier, "cache_root": tmp_path,
                          "kid_subset_size": 100}
    direct = compute_metrics(load_fresh_samples("digits-gmm", "fresh-floor", 300).pixels_uint8(),
                             reference, **kw)
    assert {key: floor[key] for key in direct} == direct
    assert floor["num_floor_images"] == 300 and floor["num_reference"] == 2000
    assert floor["floor_split"] == floor["reference_split"] == "fresh"
    assert floor["meaning"].startswith("true-sample floor: 300 fresh true samples of digits-gmm")
    assert "2000 fresh true samples" in floor["meaning"]
    levels, _ = load_mixture().sample(300, seed=11)  # another set of true samples, same N
    other = compute_metrics(levels_to_pixels(torch.from_numpy(levels), 17), reference, **kw)
    assert abs(other["fid"] - floor["fid"]) < 4 * np.hypot(other["fid_se"], floor["fid_se"])
    noise = torch.randint(0, 256, (300, 1, 8, 8), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(0))
    assert floor["fid"] < 0.05 * compute_metrics(noise, reference, **kw)["fid"]
    assert _floor(gmm_classifier, tmp_path, 1200)["fid"] < floor["fid"]


def test_fid_reference_floor_and_fid_commands_on_a_fresh_reference(gmm_classifier: Path,
                                                                   tmp_path: Path) -> None:
    """The three FID commands with a tiny fresh setting: the reference's features are cached
    under the fresh set's content hash; the floor and a run's fid.json say what they compared."""
    from vdm.pipeline.cli import main

    config = validate_workflow_config(apply_overrides(FRESH, [
        "fid.fresh_reference_size=500", "sample.num_samples=200", "fid.kid_subset_size=50",
        "device=cpu", "evaluation.bayes_samplers=false"]))  # no exact-denoiser samples here
    files = ["--dataset-classifier", str(gmm_classifier), "--cache-root", str(tmp_path / "cache")]

    def run(command: str, *args: str) -> dict[str, Any]:
        out = tmp_path / f"{command}.json"
        spec = job_spec(command, config).to_json()
        assert main([command, "--spec", spec, *files, *args, "--out", str(out)]) == 0
        return json.loads(out.read_text())

    reference = run("fid-reference")
    assert reference["num_reference"] == 500 and reference["split"] == "fresh"
    assert reference["cache_name"].startswith("vdm-digits_gmm-fresh-classifier-d")
    floor = run("fid-floor")
    assert floor["num_floor_images"] == 200 and floor["num_reference"] == 500
    assert floor["reference_cache_name"] == reference["cache_name"] and floor["fid"] > 0
    assert {"meaning", "fid_se", "kid", "precision", "recall"} <= set(floor)
    samples = tmp_path / "samples.npz"
    levels, _ = load_mixture().sample(200, seed=5)
    np.savez(samples, images=levels_to_pixels(torch.from_numpy(levels), 17).numpy())
    fid = run("fid", "--samples", str(samples))
    assert fid["reference_split"] == "fresh" and fid["num_reference"] == 500
    assert fid["reference_cache_name"] == reference["cache_name"]


# ------------------------------------------------------------------------------ reporting
def test_the_floor_is_labelled_as_fresh_true_samples() -> None:
    from matplotlib.figure import Figure

    from vdm.reporting.plot_base import floor_line
    from vdm.reporting.table_text import floor_markdown

    fresh = {"fid": 0.4, "fid_se": 0.02, "kid": 0.001, "num_floor_images": 1000,
             "floor_split": "fresh", "dataset": "digits-gmm",
             "meaning": "true-sample floor: 1000 fresh true samples of digits-gmm (...)"}
    real = {**fresh, "num_floor_images": 300, "floor_split": "test",
            "meaning": "real-data floor: the 300 real test images (...)"}
    assert "| fresh true samples, N = 1000 |" in floor_markdown(fresh)
    assert "True-sample floor" in floor_markdown(fresh)
    assert "| 300 test images |" in floor_markdown(real)
    for floor, label in ((fresh, "fresh true samples, N = 1000"),
                         (real, "real data (300 test images)")):
        ax = Figure().subplots()
        floor_line(ax, floor)
        assert ax.get_legend_handles_labels()[1] == [label]
