"""vdm.evaluation.optimal_denoiser: the exact posterior-mean ε-predictor of a training set, and
the gap to it."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_trainer import tiny_config

from vdm.core.data import ImageData, load_dataset
from vdm.evaluation.optimal_denoiser import (
    OPTIMUM_NOTE,
    denoiser_floor,
    denoiser_gap,
    optimal_eps,
    posterior_mean,
    weighted_gap,
)
from vdm.model.objectives import get_objective
from vdm.model.schedules import alpha_sigma
from vdm.training.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py




def _noisy(x: torch.Tensor, lam: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    eps = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    alpha, sigma = alpha_sigma(torch.tensor(lam, dtype=torch.float64))
    return alpha * x + sigma * eps, eps


def test_posterior_mean_matches_the_direct_softmax() -> None:
    gen = torch.Generator().manual_seed(0)
    train = torch.rand(40, 1, 4, 4, generator=gen, dtype=torch.float64) * 2 - 1
    z = torch.randn(7, 1, 4, 4, generator=gen, dtype=torch.float64)
    lam = torch.tensor([-3.0, -1.0, 0.0, 1.0, 2.0, 4.0, 6.0], dtype=torch.float64)
    alpha, sigma = alpha_sigma(lam)
    dist2 = (z.flatten(1)[:, None, :] - alpha[:, None, None] * train.flatten(1)[None]).square().sum(-1)
    weights = torch.softmax(-dist2 / (2 * sigma[:, None] ** 2), dim=1)
    expected = (weights @ train.flatten(1)).view_as(z)
    torch.testing.assert_close(posterior_mean(z, lam, train, chunk_size=3), expected,
                               rtol=1e-10, atol=1e-12)
    eps = optimal_eps(z, lam, train)
    torch.testing.assert_close(eps, (z - alpha.view(-1, 1, 1, 1) * expected) / sigma.view(-1, 1, 1, 1))


@pytest.mark.parametrize("lam", [-8.0, 0.0, 5.0, 12.0])
def test_one_training_image_recovers_the_noise_exactly(lam: float) -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(1, 1, 8, 8, generator=gen, dtype=torch.float64) * 2 - 1
    z, eps = _noisy(x.expand(5, -1, -1, -1), lam, gen)
    torch.testing.assert_close(optimal_eps(z, lam, x), eps, rtol=0, atol=1e-9 * math.exp(lam / 2))


def test_two_separated_images_at_high_snr_pick_the_right_one() -> None:
    gen = torch.Generator().manual_seed(2)
    train = torch.stack([torch.full((1, 8, 8), -0.8), torch.full((1, 8, 8), 0.8)]).double()
    pick = torch.tensor([0, 1, 1, 0, 1])
    z, _ = _noisy(train[pick], 4.0, gen)
    torch.testing.assert_close(posterior_mean(z, 4.0, train), train[pick], rtol=0, atol=1e-12)


def test_very_low_snr_predicts_from_the_dataset_mean() -> None:
    gen = torch.Generator().manual_seed(3)
    train = torch.rand(30, 1, 4, 4, generator=gen, dtype=torch.float64) * 2 - 1
    lam = -30.0
    z = torch.randn(6, 1, 4, 4, generator=gen, dtype=torch.float64)
    alpha, sigma = alpha_sigma(torch.tensor(lam, dtype=torch.float64))
    mean_prediction = (z - alpha * train.mean(0)) / sigma
    torch.testing.assert_close(optimal_eps(z, lam, train), mean_prediction, rtol=0, atol=1e-12)


class _OptimumAsModel:
    """The training-set optimum behind a model's ``eps(z, λ)`` interface."""

    def __init__(self, train: torch.Tensor) -> None:
        self.train = train

    def eps(self, z: torch.Tensor, log_snr: torch.Tensor) -> torch.Tensor:
        return optimal_eps(z.double(), log_snr.double(), self.train)


def _small_split(data: ImageData, n: int) -> ImageData:
    return ImageData(data.name, data.split, data.images[:n], data.labels[:n], data.num_levels)


def test_gap_of_the_optimum_itself_is_about_zero_and_paired() -> None:
    train = _small_split(load_dataset("digits", "train"), 200)
    test = _small_split(load_dataset("digits", "test"), 50)
    model = _OptimumAsModel(train.model_inputs())
    frame = denoiser_gap(model, train, test, [-4.0, 0.0, 4.0], num_examples=60, seed=0)
    assert list(frame["split"]) == ["train"] * 3 + ["test"] * 3
    assert list(frame["n"]) == [60] * 3 + [50] * 3
    # the model sees z in float32: its ε differs from the optimum's only by that rounding
    assert frame["gap"].abs().max() < 1e-4
    assert (frame["optimum_mse"] >= 0).all()
    again = denoiser_gap(model, train, test, [-4.0, 0.0, 4.0], num_examples=60, seed=0)
    assert again.equals(frame)


def test_weighted_gap_for_elbo_is_half_the_integral() -> None:
    frame = pd.DataFrame({"split": "train", "log_snr": [-2.0, 0.0, 2.0],
                          "model_mse": [0.2, 0.4, 0.6], "optimum_mse": [0.1, 0.1, 0.1]})
    frame["gap"] = frame["model_mse"] - frame["optimum_mse"]
    out = weighted_gap(frame, get_objective("elbo"), -2.0, 2.0)["train"]
    # w = 1: ½ ∫ gap dλ = ½ · trapezoid([0.1, 0.3, 0.5], step 2) = ½ · 1.2
    assert out["gap"] == pytest.approx(0.6) and out["model"] == pytest.approx(0.8)
    # eps: c = 1, w = 2/Δλ → the mean of the gap over λ uniform: trapezoid / 4
    assert weighted_gap(frame, get_objective("eps"), -2.0, 2.0)["train"]["gap"] == pytest.approx(0.3)


def test_trained_model_is_above_the_floor_and_the_run_record(tmp_path: Path) -> None:
    """A small trained model's training error is above the optimum's (the minimiser) on average;
    on test images the memorising optimum is far worse at high SNR. The per-run record is
    JSON-able and cheap."""
    config = tiny_config(objective="eps", schedule="cosine")
    Trainer(config, tmp_path).fit()
    started = time.perf_counter()
    record = denoiser_floor(tmp_path / "model.pt", num_log_snrs=9)
    seconds = time.perf_counter() - started
    json.dumps(record)
    assert seconds < 10  # ~1.5 s for 300 images x 9 λ x 2 splits on one core
    assert record["note"] == OPTIMUM_NOTE and "memorises" in record["note"]
    rows = record["rows"]
    assert len(rows) == 18 and record["num_examples"] == {"train": 300, "test": 300}
    assert record["num_train_images"] == 1497
    train = [r for r in rows if r["split"] == "train"]
    test = [r for r in rows if r["split"] == "test"]
    assert sum(r["gap"] for r in train) > 0
    assert all(r["gap"] > -3 * r["gap_se"] for r in train)
    assert test[-1]["optimum_mse"] > 10 * train[-1]["optimum_mse"]  # memorised, not general
    assert record["weighted"]["train"]["gap"] > 0 > record["weighted"]["test"]["gap"]
    assert record["log_snrs"][0] == pytest.approx(config.logsnr_min, abs=1e-4)
    assert record["log_snrs"][-1] == pytest.approx(config.logsnr_max, abs=1e-4)
