"""Test-set likelihood of a trained model: mean bits/dim of each ELBO term with standard errors."""

from __future__ import annotations

import functools
import math
from typing import Any

import torch

from vdm.core.data import ImageData
from vdm.core.progress import ProgressCallback, counting_calls
from vdm.model.diffusion import DiffusionModel
from vdm.model.likelihood import DEFAULT_NUM_TIME_SAMPLES, elbo_bpd
from vdm.model.network import check_labels


def monte_carlo_se(diffusion_draws: torch.Tensor, reconstruction: torch.Tensor) -> float | None:
    """Monte-Carlo standard error (bits/dim) of a test-set mean bits/dim.

    ``diffusion_draws``: ``(n, K)`` draws of the diffusion term per example; each column is one
    batch-stratified draw, so the column means are ``K`` i.i.d. replicates of the test-set mean
    and ``var(column means) / K`` is the variance of their average. ``reconstruction``: ``(n,)``
    one-draw reconstruction terms; their standard error over examples bounds that term's
    Monte-Carlo noise from above (it also holds the image spread). ``None`` for ``K < 2`` (no
    spread to estimate it from), never NaN.
    """
    n, k = diffusion_draws.shape
    if k < 2:
        return None
    diffusion_var = diffusion_draws.mean(dim=0).var(unbiased=True) / k
    reconstruction_var = reconstruction.var(unbiased=True) / n if n > 1 else 0.0
    return float((diffusion_var + reconstruction_var).sqrt())


def evaluate_nll(model: DiffusionModel, data: ImageData, *, batch_size: int = 500,
                 num_time_samples: int = DEFAULT_NUM_TIME_SAMPLES, time_sampling: str = "logsnr",
                 discrete_steps: int | None = None, seed: int = 0,
                 max_examples: int | None = None, device: torch.device | str = "cpu",
                 conditional: bool = False, return_per_example: bool = False,
                 progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Upper bound on ``-log2 p(x)`` per dimension over ``data`` (bits/dim).

    ``conditional`` (class-conditional models only): the bound on ``-log2 p(x | y)`` with ``y``
    each example's true label, i.e. the diffusion term uses ``eps_hat(z, lambda, y)``; the
    reconstruction and prior terms do not involve the network and are unchanged, and the same
    ``seed`` draws the same noise levels and noise, so the two bounds differ only through ``y``.
    Without it a conditional model is evaluated unconditionally, with the null token
    (``-log2 p(x)`` of its unconditional mode). Conditional models' results carry
    ``conditional`` (bool); an unconditional model's result is as it always was.

    Returns ``nll_bpd`` (mean of the per-example totals), ``nll_bpd_se`` (their standard deviation
    over examples divided by ``sqrt(n)``: it covers both the spread over test images and the
    Monte-Carlo noise of the estimator; absent for ``n < 2``), ``nll_bpd_mc_se`` (absent for
    ``num_time_samples < 2``; the Monte-Carlo standard error of
    ``nll_bpd`` alone: how much a rerun with another seed would move it; from the ``K``
    independent replicates ``m_k`` = test-set mean of draw ``k`` of the diffusion term,
    ``sqrt(var_k(m_k) / K)``, combined with the reconstruction term's one-draw noise bounded by
    its standard error over examples), and the mean of each term
    (``nll_reconstruction_bpd``, ``nll_prior_bpd``, ``nll_diffusion_bpd``). With
    ``return_per_example`` also ``per_example_bpd``: the ``(n,)`` float64 tensor of totals.

    ``progress`` (optional, :class:`vdm.core.progress.ProgressCallback`): told the noise-level
    draws done (one network evaluation over a batch each) of ``B x num_time_samples`` over the
    ``B`` batches, with the field ``batch="b/B"``; the numbers do not change.
    """
    if conditional and model.num_classes is None:
        raise ValueError("conditional=True (-log p(x | y)) needs a class-conditional model; this "
                         "one was trained without conditioning")
    n = len(data) if max_examples is None else min(max_examples, len(data))
    if conditional:
        check_labels(data.labels[:n], model.num_classes, name=f"{data.name} {data.split} labels")
    generator = torch.Generator(device).manual_seed(seed)
    terms: dict[str, list[torch.Tensor]] = {}
    model.eval()
    num_batches = math.ceil(n / batch_size)
    total = num_batches * num_time_samples
    if progress is not None:
        progress(0, total, batch=f"1/{num_batches}")
    with torch.no_grad():
        for number, start in enumerate(range(0, n, batch_size)):
            index = torch.arange(start, min(start + batch_size, n))
            x = data.model_inputs(index).to(device)
            eps_fn = model.eps
            if conditional:
                labels = data.labels[index].to(device)
                eps_fn = functools.partial(model.eps, labels=labels)
            if progress is not None:  # one eps_fn call per draw (elbo_bpd)
                offset, batch = number * num_time_samples, f"{number + 1}/{num_batches}"
                eps_fn = counting_calls(eps_fn, lambda k, o=offset, b=batch: progress(
                    o + k, total, batch=b))
            out = elbo_bpd(eps_fn, x, model.schedule, data.num_levels,
                           num_time_samples=num_time_samples, time_sampling=time_sampling,
                           discrete_steps=discrete_steps, generator=generator)
            for name, value in out.items():
                terms.setdefault(name, []).append(value.double().cpu())
    per_example = {name: torch.cat(values) for name, values in terms.items()}
    total = per_example["total"]
    extra = {"per_example_bpd": total} if return_per_example else {}
    errors = {"nll_bpd_se": float(total.std(unbiased=True) / math.sqrt(n)) if n > 1 else None,
              "nll_bpd_mc_se": monte_carlo_se(per_example["diffusion_draws"],
                                              per_example["reconstruction"])}
    return {
        "nll_bpd": float(total.mean()),
        **{key: value for key, value in errors.items() if value is not None},
        "nll_reconstruction_bpd": float(per_example["reconstruction"].mean()),
        "nll_prior_bpd": float(per_example["prior"].mean()),
        "nll_diffusion_bpd": float(per_example["diffusion"].mean()),
        "uniform_bound_bpd": math.log2(data.num_levels),
        "num_examples": n,
        "split": data.split,
        "num_time_samples": num_time_samples,
        "time_sampling": time_sampling if discrete_steps is None else f"discrete-{discrete_steps}",
        "seed": seed,
        **({"conditional": conditional} if model.num_classes is not None else {}),
        **extra,
    }
