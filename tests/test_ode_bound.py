"""The decoder-consistent ODE bound (vdm.model.ode_bound) against the exact answer of a small
discrete dataset: 8 distinct points of D = 4 dimensions on K = 17 levels, modelled by their
exact posterior-mean denoiser, so the data's -log2 P is log2(8) / 4 = 0.75 bits/dim exactly."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch

from vdm.core.data import ImageData
from vdm.evaluation.evaluate import evaluate_nll
from vdm.evaluation.optimal_denoiser import optimal_eps
from vdm.model.likelihood import elbo_bpd
from vdm.model.ode import ode_nll
from vdm.model.ode_bound import decoder_consistent_bpd, ode_vdeq_nll
from vdm.model.schedules import get_schedule
from vdm.pipeline.nll_command import ode_bound_vs_elbo

NUM_LEVELS, NUM_POINTS, DIMS = 17, 8, 4
TRUE_BPD = math.log2(NUM_POINTS) / DIMS
LOG_SNR_MAXES = (3.0, 5.0, 7.0, 10.0, 13.3)
REPEATS = 8  # every point 8 times: 64 examples


def training_levels() -> torch.Tensor:
    """The 8 points as level indices ``(8, 1, 2, 2)`` (distinct, so ``P(x_i) = 1/8``)."""
    levels = torch.randint(0, NUM_LEVELS, (NUM_POINTS, 1, 2, 2),
                           generator=torch.Generator().manual_seed(3))
    assert len({tuple(p.flatten().tolist()) for p in levels}) == NUM_POINTS
    return levels


TRAIN = training_levels().double() * 2 / (NUM_LEVELS - 1) - 1


def exact_eps(z: torch.Tensor, log_snr: torch.Tensor) -> torch.Tensor:
    """The posterior-mean ε of the 8 points (the exact score of the model's marginals)."""
    return optimal_eps(z, log_snr, TRAIN).to(z.dtype)


class ExactModel(torch.nn.Module):
    """The exact denoiser as a model (``eps``, ``schedule``) for the test-set functions."""

    num_classes = None

    def __init__(self, log_snr_max: float) -> None:
        super().__init__()
        self.schedule = get_schedule("cosine", logsnr_max=log_snr_max)

    def eps(self, z: torch.Tensor, log_snr: torch.Tensor) -> torch.Tensor:
        return exact_eps(z, log_snr)


def points_data(repeats: int) -> ImageData:
    levels = training_levels().repeat(repeats, 1, 1, 1)
    return ImageData(images=levels.to(torch.uint8), labels=torch.zeros(len(levels), dtype=torch.int64),
                     num_levels=NUM_LEVELS, name="points", split="test")


def mean_se(values: torch.Tensor) -> tuple[float, float]:
    return float(values.mean()), float(values.std(unbiased=True) / math.sqrt(len(values)))


@pytest.fixture(scope="module", autouse=True)
def single_thread() -> Iterator[None]:
    """Small tensors: one torch thread is much faster than contended threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def bounds() -> dict[float, tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]]:
    """Per λ_max: the decoder-consistent bound (exact divergence, tight solver) and the ELBO
    (1024 noise levels per example), per example in bits/dim, drawn from the same seed: both draw
    the decoder's ``z_0`` first, so they share it (common random numbers)."""
    x = TRAIN.repeat(REPEATS, 1, 1, 1)
    out = {}
    for log_snr_max in LOG_SNR_MAXES:
        schedule = get_schedule("cosine", logsnr_max=log_snr_max)
        vdeq = decoder_consistent_bpd(exact_eps, x, schedule, NUM_LEVELS, exact_divergence=True,
                                      rtol=1e-6, atol=1e-6,
                                      generator=torch.Generator().manual_seed(0))
        elbo = elbo_bpd(exact_eps, x, schedule, NUM_LEVELS, num_time_samples=1024,
                        generator=torch.Generator().manual_seed(0))
        out[log_snr_max] = (vdeq, elbo)
    return out


def test_bound_is_above_the_true_nll_and_tight_where_the_decoder_is_sharp(bounds) -> None:
    """At every λ_max the estimate is at least the data's -log2 P / D (within 2 SE); from
    λ_max = 10 the decoder is sharp (reconstruction ~ 0) and the bound equals it."""
    for log_snr_max, (vdeq, _) in bounds.items():
        mean, se = mean_se(vdeq["total"])
        assert mean >= TRUE_BPD - 2 * se, (log_snr_max, mean, se)
        torch.testing.assert_close(vdeq["total"], vdeq["reconstruction"] + vdeq["latent"])
        if log_snr_max >= 10:
            assert mean - TRUE_BPD < 2e-3 and float(vdeq["reconstruction"].max()) < 1e-6
    low = mean_se(bounds[3.0][0]["total"])[0]
    assert low > TRUE_BPD + 2  # at λ_max = 3 the decoder cannot tell the 17 levels apart


def test_bound_agrees_with_the_elbo_of_the_exact_denoiser(bounds) -> None:
    """With the exact score the ODE's and the reverse SDE's densities of ``z_0`` coincide (up to
    the N(0, I) prior's mismatch), so the two bounds agree: same decoder term on the same
    ``z_0``, and a paired difference within 3 SE of zero at every λ_max."""
    for log_snr_max, (vdeq, elbo) in bounds.items():
        torch.testing.assert_close(vdeq["reconstruction"], elbo["reconstruction"])
        difference, se = mean_se(vdeq["total"] - elbo["total"])
        assert abs(difference) <= 3 * se, (log_snr_max, difference, se)
        assert se < (0.06 if log_snr_max < 7 else 0.02)


def test_uniform_dequantization_measures_the_model_sharpness_not_the_likelihood(bounds) -> None:
    """Documents issue 18: the uniform-dequantization ODE value of the same exact model is below
    the ELBO at low λ_max and orders of magnitude above the true value at high λ_max, where the
    decoder-consistent bound is exact."""
    uniform = {}
    for log_snr_max in LOG_SNR_MAXES:
        result = ode_nll(ExactModel(log_snr_max), points_data(1), seed=4, rtol=1e-4, atol=1e-4)
        uniform[log_snr_max] = result["nll_ode_bpd"]
    elbo = {lam: mean_se(e["total"])[0] for lam, (_, e) in bounds.items()}
    assert uniform[3.0] < elbo[3.0] - 0.3 and uniform[5.0] < elbo[5.0] - 0.3
    assert uniform[10.0] > 10 * TRUE_BPD and uniform[13.3] > 100 * TRUE_BPD
    assert uniform[13.3] > 10 * uniform[10.0] > 10 * uniform[7.0]


def test_test_set_function_pairs_with_the_elbo_on_the_same_images() -> None:
    """``ode_vdeq_nll`` (Hutchinson, float32 data) on 16 images: its columns, the Hutchinson
    estimate close to the exact bound, and the paired columns of the NLL evaluation, whose ELBO
    (same seed, same first batch) draws the same ``z_0`` for its decoder term."""
    model, data = ExactModel(7.0), points_data(2)
    result = ode_vdeq_nll(model, data, max_examples=16, num_probes=2, seed=1,
                          return_per_example=True)
    per_example = result.pop("per_example_bpd")
    assert set(result) == {"nll_ode_vdeq_bpd", "nll_ode_vdeq_bpd_se",
                           "nll_ode_vdeq_reconstruction_bpd", "nll_ode_vdeq_latent_bpd"}
    assert per_example.shape == (16,) and per_example.dtype == torch.float64
    assert result["nll_ode_vdeq_bpd"] == pytest.approx(
        result["nll_ode_vdeq_reconstruction_bpd"] + result["nll_ode_vdeq_latent_bpd"])
    exact = decoder_consistent_bpd(exact_eps, TRAIN.repeat(2, 1, 1, 1), model.schedule,
                                   NUM_LEVELS, exact_divergence=True,
                                   generator=torch.Generator().manual_seed(1))["total"]
    gap = result["nll_ode_vdeq_bpd"] - float(exact.mean())
    assert abs(gap) < 3 * math.hypot(result["nll_ode_vdeq_bpd_se"], mean_se(exact)[1])
    elbo_result = evaluate_nll(model, data, max_examples=16, num_time_samples=64, seed=1,
                               return_per_example=True)
    assert result["nll_ode_vdeq_reconstruction_bpd"] == pytest.approx(
        elbo_result["nll_reconstruction_bpd"], rel=1e-6)
    elbo = elbo_result["per_example_bpd"]
    paired = ode_bound_vs_elbo(per_example, elbo, "nll_ode_vdeq")
    assert set(paired) == {"nll_elbo_bpd_on_ode_examples", "nll_ode_vdeq_minus_elbo_bpd",
                           "nll_ode_vdeq_minus_elbo_bpd_se"}
    assert paired["nll_ode_vdeq_minus_elbo_bpd"] == pytest.approx(
        float((per_example - elbo).mean()))
