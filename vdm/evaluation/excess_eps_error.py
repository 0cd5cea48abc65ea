"""Where in λ a model loses: its excess ε-error over the exact (Bayes-optimal) denoiser, on a
dataset whose distribution is known (``digits-gmm``; :func:`vdm.evaluation.known_density.known_mixture`).

For ``z = α x + σ ε`` (``α² = sigmoid(λ)``, ``σ² = sigmoid(−λ)``) the minimiser over all functions
of the expected ε-error ``E‖ε̂(z, λ) − ε‖²`` is ``ε̂*(z, λ) = E[ε | z] = (z − α E[x | z]) / σ``
(:meth:`vdm.model.bayes_denoiser.BayesEpsNetwork.eps_star`, exact for the true distribution).
For a class-conditional model the target is ``ε̂*(z, c) = E[ε | z, c]`` (``E[x | z, c]``) with the
images' labels ``c``, which the model also gets as its conditioning. Per image ``i`` (``D``
dimensions; per-dimension squared errors, dimensionless):

    model_mse_i = ‖ε̂_i − ε_i‖² / D,      bayes_mse_i = ‖ε̂*_i − ε_i‖² / D,
    excess_i    = model_mse_i − bayes_mse_i                                  (paired),
    distance_i  = ‖ε̂_i − ε̂*_i‖² / D,
    excess_i    = distance_i + 2 (ε̂_i − ε̂*_i)·(ε̂*_i − ε_i) / D               (exactly).

The cross term has conditional mean 0 given ``z`` (and ``c``), because ``ε̂*`` is the posterior
mean of ``ε`` and ``ε̂`` a function of ``z`` (and ``c``); hence ``E[excess] = E[distance] ≥ 0``
for every model: ``excess`` is the definition (a paired difference on the same images, noise and
``z``), ``distance`` an estimator of the same expectation that is ``≥ 0`` per image and has a
smaller variance, and ``cross = excess − distance`` must average to 0 within its standard error
(a check of the exact denoiser itself). A model that outputs ``ε̂* + δ`` (a fixed ``δ``) has
``distance_i = ‖δ‖² / D`` exactly and ``excess_i = ‖δ‖²/D + 2 δ·(ε̂*_i − ε_i) / D``.

**λ grid.** Every run is evaluated at the points of one fixed grid common to all runs (the
multiples of :data:`COMMON_LOG_SNR_STEP` inside its own ``[λ_min, λ_max]``, rows with
``common = True``), so cells can be averaged over seeds and compared at the same λ in one plot,
plus its own end points (rows with ``common = False`` unless they are grid points) so that the
weighted integral spans exactly the model's range.

**Weighted.** ``½ ∫ w(λ) excess(λ) dλ`` over ``[λ_min, λ_max]`` with the objective's implied
weight ``w(λ) = 2 c(λ, Δλ) / Δλ`` for λ uniform on that range (as
:func:`vdm.evaluation.optimal_denoiser.weighted_gap`), trapezoid rule over the grid, computed per
image and then averaged (so it has a paired standard error). For ``elbo`` (``w = 1``) it is the
expected excess of the ELBO's diffusion term over the exact denoiser's, nats per dimension.

``z`` is formed in float64 and rounded to float32, the model's input; ``ε̂*`` is computed (in
float64) from that same rounded ``z``, so a model that *is* the exact denoiser differs from the
target only by the float32 rounding of its output.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from vdm.core.data import ImageData, load_dataset
from vdm.core.digits_gmm import GaussianMixtureData
from vdm.evaluation.known_density import known_mixture
from vdm.model.bayes_denoiser import BayesEpsNetwork
from vdm.model.objectives import Objective
from vdm.model.schedules import schedule_endpoints

#: Spacing of the λ grid common to every run (the multiples of it inside each run's range).
COMMON_LOG_SNR_STEP = 1.0
#: Distinguishes this record from the memorising optimum's in ``denoiser_floor.json``.
RECORD_KIND = "excess_eps_error"
EXCESS_NOTE = ("excess ε-error = E‖ε̂ − ε‖² − E‖ε̂* − ε‖² per dimension (dimensionless), paired "
               "on the same test images, noise and z, with ε̂* = E[ε | z] (E[ε | z, c] with the "
               "images' labels for a class-conditional model) the exact Bayes-optimal denoiser of "
               "the true distribution: ≥ 0 in expectation for every model, 0 for the optimum; "
               "it replaces, on this dataset, the memorising optimum of the training set")
EXCESS_WEIGHTING = ("weighted excess = ½ ∫ w(λ) excess(λ) dλ over the model's [λ_min, λ_max] "
                    "with the objective's implied weight w(λ) = 2c(λ, Δλ)/Δλ for λ uniform on "
                    "that range (trapezoid rule, per image, then mean ± SE over images); for "
                    "`elbo` this is the network's excess in the ELBO's diffusion term "
                    "(nats/dim)")


def evaluation_grid(logsnr_min: float, logsnr_max: float, step: float = COMMON_LOG_SNR_STEP
                    ) -> tuple[list[float], list[bool]]:
    """``(λ values ascending, on the common grid?)``: the multiples of ``step`` in
    ``[logsnr_min, logsnr_max]`` and the two end points (an end point on the grid counts once).
    End points rounded to 1e-6 first (a float32 schedule's 6.9999995 is 7, on the grid)."""
    lo, hi = round(float(logsnr_min), 6), round(float(logsnr_max), 6)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi) or not step > 0:
        raise ValueError(f"log-SNR range: expected finite λ_min < λ_max and step > 0, got "
                         f"[{lo}, {hi}] step {step}")
    points = {round(k * step, 6): True
              for k in range(math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9) + 1)}
    for end in (lo, hi):
        points.setdefault(end, False)
    grid = sorted(points)
    return grid, [points[v] for v in grid]


def model_log_snr_range(model: Any) -> tuple[float, float]:
    """``(λ_min, λ_max)`` of the model's schedule (the learned schedule's trained end points)."""
    with torch.no_grad():
        hi, lo = (float(v) for v in schedule_endpoints(model.schedule))
    return lo, hi


def _check_images(mixture: GaussianMixtureData, data: ImageData) -> None:
    if data.shape != tuple(mixture.shape) or data.num_levels != mixture.num_levels:
        raise ValueError(f"{data.name} {data.split}: images {data.shape} with {data.num_levels} "
                         f"levels, the mixture's are {tuple(mixture.shape)} with "
                         f"{mixture.num_levels}")


def _subset_index(n: int, num_examples: int, generator: torch.Generator) -> torch.Tensor:
    """All ``n`` indices in order when ``num_examples >= n``, else a sorted random subset."""
    if num_examples >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=generator)[:num_examples].sort().values


def _mean_se(values: torch.Tensor) -> tuple[float, float]:
    n = values.numel()
    se = float(values.std(unbiased=True)) / math.sqrt(n) if n > 1 else float("nan")
    return float(values.mean()), se


def per_image_errors(model: Any, network: BayesEpsNetwork, x: torch.Tensor, eps: torch.Tensor,
                     log_snr: float, labels: torch.Tensor | None, *, batch_size: int = 500
                     ) -> dict[str, torch.Tensor]:
    """``{model_mse, bayes_mse, excess, distance}`` per image ``(N,)`` float64 at one λ (module
    docstring). ``x``, ``eps``: float64 ``(N, ...)`` on the model's device; ``labels``: the
    images' classes for a class-conditional model (given to the model and to ``ε̂*(z, c)``),
    None for an unconditional one. λ is rounded to float32 first (the model's λ), and ``z``
    to float32 (the model's input); ``ε̂*`` gets the same λ and ``z``."""
    lam32 = float(torch.tensor(log_snr, dtype=torch.float32))
    lam64 = torch.tensor(lam32, dtype=torch.float64)
    alpha, sigma = torch.sigmoid(lam64).sqrt().item(), torch.sigmoid(-lam64).sqrt().item()
    z = (alpha * x + sigma * eps).float()
    target = network.eps_star(z, lam32, labels)
    with torch.no_grad():
        chunks = []
        for start in range(0, z.shape[0], batch_size):
            zc = z[start:start + batch_size]
            lam = torch.full((zc.shape[0],), lam32, device=z.device)
            chunks.append(model.eps(zc, lam) if labels is None else
                          model.eps(zc, lam, labels[start:start + batch_size]))
        predicted = torch.cat(chunks).to(torch.float64)
    model_mse = (predicted - eps).square().flatten(1).mean(1)
    bayes_mse = (target - eps).square().flatten(1).mean(1)
    return {"model_mse": model_mse, "bayes_mse": bayes_mse, "excess": model_mse - bayes_mse,
            "distance": (predicted - target).square().flatten(1).mean(1)}


def excess_eps_error(model: Any, mixture: GaussianMixtureData, splits: Mapping[str, ImageData],
                     log_snrs: Sequence[float], *, common: Sequence[bool] | None = None,
                     num_examples: int = 300, seed: int = 0, device: torch.device | str = "cpu",
                     batch_size: int = 500) -> tuple[pd.DataFrame, dict[str, torch.Tensor]]:
    """The model's excess ε-error over the exact denoiser of ``mixture``, per split and λ.

    Per split (in the order given), ``min(num_examples, N)`` images (all in order, or a random
    subset drawn with ``seed``) and one noise draw ``ε`` per image shared by all λ and by model
    and ``ε̂*``. A class-conditional model (``model.num_classes`` not None) gets the images'
    labels and is compared with ``ε̂*(z, c)``; an unconditional one with ``ε̂*(z)``. ``common``:
    which λ are on the common grid (:func:`evaluation_grid`; default all).

    Returns ``(frame, per_image)``: one row per (split, λ) with ``split``, ``log_snr``,
    ``common``, ``n`` and for each of ``model_mse``, ``bayes_mse``, ``excess``, ``distance`` and
    ``cross`` (``excess − distance``) the mean over images and its standard error (``*_se``);
    ``per_image[split]`` is the ``(n, len(log_snrs))`` float64 matrix of per-image excesses
    (for :func:`weighted_excess`).
    """
    if num_examples < 2:
        raise ValueError(f"num_examples: at least 2 images are needed for a standard error, got "
                         f"{num_examples}")
    if not log_snrs:
        raise ValueError("log_snrs: no λ given")
    common = [True] * len(log_snrs) if common is None else list(common)
    conditional = getattr(model, "num_classes", None) is not None
    network = BayesEpsNetwork(mixture).to(device)
    generator = torch.Generator().manual_seed(seed)
    rows, per_image = [], {}
    for split, data in splits.items():
        _check_images(mixture, data)
        index = _subset_index(len(data), num_examples, generator)
        x = data.model_inputs(index).to(device, torch.float64)
        eps = torch.randn(x.shape, generator=generator, dtype=torch.float64).to(device)
        labels = data.labels[index].to(device) if conditional else None
        columns = []
        for lam, on_grid in zip((float(v) for v in log_snrs), common, strict=True):
            errors = per_image_errors(model, network, x, eps, lam, labels, batch_size=batch_size)
            errors["cross"] = errors["excess"] - errors["distance"]
            row: dict[str, Any] = {"split": split, "log_snr": lam, "common": bool(on_grid),
                                   "n": int(x.shape[0])}
            for name, values in errors.items():
                row[name], row[f"{name}_se"] = _mean_se(values)
            rows.append(row)
            columns.append(errors["excess"])
        per_image[split] = torch.stack(columns, dim=1)
    return pd.DataFrame(rows), per_image


def weighted_excess(per_image: torch.Tensor, log_snrs: Sequence[float], objective: Objective,
                    logsnr_min: float, logsnr_max: float) -> dict[str, float]:
    """``{"excess", "excess_se"}``: ``½ ∫ w(λ) excess(λ) dλ`` per image (trapezoid over
    ``log_snrs``, which should span ``[logsnr_min, logsnr_max]``; ``w`` the objective's implied
    weight for λ uniform on that range), mean and standard error over the images. For ``elbo``
    nats per dimension."""
    lam = torch.tensor([float(v) for v in log_snrs], dtype=torch.float64)
    if per_image.shape[1] != lam.numel():
        raise ValueError(f"per_image has {per_image.shape[1]} λ columns, log_snrs {lam.numel()}")
    span = float(logsnr_max) - float(logsnr_min)
    weight = objective.implied_weight(lam, torch.full_like(lam, span)).to(per_image)
    curve = weight * per_image
    integral = 0.5 * ((curve[:, 1:] + curve[:, :-1]) / 2 * torch.diff(lam).to(curve)).sum(1)
    mean, se = _mean_se(integral)
    return {"excess": mean, "excess_se": se}


def model_excess_eps_error(model: Any, config: Any, mixture: GaussianMixtureData | None = None, *,
                           root: str | Path | None = None, num_examples: int = 300,
                           seed: int = 0, device: str = "cpu", step: float = COMMON_LOG_SNR_STEP,
                           started: float | None = None) -> dict[str, Any]:
    """:func:`excess_eps_error` (train and test splits) and :func:`weighted_excess` of a loaded
    model with its run config, as a JSON-able record (``kind`` = :data:`RECORD_KIND`).

    ``mixture`` defaults to the known distribution of ``config.dataset`` (a one-line
    ``ValueError`` when it has none). The λ grid is :func:`evaluation_grid` of the model's range.
    Returns ``kind``, ``dataset``, ``objective``, ``schedule``, ``parameterization``, ``target``,
    ``log_snrs``, ``common`` (flags), ``step``, ``logsnr_min``, ``logsnr_max``, ``rows``,
    ``weighted`` (``{split: {"excess", "excess_se"}}``), ``num_examples``, ``seed``, ``note``,
    ``weighting`` and ``wall_seconds``.
    """
    started = time.perf_counter() if started is None else started
    mixture = known_mixture(config.dataset) if mixture is None else mixture
    if mixture is None:
        raise ValueError(f"dataset: {config.dataset!r} has no known density, so no exact "
                         "denoiser to measure the excess ε-error against")
    data_root = config.data_root if root is None else root
    splits = {split: load_dataset(config.dataset, split, root=data_root)
              for split in ("train", "test")}
    lo, hi = model_log_snr_range(model)
    grid, common = evaluation_grid(lo, hi, step)
    frame, per_image = excess_eps_error(model, mixture, splits, grid, common=common,
                                        num_examples=num_examples, seed=seed, device=device)
    weighted = {split: weighted_excess(values, grid, model.objective, grid[0], grid[-1])
                for split, values in per_image.items()}
    conditional = getattr(model, "num_classes", None) is not None
    return {
        "kind": RECORD_KIND,
        "dataset": config.dataset,
        "objective": config.objective,
        "schedule": config.schedule,
        "parameterization": config.parameterization,
        "target": ("eps*(z, c) = E[eps | z, c], the images' labels" if conditional
                   else "eps*(z) = E[eps | z]"),
        "log_snrs": grid,
        "common": common,
        "step": step,
        "logsnr_min": grid[0],
        "logsnr_max": grid[-1],
        "rows": frame.to_dict("records"),
        "weighted": weighted,
        "num_examples": {split: int(n) for split, n in frame.groupby("split")["n"].first().items()},
        "seed": seed,
        "note": EXCESS_NOTE,
        "weighting": EXCESS_WEIGHTING,
        "wall_seconds": time.perf_counter() - started,
    }
