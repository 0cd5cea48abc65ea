"""The package installed non-editable (a built wheel, not the checkout) trains from a config
in another directory: the schema and every other file it reads are package data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: what building the package reads: pyproject.toml names README.md; vdm/core/schema.yaml links
#: into config/
BUILD_INPUTS = ("pyproject.toml", "README.md", "vdm", "config")


@pytest.mark.slow  # 29 s on a loaded 2-core machine: pip builds a wheel, then a real training job
def test_non_editable_install_trains_from_another_directory(tmp_path: Path) -> None:
    source, target, work = tmp_path / "source", tmp_path / "site", tmp_path / "work"
    source.mkdir()
    for name in BUILD_INPUTS:  # a copy, so that the build leaves no build/ or egg-info here
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(REPO / name, source / name)
    (source / "config" / "README.md").unlink()  # nothing but the schema is needed from config/
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INDEX": "1"}
    env.pop("PYTHONPATH", None)
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps",
                                "--no-build-isolation", "--target", str(target), str(source)],
                               env=env, capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-2000:]
    shutil.rmtree(source)  # the installed package must not read its source
    schema = target / "vdm" / "core" / "schema.yaml"
    assert schema.is_file() and not schema.is_symlink()
    assert schema.read_text() == (REPO / "config" / "schema.yaml").read_text()

    (work / "config").mkdir(parents=True)
    shutil.copy(REPO / "config" / "config.yaml", work / "config" / "config.yaml")
    env = {**env, "PYTHONPATH": str(target)}
    where = subprocess.run([sys.executable, "-c", "import vdm, vdm.core.schema as s; "
                            "print(vdm.__file__); print(s.SCHEMA_FILE)"],
                           cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr
    package, schema_file = where.stdout.split()
    assert Path(package).is_relative_to(target) and Path(schema_file) == schema

    trained = subprocess.run([sys.executable, "-m", "vdm", "train", "--config", "config/config.yaml",
                              "--objective", "elbo", "--schedule", "learned", "--seed", "1",
                              "--set", "train.steps=2", "--set", "train.batch_size=16",
                              "--set", "model.channels=8", "--out", "run"],
                             cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-2000:]
    summary = json.loads((work / "run" / "train.json").read_text())
    assert summary["steps"] == 2 and (work / "run" / "model.pt").is_file()
    config = summary["config"]
    assert (config["objective"], config["schedule"], config["seed"]) == ("elbo", "learned", 1)
    assert config["train"]["threads"] == 1 and config["model"]["channels"] == 8  # grid's threads


def test_without_the_checkout_the_bench_reads_its_shipped_configs(tmp_path: Path) -> None:
    """An installed package has no config/: the bench and the GPU check take the resolved copies
    shipped in vdm/bench/resolved_configs.json; another missing file is named."""
    from vdm.bench.configs import RESOLVED_CONFIG_FILES, load_pipeline_config

    for name in RESOLVED_CONFIG_FILES:
        assert load_pipeline_config(tmp_path / name) == load_pipeline_config(REPO / "config" / name)
    with pytest.raises(FileNotFoundError, match="mine.yaml"):
        load_pipeline_config(tmp_path / "mine.yaml")
