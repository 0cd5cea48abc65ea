"""The progress reporter with an injected clock: lines at the right times, rate and ETA arithmetic,
lazy fields, the environment variable, the tqdm bar on a terminal."""

from __future__ import annotations

import io
import json
import math

import pytest
import torch

from vdm.core.progress import (
    DEFAULT_INTERVAL_SECONDS,
    Progress,
    counting_calls,
    format_duration,
    format_rate,
    progress_interval,
)


class Clock:
    """A settable clock: ``clock.now`` seconds."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def reporter(clock: Clock, **kwargs) -> tuple[Progress, io.StringIO]:
    stream = io.StringIO()
    kwargs = {"interval": 10.0, "bar": False, **kwargs}
    return Progress("job", "steps", stream=stream, clock=clock, **kwargs), stream


def test_lines_at_the_interval_with_rate_eta_and_a_final_line() -> None:
    """First report at t=2 (a line), then a line at the first report >= 10 s after the previous
    line; rate = done since the first report / seconds since it, ETA = remaining / rate."""
    clock = Clock()
    progress, stream = reporter(clock)
    for now, done in ((2, 0), (5, 1), (12, 4), (20, 6), (22, 7), (27, 10), (30, 11)):
        clock.now = now
        progress(done, 10)
    assert stream.getvalue().splitlines() == [
        "job: 0/10 steps (0%) | ? steps/s | elapsed 0:00:02 | ETA ?",
        # 4 steps in 10 s: 0.4 steps/s, 6 left: 15 s
        "job: 4/10 steps (40%) | 0.4 steps/s | elapsed 0:00:12 | ETA 0:00:15",
        # 7 steps in 20 s: 0.35 steps/s, 3 left: 8.57 s
        "job: 7/10 steps (70%) | 0.35 steps/s | elapsed 0:00:22 | ETA 0:00:09",
        # 10 steps in 25 s; the report after the final line is ignored
        "job: finished 10/10 steps in 0:00:27 | 0.4 steps/s",
    ]
    assert progress.finished and progress.lines == 4


def test_rate_scale_and_fields_read_only_when_a_line_is_written() -> None:
    """The trainer's use: one report per step, images/s = steps/s x batch size, and the loss a
    callable that runs only for the lines written (here 3 of 30 reports and the final one)."""
    clock = Clock()
    progress, stream = reporter(clock, rate_unit="images", rate_scale=128)
    reads = []

    def loss() -> float:
        reads.append(clock.now)
        return 0.123456

    for step in range(1, 31):
        clock.now = float(step)
        progress(step, 30, loss=loss)
    assert reads == [1.0, 11.0, 21.0, 30.0]
    lines = stream.getvalue().splitlines()
    assert lines[1] == ("job: 11/30 steps (37%) | 128 images/s | elapsed 0:00:11 | ETA 0:00:19 "
                        "| loss 0.1235")
    assert lines[-1] == "job: finished 30/30 steps in 0:00:30 | 128 images/s | loss 0.1235"


def test_interval_zero_writes_every_report_and_close_marks_a_stop() -> None:
    clock = Clock()
    progress, stream = reporter(clock, interval=0)
    for done in range(4):
        clock.now = 2.0 * done
        progress(done, 8, batch=f"{done}/8")  # the total may come with the first report
    clock.now = 10.0
    progress.close()
    progress.close()  # once
    lines = stream.getvalue().splitlines()
    assert len(lines) == 5
    assert lines[3] == "job: 3/8 steps (38%) | 0.5 steps/s | elapsed 0:00:06 | ETA 0:00:10 | batch 3/8"
    assert lines[4] == "job: stopped at 3/8 steps after 0:00:10 | 0.3 steps/s | batch 3/8"


def test_a_reporter_nobody_reported_to_writes_nothing() -> None:
    progress, stream = reporter(Clock())
    progress.close()
    assert stream.getvalue() == ""


@pytest.mark.parametrize(("value", "expected"), [(None, DEFAULT_INTERVAL_SECONDS), ("", 10.0),
                                                 ("0", 0.0), ("2.5", 2.5),
                                                 ("inf", float("inf"))])
def test_interval_from_the_environment(value, expected, monkeypatch) -> None:
    if value is None:
        monkeypatch.delenv("VDM_PROGRESS_SECONDS", raising=False)
    else:
        monkeypatch.setenv("VDM_PROGRESS_SECONDS", value)
    assert progress_interval() == expected
    assert Progress("job", "steps", bar=False, stream=io.StringIO()).interval == expected


@pytest.mark.parametrize("value", ["abc", "-1", "nan"])
def test_a_bad_interval_is_one_line_naming_the_variable(value) -> None:
    with pytest.raises(ValueError, match=r"^environment variable VDM_PROGRESS_SECONDS: .*"
                                         rf"got '{value}'$"):
        progress_interval({"VDM_PROGRESS_SECONDS": value})


def test_inf_interval_writes_the_first_and_the_final_line_only() -> None:
    clock = Clock()
    progress, stream = reporter(clock, interval=float("inf"))
    for done in range(101):
        clock.now = float(done)
        progress(done, 100)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[1] == "job: finished 100/100 steps in 0:01:40 | 1 steps/s"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_tqdm_bar_instead_of_lines() -> None:
    pytest.importorskip("tqdm")
    clock, stream = Clock(), Terminal()
    progress = Progress("job", "steps", stream=stream, clock=clock, interval=10.0)
    assert progress.use_bar
    for step in range(1, 21):
        clock.now = float(step)
        progress(step, 20, loss=0.5)
    text = stream.getvalue()
    assert "20/20" in text and "loss=0.5" in text and "\r" in text
    assert "ETA" not in text and "finished" not in text


def test_counting_calls_reports_each_call_and_changes_nothing() -> None:
    seen = []
    double = counting_calls(lambda x, scale=2: x * scale, seen.append)
    assert [double(1), double(2, scale=3), double(x=4)] == [2, 6, 8]
    assert seen == [1, 2, 3]


def test_formats() -> None:
    assert [format_duration(s) for s in (0, 59.4, 59.6, 3725.4, float("nan"))] == [
        "0:00:00", "0:00:59", "0:01:00", "1:02:05", "?"]
    assert [format_rate(r) for r in (2452.4, 24.56, 2.456, 0.02456, float("nan"))] == [
        "2452", "24.6", "2.46", "0.0246", "?"]


# ----- the loops report through the callback, and their numbers do not change -----------------
@pytest.fixture(autouse=True)
def _one_thread(one_thread) -> None:  # conftest.py: tiny CPU workloads
    pass


class Recorder:
    """A progress callback that keeps every report: ``(done, total, fields)``."""

    def __init__(self) -> None:
        self.reports: list[tuple[int, int, dict]] = []

    def __call__(self, done: int, total: int, **fields) -> None:
        self.reports.append((done, total, {k: v() if callable(v) else v for k, v in fields.items()}))

    def counts(self) -> list[tuple[int, int]]:
        return [(done, total) for done, total, _ in self.reports]


@pytest.fixture(scope="module")
def tiny_model():
    from vdm.model.diffusion import build_model

    torch.manual_seed(0)
    return build_model((1, 8, 8), 17, "eps", "cosine", {"channels": 8, "channel_mults": [1, 2]},
                       -10.0, 7.0).eval()


@pytest.fixture(scope="module")
def digits_test():
    from vdm.core.data import load_dataset

    return load_dataset("digits", "test", "data")


@pytest.mark.parametrize(("method", "nfe"), [("ancestral", 4), ("heun", 7)])
def test_sampling_reports_each_network_evaluation_of_all_batches(tiny_model, method: str,
                                                                 nfe: int) -> None:
    """10 samples in batches of 4: 3 batches of NFE evaluations (N + 1, Heun 2N + 1 for N = 3)."""
    from vdm.model.guidance import sample_guided
    from vdm.model.sampler import sample
    from vdm.model.setting_names import Guidance

    kw = {"num_samples": 10, "num_classes": None, "image_shape": (1, 8, 8), "num_levels": 17,
          "steps": 3, "method": method, "batch_size": 4, "seed": 1}
    recorder = Recorder()
    images, _ = sample_guided(tiny_model, Guidance(), **kw, progress=recorder)
    total = 3 * nfe
    assert recorder.counts() == [(0, total)] + [(k, total) for k in range(1, total + 1)]
    assert [f["batch"] for _, _, f in recorder.reports] == (
        ["1/3"] * (nfe + 1) + ["2/3"] * nfe + ["3/3"] * nfe)
    assert torch.equal(images, sample_guided(tiny_model, Guidance(), **kw)[0])
    plain = Recorder()
    again = sample(tiny_model.eps, tiny_model.schedule, (1, 8, 8), 10, 17, steps=3, method=method,
                   batch_size=4, seed=1, progress=plain)
    assert torch.equal(again, images) and plain.counts() == recorder.counts()


def test_nll_reports_each_noise_level_draw(tiny_model, digits_test) -> None:
    """10 images in batches of 4, 3 draws each: 3 x 3 reports; the bound does not change."""
    from vdm.evaluation.evaluate import evaluate_nll

    kw = {"batch_size": 4, "num_time_samples": 3, "max_examples": 10, "seed": 2}
    recorder = Recorder()
    result = evaluate_nll(tiny_model, digits_test, **kw, progress=recorder)
    assert recorder.counts() == [(k, 9) for k in range(10)]
    assert [f["batch"] for _, _, f in recorder.reports] == ["1/3"] * 4 + ["2/3"] * 3 + ["3/3"] * 3
    assert result == evaluate_nll(tiny_model, digits_test, **kw)


def test_ode_nll_reports_batches_and_the_solver_evaluations() -> None:
    """5 images in batches of 2: batches 0..3 of 3, and within each batch the count of the
    adaptive solver's network evaluations (field ``evals``); the bound does not change."""
    pytest.importorskip("torchdiffeq")
    from conftest import gaussian_optimal_eps_fn

    from vdm.core.data import ImageData
    from vdm.model.ode import ode_nll
    from vdm.model.schedules import get_schedule

    class ExactModel(torch.nn.Module):  # the optimal denoiser of N(0, 0.4^2): no network
        schedule = get_schedule("cosine")

        def eps(self, z: torch.Tensor, log_snr: torch.Tensor) -> torch.Tensor:
            return gaussian_optimal_eps_fn(0.4)(z, log_snr)

    levels = torch.randint(0, 17, (5, 1, 2, 2), generator=torch.Generator().manual_seed(0))
    data = ImageData(images=levels.to(torch.uint8), labels=torch.zeros(5, dtype=torch.int64),
                     num_levels=17, name="gaussian", split="test")
    kw = {"batch_size": 2, "rtol": 1e-3, "atol": 1e-3, "seed": 0}
    recorder = Recorder()
    result = ode_nll(ExactModel(), data, **kw, progress=recorder)
    assert result == ode_nll(ExactModel(), data, **kw)
    assert {total for _, total, _ in recorder.reports} == {3}
    batches = [done for done, _, _ in recorder.reports]
    assert batches == sorted(batches) and set(batches) == {0, 1, 2, 3}
    assert [done for done, _, f in recorder.reports if not f] == [1, 2, 3]  # each batch's end
    for batch in range(3):
        evals = [f["evals"] for done, _, f in recorder.reports if done == batch and f]
        assert evals == list(range(len(evals))) and len(evals) > 6  # dopri5: 6 per step + 1


def test_fid_reports_feature_batches_of_samples_and_an_uncached_reference(digits_test, tmp_path
                                                                          ) -> None:
    """20 samples and 50 reference images in batches of 8: 3 + 7 batches, then 3 once the
    reference is cached; the metrics do not change."""
    from vdm.evaluation.feature_extractors import save_classifier, train_classifier
    from vdm.evaluation.fid import compute_metrics, feature_batches

    training = Recorder()
    model, _ = train_classifier(digits_test, digits_test, steps=5, batch_size=16,
                                progress=training, num_threads=1)
    assert training.counts() == [(k, 5) for k in range(1, 6)]
    assert all(isinstance(f["loss"], float) for _, _, f in training.reports)
    weights = save_classifier(model, tmp_path / "classifier.pt", {"dataset": "digits"})
    pixels = digits_test.pixels_uint8()
    kw = {"dataset": "digits", "split": "test", "extractor": "classifier",
          "weights_path": weights, "cache_root": tmp_path / "cache", "kid_subset_size": 10,
          "batch_size": 8, "fid_error_resamples": 5}
    assert [feature_batches(n, 8) for n in (20, 50, 5, 0)] == [3, 7, 1, 0]
    first, second = Recorder(), Recorder()
    a = compute_metrics(pixels[:20], pixels[50:100], **kw, progress=first)
    b = compute_metrics(pixels[:20], pixels[50:100], **kw, progress=second)
    assert first.counts() == [(k, 10) for k in range(11)]
    assert second.counts() == [(k, 3) for k in range(4)]
    assert a == b == compute_metrics(pixels[:20], pixels[50:100], **kw)


# ----- a real job's log shows the lines while it runs -------------------------------------------
def _job(*args: str, cwd) -> str:
    """Run ``python -m vdm <args>`` as a workflow job does, a line per report; its stderr."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "VDM_PROGRESS_SECONDS": "0",
           "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "vdm", *args], capture_output=True, text=True,
                            timeout=600, env=env, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stderr


def _counts(log: str, what: str, unit: str) -> list[tuple[int, int]]:
    """``(done, total)`` of the progress lines of ``what`` (not the final one)."""
    import re

    pattern = re.compile(rf"^{re.escape(what)}: (\d+)/(\d+) {unit} \(\d+%\) \| [0-9.?]+ \w+/s \| "
                         r"elapsed \d+:\d\d:\d\d \| ETA (\d+:\d\d:\d\d|\?)( \| .*)?$")
    return [(int(m[1]), int(m[2])) for m in map(pattern.match, log.splitlines()) if m]


def test_train_and_evaluate_logs_show_progress_lines(tmp_path) -> None:
    """``train`` (6 steps) and ``evaluate`` (20 samples in batches of 10 with 3 ancestral steps;
    the ELBO of 20 images in batches of 10 with 2 draws; FID features of the samples and the
    test split in batches of 8) with
    ``VDM_PROGRESS_SECONDS=0``: a line per step, evaluation, draw and feature batch, with
    images/s, ETA and the loss for training, and a final line for each."""
    import re

    from vdm.core.data import load_dataset
    from vdm.evaluation.feature_extractors import save_classifier, train_classifier

    config = {"schedule": "cosine", "model": {"channels": 8, "channel_mults": [1, 2]},
              "train": {"steps": 6, "batch_size": 16, "log_every": 3, "threads": 1}}
    log = _job("train", "--config-json", json.dumps(config), "--out", "run", cwd=tmp_path)
    assert _counts(log, "train digits eps/eps/cosine seed 0", "steps") == [(k, 6) for k in range(1, 6)]
    lines = [line for line in log.splitlines() if line.startswith("train digits")]
    assert all(re.search(r"\| [0-9.]+ images/s \|.*\| loss [0-9.e+-]+$", line) for line in lines[1:-1])
    assert re.match(r"train digits eps/eps/cosine seed 0: finished 6/6 steps in \d:\d\d:\d\d \| "
                    r"[0-9.]+ images/s \| loss [0-9.e+-]+$", lines[-1])

    model, _ = train_classifier(load_dataset("digits", "train", "data"),
                                load_dataset("digits", "test", "data"), steps=5, num_threads=1)
    save_classifier(model, tmp_path / "classifier.pt", {"dataset": "digits"})
    settings = {"sampling.num_samples": 20, "sampling.steps": 3, "sampling.batch_size": 10,
                "nll.num_time_samples": 2, "nll.max_examples": 20, "nll.batch_size": 10,
                "fid.kid_subset_size": 10, "fid.features.batch_size": 8,
                "fid.features.reference_split": "test", "denoiser_floor": "false"}
    overrides = [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]
    log = _job("evaluate", "--model", "run/model.pt", "--threads", "1", *overrides,
               "--samples-out", "s.npz", "--grid", "grid.png", "--nll-out", "nll.json",
               "--dataset-classifier", "classifier.pt", "--cache-root", "cache",
               "--fid-out", "fid.json", cwd=tmp_path)
    assert _counts(log, "sample ancestral-3", "evals") == [(k, 8) for k in range(8)]
    assert _counts(log, "nll test", "draws") == [(k, 4) for k in range(4)]
    reference = math.ceil(len(load_dataset("digits", "test", "data")) / 8)  # not cached yet
    assert _counts(log, "fid features", "batches") == [(k, 3 + reference)
                                                       for k in range(3 + reference)]
    for what, count in (("sample ancestral-3", "8/8 evals"), ("nll test", "4/4 draws"),
                        ("fid features", f"{3 + reference}/{3 + reference} batches")):
        assert re.search(rf"^{what}: finished {count} in \d:\d\d:\d\d \| ", log, re.M), what
    assert (tmp_path / "grid.png").is_file()
