"""One typed spec per job: the settings a workflow job runs with, as one JSON argument.

A spec is a frozen dataclass of a job's *settings* (numbers, names, switches), built from the
validated workflow config (config/config.yaml + config/schema.yaml) by a builder such as
:func:`evaluate_spec`. The Snakemake rules put ``spec.to_json()`` in their ``params`` and call
``python -m vdm <command> --spec {params.spec:q}``; the command reads it with
:meth:`Spec.from_json`. Since a spec holds only the settings of its own job, a changed setting
reruns exactly the jobs whose spec changed (Snakemake's ``params`` rerun trigger). Files are not
settings: the inputs and outputs of a job are the command's path arguments (``--model``, ``--out``
...), as Snakemake's ``{input}`` / ``{output}``; paths the config itself names (``data_root``,
Inception weights) are settings.

Jobs and their specs: ``prepare-data`` :class:`PrepareDataSpec`, ``classifier``
:class:`ClassifierSpec`, ``noisy-classifier`` :class:`NoisyClassifierSpec`, ``fid-reference``
:class:`FidReferenceSpec`, ``fid-floor`` :class:`FidFloorSpec`, ``fid`` :class:`FidSpec`,
``sample`` :class:`SampleSpec`, ``nll`` :class:`NllSpec`, ``sweep`` :class:`SweepSpec` and the
fused ``evaluate`` :class:`EvaluateSpec` (which also evaluates the run's training snapshots; with
split evaluation each snapshot is a job of its own, :func:`snapshot_evaluate_spec`). The split
(sample / nll / fid / sweep) and fused (evaluate) jobs share their settings' definitions and
builders (:mod:`vdm.core.job_settings`: :class:`SamplingSettings`, :class:`NllSettings`,
:class:`FidSettings`), so each config key is read in one place. Training's spec is the run config
(:func:`vdm.core.config.workflow_cell`).

Every key of a spec is required in its JSON (the workflow writes them all), except a key with a
default (:func:`vdm.core.spec_base.setting`), left out while it holds it, so that the specs of
grids without the setting are byte for byte what they were before the key existed:
``sampling.spacing`` (left out while ``time``), ``fid.features.fresh_reference_size`` and the
fid-floor's ``num_floor_images`` (left out while null: they exist only with a fresh FID reference),
the fused evaluation's ``snapshots`` (left out while empty). An unknown or missing key, a wrong
type, a value outside its choices or below its minimum, or keys that do not go together
(:meth:`~vdm.core.spec_base.Spec.problem`) is a one-line ``ValueError`` naming the dotted key. This
module imports nothing beyond the standard library and :mod:`vdm.core` (:mod:`vdm.core.spec_base`:
the typed-JSON base), so the bench (below the pipeline) builds the same specs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from vdm.core.job_settings import (
    BAYES_SAMPLERS_DOC,
    DATA_ROOT_DOC,
    DATASET_DOC,
    DEVICE_DOC,
    EMA_DOC,
    SEED_DOC,
    FeatureSettings,
    FidSettings,
    NllSettings,
    OdeSettings,
    SamplingSettings,
)
from vdm.core.known_density_settings import has_known_density
from vdm.core.spec_base import Spec, setting


# ----- job specs ----------------------------------------------------------------------------
@dataclass(frozen=True)
class PrepareDataSpec(Spec):
    """``prepare-data``: load (and optionally download) a dataset, record sizes and hashes."""

    dataset: str = setting(DATASET_DOC)
    data_root: str = setting(DATA_ROOT_DOC)
    download: bool = setting("download the dataset when missing")


@dataclass(frozen=True)
class ClassifierSpec(Spec):
    """``classifier``: the dataset classifier (FID extractor, judge of conditional samples)."""

    dataset: str = setting(DATASET_DOC)
    data_root: str = setting(DATA_ROOT_DOC)
    device: str = setting(DEVICE_DOC)
    steps: int = setting("training steps", unit="steps", minimum=1)
    batch_size: int = setting("images per step", unit="images", minimum=1)
    lr: float = setting("Adam learning rate", unit="per step", minimum=0)
    seed: int = setting("seed of the initialisation and batches", minimum=0)
    min_accuracy: float = setting("fail when the test accuracy is below this", unit="fraction",
                                  minimum=0)


@dataclass(frozen=True)
class NoisyClassifierSpec(Spec):
    """``noisy-classifier``: p(y | z_lambda, lambda) of classifier guidance."""

    dataset: str = setting(DATASET_DOC)
    data_root: str = setting(DATA_ROOT_DOC)
    device: str = setting(DEVICE_DOC)
    logsnr_min: float = setting("lower end of the log-SNR range lambda is drawn from uniformly",
                                unit="lambda = log SNR, natural log")
    logsnr_max: float = setting("upper end of that range", unit="lambda = log SNR, natural log")
    steps: int = setting("training steps", unit="steps", minimum=1)
    batch_size: int = setting("images per step", unit="images", minimum=1)
    lr: float = setting("Adam learning rate", unit="per step", minimum=0)
    channels: int = setting("width of the classifier", unit="channels", minimum=1)
    seed: int = setting("seed of the initialisation, batches and noise", minimum=0)


@dataclass(frozen=True)
class FidReferenceSpec(Spec):
    """``fid-reference``: extract and cache the reference split's features."""

    dataset: str = setting(DATASET_DOC)
    data_root: str = setting(DATA_ROOT_DOC)
    device: str = setting(DEVICE_DOC)
    features: FeatureSettings = setting("the features and reference split")


@dataclass(frozen=True)
class FidFloorSpec(Spec):
    """``fid-floor``: FID/KID/precision/recall of held-out real images (the real-data floor)."""

    dataset: str = setting(DATASET_DOC)
    data_root: str = setting(DATA_ROOT_DOC)
    device: str = setting(DEVICE_DOC)
    floor_split: str = setting("held-out split scored as if it were samples (fresh: fresh true "
                               "samples, with the fresh reference)",
                               choices=("train", "test", "fresh"))
    fid: FidSettings = setting("FID settings, as the models' samples get")
    num_floor_images: int | None = setting(
        "fresh true samples scored (only with floor_split fresh; the workflow: the runs' "
        "sample.num_samples, so the floor has their FID bias)", unit="images", minimum=4,
        default=None)

    def problem(self) -> tuple[str, str] | None:
        reference = self.fid.features.reference_split
        if (self.floor_split == "fresh") != (reference == "fresh"):
            return ("floor_split", f"{self.floor_split!r} with fid.features.reference_split "
                    f"{reference!r}: fresh true samples are scored against fresh ones only, "
                    "and a split against the other split")
        if self.floor_split != "fresh" and self.floor_split == reference:
            return ("floor_split", f"{self.floor_split!r} is the reference split too: the FID "
                    "of a set against itself is 0")
        if (self.floor_split == "fresh") != (self.num_floor_images is not None):
            return ("num_floor_images", "required with floor_split 'fresh' and only then")
        return None


@dataclass(frozen=True)
class FidSpec(Spec):
    """``fid``: FID/KID/precision/recall of one samples.npz (split evaluation)."""

    dataset: str = setting(f"{DATASET_DOC}, of the reference")
    data_root: str = setting(DATA_ROOT_DOC)
    device: str = setting(DEVICE_DOC)
    fid: FidSettings = setting("FID settings")
    bayes_samplers: bool = setting(BAYES_SAMPLERS_DOC + "; also scores --bayes-samples",
                                   default=False)


@dataclass(frozen=True)
class SampleSpec(Spec):
    """``sample``: one model's primary samples (split evaluation)."""

    seed: int = setting(SEED_DOC, minimum=0)
    device: str = setting(DEVICE_DOC)
    ema: bool = setting(EMA_DOC)
    sampling: SamplingSettings = setting("how the samples are drawn")
    bayes_samplers: bool = setting(BAYES_SAMPLERS_DOC, default=False)


@dataclass(frozen=True)
class NllSpec(Spec):
    """``nll``: one model's test-set bits/dim (and the optimal-denoiser gap)."""

    seed: int = setting(SEED_DOC, minimum=0)
    device: str = setting(DEVICE_DOC)
    ema: bool = setting(EMA_DOC)
    nll: NllSettings = setting("the likelihood bound(s)")
    denoiser_floor: bool = setting("also the gap to the training set's optimal denoiser "
                                   "(needs --denoiser-floor-out)")


@dataclass(frozen=True)
class SweepSpec(Spec):
    """``sweep``: samples and FID of one model at further sampler and guidance settings."""

    seed: int = setting("seed of the sampling noise, the same for every setting (paired; the "
                        "workflow: the run's seed)", minimum=0)
    device: str = setting(DEVICE_DOC)
    ema: bool = setting(EMA_DOC)
    settings: tuple[str, ...] = setting("evaluation settings <method>-<steps>[-<spacing>]"
                                        "[-<guidance>-<weight>], e.g. ddim-10, heun-10-karras, "
                                        "ancestral-25-cfg-2")
    num_samples: int = setting("samples per setting", unit="images", minimum=1)
    batch_size: int = setting("samples per batch", unit="images", minimum=1)
    fid: FidSettings = setting("FID settings")
    bayes_samplers: bool = setting(BAYES_SAMPLERS_DOC, default=False)


@dataclass(frozen=True)
class EvaluateSpec(Spec):
    """``evaluate``: sample + nll + fid (+ sweep, metrics.json) of one model in one process."""

    seed: int = setting("seed of the sampling, NLL and sweep noise (the workflow: the run's "
                        "seed)", minimum=0)
    device: str = setting(DEVICE_DOC)
    ema: bool = setting(EMA_DOC)
    sampling: SamplingSettings = setting("the primary samples, as `sample`")
    nll: NllSettings = setting("the likelihood bound(s), as `nll`")
    fid: FidSettings = setting("FID settings, as `fid` (dataset and root: the model's)")
    denoiser_floor: bool = setting("also the gap to the training set's optimal denoiser "
                                   "(needs --denoiser-floor-out)")
    sweep: tuple[str, ...] = setting("further evaluation settings (as `sweep`, with the primary "
                                     "samples' num_samples and batch_size)")
    bayes_samplers: bool = setting(BAYES_SAMPLERS_DOC, default=False)
    snapshots: tuple[int, ...] = setting(
        "also evaluate the run's snapshots after these training steps (snapshots/step<k>.pt "
        "beside --train-json; each with snapshot_spec(): the primary setting only) into "
        "--snapshots-out-dir/step<k>/; ascending", minimum=1, default=())

    def problem(self) -> tuple[str, str] | None:
        if list(self.snapshots) != sorted(set(self.snapshots)):
            return "snapshots", f"{list(self.snapshots)} is not ascending without repeats"
        return None

    def snapshot_spec(self) -> EvaluateSpec:
        """The evaluation of one training snapshot: this spec with the primary sampler setting
        only (``sweep`` empty: the further sampler and guidance settings are evaluated at the
        final step only), the ELBO without the probability-flow ODE bound (``nll.ode`` null),
        no optimal-denoiser gap and no snapshots of its own. Samples, NLL draws, FID settings
        and ``bayes_samplers`` are the final evaluation's, so a learning curve compares like
        with like (FID is biased at small sample counts: every budget gets the same
        ``num_samples``)."""
        return replace(self, nll=replace(self.nll, ode=None), denoiser_floor=False, sweep=(),
                       snapshots=())


# ----- builders from the validated workflow config ------------------------------------------
def sample_spacings(config: Mapping[str, Any]) -> list[str]:
    """``sample.spacings`` of a config (``[time]`` when it has none, e.g. a hand-made one)."""
    return list(config["sample"].get("spacings", ["time"]))


def sampling_settings(config: Mapping[str, Any]) -> SamplingSettings:
    """The primary setting: the first sampler with the first step count and the first step
    spacing, no guidance."""
    sample = config["sample"]
    return SamplingSettings(method=sample["methods"][0], steps=int(sample["steps"][0]),
                            num_samples=sample["num_samples"], batch_size=sample["batch_size"],
                            guidance_kind="none", guidance_weight=0.0, clip=True,
                            spacing=sample_spacings(config)[0])


def sweep_setting_names(config: Mapping[str, Any]) -> tuple[str, ...]:
    """Names of the further evaluation settings, in the order of
    :func:`vdm.model.setting_names.evaluation_settings` without its first (primary) one: every
    sampler x steps x spacing with no guidance and each guidance kind at each weight > 0 (the
    names of :attr:`vdm.model.setting_names.EvaluationSetting.name`: no spacing tag for ``time``)."""
    guidance = config["guidance"]
    tags = [""] + [f"-{kind}-{float(w):g}" for kind in guidance["kinds"]
                   for w in guidance["weights"] if w > 0]
    spacings = ["" if spacing == "time" else f"-{spacing}" for spacing in sample_spacings(config)]
    names = [f"{method}-{int(steps)}{spacing}{tag}" for method in config["sample"]["methods"]
             for steps in config["sample"]["steps"] for spacing in spacings for tag in tags]
    return tuple(names[1:])


def bayes_samplers(config: Mapping[str, Any]) -> bool:
    """``evaluation.bayes_samplers`` resolved: null (the default) means on exactly when the
    dataset has a known density (:func:`vdm.core.known_density_settings.has_known_density`);
    ``true`` on another dataset is rejected when the config is validated."""
    value = config["evaluation"].get("bayes_samplers")
    return has_known_density(config["dataset"]) if value is None else bool(value)


def ode_settings(config: Mapping[str, Any], *, enabled_only: bool = True) -> OdeSettings | None:
    """``nll.ode`` of the config (None when disabled, unless ``enabled_only`` is false)."""
    ode = config["nll"]["ode"]
    if enabled_only and not ode["enabled"]:
        return None
    return OdeSettings(max_examples=ode["max_examples"], num_probes=ode["num_probes"],
                       rtol=float(ode["rtol"]), atol=float(ode["atol"]),
                       batch_size=ode["batch_size"])


def nll_settings(config: Mapping[str, Any]) -> NllSettings:
    """``nll`` of the config: the continuous-time ELBO with lambda-uniform (stratified) draws."""
    nll = config["nll"]
    return NllSettings(split=nll["split"], num_time_samples=nll["num_time_samples"],
                       time_sampling="logsnr", discrete_steps=None, batch_size=nll["batch_size"],
                       max_examples=nll["max_examples"], ode=ode_settings(config))


def feature_settings(config: Mapping[str, Any]) -> FeatureSettings:
    """``fid`` of the config; ``fresh_reference_size`` only with ``reference_split: fresh``
    (otherwise it is no setting of any job: their specs stay as they were without the key)."""
    fid = config["fid"]
    inception = fid["feature_extractor"] == "inception-v3-compat"
    fresh = fid["reference_split"] == "fresh"
    return FeatureSettings(feature_extractor=fid["feature_extractor"],
                           weights_path=fid["feature_extractor_weights_path"] if inception else None,
                           reference_split=fid["reference_split"], batch_size=fid["batch_size"],
                           fresh_reference_size=fid["fresh_reference_size"] if fresh else None)


def fid_settings(config: Mapping[str, Any]) -> FidSettings:
    fid = config["fid"]
    return FidSettings(features=feature_settings(config), kid_subset_size=fid["kid_subset_size"],
                       prc=fid["prc"])


def _data(config: Mapping[str, Any]) -> dict[str, Any]:
    return {"dataset": config["dataset"], "data_root": config["data_root"]}


def prepare_data_spec(config: Mapping[str, Any]) -> PrepareDataSpec:
    return PrepareDataSpec(**_data(config), download=config["download"])


def classifier_spec(config: Mapping[str, Any]) -> ClassifierSpec:
    c = config["fid"]["classifier"]
    return ClassifierSpec(**_data(config), device=config["device"], steps=c["steps"],
                          batch_size=c["batch_size"], lr=float(c["lr"]), seed=c["seed"],
                          min_accuracy=float(c["min_accuracy"]))


def noisy_classifier_spec(config: Mapping[str, Any]) -> NoisyClassifierSpec:
    c = config["guidance"]["classifier"]
    return NoisyClassifierSpec(**_data(config), device=config["device"],
                               logsnr_min=float(config["logsnr_min"]),
                               logsnr_max=float(config["logsnr_max"]), steps=c["steps"],
                               batch_size=c["batch_size"], lr=float(c["lr"]),
                               channels=c["channels"], seed=c["seed"])


def fid_reference_spec(config: Mapping[str, Any]) -> FidReferenceSpec:
    return FidReferenceSpec(**_data(config), device=config["device"],
                            features=feature_settings(config))


def fid_floor_spec(config: Mapping[str, Any]) -> FidFloorSpec:
    """The floor of the config's reference: the other split of the dataset (``test`` against
    ``train``, ``train`` against ``test``), or with a fresh reference ``sample.num_samples``
    fresh true samples (``floor_split`` ``fresh``): the same N as the runs' samples, so the
    floor carries the same finite-N bias of FID as they do."""
    fid = fid_settings(config)
    reference = fid.features.reference_split
    if reference == "fresh":
        return FidFloorSpec(**_data(config), device=config["device"], floor_split="fresh",
                            fid=fid, num_floor_images=int(config["sample"]["num_samples"]))
    return FidFloorSpec(**_data(config), device=config["device"],
                        floor_split="train" if reference == "test" else "test", fid=fid)


def fid_spec(config: Mapping[str, Any]) -> FidSpec:
    return FidSpec(**_data(config), device=config["device"], fid=fid_settings(config),
                   bayes_samplers=bayes_samplers(config))


def sample_spec(config: Mapping[str, Any], seed: int | str) -> SampleSpec:
    return SampleSpec(seed=int(seed), device=config["device"], ema=True,
                      sampling=sampling_settings(config), bayes_samplers=bayes_samplers(config))


def nll_spec(config: Mapping[str, Any], seed: int | str) -> NllSpec:
    return NllSpec(seed=int(seed), device=config["device"], ema=True, nll=nll_settings(config),
                   denoiser_floor=config["evaluation"]["denoiser_floor"])


def sweep_spec(config: Mapping[str, Any], seed: int | str) -> SweepSpec:
    primary = sampling_settings(config)
    return SweepSpec(seed=int(seed), device=config["device"], ema=True,
                     settings=sweep_setting_names(config), num_samples=primary.num_samples,
                     batch_size=primary.batch_size, fid=fid_settings(config),
                     bayes_samplers=bayes_samplers(config))


def grid_snapshot_steps(train: Mapping[str, Any]) -> list[int]:
    """The steps of a workflow config's (validated) ``train.snapshots`` that get a snapshot
    file of their own, ascending: those below ``train.steps`` (the snapshot at ``train.steps``
    is ``model.pt``; none when the key is absent)."""
    return sorted(int(step) for step in train.get("snapshots", []) if step < train["steps"])


def evaluate_spec(config: Mapping[str, Any], seed: int | str) -> EvaluateSpec:
    """The fused job: the settings of :func:`sample_spec`, :func:`nll_spec`, :func:`fid_spec`
    and :func:`sweep_spec` (same builders) in one spec, with the run's snapshot steps
    (:func:`grid_snapshot_steps`): the fused job evaluates them too, in the same process."""
    return EvaluateSpec(seed=int(seed), device=config["device"], ema=True,
                        sampling=sampling_settings(config), nll=nll_settings(config),
                        fid=fid_settings(config),
                        denoiser_floor=config["evaluation"]["denoiser_floor"],
                        sweep=sweep_setting_names(config),
                        bayes_samplers=bayes_samplers(config),
                        snapshots=tuple(grid_snapshot_steps(config["train"])))


def snapshot_evaluate_spec(config: Mapping[str, Any], seed: int | str) -> EvaluateSpec:
    """The ``evaluate`` job of one training snapshot with ``evaluation.fused: false`` (the
    fused job evaluates them itself): :meth:`EvaluateSpec.snapshot_spec` of
    :func:`evaluate_spec`, so a changed sweep, guidance, ODE or denoiser-floor setting leaves
    these jobs' specs unchanged. ``bayes_samplers`` is the final evaluation's: a snapshot's
    primary samples also get the exact denoiser's of the same setting and seed (the snapshot's
    own schedule)."""
    return evaluate_spec(config, seed).snapshot_spec()


#: the spec type and builder of each command (per-model builders take the seed)
JOB_SPECS: dict[str, tuple[type[Spec], Any]] = {
    "prepare-data": (PrepareDataSpec, prepare_data_spec),
    "classifier": (ClassifierSpec, classifier_spec),
    "noisy-classifier": (NoisyClassifierSpec, noisy_classifier_spec),
    "fid-reference": (FidReferenceSpec, fid_reference_spec),
    "fid-floor": (FidFloorSpec, fid_floor_spec),
    "fid": (FidSpec, fid_spec),
    "sample": (SampleSpec, sample_spec),
    "nll": (NllSpec, nll_spec),
    "sweep": (SweepSpec, sweep_spec),
    "evaluate": (EvaluateSpec, evaluate_spec),
}
PER_MODEL = frozenset({"sample", "nll", "sweep", "evaluate"})


def job_spec(command: str, config: Mapping[str, Any], seed: int | str = 0) -> Spec:
    """The spec of ``command``'s job from a validated workflow ``config`` (``seed``: the run's,
    for the per-model jobs)."""
    _, builder = JOB_SPECS[command]
    return builder(config, seed) if command in PER_MODEL else builder(config)


def spec_templates(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Starting points of optional sub-specs for :func:`with_overrides`: ``nll.ode`` as the
    config would set it if it were enabled."""
    return {"nll.ode": ode_settings(config, enabled_only=False).to_dict()}
