"""Run the real workflow from tests: a temporary copy of it, and snakemake in this venv."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def venv_environment() -> dict[str, str]:
    """This process's environment with the venv's bin first, so rules' `python` is this one
    (jobs, including SLURM jobs via sbatch --export=ALL, inherit it)."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def copy_workflow(work: Path) -> Path:
    """Copy Snakefile, workflow/, config/ and the ``profiles`` link (through which Snakemake finds
    the default profile workflow/profiles/default) into ``work``; vdm comes from the venv."""
    for name in ("Snakefile", "workflow", "config"):
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, work / name)
    (work / "profiles").symlink_to(os.readlink(REPO / "profiles"))
    return work
