"""Progress a job's log shows while it runs: a line every few seconds, a tqdm bar on a terminal.

A long loop (training steps, sampler evaluations, NLL draws, ODE batches, FID feature batches)
reports where it is through a *progress callback* ``progress(done, total, **fields)``
(:class:`ProgressCallback`): ``done`` of ``total`` units are finished, and ``fields`` are extra
values to show (``batch="1/2"``, ``loss=...``). A field's value may be a zero-argument callable,
called only when a line is written: the trainer passes its loss that way, so the device is read
only at the reporting interval, never once per step. The library's loops take such a callback as
an optional argument and print nothing on their own; the commands and the trainer pass a
:class:`Progress`, which writes to stderr (flushed, so ``tail -f`` on a job's log shows it)

    <what>: <done>/<total> <unit> (<percent>%) | <rate> <rate_unit>/s | elapsed H:MM:SS
        | ETA H:MM:SS | <field> <value> ...          (one line)

on its first report, then at the first report after every ``interval`` seconds of wall-clock
time since its previous line, and once the final line

    <what>: finished <done>/<total> <unit> in H:MM:SS | <rate> <rate_unit>/s | <field> <value> ...

when ``done`` reaches ``total`` (or, for a loop stopped short, ``stopped at ... after ...`` from
:meth:`Progress.close`).

Arithmetic. With ``(t0, d0)`` the time and ``done`` of the first report: ``rate = (done - d0) /
(now - t0)`` units per second (the average since the first report: a loop whose first unit is
slow for other reasons, such as the trainer's first step with compilation and autotuning,
reports only after it), shown times ``rate_scale`` in ``rate_unit`` per second (the trainer:
steps/s times the batch size = images/s); ``ETA = (total - done) / rate``, ``?`` while the rate
is unknown (no unit done since the first report). ``elapsed`` counts from the reporter's
creation. Times are ``H:MM:SS``, rounded to the second.

The interval is ``VDM_PROGRESS_SECONDS`` (seconds, default 10; 0 = a line at every report; ``inf``
= the first and final lines only). On a terminal (``stream.isatty()``) with tqdm installed a tqdm
bar replaces the lines; its fields are refreshed at the same interval.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TextIO, TypeVar

try:
    from tqdm import tqdm
except ImportError:  # the GPU check runs with torch + numpy only: progress lines then
    tqdm = None

ENV_VARIABLE = "VDM_PROGRESS_SECONDS"
DEFAULT_INTERVAL_SECONDS = 10.0

T = TypeVar("T")


class ProgressCallback(Protocol):
    """``progress(done, total, **fields)``: ``done`` of ``total`` units finished (module docstring)."""

    def __call__(self, done: int, total: int, **fields: Any) -> None: ...


def progress_interval(environ: Mapping[str, str] | None = None) -> float:
    """Seconds between progress lines: ``VDM_PROGRESS_SECONDS`` of ``environ`` (default
    ``os.environ``), :data:`DEFAULT_INTERVAL_SECONDS` when unset or empty. A one-line
    ``ValueError`` naming the variable when it is not a number >= 0."""
    text = (os.environ if environ is None else environ).get(ENV_VARIABLE, "").strip()
    if not text:
        return DEFAULT_INTERVAL_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value >= 0:  # also NaN
        raise ValueError(f"environment variable {ENV_VARIABLE}: expected the seconds between "
                         f"progress lines, a number >= 0 (0 = every update), got {text!r}")
    return value


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` of ``seconds`` rounded to the second (``?`` when not finite)."""
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(max(0, round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def format_rate(rate: float) -> str:
    """A rate with a precision that fits its size: ``2452``, ``24.5``, ``2.45``, ``0.0245``."""
    if not math.isfinite(rate):
        return "?"
    if rate >= 100:
        return f"{rate:.0f}"
    return f"{rate:.1f}" if rate >= 10 else f"{rate:.3g}"


def _format_value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def counting_calls(fn: Callable[..., T], on_call: Callable[[int], None]) -> Callable[..., T]:
    """``fn`` unchanged, except that after its ``k``-th call returns, ``on_call(k)`` is called
    (``k = 1, 2, ...``): how a loop that calls a denoiser reports its progress without any change
    to the loop itself (the sampler counts its network evaluations, the NLL its noise draws)."""
    calls = 0

    def counted(*args: Any, **kwargs: Any) -> T:
        nonlocal calls
        out = fn(*args, **kwargs)
        calls += 1
        on_call(calls)
        return out

    return counted


class Progress:
    """The reporter of one loop: a :class:`ProgressCallback` that writes progress lines (or a tqdm
    bar on a terminal); see the module docstring for the lines and their arithmetic.

    Args:
        what: the line's prefix (what runs: ``"train digits eps/elbo/cosine seed 0"``).
        unit: what ``done`` counts (``"steps"``, ``"batches"``), plural.
        total: the number of units, when known before the first report (a report may set it).
        rate_unit, rate_scale: the rate is shown as ``rate_scale`` ``rate_unit`` per unit
            (default: ``unit`` itself, scale 1).
        interval: seconds between lines; None: :func:`progress_interval` (``VDM_PROGRESS_SECONDS``).
        stream: where lines go (default ``sys.stderr`` at creation).
        bar: a tqdm bar instead of lines; None: when ``stream`` is a terminal and tqdm is there.
        clock: seconds, monotonic (injected by tests).
    """

    def __init__(self, what: str, unit: str, total: int | None = None, *,
                 rate_unit: str | None = None, rate_scale: float = 1.0,
                 interval: float | None = None, stream: TextIO | None = None,
                 bar: bool | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if interval is not None and not interval >= 0:
            raise ValueError(f"progress interval must be >= 0 seconds, got {interval!r}")
        self.what, self.unit, self.total = what, unit, total
        self.rate_unit, self.rate_scale = rate_unit or unit, float(rate_scale)
        self.interval = progress_interval() if interval is None else float(interval)
        self.stream = sys.stderr if stream is None else stream
        if bar is None:
            bar = bool(getattr(self.stream, "isatty", lambda: False)())
        self.use_bar = bar and tqdm is not None
        self.clock = clock
        self.started = clock()
        self.done = 0
        self.fields: dict[str, Any] = {}
        self.lines = 0  # progress lines (or bar refreshes) written, the final one included
        self.finished = False
        self._first: tuple[float, int] | None = None  # (time, done) of the first report
        self._last_line = self.started
        self._bar: Any = None

    # ----- the callback ------------------------------------------------------------------
    def __call__(self, done: int, total: int | None = None, **fields: Any) -> None:
        """Report ``done`` of ``total`` units (``total`` None: the one known already)."""
        if self.finished:
            return
        now = self.clock()
        if total is not None:
            self.total = total
        self.done = done
        self.fields.update(fields)
        if self._first is None:
            self._first = (now, done)
        if self.total is not None and done >= self.total:
            self._finish(now, stopped=False)
        elif self.lines == 0 or now - self._last_line >= self.interval:
            self._report(now)
        elif self.use_bar:
            self._update_bar(postfix=False)  # the count at every report; tqdm paces its redraws

    def close(self) -> None:
        """The final line now, if a report came and none was written yet (a loop stopped before
        ``total``: ``stopped at``)."""
        if not self.finished and self._first is not None:
            self._finish(self.clock(), stopped=self.total is None or self.done < self.total)

    # ----- arithmetic --------------------------------------------------------------------
    def rate(self, now: float) -> float:
        """Units per second since the first report; NaN while no unit was done since then."""
        if self._first is None:
            return math.nan
        first_time, first_done = self._first
        if self.done <= first_done or now <= first_time:
            return math.nan
        return (self.done - first_done) / (now - first_time)

    def eta(self, now: float) -> float:
        """Seconds until ``total`` at :meth:`rate`; NaN when the rate or the total is unknown."""
        rate = self.rate(now)
        if self.total is None or not rate > 0:
            return math.nan
        return max(0, self.total - self.done) / rate

    # ----- output ------------------------------------------------------------------------
    def _field_values(self) -> dict[str, Any]:
        return {name: value() if callable(value) else value for name, value in self.fields.items()}

    def _count(self) -> str:
        if self.total is None:
            return f"{self.done} {self.unit}"
        percent = 100.0 * self.done / self.total if self.total > 0 else 100.0
        return f"{self.done}/{self.total} {self.unit} ({percent:.0f}%)"

    def _tail(self, parts: list[str]) -> str:
        parts += [f"{name} {_format_value(value)}" for name, value in self._field_values().items()]
        return " | ".join(parts)

    def _report(self, now: float) -> None:
        self._last_line = now
        self.lines += 1
        if self.use_bar:
            self._update_bar(postfix=True)
            return
        rate = format_rate(self.rate(now) * self.rate_scale)
        line = self._tail([f"{self.what}: {self._count()}", f"{rate} {self.rate_unit}/s",
                           f"elapsed {format_duration(now - self.started)}",
                           f"ETA {format_duration(self.eta(now))}"])
        self._write(line)

    def _finish(self, now: float, stopped: bool) -> None:
        self.finished = True
        self.lines += 1
        if self.use_bar:
            self._update_bar(postfix=True)
            self._bar.close()
            return
        count = f"{self.done}/{self.total}" if self.total is not None else f"{self.done}"
        head = (f"stopped at {count} {self.unit} after" if stopped
                else f"finished {count} {self.unit} in")
        rate = format_rate(self.rate(now) * self.rate_scale)
        self._write(self._tail([f"{self.what}: {head} {format_duration(now - self.started)}",
                                f"{rate} {self.rate_unit}/s"]))

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def _update_bar(self, postfix: bool) -> None:
        if self._bar is None:
            self._bar = tqdm(total=self.total, initial=self.done, desc=self.what, unit=self.unit,
                             file=self.stream, dynamic_ncols=True)
        if self.total is not None and self._bar.total != self.total:
            self._bar.total = self.total
        if postfix and self.fields:
            self._bar.set_postfix({k: _format_value(v) for k, v in self._field_values().items()},
                                  refresh=False)
        self._bar.update(self.done - self._bar.n)
