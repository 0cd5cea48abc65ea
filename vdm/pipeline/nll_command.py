"""``python -m vdm nll``: the test-set likelihood bounds of a trained model -> ``nll.json`` (the
ELBO in bits/dim and its terms; with the spec's ODE settings the probability-flow ODE bounds; on a
dataset with a known density the bounds against the truth) and optionally the optimal-denoiser
gap -> ``denoiser_floor.json``."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

from vdm.core.data import load_dataset
from vdm.core.job_settings import NllSettings, OdeSettings
from vdm.core.progress import Progress
from vdm.core.provenance import (
    provenance,
    resolve_device,
    strict_fp32,
    write_json_atomic,
)
from vdm.evaluation.evaluate import evaluate_nll
from vdm.pipeline.options import (
    check_output,
    file_arguments,
    read_spec,
    set_threads,
    spec_arguments,
)
from vdm.training.trainer import load_trained_model


# ----- nll --------------------------------------------------------------------------------
def nll_arguments(parser: argparse.ArgumentParser) -> None:
    spec_arguments(parser, "nll")
    files = file_arguments(parser)
    files.add_argument("--model", required=True, type=Path, metavar="FILE", help="trained model.pt")
    files.add_argument("--out", required=True, type=Path, metavar="FILE", help="nll.json")
    files.add_argument("--denoiser-floor-out", type=Path, metavar="FILE",
                       help="the gap to the training set's optimal denoiser (spec key "
                            "denoiser_floor) -> this JSON")


def ode_keywords(ode: OdeSettings | None) -> dict[str, Any] | None:
    """A spec's ODE settings as :func:`vdm.model.ode.ode_nll` keywords (None: no ODE bound)."""
    return None if ode is None else ode.to_dict()


def ode_bound_vs_elbo(ode_bpd, elbo_bpd, name: str = "nll_ode") -> dict[str, float]:
    """Paired comparison of the two bounds on the images both were computed on (the first
    ``len(ode_bpd)``): ``nll_elbo_bpd_on_ode_examples`` and ``<name>_minus_elbo_bpd`` (mean of
    the per-image differences; negative = the ODE bound is lower) with its standard error
    (``name``: ``nll_ode``, uniform dequantization, or ``nll_ode_vdeq``, decoder-consistent)."""
    m = min(len(ode_bpd), len(elbo_bpd))
    difference = ode_bpd[:m] - elbo_bpd[:m]
    out = {"nll_elbo_bpd_on_ode_examples": float(elbo_bpd[:m].mean()),
           f"{name}_minus_elbo_bpd": float(difference.mean())}
    if m > 1:
        out[f"{name}_minus_elbo_bpd_se"] = float(difference.std(unbiased=True) / math.sqrt(m))
    return out


def write_nll(model, config, device, settings: NllSettings, *, model_path: Path, seed: int,
              ema: bool, out: Path, started: float) -> None:
    """Test-set bits/dim of a loaded model (:func:`vdm.evaluation.evaluate.evaluate_nll`) with an
    nll/evaluate spec's ``settings`` -> ``nll.json``; with ``settings.ode`` (keywords of
    :func:`vdm.model.ode.ode_nll`) also the probability-flow ODE bounds,
    uniform dequantization ``nll_ode_bpd`` and decoder-consistent ``nll_ode_vdeq_bpd``
    (:func:`vdm.model.ode_bound.ode_vdeq_nll`), each paired with the ELBO on the same images
    (their seconds together in ``ode_wall_seconds``). On a dataset with a known density
    (digits-gmm) also the bounds against the exact ``-log2 P(x) / D`` and the Bayes bound
    (:func:`vdm.evaluation.known_density.against_the_truth`; ``mixture`` names the
    distribution; seconds in ``known_density_wall_seconds``)."""
    # lazy: scipy, via the digits-gmm mixture (optional on the GPU machines; 0.5 s)
    from vdm.evaluation.known_density import against_the_truth, known_mixture

    split, batch_size, num_time_samples = settings.split, settings.batch_size, settings.num_time_samples
    time_sampling, discrete_steps = settings.time_sampling, settings.discrete_steps
    max_examples, ode = settings.max_examples, ode_keywords(settings.ode)
    data = load_dataset(config.dataset, split, config.data_root, config.download)
    with strict_fp32(device):  # fp32 without TF32 on CUDA: the bounds are measurements
        result = evaluate_nll(model, data, batch_size=batch_size,
                              num_time_samples=num_time_samples, time_sampling=time_sampling,
                              discrete_steps=discrete_steps, seed=seed, max_examples=max_examples,
                              device=device, return_per_example=True,
                              progress=Progress(f"nll {split}", "draws"))
        elbo = result.pop("per_example_bpd")
        if model.num_classes is not None:  # also -log p(x | y) with the true label, same seed
            conditional = evaluate_nll(model, data, batch_size=batch_size,
                                       num_time_samples=num_time_samples,
                                       time_sampling=time_sampling, discrete_steps=discrete_steps,
                                       seed=seed, max_examples=max_examples, device=device,
                                       conditional=True,
                                       progress=Progress(f"nll {split} conditional", "draws"))
            result.update({f"nll_cond_{key.removeprefix('nll_')}": conditional[key]
                           for key in ("nll_bpd", "nll_bpd_se") if key in conditional})
        if ode is not None:
            # lazy: torchdiffeq imports scipy (optional; 0.5 s)
            from vdm.model.ode import ode_nll
            from vdm.model.ode_bound import ode_vdeq_nll  # lazy: imports vdm.model.ode, as above

            ode_started = time.perf_counter()
            ode_result = ode_nll(model, data, seed=seed, device=device, return_per_example=True,
                                 progress=Progress(f"ode nll {split}", "batches"), **ode)
            result.update(ode_bound_vs_elbo(ode_result.pop("per_example_bpd"), elbo))
            result.update(ode_result)
            vdeq = ode_vdeq_nll(model, data, seed=seed, device=device, return_per_example=True,
                                **ode)
            vdeq_bpd = vdeq.pop("per_example_bpd")
            result.update(ode_bound_vs_elbo(vdeq_bpd, elbo, "nll_ode_vdeq"))
            result.update(vdeq)
            result["ode_wall_seconds"] = round(time.perf_counter() - ode_started, 3)
        if (mixture := known_mixture(config.dataset)) is not None:  # against the exact P(x)
            truth_started = time.perf_counter()
            result.update(against_the_truth(
                model, data, mixture, elbo_bpd=elbo, batch_size=batch_size,
                num_time_samples=num_time_samples, time_sampling=time_sampling,
                discrete_steps=discrete_steps, seed=seed, device=device, ode=ode,
                ode_vdeq_bpd=None if ode is None else vdeq_bpd,
                progress=Progress(f"bayes bound {split}", "draws")))
            result["known_density_wall_seconds"] = round(time.perf_counter() - truth_started, 3)
    result.update({"model": str(model_path), "ema": ema, "run_config": config.to_dict(),
                   "provenance": provenance(device),
                   "wall_seconds": round(time.perf_counter() - started, 3)})
    write_json_atomic(out, result)
    print(f"{result['nll_bpd']:.4f} +- {result.get('nll_bpd_se', math.nan):.4f} bits/dim "
          f"({result['split']}, n={result['num_examples']}) -> {out}")


def nll_main(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    spec = read_spec(args)
    check_output(spec.denoiser_floor, args.denoiser_floor_out, "denoiser_floor",
                 "--denoiser-floor-out")
    set_threads(args.threads)
    device = resolve_device(spec.device)
    model, config = load_trained_model(args.model, device, use_ema=spec.ema)
    write_nll(model, config, device, spec.nll, model_path=args.model, seed=spec.seed,
              ema=spec.ema, out=args.out, started=started)
    if spec.denoiser_floor:
        write_denoiser_floor(model, config, seed=spec.seed, device=device,
                             out=args.denoiser_floor_out)



def write_denoiser_floor(model, config, *, seed: int, device, out: Path) -> None:
    """The gap of a loaded model (the weights the other metrics used) to the training set's
    optimal denoiser, or on a dataset with a known density its excess ε-error over the exact
    denoiser (:func:`vdm.evaluation.optimal_denoiser.model_denoiser_floor`) -> ``out``
    (JSON)."""
    from vdm.evaluation.optimal_denoiser import model_denoiser_floor  # lazy: pandas (optional; 0.2 s)

    floor = model_denoiser_floor(model, config, seed=seed, device=str(device))
    floor.update({"provenance": provenance(device), "wall_seconds": round(floor["wall_seconds"], 3)})
    write_json_atomic(out, floor)
    what = ("excess eps-error over the exact denoiser" if floor.get("kind") == "excess_eps_error"
            else "optimal-denoiser gap")  # a dataset with a known density: the exact one
    print(f"{what} -> {out}")


