"""``python -m vdm sample``: draw samples of a trained model with one evaluation setting (sampler,
steps, step spacing, guidance) -> ``samples.npz`` and a grid PNG."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from vdm.core.dataset_facts import dataset_info
from vdm.core.job_settings import SamplingSettings
from vdm.core.progress import Progress
from vdm.core.provenance import (
    atomic_output,
    provenance,
    resolve_device,
)
from vdm.model.guidance import (
    classifier_range_check,
    classifier_range_warning,
    oracle_range_check,
    sample_guided,
)
from vdm.model.setting_names import EvaluationSetting, Guidance
from vdm.pipeline.options import (
    file_arguments,
    read_spec,
    set_threads,
    spec_arguments,
)
from vdm.training.noisy_classifier import load_noisy_classifier
from vdm.training.trainer import load_trained_model


# ----- sample -----------------------------------------------------------------------------
def sample_arguments(parser: argparse.ArgumentParser) -> None:
    spec_arguments(parser, "sample")
    files = file_arguments(parser)
    files.add_argument("--model", required=True, type=Path, metavar="FILE", help="trained model.pt")
    files.add_argument("--noisy-classifier", type=Path, metavar="FILE",
                       help="noise-conditional classifier (vdm noisy-classifier), for "
                            "sampling.guidance_kind classifier (oracle guidance needs none)")
    files.add_argument("--out", required=True, type=Path, metavar="FILE", help="samples.npz (uint8 images)")
    files.add_argument("--grid", type=Path, metavar="FILE", help="sample grid PNG")
    files.add_argument("--bayes-out", type=Path, metavar="FILE",
                       help="the exact denoiser's samples of the same setting and seed "
                            "(bayes_samples.npz; spec key bayes_samplers)")


def write_samples(model, config, device, *, model_path: Path, setting, num_samples: int,
                  batch_size: int, seed: int, ema: bool, clip: bool, out: Path,
                  grid: Path | None, started: float, noisy_classifier: Path | None = None,
                  exact: bool = False) -> None:
    """Draw samples of a loaded model with an :class:`vdm.model.setting_names.EvaluationSetting` (sampler,
    steps, step spacing, guidance); a conditional model's samples are class-balanced (image ``i`` of class
    ``i mod K``). Writes ``samples.npz`` (uint8 ``images``, int64 ``labels`` when there are
    classes, and a meta JSON with the setting and ``wall_seconds`` since ``started``; with
    classifier guidance also :func:`vdm.model.guidance.classifier_range_check`'s ranges, and a
    warning line on stderr when the model's leaves the classifier's; with ``oracle`` guidance,
    the exact noisy-class posterior of the dataset's known distribution, no file, and
    :func:`vdm.model.guidance.oracle_range_check`'s record: exact at every lambda) and
    optionally the grid PNG, atomically. One-line ``ValueError`` before any sampling for
    ``oracle`` guidance on a dataset without a known density. ``exact``: ``model`` is the exact
    denoiser of a known density (:func:`vdm.evaluation.sample_truth.exact_denoiser`; the meta
    records ``denoiser: exact`` and the mixture's hash)."""
    from vdm.core.images import save_grid  # lazy: torchvision + PIL (optional; 1.3 s)

    info = dataset_info(config.dataset)
    classifier = None
    if setting.guidance.kind == "classifier":
        if noisy_classifier is None:
            raise ValueError("classifier guidance needs --noisy-classifier (vdm noisy-classifier)")
        classifier = load_noisy_classifier(noisy_classifier, config.dataset, device)
    if setting.guidance.kind == "oracle":
        # lazy: the known-density module pulls in the NLL and ODE-bound evaluation
        from vdm.evaluation.known_density import oracle_classifier

        classifier = oracle_classifier(config.dataset, device)
    ranges = ({} if classifier is None or setting.guidance.weight == 0
              else oracle_range_check(model) if setting.guidance.kind == "oracle"
              else classifier_range_check(model, classifier))
    if warning := classifier_range_warning(ranges):  # learned end points may have moved
        print(f"vdm sample: warning: {setting.name}: {warning}", file=sys.stderr)
    classes = model.num_classes is not None or setting.guidance.kind != "none"
    images, labels = sample_guided(
        model, setting.guidance, num_samples=num_samples,
        num_classes=info["num_classes"] if classes else None, image_shape=tuple(info["shape"]),
        num_levels=info["num_levels"], steps=setting.steps, method=setting.method,
        batch_size=batch_size, seed=seed, device=device, clip=clip, classifier=classifier,
        progress=Progress(f"sample {'exact denoiser ' if exact else ''}{setting.name}", "evals"),
        spacing=setting.spacing)
    meta = {"model": str(model_path), "num_samples": num_samples, "setting": setting.name,
            "steps": setting.steps, "method": setting.method, "spacing": setting.spacing,
            "nfe": setting.nfe,
            "guidance_kind": setting.guidance.kind, "guidance_weight": setting.guidance.weight,
            "conditional": model.num_classes is not None, "seed": seed, "ema": ema,
            "noisy_classifier": (None if classifier is None or setting.guidance.kind == "oracle"
                                 else str(noisy_classifier)),
            **({"oracle": f"exact p(c | z_lambda) of {config.dataset}"}
               if setting.guidance.kind == "oracle" else {}), **ranges,
            **({"denoiser": "exact", "mixture_sha256": model.mixture.sha256} if exact else {}),
            "run_config": config.to_dict(), "provenance": provenance(device),
            "wall_seconds": round(time.perf_counter() - started, 3)}
    arrays = {"images": images.numpy()} | ({} if labels is None else {"labels": labels.numpy()})
    with atomic_output(out) as tmp:
        np.savez_compressed(tmp, **arrays, meta=json.dumps(meta, default=str))
    if grid:
        save_grid(images, grid, title=f"{config.parameterization}/{config.objective}/"
                                      f"{config.schedule} seed {config.seed}, {setting.name}")
    print(f"{len(images)} samples ({setting.name}) -> {out}")


def exact_sampling_mixture(config, enabled: bool):
    """The known distribution the exact-denoiser samples need (spec key ``bayes_samplers``),
    None when the key is off; a one-line ``ValueError`` naming the key when it is on for a
    dataset without a known density (before any sampling)."""
    if not enabled:
        return None
    from vdm.evaluation.known_density import known_mixture  # lazy: scipy via digits_gmm

    mixture = known_mixture(config.dataset)
    if mixture is None:
        raise ValueError(f"spec key 'bayes_samplers': true needs a dataset with a known density "
                         f"(digits-gmm), the model's is {config.dataset!r}")
    return mixture


def write_model_and_exact_samples(model, mixture, config, device, *, model_path: Path,
                                  setting, num_samples: int, batch_size: int, seed: int,
                                  ema: bool, clip: bool, out: Path, exact_out: Path | None,
                                  grid: Path | None, started: float,
                                  noisy_classifier: Path | None = None) -> None:
    """:func:`write_samples` of one setting to ``out`` and, with ``mixture`` (spec key
    ``bayes_samplers``), :func:`write_bayes_samples` of the same setting and seed to
    ``exact_out``: the one sequence the sample, evaluate and sweep commands share."""
    write_samples(model, config, device, model_path=model_path, setting=setting,
                  num_samples=num_samples, batch_size=batch_size, seed=seed, ema=ema, clip=clip,
                  out=out, grid=grid, started=started, noisy_classifier=noisy_classifier)
    if mixture is not None:
        write_bayes_samples(model, mixture, config, device, model_path=model_path,
                            setting=setting, num_samples=num_samples, batch_size=batch_size,
                            seed=seed, ema=ema, clip=clip, out=exact_out)


def write_bayes_samples(model, mixture, config, device, *, model_path: Path, setting,
                        num_samples: int, batch_size: int, seed: int, ema: bool, clip: bool,
                        out: Path) -> None:
    """:func:`write_samples` of the exact denoiser ``eps*`` of ``mixture`` on ``model``'s schedule
    (:func:`vdm.evaluation.sample_truth.exact_denoiser`; class-conditional with the same
    class-balanced labels for a conditional model) with the same unguided ``setting``, number,
    batches and ``seed`` as the model's samples: the same initial noise and, for ancestral
    sampling, the same noise draws, so the two sets differ by the network error alone. No grid
    PNG. ``ValueError`` for a guided setting (the exact denoiser samples unguided settings)."""
    from vdm.evaluation.sample_truth import exact_denoiser  # lazy: scipy via digits_gmm

    if setting.guidance.kind != "none":
        raise ValueError(f"setting {setting.name}: the exact denoiser samples unguided settings "
                         "only")
    write_samples(exact_denoiser(model, mixture, device), config, device, model_path=model_path,
                  setting=setting, num_samples=num_samples, batch_size=batch_size, seed=seed,
                  ema=ema, clip=clip, out=out, grid=None, started=time.perf_counter(), exact=True)


def evaluation_setting(sampling: SamplingSettings):
    """The :class:`vdm.model.setting_names.EvaluationSetting` of a spec's sampling settings."""
    return EvaluationSetting(sampling.method, sampling.steps,
                             Guidance(sampling.guidance_kind, sampling.guidance_weight),
                             sampling.spacing)


def write_primary_samples(model, mixture, config, device, spec, *, model_path: Path, out: Path,
                          exact_out: Path | None, grid: Path | None, started: float,
                          noisy_classifier: Path | None = None) -> None:
    """:func:`write_model_and_exact_samples` of a spec's primary samples: its ``sampling``
    settings, ``seed`` and ``ema`` (:class:`~vdm.core.job_specs.SampleSpec` or
    :class:`~vdm.core.job_specs.EvaluateSpec`)."""
    sampling = spec.sampling
    write_model_and_exact_samples(
        model, mixture, config, device, model_path=model_path,
        setting=evaluation_setting(sampling), num_samples=sampling.num_samples,
        batch_size=sampling.batch_size, seed=spec.seed, ema=spec.ema, clip=sampling.clip,
        out=out, exact_out=exact_out, grid=grid, started=started,
        noisy_classifier=noisy_classifier)


def sample_main(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    spec = read_spec(args)
    setting = evaluation_setting(spec.sampling)
    check_bayes_output(spec.bayes_samplers, args.bayes_out, "--bayes-out", setting)
    set_threads(args.threads)
    device = resolve_device(spec.device)
    model, config = load_trained_model(args.model, device, use_ema=spec.ema)
    mixture = exact_sampling_mixture(config, spec.bayes_samplers)
    write_primary_samples(model, mixture, config, device, spec, model_path=args.model,
                          out=args.out, exact_out=args.bayes_out, grid=args.grid,
                          started=started, noisy_classifier=args.noisy_classifier)


def check_bayes_output(enabled: bool, path: Path | None, option: str, setting=None) -> None:
    """Before any work: the exact denoiser's samples (spec key ``bayes_samplers``) need their
    file ``option`` and an unguided ``setting``, and the file is given only when the key is on
    (one-line ``ValueError`` naming the key or option)."""
    if enabled and path is None:
        raise ValueError(f"spec key 'bayes_samplers' is true: give {option}")
    if not enabled and path is not None:
        raise ValueError(f"{option} is given but spec key 'bayes_samplers' is false")
    if enabled and setting is not None and setting.guidance.kind != "none":
        raise ValueError(f"spec key 'bayes_samplers': the exact denoiser samples unguided "
                         f"settings only, the primary setting is {setting.name}")
