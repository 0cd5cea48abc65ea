"""vdm.evaluation.fid_cache (corrupt torch-fidelity cache files) and vdm.evaluation.fid_error
(FID bootstrap error), without a feature extractor. The end-to-end versions are in test_fid.py."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

from vdm.evaluation import fid_cache
from vdm.evaluation.fid_error import fid_bootstrap, fid_bootstrap_se, fid_statistics, frechet_distance

STAT = "vdm-digits-train-classifier-dabc-wdef-vdm-classifier-stat-fid-penultimate.pt"
FEATURES = "vdm-digits-train-classifier-dabc-wdef-vdm-classifier-features-penultimate.pt"


def _features(n: int = 50, d: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32))


def _write_cache(root) -> tuple[str, str]:
    features = _features()
    stat, feat = str(root / STAT), str(root / FEATURES)
    torch.save(fid_features_to_statistics(features), stat)  # exactly what torch-fidelity writes
    torch.save(features, feat)
    return stat, feat


def test_valid_cache_files_pass(tmp_path) -> None:
    stat, feat = _write_cache(tmp_path)
    assert fid_cache.cache_file_problem(stat) is None
    assert fid_cache.cache_file_problem(feat, num_reference=50) is None
    assert fid_cache.set_aside_corrupt([stat, feat, str(tmp_path / "absent.pt")], 50) == []


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
@pytest.mark.parametrize("which", ["stat", "features"])
def test_damaged_cache_file_is_set_aside_with_one_line(tmp_path, capsys, damage: str,
                                                       which: str) -> None:
    stat, feat = _write_cache(tmp_path)
    path = stat if which == "stat" else feat
    raw = open(path, "rb").read()
    data = {"truncate": raw[: len(raw) // 2], "garbage": b"\x00garbage" * 40, "empty": b""}[damage]
    with open(path, "wb") as f:
        f.write(data)
    assert fid_cache.set_aside_corrupt([stat, feat], num_reference=50) == [path]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vdm fid: warning: corrupt torch-fidelity cache")
    assert path in err and "recomputing" in err
    with open(path + ".bad", "rb") as f:
        assert f.read() == data
    assert not os.path.exists(path)


def test_wrong_contents_are_set_aside(tmp_path, capsys) -> None:
    stat, feat = _write_cache(tmp_path)
    torch.save(_features(n=49), feat)  # not one row per reference image
    torch.save({"mu": np.zeros(3), "sigma": np.eye(4)}, stat)
    assert fid_cache.cache_file_problem(feat, num_reference=50) == "49 feature rows for 50 reference images"
    assert "do not fit" in fid_cache.cache_file_problem(stat)
    torch.save({"mu": np.full(3, np.nan), "sigma": np.eye(3)}, stat)
    assert fid_cache.cache_file_problem(stat) == "non-finite statistics"
    assert sorted(fid_cache.set_aside_corrupt([stat, feat], 50)) == sorted([stat, feat])


def test_cache_file_with_a_pickled_object_is_refused_not_run(tmp_path) -> None:
    path = tmp_path / STAT
    torch.save({"mu": np.zeros(2), "sigma": np.eye(2), "x": print}, path)  # a global: refused
    assert fid_cache.cache_file_problem(path).startswith("unreadable")


def test_frechet_distance_matches_torch_fidelity() -> None:
    a, b = _features(200, 16, 1).numpy(), (_features(300, 16, 2).numpy() * 1.3 + 0.2)
    sa, sb = fid_features_to_statistics(torch.from_numpy(a)), fid_features_to_statistics(
        torch.from_numpy(b))
    expected = fid_statistics_to_metric(sa, sb, False)["frechet_inception_distance"]
    # torch-fidelity keeps μ in float32 (features' dtype); here everything is float64
    assert frechet_distance(sa["mu"], sa["sigma"], sb["mu"], sb["sigma"]) == pytest.approx(
        expected, rel=1e-6)
    mu, sigma = fid_statistics(a)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)


def test_bootstrap_error_is_deterministic_and_shrinks_with_more_samples() -> None:
    reference = _features(2000, 8, 3).numpy()
    mu, sigma = fid_statistics(reference)
    small, large = _features(100, 8, 4), _features(1600, 8, 5)
    se_small = fid_bootstrap_se(small, mu, sigma, n_resamples=40, seed=0)
    assert se_small == fid_bootstrap_se(small, mu, sigma, n_resamples=40, seed=0)
    assert se_small != fid_bootstrap_se(small, mu, sigma, n_resamples=40, seed=1)
    assert 0 < fid_bootstrap_se(large, mu, sigma, n_resamples=40) < se_small / 2  # ~ 1/√N
    assert fid_bootstrap(small, mu, sigma, n_resamples=5).shape == (5,)
    with pytest.raises(ValueError, match="n_resamples"):
        fid_bootstrap_se(small, mu, sigma, n_resamples=1)


@pytest.mark.parametrize("n", [12, 90])  # fewer samples than dimensions (Gram form), and more
def test_each_bootstrap_value_is_the_fid_of_its_resample(n: int) -> None:
    reference = _features(400, 32, 6).numpy()
    mu, sigma = fid_statistics(reference)
    x = _features(n, 32, 7).numpy() * 1.2
    value = fid_bootstrap(x, mu, sigma, n_resamples=1, seed=3)[0]
    index = np.random.default_rng(3).integers(0, n, size=n)
    assert value == pytest.approx(frechet_distance(*fid_statistics(x[index]), mu, sigma), rel=1e-7)



@pytest.mark.parametrize(("shift", "low", "high"), [
    (0.25, 1.0, 1.5),  # true distance 2.0, about twice the FID's own bias (~1): ratio ~1.2
    (0.0, 1.5, 3.0),   # the model is the reference: the bootstrap is most conservative, ~2.2
])
def test_bootstrap_error_is_a_conservative_sd_of_the_fid_over_fresh_sample_sets(
        shift: float, low: float, high: float, one_thread: None) -> None:
    """Calibration on Gaussian features (D = 32, N = 300) against the fixed reference N(0, I):
    the true spread is the SD of the FID over 1000 fresh sample sets of N(shift, I); the
    bootstrap SD (50 resamples) is averaged over 40 further sample sets. It overestimates the
    spread: resampling with replacement adds the resample's noise on top of the sample's own,
    which doubles the variance of the FID's finite-sample (bias) terms, most where the model
    equals the reference. The ratio varies by about 2% between simulation seeds (1.19 ± 0.03
    and 2.14 ± 0.04 over 8 seeds), so a bootstrap 2x or 0.5x off fails either case."""
    dims, n = 32, 300
    mu, sigma = np.zeros(dims), np.eye(dims)
    rng = np.random.default_rng(11)

    def sample_set() -> np.ndarray:
        return shift + rng.standard_normal((n, dims))

    spread = np.std([frechet_distance(*fid_statistics(sample_set()), mu, sigma)
                     for _ in range(1000)], ddof=1)
    bootstrap = np.mean([fid_bootstrap_se(sample_set(), mu, sigma, seed=i) for i in range(40)])
    assert low <= bootstrap / spread <= high, (bootstrap, spread, bootstrap / spread)

def test_corrupt_inception_weights_name_the_file_and_the_command(tmp_path) -> None:
    from vdm.core.checkpoint import CheckpointError
    from vdm.evaluation.fid import check_extractor_weights

    path = tmp_path / "inception.pth"
    torch.save({"w": torch.zeros(1000)}, path)
    path.write_bytes(path.read_bytes()[:300])  # truncated
    with pytest.raises(CheckpointError) as error:
        check_extractor_weights("inception-v3-compat", path, "cifar10")
    message = str(error.value)
    assert "\n" not in message and str(path) in message and "vdm inception-weights" in message
