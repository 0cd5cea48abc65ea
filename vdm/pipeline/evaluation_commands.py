"""The commands that score a trained model's samples and put its evaluation together: ``fid``,
``fid-floor``, ``evaluate`` (sample + nll + fid in one process: :mod:`vdm.pipeline.sample_command`,
:mod:`vdm.pipeline.nll_command`) and ``sweep`` (further sampler and guidance settings)."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from vdm.core.checkpoint import load_checkpoint
from vdm.core.data import load_fid_reference
from vdm.core.job_settings import FidSettings
from vdm.core.job_specs import EvaluateSpec
from vdm.core.known_density_settings import require_known_density
from vdm.core.progress import Progress
from vdm.core.provenance import (
    provenance,
    resolve_device,
    write_json_atomic,
)
from vdm.model.guidance import CLASSIFIER_RANGE_KEYS, check_guidance
from vdm.model.schedules import schedule_endpoints
from vdm.model.setting_names import parse_setting
from vdm.pipeline.nll_command import write_denoiser_floor, write_nll
from vdm.pipeline.options import (
    check_output,
    extractor_weights,
    file_arguments,
    read_spec,
    set_threads,
    spec_arguments,
)
from vdm.pipeline.results_commands import collect_metrics
from vdm.pipeline.sample_command import (
    check_bayes_output,
    evaluation_setting,
    exact_sampling_mixture,
    write_model_and_exact_samples,
    write_primary_samples,
)
from vdm.training.snapshots import snapshot_file, snapshot_metrics
from vdm.training.trainer import load_trained_model

if TYPE_CHECKING:  # scipy (optional: not on the GPU machines), so only for the annotations
    from vdm.core.digits_gmm import GaussianMixtureData


def fid_file_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The files of every command that computes FID: the dataset classifier and the cache."""
    files = file_arguments(parser)
    files.add_argument("--dataset-classifier", type=Path, metavar="FILE",
                       help="the dataset classifier (vdm classifier): the feature extractor's "
                            "weights when fid.features.feature_extractor is classifier, and the "
                            "judge of labelled (conditional) samples' class")
    files.add_argument("--cache-root", type=Path, metavar="DIR", required=True,
                       help="torch-fidelity cache of the reference features")
    return files


def fid_arguments(parser: argparse.ArgumentParser) -> None:
    spec_arguments(parser, "fid")
    files = fid_file_arguments(parser)
    files.add_argument("--samples", required=True, type=Path, metavar="FILE", help="samples.npz")
    files.add_argument("--bayes-samples", type=Path, metavar="FILE",
                       help="the exact denoiser's samples of the same setting and seed "
                            "(bayes_samples.npz of vdm sample --bayes-out; spec key "
                            "bayes_samplers): also scored, as bayes_fid, bayes_sample_nll_bpd, ...")
    files.add_argument("--out", required=True, type=Path, metavar="FILE", help="fid.json")


def write_fid(samples_path: Path, *, dataset: str, root: str | Path, split: str,
              extractor: str, weights: Path | None, cache_root: Path, device,
              kid_subset_size: int, prc: bool, batch_size: int, out: Path,
              started: float, dataset_classifier: Path | None = None,
              fresh_reference_size: int | None = None, bayes_samples: Path | None = None) -> None:
    """FID/KID/precision-recall of ``samples.npz`` against ``split`` of ``dataset`` (``fresh``:
    ``fresh_reference_size`` fresh true samples, :func:`vdm.core.data.load_fid_reference`)
    -> fid.json (with the sampling settings and wall time copied from the samples' meta).
    Samples with class labels (conditional models) also get their ``class_accuracy`` under the
    ``dataset_classifier`` (with that classifier's own ``classifier_test_accuracy``) and the
    per-class FID (``per_class_fid``, or ``per_class_fid_skipped`` with the reason). On a dataset
    with a known density the samples are also scored against the truth
    (:func:`vdm.evaluation.sample_truth.sample_truth`: ``sample_nll_bpd``, ... with the requested
    labels' ``bayes_class_accuracy``), and ``bayes_samples`` (the exact denoiser's samples of
    the same setting and seed) get FID with its SE against the same reference and the same
    truth columns, prefixed ``bayes_`` (:func:`vdm.evaluation.sample_truth.prefixed`)."""
    # lazy: torch-fidelity (optional; 1.3 s)
    from vdm.evaluation.fid import compute_metrics, load_sample_labels, load_samples, load_samples_meta

    samples = load_samples(samples_path)
    reference_data = load_fid_reference(dataset, split, root, fresh_size=fresh_reference_size)
    reference = reference_data.pixels_uint8()
    result = compute_metrics(
        samples, reference, dataset=dataset, split=split, extractor=extractor,
        weights_path=weights, cache_root=cache_root, device=str(device),
        kid_subset_size=kid_subset_size, prc=prc, batch_size=batch_size,
        progress=Progress("fid features", "batches"))
    labels = load_sample_labels(samples_path)
    if labels is not None:
        # lazy: torch-fidelity (optional; 1.3 s)
        from vdm.evaluation.conditional_metrics import class_accuracy, classifier_test_accuracy, per_class_fid

        if dataset_classifier is None:
            raise ValueError(f"{samples_path} has class labels: class accuracy needs "
                             "--dataset-classifier (vdm classifier)")
        result["class_accuracy"] = class_accuracy(samples, labels, dataset_classifier,
                                                  dataset=dataset, device=device)
        result["classifier_test_accuracy"] = classifier_test_accuracy(dataset_classifier)
        per_class, reason = per_class_fid(
            samples, labels, reference, reference_data.labels, dataset=dataset, split=split,
            extractor=extractor, weights_path=weights, cache_root=cache_root, device=str(device),
            batch_size=batch_size)
        result.update({"per_class_fid": {str(k): v for k, v in per_class.items()}}
                      if per_class else {"per_class_fid_skipped": reason})
    # lazy: scipy (optional: not on the GPU machines, whose check imports this module)
    from vdm.evaluation.known_density import known_mixture
    from vdm.evaluation.sample_truth import prefixed, sample_truth

    mixture = known_mixture(dataset)
    if mixture is not None:
        result.update(sample_truth(mixture, samples, labels))
    if bayes_samples is not None:
        if mixture is None:
            raise ValueError(f"{bayes_samples}: exact-denoiser samples need a dataset with a "
                             f"known density, not {dataset!r}")
        exact = load_samples(bayes_samples)
        scores = compute_metrics(
            exact, reference, dataset=dataset, split=split, extractor=extractor,
            weights_path=weights, cache_root=cache_root, device=str(device),
            kid_subset_size=kid_subset_size, prc=False, batch_size=batch_size,
            progress=Progress("fid features (exact denoiser)", "batches"))
        scores.update(sample_truth(mixture, exact, load_sample_labels(bayes_samples)))
        result.update({**prefixed(scores), "bayes_samples": str(bayes_samples)})
    sampling = load_samples_meta(samples_path)
    result.update({"samples": str(samples_path), "reference_split": split,
                   "sampling": {key: sampling.get(key) for key in (
                       "num_samples", "setting", "steps", "method", "spacing", "nfe",
                       "guidance_kind",
                       "guidance_weight", "conditional", "seed", "ema", "wall_seconds")}
                   | {key: sampling[key] for key in CLASSIFIER_RANGE_KEYS if key in sampling},
                   "provenance": provenance(device),
                   "wall_seconds": round(time.perf_counter() - started, 3)})
    write_json_atomic(out, result)
    print(f"FID ({result['feature_extractor']}) {result['fid']:.3f} -> {out}")


def score_samples(samples: Path, fid: FidSettings, *, dataset: str, root: str | Path, device,
                  args: argparse.Namespace, out: Path, started: float,
                  bayes_samples: Path | None = None) -> None:
    """:func:`write_fid` with a spec's FID settings and the command's files
    (``--dataset-classifier``, ``--cache-root``); ``bayes_samples``: the exact denoiser's samples
    of the same setting, scored too."""
    features = fid.features
    write_fid(samples, dataset=dataset, root=root, split=features.reference_split,
              extractor=features.feature_extractor,
              weights=extractor_weights(features, args.dataset_classifier),
              cache_root=args.cache_root, device=device, kid_subset_size=fid.kid_subset_size,
              prc=fid.prc, batch_size=features.batch_size, out=out, started=started,
              dataset_classifier=args.dataset_classifier,
              fresh_reference_size=features.fresh_reference_size, bayes_samples=bayes_samples)


def fid_main(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    spec = read_spec(args)
    check_bayes_output(spec.bayes_samplers, args.bayes_samples, "--bayes-samples")
    set_threads(args.threads)
    score_samples(args.samples, spec.fid, dataset=spec.dataset, root=spec.data_root,
                  device=resolve_device(spec.device), args=args, out=args.out, started=started,
                  bayes_samples=args.bayes_samples)


def fid_floor_arguments(parser: argparse.ArgumentParser) -> None:
    spec_arguments(parser, "fid-floor")
    files = fid_file_arguments(parser)
    files.add_argument("--out", required=True, type=Path, metavar="FILE", help="floor.json")


def fid_floor_main(args: argparse.Namespace) -> None:
    """The FID floor (:func:`vdm.evaluation.data_floor.real_data_floor`): FID/KID/precision/recall
    of the held-out split against the reference split, or of fresh true samples against the fresh
    reference, with the runs' extractor and cache."""
    from vdm.evaluation.data_floor import real_data_floor  # lazy: torch-fidelity (optional; 1.3 s)

    started = time.perf_counter()
    spec = read_spec(args)
    features = spec.fid.features
    weights = extractor_weights(features, args.dataset_classifier)
    set_threads(args.threads)
    device = resolve_device(spec.device)
    result = real_data_floor(spec.dataset, spec.data_root,
                             reference_split=features.reference_split,
                             floor_split=spec.floor_split,
                             extractor=features.feature_extractor, weights_path=weights,
                             cache_root=args.cache_root, device=str(device),
                             kid_subset_size=spec.fid.kid_subset_size, prc=spec.fid.prc,
                             batch_size=features.batch_size,
                             fresh_reference_size=features.fresh_reference_size,
                             num_floor_images=spec.num_floor_images,
                             progress=Progress("fid-floor features", "batches"))
    result.update({"provenance": provenance(device),
                   "wall_seconds": round(time.perf_counter() - started, 3)})
    write_json_atomic(args.out, result)
    print(f"FID floor ({result['feature_extractor']}): FID {result['fid']:.3f} of the "
          f"{result['num_floor_images']} {spec.floor_split} images -> {args.out}")


# ----- evaluate: sample + nll + fid in one process ----------------------------------------
def evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    spec_arguments(parser, "evaluate")
    files = fid_file_arguments(parser)
    files.add_argument("--model", required=True, type=Path, metavar="FILE", help="trained model.pt")
    files.add_argument("--train-json", type=Path, metavar="FILE",
                       help="the run's train.json (needed for --metrics-out)")
    files.add_argument("--noisy-classifier", type=Path, metavar="FILE",
                       help="noise-conditional classifier for classifier-guided settings")
    files.add_argument("--samples-out", required=True, type=Path, metavar="FILE", help="samples.npz")
    files.add_argument("--bayes-samples-out", type=Path, metavar="FILE",
                       help="the exact denoiser's samples of the primary setting (spec key "
                            "bayes_samplers; the sweep's go to <sweep-out-dir>/<setting>/"
                            "bayes_samples.npz)")
    files.add_argument("--grid", type=Path, metavar="FILE", help="sample grid PNG")
    files.add_argument("--nll-out", required=True, type=Path, metavar="FILE", help="nll.json")
    files.add_argument("--fid-out", required=True, type=Path, metavar="FILE", help="fid.json")
    files.add_argument("--denoiser-floor-out", type=Path, metavar="FILE",
                       help="the gap to the training set's optimal denoiser (spec key "
                            "denoiser_floor) -> this JSON")
    files.add_argument("--sweep-out-dir", type=Path, metavar="DIR",
                       help="<dir>/<setting>/samples.npz and fid.json of the spec's sweep settings")
    files.add_argument("--metrics-out", type=Path, metavar="FILE",
                       help="also merge everything into the run's metrics.json (as vdm collect)")
    files.add_argument("--train-step", type=int, metavar="K",
                       help="--model is the run's snapshot after training step K "
                            "(snapshots/step<K>.pt, train.snapshots; checked): --metrics-out "
                            "records train_step K and the run's state at that step")
    files.add_argument("--snapshots-out-dir", type=Path, metavar="DIR",
                       help="the spec's snapshots (snapshots/step<k>.pt beside --train-json) "
                            "-> <dir>/step<k>/samples.npz, nll.json, fid.json, metrics.json "
                            "(and bayes_samples.npz with spec key bayes_samplers)")


def evaluate_main(args: argparse.Namespace) -> None:
    """``sample`` + ``nll`` + ``fid`` (+ ``sweep`` and ``collect``) of one model in one process:
    the interpreter, torch, the model and the data are loaded once. Writes the same files, with
    the same numbers, as the separate commands. Then the spec's ``snapshots``, each as
    ``evaluate --train-step k`` with :meth:`EvaluateSpec.snapshot_spec
    <vdm.core.job_specs.EvaluateSpec.snapshot_spec>` would evaluate it (the same files and
    numbers: every stage draws its noise from the spec's seed), into
    ``--snapshots-out-dir/step<k>/``."""
    started = time.perf_counter()
    spec = read_spec(args)
    primary = evaluation_setting(spec.sampling)
    settings = [parse_setting(name) for name in spec.sweep]
    if settings and args.sweep_out_dir is None:
        raise ValueError("spec key 'sweep' lists settings: give --sweep-out-dir")
    if args.metrics_out and args.train_json is None:
        raise ValueError("--metrics-out needs --train-json")
    if args.train_step is not None and args.metrics_out is None:
        raise ValueError("--train-step is recorded in metrics.json: give --metrics-out")
    check_bayes_output(spec.bayes_samplers, args.bayes_samples_out, "--bayes-samples-out", primary)
    check_output(spec.denoiser_floor, args.denoiser_floor_out, "denoiser_floor",
                 "--denoiser-floor-out")
    snapshots = snapshot_outputs(args, spec)
    model, config, device = load_checked_model(args, spec, [primary, *settings])
    mixture = exact_sampling_mixture(config, spec.bayes_samplers)
    snapshot = (None if args.train_step is None else
                snapshot_state(args.model, model, args.train_step))  # before any sampling
    write_primary_samples(model, mixture, config, device, spec, model_path=args.model,
                          out=args.samples_out, exact_out=args.bayes_samples_out,
                          grid=args.grid, started=started,
                          noisy_classifier=args.noisy_classifier)
    started = time.perf_counter()
    write_nll(model, config, device, spec.nll, model_path=args.model, seed=spec.seed,
              ema=spec.ema, out=args.nll_out, started=started)
    score_samples(args.samples_out, spec.fid, dataset=config.dataset, root=config.data_root,
                  device=device, args=args, out=args.fid_out, started=time.perf_counter(),
                  bayes_samples=args.bayes_samples_out)
    if spec.denoiser_floor:
        write_denoiser_floor(model, config, seed=spec.seed, device=device,
                             out=args.denoiser_floor_out)
    sweep = run_sweep(model, config, device, args, settings, seed=spec.seed, ema=spec.ema,
                      num_samples=spec.sampling.num_samples,
                      batch_size=spec.sampling.batch_size, fid=spec.fid,
                      out_dir=args.sweep_out_dir, mixture=mixture) if settings else []
    if args.metrics_out:
        collect_metrics(args.train_json, args.nll_out, args.fid_out, args.metrics_out, sweep,
                        args.denoiser_floor_out, snapshot)
    for step, (path, out) in snapshots.items():
        evaluate_snapshot(path, step, spec.snapshot_spec(), device, args=args, out=out,
                          mixture=mixture)


@dataclass(frozen=True)
class SnapshotOutputs:
    """The files of one snapshot's evaluation, in a folder of its own, named as the final
    evaluation's (``bayes_samples``: only with spec key ``bayes_samplers``)."""

    samples: Path
    nll: Path
    fid: Path
    metrics: Path
    bayes_samples: Path | None

    @classmethod
    def in_folder(cls, folder: Path, bayes_samplers: bool) -> SnapshotOutputs:
        return cls(folder / "samples.npz", folder / "nll.json", folder / "fid.json",
                   folder / "metrics.json", folder / "bayes_samples.npz" if bayes_samplers
                   else None)


def snapshot_outputs(args: argparse.Namespace,
                     spec: EvaluateSpec) -> dict[int, tuple[Path, SnapshotOutputs]]:
    """Before any work: ``{k: (snapshot file, its outputs)}`` of the spec's ``snapshots``, the
    files ``snapshots/step<k>.pt`` beside ``--train-json`` (each must exist) and the folders
    ``--snapshots-out-dir/step<k>`` (one-line ``ValueError`` naming the option or file)."""
    if not spec.snapshots:
        if args.snapshots_out_dir is not None:
            raise ValueError("--snapshots-out-dir is given but spec key 'snapshots' is empty")
        return {}
    if args.snapshots_out_dir is None or args.train_json is None or args.metrics_out is None:
        raise ValueError("spec key 'snapshots' lists steps: give --snapshots-out-dir, "
                         "--train-json and --metrics-out")
    if args.train_step is not None:
        raise ValueError("--train-step: a snapshot's evaluation has no snapshots of its own "
                         "(spec key 'snapshots' must be empty)")
    outputs = {}
    for step in spec.snapshots:
        path = args.train_json.parent / snapshot_file(step)
        if not path.is_file():
            raise FileNotFoundError(f"spec key 'snapshots' lists step {step}, but {path} does "
                                    "not exist (train.snapshots of the run)")
        outputs[step] = (path, SnapshotOutputs.in_folder(args.snapshots_out_dir / f"step{step}",
                                                         spec.bayes_samplers))
    return outputs


def evaluate_snapshot(path: Path, step: int, spec: EvaluateSpec, device, *,
                      args: argparse.Namespace, out: SnapshotOutputs,
                      mixture: GaussianMixtureData | None) -> None:
    """One training snapshot ``path`` (after step ``step``) evaluated with ``spec`` (its
    primary setting, ELBO and FID) as ``evaluate --train-step step`` would, into ``out``:
    samples (and the exact denoiser's, with ``mixture``), NLL, FID and the ``metrics.json``
    recording the run's state at that step (:func:`snapshot_state`)."""
    started = time.perf_counter()
    print(f"snapshot after training step {step}: {path} -> {out.metrics.parent}", flush=True)
    model, config = load_trained_model(path, device, use_ema=spec.ema)
    snapshot = snapshot_state(path, model, step)  # before any sampling
    write_primary_samples(model, mixture, config, device, spec, model_path=path,
                          out=out.samples, exact_out=out.bayes_samples, grid=None,
                          started=started)
    write_nll(model, config, device, spec.nll, model_path=path, seed=spec.seed, ema=spec.ema,
              out=out.nll, started=time.perf_counter())
    score_samples(out.samples, spec.fid, dataset=config.dataset, root=config.data_root,
                  device=device, args=args, out=out.fid, started=time.perf_counter(),
                  bayes_samples=out.bayes_samples)
    collect_metrics(args.train_json, out.nll, out.fid, out.metrics, snapshot=snapshot)


def snapshot_state(path: Path, model, train_step: int) -> dict[str, Any]:
    """The training run at the snapshot ``path`` (``snapshots/step<k>.pt``) whose EMA weights
    ``model`` holds: :func:`vdm.training.snapshots.snapshot_metrics` of its saved state plus the
    log-SNR end points of its (EMA) schedule, ``logsnr_max`` = λ(0) and ``logsnr_min`` = λ(1)
    (a learned schedule moves them during training). ``ValueError`` naming the file when it
    holds the state after another step than ``train_step``."""
    fields = snapshot_metrics(load_checkpoint(path, "cpu"))
    if fields["train_step"] != train_step:
        raise ValueError(f"{path} holds the state after training step {fields['train_step']}, "
                         f"not after --train-step {train_step}")
    with torch.no_grad():
        logsnr_max, logsnr_min = (float(v) for v in schedule_endpoints(model.schedule))
    return {**fields, "logsnr_max": logsnr_max, "logsnr_min": logsnr_min}


def _check_dataset_classifier(model, path: Path | None, dataset: str) -> None:
    """Before any sampling: a conditional model's samples need the dataset classifier for their
    class accuracy (one-line error naming the option or the file)."""
    if model.num_classes is None:
        return
    if path is None:
        raise ValueError("a class-conditional model: its class accuracy needs "
                         "--dataset-classifier (vdm classifier)")
    from vdm.evaluation.fid import check_extractor_weights  # lazy: torch-fidelity (optional; 1.3 s)

    check_extractor_weights("classifier", path, dataset)


# ----- sweep: more sampler settings of one model, without retraining ----------------------
def sweep_arguments(parser: argparse.ArgumentParser) -> None:
    spec_arguments(parser, "sweep")
    files = fid_file_arguments(parser)
    files.add_argument("--model", required=True, type=Path, metavar="FILE", help="trained model.pt")
    files.add_argument("--noisy-classifier", type=Path, metavar="FILE",
                       help="noise-conditional classifier for classifier-guided settings")
    files.add_argument("--out-dir", required=True, type=Path, metavar="DIR",
                       help="writes <out-dir>/<setting>/samples.npz and fid.json")


def sweep_main(args: argparse.Namespace) -> None:
    """Samples and FID/KID/precision/recall (and the class accuracy of conditional samples) of
    one model for each evaluation setting, in one process (the model is loaded once). Every
    setting starts from the same seed, so differences between settings are paired (common random
    numbers); guided settings are checked against the model before any sampling."""
    spec = read_spec(args)
    settings = [parse_setting(name) for name in spec.settings]  # before any work
    if not settings:
        raise ValueError("spec key 'settings' is empty: nothing to sweep")
    model, config, device = load_checked_model(args, spec, settings)
    mixture = exact_sampling_mixture(config, spec.bayes_samplers)
    run_sweep(model, config, device, args, settings, seed=spec.seed, ema=spec.ema,
              num_samples=spec.num_samples, batch_size=spec.batch_size, fid=spec.fid,
              out_dir=args.out_dir, mixture=mixture)


def load_checked_model(args: argparse.Namespace, spec, settings) -> tuple[Any, Any, Any]:
    """``(model, config, device)`` of ``evaluate`` and ``sweep``: threads and device set, the
    model loaded (EMA weights unless the spec's ``ema`` is false), and before any sampling the
    FID extractor's weights, a conditional model's dataset classifier and every guided setting
    checked."""
    from vdm.evaluation.fid import check_extractor_weights  # lazy: torch-fidelity (optional; 1.3 s)

    features = spec.fid.features
    weights = extractor_weights(features, args.dataset_classifier)
    set_threads(args.threads)
    device = resolve_device(spec.device)
    model, config = load_trained_model(args.model, device, use_ema=spec.ema)
    check_extractor_weights(features.feature_extractor, weights, config.dataset)
    _check_dataset_classifier(model, args.dataset_classifier, config.dataset)
    check_sweep_settings(settings, model, args.noisy_classifier, config.dataset)
    return model, config, device


def check_sweep_settings(settings, model, noisy_classifier: Path | None,
                         dataset: str | None = None) -> None:
    """Before any sampling: every guided setting can be applied to ``model`` (``oracle``
    guidance: ``dataset``, the model's, has a known density)."""
    for setting in settings:
        if setting.guidance.kind == "classifier" and noisy_classifier is None:
            raise ValueError(f"setting {setting.name}: classifier guidance needs "
                             "--noisy-classifier")
        if setting.guidance.kind == "oracle" and dataset is not None:
            require_known_density(dataset, f"setting {setting.name}: oracle guidance (the exact "
                                           "noisy-class posterior p(c | z))")
        if setting.guidance.kind == "cfg":
            check_guidance(setting.guidance, model)


def run_sweep(model, config, device, args: argparse.Namespace, settings, *, seed: int,
              ema: bool, num_samples: int, batch_size: int, fid: FidSettings, out_dir: Path,
              mixture: GaussianMixtureData | None = None) -> list[Path]:
    """Samples and FID of a loaded model for each evaluation setting -> ``out_dir/<setting>/``
    (``samples.npz``, ``fid.json``); the same seed for every setting (paired). Returns the
    ``fid.json`` paths. ``args`` holds the files of ``sweep``/``evaluate`` (model, noisy and
    dataset classifier, FID cache). With ``mixture`` (spec key ``bayes_samplers``) every unguided
    setting is also sampled with the exact denoiser from the same seed
    (``out_dir/<setting>/bayes_samples.npz``, :func:`write_bayes_samples`) and scored in the same
    ``fid.json``."""
    written = []
    for setting in settings:
        started = time.perf_counter()
        samples = out_dir / setting.name / "samples.npz"
        exact_mixture = mixture if setting.guidance.kind == "none" else None
        exact = None if exact_mixture is None else out_dir / setting.name / "bayes_samples.npz"
        write_model_and_exact_samples(
            model, exact_mixture, config, device, model_path=args.model, setting=setting,
            num_samples=num_samples, batch_size=batch_size, seed=seed, ema=ema, clip=True,
            out=samples, exact_out=exact, grid=None, started=started,
            noisy_classifier=args.noisy_classifier)
        written.append(out_dir / setting.name / "fid.json")
        score_samples(samples, fid, dataset=config.dataset, root=config.data_root, device=device,
                      args=args, out=written[-1], started=time.perf_counter(), bayes_samples=exact)
    return written
