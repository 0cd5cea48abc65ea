"""Configuration of one run (one objective x schedule x seed), with strict key checking.

A run configuration is a nested mapping (YAML/JSON) validated against the package's schema
(``$defs/run`` of ``config/schema.yaml``, :mod:`vdm.core.schema`), which holds every type, range
and default, and turned into :class:`RunConfig`, its typed view; unknown keys and wrongly typed
values fail immediately with a one-line error naming the key.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import re
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vdm.core.known_density_settings import check_known_density_settings
from vdm.core.schema import SCHEMA_FILE, run_schema_view, validate_with_defaults, workflow_schema


def run_config_default(key: str) -> Any:
    """The schema's default of run-config key ``key`` (dotted, e.g. ``train.steps``): the
    ``default`` of ``$defs/run`` at that key (needs PyYAML, not jsonschema).

    Raises a one-line ``ValueError`` naming the key where the schema cannot be read (a Python
    without PyYAML, as on the GPU-check machines, whose run configs are complete)."""
    try:
        node: Any = run_schema_view()
    except ImportError as error:
        raise ValueError(f"config key {key!r} is not given and its default is in the package's "
                         f"schema, which needs {error.name or 'PyYAML'} to read "
                         "(pip install pyyaml)") from None
    for part in key.split("."):
        node = node["properties"][part]
    return copy.deepcopy(node["default"])


def _defaults_from_schema(prefix: str = "") -> Callable[[type], type]:
    """Make the decorated class a dataclass whose every field defaults to the schema's default
    of ``prefix + name`` (:func:`run_config_default`, read when a default is needed), or to its
    own class's defaults for a field that is a dataclass: defaults are written only in the
    schema."""
    def decorate(cls: type) -> type:
        hints = typing.get_type_hints(cls)
        for name in cls.__annotations__:
            factory = (hints[name] if dataclasses.is_dataclass(hints[name])
                       else functools.partial(run_config_default, prefix + name))
            setattr(cls, name, field(default_factory=factory))
        return dataclass(cls)
    return decorate


@_defaults_from_schema("model.")
class ModelConfig:
    """UNet size (see :class:`vdm.model.network.UNet`)."""

    channels: int
    channel_mults: list[int]
    num_res_blocks: int
    attention_resolutions: list[int]
    dropout: float


@_defaults_from_schema("train.")
class TrainConfig:
    """Optimisation settings (AdamW, linear warm-up then constant LR, EMA of the weights).

    ``snapshots``: the steps (``1 <= k <= steps``, distinct) after which the trainer also saves
    the EMA weights (:func:`check_snapshots`). Neither the LR (warm-up, then constant) nor the
    EMA decay (warm-up by update count) depends on ``steps``, so the snapshot at step ``k`` is
    the model a run with ``steps = k`` trains (bitwise on CPU).
    """

    steps: int
    batch_size: int
    lr: float
    schedule_lr: float | None  # learned schedule's LR; None = same as lr
    warmup_steps: int
    weight_decay: float
    adam_beta2: float
    grad_clip: float
    ema_decay: float
    log_every: int
    checkpoint_every: int
    bf16: bool
    compile: bool
    threads: int | None  # torch intra-op threads on CPU; None = torch default
    snapshots: list[int]  # steps whose EMA weights are saved too (snapshots/step<k>.pt)


@_defaults_from_schema("conditioning.")
class ConditioningConfig:
    """Class-conditional training (Ho & Salimans 2022, classifier-free guidance).

    ``enabled``: the network gets a class embedding (:class:`vdm.model.network.UNet` ``num_classes``)
    and is trained on the minibatch's labels; disabled (default) leaves the model, its
    initialisation and its training bitwise as without conditioning. ``label_dropout``: the
    probability ``p_uncond`` with which a training label is replaced by the learned null ("no
    class") token, so one network learns both ``eps_hat(z, c)`` and ``eps_hat(z, null)``
    (0.1 as in Ho & Salimans 2022); must lie in ``[0, 1)``.
    """

    enabled: bool
    label_dropout: float


@_defaults_from_schema()
class RunConfig:
    """Everything that determines one trained model: the typed view of a run config validated
    by :func:`run_config_from_dict`. ``RunConfig()`` is the schema's default run."""

    dataset: str
    data_root: str
    download: bool
    objective: str
    schedule: str
    parameterization: str  # what the network outputs (vdm.model.parameterizations)
    seed: int
    device: str
    logsnr_min: float  # fixed schedules: truncation; learned: initial end point
    logsnr_max: float
    objective_kwargs: dict[str, float]
    model: ModelConfig
    train: TrainConfig
    conditioning: ConditioningConfig

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _typed_view(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """``cls`` built from a validated mapping: nested dataclasses built in turn, integers given
    for ``float`` fields made floats (``lr: 1`` is 1.0), absent keys left to the defaults."""
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise ValueError(f"unknown config key {prefix + unknown[0]!r}")
    values = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ValueError(f"config key {prefix + name!r}: expected a mapping, got {value!r}")
            value = _typed_view(hint, value, f"{prefix}{name}.")
        elif hint in (float, float | None) and type(value) is int:
            value = float(value)
        values[name] = value
    return cls(**values)


def run_config_from_dict(data: dict[str, Any]) -> RunConfig:
    """Validate a run config against the schema's ``$defs/run`` (unknown keys, names, types and
    ranges; a one-line ``ValueError`` naming the key), fill in the schema's defaults and build
    the :class:`RunConfig`. Strings that spell a number, integer or boolean where the schema asks
    for one are taken as it (YAML 1.1 reads ``1e-4`` as a string; see
    :func:`coerce_command_line_values`).

    Without PyYAML or jsonschema (the GPU-check machines, whose run configs are complete cells of
    the schema-resolved configs in ``vdm/bench/resolved_configs.json``) a complete run config is
    taken as it is; a key left out fails there, naming it."""
    try:
        data = json.loads(json.dumps(data))
    except (TypeError, ValueError) as error:
        raise ValueError(f"run config is not a JSON-like mapping: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"run config: expected a mapping, got {data!r}")
    try:
        import jsonschema  # lazy: jsonschema (absent on the GPU machines)

        schema = run_schema_view()
    except ImportError:
        config = _typed_view(RunConfig, data)
    else:
        coerce_command_line_values(data, schema)
        try:
            validate_with_defaults(data, schema)
        except jsonschema.ValidationError as error:
            raise ValueError(describe_schema_error(error) or error.message) from None
        config = _typed_view(RunConfig, data)
    check_snapshots(config.train.snapshots, config.train.steps)
    return config


def check_snapshots(snapshots: Any, steps: int | None) -> None:
    """``train.snapshots`` must be distinct whole training steps ``k`` with ``1 <= k <= steps``
    (``train.steps``; not checked against it when None): a one-line ``ValueError`` naming the key
    and the first offending step otherwise. The schema checks the type, the minimum and the
    distinctness too; this check also holds where the schema cannot be read (the GPU-check
    machines) and adds the bound that the schema cannot express (another key's value)."""
    key = "invalid config key 'train.snapshots'"
    if not isinstance(snapshots, list):
        raise ValueError(f"{key}: expected a list of training steps, got {snapshots!r}")
    seen: set[int] = set()
    for step in snapshots:
        if not isinstance(step, int) or isinstance(step, bool):
            raise ValueError(f"{key}: {step!r} is not a whole number of training steps")
        if step < 1:
            raise ValueError(f"{key}: step {step} is below 1 (a snapshot is taken after a "
                             "training step)")
        if steps is not None and step > steps:
            raise ValueError(f"{key}: step {step} is above train.steps ({steps}); a snapshot "
                             "must be a step from 1 to train.steps")
        if step in seen:
            raise ValueError(f"{key}: step {step} is listed twice")
        seen.add(step)


# --------------------------------------------------------------------------- workflow configs
#: the grid axes of a workflow config (config/config.yaml) and the run-config key each sets
GRID_AXES = {"parameterizations": "parameterization", "objectives": "objective",
             "schedules": "schedule", "seeds": "seed"}
#: the package's schema file (config/schema.yaml in the checkout; package data when installed)
WORKFLOW_SCHEMA = SCHEMA_FILE


def is_workflow_config(data: dict[str, Any]) -> bool:
    """True for a workflow (grid) config such as config/config.yaml, false for a run config."""
    return any(axis in data for axis in GRID_AXES)


def validate_workflow_config(data: dict[str, Any]) -> dict[str, Any]:
    """Validate a workflow config against the package's schema (config/schema.yaml) and fill in
    its defaults, as the Snakefile does; one-line ``ValueError`` naming the key otherwise."""
    import jsonschema  # lazy: jsonschema (absent on the GPU machines)

    data = json.loads(json.dumps(data))
    try:
        validate_with_defaults(data, workflow_schema())
    except jsonschema.ValidationError as error:
        raise ValueError(describe_schema_error(error) or error.message) from None
    check_workflow_config(data)
    return data


def _cell_train(train: dict[str, Any]) -> dict[str, Any]:
    """A grid's ``train`` section as it enters a cell's run config: without ``snapshots`` when
    there are none, so that the run config (the train job's Snakemake params) of a grid without
    snapshots is byte for byte what it was before the key existed and no finished cell retrains.
    The run config's default (``[]``) fills it in again (:func:`run_config_from_dict`)."""
    if train.get("snapshots", None) == []:
        return {key: value for key, value in train.items() if key != "snapshots"}
    return train


def grid_name(config: dict[str, Any], default: dict[str, Any]) -> str:
    """The name under which a grid's tables, plots and report are written (``results/<name>/``):
    ``config['name']`` when set; ``default`` when the validated ``config`` equals the validated
    embedded ``default`` config; otherwise ``grid-<first 8 hex of sha256>`` of the config's
    canonical JSON (resources excluded: they do not change results; keys that only exist with
    another setting or were added with a default, ``train.snapshots`` when empty,
    ``fid.fresh_reference_size`` without a fresh reference, ``evaluation.bayes_samplers`` when
    null and ``sample.spacings`` when ``[time]``, excluded at those values, so names stay what
    they were before the keys existed). Stable across runs."""
    if config.get("name"):
        return str(config["name"])
    def relevant(c: dict[str, Any]) -> dict[str, Any]:
        kept = {k: v for k, v in c.items() if k not in ("name", "resources")}
        if isinstance(kept.get("train"), dict):  # no snapshots: the name it had before the key
            kept["train"] = _cell_train(kept["train"])
        # keys added later, at the value they mean when absent: the name the grid had before them
        fid = kept.get("fid")
        if isinstance(fid, dict) and fid.get("reference_split") != "fresh":
            kept["fid"] = {k: v for k, v in fid.items() if k != "fresh_reference_size"}
        evaluation = kept.get("evaluation")
        if isinstance(evaluation, dict) and evaluation.get("bayes_samplers", False) is None:
            kept["evaluation"] = {k: v for k, v in evaluation.items() if k != "bayes_samplers"}
        sample = kept.get("sample")
        if isinstance(sample, dict) and sample.get("spacings") == ["time"]:
            kept["sample"] = {k: v for k, v in sample.items() if k != "spacings"}
        return kept
    if relevant(config) == relevant(default):
        return "default"
    text = json.dumps(relevant(config), sort_keys=True, default=str)
    return f"grid-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def check_workflow_config(config: dict[str, Any]) -> None:
    """Checks across keys that the schema cannot express; one-line ``ValueError`` naming the
    key. Guidance needs class-conditional models, weights > 0 need a guidance kind, and every
    ``train.snapshots`` step lies in ``1..train.steps`` (:func:`check_snapshots`); settings that
    need a known density ask for it on such a dataset only
    (:func:`vdm.core.known_density_settings.check_known_density_settings`)."""
    check_known_density_settings(config)
    train = config.get("train", {})
    check_snapshots(train.get("snapshots", []), train.get("steps"))
    conditional = config.get("conditioning", {}).get("enabled", False)
    guidance = config.get("guidance", {})
    kinds, weights = guidance.get("kinds", []), guidance.get("weights", [0.0])
    if kinds and not conditional:
        raise ValueError(f"invalid config key 'guidance.kinds': {kinds} needs class-conditional "
                         "models (conditioning.enabled: true); an unconditional model has no "
                         "class to guide toward")
    if any(w > 0 for w in weights) and not kinds:
        raise ValueError(f"invalid config key 'guidance.weights': {weights} has weights > 0 but "
                         "guidance.kinds is empty (choose cfg, classifier and/or oracle)")


def workflow_cell(config: dict[str, Any], objective: str, schedule: str, seed: int,
                  parameterization: str = "eps") -> dict[str, Any]:
    """The run configuration (mapping) of one grid cell of a validated workflow ``config``.

    Only settings of this cell enter it (e.g. ``objective_kwargs`` of its own objective), so
    adding objectives, schedules or seeds to the grid never changes a finished cell's config;
    ``train.snapshots`` enters only when it lists a step (:func:`_cell_train`).
    """
    return {
        "dataset": config["dataset"], "data_root": config["data_root"],
        "download": config["download"], "device": config["device"], "objective": objective,
        "schedule": schedule, "parameterization": parameterization, "seed": int(seed),
        "logsnr_min": config["logsnr_min"],
        "logsnr_max": config["logsnr_max"],
        "objective_kwargs": config["objective_kwargs"].get(objective, {}),
        "model": config["model"], "train": _cell_train(config["train"]),
        # only a conditional grid's label dropout enters the cell: unconditional cells stay put
        "conditioning": (dict(config["conditioning"]) if config.get("conditioning", {}).get(
            "enabled") else {"enabled": False}),
    }


def pick_workflow_cell(config: dict[str, Any], source: str, **chosen: Any) -> dict[str, Any]:
    """The cell of ``config`` named by ``chosen`` (``parameterization=``, ``objective=``,
    ``schedule=``, ``seed=``; None
    = not given). An axis with one value needs no choice; for the others a missing choice is a
    one-line ``ValueError`` listing the grid's values. A value outside the grid is allowed (the
    grid's other settings apply to it)."""
    cell = {}
    for axis, key in GRID_AXES.items():
        values, value = config[axis], chosen.get(key)
        if value is None:
            if len(values) != 1:
                raise ValueError(f"{source} is a workflow config with {axis} {values}: pick one "
                                 f"with --{key}")
            value = values[0]
        cell[key] = value
    return workflow_cell(config, **cell)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON mapping, with a one-line error naming the file when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        import yaml  # imported here: the GPU check runs without PyYAML
    except ImportError:
        if path.suffix != ".json":
            raise ValueError(f"config file {path}: reading YAML needs PyYAML (pip install pyyaml); "
                             "or pass the config as JSON") from None
        try:
            data = json.loads(path.read_text()) or {}
        except json.JSONDecodeError as error:
            raise ValueError(f"config file {path} is not valid JSON ({error})") from None
    else:
        data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {path}: expected a mapping at the top level")
    return data


def parse_override_value(raw: str) -> Any:
    """A ``--set`` value parsed as YAML (``3`` -> 3, ``[1, 2]`` -> list, ``true`` -> True);
    without PyYAML as JSON, else the string itself (enough for numbers, lists and words)."""
    try:
        import yaml  # lazy: PyYAML (absent on the GPU machines)
    except ImportError:
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
    return yaml.safe_load(raw)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a nested mapping."""
    data = json.loads(json.dumps(data))
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value")
        key, raw = item.split("=", 1)
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = parse_override_value(raw)
    return data


def describe_schema_error(error: BaseException) -> str | None:
    """One line naming the offending key of a ``jsonschema.ValidationError`` found in ``error``
    or its exception chain (``snakemake.utils.validate`` wraps it); None if there is none."""
    import jsonschema  # lazy: jsonschema (absent on the GPU machines)

    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, jsonschema.ValidationError):
            path = [str(part) for part in seen.absolute_path]
            if seen.validator == "additionalProperties" and isinstance(seen.instance, dict):
                allowed = sorted(seen.schema.get("properties", {}))
                unknown = sorted(k for k in seen.instance if k not in allowed)
                key = ".".join(path + unknown[:1])
                return (f"invalid config key {key!r}: unknown key; allowed keys"
                        f"{' of ' + repr('.'.join(path)) if path else ''}: {', '.join(allowed)}")
            key = ".".join(path) or "<top level>"
            return f"invalid config key {key!r}: {seen.message}"
        seen = seen.__cause__ or seen.__context__
    return None


def coerce_command_line_values(config: Any, schema: dict[str, Any]) -> Any:
    """Give ``snakemake --config`` values the types the schema asks for, in place.

    Snakemake parses ``--config train={'steps':0}`` or ``seeds=[0,1]`` leaving the scalars as
    strings; a string is converted only where the schema allows an integer, number or boolean
    and the string spells one (``"3"`` -> 3, ``"1e-3"`` -> 0.001, ``"true"`` -> True), so the
    schema then judges what the user meant. Anything else is left for the schema to reject.
    """
    if isinstance(config, dict):
        properties = schema.get("properties", {})
        for key, value in config.items():
            if key in properties:
                config[key] = coerce_command_line_values(value, properties[key])
        return config
    if isinstance(config, list):
        items = schema.get("items", {})
        return [coerce_command_line_values(value, items) for value in config]
    if not isinstance(config, str):
        return config
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
    text = config.strip()
    if "integer" in types and re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    if "number" in types:
        try:
            return float(text)
        except ValueError:
            pass
    if "boolean" in types and text.lower() in ("true", "false"):
        return text.lower() == "true"
    return config
