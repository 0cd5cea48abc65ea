"""Where a grid's time goes: Snakemake ``benchmark:`` files of its jobs, per rule type.

Snakemake writes one tab-separated file per job (``results/benchmarks/<dataset>/<rule>/<job>.tsv``
here), a header and one row per run of the job (several with ``repeat()``), with the columns
``s`` (wall time of the job's command, seconds), ``h:m:s`` (the same, rounded), ``max_rss``,
``max_vms``, ``max_uss``, ``max_pss`` (peak memory of the job's processes summed, MiB: Snakemake
divides bytes by 1024², and calls it MB), ``io_in``, ``io_out`` (MiB read and written),
``mean_load`` (mean CPU load, percent of one core) and ``cpu_time`` (user + system CPU seconds of
the job's processes); ``NA`` where nothing was sampled (a job shorter than the first sample).
Memory and CPU time are sampled (every 0.5 s for the first 15 s of a job, then every 30 s), so a
job's CPU time can miss up to its last interval and a short memory peak can be missed; the wall
time is exact. A ``.jsonl`` benchmark file (one JSON object per run) is read the same way.

The share of start-up: every command-line ``python -m vdm`` process records, in the
``provenance`` of the result JSONs it writes, ``process.startup_seconds`` — its age when the
command started (interpreter start-up, imports, argument parsing;
:func:`vdm.core.provenance.mark_command_start`). Per rule type, start-up seconds = the mean over
its recorded processes × its runs (the sum when every run recorded one), and its share = that /
the rule type's summed wall time. A grid's total share counts only rule types with records (a
lower bound; rules without a result JSON, e.g. ``aggregate``, record none).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

from vdm.core.provenance import atomic_output, read_json
from vdm.reporting import formatting
from vdm.reporting.plot_style import fit_titles

PathLike = str | Path
#: columns of a Snakemake benchmark file (its first 10; ``--benchmark-extended`` adds more)
BENCHMARK_COLUMNS = ("s", "h:m:s", "max_rss", "max_vms", "max_uss", "max_pss", "io_in", "io_out",
                     "mean_load", "cpu_time")
#: benchmark column -> column of :func:`read_benchmarks`
RENAMED = {"s": "wall_s", "cpu_time": "cpu_s", "max_rss": "max_rss_mib", "max_uss": "max_uss_mib",
           "io_in": "io_in_mib", "io_out": "io_out_mib", "mean_load": "mean_load_pct"}
TABLE_COLUMNS = ["rule", "jobs", "runs", "wall_s", "wall_share", "wall_s_median", "cpu_s",
                 "cpu_per_wall", "peak_rss_mib", "startup_recorded", "startup_s",
                 "startup_share"]
ALL_RULES = "all rule types"


# --------------------------------------------------------------------------- reading
def _benchmark_rows(path: Path) -> list[dict[str, Any]]:
    text = path.read_text()
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        lines = [line.split("\t") for line in text.splitlines() if line.strip()]
        rows = [dict(zip(lines[0], line, strict=False)) for line in lines[1:]] if lines else []
    if not rows or any("s" not in row for row in rows):
        raise ValueError(f"{path}: not a Snakemake benchmark file (no runs, or no 's' column)")
    return rows


def read_benchmarks(paths: Iterable[PathLike]) -> pd.DataFrame:
    """One row per run of each benchmark file: ``rule`` (the file's folder), ``job`` (its name
    without suffix), ``dataset`` (the folder above), ``repeat`` (0, 1, ... within the file) and
    the numbers as ``wall_s``, ``cpu_s``, ``max_rss_mib``, ``max_uss_mib``, ``io_in_mib``,
    ``io_out_mib``, ``mean_load_pct`` (NaN where Snakemake wrote ``NA``). Raises
    ``FileNotFoundError`` / ``ValueError`` naming the first missing or malformed file."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("no benchmark files given")
    for path in paths:  # every file checked before any is parsed
        if not path.is_file():
            raise FileNotFoundError(f"benchmark file not found: {path}")
    records = []
    for path in paths:
        for repeat, row in enumerate(_benchmark_rows(path)):
            record = {"rule": path.parent.name, "job": path.stem, "dataset": path.parent.parent.name,
                      "repeat": repeat, "file": str(path)}
            for column, name in RENAMED.items():
                record[name] = pd.to_numeric(row.get(column, np.nan), errors="coerce")
            if not np.isfinite(record["wall_s"]):
                raise ValueError(f"{path}: run {repeat} has no wall time (s = {row['s']!r})")
            records.append(record)
    return pd.DataFrame(records)


def read_startups(result_jsons: Mapping[str, Iterable[PathLike]]) -> pd.DataFrame:
    """One row per process that wrote the result JSONs (``rule`` → the JSONs its jobs wrote):
    ``rule``, ``command``, ``hostname``, ``pid``, ``created``, ``startup_s``; a process is
    counted once however many files it wrote (its ``(hostname, pid, created)``). Files without
    a recorded start-up are skipped. Raises ``ValueError`` when one process appears under two
    rule types (e.g. ``metrics.json``, which copies ``train.json``'s provenance, listed under
    another rule than ``train``)."""
    seen: dict[tuple[Any, ...], str] = {}
    rows = []
    for rule, paths in result_jsons.items():
        for path in paths:
            info = read_json(path).get("provenance", {})
            process = info.get("process") or {}
            if process.get("startup_seconds") is None:
                continue
            key = (info.get("hostname"), process.get("pid"), process.get("created"))
            if key in seen:
                if seen[key] != rule:
                    raise ValueError(f"{path}: its process ({process.get('command')}, pid "
                                     f"{process.get('pid')}) is listed under rules {seen[key]!r} "
                                     f"and {rule!r}; list each result file under the rule that "
                                     "wrote it")
                continue
            seen[key] = rule
            rows.append({"rule": rule, "command": process.get("command"), "hostname": key[0],
                         "pid": key[1], "created": key[2],
                         "startup_s": float(process["startup_seconds"])})
    return pd.DataFrame(rows, columns=["rule", "command", "hostname", "pid", "created",
                                       "startup_s"])


# --------------------------------------------------------------------------- table
def summarise(runs: pd.DataFrame, startups: pd.DataFrame) -> pd.DataFrame:
    """The per-rule-type table of :func:`timing_table` from :func:`read_benchmarks` and
    :func:`read_startups` frames; rule types by summed wall time, largest first."""
    unknown = sorted(set(startups["rule"]) - set(runs["rule"]))
    if unknown:
        raise ValueError(f"result JSONs given for rule {unknown[0]!r}, which has no benchmark "
                         f"files (rules with benchmarks: {', '.join(sorted(set(runs['rule'])))})")
    total = float(runs["wall_s"].sum())
    rows = []
    for rule, of_rule in runs.groupby("rule", sort=False):
        measured = of_rule.dropna(subset=["cpu_s"])
        recorded = startups.loc[startups["rule"] == rule, "startup_s"]
        wall = float(of_rule["wall_s"].sum())
        startup = float(recorded.mean()) * len(of_rule) if len(recorded) else np.nan
        rows.append({
            "rule": rule, "jobs": of_rule["job"].nunique(), "runs": len(of_rule), "wall_s": wall,
            "wall_share": wall / total if total > 0 else np.nan,
            "wall_s_median": float(of_rule["wall_s"].median()),
            "cpu_s": float(measured["cpu_s"].sum()) if len(measured) else np.nan,
            "cpu_per_wall": (float(measured["cpu_s"].sum() / measured["wall_s"].sum())
                             if len(measured) and measured["wall_s"].sum() > 0 else np.nan),
            "peak_rss_mib": float(of_rule["max_rss_mib"].max()),
            "startup_recorded": len(recorded), "startup_s": startup,
            "startup_share": startup / wall if wall > 0 else np.nan})
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS).sort_values(
        "wall_s", ascending=False, kind="stable")
    measured = runs.dropna(subset=["cpu_s"])
    startup_total = float(table["startup_s"].sum())  # NaN (no record) counts as 0
    grid = {"rule": ALL_RULES, "jobs": int(table["jobs"].sum()), "runs": len(runs),
            "wall_s": total, "wall_share": 1.0 if total > 0 else np.nan,
            "wall_s_median": float(runs["wall_s"].median()),
            "cpu_s": float(measured["cpu_s"].sum()) if len(measured) else np.nan,
            "cpu_per_wall": (float(measured["cpu_s"].sum() / measured["wall_s"].sum())
                             if len(measured) and measured["wall_s"].sum() > 0 else np.nan),
            "peak_rss_mib": float(runs["max_rss_mib"].max()),
            "startup_recorded": int(table["startup_recorded"].sum()),
            "startup_s": startup_total if table["startup_recorded"].sum() else np.nan,
            "startup_share": (startup_total / total if total > 0 and table["startup_recorded"].sum()
                              else np.nan)}
    return pd.concat([table, pd.DataFrame([grid])], ignore_index=True)


def timing_table(benchmark_files: Iterable[PathLike],
                 result_jsons: Mapping[str, Iterable[PathLike]] | None = None) -> pd.DataFrame:
    """Per rule type (the folder of its benchmark files), largest summed wall time first, then
    a last row ``all rule types``: ``jobs``, ``runs`` (jobs × repeats), ``wall_s`` (summed wall
    time, s), ``wall_share`` (of the grid's summed wall time: jobs that ran in parallel count
    each), ``wall_s_median`` (per run), ``cpu_s`` (summed CPU time, s), ``cpu_per_wall`` (CPU /
    wall time of the runs with CPU measured: mean busy cores), ``peak_rss_mib`` (largest peak
    resident memory of a run, MiB), ``startup_recorded`` (processes with a recorded start-up),
    ``startup_s`` and ``startup_share`` (see the module docstring; NaN without a record).

    ``result_jsons``: rule type → the result JSONs its jobs wrote (e.g. ``{"train":
    [".../train.json", ...], "evaluate": [".../nll.json", ...]}``), read for their processes'
    start-up (:func:`read_startups`); a rule type must have benchmark files."""
    runs = read_benchmarks(benchmark_files)
    return summarise(runs, read_startups(result_jsons or {}))


# --------------------------------------------------------------------------- text
def _seconds(x: float) -> str:
    return formatting.fmt_num(x, 1)


def _percent(x: float) -> str:
    return formatting.MISSING if formatting.is_missing(x) else f"{100 * x:.1f}%"


def timing_caption(table: pd.DataFrame) -> str:
    """What :func:`timing_markdown`'s table shows, with the grid's totals in words."""
    grid = table[table["rule"] == ALL_RULES].iloc[0]
    without = [r for r, n in zip(table["rule"], table["startup_recorded"], strict=True)
               if r != ALL_RULES and not n]
    startup = ("no job recorded its start-up" if formatting.is_missing(grid["startup_s"]) else
               f"process start-up and imports: {_seconds(grid['startup_s'])} s "
               f"({_percent(grid['startup_share'])} of the summed wall time"
               + (f"; a lower bound: {', '.join(without)} recorded none" if without else "")
               + ")")
    return (f"Where the grid's time goes, per rule type (Snakemake benchmark files): "
            f"{int(grid['jobs'])} jobs, {_seconds(grid['wall_s'])} s of wall time summed over "
            f"jobs (parallel jobs count each), {_seconds(grid['cpu_s'])} s of CPU time; "
            f"{startup}. Share = of the summed wall time; CPU/wall = mean busy cores; peak "
            "memory = the largest resident set of one job (MiB; sampled, as is CPU time); "
            "start-up = interpreter start-up, imports and argument parsing before the command "
            "runs, mean of the recorded processes × runs.")


def timing_markdown(table: pd.DataFrame) -> str:
    """Caption + Markdown table of :func:`timing_table`."""
    text = pd.DataFrame({
        "rule": table["rule"], "jobs": table["jobs"].astype(int),
        "wall time (s)": [_seconds(x) for x in table["wall_s"]],
        "share": [_percent(x) for x in table["wall_share"]],
        "median per job (s)": [_seconds(x) for x in table["wall_s_median"]],
        "CPU time (s)": [_seconds(x) for x in table["cpu_s"]],
        "CPU/wall": [formatting.fmt_num(x, 2) for x in table["cpu_per_wall"]],
        "peak memory (MiB)": [formatting.fmt_num(x, 0) for x in table["peak_rss_mib"]],
        "start-up (s)": [_seconds(x) for x in table["startup_s"]],
        "start-up share": [_percent(x) for x in table["startup_share"]],
    }, dtype=object)
    return formatting.markdown_block(timing_caption(table), formatting.markdown_table(text))


# --------------------------------------------------------------------------- figure
def timing_figure(runs: pd.DataFrame, table: pd.DataFrame) -> Figure:
    """Three panels over the rule types (largest summed wall time on top): summed wall time
    split into start-up and the rest, with each type's share; every run's wall time (log x);
    each type's peak resident memory."""
    rules = table.loc[table["rule"] != ALL_RULES]
    order = list(rules["rule"])
    fig = Figure(figsize=(12.0, 0.45 * len(order) + 2.0), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3, sharey=True, width_ratios=[1.4, 1.0, 0.8])
    y = np.arange(len(order))
    startup = rules["startup_s"].fillna(0.0).to_numpy()
    wall = rules["wall_s"].to_numpy()
    colours = sns.color_palette("tab10", 2)
    axes[0].barh(y, startup, color=colours[1], label="process start-up and imports")
    axes[0].barh(y, wall - startup, left=startup, color=colours[0], label="the rest of the job")
    for yi, (w, share) in enumerate(zip(wall, rules["wall_share"], strict=True)):
        axes[0].annotate(_percent(share), (w, yi), xytext=(3, 0), textcoords="offset points",
                         va="center", fontsize=8)
    axes[0].set_xlim(0, 1.15 * max(float(wall.max()), 1e-9))
    axes[0].set_xlabel("wall time summed over jobs (s); label: share of the grid")
    axes[0].legend(fontsize=8, loc="lower right")
    sns.stripplot(data=runs, x="wall_s", y="rule", order=order, ax=axes[1], size=4, jitter=0.2,
                  color="black", alpha=0.6)
    axes[1].set_xscale("log")
    axes[1].xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))  # 1, 2, 5, 10, 20, ...
    axes[1].xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes[1].xaxis.set_minor_locator(NullLocator())
    axes[1].set_xlabel("wall time of each job (s, log)")
    sns.barplot(data=rules, x="peak_rss_mib", y="rule", order=order, ax=axes[2],
                color=colours[0])
    axes[2].set_xlabel("peak resident memory of a job (MiB)")
    for ax in axes:
        ax.set_ylabel("")
    axes[0].set_yticks(y, order)
    grid = table[table["rule"] == ALL_RULES].iloc[0]
    fig.suptitle(f"Where the time goes: {int(grid['jobs'])} jobs, {_seconds(grid['wall_s'])} s "
                 f"summed wall time, start-up {_percent(grid['startup_share'])} of it",
                 fontsize=10)
    return fig


def plot_timing(benchmark_files: Iterable[PathLike], path: PathLike,
                result_jsons: Mapping[str, Iterable[PathLike]] | None = None) -> Path:
    """``timing.png`` (:func:`timing_figure`) of :func:`timing_table`'s inputs at ``path``."""
    runs = read_benchmarks(benchmark_files)
    return _save(timing_figure(runs, summarise(runs, read_startups(result_jsons or {}))),
                 Path(path))


def _save(fig: Figure, path: Path) -> Path:
    fit_titles(fig)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=120)
    return path


def write_timing(benchmark_files: Sequence[PathLike],
                 result_jsons: Mapping[str, Iterable[PathLike]] | None, table_dir: PathLike,
                 plot_dir: PathLike) -> dict[str, Path]:
    """``timing.csv`` and ``timing.md`` (:func:`timing_table`, :func:`timing_markdown`) in
    ``table_dir`` and ``timing.png`` (:func:`timing_figure`) in ``plot_dir``; every input is
    checked before anything is written. Returns ``{file name: path}``."""
    runs = read_benchmarks(benchmark_files)
    table = summarise(runs, read_startups(result_jsons or {}))
    paths = {"timing.csv": Path(table_dir) / "timing.csv",
             "timing.md": Path(table_dir) / "timing.md",
             "timing.png": Path(plot_dir) / "timing.png"}
    with atomic_output(paths["timing.csv"]) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    with atomic_output(paths["timing.md"]) as tmp:
        tmp.write_text(timing_markdown(table))
    _save(timing_figure(runs, table), paths["timing.png"])
    return paths
