"""The loss floor: the exact optimal ε-predictor of a finite training set, and each model's gap to it.

For a training set ``X = {x_1..x_N}`` (the empirical data distribution) and
``z = α x + σ ε`` with ``α² = sigmoid(λ)``, ``σ² = sigmoid(−λ)``, the minimiser of the expected
ε-error ``E‖ε̂(z, λ) − ε‖²`` over all functions ε̂ is the posterior mean

    E[x | z] = Σ_i softmax_i(−‖z − α x_i‖² / (2σ²)) x_i,     ε*(z, λ) = (z − α E[x | z]) / σ,

a softmax-weighted average of the training images (``‖z‖²`` cancels in the softmax, so the
logits are ``(α z·x_i − α² ‖x_i‖² / 2) / σ²``). It is computed exactly in float64, in chunks.

**What the optimum means.** ε* minimises the *training* loss of every weighting at every λ,
so its training error is the floor of any model's training loss. But it memorises the training
set: it denoises towards the nearest training images, and sampling with it reproduces training
images. It is not a better generative model; on held-out (test) images it is no longer optimal
(it pulls them to training images), which is why the test-split comparison measures
generalisation: a model that beats ε* on test images has learned more than the training set.

:func:`denoiser_gap` evaluates a model and ε* (of the *training* set, for both splits) on the
same images, noise and ``z`` (a paired comparison) at a grid of λ; :func:`weighted_gap`
integrates the gap over λ with the model's objective; :func:`denoiser_floor` does both for a
saved run and returns a JSON-able record. On a dataset whose distribution is known
(``digits-gmm``) the floor is the true distribution's exact denoiser instead
(:mod:`vdm.evaluation.excess_eps_error`; :func:`model_denoiser_floor` routes there).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from vdm.core.data import ImageData, load_dataset
from vdm.evaluation.excess_eps_error import model_excess_eps_error
from vdm.evaluation.known_density import known_mixture
from vdm.model.objectives import Objective
from vdm.model.schedules import alpha_sigma, schedule_endpoints
from vdm.training.trainer import load_trained_model

DEFAULT_NUM_LOG_SNRS = 9
OPTIMUM_NOTE = ("optimum = the exact posterior-mean ε-predictor of the training set (a softmax-"
                "weighted average of training images): the floor of the training loss; it "
                "memorises the training set (its samples are training images), so it is not a "
                "better model, and on test images it is no longer optimal")
WEIGHTING_NOTE = ("weighted gap = ½ ∫ w(λ) [model − optimum ε-MSE per dimension] dλ with the "
                  "objective's implied weight w(λ) = 2c(λ, Δλ)/Δλ for λ uniform on the model's "
                  "[λ_min, λ_max] (a log-SNR-linear schedule, −dλ/dt = Δλ), trapezoid rule over "
                  "the λ grid; for `elbo` this is the gap in the ELBO's diffusion term (nats/dim)")


def _flat(images: torch.Tensor) -> torch.Tensor:
    return images.reshape(images.shape[0], -1).to(torch.float64)


def posterior_mean(z: torch.Tensor, log_snr: torch.Tensor | float, train_images: torch.Tensor,
                   *, chunk_size: int = 256) -> torch.Tensor:
    """``E[x | z]`` under the empirical distribution of ``train_images`` (float64, shape of ``z``).

    ``z``: ``(B, ...)``; ``log_snr``: a number or ``(B,)``; ``train_images``: ``(N, ...)`` model
    inputs with the same per-image shape as ``z``. Exact softmax in float64, ``chunk_size`` rows
    of ``z`` at a time (memory ``chunk_size × N`` doubles).
    """
    x = _flat(train_images).to(z.device)
    zf = _flat(z)
    if zf.shape[1] != x.shape[1]:
        raise ValueError(f"z has {zf.shape[1]} dimensions per image, the training set {x.shape[1]}")
    lam = torch.as_tensor(log_snr, dtype=torch.float64, device=z.device).expand(zf.shape[0])
    alpha, sigma2 = torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam)
    half_sq_norms = 0.5 * x.square().sum(dim=1)
    out = torch.empty_like(zf)
    for start in range(0, zf.shape[0], chunk_size):
        rows = slice(start, start + chunk_size)
        a, s2 = alpha[rows, None], sigma2[rows, None]
        logits = (a * (zf[rows] @ x.T) - a.square() * half_sq_norms) / s2
        out[rows] = torch.softmax(logits, dim=1) @ x
    return out.view(z.shape)


def optimal_eps(z: torch.Tensor, log_snr: torch.Tensor | float, train_images: torch.Tensor,
                *, chunk_size: int = 256) -> torch.Tensor:
    """The loss-minimising ``ε*(z, λ) = (z − α E[x | z]) / σ`` of the training set (float64)."""
    zf = z.to(torch.float64)
    lam = torch.as_tensor(log_snr, dtype=torch.float64, device=z.device).expand(z.shape[0])
    shape = (-1, *[1] * (z.dim() - 1))
    alpha, sigma = torch.sigmoid(lam).sqrt().view(shape), torch.sigmoid(-lam).sqrt().view(shape)
    return (zf - alpha * posterior_mean(z, lam, train_images, chunk_size=chunk_size)) / sigma


def _subset(data: ImageData, num_examples: int, generator: torch.Generator) -> torch.Tensor:
    """``min(num_examples, N)`` model inputs of ``data``: all of them in order when it has no more,
    else a random subset (without replacement) drawn from ``generator``."""
    n = len(data)
    if num_examples >= n:
        return data.model_inputs()
    index = torch.randperm(n, generator=generator)[:num_examples].sort().values
    return data.model_inputs(index)


def _mean_se(values: torch.Tensor) -> tuple[float, float]:
    n = values.numel()
    se = float(values.std(unbiased=True)) / math.sqrt(n) if n > 1 else float("nan")
    return float(values.mean()), se


def denoiser_gap(model: Any, train: ImageData, test: ImageData, log_snrs: Sequence[float], *,
                 num_examples: int = 300, seed: int = 0, device: torch.device | str = "cpu",
                 batch_size: int = 500) -> pd.DataFrame:
    """The model's ε-error against the training-set optimum's, per split and λ.

    For each split (``train``, ``test``) ``min(num_examples, N)`` images are used (a fixed
    random subset drawn with ``seed`` when the split is larger), with one noise draw ``ε`` per
    image shared by all λ and by model and optimum: ``z = α x + σ ε``. The optimum is that of
    the *training* set for both splits. ``model.eps(z, λ)`` gives the model's ε̂ (a
    class-conditional model is evaluated unconditionally, with its null token).

    Returns one row per (split, λ): ``split``, ``log_snr``, ``n``, ``model_mse``,
    ``optimum_mse`` (mean over images of ``‖ε̂ − ε‖² / D``, per dimension), their standard
    errors ``model_mse_se``, ``optimum_mse_se``, ``gap = model_mse − optimum_mse`` and
    ``gap_se`` (standard error of the paired per-image difference). ``z`` is formed in float64
    (the optimum's input) and given to the model as float32; the model is evaluated in its
    current mode (:func:`vdm.training.trainer.load_trained_model` returns it in eval mode).
    """
    generator = torch.Generator().manual_seed(seed)
    train_x = train.model_inputs().to(device)
    rows = []
    for split, data in (("train", train), ("test", test)):
        x = _subset(data, num_examples, generator).to(device, torch.float64)
        eps = torch.randn(x.shape, generator=generator, dtype=torch.float64).to(device)
        for lam in (float(v) for v in log_snrs):
            alpha, sigma = alpha_sigma(torch.tensor(lam, dtype=torch.float64))
            z = alpha.item() * x + sigma.item() * eps  # float64; the model sees it in float32
            optimum = optimal_eps(z, lam, train_x)
            with torch.no_grad():
                predicted = torch.cat([
                    model.eps(chunk, torch.full((chunk.shape[0],), lam, device=device))
                    for chunk in z.float().split(batch_size)]).to(torch.float64)
            model_err = (predicted - eps).square().flatten(1).mean(1)
            optimum_err = (optimum - eps).square().flatten(1).mean(1)
            (m, m_se), (o, o_se), (g, g_se) = (_mean_se(v) for v in (
                model_err, optimum_err, model_err - optimum_err))
            rows.append({"split": split, "log_snr": lam, "n": int(x.shape[0]), "model_mse": m,
                         "model_mse_se": m_se, "optimum_mse": o, "optimum_mse_se": o_se,
                         "gap": g, "gap_se": g_se})
    return pd.DataFrame(rows)


def weighted_gap(frame: pd.DataFrame, objective: Objective, logsnr_min: float,
                 logsnr_max: float) -> dict[str, dict[str, float]]:
    """Per split: the model's, the optimum's and the gap's objective-weighted ε-error.

    ``½ ∫ w(λ) mse(λ) dλ`` over the λ grid of ``frame`` (trapezoid rule; the grid should span
    ``[logsnr_min, logsnr_max]``), with ``w`` the objective's implied weight
    (:meth:`vdm.model.objectives.Objective.implied_weight`) for λ uniform on that range, i.e.
    ``−dλ/dt = λ_max − λ_min``; equivalently ``E_t[c(λ_t) mse(λ_t)]`` for the log-SNR-linear
    schedule. For ``elbo`` this is the ELBO's diffusion term in nats per dimension; for
    weightings that depend on the schedule (eps, x0, v, min_snr) it is not exactly the loss the
    model was trained with on its own schedule. Returns ``{split: {"model", "optimum",
    "gap"}}``.
    """
    span = float(logsnr_max) - float(logsnr_min)
    out = {}
    for split, rows in frame.groupby("split", sort=False):
        rows = rows.sort_values("log_snr")
        lam = torch.tensor(rows["log_snr"].to_numpy(), dtype=torch.float64)
        weight = objective.implied_weight(lam, torch.full_like(lam, span)).numpy()
        out[str(split)] = {
            key: 0.5 * _trapezoid(weight * rows[column].to_numpy(), lam.numpy())
            for key, column in (("model", "model_mse"), ("optimum", "optimum_mse"),
                                ("gap", "gap"))}
    return out


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    """``∫ y dx`` by the trapezoid rule (0 for a single point)."""
    return float(np.sum((y[1:] + y[:-1]) / 2.0 * np.diff(x)))


def log_snr_grid(model: Any, num: int = DEFAULT_NUM_LOG_SNRS) -> list[float]:
    """``num`` λ values evenly spaced over the model schedule's ``[λ(1), λ(0)]``, rounded to
    1e-6 (the learned schedule's end points are its trained values)."""
    with torch.no_grad():
        hi, lo = (float(v) for v in schedule_endpoints(model.schedule))
    return [round(float(v), 6) for v in np.linspace(lo, hi, num)]


def denoiser_floor(model_path: str | Path, *, root: str | Path | None = None,
                   num_log_snrs: int = DEFAULT_NUM_LOG_SNRS, num_examples: int = 300,
                   seed: int = 0, device: str = "cpu", use_ema: bool = True) -> dict[str, Any]:
    """:func:`denoiser_gap` and :func:`weighted_gap` of a saved run (``model.pt``), as a
    JSON-able dict.

    Loads the model (:func:`vdm.training.trainer.load_trained_model`; EMA weights by default) and its
    dataset's train and test splits (``root`` defaults to the run's ``data_root``); λ grid from
    :func:`log_snr_grid`. Returns ``dataset``, ``objective``, ``schedule``,
    ``parameterization``, ``log_snrs``, ``rows`` (the records of :func:`denoiser_gap`),
    ``weighted`` (:func:`weighted_gap`), ``num_train_images``, ``num_examples``, ``seed``,
    ``note`` (:data:`OPTIMUM_NOTE`), ``weighting`` (:data:`WEIGHTING_NOTE`) and
    ``wall_seconds``.
    """
    started = time.perf_counter()
    model, config = load_trained_model(model_path, device, use_ema=use_ema)
    return model_denoiser_floor(model, config, root=root, num_log_snrs=num_log_snrs,
                                num_examples=num_examples, seed=seed, device=device,
                                started=started)


def model_denoiser_floor(model: Any, config: Any, *, root: str | Path | None = None,
                         num_log_snrs: int = DEFAULT_NUM_LOG_SNRS, num_examples: int = 300,
                         seed: int = 0, device: str = "cpu", started: float | None = None
                         ) -> dict[str, Any]:
    """:func:`denoiser_floor` of a model already loaded (with its run config), e.g. by the
    fused evaluate job that has sampled and scored it; ``started`` (a ``time.perf_counter()``
    value) defaults to now.

    On a dataset whose distribution is known (``digits-gmm``,
    :func:`vdm.evaluation.known_density.known_mixture`) the floor is the true distribution's
    Bayes-optimal denoiser instead of the memorising optimum of the training set: the record is
    :func:`vdm.evaluation.excess_eps_error.model_excess_eps_error`'s (``kind`` =
    ``excess_eps_error``; its own common λ grid, ``num_log_snrs`` unused)."""
    started = time.perf_counter() if started is None else started
    mixture = known_mixture(config.dataset)
    if mixture is not None:
        return model_excess_eps_error(model, config, mixture, root=root,
                                      num_examples=num_examples, seed=seed, device=device,
                                      started=started)
    data_root = config.data_root if root is None else root
    train = load_dataset(config.dataset, "train", root=data_root)
    test = load_dataset(config.dataset, "test", root=data_root)
    grid = log_snr_grid(model, num_log_snrs)
    frame = denoiser_gap(model, train, test, grid, num_examples=num_examples, seed=seed,
                         device=device)
    weighted = weighted_gap(frame, model.objective, grid[0], grid[-1])
    return {
        "dataset": config.dataset,
        "objective": config.objective,
        "schedule": config.schedule,
        "parameterization": config.parameterization,
        "log_snrs": grid,
        "rows": frame.to_dict("records"),
        "weighted": weighted,
        "num_train_images": len(train),
        "num_examples": {split: int(n) for split, n in frame.groupby("split")["n"].first().items()},
        "seed": seed,
        "note": OPTIMUM_NOTE,
        "weighting": WEIGHTING_NOTE,
        "wall_seconds": time.perf_counter() - started,
    }
