"""A fresh copy of the workflow to run Snakemake in, and the environment to run it with.

The bench's grid run (:mod:`vdm.bench.grid`) and the tests that run the real workflow both copy
``Snakefile``, ``workflow/``, ``config/`` and the ``profiles`` link into a temporary directory
(fresh results; the vdm package is the installed one) and call Snakemake with this
interpreter's ``python`` first on ``PATH``.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from vdm.bench.configs import REPO

WORKFLOW_FILES = ("Snakefile", "workflow", "config")
PROFILE_LINK = "profiles"  # -> workflow/profiles: where Snakemake finds the default profile


def copy_workflow(dest: Path) -> Path:
    """Copy Snakefile, workflow/, config/ and the ``profiles`` link into ``dest`` (the vdm
    package is the installed one)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, dest / name)
        else:
            shutil.copy(source, dest / name)
    (dest / PROFILE_LINK).symlink_to(os.readlink(REPO / PROFILE_LINK))
    return dest


def venv_environment() -> dict[str, str]:
    """This environment with this interpreter's bin directory first (rules call ``python``)."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
