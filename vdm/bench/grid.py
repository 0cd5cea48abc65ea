"""Wall time of the whole Snakemake grid, and the share of it that is overhead.

Without ``--quick`` (or with ``--grid-config``), never with ``--synthetic``: ``grid_seconds``
[s]: wall time of ``python -m snakemake --cores all`` in a temporary copy of the workflow (fresh
results), and ``grid_overhead_share`` [fraction] = ``1 - compute / (wall * cores)``, where
``compute`` is the sum over jobs of the in-process seconds recorded in their result files
(``wall_seconds`` of train.json, falling back to ``train_seconds``, of nll.json, fid.json, the
``meta`` of samples.npz, and of data.json, classifier.json and reference.json; a file without it
counts 0 and is listed under ``grid.compute.missing``). Overhead therefore includes interpreter
and import start-up of every job, Snakemake's own scheduling, the jobs that record no seconds
(collect, aggregate, plots) and idle cores. ``default_grid_seconds`` is ``grid_seconds`` when
the grid config is the repository's ``config/config.yaml``. Snakemake's per-rule job counts (its
"Job stats" table) are recorded under ``grid.job_counts``.

:func:`_result_seconds` reads ``samples.npz`` with :mod:`vdm.evaluation.fid`, which imports
torch-fidelity (optional), so it imports it when it runs: a grid run has the pipeline's
environment, and the rest of the bench runs where only torch is installed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from vdm.bench.configs import DEFAULT_CONFIG
from vdm.bench.workflow_copy import copy_workflow, venv_environment
from vdm.core.provenance import read_json


def parse_job_stats(output: str) -> dict[str, int]:
    """Per-rule job counts from the first "Job stats:" table of Snakemake's output
    (``{"train": 36, ..., "total": 180}``); empty when there is none."""
    lines = [line.strip() for line in output.splitlines()]
    if "Job stats:" not in lines:
        return {}
    counts: dict[str, int] = {}
    for row in lines[lines.index("Job stats:") + 1:]:
        match = re.fullmatch(r"(\S+)\s+(\d+)", row)
        if match:
            counts[match.group(1)] = int(match.group(2))
        elif counts:  # the first line after the table's rows ends it (header lines come before)
            break
    return counts


def parse_cores(output: str) -> int | None:
    """The core count Snakemake reports ("Provided cores: N"), or None."""
    match = re.search(r"Provided cores:\s*(\d+)", output)
    return int(match.group(1)) if match else None


def _result_seconds(path: Path) -> tuple[float | None, str | None]:
    """``(seconds, key used)`` recorded in a result file, ``(None, None)`` when absent."""
    from vdm.evaluation.fid import load_samples_meta  # torch-fidelity (optional: module docstring)

    meta = load_samples_meta(path) if path.suffix == ".npz" else read_json(path)
    keys = ("wall_seconds", "train_seconds") if path.name == "train.json" else ("wall_seconds",)
    for key in keys:
        if isinstance(meta.get(key), int | float):
            return float(meta[key]), key
    return None, None


RUN_GLOB = "*/runs/*/*/*/*/seed*"  # <dataset>/runs/<cond>/<param>/<objective>/<schedule>/seed<k>
RESULT_PATTERNS = {"train": f"{RUN_GLOB}/train.json", "sample": f"{RUN_GLOB}/samples.npz",
                   "nll": f"{RUN_GLOB}/nll.json", "fid": f"{RUN_GLOB}/fid.json",
                   "sweep_sample": f"{RUN_GLOB}/sweep/*/samples.npz",
                   "sweep_fid": f"{RUN_GLOB}/sweep/*/fid.json",
                   "prepare_data": "*/data.json", "fid_classifier": "*/fid/classifier.json",
                   "fid_reference": "*/fid/*/reference.json",
                   "noisy_classifier": "*/guidance/noisy-classifier-*.json"}


def compute_seconds(results_dir: Path) -> dict[str, Any]:
    """Sum of in-process job seconds recorded under ``results_dir`` (see module docstring),
    per rule: files found, seconds, files that fell back to ``train_seconds``, files without."""
    per_rule: dict[str, dict[str, Any]] = {}
    missing: list[str] = []
    for rule, pattern in RESULT_PATTERNS.items():
        entry = {"files": 0, "seconds": 0.0, "fallback_train_seconds": 0, "missing": 0}
        for path in sorted(results_dir.glob(pattern)):
            seconds, key = _result_seconds(path)
            entry["files"] += 1
            if seconds is None:
                entry["missing"] += 1
                missing.append(str(path.relative_to(results_dir)))
            else:
                entry["seconds"] += seconds
                entry["fallback_train_seconds"] += key == "train_seconds"
        per_rule[rule] = entry
    return {"seconds": sum(e["seconds"] for e in per_rule.values()), "per_rule": per_rule,
            "missing": missing}


def overhead_share(compute: float, wall: float, cores: int) -> float:
    """``1 - compute / (wall * cores)``: the share of the cores' time not spent in job compute."""
    return 1.0 - compute / (wall * cores)


def measure_grid(grid_config: Path | None, work_dir: Path) -> dict[str, Any]:
    """Run the whole workflow once (``--cores all``) in a fresh copy; seconds and overhead."""
    workdir = copy_workflow(work_dir / "workflow_copy")
    command = [sys.executable, "-m", "snakemake", "--cores", "all"]
    if grid_config is not None:
        command += ["--configfile", str(Path(grid_config).resolve())]
    started = time.perf_counter()
    process = subprocess.run(command, cwd=workdir, env=venv_environment(), text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        tail = "\n".join(process.stdout.splitlines()[-30:])
        raise RuntimeError(f"snakemake failed (exit {process.returncode}):\n{tail}")
    cores = parse_cores(process.stdout) or os.cpu_count() or 1
    compute = compute_seconds(workdir / "results")
    is_default = grid_config is None or Path(grid_config).resolve() == DEFAULT_CONFIG.resolve()
    out = {"grid_seconds": wall, "grid_overhead_share": overhead_share(compute["seconds"], wall,
                                                                       cores),
           "cores": cores, "config_file": str(grid_config or DEFAULT_CONFIG),
           "is_default_grid": is_default, "job_counts": parse_job_stats(process.stdout),
           "compute": compute}
    if is_default:
        out["default_grid_seconds"] = wall
    return out

