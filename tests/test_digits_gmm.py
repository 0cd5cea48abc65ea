"""digits-gmm: exact probabilities, exact sampling, fixed splits and the shipped parameters,
against closed forms and enumeration."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from gmm_cases import all_points, brute_joint, direct_level_probs, tiny_mixture
from scipy.stats import chisquare, norm

from vdm.core.data import load_dataset
from vdm.core.dataset_facts import SPLIT_SIZES, dataset_info
from vdm.core.digits_gmm import (
    PARAMETERS_FILE,
    GaussianMixtureData,
    load_mixture,
    load_split,
    log_normal_interval,
    read_mixture,
)
from vdm.core.digits_gmm import (
    SPLIT_SIZES as GMM_SPLIT_SIZES,
)
from vdm.core.digits_gmm_fit import fit_digits_gmm


def test_tiny_probabilities_sum_to_one_and_equal_the_definition() -> None:
    mixture = tiny_mixture()
    points = all_points(mixture)
    log_p = mixture.log_prob(points)
    assert math.isclose(np.exp(log_p).sum(), 1.0, abs_tol=1e-13)
    np.testing.assert_allclose(np.exp(log_p), brute_joint(mixture).sum(1), rtol=1e-12, atol=0)
    np.testing.assert_allclose(mixture.level_probs().sum(-1), 1.0, rtol=1e-13)
    np.testing.assert_allclose(mixture.level_probs(), direct_level_probs(mixture), rtol=1e-9,
                               atol=1e-300)
    np.testing.assert_allclose(mixture.bits_per_dim(points), -log_p / (2 * math.log(2)))


def test_tiny_class_posterior_is_the_bayes_classifier() -> None:
    mixture = tiny_mixture()
    joint = brute_joint(mixture)
    expected = np.stack([joint[:, [0, 1]].sum(1), joint[:, 2]], axis=1) / joint.sum(1, keepdims=True)
    np.testing.assert_allclose(mixture.class_posterior(all_points(mixture)), expected, rtol=1e-11)


def test_tiny_sample_frequencies_match_p() -> None:
    mixture = tiny_mixture()
    n = 40_000
    levels, labels = mixture.sample(n, seed=3)
    assert levels.shape == (n, 1, 1, 2) and levels.dtype == np.uint8 and labels.dtype == np.int64
    levels = levels.reshape(n, 2)
    codes = levels[:, 0].astype(np.int64) * 5 + levels[:, 1]
    observed = np.bincount(codes, minlength=25)
    expected = n * np.exp(mixture.log_prob(all_points(mixture)))
    keep = expected > 5  # chi-square needs populated cells; pool the rest
    observed = np.append(observed[keep], observed[~keep].sum())
    expected = np.append(expected[keep], expected[~keep].sum())
    assert chisquare(observed, expected).pvalue > 1e-3
    joint = brute_joint(mixture)
    class_one = joint[:, 2].sum()  # labels are the components' classes
    assert abs(labels.mean() - class_one) < 4 * math.sqrt(class_one * (1 - class_one) / n)


def test_tiny_entropy_and_bayes_accuracy_match_enumeration() -> None:
    mixture = tiny_mixture()
    joint = brute_joint(mixture)
    p = joint.sum(1)
    exact_h = float(-(p * np.log2(p)).sum() / mixture.num_dims)
    exact_accuracy = float(np.maximum(joint[:, :2].sum(1), joint[:, 2]).sum())
    h, h_se = mixture.entropy_bits_per_dim(20_000, seed=1)
    accuracy, accuracy_se = mixture.bayes_accuracy(20_000, seed=1)
    assert abs(h - exact_h) < 4 * h_se
    assert abs(accuracy - exact_accuracy) < 4 * accuracy_se


@pytest.mark.parametrize(("lo", "hi"), [(40.0, np.inf), (50.0, 50.1), (-np.inf, -40.0),
                                         (-300.0, -299.9), (200.0, 201.0)])
def test_log_normal_interval_far_tails_stay_finite_and_accurate(lo: float, hi: float) -> None:
    """Mills-ratio bounds ``phi(x)/x (1 - 1/x^2) <= Q(x) <= phi(x)/x`` at the interval's near
    end ``x``; the far end is ``e^{-x (hi - lo)}`` or less of it (``hi - lo >= 0.1``)."""
    value = float(log_normal_interval(np.array(lo), np.array(hi)))
    x = lo if lo > 0 else -hi
    far = math.exp(-x * 0.1)  # relative size of the mass beyond the far end
    upper = norm.logpdf(x) - math.log(x)
    lower = upper + math.log1p(-1 / x**2) + math.log1p(-far)
    assert math.isfinite(value)
    assert lower - 1e-12 <= value <= upper + 1e-12


def test_log_normal_interval_matches_direct_difference_in_the_bulk() -> None:
    lo = np.array([-np.inf, -2.0, -0.3, 0.2, 1.5, -1e-3])
    hi = np.array([-1.0, 0.5, 0.1, 3.0, np.inf, 1e-3])
    np.testing.assert_allclose(log_normal_interval(lo, hi),
                               np.log(norm.cdf(hi) - norm.cdf(lo)), rtol=1e-12)


def test_far_tail_points_have_finite_log_probability() -> None:
    """A point where one component's level probability underflows in linear space."""
    mixture = GaussianMixtureData(np.array([1.0]), np.array([[-1.0, 0.0]]),
                                  np.array([[0.01, 0.5]]), np.array([0]), 5, (2,))
    log_p = mixture.log_prob(np.array([[4, 2]]))  # dim 0 at +1: 175 standard deviations out
    z = (0.75 + 1.0) / 0.01
    expected = (norm.logpdf(z) - math.log(z)) + math.log(norm.cdf(0.5) - norm.cdf(-0.5))
    assert np.isfinite(log_p).all()
    assert abs(float(log_p[0]) - expected) < 1e-4 * abs(expected)


def test_bad_input_is_one_clear_error() -> None:
    mixture = tiny_mixture()
    with pytest.raises(ValueError, match=r"levels: expected integers in \[0, 4\]"):
        mixture.log_prob(np.array([[0, 5]]))
    with pytest.raises(ValueError, match="levels: expected"):
        mixture.log_prob(np.zeros((3, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="sum to 1"):
        GaussianMixtureData(np.array([0.5, 0.2, 0.2]), mixture.means, mixture.stds,
                            mixture.component_class, 5, mixture.shape)
    with pytest.raises(ValueError, match="stds"):
        GaussianMixtureData(mixture.weights, mixture.means, -mixture.stds,
                            mixture.component_class, 5, mixture.shape)


def test_parameter_file_round_trip_and_hash_check(tmp_path: Path) -> None:
    mixture = tiny_mixture()
    path = mixture.save(tmp_path / "tiny.npz", reg_covar=0.5)
    loaded, settings = read_mixture(path)
    assert loaded.sha256 == mixture.sha256 and settings == {"reg_covar": 0.5}
    np.testing.assert_array_equal(loaded.means, mixture.means)
    with np.load(path) as stored:
        values = dict(stored)
    values["means"] = values["means"] + 1e-9
    np.savez(tmp_path / "changed.npz", **values)
    with pytest.raises(ValueError, match="changed.npz: parameters do not match"):
        read_mixture(tmp_path / "changed.npz")
    (tmp_path / "junk.npz").write_text("not an npz")
    with pytest.raises(ValueError, match="junk.npz is not a digits-gmm parameter file"):
        read_mixture(tmp_path / "junk.npz")


def test_refit_reproduces_the_shipped_parameters() -> None:
    shipped, settings = read_mixture(PARAMETERS_FILE)
    refit, refit_settings = fit_digits_gmm()
    assert refit_settings == settings
    np.testing.assert_array_equal(refit.component_class, shipped.component_class)
    for name in ("weights", "means", "stds"):  # EM converged to tol 1e-6: same fit up to rounding
        np.testing.assert_allclose(getattr(refit, name), getattr(shipped, name), rtol=0, atol=1e-6)
    assert (shipped.num_components, shipped.num_levels, shipped.shape) == (40, 17, (1, 8, 8))
    assert settings["reg_covar"] == pytest.approx((2 / 16) ** 2 / 12)


def test_splits_are_fixed_registered_and_disjoint_from_fresh_samples() -> None:
    mixture = load_mixture()
    for split in ("train", "test"):
        data = load_dataset("digits-gmm", split)
        images, labels = load_split(split)
        assert len(data) == SPLIT_SIZES["digits-gmm"][split] == GMM_SPLIT_SIZES[split] == len(images)
        assert torch.equal(data.images, torch.from_numpy(images)) and data.num_levels == 17
        assert torch.equal(data.labels, torch.from_numpy(labels))
        assert set(labels.tolist()) == set(range(10))
    assert dataset_info("digits-gmm") == {"shape": (1, 8, 8), "num_levels": 17, "num_classes": 10}
    assert GMM_SPLIT_SIZES["train"] == SPLIT_SIZES["digits"]["train"]  # as many as digits
    train, _ = load_split("train")
    fresh, _ = mixture.sample(len(train), seed=0)
    assert not np.array_equal(train, fresh)
    assert not np.array_equal(train[:100], load_split("test")[0][:100])


def test_shipped_mixture_entropy_is_the_mean_log_loss_of_its_test_split() -> None:
    """Two independent estimates of ``H``: fresh samples and the fixed test split."""
    mixture = load_mixture()
    h, h_se = mixture.entropy_bits_per_dim(20_000, seed=7)
    test_bpd = mixture.bits_per_dim(load_split("test")[0])
    test_se = test_bpd.std(ddof=1) / math.sqrt(test_bpd.size)
    assert abs(h - test_bpd.mean()) < 4 * math.hypot(h_se, test_se)
