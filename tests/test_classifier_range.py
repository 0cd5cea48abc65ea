"""The noisy classifier's log-SNR range against the range of the models it guides (issue 18):
a learned schedule moves its end points in training, so a classifier-guided model may be sampled
at noise levels its classifier never saw. The check is recorded in the samples' meta, their
fid.json and the run's evaluation record, with one warning line in the job log."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from vdm.core.config import run_config_from_dict
from vdm.model.diffusion import DiffusionModel, build_model
from vdm.model.guidance import LAMBDA_RANGE_SLACK, classifier_range_check, classifier_range_warning
from vdm.model.setting_names import EvaluationSetting, Guidance
from vdm.training.noisy_classifier import NoisyClassifier, save_noisy_classifier

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

SHAPE = (1, 8, 8)


def _model(schedule: str = "cosine", logsnr_min: float = -10.0, logsnr_max: float = 7.0
           ) -> DiffusionModel:
    torch.manual_seed(0)
    return build_model(SHAPE, 17, "eps", schedule, {"channels": 8, "channel_mults": [1, 2]},
                       logsnr_min, logsnr_max).eval()


def _moved(model: DiffusionModel, logsnr_min: float, logsnr_max: float) -> DiffusionModel:
    """Move a learned schedule's end points, as training does (``gamma = -lambda``)."""
    with torch.no_grad():
        model.schedule.gamma_0.fill_(-logsnr_max)
        model.schedule.gamma_1.fill_(-logsnr_min)
    return model


def _classifier(logsnr_min: float = -10.0, logsnr_max: float = 7.0) -> NoisyClassifier:
    torch.manual_seed(0)
    classifier = NoisyClassifier(SHAPE, 10, channels=4).requires_grad_(False).eval()
    classifier.meta = {"dataset": "digits", "logsnr_min": logsnr_min, "logsnr_max": logsnr_max}
    return classifier


@pytest.mark.parametrize("schedule", ["linear", "cosine", "sigmoid", "flow", "learned"])
def test_a_model_on_the_classifier_range_is_inside(schedule: str) -> None:
    """Every schedule as configured (the learned one before training) spans exactly the
    classifier's [-10, 7]: no false alarm from the float32 end points."""
    check = classifier_range_check(_model(schedule), _classifier())
    assert check["classifier_lambda_range"] == [-10.0, 7.0]
    assert check["model_lambda_range"] == pytest.approx([-10.0, 7.0], abs=1e-5)
    assert check["model_range_outside_classifier"] is False
    assert classifier_range_warning(check) is None


@pytest.mark.parametrize(("logsnr_min", "logsnr_max", "outside"), [
    (-10.0, 8.5, True),    # lambda_max moved up: the classifier never saw such clean images
    (-11.0, 7.0, True),    # lambda_min moved down
    (-9.0, 6.0, False),    # a narrower range stays inside
    (-10.0, 7.0 + LAMBDA_RANGE_SLACK / 2, False),
    (-10.0, 7.0 + 2 * LAMBDA_RANGE_SLACK, True),
])
def test_learned_end_points_that_left_the_classifier_range_are_flagged(
        logsnr_min: float, logsnr_max: float, outside: bool) -> None:
    check = classifier_range_check(_moved(_model("learned"), logsnr_min, logsnr_max),
                                   _classifier())
    assert check["model_lambda_range"] == pytest.approx([logsnr_min, logsnr_max], abs=1e-5)
    assert check["model_range_outside_classifier"] is outside
    warning = classifier_range_warning(check)
    assert (warning is not None) is outside
    if outside:
        assert "\n" not in warning and "[-10, 7]" in warning
        assert f"{logsnr_max:.4g}]" in warning and f"[{logsnr_min:.4g}," in warning


def test_a_classifier_trained_on_a_narrower_range_is_flagged() -> None:
    check = classifier_range_check(_model("cosine"), _classifier(-8.0, 6.0))
    assert check["classifier_lambda_range"] == [-8.0, 6.0]
    assert check["model_range_outside_classifier"] is True


def test_a_classifier_without_a_range_is_refused_in_one_line() -> None:
    classifier = _classifier()
    del classifier.meta["logsnr_max"]
    with pytest.raises(ValueError, match=r"^the noisy classifier's meta lacks logsnr_max: [^\n]*$"):
        classifier_range_check(_model(), classifier)


def test_samples_meta_fid_json_and_evaluation_record_carry_the_check(tmp_path: Path,
                                                                     capsys) -> None:
    """Through the real commands: ``write_samples`` of a classifier-guided setting of a model
    whose learned lambda_max moved to 8.5 warns once on stderr and records the ranges; ``write_fid``
    copies them into fid.json; ``collect``'s evaluation record (-> summary.csv) keeps the flag.
    Unguided samples of the same model carry none of it."""
    from vdm.core.data import load_dataset
    from vdm.evaluation.feature_extractors import save_classifier, train_classifier
    from vdm.evaluation.fid import load_samples_meta
    from vdm.pipeline.evaluation_commands import write_fid
    from vdm.pipeline.results_commands import evaluation_record
    from vdm.pipeline.sample_command import write_samples

    model = _moved(_model("learned"), -10.0, 8.5)
    config = run_config_from_dict({"schedule": "learned"})
    noisy = tmp_path / "noisy.pt"
    save_noisy_classifier(_classifier(), noisy, _classifier().meta)
    extractor, _ = train_classifier(load_dataset("digits", "train"), load_dataset("digits", "test"),
                                    steps=2, batch_size=16, seed=0, num_threads=1)
    weights = save_classifier(extractor, tmp_path / "classifier-digits.pt", {"dataset": "digits"})
    capsys.readouterr()
    paths = {}
    for guidance in (Guidance("classifier", 1.0), Guidance()):
        setting = EvaluationSetting("ddim", 2, guidance)
        paths[guidance.kind] = tmp_path / setting.name / "samples.npz"
        write_samples(model, config, "cpu", model_path=tmp_path / "model.pt", setting=setting,
                      num_samples=20, batch_size=20, seed=0, ema=True, clip=True,
                      out=paths[guidance.kind], grid=None, started=time.perf_counter(),
                      noisy_classifier=noisy)
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and warnings[0].startswith(
        "vdm sample: warning: ddim-2-classifier-1: the model samples log-SNR [-10, 8.5]"), err

    guided, plain = (load_samples_meta(paths[kind]) for kind in ("classifier", "none"))
    assert guided["classifier_lambda_range"] == [-10.0, 7.0]
    assert guided["model_lambda_range"] == pytest.approx([-10.0, 8.5])
    assert guided["model_range_outside_classifier"] is True
    assert "model_range_outside_classifier" not in plain

    fid_json = tmp_path / "fid.json"
    write_fid(paths["classifier"], dataset="digits", root="data", split="train",
              extractor="classifier", weights=weights, cache_root=tmp_path / "cache",
              device="cpu", kid_subset_size=10, prc=False, batch_size=256, out=fid_json,
              started=time.perf_counter(), dataset_classifier=weights)
    sampling = json.loads(fid_json.read_text())["sampling"]
    assert sampling["model_range_outside_classifier"] is True
    assert sampling["model_lambda_range"] == pytest.approx([-10.0, 8.5])
    record = evaluation_record(json.loads(fid_json.read_text()), fid_json, primary=False)
    assert record["model_range_outside_classifier"] is True
