"""Class-conditional models, classifier-free and classifier guidance, the noise-conditional
classifier and the conditional metrics (issue 11)."""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from vdm.core.config import run_config_from_dict
from vdm.core.data import ImageData, load_dataset
from vdm.core.provenance import save_torch_atomic
from vdm.evaluation.evaluate import evaluate_nll
from vdm.model.diffusion import DiffusionModel, build_model, drop_labels
from vdm.model.guidance import classifier_log_prob_grad, guided_eps_fn, sample_guided, sample_labels
from vdm.model.network import UNet
from vdm.model.sampler import sample
from vdm.model.schedules import alpha_sigma
from vdm.model.setting_names import (
    GUIDANCE_KINDS,
    SAMPLERS,
    Guidance,
    evaluations_per_call,
    guided_nfe,
    network_evaluations,
)
from vdm.training.noisy_classifier import (
    NoisyClassifier,
    load_noisy_classifier,
    save_noisy_classifier,
    train_noisy_classifier,
)
from vdm.training.trainer import Trainer, load_trained_model

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

SHAPE = (1, 8, 8)
TINY_MODEL = {"channels": 8, "channel_mults": [1, 2]}
TINY_TRAIN = {"steps": 6, "batch_size": 32, "log_every": 2, "checkpoint_every": 4,
              "warmup_steps": 3, "threads": 1}




def _tiny_model(num_classes: int | None = 10, parameterization: str = "eps",
                seed: int = 0) -> DiffusionModel:
    """A tiny model with all weights random (the zero-initialised output layers would make
    eps_hat = 0 and hide any dependence on the labels)."""
    torch.manual_seed(seed)
    model = build_model(SHAPE, 17, "eps", "cosine", dict(TINY_MODEL), -10.0, 7.0,
                        parameterization=parameterization, num_classes=num_classes)
    generator = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for param in model.network.parameters():
            param.copy_(0.3 * torch.randn(param.shape, generator=generator))
    return model.eval()


def _fingerprint(state: dict[str, torch.Tensor]) -> tuple[float, float]:
    return (sum(float(v.double().abs().sum()) for v in state.values()),
            sum(float(v.double().square().sum()) for v in state.values()))


# ----- unconditional models are unchanged -------------------------------------------------
def test_unconditional_network_is_unchanged_and_conditional_one_only_adds_an_embedding() -> None:
    torch.manual_seed(0)
    plain = UNet(SHAPE, **TINY_MODEL)
    after_plain = torch.get_rng_state()
    torch.manual_seed(0)
    explicit = UNet(SHAPE, **TINY_MODEL, num_classes=None)
    assert torch.equal(torch.get_rng_state(), after_plain)  # no extra draw
    assert not hasattr(explicit, "class_embed") and explicit.num_classes is None
    torch.manual_seed(0)
    conditional = UNet(SHAPE, **TINY_MODEL, num_classes=10)
    cond_state = conditional.state_dict()
    assert cond_state.pop("class_embed.weight").shape == (11, 4 * TINY_MODEL["channels"])
    for name, value in plain.state_dict().items():  # the embedding is drawn after everything
        assert torch.equal(value, explicit.state_dict()[name]) and torch.equal(value,
                                                                               cond_state[name])
    z, log_snr = torch.randn(4, *SHAPE), torch.linspace(-5, 5, 4)
    with torch.no_grad():
        for param in plain.head.parameters():
            param.normal_()
        explicit.load_state_dict(plain.state_dict())
        assert torch.equal(plain(z, log_snr), explicit(z, log_snr))


def test_unconditional_init_and_training_match_the_code_before_conditioning(tmp_path) -> None:
    """Fingerprints recorded with commit 8265b81 (before conditioning existed); there the new
    code was also checked bitwise (init, trained weights of fixed and learned schedules,
    ancestral and DDIM samples, NLL). The sums allow for last-bit BLAS differences elsewhere."""
    torch.manual_seed(0)
    model = build_model(SHAPE, 17, "eps", "cosine", dict(TINY_MODEL), -10, 7)
    assert _fingerprint(model.state_dict()) == pytest.approx(
        (1774.0084475687795, 416.22829767526537), rel=1e-12)
    config = run_config_from_dict({"model": TINY_MODEL, "train": TINY_TRAIN})
    assert config.conditioning.enabled is False
    trainer = Trainer(config, tmp_path)
    for _ in range(6):
        trainer.train_step()
    assert _fingerprint(trainer.model.state_dict()) == pytest.approx(
        (1837.3262760345206, 417.83134700269255), rel=1e-6)


def test_losses_draw_nothing_extra_without_labels() -> None:
    x = load_dataset("digits", "test").model_inputs(torch.arange(16))
    for model in (_tiny_model(None), _tiny_model(10)):
        states, losses = [], []
        for kwargs in ({}, {"labels": None, "label_dropout": 0.5}):
            generator = torch.Generator().manual_seed(3)
            losses.append(model.losses(x, generator, **kwargs)["loss"])
            states.append(generator.get_state())
        assert torch.equal(states[0], states[1]) and torch.equal(losses[0], losses[1])
    labels = torch.arange(16) % 10
    generator = torch.Generator().manual_seed(3)
    model.losses(x, generator, labels=labels, label_dropout=0.5)  # conditional: draws B more
    assert not torch.equal(generator.get_state(), states[0])
    with pytest.raises(ValueError, match="unconditional"):
        _tiny_model(None).losses(x, generator, labels=labels, label_dropout=0.1)


def test_label_dropout_rate_and_values() -> None:
    labels = torch.arange(40_000) % 10
    dropped = drop_labels(labels, 0.3, 10, torch.Generator().manual_seed(0))
    is_null = dropped == 10
    assert abs(float(is_null.double().mean()) - 0.3) < 4 * math.sqrt(0.3 * 0.7 / 40_000)
    assert torch.equal(dropped[~is_null], labels[~is_null])
    for rate in (0.0, 1.0):
        out = drop_labels(labels, rate, 10, torch.Generator().manual_seed(0))
        assert torch.equal(out, labels if rate == 0 else torch.full_like(labels, 10))


# ----- guidance ---------------------------------------------------------------------------
def test_guidance_names_weights_and_nfe() -> None:
    assert GUIDANCE_KINDS == ("none", "cfg", "classifier", "oracle")
    assert [Guidance().name, Guidance("cfg", 2).name, Guidance("classifier", 0.5).name,
            Guidance("cfg", 0.0).name] == ["none", "cfg-2", "classifier-0.5", "cfg-0"]
    assert [evaluations_per_call(g) for g in (Guidance(), Guidance("cfg", 0), Guidance("cfg", 1),
                                              Guidance("classifier", 4))] == [1, 1, 2, 1]
    assert guided_nfe(Guidance("cfg", 2), "heun", 10) == 2 * network_evaluations("heun", 10)


@pytest.mark.parametrize("method", SAMPLERS)
def test_zero_weight_guidance_reproduces_the_conditional_sampler(method: str) -> None:
    model = _tiny_model(10)
    classifier = NoisyClassifier(SHAPE, 10, 8)
    labels = sample_labels(12, 10)
    plain = sample(functools.partial(model.eps, labels=labels), model.schedule, SHAPE, 12, 17,
                   steps=4, method=method, batch_size=12, seed=5)
    for guidance in (Guidance(), Guidance("cfg", 0.0), Guidance("classifier", 0.0)):
        for batch_size in (12, 5):
            images, out_labels = sample_guided(
                model, guidance, num_samples=12, num_classes=10, image_shape=SHAPE,
                num_levels=17, steps=4, method=method, batch_size=batch_size, seed=5,
                classifier=classifier)
            assert torch.equal(out_labels, labels)
            if batch_size == 12:
                assert torch.equal(images, plain), guidance.name
    assert not torch.equal(plain, sample(model.eps, model.schedule, SHAPE, 12, 17, steps=4,
                                         method=method, batch_size=12, seed=5))  # labels matter


@pytest.mark.parametrize("method", ["ancestral", "ddim"])
def test_unconditional_guided_sampling_equals_plain_sampling(method: str) -> None:
    model = _tiny_model(None)
    images, labels = sample_guided(model, Guidance(), num_samples=7, num_classes=10,
                                   image_shape=SHAPE, num_levels=17, steps=4, method=method,
                                   batch_size=3, seed=2)
    assert labels is None
    assert torch.equal(images, sample(model.eps, model.schedule, SHAPE, 7, 17, steps=4,
                                      method=method, batch_size=3, seed=2))
    conditional = _tiny_model(10)
    images, labels = sample_guided(conditional, Guidance(), num_samples=7, num_classes=10,
                                   image_shape=SHAPE, num_levels=17, steps=4, method=method,
                                   batch_size=3, seed=2, unconditional=True)
    assert labels is None and torch.equal(images, sample(
        conditional.eps, conditional.schedule, SHAPE, 7, 17, steps=4, method=method,
        batch_size=3, seed=2))


@pytest.mark.parametrize("parameterization", ["eps", "v"])
def test_classifier_free_guidance_formula(parameterization: str) -> None:
    model = _tiny_model(10, parameterization)
    z, log_snr, labels = torch.randn(6, *SHAPE), torch.linspace(-6, 6, 6), torch.arange(6)
    with torch.no_grad():
        eps_c = model.eps(z, log_snr, labels)
        eps_u = model.eps(z, log_snr, torch.full((6,), 10))
        assert torch.equal(eps_u, model.eps(z, log_snr))  # None = the null token
        assert not torch.allclose(eps_c, eps_u)
        for w in (0.5, 2.0):
            guided = guided_eps_fn(model, labels, Guidance("cfg", w))(z, log_snr)
            torch.testing.assert_close(guided, (1 + w) * eps_c - w * eps_u, rtol=1e-5, atol=1e-5)
        assert torch.equal(guided_eps_fn(model, labels, Guidance("cfg", 0.0))(z, log_snr), eps_c)


def test_classifier_guidance_formula_and_gradient_by_finite_differences() -> None:
    torch.manual_seed(0)
    classifier = NoisyClassifier(SHAPE, 10, 8).double()
    with torch.no_grad():
        for param in classifier.parameters():
            param.add_(0.2 * torch.randn_like(param))
    classifier.requires_grad_(False)
    z, log_snr, labels = (torch.randn(3, *SHAPE, dtype=torch.float64),
                          torch.tensor([-2.0, 0.0, 3.0], dtype=torch.float64),
                          torch.tensor([1, 4, 9]))
    grad = classifier_log_prob_grad(classifier, z, log_snr, labels)

    def log_p(zz: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(classifier(zz, log_snr), 1)[torch.arange(3), labels]

    h, numeric = 1e-6, torch.zeros_like(z)
    for d in range(z[0].numel()):
        step = torch.zeros_like(z).flatten(1)
        step[:, d] = h
        step = step.view_as(z)
        numeric.flatten(1)[:, d] = (log_p(z + step) - log_p(z - step)) / (2 * h)
    assert grad.abs().max() > 1e-3
    torch.testing.assert_close(grad, numeric, rtol=1e-6, atol=1e-9)
    # eps~ = eps_hat(z, y) - w sigma grad log p(y | z): the guided score is score + w grad
    model = _tiny_model(10).double()
    w = 1.5
    with torch.no_grad():
        guided = guided_eps_fn(model, labels, Guidance("classifier", w), classifier)(z, log_snr)
        sigma = alpha_sigma(log_snr)[1].view(-1, 1, 1, 1)
        torch.testing.assert_close(guided, model.eps(z, log_snr, labels) - w * sigma * grad)
    unconditional = _tiny_model(None).double()
    with torch.no_grad():
        guided = guided_eps_fn(unconditional, labels, Guidance("classifier", w), classifier)(
            z, log_snr)
        torch.testing.assert_close(guided, unconditional.eps(z, log_snr) - w * sigma * grad)


def test_sample_labels_are_class_balanced() -> None:
    labels = sample_labels(200, 10)
    assert labels.dtype == torch.int64 and torch.equal(torch.bincount(labels),
                                                        torch.full((10,), 20))
    assert torch.bincount(sample_labels(13, 10)).tolist() == [2, 2, 2] + [1] * 7


def test_bad_inputs_give_one_line_errors() -> None:
    def one_line(error: pytest.ExceptionInfo) -> str:
        message = str(error.value)
        assert "\n" not in message
        return message

    with pytest.raises(ValueError, match=r"guidance\.weights") as error:
        Guidance("cfg", -1.0)
    one_line(error)
    with pytest.raises(ValueError, match="unknown guidance kind"):
        Guidance("cgf", 1.0)
    with pytest.raises(ValueError, match="takes no weight"):
        Guidance("none", 1.0)
    unconditional, conditional = _tiny_model(None), _tiny_model(10)
    kwargs: dict[str, Any] = {"num_samples": 4, "num_classes": 10, "image_shape": SHAPE,
                              "num_levels": 17, "steps": 2}
    with pytest.raises(ValueError, match="class-conditional model") as error:
        sample_guided(unconditional, Guidance("cfg", 1.0), **kwargs)
    one_line(error)
    with pytest.raises(ValueError, match="noise-conditional classifier"):
        sample_guided(conditional, Guidance("classifier", 1.0), **kwargs)
    with pytest.raises(ValueError, match="num_classes"):
        sample_guided(conditional, Guidance("cfg", 1.0), **{**kwargs, "num_classes": 7})
    z, log_snr = torch.randn(2, *SHAPE), torch.zeros(2)
    with pytest.raises(ValueError, match=r"labels: class 10 is outside the dataset's classes 0\.\.9"):
        guided_eps_fn(conditional, torch.tensor([3, 10]), Guidance("cfg", 1.0))
    with pytest.raises(ValueError, match="labels: class -1"):
        conditional.eps(z, log_snr, torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match="class 11"):
        conditional.network(z, log_snr, torch.tensor([11, 0]))
    with pytest.raises(ValueError, match="unconditional network"):
        unconditional.network(z, log_snr, torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="'conditioning.label_dropout'") as error:
        run_config_from_dict({"conditioning": {"enabled": True, "label_dropout": 1.0}})
    one_line(error)
    with pytest.raises(ValueError, match="needs a class-conditional model"):
        evaluate_nll(unconditional, load_dataset("digits", "test"), num_time_samples=2,
                     max_examples=4, conditional=True)


# ----- conditional training, checkpoints, NLL ---------------------------------------------
@pytest.mark.parametrize("schedule", ["cosine", "learned"])
def test_conditional_training_resumes_bitwise_and_reloads_conditional(tmp_path, schedule: str
                                                                      ) -> None:
    config = run_config_from_dict({"model": TINY_MODEL, "train": {**TINY_TRAIN, "steps": 8},
                                   "schedule": schedule, "objective": "elbo",
                                   "conditioning": {"enabled": True, "label_dropout": 0.2}})
    straight = Trainer(config, tmp_path / "a")
    assert straight.model.num_classes == 10
    labels = straight.conditioning()["labels"]
    assert torch.equal(labels, straight.data.labels[straight.batch_index()])
    straight.fit()
    Trainer(config, tmp_path / "b").fit(stop_at=4)
    Trainer(config, tmp_path / "b").fit()
    a, b = (torch.load(tmp_path / d / "model.pt", weights_only=True) for d in "ab")
    for key in a["ema"]:
        assert torch.equal(a["ema"][key], b["ema"][key]), key
    model, loaded = load_trained_model(tmp_path / "a" / "model.pt")
    assert model.num_classes == 10 and loaded.conditioning.enabled
    assert loaded.conditioning.label_dropout == 0.2
    unconditional = Trainer(run_config_from_dict({"model": TINY_MODEL, "train": TINY_TRAIN}),
                            tmp_path / "c")
    assert unconditional.conditioning() == {} and unconditional.model.num_classes is None


# ----- the dataset classifier, class accuracy, per-class FID -------------------------------
@pytest.fixture(scope="module")
def digits() -> tuple[ImageData, ImageData]:
    return load_dataset("digits", "train"), load_dataset("digits", "test")


@pytest.fixture(scope="module")
def dataset_classifier(digits, tmp_path_factory) -> tuple[Path, float]:
    """The digits FID classifier (200 steps as in tests/test_fid.py), saved."""
    from vdm.evaluation.feature_extractors import save_classifier, train_classifier

    model, accuracy = train_classifier(*digits, steps=200, batch_size=64, lr=3e-3, seed=0,
                                       num_threads=1)
    path = tmp_path_factory.mktemp("classifier") / "classifier-digits.pt"
    save_classifier(model, path, {"dataset": "digits", "test_accuracy": accuracy})
    return path, accuracy


def test_class_accuracy_of_real_images_is_the_classifier_accuracy(digits, dataset_classifier
                                                                  ) -> None:
    from vdm.evaluation.conditional_metrics import class_accuracy, classifier_test_accuracy

    _, test = digits
    path, accuracy = dataset_classifier
    assert accuracy > 0.9 and classifier_test_accuracy(path) == accuracy
    assert class_accuracy(test.pixels_uint8(), test.labels, path, dataset="digits") == accuracy
    shuffled = (test.labels + 1) % 10
    assert class_accuracy(test.pixels_uint8(), shuffled, path) < 0.1
    with pytest.raises(ValueError, match="trained on 'digits', not 'mnist'"):
        class_accuracy(test.pixels_uint8(), test.labels, path, dataset="mnist")


def test_per_class_fid(digits, dataset_classifier, tmp_path) -> None:
    from vdm.evaluation.conditional_metrics import per_class_fid

    train, test = digits
    path, _ = dataset_classifier
    kwargs = {"dataset": "digits", "weights_path": path, "cache_root": tmp_path / "cache"}
    fids, reason = per_class_fid(test.pixels_uint8(), test.labels, train.pixels_uint8(),
                                 train.labels, min_per_class=25, **kwargs)
    assert reason is None and sorted(fids) == list(range(10))
    assert all(math.isfinite(v) and v >= 0 for v in fids.values())
    cache_files = list((tmp_path / "cache").iterdir())
    hashes = {re.search(r"-d([0-9a-f]{16})-w", f.name).group(1) for f in cache_files}
    assert len(hashes) == 10  # one reference subset, hence one cache entry, per class
    # the same images under shuffled labels are further from their (wrong) class
    wrong, _ = per_class_fid(test.pixels_uint8(), (test.labels + 1) % 10, train.pixels_uint8(),
                             train.labels, min_per_class=25, **kwargs)
    assert sum(wrong.values()) > 2 * sum(fids.values())
    skipped, reason = per_class_fid(test.pixels_uint8(), test.labels, train.pixels_uint8(),
                                    train.labels, min_per_class=100, **kwargs)
    assert skipped == {} and "fewer than min_per_class = 100" in reason


# ----- the noise-conditional classifier ---------------------------------------------------
NOISY_KW: dict[str, Any] = {"logsnr_min": -10.0, "logsnr_max": 7.0, "seed": 0, "num_threads": 1}


@pytest.fixture(scope="module")
def noisy_classifier(digits) -> tuple[NoisyClassifier, dict[str, Any]]:
    """300 steps (about 3 s; the CLI default of 1000 steps reaches 0.99 / 0.73 at lambda = 7 / 0)."""
    return train_noisy_classifier(*digits, steps=300, **NOISY_KW)


def test_noisy_classifier_accuracy_and_file_round_trip(noisy_classifier, tmp_path) -> None:
    model, metrics = noisy_classifier
    accuracy = metrics["accuracy_by_logsnr"]  # measured: 0.96, 0.64, 0.08, 0.07
    assert list(accuracy) == ["7", "0", "-5", "-10"]
    assert accuracy["7"] > 0.9  # nearly clean images
    assert accuracy["0"] > 0.5  # SNR 1: far above chance
    assert accuracy["-10"] < 0.25  # pure noise: chance
    path = tmp_path / "noisy.pt"
    save_noisy_classifier(model, path, {"dataset": "digits", "logsnr_min": -10.0,
                                        "logsnr_max": 7.0, **metrics})
    loaded = load_noisy_classifier(path, dataset="digits")
    assert loaded.meta["num_classes"] == 10 and loaded.meta["logsnr_max"] == 7.0
    z, log_snr = torch.randn(4, *SHAPE), torch.zeros(4)
    assert torch.equal(loaded(z, log_snr), model(z, log_snr))
    with pytest.raises(ValueError, match="trained on 'digits', not 'mnist'"):
        load_noisy_classifier(path, dataset="mnist")
    payload = torch.load(path, weights_only=True)
    del payload["meta"]["dataset"]
    save_torch_atomic(payload, tmp_path / "anonymous.pt")
    with pytest.raises(ValueError, match="does not record the dataset"):
        load_noisy_classifier(tmp_path / "anonymous.pt", dataset="digits")


def test_noisy_classifier_training_is_deterministic(digits) -> None:
    a, metrics_a = train_noisy_classifier(*digits, steps=15, **NOISY_KW)
    b, metrics_b = train_noisy_classifier(*digits, steps=15, **NOISY_KW)
    assert metrics_a == {**metrics_b, "train_seconds": metrics_a["train_seconds"]}
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key])


# ----- behaviour: guidance raises class accuracy; labels lower the NLL ----------------------
@pytest.fixture(scope="module")
def trained_conditional(tmp_path_factory) -> DiffusionModel:
    """A conditional digits model trained briefly (100 steps, channels 16, label dropout 0.1)."""
    config = run_config_from_dict({
        "seed": 0, "model": {"channels": 16, "channel_mults": [1, 2]},
        "conditioning": {"enabled": True, "label_dropout": 0.1},
        "train": {"steps": 100, "batch_size": 64, "lr": 3e-3, "warmup_steps": 20,
                  "log_every": 50, "checkpoint_every": 1000, "threads": 1}})
    out = tmp_path_factory.mktemp("conditional")
    Trainer(config, out).fit()
    model, _ = load_trained_model(out / "model.pt")
    return model


def _guided_class_accuracy(model: DiffusionModel, guidance: Guidance, classifier_path: Path,
                           noisy: NoisyClassifier | None = None) -> float:
    """Class accuracy of 200 class-balanced DDIM samples (25 steps, seed 0)."""
    from vdm.evaluation.conditional_metrics import class_accuracy

    images, labels = sample_guided(model, guidance, num_samples=200, num_classes=10,
                                   image_shape=SHAPE, num_levels=17, steps=25, method="ddim",
                                   seed=0, classifier=noisy)
    assert torch.equal(torch.bincount(labels), torch.full((10,), 20))
    return class_accuracy(images, labels, classifier_path, dataset="digits")


def test_classifier_free_guidance_raises_class_accuracy(trained_conditional, dataset_classifier
                                                       ) -> None:
    """Measured: class accuracy 0.63 at w = 0 and 0.985 at w = 2 (models trained with seeds 1
    and 2: 0.585 / 0.945 and 0.60 / 0.99)."""
    path, _ = dataset_classifier
    plain = _guided_class_accuracy(trained_conditional, Guidance("cfg", 0.0), path)
    guided = _guided_class_accuracy(trained_conditional, Guidance("cfg", 2.0), path)
    assert plain > 0.3  # the model already follows the label
    assert guided > plain + 0.2, (plain, guided)


def test_classifier_guidance_raises_class_accuracy(trained_conditional, dataset_classifier,
                                                   noisy_classifier) -> None:
    """Measured with the 300-step noisy classifier: 0.63 at w = 0, 0.82 / 0.875 / 0.905 at
    w = 1 / 2 / 4."""
    path, _ = dataset_classifier
    plain = _guided_class_accuracy(trained_conditional, Guidance("classifier", 0.0), path,
                                   noisy_classifier[0])
    guided = _guided_class_accuracy(trained_conditional, Guidance("classifier", 2.0), path,
                                    noisy_classifier[0])
    assert guided > plain + 0.15, (plain, guided)


def test_conditional_nll_with_the_true_label_is_lower(trained_conditional, digits) -> None:
    """Measured: 2.91 bits/dim with the true label against 3.06 with the null token (the same
    noise draws, so the difference is paired: its MC noise is far below each value's 0.02)."""
    _, test = digits
    with_label = evaluate_nll(trained_conditional, test, num_time_samples=8, conditional=True)
    null = evaluate_nll(trained_conditional, test, num_time_samples=8)
    assert with_label["conditional"] is True and null["conditional"] is False
    assert with_label["nll_prior_bpd"] == null["nll_prior_bpd"]
    assert with_label["nll_reconstruction_bpd"] == null["nll_reconstruction_bpd"]
    assert with_label["nll_bpd"] < null["nll_bpd"] - 0.05


def test_noisy_classifier_command(tmp_path, capsys) -> None:
    import json

    from vdm.pipeline.cli import main

    out = tmp_path / "noisy-digits.pt"
    assert main(["noisy-classifier", "--set", "logsnr_min=-8", "--set", "logsnr_max=6",
                 "--set", "steps=5", "--set", "device=cpu", "--threads", "1", "--out", str(out)]) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["dataset"] == "digits" and record["num_classes"] == 10
    assert (record["logsnr_min"], record["logsnr_max"]) == (-8.0, 6.0)
    assert list(record["accuracy_by_logsnr"]) == ["6", "0", "-5", "-8"]
    assert "provenance" in record and record["wall_seconds"] > 0
    assert load_noisy_classifier(out, dataset="digits").meta["steps"] == 5
    capsys.readouterr()
    assert main(["noisy-classifier", "--set", "logsnr_min=3", "--set", "logsnr_max=2",
                 "--out", str(tmp_path / "x.pt")]) == 2
    assert capsys.readouterr().err == ("vdm noisy-classifier: error: spec key logsnr_min (3.0) "
                                       "must be below logsnr_max (2.0)\n")
    assert not (tmp_path / "x.pt").exists()
