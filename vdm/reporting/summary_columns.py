"""The columns of ``summary.csv`` and how each metric is named and printed.

Constants only (no dependencies): :data:`SUMMARY_COLUMNS` is the standard column order of the
long table (:func:`vdm.reporting.summary_load.summary_long`), :data:`OPTIONAL_COLUMNS` those
left out when no run has them (among them :data:`KNOWN_DENSITY_COLUMNS`), :data:`FINITE_METRICS`
those that must be finite whenever present (checked by ``vdm collect`` and again when
tabulating), :data:`METRICS` the short name, unit and decimals of the tabulated metrics (NLLs
in bits/dim, per dimension), and which metrics get a pivot table or a guidance table.
"""

from __future__ import annotations

from dataclasses import dataclass

#: the known-answer columns of a dataset with an exact density (digits-gmm,
#: :mod:`vdm.evaluation.known_density`), bits/dim: the true entropy H, the exact -log2 P / D of
#: the test images, the run's ELBO minus it (paired per image), the Bayes bound (ELBO of the exact
#: denoiser with the run's lambda range), the network and schedule + decoder gaps, and with the
#: ODE bound the same for the decoder-consistent ODE bound
KNOWN_DENSITY_COLUMNS = [
    "true_entropy_bpd", "true_entropy_bpd_se", "true_nll_bpd", "true_nll_bpd_se",
    "nll_minus_entropy_bpd", "nll_minus_entropy_bpd_se", "bayes_bound_bpd", "bayes_bound_bpd_se",
    "bayes_bound_bpd_mc_se", "nll_minus_bayes_bound_bpd", "nll_minus_bayes_bound_bpd_se",
    "bayes_bound_minus_entropy_bpd", "bayes_bound_minus_entropy_bpd_se",
    "nll_ode_vdeq_minus_entropy_bpd", "nll_ode_vdeq_minus_entropy_bpd_se", "bayes_ode_vdeq_bpd",
    "bayes_ode_vdeq_bpd_se", "nll_ode_vdeq_minus_bayes_ode_vdeq_bpd",
    "nll_ode_vdeq_minus_bayes_ode_vdeq_bpd_se", "bayes_ode_vdeq_minus_entropy_bpd",
    "bayes_ode_vdeq_minus_entropy_bpd_se",
]
#: the excess ε-error over the exact denoiser of a known density (digits-gmm,
#: :mod:`vdm.evaluation.excess_eps_error`): λ-weighted with the objective's weight, per split,
#: with its SE over images (nats/dim for `elbo`); the per-λ values are in excess_eps_error.csv
EXCESS_EPS_COLUMNS = ["excess_eps_error_train", "excess_eps_error_train_se",
                      "excess_eps_error_test", "excess_eps_error_test_se"]
#: per evaluation setting (row) on such a dataset, its samples against the truth
#: (:mod:`vdm.evaluation.sample_truth`): mean -log2 P(sample)/D (bits/dim) and minus H, the Bayes
#: classifier's mean confidence max_c p(c|x) and, for class-conditional samples, its accuracy on
#: the requested labels (fractions), next to the mixture's Bayes accuracy
SAMPLE_TRUTH_COLUMNS = [
    "sample_nll_bpd", "sample_nll_bpd_se", "sample_nll_minus_entropy_bpd",
    "sample_nll_minus_entropy_bpd_se", "sample_bayes_confidence", "sample_bayes_confidence_se",
    "bayes_class_accuracy", "bayes_class_accuracy_se", "bayes_accuracy", "bayes_accuracy_se",
]
#: per unguided setting (evaluation.bayes_samplers): the same seed's samples of the exact denoiser
#: eps* scored as the model's (FID with its SE, the truth columns): what the model would score
#: without network error
BAYES_SAMPLER_COLUMNS = [
    "bayes_fid", "bayes_fid_se", "bayes_sample_nll_bpd", "bayes_sample_nll_bpd_se",
    "bayes_sample_nll_minus_entropy_bpd", "bayes_sample_nll_minus_entropy_bpd_se",
    "bayes_sample_bayes_confidence", "bayes_sample_bayes_confidence_se",
    "bayes_bayes_class_accuracy", "bayes_bayes_class_accuracy_se",
]
KEY_COLUMNS = ["dataset", "conditioning", "parameterization", "objective", "schedule", "seed"]
#: the evaluation setting of a row (one model has a row per setting); ``sample_spacing`` (the
#: step spacing, vdm.model.step_grids) only in grids with a spacing other than ``time``
EVALUATION_COLUMNS = ["sampler", "sample_steps", "sample_spacing", "nfe", "guidance_kind",
                      "guidance_weight", "primary"]
SUMMARY_COLUMNS = KEY_COLUMNS + EVALUATION_COLUMNS + [
    "steps", "train_step", "train_seconds", "num_params", "final_loss", "logsnr_max", "logsnr_min",
    "nll_bpd", "nll_bpd_se", "nll_bpd_mc_se", "nll_reconstruction_bpd", "nll_prior_bpd",
    "nll_diffusion_bpd", "nll_ode_bpd", "nll_ode_bpd_se", "nll_ode_num_examples",
    "nll_elbo_bpd_on_ode_examples", "nll_ode_minus_elbo_bpd", "nll_ode_minus_elbo_bpd_se",
    "nll_ode_vdeq_bpd", "nll_ode_vdeq_bpd_se", "nll_ode_vdeq_minus_elbo_bpd",
    "nll_ode_vdeq_minus_elbo_bpd_se", "nll_cond_bpd", "nll_cond_bpd_se",
    *KNOWN_DENSITY_COLUMNS,
    "fid", "fid_se", "kid", "kid_std", "precision", "recall", "class_accuracy",
    "classifier_test_accuracy", "denoiser_gap_train", "denoiser_gap_test", *EXCESS_EPS_COLUMNS,
    "per_class_fid_mean", *SAMPLE_TRUTH_COLUMNS, *BAYES_SAMPLER_COLUMNS,
    "feature_extractor", "num_fid_samples",
    "git_commit", "metrics_file",
]
TEXT_COLUMNS = {"dataset", "conditioning", "parameterization", "objective", "schedule", "sampler",
                "sample_spacing", "guidance_kind", "feature_extractor", "git_commit", "metrics_file"}
#: columns that stay out of the table when no run has them (e.g. precision/recall not computed,
#: ``train_step``: the training step a row's weights are from, only in grids with snapshots)
OPTIONAL_COLUMNS = ("train_step", "sample_spacing",
                    "precision", "recall", "nll_ode_bpd", "nll_ode_bpd_se", "nll_ode_num_examples",
                    "nll_elbo_bpd_on_ode_examples", "nll_ode_minus_elbo_bpd",
                    "nll_ode_minus_elbo_bpd_se", "nll_ode_vdeq_bpd", "nll_ode_vdeq_bpd_se",
                    "nll_ode_vdeq_minus_elbo_bpd", "nll_ode_vdeq_minus_elbo_bpd_se",
                    "nll_cond_bpd", "nll_cond_bpd_se",
                    "class_accuracy", "classifier_test_accuracy", "per_class_fid_mean", "fid_se",
                    "denoiser_gap_train", "denoiser_gap_test", *KNOWN_DENSITY_COLUMNS,
                    *EXCESS_EPS_COLUMNS, *SAMPLE_TRUTH_COLUMNS, *BAYES_SAMPLER_COLUMNS)
#: metrics that must be finite numbers whenever present (checked by ``collect`` and again when
#: tabulating): NaN never reaches a table or plot
FINITE_METRICS = ("final_loss", "nll_bpd", "nll_bpd_se", "nll_bpd_mc_se", "nll_reconstruction_bpd",
                  "nll_prior_bpd", "nll_diffusion_bpd", "nll_ode_bpd", "nll_ode_bpd_se",
                  "nll_elbo_bpd_on_ode_examples", "nll_ode_minus_elbo_bpd",
                  "nll_ode_minus_elbo_bpd_se", "nll_ode_vdeq_bpd", "nll_ode_vdeq_bpd_se",
                  "nll_ode_vdeq_minus_elbo_bpd", "nll_ode_vdeq_minus_elbo_bpd_se", "nll_cond_bpd",
                  "nll_cond_bpd_se", "fid", "fid_se",
                  "kid", "kid_std", "class_accuracy", "per_class_fid_mean", "denoiser_gap_train",
                  "denoiser_gap_test", *KNOWN_DENSITY_COLUMNS, *EXCESS_EPS_COLUMNS,
                  *SAMPLE_TRUTH_COLUMNS, *BAYES_SAMPLER_COLUMNS)


@dataclass(frozen=True)
class MetricSpec:
    """How a metric is named and printed: short ``name``, ``unit`` and decimal places."""

    name: str
    unit: str
    decimals: int


METRICS = {"fid": MetricSpec("FID", "", 2), "nll_bpd": MetricSpec("NLL", "bits/dim", 3),
           "nll_ode_bpd": MetricSpec("ODE NLL", "bits/dim", 3),
           "nll_ode_vdeq_bpd": MetricSpec("ODE NLL (decoder-consistent)", "bits/dim", 3),
           "nll_cond_bpd": MetricSpec("conditional NLL -log p(x|y)", "bits/dim", 3),
           "true_entropy_bpd": MetricSpec("true entropy H", "bits/dim", 3),
           "nll_minus_entropy_bpd": MetricSpec("NLL − H", "bits/dim", 3),
           "bayes_bound_bpd": MetricSpec("Bayes bound", "bits/dim", 3),
           "nll_minus_bayes_bound_bpd": MetricSpec("network gap", "bits/dim", 3),
           "bayes_bound_minus_entropy_bpd": MetricSpec("schedule + decoder gap", "bits/dim", 3),
           "nll_ode_vdeq_minus_entropy_bpd": MetricSpec("ODE NLL − H", "bits/dim", 3),
           "bayes_ode_vdeq_bpd": MetricSpec("ODE Bayes bound", "bits/dim", 3),
           "nll_ode_vdeq_minus_bayes_ode_vdeq_bpd": MetricSpec("ODE network gap", "bits/dim", 3),
           "bayes_ode_vdeq_minus_entropy_bpd": MetricSpec("ODE schedule + decoder gap",
                                                          "bits/dim", 3),
           "class_accuracy": MetricSpec("class accuracy", "", 3),
           "sample_nll_bpd": MetricSpec("samples' −log2 P / D", "bits/dim", 3),
           "sample_nll_minus_entropy_bpd": MetricSpec("samples' −log2 P / D − H", "bits/dim", 3),
           "sample_bayes_confidence": MetricSpec("Bayes confidence of samples", "", 4),
           "bayes_class_accuracy": MetricSpec("Bayes class accuracy", "", 4),
           "bayes_accuracy": MetricSpec("Bayes accuracy", "", 4),
           "bayes_fid": MetricSpec("FID of exact ε*", "", 2),
           "bayes_sample_nll_bpd": MetricSpec("exact ε*: −log2 P / D", "bits/dim", 3),
           "precision": MetricSpec("precision", "", 3), "recall": MetricSpec("recall", "", 3)}
PIVOT_METRICS = ("fid", "nll_bpd")
#: pivots written only when some run has the metric
OPTIONAL_PIVOT_METRICS = ("nll_ode_bpd", "nll_ode_vdeq_bpd", "nll_cond_bpd")
#: what the guidance tables show per guidance kind and weight
GUIDANCE_METRICS = ("fid", "class_accuracy", "precision", "recall")


def metric_spec(metric: str) -> MetricSpec:
    """The :class:`MetricSpec` of a column (a generic one for unknown columns)."""
    return METRICS.get(metric, MetricSpec(metric, "", 3))
