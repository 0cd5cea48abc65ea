"""vdm.evaluation.excess_eps_error: the excess ε-error over the exact denoiser of a known
density, per λ, and its table, Markdown section and plot (vdm.reporting.excess_eps_table)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from gmm_cases import brute_posterior, tiny_mixture
from torch import nn

from vdm.core.data import ImageData, load_dataset
from vdm.core.digits_gmm import load_mixture
from vdm.evaluation.excess_eps_error import (
    EXCESS_NOTE,
    EXCESS_WEIGHTING,
    RECORD_KIND,
    evaluation_grid,
    excess_eps_error,
    model_excess_eps_error,
    weighted_excess,
)
from vdm.model.bayes_denoiser import BayesDenoiser
from vdm.model.objectives import get_objective
from vdm.model.schedules import get_schedule
from vdm.reporting.excess_eps_table import (
    excess_eps_cells,
    excess_eps_markdown,
    load_excess_eps_errors,
)
from vdm.reporting.likelihood_plots import plot_excess_eps_error
from vdm.reporting.stats import mean_ci
from vdm.reporting.table_files import aggregate_main

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

LAMBDAS = [-8.0, -3.0, 0.0, 3.0, 6.0]


def _small(data: ImageData, n: int) -> ImageData:
    return ImageData(data.name, data.split, data.images[:n], data.labels[:n], data.num_levels)


def _gmm_splits(n: int = 40) -> dict[str, ImageData]:
    return {split: _small(load_dataset("digits-gmm", split), n) for split in ("train", "test")}


class _Shifted(nn.Module):
    """A model whose ε̂ is ``base``'s plus a fixed ``delta`` (per image, broadcast)."""

    def __init__(self, base: BayesDenoiser, delta: torch.Tensor) -> None:
        super().__init__()
        self.base, self.delta = base, delta
        self.num_classes = base.num_classes

    def eps(self, z: torch.Tensor, log_snr: torch.Tensor,
            labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.base.eps(z, log_snr, labels) + self.delta


def test_evaluation_grid_is_the_common_grid_plus_the_end_points() -> None:
    grid, common = evaluation_grid(-10.0, 7.0)
    assert grid == [float(v) for v in range(-10, 8)] and all(common)
    grid, common = evaluation_grid(-9.5, 2.25)
    assert grid == [-9.5, *map(float, range(-9, 3)), 2.25]
    assert common == [False, *[True] * 12, False]
    assert evaluation_grid(-1.0, 1.0, step=2.0) == ([-1.0, 0.0, 1.0], [False, True, False])
    with pytest.raises(ValueError, match="log-SNR range"):
        evaluation_grid(3.0, 3.0)


def test_the_exact_denoiser_has_zero_excess() -> None:
    """The model IS ε̂*: it sees the same float32 z, so only its float32 output differs."""
    model = BayesDenoiser(load_mixture(), get_schedule("cosine", logsnr_min=-10.0,
                                                       logsnr_max=7.0))
    frame, per_image = excess_eps_error(model, load_mixture(), _gmm_splits(), LAMBDAS,
                                        num_examples=30, seed=0)
    assert list(frame["split"]) == ["train"] * 5 + ["test"] * 5 and (frame["n"] == 30).all()
    assert frame["excess"].abs().max() < 1e-6 and frame["distance"].max() < 1e-12
    assert (frame["bayes_mse"] > 0).all() and per_image["test"].shape == (30, 5)
    weighted = weighted_excess(per_image["test"], LAMBDAS, get_objective("elbo"), -8.0, 6.0)
    assert abs(weighted["excess"]) < 1e-5


def test_a_shifted_denoiser_has_excess_norm_delta_squared_over_d() -> None:
    """ε̂ = ε̂* + δ: distance_i = ‖δ‖²/D exactly, excess_i = ‖δ‖²/D + 2 δ·(ε̂*_i − ε_i)/D, so
    the runs with +δ and −δ (same images, noise and z) average to ‖δ‖²/D exactly, and each
    is within its standard error of it (the cross term has mean 0)."""
    mixture = load_mixture()
    base = BayesDenoiser(mixture, get_schedule("cosine", logsnr_min=-10.0, logsnr_max=7.0))
    gen = torch.Generator().manual_seed(3)
    delta = 0.1 * torch.randn((1, 1, 8, 8), generator=gen)
    expected = float(delta.double().square().mean())
    splits = _gmm_splits(60)
    plus, _ = excess_eps_error(_Shifted(base, delta), mixture, splits, LAMBDAS, seed=1)
    minus, _ = excess_eps_error(_Shifted(base, -delta), mixture, splits, LAMBDAS, seed=1)
    np.testing.assert_allclose(plus["distance"], expected, rtol=1e-5)
    np.testing.assert_allclose((plus["excess"] + minus["excess"]) / 2, expected, rtol=1e-4)
    np.testing.assert_allclose(plus["cross"], plus["excess"] - plus["distance"], atol=1e-12)
    assert ((plus["excess"] - expected).abs() < 4 * plus["excess_se"]).all()
    assert (plus["excess_se"] > 0).all()


class _BruteForce(nn.Module):
    """``ε*(z[, c]) = (z − α E[x | z[, c]]) / σ`` of the tiny mixture by enumeration
    (:func:`gmm_cases.brute_posterior`); ``conditional``: uses the labels it is given."""

    def __init__(self, conditional: bool, use_labels: bool) -> None:
        super().__init__()
        self.mixture = tiny_mixture()
        self.num_classes = self.mixture.num_classes if conditional else None
        self.use_labels = use_labels

    def eps(self, z: torch.Tensor, log_snr: torch.Tensor,
            labels: torch.Tensor | None = None) -> torch.Tensor:
        lam = float(log_snr[0])
        flat = z.reshape(z.shape[0], -1).double().numpy()
        mean = np.empty_like(flat)
        for c in ([None] if labels is None or not self.use_labels else labels.unique().tolist()):
            rows = slice(None) if c is None else (labels == c).numpy()
            mean[rows] = brute_posterior(self.mixture, flat[rows], lam, c)[0]
        alpha, sigma = math.sqrt(1 / (1 + math.exp(-lam))), math.sqrt(1 / (1 + math.exp(lam)))
        return torch.from_numpy((flat - alpha * mean) / sigma).float().view(z.shape)


def _tiny_split(n: int) -> dict[str, ImageData]:
    mixture = tiny_mixture()
    levels, labels = mixture.sample(n, seed=5)
    return {"test": ImageData("tiny", "test", torch.from_numpy(levels),
                              torch.from_numpy(labels), mixture.num_levels)}


@pytest.mark.parametrize("lam", [-4.0, 0.0, 3.0, 8.0])
def test_the_conditional_target_equals_enumeration(lam: float) -> None:
    """A class-conditional model gets the images' labels and is compared with ε̂*(z, c): the
    brute-force conditional ε* has zero excess; the unconditional ε* given as a conditional
    model (it ignores the labels) has a positive one, and vice versa."""
    mixture, splits = tiny_mixture(), _tiny_split(200)
    assert len(set(splits["test"].labels.tolist())) == 2
    for conditional in (True, False):
        frame, _ = excess_eps_error(_BruteForce(conditional, True), mixture, splits, [lam])
        assert abs(frame["excess"].iloc[0]) < 1e-6 and frame["distance"].iloc[0] < 1e-12
    if lam < 5:  # at high SNR z pins x down and E[x | z, c] = E[x | z] for the true class
        ignoring, _ = excess_eps_error(_BruteForce(True, False), mixture, splits, [lam])
        assert ignoring["distance"].iloc[0] > 1e-4  # > 0 per image; the excess in expectation
        assert abs(ignoring["cross"].iloc[0]) < 4 * ignoring["cross_se"].iloc[0]


def test_weighted_excess_is_half_the_weighted_integral_per_image() -> None:
    per_image = torch.tensor([[0.1, 0.3, 0.5], [0.3, 0.5, 0.7]], dtype=torch.float64)
    out = weighted_excess(per_image, [-2.0, 0.0, 2.0], get_objective("elbo"), -2.0, 2.0)
    # w = 1: ½ · trapezoid, step 2: ½ · (0.1/2 + 0.3 + 0.5/2) · 2 = 0.6 and 1.0; SE = 0.2
    assert out["excess"] == pytest.approx(0.8) and out["excess_se"] == pytest.approx(0.2)
    # eps: w = 2/Δλ = 1/2: the mean over λ uniform
    eps = weighted_excess(per_image, [-2.0, 0.0, 2.0], get_objective("eps"), -2.0, 2.0)
    assert eps["excess"] == pytest.approx(0.4)


def test_a_dataset_without_a_known_density_is_a_one_line_error() -> None:
    model = BayesDenoiser(load_mixture(), get_schedule("cosine", logsnr_min=-10.0,
                                                       logsnr_max=7.0))
    config = type("Config", (), {"dataset": "digits", "data_root": "data"})()
    with pytest.raises(ValueError, match=r"^dataset: 'digits' has no known density[^\n]*$"):
        model_excess_eps_error(model, config)
    with pytest.raises(ValueError, match="num_examples"):
        excess_eps_error(model, load_mixture(), _gmm_splits(4), LAMBDAS, num_examples=1)


# ---- the grid's table, Markdown and plot ---------------------------------------------------
def _record(objective: str, seed: int, grid: list[float], common: list[bool],
            level: float) -> dict:
    """A metrics.json with an ``excess_eps_error`` record whose excess is ``level · 2^λ/4``."""
    rows = [{"split": split, "log_snr": lam, "common": on, "n": 50,
             "model_mse": 1.0, "bayes_mse": 0.5, "excess": level * 2 ** (lam / 4) * scale,
             "excess_se": 0.01, "distance": level * 2 ** (lam / 4) * scale, "distance_se": 0.01,
             "cross": 0.0, "cross_se": 0.01}
            for split, scale in (("train", 0.5), ("test", 1.0))
            for lam, on in zip(grid, common, strict=True)]
    return {"dataset": "digits-gmm", "objective": objective, "schedule": "cosine", "seed": seed,
            "steps": 10, "train_seconds": 1.0, "num_params": 1, "final_loss": 0.1,
            "logsnr_max": grid[-1], "logsnr_min": grid[0], "nll_bpd": 2.0 + seed / 10,
            "nll_bpd_se": 0.01, "nll_reconstruction_bpd": 0.1, "nll_prior_bpd": 1e-4,
            "nll_diffusion_bpd": 1.9 + seed / 10, "fid": 5.0 + seed, "kid": 0.1, "kid_std": 0.01,
            "precision": 0.8, "recall": 0.7, "feature_extractor": "classifier-digits",
            "num_fid_samples": 100, "config": {"lr": 1e-3}, "provenance": {"git_commit": "abc"},
            "excess_eps_error_test": level * (1 + seed), "excess_eps_error_test_se": 0.01,
            "excess_eps_error_train": level * seed, "excess_eps_error_train_se": 0.01,
            "excess_eps_error": {
                "rows": rows, "weighted": {"train": {"excess": level * seed, "excess_se": 0.01},
                                           "test": {"excess": level * (1 + seed),
                                                    "excess_se": 0.01}}}}


def _write_records(tmp_path: Path) -> list[Path]:
    paths = []
    for objective, level in (("eps", 0.02), ("elbo", 0.01)):
        for seed in (0, 1, 2):
            # seed 2's learned range ends at 3.5: λ = 4 is on its grid only for seeds 0 and 1
            hi = 3.5 if seed == 2 else 4.0
            grid, common = evaluation_grid(-2.0, hi)
            path = tmp_path / f"{objective}{seed}" / "metrics.json"
            path.parent.mkdir()
            path.write_text(json.dumps(_record(objective, seed, grid, common, level)))
            paths.append(path)
    return paths


def test_cells_are_means_and_t_cis_over_seeds_on_the_common_grid(tmp_path: Path) -> None:
    frame = load_excess_eps_errors(_write_records(tmp_path))
    assert len(frame) == 2 * (7 + 7 + 7) * 2  # objectives x rows per seed (seed 2: 3.5) x splits
    cells = excess_eps_cells(frame)
    test = cells[(cells["objective"] == "eps") & (cells["split"] == "test")]
    assert list(test["log_snr"]) == [-2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0]  # 3.5: not common
    assert list(test["n"]) == [3] * 6 + [2]
    np.testing.assert_allclose(test["excess_mean"], 0.02 * 2 ** (test["log_snr"] / 4))
    assert (test["excess_ci"] < 1e-15).all()  # the seeds agree per λ: a zero-width interval
    mean, ci = mean_ci([0.02, 0.04, 0.06])
    assert test["weighted_excess_mean"].iloc[0] == pytest.approx(mean)
    assert test["weighted_excess_ci"].iloc[0] == pytest.approx(ci)
    assert list(dict.fromkeys(cells["objective"])) == ["eps", "elbo"]  # config order
    markdown = excess_eps_markdown(frame, EXCESS_NOTE, EXCESS_WEIGHTING)
    assert "largest at λ" in markdown and "How to read it" in markdown
    row = next(line for line in markdown.splitlines() if line.startswith("| eps |"))
    assert f"{mean:.4f} ± {ci:.4f}" in row and "| 4 |" in row  # largest: the top of the grid


@pytest.mark.parametrize("shift", [0.0, -0.05])
def test_plot_draws_log_or_symmetric_log(tmp_path: Path, shift: float) -> None:
    cells = excess_eps_cells(load_excess_eps_errors(_write_records(tmp_path)))
    cells["excess_mean"] += shift  # negative means need the symmetric log axis
    path = plot_excess_eps_error(cells, tmp_path)
    assert path.name == "excess_eps_error.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "none").mkdir()
    empty = plot_excess_eps_error(pd.DataFrame(), tmp_path / "none")
    assert empty.stat().st_size > 1000


def test_aggregate_writes_the_table_the_section_and_the_columns(tmp_path: Path) -> None:
    paths = aggregate_main(_write_records(tmp_path), tmp_path / "tables")
    assert "excess_eps_error.csv" in paths and "denoiser_floor.csv" not in paths
    table = pd.read_csv(paths["excess_eps_error.csv"])
    assert {"dataset", "objective", "schedule", "split", "log_snr", "n", "excess_mean",
            "excess_ci", "weighted_excess_mean"} <= set(table.columns)
    assert "### Excess ε-error over the exact denoiser" in paths["summary.md"].read_text()
    tex = paths["summary.tex"].read_text()
    assert "tab:digits-gmm-excess-eps-error" in tex and tex.isascii()
    summary = pd.read_csv(paths["summary.csv"])
    assert summary["excess_eps_error_test"].notna().all()


def test_a_briefly_trained_model_on_digits_gmm_routes_to_the_excess(tmp_path: Path) -> None:
    """vdm's denoiser_floor on digits-gmm: the record is the excess over the exact denoiser
    (positive for a 12-step model, in expectation and in its low-variance form), JSON-able,
    and collect puts its weighted values into metrics.json."""
    from test_trainer import tiny_config

    from vdm.evaluation.optimal_denoiser import denoiser_floor
    from vdm.training.trainer import Trainer

    config = tiny_config(dataset="digits-gmm", objective="elbo", schedule="cosine")
    Trainer(config, tmp_path).fit()
    record = denoiser_floor(tmp_path / "model.pt")
    json.dumps(record)
    assert record["kind"] == RECORD_KIND and record["target"] == "eps*(z) = E[eps | z]"
    assert record["log_snrs"] == [float(v) for v in range(-10, 8)] and all(record["common"])
    rows = pd.DataFrame(record["rows"])
    assert (rows["distance"] > 0).all() and record["weighted"]["test"]["excess"] > 0
    assert ((rows["excess"] - rows["distance"]).abs() < 5 * rows["cross_se"] + 1e-9).all()
    print(rows[rows["split"] == "test"][["log_snr", "excess", "excess_se", "distance"]]
          .to_string(index=False), record["weighted"], f"{record['wall_seconds']:.2f} s")
