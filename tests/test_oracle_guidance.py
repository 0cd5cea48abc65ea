"""Oracle guidance: classifier guidance with the exact noisy-class posterior p(c | z_lambda) of a
known mixture (``Guidance("oracle", w)``), checked against finite differences, the unguided
sampler, the Bayes classifier of the mixture, the NFE accounting and the config and CLI errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from gmm_cases import tiny_mixture

from vdm.core.config import validate_workflow_config
from vdm.core.digits_gmm import GaussianMixtureData, load_mixture
from vdm.evaluation.known_density import oracle_classifier
from vdm.model.bayes_denoiser import BayesDenoiser, BayesEpsNetwork, BayesNoisyClassifier
from vdm.model.guidance import check_guidance, guided_eps_fn, oracle_range_check, sample_guided
from vdm.model.schedules import alpha_sigma, get_schedule
from vdm.model.setting_names import (
    EvaluationSetting,
    Guidance,
    classifier_evaluations_per_call,
    evaluation_settings,
    evaluations_per_call,
    guided_nfe,
    network_evaluations,
    parse_setting,
)
from vdm.pipeline.cli import main
from vdm.pipeline.evaluation_commands import check_sweep_settings
from vdm.reporting import guidance_plots
from vdm.reporting.aggregation import guidance_cells, guidance_kinds
from vdm.reporting.plot_base import new_figure
from vdm.reporting.table_text import guidance_markdown

pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: one thread is fastest

#: log-SNRs from pure noise to far beyond the data's level spacing (sigma = 9e-4 at 14)
LOG_SNRS = (-14.0, -5.0, 0.0, 4.0, 9.0, 14.0)


def _noisy_points(mixture: GaussianMixtureData, log_snr: float, n: int, seed: int
                  ) -> torch.Tensor:
    """``z = alpha x + sigma eps`` for ``x ~ P`` and as many points off the data (uniform in a
    box), float64 ``(2n, D)``."""
    levels = mixture.sample(n, seed=seed)[0].reshape(n, mixture.num_dims)
    rng = np.random.default_rng(seed)
    alpha, sigma = (float(v) for v in alpha_sigma(torch.tensor(log_snr, dtype=torch.float64)))
    on = alpha * mixture.level_values[levels] + sigma * rng.standard_normal(levels.shape)
    off = rng.uniform(-1.2, 1.2, levels.shape)
    return torch.tensor(np.concatenate([on, off]))


def _between_classes(oracle: BayesNoisyClassifier, mixture: GaussianMixtureData, log_snr: float,
                     n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points ``z = alpha ((1 - t) x_a + t x_b)`` between data points of two classes, ``t``
    bisected so that the two classes are about equally probable (where ``log p(c | z)`` is
    steepest, at every SNR), and the class of ``x_a`` for each."""
    levels, classes = mixture.sample(8 * n, seed=seed)
    x = torch.tensor(mixture.level_values[levels.reshape(8 * n, -1)])
    other = torch.tensor([int(np.flatnonzero(classes != c)[0]) for c in classes[:n]])
    x_a, x_b, c_a = x[:n], x[other], torch.tensor(classes[:n])
    c_b = torch.tensor(classes[other.numpy()])
    alpha = float(alpha_sigma(torch.tensor(log_snr, dtype=torch.float64))[0])
    low, high = torch.zeros(n, 1, dtype=torch.float64), torch.ones(n, 1, dtype=torch.float64)
    for _ in range(60):
        middle = (low + high) / 2
        log_post = oracle(alpha * ((1 - middle) * x_a + middle * x_b), torch.full((n,), log_snr))
        a_wins = (log_post.gather(1, c_a[:, None]) > log_post.gather(1, c_b[:, None]))
        low, high = torch.where(a_wins, middle, low), torch.where(a_wins, high, middle)
    return alpha * ((1 - low) * x_a + low * x_b), c_a


@pytest.mark.parametrize("log_snr", LOG_SNRS)
@pytest.mark.parametrize("name", ["tiny", "digits-gmm"])
def test_oracle_gradient_is_the_central_difference_of_the_exact_class_log_posterior(
        name: str, log_snr: float) -> None:
    """``grad_z log p(y | z_lambda)`` in closed form, ``alpha (E[x | z, y] - E[x | z]) / sigma^2``,
    against central differences of ``log p(y | z_lambda)`` (float64), for every class, on and
    off the data and between two classes (where it is steepest), at log-SNRs from -14 to 14.
    The step is 1e-3 of the posterior's length scale ``min(sigma, sigma^2 / (2 alpha))``; the
    tolerance allows the differences' round-off, 64 ulp of the largest ``|log p|`` over the
    step (at high SNR, off the data, ``log p(z)`` is of order -1e5)."""
    mixture = tiny_mixture() if name == "tiny" else load_mixture()
    oracle = BayesNoisyClassifier(BayesEpsNetwork(mixture))
    z = _noisy_points(mixture, log_snr, 6 if name == "tiny" else 2, seed=int(log_snr) + 30)
    labels = torch.arange(len(z)) % mixture.num_classes
    best = oracle(z, torch.full((len(z),), log_snr)).argmax(1)  # also the most probable class
    between, between_labels = _between_classes(oracle, mixture, log_snr, 4, seed=int(log_snr) + 20)
    z, labels = torch.cat([z, z, between]), torch.cat([labels, best, between_labels])
    grad = oracle.log_prob_grad(z, log_snr, labels)
    assert grad.dtype == torch.float64 and grad.shape == z.shape
    alpha, sigma = (float(v) for v in alpha_sigma(torch.tensor(log_snr, dtype=torch.float64)))
    step = 1e-3 * min(sigma, sigma**2 / (2 * alpha))
    n, d = z.shape
    shifts = step * torch.eye(d, dtype=torch.float64)
    points = torch.cat([z[:, None] + shifts, z[:, None] - shifts]).reshape(2 * n * d, d)
    lam = torch.full((2 * n * d,), log_snr)
    chosen = oracle(points, lam).gather(1, labels.repeat(2).repeat_interleave(d)[:, None])
    numeric = (chosen[:n * d] - chosen[n * d:]).reshape(n, d) / (2 * step)
    largest = float(oracle.denoiser.log_marginal(points, lam).abs().max() + chosen.abs().max())
    round_off = 64 * torch.finfo(torch.float64).eps * largest / step
    scale = float(grad.abs().max())
    assert scale > 1e3 * round_off  # the points between classes have a steep posterior
    torch.testing.assert_close(grad, numeric, rtol=1e-5, atol=1e-7 * scale + round_off)


def test_class_terms_keep_full_precision_where_a_class_is_far_away() -> None:
    """At high SNR on digits-gmm the fast path's sums underflow for components far from ``z``;
    the class-restricted quantities (``log p(c | z)`` of every class, ``E[x | z, c]``) equal
    the all-log-space computation (:meth:`BayesEpsNetwork.exact_component_terms`)."""
    mixture = load_mixture()
    net = BayesEpsNetwork(mixture)
    log_snr = 12.0
    z = _noisy_points(mixture, log_snr, 4, seed=2)[:4]  # on the data
    exact_joint, exact_means = net.exact_component_terms(z, log_snr)
    mask = net.class_mask
    per_class = torch.logsumexp(exact_joint[:, None, :].masked_fill(~mask, -torch.inf), dim=2)
    exact_log_posterior = per_class - torch.logsumexp(exact_joint, dim=1, keepdim=True)
    assert float(exact_log_posterior.min()) < -1e3  # some class is far away indeed
    torch.testing.assert_close(net.class_log_posterior(z, log_snr), exact_log_posterior,
                               rtol=1e-10, atol=1e-8)
    for c in range(mixture.num_classes):
        labels = torch.full((len(z),), c)
        weights = torch.softmax(exact_joint.masked_fill(~mask[labels], -torch.inf), dim=1)
        torch.testing.assert_close(net.posterior_mean(z, log_snr, labels),
                                   torch.einsum("bk,bkd->bd", weights, exact_means),
                                   rtol=0, atol=1e-10)


def _conditional_model(conditional: bool = True) -> BayesDenoiser:
    return BayesDenoiser(tiny_mixture(), get_schedule("cosine", logsnr_min=-10.0, logsnr_max=7.0),
                         conditional=conditional)


def test_weight_zero_is_the_conditional_eps_bitwise_and_weight_w_is_the_formula() -> None:
    model = _conditional_model()
    oracle = model.noisy_classifier()
    labels = torch.tensor([0, 1, 1, 0, 1])
    z = torch.randn(5, 1, 1, 2, generator=torch.Generator().manual_seed(0))
    log_snr = torch.tensor([-6.0, -1.0, 0.5, 3.0, 6.5])
    plain = guided_eps_fn(model, labels, Guidance())(z, log_snr)
    assert torch.equal(guided_eps_fn(model, labels, Guidance("oracle", 0.0), oracle)(z, log_snr),
                       plain)
    w = 2.5
    guided = guided_eps_fn(model, labels, Guidance("oracle", w), oracle)(z, log_snr)
    sigma = torch.sigmoid(-log_snr.double()).sqrt().view(-1, 1, 1, 1)
    expected = plain - (w * sigma * oracle.log_prob_grad(z, log_snr, labels)).float()
    assert torch.equal(guided, expected)
    # classifier guidance through autograd of the same exact posterior: the same numbers
    autograd = guided_eps_fn(model, labels, Guidance("classifier", w), oracle)(z, log_snr)
    torch.testing.assert_close(guided, autograd, rtol=1e-5, atol=1e-5)
    # Bayes' rule: p(z) p(c | z) = p(z | c) p(c), so the unconditional exact eps guided by the
    # oracle at w = 1 is the conditional exact eps, eps*(z) - (eps*(z) - eps*(z, c))
    unconditional = _conditional_model(conditional=False)
    bayes_rule = guided_eps_fn(unconditional, labels, Guidance("oracle", 1.0), oracle)(z, log_snr)
    torch.testing.assert_close(bayes_rule, plain, rtol=1e-5, atol=1e-5)
    # and the whole sampler: oracle at w = 0 draws the unguided conditional samples bit for bit
    kwargs = dict(num_samples=40, num_classes=2, image_shape=(1, 1, 2), num_levels=5, steps=6,
                  method="ddim", seed=3)
    none, none_labels = sample_guided(model, Guidance(), **kwargs)
    zero, zero_labels = sample_guided(model, Guidance("oracle", 0.0), classifier=oracle, **kwargs)
    assert torch.equal(none, zero) and torch.equal(none_labels, zero_labels)


@pytest.mark.parametrize("conditional", [True, False], ids=["conditional", "unconditional"])
def test_oracle_guidance_raises_the_bayes_classifiers_accuracy_as_w_grows(
        conditional: bool) -> None:
    """Class-balanced samples of the exact denoiser (conditional: ``P(x | c)``; unconditional:
    ``P(x)``, whatever the label), guided by the exact ``p(c | z)``: the Bayes classifier
    ``argmax_c p(c | x)`` of the mixture agrees with the requested class more often as ``w``
    grows (same noise for every ``w``, so the differences are paired; 3000 samples, binomial
    SE of each accuracy <= 0.009)."""
    mixture = tiny_mixture()
    model = _conditional_model(conditional)
    oracle = model.noisy_classifier()
    accuracy = []
    for w in (0.0, 1.0, 4.0):
        pixels, labels = sample_guided(model, Guidance("oracle", w), num_samples=3000,
                                       num_classes=2, image_shape=(1, 1, 2), num_levels=5,
                                       steps=40, method="ancestral", seed=7, classifier=oracle)
        levels = torch.round(pixels.double() * 4 / 255).long().numpy()
        hits = mixture.class_posterior(levels).argmax(1) == labels.numpy()
        accuracy.append(float(hits.mean()))
    assert accuracy[0] + 0.04 < accuracy[1] and accuracy[1] + 0.02 < accuracy[2], accuracy
    if not conditional:  # unguided samples ignore their label: about half agree
        assert abs(accuracy[0] - 0.5) < 0.05, accuracy


def test_setting_names_round_trip_and_nfe_counts_no_oracle_evaluation() -> None:
    setting = parse_setting("ancestral-25-oracle-2")
    assert setting == EvaluationSetting("ancestral", 25, Guidance("oracle", 2.0))
    assert setting.name == "ancestral-25-oracle-2" and Guidance("oracle", 0.5).name == "oracle-0.5"
    assert parse_setting("heun-8-oracle-0.5").guidance == Guidance("oracle", 0.5)
    names = [s.name for s in evaluation_settings(["heun"], [8], ["cfg", "classifier", "oracle"],
                                                 [0, 2])]
    assert names == ["heun-8", "heun-8-cfg-2", "heun-8-classifier-2", "heun-8-oracle-2"]
    assert all(parse_setting(n).name == n for n in names)
    oracle = Guidance("oracle", 3.0)
    assert (evaluations_per_call(oracle), classifier_evaluations_per_call(oracle)) == (1, 0)
    assert classifier_evaluations_per_call(Guidance("classifier", 3.0)) == 1
    for method, steps in (("ancestral", 25), ("heun", 8), ("dpmpp2m", 10)):
        assert guided_nfe(oracle, method, steps) == network_evaluations(method, steps)
        assert EvaluationSetting(method, steps, oracle).nfe == network_evaluations(method, steps)
    with pytest.raises(ValueError, match="'cfg', 'classifier' or 'oracle'"):
        Guidance("none", 1.0)


def test_oracle_needs_the_exact_posterior_and_records_no_range_limit() -> None:
    model = _conditional_model()
    with pytest.raises(ValueError, match="oracle guidance needs the exact"):
        check_guidance(Guidance("oracle", 1.0), model)
    check_guidance(Guidance("oracle", 1.0), model, model.noisy_classifier())
    record = oracle_range_check(model)
    assert record["classifier_lambda_range"] is None
    assert record["model_range_outside_classifier"] is False
    low, high = record["model_lambda_range"]
    assert low == pytest.approx(-10.0, abs=1e-3) and high == pytest.approx(7.0, abs=1e-3)


def test_oracle_on_a_dataset_without_known_density_is_a_one_line_config_error() -> None:
    config = {"dataset": "digits", "conditioning": {"enabled": True},
              "guidance": {"kinds": ["cfg", "oracle"], "weights": [0, 2]}}
    with pytest.raises(ValueError) as error:
        validate_workflow_config(config)
    message = str(error.value)
    assert "'guidance.kinds'" in message and "digits-gmm" in message and "\n" not in message
    assert validate_workflow_config({**config, "dataset": "digits-gmm"})["guidance"]["kinds"] == [
        "cfg", "oracle"]
    with pytest.raises(ValueError, match="guidance.kinds"):
        validate_workflow_config({**config, "guidance": {"kinds": ["oracel"]}})


def test_oracle_on_a_dataset_without_known_density_is_a_one_line_cli_error(tmp_path, capsys
                                                                           ) -> None:
    with pytest.raises(ValueError, match=r"^oracle guidance .*digits-gmm.*not 'digits'$"):
        oracle_classifier("digits")
    assert isinstance(oracle_classifier("digits-gmm"), BayesNoisyClassifier)
    settings = [parse_setting("ancestral-4"), parse_setting("ancestral-4-oracle-2")]
    model = _conditional_model()
    with pytest.raises(ValueError, match=r"^setting ancestral-4-oracle-2: oracle guidance"):
        check_sweep_settings(settings, model, None, "digits")
    check_sweep_settings(settings, model, None, "digits-gmm")
    tiny = ["--set", "model.channels=8", "--set", "model.channel_mults=[1]", "--set",
            "train.steps=2", "--set", "train.batch_size=8", "--set", "train.threads=1",
            "--set", "conditioning.enabled=true"]
    sample = ["--set", "sampling.guidance_kind=oracle", "--set", "sampling.guidance_weight=2",
              "--set", "sampling.num_samples=10", "--set", "sampling.batch_size=10",
              "--set", "sampling.steps=4"]
    for dataset in ("digits", "digits-gmm"):
        run = tmp_path / dataset
        assert main(["train", *tiny, "--set", f"dataset={dataset}", "--out", str(run)]) == 0
        capsys.readouterr()
        code = main(["sample", "--model", str(run / "model.pt"), *sample,
                     "--out", str(run / "s.npz")])
        err = capsys.readouterr().err
        if dataset == "digits":  # before any sampling, one line
            assert code == 2 and err.count("\n") == 1 and "oracle guidance" in err, err
            assert "digits-gmm" in err and not (run / "s.npz").exists()
            continue
        assert code == 0, err
        with np.load(run / "s.npz") as npz:
            meta = json.loads(str(npz["meta"]))
            assert npz["images"].shape == (10, 1, 8, 8) and npz["labels"].tolist() == [
                i % 10 for i in range(10)]
        assert (meta["guidance_kind"], meta["guidance_weight"], meta["nfe"]) == ("oracle", 2, 5)
        assert meta["noisy_classifier"] is None and meta["oracle"].endswith("digits-gmm")
        assert meta["classifier_lambda_range"] is None
        assert meta["model_range_outside_classifier"] is False


def _guided_rows() -> pd.DataFrame:
    """A summary of one cell, 2 seeds, guided by the three kinds (oracle listed first)."""
    records = []
    for seed in range(2):
        for kind, weight in (("none", 0.0), ("oracle", 2.0), ("classifier", 2.0), ("cfg", 2.0)):
            records.append({
                "dataset": "digits-gmm", "conditioning": "class", "parameterization": "eps",
                "objective": "eps", "schedule": "cosine", "seed": seed, "sampler": "ancestral",
                "sample_steps": 25, "nfe": 52 if kind == "cfg" else 26, "primary": kind == "none",
                "guidance_kind": kind, "guidance_weight": weight, "fid": 1.0 + weight + seed,
                "class_accuracy": 0.9 + 0.02 * weight + 0.01 * seed, "precision": 0.8,
                "recall": 0.7 - 0.1 * weight, "classifier_test_accuracy": 0.95,
                "feature_extractor": "classifier-digits-gmm", "num_fid_samples": 1000})
    return pd.DataFrame(records)


def test_oracle_is_the_third_guidance_kind_in_tables_and_figures(tmp_path) -> None:
    df = _guided_rows()
    assert guidance_kinds(df) == ["cfg", "classifier", "oracle"]
    assert list(dict.fromkeys(guidance_cells(df)["guidance_kind"])) == ["cfg", "classifier",
                                                                        "oracle"]
    text = guidance_markdown(df)
    positions = [text.index(convention) for convention in (
        "classifier-free guidance, eps~", "classifier guidance, eps~ = eps(z, c) - w sigma",
        "oracle guidance, classifier guidance with the exact p(y | z_lambda)")]
    assert positions == sorted(positions)
    written = guidance_plots.plot_guidance(df, tmp_path)
    assert [p.name for p in written] == ["fid_vs_guidance.png", "accuracy_vs_guidance.png",
                                         "precision_recall_guidance.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)
    assert guidance_plots.GUIDANCE_NAMES["oracle"] == "oracle guidance (exact p(c | z))"
    # the oracle's curves over the classifier panel: dashed, in the cell's colour, one legend entry
    cells = guidance_cells(df).assign(cell="eps · cosine")
    fig, axes = new_figure(1, 1)
    guidance_plots._oracle_overlay(axes[0, 0], cells, "guidance_weight", "fid_mean",
                                   {"eps · cosine": "C3"})
    (line,) = axes[0, 0].get_lines()
    assert line.get_linestyle() == "--" and line.get_color() == "C3"
    assert line.get_label() == guidance_plots.ORACLE_OVERLAY_LABEL
    assert list(line.get_xdata()) == [0.0, 2.0] and list(line.get_ydata()) == [1.5, 3.5]
