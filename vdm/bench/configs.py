"""The configuration the bench measures: the pipeline config, one grid cell's run config, and
its precision variants.

The pipeline config (``config/config.yaml`` or another file, e.g. ``config/cifar10.yaml``) is
validated against ``config/schema.yaml`` with its defaults filled in, exactly as the Snakefile
does; without Snakemake or PyYAML installed, as on the GPU machines, the resolved copy in
``vdm/bench/resolved_configs.json`` is used, checked against the file's SHA-256 (``python -m
vdm.bench --write-resolved-configs`` rewrites it). One cell's :class:`RunConfig` is built as
``run_config`` in common.smk builds it. Precision variants (:data:`VARIANTS`): ``fp32`` (eager),
``bf16`` (eager, bf16 autocast) and ``bf16-compile`` (bf16 autocast + ``torch.compile``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from vdm.core.config import RunConfig, load_config_file, run_config_from_dict, workflow_cell
from vdm.core.provenance import write_json_atomic
from vdm.core.schema import SCHEMA_FILE

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO / "config" / "config.yaml"
SCHEMA = SCHEMA_FILE  # package data: also there when the package is installed
RESOLVED_CONFIGS = Path(__file__).with_name("resolved_configs.json")
RESOLVED_CONFIG_FILES = ("config.yaml", "mnist.yaml", "cifar10.yaml")
VARIANTS = ("fp32", "bf16", "bf16-compile")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_pipeline_config(path: str | Path = DEFAULT_CONFIG) -> dict[str, Any]:
    """The pipeline config at ``path`` with the schema's defaults filled in (as the Snakefile).

    Without Snakemake or PyYAML (the GPU machines have neither), or where a shipped config is not
    there (an installed package has no ``config/``): the resolved copy of a file of the same name in
    ``vdm/bench/resolved_configs.json`` (:func:`resolved_config_copy`).
    """
    if not Path(path).is_file() and Path(path).name in RESOLVED_CONFIG_FILES:
        return resolved_config_copy(path)
    try:
        import yaml  # noqa: F401  lazy: optional (GPU machines); load_config_file needs it for YAML
        from snakemake.utils import validate  # lazy: optional (GPU machines); else the resolved copy
    except ImportError:
        return resolved_config_copy(path)
    config = load_config_file(path)
    validate(config, str(SCHEMA))
    return config


def resolved_config_copy(path: str | Path) -> dict[str, Any]:
    """The schema-resolved copy of ``config/<name>`` stored in ``vdm/bench/resolved_configs.json``,
    used only while ``path``'s SHA-256 is the one recorded with it (``ValueError`` otherwise)."""
    path = Path(path)
    copies = json.loads(RESOLVED_CONFIGS.read_text())
    entry = copies.get(path.name)
    regenerate = "regenerate it with `python -m vdm.bench --write-resolved-configs` (needs Snakemake)"
    if entry is None:
        raise ValueError(f"{path}: Snakemake or PyYAML is not installed and {RESOLVED_CONFIGS} "
                         f"holds no resolved copy of {path.name!r} (only {sorted(copies)})")
    if path.is_file() and _sha256(path) != entry["sha256"]:
        raise ValueError(f"{path} changed since its resolved copy in {RESOLVED_CONFIGS} was "
                         f"written and Snakemake or PyYAML is not installed to read it; {regenerate}")
    return json.loads(json.dumps(entry["config"]))


def write_resolved_configs(names: tuple[str, ...] = RESOLVED_CONFIG_FILES) -> Path:
    """Write ``vdm/bench/resolved_configs.json``: each ``config/<name>`` resolved against the schema
    (needs Snakemake and PyYAML), with the file's SHA-256."""
    copies = {name: {"sha256": _sha256(REPO / "config" / name),
                     "config": load_pipeline_config(REPO / "config" / name)} for name in names}
    write_json_atomic(RESOLVED_CONFIGS, copies)
    return RESOLVED_CONFIGS


def cell_run_config(config: dict[str, Any], objective: str, schedule: str, seed: int = 0,
                    threads: int | None = None, steps: int | None = None) -> RunConfig:
    """The :class:`RunConfig` of one grid cell, built like ``run_config`` in common.smk;
    ``threads`` / ``steps`` override ``train.threads`` / ``train.steps`` when given."""
    cell = workflow_cell(config, objective, schedule, seed)
    # complete: an unconditional cell leaves label_dropout to the schema, unread without PyYAML
    cell["conditioning"] = {**config.get("conditioning", {}), **cell["conditioning"]}
    # complete too: a cell without snapshots leaves train.snapshots to the schema
    cell["train"] = {**config["train"], **cell["train"]}
    if threads is not None:
        cell["train"]["threads"] = threads
    if steps is not None:  # a shortened run keeps the snapshots it reaches
        cell["train"]["steps"] = steps
        cell["train"]["snapshots"] = [k for k in cell["train"].get("snapshots", []) if k <= steps]
    return run_config_from_dict(cell)


def variant_name(bf16: bool, compile: bool) -> str:
    """``fp32`` / ``bf16``, with ``-compile`` when ``torch.compile`` is on."""
    return ("bf16" if bf16 else "fp32") + ("-compile" if compile else "")


def with_variant(run_config: RunConfig, variant: str) -> RunConfig:
    """``run_config`` with ``train.bf16`` / ``train.compile`` set as ``variant`` names them."""
    precision, _, rest = variant.partition("-")
    if precision not in ("fp32", "bf16") or rest not in ("", "compile"):
        raise ValueError(f"unknown precision variant {variant!r}; use fp32, bf16, fp32-compile "
                         "or bf16-compile")
    train = dataclasses.replace(run_config.train, bf16=precision == "bf16",
                                compile=rest == "compile")
    return dataclasses.replace(run_config, train=train)
