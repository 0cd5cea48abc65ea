"""Provenance recorded in every result file: git commit, package versions, machine, time."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

try:  # optional: installed with snakemake; the jobs' conda environment may lack it
    import psutil
except ImportError:  # pragma: no cover - depends on the environment
    psutil = None

#: this process's start-up, once :func:`mark_command_start` has run (empty otherwise)
_PROCESS: dict[str, Any] = {}

PACKAGES = ("torch", "torchvision", "torch-fidelity", "numpy", "scikit-learn", "pandas",
            "seaborn", "snakemake", "vdm-bench")


def git_commit(path: str | Path | None = None) -> dict[str, Any]:
    """``{"commit": sha or "unknown", "dirty": bool or None}`` of the repository around ``path``."""
    cwd = Path(path or Path(__file__).resolve().parent)
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=cwd, capture_output=True, text=True, timeout=10).stdout
        return {"commit": sha, "dirty": bool(status.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": os.environ.get("VDM_GIT_COMMIT", "unknown"), "dirty": None}


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def parse_process_age(stat: str, uptime: str, ticks_per_second: int) -> float:
    """Seconds since a process was created, from the text of its ``/proc/<pid>/stat`` and of
    ``/proc/uptime``: ``uptime − starttime / ticks_per_second``, where ``starttime`` (field 22
    of ``stat``, clock ticks since boot) is counted after the command name, which is in
    parentheses and may itself hold spaces or parentheses. Resolution: one clock tick (10 ms)."""
    fields = stat[stat.rindex(")") + 1:].split()  # fields 3, 4, ... of proc(5)
    return float(uptime.split()[0]) - int(fields[22 - 3]) / ticks_per_second


def process_age() -> float | None:
    """Seconds since this process was created: :func:`parse_process_age` of ``/proc/self`` on
    Linux (10 ms), checked against psutil's creation time when psutil is installed (it rests on
    a whole-second boot time, so it reads up to 1 s late) and used instead where ``/proc`` is
    missing or disagrees by more (e.g. a container whose ``/proc/uptime`` is its own); ``None``
    when the process cannot be inspected."""
    coarse: float | None = None
    if psutil is not None:
        try:
            coarse = time.time() - psutil.Process().create_time()
        except psutil.Error:
            pass
    try:
        fine = parse_process_age(Path("/proc/self/stat").read_text(),
                                 Path("/proc/uptime").read_text(), os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return coarse
    if fine < 0 or (coarse is not None and abs(coarse - fine) > 1.05):
        return coarse
    return fine


def mark_command_start(command: str) -> dict[str, Any]:
    """Record, once per process, that ``command`` starts now: ``startup_seconds`` = the
    process's age at this moment (interpreter start-up, the imports of the command modules and
    argument parsing; imports a command defers into its body count as its work), with the
    ``command``, ``pid`` and the process's creation time ``created`` (Unix seconds, 10 ms):
    ``(hostname, pid, created)`` names one process across the result files that copy it.
    :func:`provenance` then adds this record as ``process``. Returns the record."""
    if not _PROCESS:
        age = process_age()
        now = time.time()
        _PROCESS.update(command=command, pid=os.getpid(),
                        created=None if age is None else round(now - age, 2),
                        startup_seconds=None if age is None else round(age, 3))
    return dict(_PROCESS)


def provenance(device: torch.device | str | None = None) -> dict[str, Any]:
    """Everything needed to tell where and with what a number was produced; ``process`` (the
    start-up of a command-line process, :func:`mark_command_start`) when recorded."""
    info: dict[str, Any] = {
        "git": git_commit(),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": platform.node(),
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "torch_threads": torch.get_num_threads(),
    }
    if _PROCESS:
        info["process"] = dict(_PROCESS)
    if device is not None:
        info["device"] = str(device)
        if torch.device(device).type == "cuda":
            info["device_name"] = torch.cuda.get_device_name(torch.device(device))
            info["cuda_version"] = torch.version.cuda
            info["cuda_backends"] = cuda_backend_settings()
    return info


def cuda_backend_settings() -> dict[str, Any]:
    """The process-wide CUDA math settings in force (what :func:`vdm.training.trainer.configure_device`
    turned on): cuDNN autotuning, TF32 for fp32 matmuls and for cuDNN convolutions."""
    return {"cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
            "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32)}


@contextlib.contextmanager
def strict_fp32(device: torch.device | str) -> Iterator[None]:
    """On CUDA, fp32 matmuls and cuDNN convolutions without TF32 inside the block (the NLL is
    computed in full fp32 whatever a trainer turned on); the previous flags are restored. A
    no-op on other devices."""
    if torch.device(device).type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def determinism_note(device: torch.device | str) -> dict[str, str]:
    """What reproducibility a result produced on ``device`` comes with (recorded in result files)."""
    kind = torch.device(device).type
    note = {
        "cpu": ("bitwise: the same config, seed, torch version and thread count give identical "
                "weights, samples and metrics (tested); other thread counts or BLAS builds may "
                "differ in the last bits"),
        "gpu": ("not bitwise: cuDNN/cuBLAS kernels (autotuning, atomic adds in convolution "
                "backward, bf16 autocast) may change low-order bits between runs, so retrained "
                "models differ slightly; seeds, data order, time steps and noise are still "
                "fixed, so differences are run-to-run noise, not a change of experiment"),
    }
    note["this_result"] = "cpu" if kind == "cpu" else "gpu"
    return note


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a unique temporary path next to ``path`` (same suffix, so writers that infer the
    format from it keep working); on success it replaces ``path``, on any error it is removed
    and ``path`` is left as it was: a result file is never seen half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}",
                                dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp creates 0600 files
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_json(path: str | Path) -> dict[str, Any]:
    """Read a result JSON; ``FileNotFoundError`` / ``ValueError`` naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"result file not found: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); delete it and rerun") from None


def write_json_atomic(path: str | Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (see :func:`atomic_output`)."""
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def save_torch_atomic(obj: Any, path: str | Path,
                      check: Callable[[str], Any] | None = None) -> Path:
    """``torch.save`` atomically (see :func:`atomic_output`); ``check(tmp_path)``, if given,
    runs on the written temporary file before it replaces ``path``."""
    with atomic_output(path) as tmp:
        torch.save(obj, tmp)
        if check is not None:
            check(str(tmp))
    return Path(path)


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; otherwise the named device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return torch.device(device)
