"""Likelihood against the truth (vdm.evaluation.known_density): the paired differences against the
exact -log2 P(x)/D by enumeration, the Bayes bound as the ELBO of the exact denoiser, and the
schedule + decoder gap shrinking as lambda_max grows."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gmm_cases import all_points, brute_joint, tiny_mixture

from vdm.core.data import ImageData, load_dataset
from vdm.core.digits_gmm import GaussianMixtureData, describe, load_mixture
from vdm.evaluation.evaluate import evaluate_nll
from vdm.evaluation.known_density import (
    against_the_truth,
    bayes_bound,
    known_mixture,
    mixture_record,
    paired_mean,
    true_bits_per_dim,
)
from vdm.model.bayes_denoiser import BayesDenoiser, BayesEpsNetwork
from vdm.model.diffusion import DiffusionModel
from vdm.model.objectives import get_objective
from vdm.model.ode_bound import ode_vdeq_nll
from vdm.model.schedules import get_schedule

pytestmark = pytest.mark.usefixtures("one_thread")
ELBO = {"batch_size": 500, "num_time_samples": 16, "seed": 3}


def _images(mixture: GaussianMixtureData, n: int, seed: int) -> ImageData:
    levels, labels = mixture.sample(n, seed=seed)
    return ImageData("tiny", "test", torch.from_numpy(levels), torch.from_numpy(labels),
                     mixture.num_levels)


def _enumerated_bits_per_dim(mixture: GaussianMixtureData, data: ImageData) -> np.ndarray:
    """-log2 P(x) / D of each image by enumeration over the L^D points (scipy's normal CDF)."""
    probs = brute_joint(mixture).sum(1)
    index = {tuple(point): i for i, point in enumerate(all_points(mixture))}
    flat = data.images.reshape(len(data), -1).numpy()
    return -np.log2(probs[[index[tuple(row)] for row in flat]]) / mixture.num_dims


def _wrong_model(mixture: GaussianMixtureData, schedule) -> DiffusionModel:
    """A real denoiser that is not the optimal one: eps* of the mixture with shifted means."""
    shifted = GaussianMixtureData(mixture.weights, mixture.means + 0.3, mixture.stds,
                                  mixture.component_class, mixture.num_levels, mixture.shape)
    return DiffusionModel(BayesEpsNetwork(shifted), schedule, get_objective("elbo"),
                          mixture.num_levels, "eps")


def test_describe_is_entropy_and_bayes_accuracy_of_the_same_samples() -> None:
    mixture = tiny_mixture()
    record = describe(mixture, num_samples=5000, seed=4)
    assert (record["true_entropy_bpd"], record["true_entropy_bpd_se"]) == \
        mixture.entropy_bits_per_dim(5000, seed=4)
    assert (record["bayes_accuracy"], record["bayes_accuracy_se"]) == \
        mixture.bayes_accuracy(5000, seed=4)


def test_known_mixture_only_for_digits_gmm() -> None:
    assert known_mixture("digits-gmm") is load_mixture()
    assert known_mixture("digits") is None and known_mixture("cifar10") is None


def test_nll_minus_entropy_pairs_each_image_with_its_exact_probability() -> None:
    """Every column is the mean (and SE) of per-image differences, the exact -log2 P(x)/D by
    enumeration; network gap + schedule gap = NLL - H image by image; a denoiser that is not
    eps* has a positive network gap."""
    mixture = tiny_mixture()
    data = _images(mixture, 600, seed=21)
    model = _wrong_model(mixture, get_schedule("cosine", logsnr_min=-10.0, logsnr_max=5.0))
    run = evaluate_nll(model, data, return_per_example=True, **ELBO)
    elbo = run["per_example_bpd"]
    out = against_the_truth(model, data, mixture, elbo_bpd=elbo, **ELBO)
    truth = torch.from_numpy(_enumerated_bits_per_dim(mixture, data))
    torch.testing.assert_close(true_bits_per_dim(mixture, data, len(data)), truth, rtol=1e-12,
                               atol=0)
    difference = elbo - truth
    assert out["nll_minus_entropy_bpd"] == pytest.approx(float(difference.mean()), abs=1e-12)
    assert out["nll_minus_entropy_bpd_se"] == pytest.approx(
        float(difference.std() / math.sqrt(len(data))), rel=1e-9)
    assert out["true_nll_bpd"] == pytest.approx(float(truth.mean()), abs=1e-12)
    assert out["nll_minus_entropy_bpd"] == pytest.approx(run["nll_bpd"] - out["true_nll_bpd"],
                                                         abs=1e-12)
    assert out["nll_minus_bayes_bound_bpd"] + out["bayes_bound_minus_entropy_bpd"] == \
        pytest.approx(out["nll_minus_entropy_bpd"], abs=1e-12)
    assert out["nll_minus_bayes_bound_bpd"] > 5 * out["nll_minus_bayes_bound_bpd_se"]
    assert out["nll_minus_entropy_bpd_se"] < run["nll_bpd_se"]  # pairing removes image spread
    points = all_points(mixture)
    probs = brute_joint(mixture).sum(1)
    entropy = float(-(probs * np.log2(probs)).sum() / mixture.num_dims)
    assert abs(out["true_entropy_bpd"] - entropy) < 4 * out["true_entropy_bpd_se"]
    assert out["mixture"]["sha256"] == mixture.sha256 and len(points) == 25


def test_bayes_bound_is_the_elbo_of_the_exact_denoiser_and_at_least_h() -> None:
    """With eps* as the run, the network gap is exactly 0 (same noise levels and noise); the
    Bayes bound is at least the exact -log2 P within its SE; it takes the run's own lambda
    range (a learned schedule's end points give the numbers of a fixed schedule with them)."""
    mixture = tiny_mixture()
    data = _images(mixture, 800, seed=22)
    learned = get_schedule("learned", logsnr_min=-9.0, logsnr_max=4.5)
    model = BayesDenoiser(mixture, learned)
    run = evaluate_nll(model, data, return_per_example=True, **ELBO)
    out = against_the_truth(model, data, mixture, elbo_bpd=run["per_example_bpd"], **ELBO)
    assert out["nll_minus_bayes_bound_bpd"] == 0 and out["nll_minus_bayes_bound_bpd_se"] == 0
    assert out["bayes_bound_bpd"] == pytest.approx(run["nll_bpd"], abs=1e-12)
    assert out["bayes_bound_minus_entropy_bpd"] > -3 * out["bayes_bound_minus_entropy_bpd_se"]
    cosine = bayes_bound(mixture, get_schedule("cosine", logsnr_min=-9.0, logsnr_max=4.5), data,
                         max_examples=None, **ELBO)
    assert cosine["nll_bpd"] == pytest.approx(out["bayes_bound_bpd"], abs=1e-5)


def test_ode_columns_pair_the_decoder_consistent_bound_with_the_truth() -> None:
    mixture = tiny_mixture()
    data = _images(mixture, 40, seed=23)
    ode = {"max_examples": 12, "batch_size": 12, "num_probes": 1, "rtol": 1e-5, "atol": 1e-5}
    model = _wrong_model(mixture, get_schedule("cosine", logsnr_min=-12.0, logsnr_max=6.0))
    elbo = evaluate_nll(model, data, return_per_example=True, **ELBO)["per_example_bpd"]
    vdeq = ode_vdeq_nll(model, data, seed=ELBO["seed"], return_per_example=True,
                        **ode)["per_example_bpd"]
    out = against_the_truth(model, data, mixture, elbo_bpd=elbo, ode=ode, ode_vdeq_bpd=vdeq,
                            **ELBO)
    truth = torch.from_numpy(_enumerated_bits_per_dim(mixture, data))[:12]
    assert out["nll_ode_vdeq_minus_entropy_bpd"] == pytest.approx(float((vdeq - truth).mean()),
                                                                  abs=1e-12)
    assert out["nll_ode_vdeq_minus_bayes_ode_vdeq_bpd"] + out[
        "bayes_ode_vdeq_minus_entropy_bpd"] == pytest.approx(
        out["nll_ode_vdeq_minus_entropy_bpd"], abs=1e-12)
    assert out["bayes_ode_vdeq_minus_entropy_bpd"] > -3 * out["bayes_ode_vdeq_minus_entropy_bpd_se"]
    assert out["nll_ode_vdeq_minus_bayes_ode_vdeq_bpd"] > 0
    with pytest.raises(ValueError, match="ode_vdeq_bpd"):
        against_the_truth(model, data, mixture, elbo_bpd=elbo, ode=ode, **ELBO)


def test_schedule_gap_shrinks_as_logsnr_max_grows_from_7_to_9() -> None:
    """On digits-gmm (levels 0.125 apart) the decoder at lambda_max = 7 (sigma/alpha = 0.03)
    still confuses neighbouring levels, at 9 (0.011) hardly: the Bayes bound's excess over the
    exact -log2 P falls. Judged over independent evaluation seeds (the same 600 test images),
    each pairing the two ranges with the same noise."""
    mixture = load_mixture()
    data = load_dataset("digits-gmm", "test")
    truth = true_bits_per_dim(mixture, data, 600)
    gaps = {7.0: [], 9.0: []}
    for seed in range(6):
        for logsnr_max in gaps:
            schedule = get_schedule("cosine", logsnr_min=-10.0, logsnr_max=logsnr_max)
            bound = bayes_bound(mixture, schedule, data, max_examples=600, batch_size=600,
                                num_time_samples=8, seed=seed)["per_example_bpd"]
            gaps[logsnr_max].append(
                paired_mean(bound, truth, "bayes_bound_minus_entropy_bpd")[
                    "bayes_bound_minus_entropy_bpd"])
    shrink = np.subtract(gaps[7.0], gaps[9.0])
    assert shrink.mean() > 3 * shrink.std(ddof=1) / math.sqrt(len(shrink)), shrink
    at_nine = np.asarray(gaps[9.0])
    assert abs(at_nine.mean()) < 3 * at_nine.std(ddof=1) / math.sqrt(len(at_nine)), at_nine


def test_true_bits_per_dim_rejects_images_of_another_shape() -> None:
    data = load_dataset("digits", "test")
    with pytest.raises(ValueError, match=r"test: images \(1, 8, 8\) with 17 levels, the "
                                         r"mixture's are \(1, 1, 2\) with 5"):
        true_bits_per_dim(tiny_mixture(), data, 10)


def _write_nll_and_collect(tmp_path, dataset: str) -> tuple[dict, dict]:
    """``write_nll`` of an untrained small model on ``dataset`` (16 images, 2 noise levels) and
    ``collect_metrics`` of it: ``(nll.json, metrics.json)``."""
    import json
    import time

    from vdm.core.config import run_config_from_dict
    from vdm.core.job_settings import NllSettings
    from vdm.model.diffusion import build_model
    from vdm.pipeline.nll_command import write_nll
    from vdm.pipeline.results_commands import collect_metrics

    config = run_config_from_dict({"dataset": dataset, "objective": "eps", "schedule": "cosine"})
    model = build_model((1, 8, 8), 17, "eps", "cosine", {"channels": 8}, -10.0, 7.0)
    nll = tmp_path / f"{dataset}-nll.json"
    settings = NllSettings(split="test", num_time_samples=2, time_sampling="logsnr",
                           discrete_steps=None, batch_size=16, max_examples=16, ode=None)
    write_nll(model, config, "cpu", settings, model_path=tmp_path / "model.pt", seed=0, ema=True,
              out=nll, started=time.perf_counter())
    train = tmp_path / "train.json"
    train.write_text(json.dumps({
        "dataset": dataset, "objective": "eps", "schedule": "cosine", "seed": 0, "steps": 1,
        "train_seconds": 1.0, "num_params": 1, "final_loss": 0.5, "logsnr_max": 7.0,
        "logsnr_min": -10.0, "config": config.to_dict(), "provenance": {"device": "cpu"}}))
    metrics = tmp_path / f"{dataset}-metrics.json"
    collect_metrics(train, nll, None, metrics)
    return json.loads(nll.read_text()), json.loads(metrics.read_text())


def test_nll_job_and_metrics_json_carry_the_known_answer_and_name_the_mixture(tmp_path) -> None:
    from vdm.reporting.summary_columns import KNOWN_DENSITY_COLUMNS
    from vdm.reporting.summary_load import load_metrics

    nll, metrics = _write_nll_and_collect(tmp_path, "digits-gmm")
    elbo_columns = [c for c in KNOWN_DENSITY_COLUMNS if "ode" not in c]
    assert set(elbo_columns) <= set(nll) and set(elbo_columns) <= set(metrics)
    assert metrics["mixture"] == nll["mixture"] == mixture_record(load_mixture())
    assert metrics["mixture"]["sha256"] == load_mixture().sha256
    assert metrics["mixture"]["num_components"] == 40 and metrics["mixture"]["num_samples"] == 100_000
    assert metrics["nll_minus_entropy_bpd"] == pytest.approx(
        metrics["nll_bpd"] - metrics["true_nll_bpd"], abs=1e-9)
    row = load_metrics([tmp_path / "digits-gmm-metrics.json"]).iloc[0]
    assert row["true_entropy_bpd"] == metrics["true_entropy_bpd"]
    _, plain = _write_nll_and_collect(tmp_path, "digits")  # no known density: nothing added
    assert not set(KNOWN_DENSITY_COLUMNS) & set(plain) and "mixture" not in plain
