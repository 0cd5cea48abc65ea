"""Shipped configs validate against the schema, and the GPU grids dry-run to their full size."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate
from workflow_copy import REPO, venv_environment

CONFIGS = sorted((REPO / "config").glob("*.yaml"))


def merged(path: Path) -> dict:
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    for key, value in (yaml.safe_load(path.read_text()) or {}).items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


@pytest.mark.parametrize("path", [p for p in CONFIGS if p.name != "schema.yaml"],
                         ids=lambda p: p.name)
def test_config_validates(path: Path) -> None:
    config = merged(path)
    validate(config, str(REPO / "config/schema.yaml"))
    assert config["train"]["steps"] >= 1


def test_cifar10_config_is_ddpm_sized() -> None:
    from vdm.model.network import UNet, count_parameters

    config = merged(REPO / "config/cifar10.yaml")
    net = UNet((3, 32, 32), **config["model"])
    assert 35.0e6 < count_parameters(net) < 36.5e6
    assert config["fid"]["feature_extractor"] == "inception-v3-compat"
    assert config["sample"]["num_samples"] == 50000 and config["nll"].get("max_examples") is None
    assert config["train"]["batch_size"] == 128 and config["train"]["lr"] == 2e-4


GPU_GRIDS = {"cifar10.yaml": 36, "mnist.yaml": 36}  # config -> cells of its full grid


@pytest.fixture(scope="module")
def gpu_dry_runs() -> dict[str, subprocess.CompletedProcess]:
    """``snakemake -n`` of each of GPU_GRIDS in the repo, the processes at once (one Snakemake
    process's startup and planning is one core's work)."""
    env = venv_environment()

    def dry_run(name: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile",
                               f"config/{name}", "--directory", str(REPO)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)

    with ThreadPoolExecutor(max_workers=len(GPU_GRIDS)) as pool:
        return dict(zip(GPU_GRIDS, pool.map(dry_run, GPU_GRIDS), strict=True))


@pytest.mark.parametrize(("name", "cells"), sorted(GPU_GRIDS.items()))
def test_gpu_config_dry_run_lists_the_full_grid(gpu_dry_runs, name: str, cells: int) -> None:
    result = gpu_dry_runs[name]
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    counts = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    assert counts.get("train") == cells and counts.get("fid") == cells
    assert counts.get("nll") == cells and counts.get("sample") == cells


def test_defaults_agree_between_config_schema_and_library() -> None:
    """config.yaml, the schema's defaults and vdm.core.config's defaults describe the same run."""
    from vdm.core.config import RunConfig

    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    schema = yaml.safe_load((REPO / "config/schema.yaml").read_text())
    library = RunConfig().to_dict()
    for section in ("model", "train"):
        defaults = {key: spec.get("default")
                    for key, spec in schema["properties"][section]["properties"].items()}
        for key, value in config[section].items():
            assert defaults[key] == value, f"schema default of {section}.{key}"
            if key != "threads":  # the library leaves torch's thread count alone by default
                assert library[section][key] == value, f"vdm.core.config default of {section}.{key}"


def test_grid_name_is_default_only_for_the_embedded_default() -> None:
    from vdm.core.config import grid_name, load_config_file, validate_workflow_config

    default = validate_workflow_config(load_config_file("config/config.yaml"))
    assert grid_name(default, default) == "default"
    assert grid_name({**default, "resources": {"train": {"runtime": 9}}}, default) == "default"
    changed = {**default, "seeds": [0]}
    name = grid_name(changed, default)
    assert name.startswith("grid-") and len(name) == len("grid-") + 8
    assert grid_name(dict(reversed(list(changed.items()))), default) == name  # key order
    assert grid_name({**changed, "name": "mine"}, default) == "mine"


@pytest.mark.parametrize(("overrides", "expected"), [
    (["objectives=[eps,v]", "seeds=[0]"], "grid-f54dc1bf"),
    (["sample.methods=[ancestral,heun]"], "grid-5c550ce0"),
    (["dataset=digits-gmm"], "grid-9b2e1280"),
])
def test_keys_added_with_a_default_keep_the_names_unnamed_grids_had(
        overrides: list[str], expected: str) -> None:
    """Names computed at commit d1efbf6, before sample.spacings, evaluation.bayes_samplers and
    fid.fresh_reference_size existed: a grid that leaves them at their defaults keeps its
    results/grid-<hash>/ folder (its tables are not recomputed under a new name)."""
    from vdm.core.config import apply_overrides, grid_name, load_config_file, validate_workflow_config

    default = validate_workflow_config(load_config_file("config/config.yaml"))
    config = validate_workflow_config(apply_overrides(load_config_file("config/config.yaml"),
                                                      overrides))
    assert grid_name(config, default) == expected
    assert grid_name({**config, "sample": {**config["sample"], "spacings": ["time", "karras"]}},
                     default) != expected


def test_groundtruth_conditional_config_guides_three_ways_on_the_known_density() -> None:
    """groundtruth-conditional.yaml: conditional digits-gmm models with cfg, classifier and
    oracle guidance at the same weights passes every cross-key check; the same grid on digits
    (no known density) is the one-line config error naming guidance.kinds."""
    from vdm.core.config import validate_workflow_config
    from vdm.model.setting_names import evaluation_settings

    config = validate_workflow_config(merged(REPO / "config/groundtruth-conditional.yaml"))
    assert config["name"] == "groundtruth-conditional" and config["dataset"] == "digits-gmm"
    assert config["conditioning"]["enabled"] and config["guidance"]["kinds"] == [
        "cfg", "classifier", "oracle"]
    settings = evaluation_settings(config["sample"]["methods"], config["sample"]["steps"],
                                   config["guidance"]["kinds"], config["guidance"]["weights"])
    models = len(config["objectives"]) * len(config["schedules"]) * len(config["seeds"])
    assert (models, len(settings)) == (3, 7)  # sized for about 5 min on 2 CPU cores (README)
    with pytest.raises(ValueError, match=r"^invalid config key 'guidance.kinds'.*digits-gmm[^\n]*$"):
        validate_workflow_config({**config, "dataset": "digits"})
