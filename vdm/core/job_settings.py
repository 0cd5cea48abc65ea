"""The settings several jobs' specs share (:mod:`vdm.core.job_specs`): how primary samples are
drawn (:class:`SamplingSettings`), the likelihood bounds (:class:`NllSettings`,
:class:`OdeSettings`) and FID (:class:`FidSettings`, :class:`FeatureSettings`), with the field
documentation the specs reuse. The split jobs (sample / nll / fid / fid-reference) and the fused
``evaluate`` job hold the same sub-specs, so each config key is defined in one place. Standard
library and :mod:`vdm.core.spec_base` only."""

from __future__ import annotations

from dataclasses import dataclass

from vdm.core.spec_base import Spec, setting

DATASET_DOC = "dataset (digits, digits-gmm, mnist, cifar10)"
DATA_ROOT_DOC = "folder holding MNIST/ or cifar-10-batches-py/ (ignored for digits and digits-gmm)"
DEVICE_DOC = "torch device: auto (CUDA when present) | cpu | cuda[:i]"
SEED_DOC = "seed of the evaluation's noise (the workflow: the run's seed)"
EMA_DOC = "evaluate the EMA weights (false: the raw weights)"
#: the step spacings of ``sample.spacings`` (vdm.model.setting_names.SPACINGS; this module imports
#: nothing from vdm.model)
SPACINGS = ("time", "logsnr", "karras")
BAYES_SAMPLERS_DOC = ("also sample every unguided setting with the exact denoiser eps* of the "
                      "known density, same seed (left out: false; evaluation.bayes_samplers)")


@dataclass(frozen=True)
class SamplingSettings(Spec):
    """How one model's primary samples are drawn (the ``sample`` job, and ``evaluate``)."""

    method: str = setting("sampler (vdm.model.sampler): ancestral, ddim, heun or dpmpp2m")
    steps: int = setting("sampling steps N", unit="steps", minimum=1)
    num_samples: int = setting("samples drawn (class-balanced for a conditional model)",
                               unit="images", minimum=1)
    batch_size: int = setting("samples per batch", unit="images", minimum=1)
    guidance_kind: str = setting("guidance of these samples",
                                 choices=("none", "cfg", "classifier", "oracle"))
    guidance_weight: float = setting("guidance weight w (0 with kind none)", minimum=0)
    clip: bool = setting("clip the predicted x to [-1, 1] at every step")
    spacing: str = setting("step spacing (vdm.model.step_grids): time = uniform in t, logsnr = "
                           "uniform in lambda, karras = EDM's rho = 7 in sigma/alpha",
                           choices=SPACINGS, default="time")


@dataclass(frozen=True)
class OdeSettings(Spec):
    """The probability-flow ODE bound (vdm.model.ode): dopri5, Hutchinson divergence."""

    max_examples: int | None = setting("ODE bound on the first N images (null: all the ELBO's)",
                                       unit="images", minimum=1)
    num_probes: int = setting("Hutchinson probes per image", minimum=1)
    rtol: float = setting("dopri5 relative tolerance", minimum=0)
    atol: float = setting("dopri5 absolute tolerance", minimum=0)
    batch_size: int = setting("images per ODE batch", unit="images", minimum=1)


@dataclass(frozen=True)
class NllSettings(Spec):
    """The test-set bound -log2 p(x) per dimension (bits/dim) from the ELBO (vdm.evaluation)."""

    split: str = setting("dataset split evaluated", choices=("train", "test"))
    num_time_samples: int = setting("noise-level draws per image (>= 2 for the Monte-Carlo SE)",
                                    unit="draws per image", minimum=2)
    time_sampling: str = setting("draw lambda uniformly (logsnr, stratified) or t uniformly",
                                 choices=("logsnr", "t"))
    discrete_steps: int | None = setting("discrete-time bound with T steps (null: continuous "
                                         "time)", unit="steps", minimum=1)
    batch_size: int = setting("images per batch", unit="images", minimum=1)
    max_examples: int | None = setting("evaluate the first N images of the split (null: all)",
                                       unit="images", minimum=2)
    ode: OdeSettings | None = setting("also the probability-flow ODE bound nll_ode_bpd (null: "
                                      "not computed)")


@dataclass(frozen=True)
class FeatureSettings(Spec):
    """The FID features: extractor, its weights and the reference split (fid-reference)."""

    feature_extractor: str = setting("network whose features are compared (classifier: the "
                                     "dataset classifier of the job's --dataset-classifier)",
                                     choices=("classifier", "inception-v3-compat"))
    weights_path: str | None = setting("Inception weights .pth (null: torch-fidelity's "
                                       "download; always null for the classifier extractor)")
    reference_split: str = setting("split the samples are compared with (fresh: fresh true "
                                   "samples of a dataset with a known distribution)",
                                   choices=("train", "test", "fresh"))
    batch_size: int = setting("images per feature-extraction batch", unit="images", minimum=1)
    fresh_reference_size: int | None = setting(
        "fresh true samples in the reference (only with reference_split fresh)", unit="images",
        minimum=4, default=None)

    def problem(self) -> tuple[str, str] | None:
        fresh = self.reference_split == "fresh"
        if fresh != (self.fresh_reference_size is not None):
            return ("fresh_reference_size", "required with reference_split 'fresh' and only "
                    f"then (reference_split is {self.reference_split!r})")
        return None


@dataclass(frozen=True)
class FidSettings(Spec):
    """FID, KID and precision/recall of a set of images against the reference features."""

    features: FeatureSettings = setting("the features and reference split")
    kid_subset_size: int = setting("KID subset size", unit="images", minimum=2)
    prc: bool = setting("also precision and recall (k-NN manifolds)")
