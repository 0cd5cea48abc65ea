"""Conda environment files: they parse, name the project's core packages with the same lower
bounds as pyproject.toml, and every job rule runs in one (conda itself is not reachable here)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

REPO = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch"}  # PyPI name -> conda-forge name
PIP_ONLY = {"torch-fidelity"}  # not on conda-forge: must come through the pip: section
ENV_FILES = [REPO / "environment.yml", *sorted((REPO / "workflow/envs").glob("*.yaml"))]


def core_requirements() -> dict[str, SpecifierSet]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {Requirement(r).name.lower(): Requirement(r).specifier for r in project["dependencies"]}


def env_requirements(path: Path) -> tuple[dict[str, SpecifierSet], dict[str, SpecifierSet]]:
    """(conda packages, pip packages) -> version specifiers."""
    env = yaml.safe_load(path.read_text())
    conda, pip = {}, {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for item in dep["pip"]:
                if not item.startswith("-"):
                    req = Requirement(item)
                    pip[req.name.lower()] = req.specifier
            continue
        name, spec = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", dep).groups()
        if re.match(r"^=[^=]", spec):  # conda's "=3.11" means "3.11.*"
            spec = f"=={spec[1:]}.*"
        conda[name.lower()] = SpecifierSet(spec)
    return conda, pip


def lower_bound(spec: SpecifierSet) -> str | None:
    return next((s.version for s in spec if s.operator in (">=", "==")), None)


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_file_has_every_core_package_with_the_same_lower_bound(path: Path) -> None:
    conda, pip = env_requirements(path)
    assert yaml.safe_load(path.read_text())["channels"][0] == "conda-forge"
    for name, spec in core_requirements().items():
        if path.parent.name == "envs" and name == "snakemake":
            continue  # jobs do not run snakemake
        if name in PIP_ONLY:
            assert name in pip, f"{path.name}: {name} must be in the pip: section"
            found = pip[name]
        else:
            conda_name = CONDA_NAMES.get(name, name)
            assert conda_name in conda, f"{path.name}: missing {conda_name}"
            found = conda[conda_name]
        assert lower_bound(found) == lower_bound(spec), f"{path.name}: {name} {found} vs {spec}"


def test_python_version_matches_pyproject() -> None:
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    for path in ENV_FILES:
        conda, _ = env_requirements(path)
        assert "python" in conda
        assert "3.11" in yaml.safe_load(path.read_text())["dependencies"][0]
    assert SpecifierSet(requires).contains("3.11")


def test_every_job_rule_has_a_conda_env() -> None:
    for smk in sorted((REPO / "workflow/rules").glob("*.smk")):
        blocks = re.split(r"^rule ", smk.read_text(), flags=re.M)[1:]
        for block in blocks:
            name = block.split(":", 1)[0]
            if "shell:" in block:
                assert "conda:" in block, f"{smk.name}: rule {name} has no conda: directive"
    assert (REPO / "workflow/envs/vdm.yaml").is_file()
