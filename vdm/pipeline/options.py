"""Command-line pieces shared by the job commands: the spec argument (``--spec``, ``--set``),
``--threads``, and the spec's description at the end of ``--help``."""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

import torch

from vdm.core.config import validate_workflow_config
from vdm.core.job_settings import FeatureSettings
from vdm.core.job_specs import JOB_SPECS, job_spec, spec_templates
from vdm.core.spec_base import Spec, read_spec_text, with_overrides


def spec_arguments(parser: argparse.ArgumentParser, command: str, threads: bool = True) -> None:
    """``--spec`` (the job's settings: one JSON), ``--set KEY=VALUE`` and ``--threads``; the
    spec's fields, with their meaning and defaults, end ``command``'s ``--help``."""
    spec_type, _ = JOB_SPECS[command]
    parser.set_defaults(spec_command=command)
    group = parser.add_argument_group("settings (the job's spec, described below)")
    group.add_argument("--spec", metavar="JSON|FILE",
                       help=f"the job's settings ({spec_type.__name__}): a JSON mapping with every "
                            "key listed below, inline or in a .json file (the workflow passes "
                            "the one its config builds); default: the default workflow "
                            "config's settings")
    group.add_argument("--set", dest="spec_overrides", action="append", default=[],
                       metavar="KEY=VALUE",
                       help="change one spec key (dotted, value read as YAML), e.g. "
                            "--set nll.num_time_samples=8 (repeatable)")
    if threads:
        group.add_argument("--threads", type=int, default=None, metavar="N",
                           help="torch intra-op CPU threads (the rule's threads; not a setting)")


@functools.cache
def default_workflow_config() -> dict[str, Any]:
    """The default workflow config: every key at its config/schema.yaml default."""
    return validate_workflow_config({})


def read_spec(args: argparse.Namespace) -> Any:
    """The spec of ``args.spec_command`` from ``--spec`` (or the default config's) with the
    ``--set`` items applied, checked (one line naming a bad key) before any work."""
    command = args.spec_command
    spec_type, _ = JOB_SPECS[command]
    if args.spec is None:
        data = job_spec(command, default_workflow_config()).to_dict()
    else:
        text, source = read_spec_text(args.spec)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{source} is not valid JSON ({error})") from None
    if args.spec_overrides:
        if not isinstance(data, dict):
            raise ValueError(f"the spec must be a JSON mapping, got {data!r}")
        data = with_overrides(data, args.spec_overrides,
                              spec_templates(default_workflow_config()))
    return spec_type.from_dict(data)


def describe_spec(command: str, width: int | None = None) -> str:
    """The end of ``command``'s ``--help``: every spec key with its type, meaning, unit and
    default (the default workflow config's; seed 0)."""
    spec_type, _ = JOB_SPECS[command]
    width = width or min(shutil.get_terminal_size((100, 24)).columns, 110)
    try:
        default: Spec | None = job_spec(command, default_workflow_config())
    except Exception:  # noqa: BLE001 -- the help still lists the keys without Snakemake/PyYAML
        default = None
    rows = spec_type.describe(default, templates=spec_templates(default_workflow_config())
                              if default is not None else None)
    key_width = max(len(key) for key, _, _ in rows) + 2
    type_width = max(len(kind) for _, kind, _ in rows) + 2
    lines = textwrap.wrap(f"spec ({spec_type.__name__}): one JSON mapping with every key below, "
                          "nested keys dotted; defaults: the default workflow config's "
                          "(config/schema.yaml), seed 0", width) + [""]
    indent = " " * (2 + key_width + type_width)
    for key, kind, doc in rows:
        head = f"  {key:<{key_width}}{kind:<{type_width}}"
        lines += textwrap.wrap(doc, width, initial_indent=head, subsequent_indent=indent) or [head]
    return "\n".join(lines) + "\n"


class SpecHelpParser(argparse.ArgumentParser):
    """An argument parser whose ``--help`` ends with the description of its command's spec
    (computed only when help is asked for)."""

    def format_help(self) -> str:
        command = self.get_default("spec_command")
        text = super().format_help()
        return text + "\n" + describe_spec(command) if command else text


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


def file_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The group of a command's input and output files (Snakemake's {input} / {output})."""
    return parser.add_argument_group("files (inputs and outputs; not settings)")


def extractor_weights(features: FeatureSettings, dataset_classifier: Path | None) -> Path | None:
    """The FID extractor's weights: the dataset classifier (``--dataset-classifier``) for the
    classifier extractor, the spec's ``weights_path`` for Inception (None: downloaded)."""
    if features.feature_extractor == "classifier":
        if dataset_classifier is None:
            raise ValueError("the classifier feature extractor's weights are the dataset "
                             "classifier: give --dataset-classifier (vdm classifier)")
        return dataset_classifier
    return Path(features.weights_path) if features.weights_path else None


def check_output(enabled: bool, path: Path | None, key: str, option: str) -> None:
    """A spec switch ``key`` that writes a file needs its output option, and only then."""
    if enabled and path is None:
        raise ValueError(f"spec key {key!r} is true: give {option} FILE (or --set {key}=false)")
    if not enabled and path is not None:
        raise ValueError(f"{option} given but spec key {key!r} is false")
