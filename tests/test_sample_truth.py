"""Samples against the truth and samplers without network error (vdm.evaluation.sample_truth,
evaluation.bayes_samplers): closed-form / brute-force checks on the tiny mixture and digits-gmm,
the config key and the specs, the summary columns, the table and the dashed FID-vs-NFE lines.
(The chi-square test that ancestral and DDIM sampling with eps* reproduce P on the tiny mixture
is tests/test_bayes_denoiser.py::test_sampling_with_eps_star_reproduces_p.)"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from gmm_cases import all_points, brute_joint, tiny_mixture

from vdm.core.config import validate_workflow_config
from vdm.core.data import levels_to_pixels, pixels_to_levels
from vdm.core.digits_gmm import load_mixture
from vdm.core.job_specs import EvaluateSpec, SampleSpec, bayes_samplers, job_spec, snapshot_evaluate_spec
from vdm.evaluation.known_density import mixture_record
from vdm.evaluation.sample_truth import (
    BAYES_SAMPLER_KEYS,
    SAMPLE_TRUTH_KEYS,
    exact_denoiser,
    prefixed,
    sample_truth,
)
from vdm.model.bayes_denoiser import BayesDenoiser
from vdm.model.guidance import sample_guided
from vdm.model.schedules import get_schedule
from vdm.model.setting_names import Guidance
from vdm.reporting import sampler_plots
from vdm.reporting.known_answer import known_answer_latex, known_answer_markdown
from vdm.reporting.summary_columns import (
    BAYES_SAMPLER_COLUMNS,
    FINITE_METRICS,
    OPTIONAL_COLUMNS,
    SAMPLE_TRUTH_COLUMNS,
)


def _within(value: float, expected: float, se: float, k: float = 3.0) -> bool:
    return abs(value - expected) <= k * se


# ----- pixels <-> levels ---------------------------------------------------------------------
@pytest.mark.parametrize("levels", [2, 5, 17, 256])
def test_pixels_to_levels_inverts_levels_to_pixels(levels: int) -> None:
    k = torch.arange(levels)
    assert torch.equal(pixels_to_levels(levels_to_pixels(k, levels), levels).long(), k)


def test_pixels_off_the_levels_are_a_one_line_error() -> None:
    with pytest.raises(ValueError, match=r"not among the 17 levels"):
        pixels_to_levels(torch.tensor([0, 7, 255], dtype=torch.uint8), 17)


# ----- the truth columns ---------------------------------------------------------------------
def _tiny_truth() -> tuple[float, float]:
    """Exact ``H`` (bits/dim) and Bayes accuracy of the tiny mixture by enumeration."""
    mixture = tiny_mixture()
    joint = brute_joint(mixture)  # (L^D, K) P(x, k)
    p = joint.sum(1)
    per_class = np.stack([joint[:, mixture.component_class == c].sum(1)
                          for c in range(mixture.num_classes)], 1)
    return (float(-(p * np.log2(p)).sum() / mixture.num_dims),
            float(per_class.max(1).sum()))


def test_true_samples_score_the_entropy_and_the_bayes_accuracy() -> None:
    """Exact samples of the tiny mixture (classes overlap: Bayes accuracy well below 1): every
    mean is within 3 SE of its closed form (the record's ``H`` and Bayes accuracy are Monte-Carlo
    estimates of the same numbers, checked too)."""
    mixture = tiny_mixture()
    entropy, accuracy = _tiny_truth()
    record = mixture_record(mixture)
    assert _within(record["true_entropy_bpd"], entropy, record["true_entropy_bpd_se"])
    assert _within(record["bayes_accuracy"], accuracy, record["bayes_accuracy_se"])
    levels, labels = mixture.sample(6000, seed=11)
    truth = sample_truth(mixture, levels_to_pixels(torch.from_numpy(levels), 5), labels)
    assert set(truth) == set(SAMPLE_TRUTH_KEYS)
    assert _within(truth["sample_nll_bpd"], entropy, truth["sample_nll_bpd_se"])
    # minus the record's H (a 100k-sample estimate): off by that estimate's own error only
    assert _within(truth["sample_nll_minus_entropy_bpd"], entropy - record["true_entropy_bpd"],
                   truth["sample_nll_bpd_se"])
    assert 0.6 < accuracy < 0.95  # an informative case
    assert _within(truth["bayes_class_accuracy"], accuracy, truth["bayes_class_accuracy_se"])
    assert _within(truth["sample_bayes_confidence"], accuracy, truth["sample_bayes_confidence_se"])
    assert truth["bayes_accuracy"] == record["bayes_accuracy"]


def test_wrong_samples_score_far_off() -> None:
    """Uniform levels, wrong labels and a mode-collapsed sampler: far from the truth, the
    collapsed one *below* H (the docstring's warning)."""
    mixture = tiny_mixture()
    entropy, accuracy = _tiny_truth()
    rng = np.random.default_rng(0)
    uniform = rng.integers(0, 5, size=(6000, *mixture.shape)).astype(np.uint8)
    truth = sample_truth(mixture, levels_to_pixels(torch.from_numpy(uniform), 5))
    assert truth["sample_nll_minus_entropy_bpd"] > 20 * truth["sample_nll_minus_entropy_bpd_se"]
    levels, labels = mixture.sample(6000, seed=11)
    pixels = levels_to_pixels(torch.from_numpy(levels), 5)
    flipped = sample_truth(mixture, pixels, 1 - labels)
    assert flipped["bayes_class_accuracy"] < accuracy - 20 * flipped["bayes_class_accuracy_se"]
    points = all_points(mixture)
    mode = points[np.argmax(brute_joint(mixture).sum(1))]
    collapsed = np.repeat(mode.reshape(1, *mixture.shape), 100, 0).astype(np.uint8)
    collapsed[0] = points[np.argsort(brute_joint(mixture).sum(1))[-2]]  # the SE exists
    low = sample_truth(mixture, levels_to_pixels(torch.from_numpy(collapsed), 5))
    assert low["sample_nll_bpd"] < entropy - 5 * low["sample_nll_bpd_se"]


def test_digits_gmm_true_samples_and_uniform_levels() -> None:
    mixture = load_mixture()
    record = mixture_record(mixture)
    levels, labels = mixture.sample(2000, seed=3)
    truth = sample_truth(mixture, levels_to_pixels(torch.from_numpy(levels), 17), labels)
    se = math.hypot(truth["sample_nll_bpd_se"], record["true_entropy_bpd_se"])
    assert _within(truth["sample_nll_minus_entropy_bpd"], 0.0, se)
    # Bayes accuracy 0.999996: binomial SE of 2000 samples at that rate
    acc = record["bayes_accuracy"]
    assert _within(truth["bayes_class_accuracy"], acc, math.sqrt(acc * (1 - acc) / 2000) + 1e-12)
    assert _within(truth["sample_bayes_confidence"], acc, 1e-4)
    uniform = np.random.default_rng(1).integers(0, 17, (500, 1, 8, 8)).astype(np.uint8)
    off = sample_truth(mixture, levels_to_pixels(torch.from_numpy(uniform), 17), labels[:500])
    assert off["sample_nll_minus_entropy_bpd"] > 1.0  # bits/dim
    assert off["bayes_class_accuracy"] < 0.3


def test_prefixed_names_are_the_bayes_sampler_columns() -> None:
    scores = {"fid": 1.0, "fid_se": 0.1, "kid": 0.0,
              **{key: 0.5 for key in SAMPLE_TRUTH_KEYS}}
    assert tuple(prefixed(scores)) == BAYES_SAMPLER_KEYS
    assert list(BAYES_SAMPLER_KEYS) == BAYES_SAMPLER_COLUMNS
    assert list(SAMPLE_TRUTH_KEYS) == SAMPLE_TRUTH_COLUMNS
    for column in (*SAMPLE_TRUTH_COLUMNS, *BAYES_SAMPLER_COLUMNS):
        assert column in OPTIONAL_COLUMNS and column in FINITE_METRICS


# ----- sampling without network error ---------------------------------------------------------
def test_exact_denoiser_shares_the_schedule_labels_and_noise(one_thread) -> None:
    """A conditional eps* 'model' and :func:`exact_denoiser` of it draw bitwise the same samples
    from the same seed (same noise, same labels, same schedule module); another seed differs."""
    mixture = tiny_mixture()
    schedule = get_schedule("cosine", logsnr_min=-10.0, logsnr_max=7.0)
    model = BayesDenoiser(mixture, schedule, conditional=True)
    exact = exact_denoiser(model, mixture)
    assert exact.schedule is schedule and exact.num_classes == 2
    kwargs = dict(num_samples=64, num_classes=2, image_shape=mixture.shape, num_levels=5,
                  steps=20, method="ancestral", batch_size=24)
    first, labels = sample_guided(model, Guidance(), seed=5, **kwargs)
    second, exact_labels = sample_guided(exact, Guidance(), seed=5, **kwargs)
    assert torch.equal(first, second) and torch.equal(labels, exact_labels)
    other, _ = sample_guided(exact, Guidance(), seed=6, **kwargs)
    assert not torch.equal(first, other)
    assert exact_denoiser(BayesDenoiser(mixture, schedule), mixture).num_classes is None


def test_ancestral_samples_of_digits_gmm_with_eps_star_have_the_true_entropy(one_thread) -> None:
    """Ancestral sampling with eps* (class-conditional) on the default cosine range [-10, 7]:
    at 300 steps the mean -log2 P/D of 128 samples is within 3 SE of H (the bias left is about
    -0.02 bits/dim; -0.015 at 400 steps, measured with 1000 samples) and the Bayes classifier
    agrees with the requested labels; at 10 steps the samples sit on high-density points, far
    *below* H (ancestral sampling with the posterior mean is mode-seeking at coarse steps:
    -0.09 bits/dim at 25 steps)."""
    mixture = load_mixture()
    model = BayesDenoiser(mixture, get_schedule("cosine", logsnr_min=-10.0, logsnr_max=7.0),
                          conditional=True)
    kwargs = dict(num_samples=128, num_classes=10, image_shape=mixture.shape, num_levels=17,
                  method="ancestral", batch_size=128, seed=2)
    images, labels = sample_guided(model, Guidance(), steps=300, **kwargs)
    truth = sample_truth(mixture, images, labels)
    assert _within(truth["sample_nll_minus_entropy_bpd"], 0.0,
                   truth["sample_nll_minus_entropy_bpd_se"])
    assert truth["bayes_class_accuracy"] >= 0.99
    coarse = sample_truth(mixture, *sample_guided(model, Guidance(), steps=10, **kwargs))
    assert coarse["sample_nll_minus_entropy_bpd"] < -3 * coarse["sample_nll_minus_entropy_bpd_se"]


# ----- the config key and the specs ----------------------------------------------------------
def _config(dataset: str, value: bool | None = None, **extra) -> dict:
    evaluation = {} if value is None else {"bayes_samplers": value}
    return validate_workflow_config({"dataset": dataset, "evaluation": evaluation, **extra})


def test_bayes_samplers_needs_a_known_density() -> None:
    with pytest.raises(ValueError, match=r"^invalid config key 'evaluation.bayes_samplers': True "
                                         r"needs a dataset with a known density"):
        _config("digits", True)
    assert bayes_samplers(_config("digits")) is False
    assert bayes_samplers(_config("digits", False)) is False
    assert bayes_samplers(_config("digits-gmm")) is True
    assert bayes_samplers(_config("digits-gmm", False)) is False
    with pytest.raises(ValueError, match="bayes_samplers"):
        validate_workflow_config({"evaluation": {"bayes_samplers": "yes"}})


def test_the_key_enters_the_specs_only_when_on() -> None:
    off, on = _config("digits"), _config("digits-gmm", sample={"methods": ["ancestral", "ddim"]})
    for command in ("evaluate", "sample", "fid", "sweep"):
        assert "bayes_samplers" not in json.loads(job_spec(command, off).to_json())
        spec = job_spec(command, on)
        assert json.loads(spec.to_json())["bayes_samplers"] is True
        assert type(spec).from_json(spec.to_json()) == spec
    assert snapshot_evaluate_spec(on, 0).bayes_samplers is True
    plain = json.loads(job_spec("sample", off).to_json())
    assert SampleSpec.from_dict(plain).bayes_samplers is False  # absent key: off
    with pytest.raises(ValueError, match="spec key 'bayes_samplers'"):
        EvaluateSpec.from_dict({**json.loads(job_spec("evaluate", on).to_json()),
                                "bayes_samplers": 1})


# ----- reporting -----------------------------------------------------------------------------
def _summary() -> pd.DataFrame:
    """Two cells x 3 seeds x 2 samplers; the exact denoiser's FID is 1.0 below the model's."""
    rows = []
    for schedule in ("cosine", "learned"):
        for seed in range(3):
            for sampler, steps, nfe in (("ancestral", 25, 26), ("ddim", 10, 11)):
                fid = 3.0 + seed + 10 / nfe
                rows.append({
                    "dataset": "digits-gmm", "conditioning": "class", "parameterization": "eps",
                    "objective": "eps", "schedule": schedule, "seed": seed, "sampler": sampler,
                    "sample_steps": steps, "nfe": nfe, "guidance_kind": "none",
                    "guidance_weight": 0.0, "primary": sampler == "ancestral", "fid": fid,
                    "fid_se": 0.1, "bayes_fid": fid - 1.0, "bayes_fid_se": 0.1,
                    "nll_bpd": 2.4, "true_entropy_bpd": 2.1654, "true_entropy_bpd_se": 0.0006,
                    "true_nll_bpd": 2.17, "nll_minus_entropy_bpd": 0.23,
                    "bayes_bound_bpd": 2.18, "nll_minus_bayes_bound_bpd": 0.22,
                    "bayes_bound_minus_entropy_bpd": 0.01, "nll_num_examples": 64,
                    "sample_nll_bpd": 2.3 + 0.01 * seed, "sample_nll_minus_entropy_bpd":
                        2.3 + 0.01 * seed - 2.1654, "bayes_sample_nll_bpd": 2.17,
                    "bayes_class_accuracy": 0.95, "sample_bayes_confidence": 0.97,
                    "bayes_sample_bayes_confidence": 0.999, "bayes_accuracy": 0.999996,
                    "feature_extractor": "classifier-digits-gmm", "num_fid_samples": 1000})
    return pd.DataFrame(rows)


def test_fid_vs_nfe_draws_the_exact_denoiser_dashed_in_the_samplers_colour() -> None:
    df = _summary()
    fig = sampler_plots.fid_vs_nfe_figure(df)
    panels = [ax for ax in fig.axes if ax.get_xscale() == "log"]
    assert len(panels) == 2
    for ax in panels:
        solid = [line for line in ax.lines if line.get_linestyle() == "-"]
        dashed = [line for line in ax.lines if line.get_linestyle() == "--"]
        assert len(solid) == 2 and len(dashed) == 2
        for line, exact in zip(solid, dashed, strict=True):
            assert line.get_color() == exact.get_color()
            np.testing.assert_allclose(exact.get_ydata(), np.asarray(line.get_ydata()) - 1.0)
    assert "exact ε̂*" in panels[-1].get_legend_handles_labels()[1]
    plain = sampler_plots.fid_vs_nfe_figure(df.drop(columns=["bayes_fid", "bayes_fid_se"]))
    assert not any(line.get_linestyle() == "--" for ax in plain.axes for line in ax.lines)


def test_known_answer_gets_the_samples_table() -> None:
    df = _summary()
    primary = df[df["primary"]]
    md = known_answer_markdown(primary)
    assert "The primary samples (ancestral, 25 steps) against the known answer" in md
    row = next(line for line in md.splitlines() if line.startswith("| eps | cosine |")
               and "2.310" in line)
    assert "2.310 ± 0.025" in row and "| 2.165 |" in row and "| 0.9500 ± 0.0000 |" in row
    assert "| 1.0000 |" in row  # the Bayes accuracy, no CI
    tex = known_answer_latex(primary)
    assert "tab:known-answer-samples" in tex and tex.isascii()
    assert "The primary samples" not in known_answer_markdown(
        primary.drop(columns=["sample_nll_bpd"]))


def test_the_sampler_tables_give_the_exact_denoisers_fid_beside_the_networks(tmp_path) -> None:
    """summary.md: a second sampler table of the exact denoiser's FID per setting (the model's
    minus 1 in the synthetic summary); sampler_sweep.csv: its mean, CI and n per row."""
    from vdm.reporting.table_files import write_tables

    df = _summary()
    paths = write_tables(df, tmp_path)
    markdown = paths["summary.md"].read_text()
    assert "### Samplers and steps" in markdown and "exact Bayes denoiser ε*" in markdown
    sweep = pd.read_csv(paths["sampler_sweep.csv"])
    np.testing.assert_allclose(sweep["bayes_fid_mean"], sweep["mean"] - 1.0)
    assert (sweep["bayes_fid_n"] == 3).all() and sweep["bayes_fid_ci"].gt(0).all()
    plain = write_tables(df.drop(columns=["bayes_fid", "bayes_fid_se"]), tmp_path / "plain")
    assert "exact Bayes denoiser" not in plain["summary.md"].read_text()
    assert "bayes_fid_mean" not in pd.read_csv(plain["sampler_sweep.csv"])
