"""Run the real workflow from tests: a temporary copy of it, and snakemake in this venv.

The helpers are the bench's (:mod:`vdm.bench.workflow_copy`), which runs the default grid the same way."""

from __future__ import annotations

from vdm.bench.configs import REPO
from vdm.bench.workflow_copy import copy_workflow, venv_environment

__all__ = ["REPO", "copy_workflow", "venv_environment"]
