"""``python -m vdm train``: one model from a run config or one cell of a workflow config."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from vdm.core.config import (
    RunConfig,
    apply_overrides,
    is_workflow_config,
    load_config_file,
    pick_workflow_cell,
    run_config_from_dict,
    validate_workflow_config,
)
from vdm.core.dataset_facts import DATASETS
from vdm.core.provenance import resolve_device
from vdm.model.objectives import OBJECTIVES
from vdm.model.parameterizations import PARAMETERIZATIONS
from vdm.model.schedules import SCHEDULES
from vdm.training.trainer import Trainer


# ----- train ------------------------------------------------------------------------------
def train_arguments(parser: argparse.ArgumentParser) -> None:
    try:
        defaults = RunConfig().to_dict()  # the schema's defaults
    except ValueError:  # no PyYAML/jsonschema to read the schema (the GPU-check machines)
        defaults = {}

    def default(key: str) -> str:
        return f" (default: {defaults[key]})" if key in defaults else ""

    parser.add_argument("--config", type=Path,
                        help="a run config (YAML/JSON, the keys of vdm.core.config.RunConfig) or a "
                             "workflow config such as config/config.yaml, whose cell is picked "
                             "with --objective/--schedule/--seed (needed where its list has "
                             "several values)")
    parser.add_argument("--config-json", help="run config as an inline JSON mapping")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override a run-config key, e.g. train.steps=500 (repeatable)")
    parser.add_argument("--dataset", help=f"one of {', '.join(sorted(DATASETS))}"
                                          f"{default('dataset')}")
    parser.add_argument("--objective", help=f"one of {', '.join(OBJECTIVES)}"
                                            f"{default('objective')}")
    parser.add_argument("--schedule", help=f"one of {', '.join(SCHEDULES)}"
                                           f"{default('schedule')}")
    parser.add_argument("--parameterization",
                        help=f"what the network outputs: one of {', '.join(PARAMETERIZATIONS)}"
                             f"{default('parameterization')}")
    parser.add_argument("--seed", type=int, help=f"one run's seed{default('seed')}")
    parser.add_argument("--out", required=True, type=Path, help="run directory")
    parser.add_argument("--stop-at", type=int, help="stop after this step, leaving state.pt")


def build_run_config(args: argparse.Namespace):
    """The :class:`RunConfig` of ``train``: a run config, or one cell of a workflow config
    (:func:`vdm.core.config.pick_workflow_cell`), then ``--config-json``, the named options and the
    ``--set`` overrides on top; validated before anything is loaded."""
    data: dict[str, Any] = load_config_file(args.config) if args.config else {}
    if is_workflow_config(data):
        if args.dataset is not None:
            data["dataset"] = args.dataset
        data = pick_workflow_cell(validate_workflow_config(data), str(args.config),
                                  parameterization=args.parameterization,
                                  objective=args.objective, schedule=args.schedule,
                                  seed=args.seed)
    if args.config_json:
        data.update(json.loads(args.config_json))
    for key in ("dataset", "objective", "schedule", "parameterization", "seed"):
        if getattr(args, key) is not None:
            data[key] = getattr(args, key)
    config = run_config_from_dict(apply_overrides(data, args.overrides))
    validate_run_config(config)
    return config


def validate_run_config(config) -> None:
    """Name checks that need the registries (before any data is loaded or model built)."""
    for key, value, allowed in (("dataset", config.dataset, DATASETS),
                                ("objective", config.objective, OBJECTIVES),
                                ("schedule", config.schedule, SCHEDULES),
                                ("parameterization", config.parameterization, PARAMETERIZATIONS)):
        if value not in allowed:
            raise ValueError(f"config key {key!r}: unknown value {value!r}; choose one of "
                             f"{sorted(allowed)}")
    resolve_device(config.device)


def train_main(args: argparse.Namespace) -> None:
    config = build_run_config(args)
    summary = Trainer(config, args.out).fit(stop_at=args.stop_at)
    if summary:
        print(f"trained {summary['steps']} steps in {summary['train_seconds']:.1f} s, "
              f"final loss {summary['final_loss']:.4f} -> {args.out}")
