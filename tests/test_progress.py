"""The progress reporter with an injected clock: lines at the right times, rate and ETA arithmetic,
lazy fields, the environment variable, the tqdm bar on a terminal."""

from __future__ import annotations

import io

import pytest

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

